import { describe, expect, test } from "bun:test";
import { safeUrl, scrub, secretsOf } from "../../src/io/credentials.ts";

describe("credentials in broker URLs", () => {
  test("a password is shown as *** and removed from messages, as written and decoded", () => {
    const url = "redis://app:p%40ss%2Fw0rd@db.example:6379/2";
    expect(safeUrl(url)).toBe("redis://app:***@db.example:6379/2");
    const secrets = secretsOf(url);
    expect(secrets).toEqual(["p%40ss%2Fw0rd", "p@ss/w0rd"]);
    expect(scrub("AUTH failed for p@ss/w0rd (redis://app:p%40ss%2Fw0rd@db.example:6379/2)", secrets)).toBe("AUTH failed for *** (redis://app:***@db.example:6379/2)");
  });

  test("a NATS user name may be a token: hidden too, also for a bare host:port", () => {
    const options = { scheme: "nats", hideUser: true } as const;
    expect(safeUrl("s3cr3t-token@127.0.0.1:4222", options)).toBe("nats://***@127.0.0.1:4222");
    expect(secretsOf("nats://alice:pw@h:4222", options)).toEqual(["alice", "pw"]);
    // Without hideUser a user name is shown (Redis ACL users are not secret).
    expect(safeUrl("redis://alice@h:6379")).toBe("redis://alice@h:6379");
    expect(secretsOf("redis://alice@h:6379")).toEqual([]);
  });

  test("a password that is not valid percent-encoding is still removed, and several URLs give one list, longest first", () => {
    // decodeURIComponent throws on "%zz": the password as written must not be lost with it.
    expect(secretsOf("redis://:ab%zz@h:6379")).toEqual(["ab%zz"]);
    const secrets = secretsOf(["nats://tok@a:4222", "nats://user:longer-secret@b:4222", "nats://tok@c:4222"], { scheme: "nats", hideUser: true });
    expect(secrets).toEqual(["longer-secret", "user", "tok"]);
    expect(scrub("auth failed: user/longer-secret and tok", secrets)).toBe("auth failed: ***/*** and ***");
  });

  test("what cannot be parsed is never echoed", () => {
    expect(safeUrl("redis://[broken")).toBe("(an unparsable URL)");
    expect(secretsOf("::::")).toEqual([]);
    expect(scrub("nothing to hide", [])).toBe("nothing to hide");
  });
});
