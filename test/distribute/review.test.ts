/**
 * Adversarial checks of distributed runs: split cutting on inputs larger than the cutter's read
 * chunk, the Redis queue's keep-alive racing another worker's take-over, and a source that two
 * branches of a pipeline subscribe to.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { RedisClient } from "bun";
import { filter, merge, type Observable, take } from "rxjs";
import * as v from "valibot";
import type { Split } from "../../src/distribute/queue.ts";
import { openRedisQueue } from "../../src/distribute/redis.ts";
import { fromNdjson, run, toParquet } from "../../src/index.ts";
import { cutSplits } from "../../src/sources/splits.ts";
import { forgetJobs } from "../helpers/distributedJobs.ts";
import { dataset, query, tempDir } from "../helpers/duckdb.ts";

const REDIS = process.env["REDIS_URL"] ?? "redis://127.0.0.1:6379";

let dir: { path: string; remove: () => Promise<void> };
const jobs: string[] = [];
beforeAll(async () => {
  dir = await tempDir("sluice-distribute-review-");
});
afterAll(async () => {
  await forgetJobs(jobs, REDIS);
  await dir.remove();
});

function newJob(): string {
  const job = `review-${process.pid}-${jobs.length}-${Date.now()}`;
  jobs.push(job);
  return job;
}

async function until(what: string, check: () => boolean | Promise<boolean>, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(20);
  }
}

describe("cutting inputs larger than the cutter's 4 MiB read chunk", () => {
  // Lines of many lengths (some longer than a split), CRLF endings, a BOM, no newline at the end;
  // CSV records with quoted fields holding line breaks and doubled quotes, crossing chunk ends.
  const cases = [
    {
      kind: "ndjson",
      rule: { kind: "lines" } as const,
      make(random: () => number) {
        const parts: string[] = ["\uFEFF"];
        for (let i = 0; parts.length < 40_000; i++) {
          const pad = "x".repeat(Math.floor(random() < 0.01 ? random() * 300_000 : random() * 400));
          parts.push(`${JSON.stringify({ i, pad })}${random() < 0.3 ? "\r\n" : "\n"}`);
        }
        parts.push('{"last":true}');
        return parts.join("");
      },
    },
    {
      kind: "csv",
      rule: { kind: "csv", delimiter: 44, quote: 34 } as const,
      make(random: () => number) {
        const parts: string[] = ["id,text\r\n"];
        for (let i = 0; parts.length < 60_000; i++) {
          const long = random() < 0.002 ? "y\n".repeat(Math.floor(random() * 100_000)) : "";
          const text = random() < 0.5 ? `"a ""quoted"" line\nbreak ${long}${"z".repeat(Math.floor(random() * 300))}"` : `plain${"w".repeat(Math.floor(random() * 200))}`;
          parts.push(`${i},${text}${random() < 0.5 ? "\r\n" : "\n"}`);
        }
        return parts.join("");
      },
    },
  ];
  for (const { kind, rule, make } of cases) {
    test(`${kind} splits tile the input, begin after a record and count the lines before them`, async () => {
      let seed = 42;
      const random = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
      const text = make(random);
      const path = join(dir.path, `big.${kind}`);
      await Bun.write(path, text);
      const bytes = new Uint8Array(await Bun.file(path).arrayBuffer());
      expect(bytes.length).toBeGreaterThan(9 * 1024 * 1024);
      // The record ends (after the line feed ending each record) computed independently.
      const ends = new Set<number>();
      let quoted = false;
      for (let i = 0; i < bytes.length; i++) {
        const c = bytes[i];
        if (kind === "csv" && c === 34) quoted = !quoted;
        else if (c === 10 && !quoted) ends.add(i + 1);
      }
      const linesBefore = new Int32Array(bytes.length + 1);
      for (let i = 0; i < bytes.length; i++) linesBefore[i + 1] = (linesBefore[i] as number) + (bytes[i] === 10 ? 1 : 0);
      for (const splitBytes of [65_537, 1_000_003, 4 * 1024 * 1024 - 1, 4 * 1024 * 1024 + 7]) {
        const splits: Split[] = [];
        for await (const split of cutSplits("test", [path], rule, splitBytes)) splits.push(split);
        expect(splits[0]?.start).toBe(0);
        expect(splits.at(-1)?.end).toBe(bytes.length);
        for (const [i, split] of splits.entries()) {
          if (i > 0) {
            expect(split.start).toBe(splits[i - 1]?.end as number);
            expect(ends.has(split.start)).toBe(true);
          }
          expect(split.line).toBe(linesBefore[split.start] as number);
          if (i < splits.length - 1) expect(split.end - split.start).toBeGreaterThanOrEqual(splitBytes);
        }
      }
    }, 120_000);
  }
});

describe("the Redis queue's keep-alive", () => {
  test("a worker whose split another worker took over while its keep-alive was on the way loses it, and does not take it back", async () => {
    const job = newJob();
    const leaseMs = 600;
    const split: Split = { seq: 1, input: "in.ndjson", size: 10, version: "1:10", start: 0, end: 10, line: 0, whole: true };
    const list = async function* () {
      yield split;
    };
    const settings = { url: REDIS, job, key: "fromNdjson.x", leaseMs };
    let lostA: Error | undefined;
    let lostB: Error | undefined;
    const a = await openRedisQueue({ ...settings, worker: "A" }, (error) => {
      lostA = error;
    });
    const b = await openRedisQueue({ ...settings, worker: "B" }, (error) => {
      lostB = error;
    });
    const proto = RedisClient.prototype as unknown as { send: (command: string, args: string[]) => Promise<unknown> };
    const send = proto.send;
    // While armed, worker A's keep-alive (anything but a plain read of who holds what) waits until
    // B has taken the split over: as if the network held A's command for longer than the lease.
    let armed = false;
    let tookOver: () => void = () => {};
    const takenOver = new Promise<void>((resolve) => {
      tookOver = resolve;
    });
    proto.send = function (this: unknown, command: string, args: string[]) {
      const fromA = args.includes("A") && command !== "XPENDING" && command !== "XAUTOCLAIM" && command !== "XREADGROUP" && command !== "SET";
      if (armed && fromA) return takenOver.then(() => send.call(this, command, args));
      return send.call(this, command, args);
    };
    try {
      const held = await a.take(list, () => false);
      expect(held?.split.seq).toBe(1);
      armed = true;
      // B takes the split once A's keep-alives have not reached Redis for the lease.
      let taken: Awaited<ReturnType<typeof b.take>>;
      await until("B to take the split over", async () => {
        taken = await b.take(list, () => false);
        return taken !== undefined;
      });
      expect(taken?.redelivered).toBeDefined();
      armed = false;
      tookOver();
      // A's held keep-alives now reach Redis; then several ordinary ones run.
      await Bun.sleep(leaseMs * 2);
      // Exactly one worker may go on with the split: the one that took it over.
      expect(lostA).toBeDefined();
      expect(() => a.assertHeld()).toThrow();
      expect(lostB).toBeUndefined();
      expect(() => b.assertHeld()).not.toThrow();
    } finally {
      proto.send = send;
      await a.close();
      await b.close();
    }
  }, 60_000);
});

describe("one input read by two branches of a pipeline", () => {
  test("each branch of a source subscribed twice reads every split, as one process does", async () => {
    const Row = v.object({ id: v.number(), even: v.boolean() });
    const input = join(dir.path, "twice.ndjson");
    await Bun.write(input, Array.from({ length: 20_000 }, (_, i) => `${JSON.stringify({ id: i + 1, even: i % 2 === 1 })}\n`).join(""));
    const pipeline = (out: string) => {
      const source = fromNdjson(input) as Observable<v.InferOutput<typeof Row>>;
      return merge(
        source.pipe(
          filter((r) => r.even),
          toParquet(join(out, "even"), { schema: Row }),
        ),
        source.pipe(
          filter((r) => !r.even),
          toParquet(join(out, "odd"), { schema: Row }),
        ),
      );
    };
    const single = join(dir.path, "twice-single");
    await run(pipeline(single));
    const job = newJob();
    const out = join(dir.path, "twice-distributed");
    await Promise.all(["a", "b"].map((worker) => run(pipeline(out), { distribute: { url: REDIS, job, splitBytes: 16 * 1024, worker } })));
    for (const branch of ["even", "odd"]) {
      const [expected] = await query(`SELECT count(*)::INT AS n FROM ${dataset(join(single, branch))}`);
      const [actual] = await query(`SELECT count(*)::INT AS n, count(DISTINCT id)::INT AS ids FROM ${dataset(join(out, branch))}`);
      expect(expected?.["n"]).toBe(10_000);
      expect(actual).toEqual({ n: 10_000, ids: 10_000 });
    }
  }, 120_000);
});

describe("a CSV input that begins with a byte order mark", () => {
  test("is never cut inside its first record's quoted field", async () => {
    // No header (the names are given): the first record's quoted field holds line breaks and is
    // longer than a split. The reader skips the mark and reads the quote as opening the field.
    const path = join(dir.path, "bom.csv");
    const first = `"${"note line\n".repeat(1000)}",1\n`;
    await Bun.write(path, `\uFEFF${first}${Array.from({ length: 2000 }, (_, i) => `plain ${i},${i}\n`).join("")}`);
    const splits: Split[] = [];
    for await (const split of cutSplits("test", [path], { kind: "csv", delimiter: 44, quote: 34 }, 4096)) splits.push(split);
    expect(splits.length).toBeGreaterThan(2);
    // The first cut comes after the first record, never inside it.
    expect(splits[1]?.start).toBeGreaterThanOrEqual(3 + Buffer.byteLength(first));
  });
});

describe("a pipeline that completes before its input ends", () => {
  // `take(10)` unsubscribes the source part-way through a split: the split goes back to the queue
  // when the run ends, and the worker runs no further round.
  test("a worker whose pipeline takes only the first records ends", async () => {
    const input = join(dir.path, "take.ndjson");
    await Bun.write(input, Array.from({ length: 20_000 }, (_, i) => `${JSON.stringify({ id: i + 1 })}\n`).join(""));
    const running = run((fromNdjson(input) as Observable<{ id: number }>).pipe(take(10), toParquet(join(dir.path, "take"), { schema: v.object({ id: v.number() }) })), {
      distribute: { url: REDIS, job: newJob(), splitBytes: 4096, leaseMs: 600 },
    });
    // Ending takes well under a second; 15 s (25 leases) without an end is a worker that waits forever.
    const outcome = await Promise.race([running.then(() => "ended"), Bun.sleep(15_000).then(() => "still waiting")]);
    expect(outcome).toBe("ended");
  }, 60_000);
});
