/**
 * Distributed runs (`run(…, { distribute })`, `sluice run --distribute`): inputs cut into splits
 * and shared by several workers through a work queue on the real Redis. What a user relies on:
 * the workers together write exactly what one process writes (DuckDB reads both and compares),
 * with every bad record once in the dead letter at the line one process names, also when a worker
 * is killed mid-run and its splits go to another.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { RedisClient } from "bun";
import { readdirSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { filter, map, mergeMap } from "rxjs";
import * as v from "valibot";
import { deadLetter, validate } from "../../operators/index.ts";
import { fromCsv, fromNdjson, readDeadLetters, run, toParquet } from "../../src/index.ts";
import { cutSplits } from "../../src/sources/splits.ts";
import { createDistribution } from "../../src/distribute/distribution.ts";
import { shortHash } from "../../src/distribute/queue.ts";
import { uploadFile } from "../../src/io/s3.ts";
import { forgetJobs } from "../helpers/distributedJobs.ts";
import { dataset, query, tempDir } from "../helpers/duckdb.ts";
import { S3RVER_KEY, S3RVER_SECRET, startS3rver } from "../helpers/s3rver.ts";

const REDIS = process.env["REDIS_URL"] ?? "redis://127.0.0.1:6379";
const NATS = process.env["NATS_URL"] ?? "nats://127.0.0.1:4222";
const DAYS = ["2024-03-01", "2024-03-02", "2024-03-03"];
const Event = v.object({ id: v.pipe(v.number(), v.integer()), day: v.picklist(DAYS), n: v.number() });
const MAIN = join(import.meta.dir, "..", "..", "src", "cli", "main.ts");
const PIPELINE = join(import.meta.dir, "..", "fixtures", "distributed-pipeline.ts");

let dir: { path: string; remove: () => Promise<void> };
const jobs: string[] = [];
beforeAll(async () => {
  dir = await tempDir("sluice-distribute-");
});
afterAll(async () => {
  await forgetJobs(jobs, REDIS, NATS);
  await dir.remove();
});

function newJob(): string {
  const job = `test-${process.pid}-${jobs.length}-${Date.now()}`;
  jobs.push(job);
  return job;
}

/** Line `i` (from 1) of an NDJSON input: 1 in 100 is not JSON, 1 in 100 fails validation. */
function ndjsonLine(i: number): string {
  if (i % 100 === 7) return `{"id": ${i}, broken`;
  if (i % 100 === 29) return JSON.stringify({ id: i, day: "someday", n: i });
  return JSON.stringify({ id: i, day: DAYS[i % 3], n: i * 2 });
}

/**
 * Row `i` of a CSV input: 1 in 97 has a quoted day holding a line break (a record over two lines,
 * which fails validation), 1 in 101 has a field too many; the others are good.
 */
function csvRow(i: number): string {
  if (i % 97 === 5) return `${i},"2024-03-\n01",${i * 2}`;
  if (i % 101 === 3) return `${i},${DAYS[i % 3]},${i * 2},extra`;
  return `${i},"${DAYS[i % 3]}",${i * 2}`;
}

async function writeInput(name: string, lines: number, line: (i: number) => string, header = ""): Promise<string> {
  const path = join(dir.path, name);
  const writer = Bun.file(path).writer();
  if (header) writer.write(`${header}\n`);
  for (let i = 1; i <= lines; i++) writer.write(`${line(i)}\n`);
  await writer.end();
  return path;
}

/** The same pipeline for one process and for each worker, with an asynchronous step that reorders. */
function pipeline(input: string, out: string) {
  const source = input.endsWith(".csv") ? fromCsv(input, { schema: Event }) : fromNdjson(input);
  return source.pipe(
    mergeMap(async (record) => {
      if (Math.random() < 0.01) await Bun.sleep(1);
      return record;
    }, 8),
    validate(Event),
    deadLetter(join(out, "dead-letter"), { maxFileAgeMs: 200 }),
    toParquet(join(out, "events"), { schema: Event, partitionBy: ["day"], maxFileRows: 4000, maxFileAgeMs: 500 }),
  );
}

/** {@link pipeline} with a step that throws at the 3,000th record, failing the run. */
function failingPipeline(input: string, out: string) {
  let seen = 0;
  return fromNdjson(input).pipe(
    map((record) => {
      if (++seen === 3000) throw new Error("a step failed");
      return record;
    }),
    validate(Event),
    deadLetter(join(out, "dead-letter"), { maxFileAgeMs: 200 }),
    toParquet(join(out, "events"), { schema: Event, partitionBy: ["day"], maxFileRows: 4000, maxFileAgeMs: 500 }),
  );
}

/** Dead letters of a folder as sorted `stage source:line` texts. */
async function letters(folder: string): Promise<string[]> {
  const found: string[] = [];
  for await (const letter of readDeadLetters(folder)) found.push(`${letter.stage} ${letter.source}:${letter.line}`);
  return found.sort();
}

/** Asserts that two datasets hold the same rows, each once, as DuckDB reads them. */
async function expectSameRows(actual: string, expected: string): Promise<void> {
  const [counts] = await query(`SELECT count(*)::INT AS n, count(DISTINCT id)::INT AS ids FROM ${dataset(actual)}`);
  const [reference] = await query(`SELECT count(*)::INT AS n FROM ${dataset(expected)}`);
  expect(counts).toEqual({ n: reference?.["n"], ids: reference?.["n"] });
  const differ = await query(
    `SELECT count(*)::INT AS n FROM ((SELECT id, day, n FROM ${dataset(actual)} EXCEPT ALL SELECT id, day, n FROM ${dataset(expected)}) UNION ALL (SELECT id, day, n FROM ${dataset(expected)} EXCEPT ALL SELECT id, day, n FROM ${dataset(actual)}))`,
  );
  expect(differ[0]?.["n"]).toBe(0);
}

describe("cutting inputs into splits", () => {
  for (const kind of ["ndjson", "csv"] as const) {
    test(`${kind} splits cover the input end to end, begin on a record and know the line they begin on`, async () => {
      const path = kind === "csv" ? await writeInput("cut.csv", 3000, csvRow, "id,day,n") : await writeInput("cut.ndjson", 3000, ndjsonLine);
      const bytes = new Uint8Array(await Bun.file(path).arrayBuffer());
      const rule = kind === "csv" ? ({ kind: "csv", delimiter: 44, quote: 34 } as const) : ({ kind: "lines" } as const);
      const splits = [];
      for await (const split of cutSplits("test", [path], rule, 4096)) splits.push(split);
      expect(splits.length).toBeGreaterThan(10);
      expect(splits[0]?.start).toBe(0);
      expect(splits.at(-1)?.end).toBe(bytes.length);
      const text = new TextDecoder().decode(bytes);
      for (const [i, split] of splits.entries()) {
        expect(split.seq).toBe(i + 1);
        expect(split.whole).toBe(false);
        if (i > 0) expect(split.start).toBe(splits[i - 1]?.end as number);
        expect(split.end - split.start).toBeGreaterThanOrEqual(i === splits.length - 1 ? 1 : 4096);
        const before = text.slice(0, split.start);
        expect(split.line).toBe(before.split("\n").length - 1);
        if (split.start > 0) expect(bytes[split.start - 1]).toBe(10);
        // CSV: never inside a quoted field (an even number of quotes before the cut).
        if (kind === "csv") expect(before.split('"').length % 2).toBe(1);
      }
    });
  }

  test("a compressed input is one whole split, however large", async () => {
    const path = join(dir.path, "cut.ndjson.gz");
    await Bun.write(path, Bun.gzipSync(new TextEncoder().encode(Array.from({ length: 5000 }, (_, i) => ndjsonLine(i + 1)).join("\n"))));
    const splits = [];
    for await (const split of cutSplits("test", [path], { kind: "lines" }, 4096)) splits.push(split);
    expect(splits.map((s) => [s.start, s.whole])).toEqual([[0, true]]);
  });
});

describe("workers sharing a job", () => {
  for (const kind of ["ndjson", "csv"] as const) {
    test(`3 concurrent ${kind} workers write what one process writes, each record once`, async () => {
      const input = kind === "csv" ? await writeInput("in.csv", 30_000, csvRow, "id,day,n") : await writeInput("in.ndjson", 30_000, ndjsonLine);
      const single = join(dir.path, `${kind}-single`);
      const shared = join(dir.path, `${kind}-shared`);
      const alone = await run(pipeline(input, single));
      const job = newJob();
      const distribute = { url: REDIS, job, splitBytes: 32 * 1024, leaseMs: 10_000 };
      const summaries = await Promise.all([1, 2, 3].map((w) => run(pipeline(input, shared), { distribute: { ...distribute, worker: `w${w}` } })));

      // Each worker read a part; together, every record once.
      expect(summaries.every((s) => s.in > 0)).toBe(true);
      expect(summaries.reduce((sum, s) => sum + s.in, 0)).toBe(alone.in);
      expect(summaries.reduce((sum, s) => sum + s.written, 0)).toBe(alone.written);
      await expectSameRows(join(shared, "events"), join(single, "events"));
      expect(await letters(join(shared, "dead-letter"))).toEqual(await letters(join(single, "dead-letter")));
      // Every split was acknowledged: nothing is left pending in the queue.
      const redis = new RedisClient(REDIS);
      const streams = (await redis.send("KEYS", [`sluice:job:${job}:*:splits`])) as string[];
      expect(streams.length).toBe(1);
      const [pending] = (await redis.send("XPENDING", [streams[0] as string, "workers"])) as [number];
      expect(pending).toBe(0);
      redis.close();

      // The job is finished: a worker started again with its name reads nothing and writes nothing.
      const again = await run(pipeline(input, shared), { distribute: { ...distribute, worker: "w4" } });
      expect([again.in, again.written]).toEqual([0, 0]);
    });
  }

  for (const [broker, url] of [
    ["Redis", REDIS],
    ["NATS JetStream", NATS],
  ] as const) {
    test(`workers on ${broker} with a filter in the pipe end and write what one process writes; a dead worker's split is read in another round`, async () => {
      const input = await writeInput(`filtered-${broker.length}.ndjson`, 20_000, ndjsonLine);
      // Records a filter drops never reach a sink: their splits are acknowledged when the round completes.
      const filtered = (out: string) =>
        fromNdjson(input).pipe(
          filter((record) => (record as { id?: number }).id === undefined || (record as { id: number }).id % 7 !== 0),
          validate(Event),
          deadLetter(join(out, "dead-letter"), { maxFileAgeMs: 200 }),
          toParquet(join(out, "events"), { schema: Event, partitionBy: ["day"], maxFileAgeMs: 500 }),
        );
      const single = join(dir.path, `filtered-single-${broker.length}`);
      const shared = join(dir.path, `filtered-shared-${broker.length}`);
      await run(filtered(single));
      const job = newJob();
      const distribute = { url, job, splitBytes: 16 * 1024, leaseMs: 2000 };
      // A worker that takes the first split and dies: its queue closes without acknowledging it.
      const { createDistribution } = await import("../../src/distribute/distribution.ts");
      const dying = createDistribution({ ...distribute, worker: "dies" });
      const key = `fromNdjson.${shortHash(JSON.stringify(["fromNdjson", [input]]))}`;
      const queue = await dying.open(key);
      const { cutSplits: cut } = await import("../../src/sources/splits.ts");
      const first = await queue.take(() => cut("fromNdjson", [input], { kind: "lines" }, distribute.splitBytes), () => false);
      expect(first?.split.seq).toBe(1);
      await dying.close();

      const summaries = await Promise.all(["a", "b"].map((worker) => run(filtered(shared), { distribute: { ...distribute, worker } })));
      await expectSameRows(join(shared, "events"), join(single, "events"));
      expect(await letters(join(shared, "dead-letter"))).toEqual(await letters(join(single, "dead-letter")));
      // The dead worker's split was read by one of them (every line of the input was read once).
      expect(summaries.reduce((sum, s) => sum + s.in, 0)).toBe(20_000);
    });
  }

  test("a worker stopped part-way gives its split back once its commits are done: another takes it at once, not after the lease", async () => {
    const input = await writeInput("stopped.ndjson", 20_000, ndjsonLine);
    const single = join(dir.path, "stopped-single");
    const shared = join(dir.path, "stopped-shared");
    await run(pipeline(input, single));
    const job = newJob();
    // A lease longer than this test may take: only a split given back lets the second worker finish.
    const distribute = { url: REDIS, job, splitBytes: 16 * 1024, leaseMs: 600_000 };
    const stop = new AbortController();
    const first = await run(pipeline(input, shared), {
      signal: stop.signal,
      distribute: { ...distribute, worker: "stops" },
      onStart: (flow) => {
        const timer = setInterval(() => {
          if (flow.stats.in >= 3000) {
            clearInterval(timer);
            stop.abort();
          }
        }, 1);
      },
    });
    expect(first.stopped).toBe(true);
    expect(first.in).toBeLessThan(20_000);
    const second = await run(pipeline(input, shared), { distribute: { ...distribute, worker: "finishes" } });
    expect(first.in + second.in - second.skipped).toBe(20_000);
    await expectSameRows(join(shared, "events"), join(single, "events"));
    expect(await letters(join(shared, "dead-letter"))).toEqual(await letters(join(single, "dead-letter")));
  }, 90_000);

  test("a worker whose pipeline fails gives its splits back before run() rejects: another takes them at once, not after the lease", async () => {
    const input = await writeInput("failed.ndjson", 20_000, ndjsonLine);
    const single = join(dir.path, "failed-single");
    const shared = join(dir.path, "failed-shared");
    await run(pipeline(input, single));
    const job = newJob();
    // A lease longer than this test may take: only a split given back lets the second worker finish.
    const distribute = { url: REDIS, job, splitBytes: 16 * 1024, leaseMs: 600_000 };
    const failing = failingPipeline(input, shared);
    expect(await run(failing, { distribute: { ...distribute, worker: "fails" } }).then(() => "resolved", (error: Error) => error.message)).toBe("a step failed");
    const second = await run(pipeline(input, shared), { distribute: { ...distribute, worker: "finishes" } });
    expect(second.stopped).toBe(false);
    await expectSameRows(join(shared, "events"), join(single, "events"));
    expect(await letters(join(shared, "dead-letter"))).toEqual(await letters(join(single, "dead-letter")));
  }, 90_000);

  test("a later job over an input rewritten at the same path, into the same folder: a split given back and taken again is not taken for the earlier job's rows", async () => {
    // Day 1's export, written by a job of its own into the folder.
    const path = join(dir.path, "export.ndjson");
    const day = (offset: number) => (i: number) => ndjsonLine(i + offset);
    await writeInput("export.ndjson", 20_000, day(0));
    const shared = join(dir.path, "export-shared");
    const distribute = { url: REDIS, splitBytes: 16 * 1024, leaseMs: 600_000 };
    await run(pipeline(path, shared), { distribute: { ...distribute, job: newJob(), worker: "day1" } });
    // Day 2's export at the same path: other records on the same lines, in the same partitions.
    await writeInput("export.ndjson", 20_000, day(30_000));
    const single = join(dir.path, "export-day2-single");
    const day2 = await run(pipeline(path, single));
    const job = newJob();
    const failing = failingPipeline(path, shared);
    await run(failing, { distribute: { ...distribute, job, worker: "fails" } }).catch(() => undefined);
    await run(pipeline(path, shared), { distribute: { ...distribute, job, worker: "finishes" } });
    // Every day-2 row is in the folder once, beside day 1's, and every day-2 dead letter, each
    // naming its job; day 1's bad records are on the same lines.
    const [counts] = await query(`SELECT count(*)::INT AS n, count(DISTINCT id)::INT AS ids FROM ${dataset(join(shared, "events"))} WHERE id > 30000`);
    expect(counts).toEqual({ n: day2.written, ids: day2.written });
    const ofJob: string[] = [];
    for await (const letter of readDeadLetters(join(shared, "dead-letter"))) if (letter.job === job) ofJob.push(`${letter.stage} ${letter.source}:${letter.line}`);
    expect(ofJob.sort()).toEqual(await letters(join(single, "dead-letter")));
  }, 90_000);

  test("objects in a bucket are cut and shared too: plain ones by byte ranges, a gzip one whole", async () => {
    const server = await startS3rver(["dist-test"]);
    try {
      const s3 = { endpoint: server.endpoint, accessKeyId: S3RVER_KEY, secretAccessKey: S3RVER_SECRET };
      const plain = await writeInput("s3-in.ndjson", 20_000, ndjsonLine);
      await uploadFile(plain, "s3://dist-test/in/a.ndjson", s3);
      const gz = join(dir.path, "s3-in.ndjson.gz");
      await Bun.write(gz, Bun.gzipSync(new TextEncoder().encode(`${Array.from({ length: 5000 }, (_, i) => ndjsonLine(100_001 + i)).join("\n")}\n`)));
      await uploadFile(gz, "s3://dist-test/in/b.ndjson.gz", s3);
      const read = (out: string, options = {}) =>
        run(
          fromNdjson("s3://dist-test/in/*", { s3 }).pipe(
            validate(Event),
            deadLetter(join(out, "dead-letter"), { maxFileAgeMs: 200 }),
            toParquet(join(out, "events"), { schema: Event, partitionBy: ["day"], maxFileAgeMs: 500 }),
          ),
          options,
        );
      const single = join(dir.path, "s3-single");
      const shared = join(dir.path, "s3-shared");
      const alone = await read(single);
      const job = newJob();
      const summaries = await Promise.all(["a", "b"].map((worker) => read(shared, { distribute: { url: REDIS, job, splitBytes: 64 * 1024, leaseMs: 10_000, worker } })));
      expect(summaries.reduce((sum, s) => sum + s.in, 0)).toBe(alone.in);
      await expectSameRows(join(shared, "events"), join(single, "events"));
      const expected = await letters(join(single, "dead-letter"));
      expect(expected.some((l) => l.includes("s3://dist-test/in/b.ndjson.gz:"))).toBe(true);
      expect(await letters(join(shared, "dead-letter"))).toEqual(expected);
    } finally {
      await server.stop();
    }
  });

  test("two workers with the default name in one process take splits under names of their own", async () => {
    // hostname-pid alone (the old default) is what two containers on the host network running as
    // pid 1 share: one name in the group, each worker taking the other's splits for its own.
    const job = newJob();
    const [a, b] = [createDistribution({ url: REDIS, job }), createDistribution({ url: REDIS, job })] as const;
    try {
      for (const worker of [a.worker, b.worker]) {
        expect(worker.slice(0, -7)).toBe(`${hostname()}-${process.pid}`);
        expect(worker.slice(-7)).toMatch(/^-[0-9a-f]{6}$/);
      }
      expect(a.worker).not.toBe(b.worker);
      const splits = [1, 2].map((seq) => ({ seq, input: "/in.ndjson", size: 20, version: "1:20", start: (seq - 1) * 10, end: seq * 10, line: 0, whole: false }));
      const list = async function* () {
        yield* splits;
      };
      const takenA = await (await a.open("k")).take(list, () => false);
      const takenB = await (await b.open("k")).take(list, () => false);
      expect([takenA?.split.seq, takenB?.split.seq].sort()).toEqual([1, 2]);
      const redis = new RedisClient(REDIS);
      const reply = (await redis.send("XPENDING", [`sluice:job:${job}:k:splits`, "workers"])) as [number, unknown, unknown, [string, string][]];
      redis.close();
      expect(Object.fromEntries(reply[3])).toEqual({ [a.worker]: "1", [b.worker]: "1" });
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  test("a queue that cannot be reached fails the run, naming it without its password", async () => {
    const input = await writeInput("unreachable.ndjson", 10, ndjsonLine);
    const error = await run(pipeline(input, join(dir.path, "unreachable")), { distribute: { url: "redis://app:s3cret@127.0.0.1:1", job: newJob() } }).catch((e: Error) => e);
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toContain("cannot reach Redis (Redis redis://app:***@127.0.0.1:1");
    expect((error as Error).message).not.toContain("s3cret");
  });

  test("a changed input fails the worker that finds it, naming the input", async () => {
    const input = await writeInput("changing.ndjson", 5000, ndjsonLine);
    const job = newJob();
    const redis = new RedisClient(REDIS);
    // List the job by hand: its first split records the input as it was.
    const { size, mtimeMs } = await Bun.file(input).stat();
    const key = (await import("../../src/distribute/queue.ts")).shortHash(JSON.stringify(["fromNdjson", [input]]));
    const stream = `sluice:job:${job}:fromNdjson.${key}:splits`;
    await redis.send("XGROUP", ["CREATE", stream, "workers", "0", "MKSTREAM"]);
    const split = { seq: 1, input, size, version: `${Math.floor(mtimeMs) - 1000}:${size}`, start: 0, end: size, line: 0, whole: false };
    await redis.send("XADD", [stream, "1-1", "split", JSON.stringify(split)]);
    await redis.send("HSET", [`sluice:job:${job}:fromNdjson.${key}:plan`, "total", "1"]);
    redis.close();
    const failed = run(pipeline(input, join(dir.path, "changed")), { distribute: { url: REDIS, job, leaseMs: 10_000 } });
    await expect(failed).rejects.toThrow(`${input} changed since the distributed job was listed`);
  });
});

describe("sluice run --distribute", () => {
  test("its options are checked before anything runs: a job name, a queue URL sluice can use, sizes", async () => {
    const { parseRunArgs } = await import("../../src/cli/run.ts");
    expect(parseRunArgs(["--distribute", "redis://h:1", "--job", "clicks-1", "--split-bytes", "512KiB", "--lease", "20", "p.ts", "x"]).distribute).toEqual({
      url: "redis://h:1",
      job: "clicks-1",
      splitBytes: 512 * 1024,
      leaseMs: 20_000,
    });
    expect(() => parseRunArgs(["--distribute", "redis://h:1", "p.ts"])).toThrow("--distribute needs --job <name>");
    expect(() => parseRunArgs(["--distribute", "http://u:pw@h:1", "--job", "j", "p.ts"])).toThrow("--distribute: http://u:***@h:1: the work queue is a Redis stream");
    expect(() => parseRunArgs(["--job", "j", "p.ts"])).toThrow("--job goes with --distribute <url>");
    expect(() => parseRunArgs(["--distribute", "nats://h:1", "--job", "bad job", "p.ts"])).toThrow("--job must be 1 to 100 letters");
    expect(() => parseRunArgs(["--distribute", "nats://h:1", "--job", "j", "--split-bytes", "12", "p.ts"])).toThrow("--split-bytes takes a size of at least 4KiB");
    expect(() => parseRunArgs(["--distribute", "nats://h:1", "--job", "j", "--checkpoint", "c.sqlite", "p.ts"])).toThrow("--distribute and --checkpoint do not go together");
    // A usage error exits 2, before the run starts.
    const proc = Bun.spawn(["bun", MAIN, "run", "--distribute", "ftp://h", "--job", "j", PIPELINE, "x", "y"], { stdout: "pipe", stderr: "pipe" });
    expect(await proc.exited).toBe(2);
  });

  test("250k lines over 3 workers, one killed mid-run and started again, equal the single-process result", async () => {
    // About 22 splits of 512 KiB, and files of 5,000 rows: the victim commits its first file after
    // about 15,000 of its records, with most of the input left, however fast the machine.
    const input = await writeInput("big.ndjson", 250_000, ndjsonLine);
    const single = join(dir.path, "big-single");
    const shared = join(dir.path, "big-shared");
    const job = newJob();
    const worker = (id: string) =>
      Bun.spawn(
        ["bun", MAIN, "run", "--no-progress", "--run-id", id, "--distribute", REDIS, "--job", job, "--split-bytes", "512KiB", "--lease", "6", PIPELINE, input, shared, "--pause-every", "5000", "--file-rows", "5000"],
        { stdout: "pipe", stderr: "pipe" },
      );
    const workers = [worker("w1"), worker("w2"), worker("w3")];
    // The single-process reference runs alongside the workers: it takes a core whenever they wait
    // (starting, the restart, the killed worker's split idle until its lease ends).
    const reference = Bun.spawn(["bun", MAIN, "run", "--no-progress", PIPELINE, input, single], { stdout: "pipe", stderr: "pipe" });
    // Killed once a file of its own is committed (its names carry its run id), with input left.
    const committed = () => {
      try {
        return readdirSync(join(shared, "events"), { recursive: true, encoding: "utf8" }).some((name) => name.includes("part-w2-") && name.endsWith(".parquet"));
      } catch {
        return false;
      }
    };
    const deadline = Date.now() + 60_000;
    while (!committed() && Date.now() < deadline) await Bun.sleep(20);
    expect(committed()).toBe(true);
    workers[1]?.kill("SIGKILL");
    await workers[1]?.exited;
    const restarted = worker("w2b");
    const codes = await Promise.all([workers[0]?.exited, workers[2]?.exited, restarted.exited]);
    const errors = await Promise.all([workers[0], workers[2], restarted].map((w) => new Response(w?.stderr).text()));
    expect({ codes, errors: codes.some((c) => c !== 0) ? errors : [] }).toEqual({ codes: [0, 0, 0], errors: [] });

    expect(await reference.exited).toBe(0);
    await expectSameRows(join(shared, "events"), join(single, "events"));
    const expectedLetters = await letters(join(single, "dead-letter"));
    expect(expectedLetters.length).toBe(5_000);
    expect(await letters(join(shared, "dead-letter"))).toEqual(expectedLetters);
  }, 240_000);
});
