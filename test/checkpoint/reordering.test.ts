/**
 * The checkpoint kill loop with a reordering operator: `mergeMap` with concurrency 4 and random
 * delays between the source and validate, so records reach the sink out of line order and files
 * are committed while lines of their partition are still in flight. Runs killed at random moments
 * and re-run until done must still hold every valid record and every dead letter exactly once.
 */
import { Database } from "bun:sqlite";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { writeClickstream } from "../../src/generate/clickstream.ts";
import { seededRandom } from "../../src/generate/random.ts";
import { readDeadLetters, type RunSummary } from "../../src/index.ts";
import { dataset, query, tempDir } from "../helpers/duckdb.ts";

// Each test runs the job as a subprocess, a dozen times for the kill loop: long on a busy machine.
const LONG = 300_000;
const FIXTURE = join(import.meta.dir, "../fixtures/checkpointed-reordered-clickstream.ts");
const FILES = 4;
const LINES_PER_FILE = 1500;
const TOTAL = FILES * LINES_PER_FILE;

let dir: { path: string; remove: () => Promise<void> };
let inputs: string;

beforeAll(async () => {
  dir = await tempDir("sluice-checkpoint-reordered-");
  inputs = join(dir.path, "in");
  await mkdir(inputs);
  for (let i = 0; i < FILES; i++) {
    await writeClickstream(join(inputs, `day-${i}.ndjson`), { count: LINES_PER_FILE, seed: 300 + i, defectRate: 0.05 });
  }
});

afterAll(async () => {
  if (!process.env.KEEP) await dir.remove();
  else console.log(dir.path);
});

/** When to kill a job: after some time, or once the dataset holds some number of files. */
type Kill = { readonly afterMs: number } | { readonly afterFiles: number };

/** Runs the fixture job; resolves with its summary, or undefined when it was killed. */
async function job(out: string, kill?: Kill): Promise<RunSummary | undefined> {
  const child = Bun.spawn(["bun", FIXTURE, join(inputs, "*.ndjson"), out], { stdout: "pipe", stderr: "pipe" });
  let timer: ReturnType<typeof setTimeout> | undefined;
  if (kill && "afterMs" in kill) timer = setTimeout(() => child.kill("SIGKILL"), kill.afterMs);
  else if (kill) {
    const watch = async () => {
      if ((await files(out)).length >= kill.afterFiles) child.kill("SIGKILL");
      else if (child.exitCode === null) timer = setTimeout(watch, 10);
    };
    timer = setTimeout(watch, 10);
  }
  const [code, stdout, stderr] = await Promise.all([child.exited, new Response(child.stdout).text(), new Response(child.stderr).text()]);
  clearTimeout(timer);
  if (child.signalCode !== null) return undefined;
  if (code !== 0) throw new Error(`job failed (${code}): ${stderr}`);
  return JSON.parse(stdout.trim().split("\n").pop() as string) as RunSummary;
}

/** Runs the checkpoint recorded as finished (0 before the first run ends, or with no checkpoint yet). */
function finishedRuns(out: string): number {
  const path = join(out, "checkpoint.sqlite");
  if (!existsSync(path)) return 0;
  const db = new Database(path, { readonly: true });
  try {
    return (db.query("SELECT count(*) AS n FROM runs WHERE finished_at IS NOT NULL").get() as { n: number }).n;
  } catch {
    return 0; // The table is not there yet: the first run was killed while creating it.
  } finally {
    db.close();
  }
}

/** The committed Parquet files of the dataset, by path. */
async function files(out: string): Promise<string[]> {
  const found: string[] = [];
  const folder = join(out, "events");
  try {
    for await (const path of new Bun.Glob("**/*.parquet").scan({ cwd: folder, onlyFiles: true })) found.push(join(folder, path));
  } catch (error) {
    // Not created yet (the job is starting), or moved aside by the first run's "overwrite".
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  return found.sort();
}

/**
 * Every row of the dataset, ordered, with how often its event id occurs; and every dead letter's
 * stage and position, sorted.
 */
async function contents(out: string) {
  const rows = (await files(out)).length === 0
    ? []
    : await query(
        `SELECT count(*) OVER (PARTITION BY event_id)::INTEGER AS n, * FROM ${dataset(join(out, "events"))} ORDER BY event_id, n`,
      );
  const letters: string[] = [];
  for await (const e of readDeadLetters(join(out, "dead-letter"))) letters.push(`${e.stage} ${e.source}:${e.line}`);
  letters.sort();
  return { rows, letters };
}

describe("checkpoint with a reordering operator", () => {
  let reference: Awaited<ReturnType<typeof contents>>;
  // How long the whole job takes here, so kills land inside runs on fast and slow machines alike.
  let uninterruptedMs = 2000;

  test("a run without interruptions writes every valid record once and dead-letters every bad line once", async () => {
    const out = join(dir.path, "reference");
    const started = performance.now();
    const summary = (await job(out)) as RunSummary;
    uninterruptedMs = performance.now() - started;
    expect(summary.in).toBe(TOTAL);
    expect(summary.dropped).toBe(0);
    expect(summary.written + summary.deadLettered).toBe(TOTAL);
    reference = await contents(out);
    expect(reference.rows.length).toBe(summary.written);
    expect(reference.rows.every((r) => r.n === 1)).toBe(true);
    expect(reference.letters.length).toBe(summary.deadLettered);
    expect(new Set(reference.letters).size).toBe(reference.letters.length);
  }, LONG);

  test("runs killed (SIGKILL) at random moments and re-run until done resume where they stopped and hold every record and dead letter exactly once", async () => {
    const out = join(dir.path, "killed");
    const random = seededRandom(17);
    let kills = 0;
    // Rows and files the dataset held after each killed attempt.
    const after: { rows: number; files: string[] }[] = [];
    let summary: RunSummary | undefined;
    // The first run to record its end in the checkpoint, and the files it left: the kill of a run
    // may land after that (between the record and the process's exit), and the run after it then
    // starts over and replaces the dataset, which is right but not a resume.
    let firstFinish: { files: string[]; in: number | undefined } | undefined;
    const noteFinish = async (result: RunSummary | undefined) => {
      if (!firstFinish && finishedRuns(out) > 0) firstFinish = { files: await files(out), in: result?.in };
    };
    // The first attempt is killed once it has committed a few of the ~45 files, so one kill surely
    // lands between commits whatever the machine's load. Nine more are killed anywhere from
    // startup to near the end of a whole run; a resumed run has less to do, so later attempts may
    // finish before their kill, which is fine. Then runs without a kill until one finishes.
    for (let attempt = 0; attempt < 10; attempt++) {
      const kill = attempt === 0 ? { afterFiles: 6 } : { afterMs: 50 + random.next() * uninterruptedMs * 0.9 };
      const result = await job(out, kill);
      if (!result && !firstFinish && finishedRuns(out) === 0) {
        kills++;
        const present = await files(out);
        const rows = present.length === 0 ? 0 : Number((await query(`SELECT count(*) AS n FROM ${dataset(join(out, "events"))}`))[0]?.n);
        after.push({ rows, files: present });
      }
      await noteFinish(result);
    }
    for (let attempt = 0; attempt < 3 && !summary; attempt++) {
      summary = await job(out);
      await noteFinish(summary);
    }
    expect(summary?.stopped).toBe(false);
    expect(kills).toBeGreaterThan(0);

    const got = await contents(out);
    const duplicated = got.rows.filter((r) => r.n !== 1).length;
    const ids = new Set(got.rows.map((r) => r.event_id));
    const missing = reference.rows.filter((r) => !ids.has(r.event_id)).length;
    const letters = new Set(got.letters);
    const missingLetters = reference.letters.filter((l) => !letters.has(l)).length;
    expect({ duplicated, missing, extraLetters: got.letters.length - letters.size, missingLetters }).toEqual({
      duplicated: 0,
      missing: 0,
      extraLetters: 0,
      missingLetters: 0,
    });
    expect(got.rows).toEqual(reference.rows);
    expect(got.letters).toEqual(reference.letters);

    // It resumed: some attempt was killed after it had committed files and before the end, the
    // files it left are all part of the dataset the first finished run left, and that run did
    // not read every line again (when it was not killed after its end, it says how many it read).
    const partial = after.find((a) => a.rows > 0 && a.rows < reference.rows.length);
    expect(partial).toBeDefined();
    const finished = new Set(firstFinish?.files);
    expect(partial?.files.filter((f) => !finished.has(f))).toEqual([]);
    if (firstFinish?.in !== undefined) expect(firstFinish.in).toBeLessThan(TOTAL);
  }, LONG);
});
