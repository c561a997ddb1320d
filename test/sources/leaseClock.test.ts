/**
 * The lease of a broker source (src/sources/broker.ts) on a clock the test moves: what a keep-alive
 * round proves, when commits must stop, and what is never taken as proof. The brokers themselves
 * are in lease.test.ts.
 */
import { afterEach, beforeEach, describe, expect, spyOn, test } from "bun:test";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { from } from "rxjs";
import * as v from "valibot";
import { deadLetter, validate } from "../../operators/index.ts";
import { run, toParquet } from "../../src/index.ts";
import { Lease } from "../../src/sources/broker.ts";
import { tempDir } from "../helpers/duckdb.ts";

let now = 0;
let clock: ReturnType<typeof spyOn> | undefined;
const moveClock = () => {
  now = 1_000;
  clock = spyOn(performance, "now").mockImplementation(() => now);
};
afterEach(() => {
  clock?.mockRestore();
  clock = undefined;
});

/** A lease of 1,000 ms with a margin of 100 ms over `held` messages, recording what it reports. */
function leaseOver(held: { count: number }) {
  const lost: Error[] = [];
  const lease = new Lease(
    1000,
    100,
    () => held.count,
    (count, silentMs) => new Error(`lost hold of ${count} messages: nothing answered for ${silentMs} ms`),
    (error) => lost.push(error),
  );
  return { lease, lost };
}

const checks = (lease: Lease) => {
  try {
    lease.check();
    return "ok";
  } catch (error) {
    return (error as Error).message;
  }
};

describe("Lease", () => {
  beforeEach(moveClock);
  test("holding nothing, it never fences, however long nothing is renewed", () => {
    const held = { count: 0 };
    const { lease, lost } = leaseOver(held);
    now += 1_000_000;
    expect(checks(lease)).toBe("ok");
    expect(lost).toEqual([]);
  });

  test("messages read by a request sent at r are surely held until r + lease; commits stop a margin before", () => {
    const held = { count: 0 };
    const { lease, lost } = leaseOver(held);
    lease.taken(1_000);
    held.count = 5;
    now = 1_900;
    expect(checks(lease)).toBe("ok");
    now = 1_901;
    expect(checks(lease)).toBe("lost hold of 5 messages: nothing answered for 901 ms");
    // Told once; every later check throws the same error, also once nothing is held any more.
    held.count = 0;
    expect(checks(lease)).toBe("lost hold of 5 messages: nothing answered for 901 ms");
    expect(lost.length).toBe(1);
  });

  test("a round answered in time renews from the moment it was sent, not from the answer", () => {
    const held = { count: 3 };
    const { lease } = leaseOver(held);
    lease.taken(1_000);
    now = 1_500;
    const round = lease.renewing();
    expect(round).toBe(1_500);
    now = 1_800;
    lease.renewed(round as number);
    expect(lease.expiry).toBe(2_500);
    now = 2_400;
    expect(checks(lease)).toBe("ok");
    now = 2_401;
    expect(checks(lease)).toContain("lost hold of 3 messages");
  });

  test("a round answered after the lease could have run out renews nothing", () => {
    const held = { count: 3 };
    const { lease } = leaseOver(held);
    lease.taken(1_000);
    now = 1_850;
    const round = lease.renewing() as number;
    // The broker may have handed the messages on at 2,000, before the answer.
    now = 2_000;
    lease.renewed(round);
    expect(lease.expiry).toBe(2_000);
    expect(checks(lease)).toContain("lost hold of 3 messages");
  });

  test("no round starts past the deadline (it could take back what another reader was given)", () => {
    const held = { count: 3 };
    const { lease } = leaseOver(held);
    lease.taken(1_000);
    now = 1_950;
    expect(lease.renewing()).toBeUndefined();
  });

  test("messages read before a round started and taken after it count from their read, not from the round", () => {
    const held = { count: 1 };
    const { lease } = leaseOver(held);
    lease.taken(1_000);
    now = 1_300;
    const round = lease.renewing() as number;
    // A read sent at 1,200 delivers after the round went out: the round did not keep those alive.
    lease.taken(1_200);
    held.count = 2;
    now = 1_350;
    lease.renewed(round);
    expect(lease.expiry).toBe(2_200);
  });

  test("one round at a time; a failed round leaves the lease as it was", () => {
    const held = { count: 1 };
    const { lease } = leaseOver(held);
    lease.taken(1_000);
    now = 1_200;
    const round = lease.renewing() as number;
    expect(lease.renewing()).toBeUndefined();
    lease.failed(round);
    expect(lease.expiry).toBe(2_000);
    now = 1_400;
    expect(lease.renewing()).toBe(1_400);
  });

  test("once revoked (the messages given back), every check throws the revocation", () => {
    const held = { count: 2 };
    const { lease, lost } = leaseOver(held);
    lease.taken(1_000);
    lease.revoke(new Error("given back"));
    expect(checks(lease)).toBe("given back");
    expect(lease.renewing()).toBeUndefined();
    expect(lost).toEqual([]);
  });
});

describe("a lost lease stops every commit of the run", () => {
  test("no Parquet file and no dead-letter file lands once a lease check throws, and no temporary file is left", async () => {
    const dir = await tempDir("sluice-fenced-");
    try {
      const Row = v.object({ id: v.number(), day: v.string() });
      const records = [
        { id: 1, day: "2024-03-01" },
        { id: 2, day: "2024-03-02" },
        { id: "three", day: "2024-03-02" },
      ];
      const error = await run(
        from(records).pipe(
          validate(Row),
          deadLetter(join(dir.path, "dead")),
          toParquet(join(dir.path, "events"), { schema: Row, partitionBy: ["day"] }),
        ),
        {
          // What a broker source registers; here it has lost hold of its messages before anything commits.
          onStart: (flow) =>
            flow.leases.add(() => {
              throw new Error("fromJetStream: lost hold of 3 messages");
            }),
        },
      ).then(
        () => undefined,
        (e: Error) => e,
      );
      expect(error?.message).toContain("lost hold of 3 messages");
      const files = (folder: string) => (existsSync(folder) ? readdirSync(folder, { recursive: true }).map(String) : []);
      expect(files(join(dir.path, "events")).filter((f) => f.endsWith(".parquet") || f.endsWith(".tmp"))).toEqual([]);
      expect(files(join(dir.path, "dead")).filter((f) => f.endsWith(".ndjson") || f.endsWith(".tmp"))).toEqual([]);
    } finally {
      await dir.remove();
    }
  });
});
