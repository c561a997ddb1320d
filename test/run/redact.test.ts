import { describe, expect, test } from "bun:test";
import { createLogger } from "../../src/run/log.ts";
import { isCredentialName, MASK, redactArgs, redactText, scrubBytes, scrubText, secretForms } from "../../src/run/redact.ts";

describe("redactArgs", () => {
  const cases: [string, string[], string[]][] = [
    ["a URL password", ["--url", "postgres://app:Pa55w0rd@db.example:5432/sales"], ["--url", "postgres://app:***@db.example:5432/sales"]],
    ["a URL password given with =", ["--url=postgres://app:Pa55w0rd@db/x"], ["--url=postgres://app:***@db/x"]],
    ["a password holding @ and :", ["postgresql://app:p@ss:w0rd@db/x"], ["postgresql://app:***@db/x"]],
    ["a credential query value", ["--source", "https://api.example/v1?api_key=abc123&page=2"], ["--source", "https://api.example/v1?api_key=***&page=2"]],
    ["--password", ["--password", "hunter22", "--out", "o"], ["--password", "***", "--out", "o"]],
    ["--token=", ["--token=abc"], ["--token=***"]],
    ["--api-key", ["--api-key", "k"], ["--api-key", "***"]],
    ["--secret", ["--secret", "s"], ["--secret", "***"]],
    ["an upper-case *_KEY option", ["--AWS_SECRET_ACCESS_KEY", "x", "--REGION", "eu"], ["--AWS_SECRET_ACCESS_KEY", "***", "--REGION", "eu"]],
    ["a *TOKEN* option", ["--github-token-file", "/run/t"], ["--github-token-file", "***"]],
    ["a *PASSWORD* option", ["--db-password", "x"], ["--db-password", "***"]],
    ["a single-dash option", ["-password", "x"], ["-password", "***"]],
    ["a NAME=value assignment", ["API_TOKEN=abc", "MODE=fast"], ["API_TOKEN=***", "MODE=fast"]],
    ["a credential flag followed by an option", ["--no-token-check", "--out", "o"], ["--no-token-check", "--out", "o"]],
    ["a credential option at the end", ["--token"], ["--token"]],
    ["ordinary arguments", ["--input", "data/*.ndjson", "--date", "2024-03-01", "http://host:8080/x"], ["--input", "data/*.ndjson", "--date", "2024-03-01", "http://host:8080/x"]],
  ];
  test.each(cases)("masks %s", (_what, args, shown) => {
    expect(redactArgs(args)).toEqual(shown);
  });

  test("does not change its argument", () => {
    const args = ["--password", "x"];
    redactArgs(args);
    expect(args).toEqual(["--password", "x"]);
  });
});

describe("redactText", () => {
  test("masks URL passwords and credential query values anywhere in a text", () => {
    expect(redactText("could not connect to postgres://app:pw1234@db:5432/x: refused")).toBe("could not connect to postgres://app:***@db:5432/x: refused");
    expect(redactText("GET https://a.example/x?token=t0k&sig=abc&q=1 failed")).toBe("GET https://a.example/x?token=***&sig=***&q=1 failed");
  });

  test("leaves JSON around a URL intact", () => {
    const line = JSON.stringify({ url: "http://host:8080", contact: "me@example.com" });
    expect(redactText(line)).toBe(line);
    expect(JSON.parse(redactText(JSON.stringify({ dsn: "postgres://a:b@c/d", n: 1 })))).toEqual({ dsn: "postgres://a:***@c/d", n: 1 });
  });

  test("a JSON log line masks a password in a message or a field", () => {
    const lines: string[] = [];
    const log = createLogger({ format: "json", runId: "r", write: (line) => lines.push(line) });
    log.error("run failed: postgres://app:Pa55w0rd@db/x refused", { args: ["--url", "mysql://u:Pa55w0rd@h/x"] });
    expect(lines.join("\n")).not.toContain("Pa55w0rd");
    expect(JSON.parse(lines[0] as string).args).toEqual(["--url", "mysql://u:***@h/x"]);
  });
});

describe("secretForms and scrubbing", () => {
  test("credential names cover the documented list", () => {
    for (const name of ["token", "api_key", "X-Api-Key", "secret", "password", "passwd", "auth", "signature", "sig", "credential", "session", "pwd", "cookie"]) {
      expect(isCredentialName(name)).toBe(true);
    }
    for (const name of ["page", "per_page", "cursor", "offset", "q", "signal"]) expect(isCredentialName(name)).toBe(false);
  });

  test("a bearer token is scrubbed as given, URL-encoded and JSON-escaped, but not its scheme", () => {
    const forms = secretForms(["Bearer a/b+c d"]);
    expect(forms).not.toContain("Bearer");
    const texts = ["Bearer a/b+c d", "a/b+c d", "a%2Fb%2Bc%20d", "a%2Fb%2Bc+d", '"a\\/b+c d"'];
    for (const text of texts) expect(scrubText(`x ${text} y`, forms)).not.toMatch(/a.b.c/);
    expect(scrubText("token Bearer a/b+c d!", forms)).toBe(`token ${MASK}!`);
  });

  test("a Basic credential is scrubbed encoded and decoded", () => {
    const forms = secretForms([`Basic ${btoa("user:pa55word")}`]);
    expect(scrubText("bad password pa55word for user", forms)).toBe(`bad password ${MASK} for user`);
    expect(scrubText(`got ${btoa("user:pa55word")}`, forms)).toBe(`got ${MASK}`);
  });

  test("values shorter than four characters are left alone", () => {
    expect(secretForms(["abc", "1"])).toEqual([]);
    expect(scrubText("abc 1", secretForms(["abc"]))).toBe("abc 1");
  });

  test("scrubBytes replaces the secret's bytes and keeps every other byte, UTF-8 or not", () => {
    const forms = secretForms(["s3cr3t-v4lue"]);
    const bytes = new Uint8Array([0xff, 0xfe, ...Buffer.from("a s3cr3t-v4lue b s3cr3t-v4lue"), 0x80]);
    const scrubbed = scrubBytes(bytes, forms, "REDACTED");
    expect([...scrubbed]).toEqual([0xff, 0xfe, ...Buffer.from("a REDACTED b REDACTED"), 0x80]);
    const clean = Buffer.from("nothing here");
    expect(scrubBytes(clean, forms)).toBe(clean);
  });
});
