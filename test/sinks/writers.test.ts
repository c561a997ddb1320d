/**
 * Two runs that meet must not lose data (issue 12). Before the folder lock, two runs started at once
 * into one folder both exited 0 and one's files replaced the other's (same names); two overwrite
 * runs mixed their datasets; two runs sharing a checkpoint duplicated rows; a killed overwrite run
 * left a partial dataset. Each test below reproduces one of those meetings.
 */
import { Database } from "bun:sqlite";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { from } from "rxjs";
import * as v from "valibot";
import { deadLetter, validate } from "../../operators/index.ts";
import { fromPush, run, toParquet } from "../../src/index.ts";
import { isLive, LockedError, readLockFile } from "../../src/io/lock.ts";
import { dataset, query, tempDir } from "../helpers/duckdb.ts";

const ROOT = join(import.meta.dir, "..", "..");
const SLOW = "test/fixtures/slow-rows.ts";
const Row = v.object({ id: v.pipe(v.number(), v.integer()), tag: v.string() });
type Row = v.InferOutput<typeof Row>;
const rows = (n: number, tag: string): Row[] => Array.from({ length: n }, (_, id) => ({ id, tag }));

let dir: { path: string; remove: () => Promise<void> };
beforeAll(async () => {
  dir = await tempDir("sluice-writers-");
});
afterAll(() => dir.remove());
let cases = 0;
const fresh = () => join(dir.path, `case-${cases++}`);

/** Rows of a dataset by tag. */
async function tags(events: string): Promise<Record<string, number>> {
  const found = await query(`SELECT tag, count(*)::INT AS n FROM ${dataset(events)} GROUP BY tag ORDER BY tag`);
  return Object.fromEntries(found.map((r) => [r.tag, r.n]));
}

/** `sluice run test/fixtures/slow-rows.ts ...`, as a process. */
function sluiceRun(args: string[]) {
  const child = Bun.spawn(["bun", "src/cli/main.ts", "run", "--no-progress", ...args], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  const output = Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]).then(([stdout, stderr, code]) => ({
    stdout,
    stderr,
    code,
  }));
  return { child, output };
}

async function until(what: string, check: () => boolean, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await Bun.sleep(10);
  }
}

/** Committed Parquet files in a folder (recursively). */
const parquetIn = (folder: string) => (existsSync(folder) ? readdirSync(folder, { recursive: true, encoding: "utf8" }).filter((n) => n.endsWith(".parquet")).length : 0);
const hasParquet = (folder: string) => parquetIn(folder) > 0;
const written = (stdout: string) => Number(/^written\s+([\d,]+)/m.exec(stdout)?.[1]?.replaceAll(",", ""));

/** An earlier run's complete dataset (30 rows tagged "old") and its 3 dead letters. */
async function oldDataset(out: string): Promise<void> {
  const records = [...rows(30, "old"), { id: "bad 1", tag: "old" }, { id: "bad 2", tag: "old" }, { id: "bad 3", tag: "old" }];
  await run(from(records).pipe(validate(Row), deadLetter(join(out, "dead-letter")), toParquet(join(out, "events"), { schema: Row, maxFileRows: 10 })));
}

describe("two runs into one dataset folder", () => {
  test("started at once in one process: the second is refused, naming the first, and the first's rows are all there", async () => {
    const out = fresh();
    const [a, b] = await Promise.allSettled([
      run(from(rows(100, "A")).pipe(toParquet(out, { schema: Row })), { runId: "run-a" }),
      run(from(rows(70, "B")).pipe(toParquet(out, { schema: Row })), { runId: "run-b" }),
    ]);
    expect(a.status).toBe("fulfilled");
    expect(b.status).toBe("rejected");
    const error = (b as PromiseRejectedResult).reason as LockedError;
    expect(error).toBeInstanceOf(LockedError);
    expect(error.message).toContain(`dataset folder ${out} is in use by run run-a (pid ${process.pid} on host ${hostname()}, since 20`);
    expect(error.message).toContain(join(dir.path, `.${out.split("/").pop()}.lock`));
    // Before the lock both wrote part-000000000000.parquet and the second rename replaced the first.
    expect(await tags(out)).toEqual({ A: 100 });
    expect(existsSync(error.path)).toBe(false);
  });

  test("a second pipeline on a dead-letter folder in use is refused before it reads anything", async () => {
    const out = fresh();
    const events = fromPush<unknown>({ name: "a" });
    const first = run(events.pipe(validate(Row), deadLetter(join(out, "dead-letter")), toParquet(join(out, "a"), { schema: Row })), { runId: "dl-a" });
    let read = 0;
    const second = run(
      from(rows(5, "B")).pipe(
        validate(Row),
        deadLetter(join(out, "dead-letter")),
        toParquet(join(out, "b"), { schema: Row }),
      ),
      { runId: "dl-b", onValue: () => read++ },
    );
    await expect(second).rejects.toThrow(`dead-letter folder ${join(out, "dead-letter")} is in use by run dl-a`);
    events.push({ id: 1, tag: "A" });
    events.push({ id: "two", tag: "A" });
    events.end();
    expect(await first).toMatchObject({ written: 1, deadLettered: 1 });
    expect(read).toBe(0);
    expect(hasParquet(join(out, "b"))).toBe(false);
  });

  test("as two processes: the second exits 1 naming the first run's id, pid and host; the first writes every row", async () => {
    const out = fresh();
    const go = join(out, "go");
    const a = sluiceRun([SLOW, "--out", out, "--tag", "A", "--hold-until", go, "--run-id", "proc-a"]);
    // Two files: at least 10 rows read, so at least one dead letter.
    await until("the first run's files", () => parquetIn(join(out, "events")) >= 2);
    const b = await sluiceRun([SLOW, "--out", out, "--tag", "B", "--run-id", "proc-b"]).output;
    expect(b.code).toBe(1);
    expect(b.stderr).toContain(`dataset folder ${join(out, "events")} is in use by run proc-a (pid ${a.child.pid} on host ${hostname()}`);
    writeFileSync(go, "");
    const first = await a.output;
    expect(first.code).toBe(0);
    expect(await tags(join(out, "events"))).toEqual({ A: written(first.stdout) });
    expect(readdirSync(join(out, "dead-letter")).every((name) => name.includes("proc-a"))).toBe(true);
  });

  test("two overwrite runs as processes: the second is refused, readers see the old dataset until the first completes, then only the first's", async () => {
    const out = fresh();
    await oldDataset(out);
    const go = join(out, "go");
    const a = sluiceRun([SLOW, "--out", out, "--tag", "A", "--mode", "overwrite", "--hold-until", go, "--run-id", "over-a"]);
    await until("the first run's staged files", () => hasParquet(join(out, ".events.staging-over-a")));
    const b = await sluiceRun([SLOW, "--out", out, "--tag", "B", "--mode", "overwrite", "--run-id", "over-b"]).output;
    expect(b.code).toBe(1);
    expect(b.stderr).toContain("is in use by run over-a");
    // While the first run goes on, a reader sees the old dataset, whole.
    expect(await tags(join(out, "events"))).toEqual({ old: 30 });
    writeFileSync(go, "");
    const first = await a.output;
    expect(first.code).toBe(0);
    expect(await tags(join(out, "events"))).toEqual({ A: written(first.stdout) });
    expect(readdirSync(out).sort()).toEqual(["dead-letter", "events", "go"]);
  });

  test("two runs sharing a checkpoint: the second is refused before it writes anything", async () => {
    const out = fresh();
    const checkpoint = join(out, "checkpoint.sqlite");
    const go = join(out, "go");
    const a = sluiceRun([SLOW, "--out", join(out, "a"), "--tag", "A", "--hold-until", go, "--run-id", "cp-a", "--checkpoint", checkpoint]);
    await until("the first run's files", () => hasParquet(join(out, "a", "events")));
    // Into another folder, so only the checkpoint is shared; before, this one failed on SQLITE_BUSY
    // after committing files its checkpoint never recorded.
    const b = await sluiceRun([SLOW, "--out", join(out, "b"), "--tag", "B", "--run-id", "cp-b", "--checkpoint", checkpoint]).output;
    expect(b.code).toBe(1);
    expect(b.stderr).toContain(`checkpoint ${checkpoint} is in use by run cp-a (pid ${a.child.pid}`);
    expect(existsSync(join(out, "b"))).toBe(false);
    writeFileSync(go, "");
    expect((await a.output).code).toBe(0);
    const db = new Database(checkpoint, { readonly: true });
    expect(db.query("SELECT run_id FROM runs").all()).toEqual([{ run_id: "cp-a" }]);
    db.close();
  });
});

describe("an overwrite run that does not complete", () => {
  test("killed with SIGKILL: the old dataset stays whole; the next run takes the dead run's lock over and removes its staging folder", async () => {
    const out = fresh();
    await oldDataset(out);
    const a = sluiceRun([SLOW, "--out", out, "--tag", "A", "--mode", "overwrite", "--hold-until", join(out, "never"), "--run-id", "killed"]);
    await until("the killed run's staged files", () => hasParquet(join(out, ".events.staging-killed")));
    a.child.kill("SIGKILL");
    await a.output;
    expect(readLockFile(join(out, ".events.lock"))).toMatchObject({ runId: "killed", pid: a.child.pid });
    expect(await tags(join(out, "events"))).toEqual({ old: 30 });

    const next = await run(from(rows(12, "C")).pipe(toParquet(join(out, "events"), { schema: Row, mode: "overwrite" })), { runId: "after-kill" });
    expect(next.written).toBe(12);
    expect(await tags(join(out, "events"))).toEqual({ C: 12 });
    // The dead-letter folder's lock is the killed run's still (nothing took it since), and stale.
    expect(readdirSync(out).sort()).toEqual([".dead-letter.lock", "dead-letter", "events"]);
    expect(isLive(readLockFile(join(out, ".dead-letter.lock")) ?? {})).toBe(false);
  });

  test("stopped with SIGINT: exits 130, the old dataset and its dead letters stay whole, and none of its rows count as written", async () => {
    const out = fresh();
    await oldDataset(out);
    const deadBefore = readdirSync(join(out, "dead-letter"));
    const a = sluiceRun([SLOW, "--out", out, "--tag", "A", "--mode", "overwrite", "--hold-until", join(out, "never"), "--run-id", "stopped"]);
    await until("the stopped run's staged files", () => parquetIn(join(out, ".events.staging-stopped")) >= 2);
    a.child.kill("SIGINT");
    const result = await a.output;
    expect(result.code).toBe(130);
    expect(written(result.stdout)).toBe(0);
    expect(await tags(join(out, "events"))).toEqual({ old: 30 });
    expect(readdirSync(join(out, "dead-letter"))).toEqual(deadBefore);
    expect(readdirSync(out).sort()).toEqual(["dead-letter", "events"]);
  });
});
