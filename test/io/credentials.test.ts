import { describe, expect, test } from "bun:test";
import { SQL } from "bun";
import { safeUrl, scrub, secretsOf, sqlClientLogin } from "../../src/io/credentials.ts";

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

describe("credentials beyond a URL's user info", () => {
  test("a password in the query string (?password=, as libpq and Bun's SQL read it) is shown as *** and removed", () => {
    const url = "postgres://app@db.example:5432/shop?sslmode=disable&password=s3cr%2Bt+x";
    expect(safeUrl(url)).toBe("postgres://app@db.example:5432/shop?sslmode=disable&password=***");
    const secrets = secretsOf(url);
    expect(secrets).toContain("s3cr%2Bt+x");
    expect(secrets).toContain("s3cr+t x");
    expect(scrub("login s3cr+t x refused", secrets)).toBe("login *** refused");
    // Other parameters stay, and a name that only contains "password" is not one.
    expect(secretsOf("postgres://app@db/shop?application_name=password&passwords=no")).toEqual([]);
  });

  test("a password a driver may print in another percent-encoding is removed too", () => {
    // Written with lowercase hex and an encoded "!": encodeURIComponent prints "p%2Fss!".
    const secrets = secretsOf("mysql://app:p%2fss%21@db:3306/x");
    expect(secrets).toEqual(["p%2fss%21", "p%2Fss!", "p/ss!"]);
    expect(scrub("auth p%2Fss! / p/ss! / p%2fss%21", secrets)).toBe("auth *** / *** / ***");
  });

  test("a login given apart from a URL (Kafka's SASL): both parts with hideUser, as given and percent-encoded", () => {
    const secrets = secretsOf({ username: "svc user", password: "p@ss wörd" }, { hideUser: true });
    expect(secrets).toEqual(["p%40ss%20w%C3%B6rd", "svc%20user", "p@ss wörd", "svc user"]);
    expect(secretsOf({ username: "svc", password: "" })).toEqual([]);
    expect(secretsOf(["redis://:pw1@h:6379", { password: "longer-pw" }])).toEqual(["longer-pw", "pw1"]);
  });

  test("a Bun SQL client gives the password it resolved, from its options or its URL", () => {
    expect(sqlClientLogin(new SQL({ url: "postgres://app@127.0.0.1:1/x", password: "from-options", max: 1 }))).toEqual({ password: "from-options" });
    expect(sqlClientLogin(new SQL({ url: "postgres://app@127.0.0.1:1/x?password=from-query", max: 1 }))).toEqual({ password: "from-query" });
    // A password given as a function is not known until it is called: nothing to add.
    expect(sqlClientLogin(new SQL({ url: "postgres://app@127.0.0.1:1/x", password: () => "later", max: 1 }))).toEqual({});
    expect(sqlClientLogin(undefined)).toEqual({});
  });
});
