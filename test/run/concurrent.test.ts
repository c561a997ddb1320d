/**
 * Many runs in one process: each `run()` has its own flow (counters, dead-letter targets, memory
 * gate), found by sources that subscribe late through the run's asynchronous scope. Ten runs over
 * different inputs at once must each report, write and dead-letter exactly their own records.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { concatMap, delay, identity, mergeMap, type MonoTypeOperatorFunction, of, timer } from "rxjs";
import { deadLetter, enrich, validate } from "../../operators/index.ts";
import { seededRandom } from "../../src/generate/random.ts";
import { type Commit, fromNdjson, readDeadLetters, run, type RunSummary, toParquet } from "../../src/index.ts";
import { dataset, query, tempDir } from "../helpers/duckdb.ts";
import {
  enrichReading,
  expectedDeadLetters,
  expectedRows,
  expectedStages,
  generateReadings,
  Reading,
  type ReadingLine,
  readingsSql,
  StoredReading,
  writeReadings,
} from "../helpers/readings.ts";

const RUNS = 10;

interface Job {
  readonly input: string;
  readonly out: string;
  readonly lines: ReadingLine[];
  /** Runs with a mergeMap (concurrency 4, random delays) between the source and validate. */
  readonly reordered: boolean;
}

let dir: { path: string; remove: () => Promise<void> };
let jobs: Job[];

beforeAll(async () => {
  dir = await tempDir("sluice-concurrent-");
  jobs = [];
  for (let i = 0; i < RUNS; i++) {
    // Different sizes and seeds: no two runs could pass for each other.
    const lines = generateReadings(400 + 57 * i, 500 + i);
    const input = join(dir.path, `in-${i}.ndjson`);
    await writeReadings(input, lines);
    jobs.push({ input, out: join(dir.path, `out-${i}`), lines, reordered: i % 3 === 0 });
  }
});

afterAll(async () => {
  await dir.remove();
});

/** One run: its source subscribes late, inside a concatMap after a timer. */
function start(job: Job, i: number) {
  const random = seededRandom(900 + i);
  const reorder: MonoTypeOperatorFunction<unknown> = job.reordered
    ? mergeMap((x) => of(x).pipe(delay(random.int(3))), 4)
    : identity;
  const commits: Commit[] = [];
  let startedAt = 0;
  const summary = run(
    timer(10 + i).pipe(
      concatMap(() => fromNdjson(job.input)),
      reorder,
      validate(Reading),
      enrich(enrichReading),
      deadLetter(join(job.out, "dead-letter")),
      toParquet(join(job.out, "events"), { schema: StoredReading, partitionBy: ["sensor"], maxFileRows: 100 }),
    ),
    { onValue: (c) => commits.push(c as Commit), onStart: () => (startedAt = performance.now()) },
  );
  return summary.then((s) => ({ summary: s, commits, startedAt, endedAt: performance.now() }));
}

describe("concurrent runs", () => {
  test("ten runs at once, with late-subscribed sources and some with a mergeMap inside, each count, write and dead-letter exactly their own records", async () => {
    const results = await Promise.all(jobs.map(start));
    expect(new Set(results.map((r) => r.summary.runId)).size).toBe(RUNS);
    // They did run at once: every run started before any run ended.
    expect(Math.max(...results.map((r) => r.startedAt))).toBeLessThan(Math.min(...results.map((r) => r.endedAt)));

    for (const [i, job] of jobs.entries()) {
      const { summary, commits } = results[i] as { summary: RunSummary; commits: Commit[] };
      const stages = expectedStages(job.lines);
      const bad = Object.values(stages).reduce((a, b) => a + b, 0);
      expect({ run: i, in: summary.in, written: summary.written, byStage: summary.deadLetteredByStage, dropped: summary.dropped }).toEqual({
        run: i,
        in: job.lines.length,
        written: job.lines.length - bad,
        byStage: stages,
        dropped: 0,
      });

      const letters: { stage: string; source: string; line: number; raw: string; runId: string }[] = [];
      for await (const e of readDeadLetters(join(job.out, "dead-letter"))) {
        letters.push({ stage: e.stage, source: e.source, line: e.line, raw: e.raw, runId: e.runId });
      }
      letters.sort((a, b) => a.line - b.line);
      expect(letters).toEqual(expectedDeadLetters(job.lines, job.input).map((l) => ({ ...l, runId: summary.runId })));

      expect(await query(readingsSql(dataset(join(job.out, "events"))))).toEqual(
        expectedRows(job.lines) as unknown as Record<string, unknown>[],
      );
      // Every file this run committed is in its own dataset and names only its own input.
      expect(commits.every((c) => c.path.startsWith(join(job.out, "events")) && c.sources.every((r) => r.source === job.input))).toBe(true);
      expect(commits.reduce((n, c) => n + c.rows, 0)).toBe(summary.written);
    }
  });
});
