/**
 * The sink's failure paths: the source errors, the subscriber leaves early, the folder cannot be
 * written, an encoder worker dies. Each must end the run loudly (or quietly, when asked to stop),
 * leave only whole files under final names, and release its timer and workers.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { mkdir, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { concat, from, Subject, throwError } from "rxjs";
import * as v from "valibot";
import { type Commit, fromNdjson, run, toParquet } from "../../src/index.ts";
import { ParquetWriteError } from "../../src/parquet/errors.ts";
import { endIdleEncoders } from "../../src/parquet/encoders.ts";
import { dataset, query, tempDir } from "../helpers/duckdb.ts";

const Row = v.object({ id: v.number(), name: v.string(), key: v.string() });
type Row = v.InferOutput<typeof Row>;
const rows = (first: number, n: number, key = "a"): Row[] =>
  Array.from({ length: n }, (_, i) => ({ id: first + i, name: `row ${first + i}`, key }));

const root = join(import.meta.dir, "..", "..");

let dir: { path: string; remove: () => Promise<void> };
beforeAll(async () => {
  dir = await tempDir("sluice-sink-failures-");
});
afterAll(() => dir.remove());
const folder = (name: string) => join(dir.path, name);

/** Every file under a folder, relative to it. */
async function filesUnder(path: string): Promise<string[]> {
  return ((await readdir(path, { recursive: true, withFileTypes: true })) as { isFile(): boolean; parentPath: string; name: string }[])
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name).slice(path.length + 1))
    .sort();
}

/**
 * Replaces the global `Worker` so the test sees the encoder workers the sink starts (and can stand
 * in a script of its own for src/parquet/worker.ts). Restored after each test. Workers kept from
 * earlier sinks are ended first, so every worker of the test is one it sees start.
 *
 * `released`: workers ended, or kept for a later sink without holding the process open (unref).
 */
const RealWorker = globalThis.Worker;
interface WorkerSpy {
  readonly started: Worker[];
  terminated: number;
  kept: number;
  readonly released: () => number;
}
function spyOnWorkers(replacement?: string): WorkerSpy {
  endIdleEncoders();
  const spy: WorkerSpy = { started: [], terminated: 0, kept: 0, released: () => spy.terminated + spy.kept };
  globalThis.Worker = class SpiedWorker extends RealWorker {
    constructor(url: string | URL, options?: WorkerOptions) {
      super(replacement ? join(root, replacement) : url, options);
      spy.started.push(this);
    }
    override terminate(): void {
      spy.terminated++;
      super.terminate();
    }
    override unref(): void {
      spy.kept++;
      super.unref();
    }
  } as typeof Worker;
  return spy;
}
afterEach(() => {
  globalThis.Worker = RealWorker;
});

/** Resolves with "timeout" when `promise` has not settled after `ms`. */
function within<T>(promise: Promise<T>, ms: number): Promise<T | "timeout"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/** Waits until `check` holds (polling), or fails after `ms` (generous: encoder workers start slowly on a busy machine). */
async function eventually(check: () => boolean | Promise<boolean>, ms = 30_000): Promise<void> {
  const until = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > until) throw new Error("condition not reached in time");
    await Bun.sleep(10);
  }
}

/** Runs test/fixtures/parquet-release.ts; resolves with its output, or "timeout" if it did not exit by itself. */
async function release(mode: string, out: string, ms: number): Promise<{ code: number; stdout: string; stderr: string } | "timeout"> {
  const child = Bun.spawn(["bun", join(root, "test/fixtures/parquet-release.ts"), mode, out], { stdout: "pipe", stderr: "pipe" });
  const exited = await within(child.exited, ms);
  if (exited === "timeout") {
    child.kill();
    await child.exited;
    return "timeout";
  }
  return { code: exited, stdout: await new Response(child.stdout).text(), stderr: await new Response(child.stderr).text() };
}

describe("toParquet when the source errors", () => {
  test("errors with the source's error, keeps committed files whole, drops the buffered rows and closes its workers", async () => {
    const spy = spyOnWorkers();
    const out = folder("source-error");
    const source = new Subject<Row>();
    const commits: Commit[] = [];
    const errors: unknown[] = [];
    run(source.pipe(toParquet(out, { schema: Row, partitionBy: ["key"], maxFileRows: 100, encoders: 2 })), {
      onValue: (c) => commits.push(c as Commit),
    }).then(
      () => errors.push(new Error("the run completed")),
      (error) => errors.push(error),
    );
    for (const row of [...rows(0, 100, "a"), ...rows(100, 100, "b")]) source.next(row);
    await eventually(() => commits.length === 2);
    // Buffered, never committed: the run fails before their file is due.
    for (const row of rows(200, 30, "a")) source.next(row);
    const boom = new Error("broker connection lost");
    source.error(boom);
    await eventually(() => errors.length === 1);
    expect(errors[0]).toBe(boom);
    await eventually(() => spy.released() === spy.started.length);
    expect(spy.started.length).toBeGreaterThan(0);
    expect(await filesUnder(out)).toEqual(["key=a/part-000000000000.parquet", "key=b/part-000000000100.parquet"]);
    const [r] = await query(`SELECT count(*) AS n, min(id) AS lo, max(id) AS hi FROM ${dataset(out)}`);
    expect(r).toEqual({ n: "200", lo: 0, hi: 199 });
  });

  test("errors with a source error that arrives while files are being written, and those files still commit whole", async () => {
    const spy = spyOnWorkers();
    const out = folder("error-inflight");
    const boom = new Error("disk of the source gone");
    // 5 files flushed synchronously, then the error before any of them is durable.
    const source = concat(from(rows(0, 5000)), throwError(() => boom));
    const error = await run(source.pipe(toParquet(out, { schema: Row, maxFileRows: 1000, encoders: 2 }))).catch((e) => e);
    expect(error).toBe(boom);
    // The writes in flight finish after the error (their files are whole), then the workers stop.
    await eventually(() => spy.started.length > 0 && spy.released() === spy.started.length, 30_000);
    expect(await filesUnder(out)).toEqual([0, 1000, 2000, 3000, 4000].map((i) => `part-${String(i).padStart(12, "0")}.parquet`));
    const [r] = await query(`SELECT count(*) AS n, count(DISTINCT id) AS ids FROM ${dataset(out)}`);
    expect(r).toEqual({ n: "5000", ids: "5000" });
  });

  test("lets the process exit by itself after the error: no timer or worker is left", async () => {
    const result = await release("source-error", folder("exit-error"), 20_000);
    expect(result).not.toBe("timeout");
    if (result === "timeout") return;
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({ commits: [{ path: join(folder("exit-error"), "part-000000000000.parquet"), rows: 50 }], failure: "broker gone" });
    expect(await filesUnder(folder("exit-error"))).toEqual(["part-000000000000.parquet"]);
  });
});

describe("toParquet's folder after a run that failed before its first file", () => {
  const failing = (n: number) => concat(from(rows(0, n, "a")), throwError(() => new Error("input gone")));

  test("is not left behind empty when the run made it, partition folders included", async () => {
    const out = folder("made-then-failed");
    const source = new Subject<Row>();
    const ended = run(source.pipe(toParquet(out, { schema: Row, partitionBy: ["key"] }))).catch((e) => e);
    for (const row of rows(0, 10, "a")) source.next(row);
    await eventually(() => existsSync(out));
    source.error(new Error("input gone"));
    expect(await ended).toBeInstanceOf(Error);
    expect(await readdir(dir.path)).not.toContain("made-then-failed");
  });

  test("is gone, with the temporary file of a row group already written, by the time the run fails", async () => {
    const out = folder("row-group-then-failed");
    const source = new Subject<Row>();
    const ended = run(source.pipe(toParquet(out, { schema: Row, partitionBy: ["key"], rowGroupSize: 5 }))).catch((e) => e);
    for (const row of rows(0, 12, "a")) source.next(row);
    // A row group is on its way into the partition's file (under a temporary name), none committed.
    await eventually(async () => (await readdir(out, { recursive: true }).catch(() => [])).some((name) => name.endsWith(".tmp")));
    source.error(new Error("input gone"));
    expect(await ended).toBeInstanceOf(Error);
    expect(await readdir(dir.path)).not.toContain("row-group-then-failed");
  });

  test("is gone by the time the run fails at once, as with an input that does not exist, and the folder can be locked again", async () => {
    const out = folder("missing-input");
    const error = await run(fromNdjson(folder("no-such-input.ndjson")).pipe(toParquet<unknown>(out, { schema: Row }))).catch((e) => e);
    expect(String(error)).toContain("does not exist");
    expect(await readdir(dir.path)).not.toContain("missing-input");
    const summary = await run(from(rows(0, 3)).pipe(toParquet(out, { schema: Row })));
    expect(summary.written).toBe(3);
  });

  test("stays when it was there before the run, empty as it was", async () => {
    const out = folder("there-before");
    await mkdir(out);
    await run(failing(10).pipe(toParquet(out, { schema: Row }))).catch(() => undefined);
    expect(await readdir(out)).toEqual([]);
  });

  test("stays, with its files, when a file was committed before the failure", async () => {
    const out = folder("made-committed-failed");
    await run(failing(150).pipe(toParquet(out, { schema: Row, maxFileRows: 100 }))).catch(() => undefined);
    expect(await filesUnder(out)).toEqual(["part-000000000000.parquet"]);
    const [r] = await query(`SELECT count(*) AS n FROM ${dataset(out)}`);
    expect(r).toEqual({ n: "100" });
  });
});

describe("toParquet when its subscriber unsubscribes early", () => {
  test("closes its encoder workers, even with a write in flight, and that write's file is whole", async () => {
    const spy = spyOnWorkers();
    const out = folder("unsubscribe");
    const source = new Subject<Row>();
    const commits: Commit[] = [];
    const subscription = source.pipe(toParquet(out, { schema: Row, maxFileRows: 100, encoders: 2 })).subscribe((c) => commits.push(c));
    for (const row of rows(0, 250)) source.next(row);
    subscription.unsubscribe();
    expect(source.observed).toBe(false);
    await eventually(() => spy.started.length > 0 && spy.released() === spy.started.length, 30_000);
    // Unsubscribed: the files in flight were written, but no commit reached the subscriber.
    expect(commits).toEqual([]);
    expect(await filesUnder(out)).toEqual(["part-000000000000.parquet", "part-000000000100.parquet"]);
    const [r] = await query(`SELECT count(*) AS n FROM ${dataset(out)}`);
    expect(r).toEqual({ n: "200" });
  });

  // 20 s: a busy machine took 8.6 s to start and end one of these; a kept encoder worker that is
  // not unref'd holds the process for its 30 s idle time, still past this limit.
  test("lets the process exit by itself, after the files in flight committed or while one is written", async () => {
    const [idle, inflight] = await Promise.all([
      release("unsubscribe-idle", folder("exit-idle"), 20_000),
      release("unsubscribe-inflight", folder("exit-inflight"), 20_000),
    ]);
    expect(idle).not.toBe("timeout");
    expect(inflight).not.toBe("timeout");
    if (idle === "timeout" || inflight === "timeout") return;
    expect([idle.code, inflight.code]).toEqual([0, 0]);
    expect(await filesUnder(folder("exit-idle"))).toEqual(["part-000000000000.parquet"]);
    expect(await filesUnder(folder("exit-inflight"))).toEqual(["part-000000000000.parquet", "part-000000000050.parquet"]);
  });

  test("the check above can fail: a sink left subscribed keeps the process alive", async () => {
    expect(await release("keep", folder("exit-keep"), 1500)).toBe("timeout");
  });
});

describe("toParquet when the folder cannot be written", () => {
  test("errors, naming the path, when the dataset folder would be under a regular file", async () => {
    const file = folder("a-file");
    await writeFile(file, "not a folder");
    const out = join(file, "dataset");
    const error = await run(from(rows(0, 10)).pipe(toParquet(out, { schema: Row }))).catch((e) => e);
    expect(error).toBeInstanceOf(Error);
    expect(String(error.message)).toContain(out);
  });

  test("that error is a ParquetWriteError, as the sink's documentation promises for unwritable output", async () => {
    const file = folder("a-file-2");
    await writeFile(file, "not a folder");
    const out = join(file, "dataset");
    const error = await run(from(rows(0, 10)).pipe(toParquet(out, { schema: Row }))).catch((e) => e);
    expect(error).toBeInstanceOf(ParquetWriteError);
    expect(error.path).toContain(out);
  });

  test("errors with a ParquetWriteError naming the file when a regular file stands where a partition's folder goes", async () => {
    const out = folder("blocked-partition");
    await mkdir(out, { recursive: true });
    await writeFile(join(out, "key=b"), "in the way");
    const records = [...rows(0, 10, "a"), ...rows(10, 10, "b")];
    const error = await run(from(records).pipe(toParquet(out, { schema: Row, partitionBy: ["key"], mode: "append" }))).catch((e) => e);
    expect(error).toBeInstanceOf(ParquetWriteError);
    expect(error.path).toStartWith(join(out, "key=b", "part-"));
    expect(error.message).toContain(error.path);
    expect(error.code).toBe("EEXIST");
    // The other partition's write may still be finishing: wait for it, then nothing half-written is left.
    await Bun.sleep(300);
    const files = await filesUnder(out);
    expect(files.filter((f) => f.endsWith(".tmp"))).toEqual([]);
    expect(files.filter((f) => f.startsWith("key=b/"))).toEqual([]);
  });

  test("errors with a ParquetWriteError when encoding runs on the main thread too", async () => {
    const out = folder("blocked-inline");
    await mkdir(out, { recursive: true });
    await writeFile(join(out, "key=a"), "in the way");
    const error = await run(from(rows(0, 10, "a")).pipe(toParquet(out, { schema: Row, partitionBy: ["key"], mode: "append", encoders: 0 }))).catch(
      (e) => e,
    );
    expect(error).toBeInstanceOf(ParquetWriteError);
    expect(error.path).toStartWith(join(out, "key=a", "part-"));
  });
});

describe("toParquet when an encoder worker dies", () => {
  test("fails the run with a ParquetWriteError saying the worker failed when the worker crashes with an error, and closes it", async () => {
    const spy = spyOnWorkers("test/fixtures/encoder-worker-throws.ts");
    const out = folder("worker-throws");
    const outcome = await within(
      run(from(rows(0, 10)).pipe(toParquet(out, { schema: Row }))).then(
        () => "completed",
        (e) => e,
      ),
      5000,
    );
    expect(outcome).toBeInstanceOf(ParquetWriteError);
    expect((outcome as ParquetWriteError).message).toContain("parquet encoder worker failed");
    expect((outcome as ParquetWriteError).message).toContain("simulated wasm trap");
    expect((outcome as ParquetWriteError).path).toBe(join(out, "part-000000000000.parquet"));
    await eventually(() => spy.started.length === 1 && spy.terminated === 1);
  });

  test("fails the run, not hangs, when the worker's thread ends without an error", async () => {
    spyOnWorkers("test/fixtures/encoder-worker-exits.ts");
    const out = folder("worker-exits");
    const outcome = await within(
      run(from(rows(0, 10)).pipe(toParquet(out, { schema: Row }))).then(
        () => "completed",
        (e) => e,
      ),
      5000,
    );
    expect(outcome).toBeInstanceOf(ParquetWriteError);
    expect((outcome as ParquetWriteError).path).toBe(join(out, "part-000000000000.parquet"));
  });
});
