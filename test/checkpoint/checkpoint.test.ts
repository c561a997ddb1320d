import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { appendFile, copyFile, mkdir } from "node:fs/promises";
import { join } from "node:path";
import { openCheckpoint } from "../../src/checkpoint/checkpoint.ts";
import { deadLetterFileName } from "../../src/deadletter/entry.ts";
import { readDeadLetters, type RunSummary } from "../../src/index.ts";
import { writeClickstream } from "../../src/generate/clickstream.ts";
import { seededRandom } from "../../src/generate/random.ts";
import { dataset, query, tempDir } from "../helpers/duckdb.ts";

// Each test runs the job as a subprocess, up to 40 times for the kill loop: minutes on a busy machine.
const LONG = 300_000;
const FIXTURE = join(import.meta.dir, "../fixtures/checkpointed-clickstream.ts");

let dir: { path: string; remove: () => Promise<void> };
// The clickstream inputs every test reads. No test changes them: one that needs other input copies them first.
let inputs: string;
/** Lines per input file (four files). Enough for dozens of commits per run, so kills land between them. */
const PER_FILE = 10_000;

beforeAll(async () => {
  dir = await tempDir("sluice-checkpoint-");
  inputs = join(dir.path, "in");
  await mkdir(inputs);
  for (let i = 0; i < 4; i++) await writeClickstream(join(inputs, `day-${i}.ndjson`), { count: PER_FILE, seed: 100 + i });
});

afterAll(async () => {
  if (!process.env.KEEP) await dir.remove();
  else console.log(dir.path);
});

/** Runs the fixture job on `from` (default: the shared inputs); resolves with its summary, or undefined when it was killed. */
async function job(out: string, killAfterMs?: number, signal: "SIGKILL" | "SIGINT" = "SIGKILL", from = inputs): Promise<RunSummary | undefined> {
  const child = Bun.spawn(["bun", FIXTURE, join(from, "*.ndjson"), out], { stdout: "pipe", stderr: "pipe" });
  const timer = killAfterMs === undefined ? undefined : setTimeout(() => child.kill(signal), killAfterMs);
  const [code, stdout, stderr] = await Promise.all([child.exited, new Response(child.stdout).text(), new Response(child.stderr).text()]);
  clearTimeout(timer);
  // Killed, or interrupted before the run had installed its signal handler.
  if (child.signalCode !== null || (code === 130 && !stdout.trim())) return undefined;
  if (code !== 0) throw new Error(`job failed (${code}): ${stderr}`);
  return JSON.parse(stdout.trim().split("\n").pop() as string) as RunSummary;
}

/** Every event id in the dataset with how often it occurs, and the dead letters' positions likewise. */
async function contents(out: string) {
  const rows = await query(
    `SELECT event_id, count(*)::INTEGER AS n FROM ${dataset(join(out, "events"))} GROUP BY event_id ORDER BY event_id`,
  );
  const positions: string[] = [];
  for await (const e of readDeadLetters(join(out, "dead-letter"))) positions.push(`${e.source}:${e.line}`);
  positions.sort();
  return { rows, positions };
}

interface Reference {
  /** The output folder of the uninterrupted run. */
  readonly out: string;
  readonly summary: RunSummary;
  readonly contents: Awaited<ReturnType<typeof contents>>;
  /** How long the whole job took here, so kills land inside runs on fast and slow machines alike. */
  readonly ms: number;
}

let referenceRun: Promise<Reference> | undefined;

/**
 * One uninterrupted run of the job on the shared inputs, in a folder of its own: what every other
 * test compares with. Made by whichever test asks first, so the tests pass alone (`-t`) and in any
 * order (`--randomize`).
 */
function reference(): Promise<Reference> {
  referenceRun ??= (async () => {
    const out = join(dir.path, "reference");
    const started = performance.now();
    const summary = (await job(out)) as RunSummary;
    const ms = performance.now() - started;
    return { out, summary, contents: await contents(out), ms };
  })();
  return referenceRun;
}

describe("checkpoint", () => {
  test("a run without interruptions writes every valid record once and records every input as done", async () => {
    const { out, summary, contents: written } = await reference();
    expect(summary.in).toBe(4 * PER_FILE);
    expect(summary.written + summary.deadLettered).toBe(4 * PER_FILE);
    expect(written.rows.length).toBe(summary.written);
    expect(written.rows.every((r) => r.n === 1)).toBe(true);
    expect(written.positions.length).toBe(summary.deadLettered);
    expect(new Set(written.positions).size).toBe(written.positions.length);

    // A re-run finds everything done: it reads nothing and writes nothing.
    const again = (await job(out)) as RunSummary;
    expect(again.in).toBe(0);
    expect(again.files).toBe(0);
    expect(await contents(out)).toEqual(written);
  }, LONG);

  test("runs killed (SIGKILL) or stopped (SIGINT) at random moments and re-run until done hold every valid record exactly once", async () => {
    const { contents: expected, ms: uninterruptedMs } = await reference();
    const out = join(dir.path, "killed");
    const random = seededRandom(7);
    let kills = 0;
    let stops = 0;
    let summary: RunSummary | undefined;
    // Twelve interrupted attempts, then runs without interruption until one finishes. A kill
    // lands anywhere from startup to near the end of a whole run; a resumed run has less to do,
    // so later attempts may finish before their kill, which is fine. One in four is a graceful
    // stop, which commits what is buffered and saves the checkpoint.
    for (let attempt = 0; attempt < 12; attempt++) {
      const signal = random.next() < 0.25 ? "SIGINT" : "SIGKILL";
      const result = await job(out, 50 + Math.floor(random.next() * uninterruptedMs * 0.9), signal);
      if (!result) kills++;
      else if (result.stopped) stops++;
    }
    for (let attempt = 0; attempt < 3 && !(summary && !summary.stopped); attempt++) summary = await job(out);
    expect(summary?.stopped).toBe(false);
    expect(kills + stops).toBeGreaterThan(0);
    const got = await contents(out);
    const duplicated = got.rows.filter((r) => r.n !== 1).length;
    const ids = new Set(got.rows.map((r) => r.event_id));
    const missing = expected.rows.filter((r) => !ids.has(r.event_id)).length;
    const letters = new Set(got.positions);
    const missingLetters = expected.positions.filter((p) => !letters.has(p)).length;
    expect({ duplicated, missing, extraLetters: got.positions.length - letters.size, missingLetters }).toEqual({
      duplicated: 0,
      missing: 0,
      extraLetters: 0,
      missingLetters: 0,
    });
    expect(got).toEqual(expected);
  }, LONG);

  test("an input that grows is read from where the last run ended", async () => {
    const { contents: expected } = await reference();
    // Its own copy of the inputs: the shared ones must stay as the reference read them.
    const own = join(dir.path, "growing-in");
    await mkdir(own);
    for (let i = 0; i < 4; i++) await copyFile(join(inputs, `day-${i}.ndjson`), join(own, `day-${i}.ndjson`));
    const out = join(dir.path, "growing");
    await job(out, undefined, "SIGKILL", own);
    const extra = join(dir.path, "extra.ndjson");
    await writeClickstream(extra, { count: 500, seed: 999 });
    await appendFile(join(own, "day-3.ndjson"), await Bun.file(extra).bytes());
    const summary = (await job(out, undefined, "SIGKILL", own)) as RunSummary;
    expect(summary.in).toBe(500);
    const total = await query(`SELECT count(*)::INTEGER AS n, count(DISTINCT event_id)::INTEGER AS d FROM ${dataset(join(out, "events"))}`);
    expect(total[0]?.n).toBe(total[0]?.d);
    expect(total[0]?.n).toBe(expected.rows.length + summary.written);
  }, LONG);
});

describe("checkpoint: dead letters of earlier runs", () => {
  const entry = (runId: string, line: number) =>
    JSON.stringify({ stage: "validate", source: "in.ndjson", line, raw: "{}", error: "e", at: "", runId });

  /** A checkpoint whose run `a` read `in.ndjson` up to line 5 and did not finish it. */
  async function interruptedRun(name: string): Promise<{ path: string; folder: string }> {
    const path = join(dir.path, name, "checkpoint.sqlite");
    const earlier = openCheckpoint(path, "a");
    earlier.startOf("in.ndjson", 1000);
    earlier.mark("in.ndjson", 5, 50);
    await earlier.save();
    earlier.close();
    const folder = join(dir.path, name, "dead-letter");
    await mkdir(folder, { recursive: true });
    return { path, folder };
  }

  test("a resumed run skips the records an earlier run dead-lettered after its resume point, and only those", async () => {
    const { path, folder } = await interruptedRun("dl-skip");
    await Bun.write(join(folder, deadLetterFileName("a", 0)), `${entry("a", 3)}\n${entry("a", 7)}\n`);
    await Bun.write(join(folder, deadLetterFileName("a", 1)), `${entry("a", 9)}\n`);
    const resumed = openCheckpoint(path, "b");
    resumed.loadDeadLetters(folder);
    // Line 3 is before the resume point: it is not read again, so there is nothing to skip.
    expect([3, 7, 8, 9].map((line) => resumed.alreadyDeadLettered("in.ndjson", line))).toEqual([false, true, false, true]);
    resumed.close();
  });

  test("dead letters of a run whose id only starts with an earlier run's (a-b after a) are not taken for that run's", async () => {
    const { path, folder } = await interruptedRun("dl-prefix");
    await Bun.write(join(folder, deadLetterFileName("a", 0)), `${entry("a", 7)}\n`);
    // Another pipeline (or a replay) writing to the same folder as run "a-b": its records are not run a's.
    await Bun.write(join(folder, deadLetterFileName("a-b", 0)), `${entry("a-b", 8)}\n`);
    const resumed = openCheckpoint(path, "c");
    resumed.loadDeadLetters(folder);
    expect(resumed.alreadyDeadLettered("in.ndjson", 7)).toBe(true);
    // Taking run a-b's file for run a's would skip line 8 on this run: a record lost.
    expect(resumed.alreadyDeadLettered("in.ndjson", 8)).toBe(false);
    resumed.close();
  });

  test("a line in an earlier run's dead-letter file that is not a dead letter is reported with its file and line", async () => {
    const { path, folder } = await interruptedRun("dl-torn");
    await Bun.write(join(folder, deadLetterFileName("a", 0)), `${entry("a", 7)}\n{"torn":\n`);
    const resumed = openCheckpoint(path, "b");
    expect(() => resumed.loadDeadLetters(folder)).toThrow(`${deadLetterFileName("a", 0)} line 2 is not a dead letter`);
    resumed.close();
  });
});
