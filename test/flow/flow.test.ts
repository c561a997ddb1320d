/**
 * Which run a piece belongs to (`currentFlow`). A source subscribed late by an RxJS operator is
 * subscribed in the scope of whatever emitted to that operator: a `share()`d timer the first of
 * two runs started, or a `Subject` fed from outside every run (an HTTP handler, a timer set up
 * before the run). It must still count, dead-letter and be stopped as part of its own run.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { concatMap, merge, mergeMap, type Observable, of, Subject, share, take, timer } from "rxjs";
import * as v from "valibot";
import { deadLetter, enrich, validate } from "../../operators/index.ts";
import { fromNdjson, fromPush, type RunSummary, readDeadLetters, run, toParquet } from "../../src/index.ts";
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

interface Job {
  readonly input: string;
  readonly out: string;
  readonly lines: ReadingLine[];
}

let dir: { path: string; remove: () => Promise<void> };
let jobs: Job[];

beforeAll(async () => {
  dir = await tempDir("sluice-flow-");
  jobs = [];
  for (let i = 0; i < 3; i++) {
    const lines = generateReadings(600 + 97 * i, 70 + i);
    const input = join(dir.path, `in-${i}.ndjson`);
    await writeReadings(input, lines);
    jobs.push({ input, out: join(dir.path, `out-${i}`), lines });
  }
});

afterAll(async () => {
  await dir.remove();
});

/** The job's pipeline below `files`, which emits the input's path when the source should start. */
function pipelineOf(job: Job, start: (subscribeSource: () => Observable<unknown>) => Observable<unknown>) {
  return start(() => fromNdjson(job.input)).pipe(
    validate(Reading),
    enrich(enrichReading),
    deadLetter(join(job.out, "dead-letter")),
    toParquet(join(job.out, "events"), { schema: StoredReading }),
  );
}

/** Checks a run's summary, dead letters and dataset (read with DuckDB) against its input, exactly. */
async function expectOwnOutput(job: Job, summary: RunSummary) {
  const stages = expectedStages(job.lines);
  const bad = Object.values(stages).reduce((a, b) => a + b, 0);
  expect({ in: summary.in, written: summary.written, byStage: summary.deadLetteredByStage, dropped: summary.dropped }).toEqual({
    in: job.lines.length,
    written: job.lines.length - bad,
    byStage: stages,
    dropped: 0,
  });
  const letters: { stage: string; source: string; line: number; raw: string; runId: string }[] = [];
  for await (const e of readDeadLetters(join(job.out, "dead-letter"))) letters.push({ stage: e.stage, source: e.source, line: e.line, raw: e.raw, runId: e.runId });
  letters.sort((a, b) => a.line - b.line);
  expect(letters).toEqual(expectedDeadLetters(job.lines, job.input).map((l) => ({ ...l, runId: summary.runId })));
  expect(await query(readingsSql(dataset(join(job.out, "events"))))).toEqual(expectedRows(job.lines) as unknown as Record<string, unknown>[]);
}

describe("the run a source belongs to", () => {
  test("three runs whose sources are subscribed on one share()d timer, started by the first, each count, write and dead-letter exactly their own records", async () => {
    // The timer starts inside the first run's subscription: every tick arrives in that run's scope.
    const tick = timer(0, 20).pipe(share());
    const summaries = await Promise.all(
      jobs.map((job) => run(pipelineOf(job, (source) => tick.pipe(take(1), concatMap(source))), {})),
    );
    for (const [i, job] of jobs.entries()) await expectOwnOutput(job, summaries[i] as RunSummary);
  });

  test("two runs whose sources, validate, enrich and dead-letter folder are all subscribed on a share()d timer the first started keep their own records", async () => {
    const tick = timer(0, 20).pipe(share());
    const outs = jobs.slice(0, 2).map((job, i) => ({ ...job, out: join(dir.path, `inner-${i}`) }));
    const summaries = await Promise.all(
      outs.map((job) =>
        run(
          tick.pipe(
            take(1),
            concatMap(() => fromNdjson(job.input).pipe(validate(Reading), enrich(enrichReading), deadLetter(join(job.out, "dead-letter")))),
            toParquet(join(job.out, "events"), { schema: StoredReading }),
          ),
        ),
      ),
    );
    for (const [i, job] of outs.entries()) await expectOwnOutput(job, summaries[i] as RunSummary);
  });

  test("an operator subscribed late, inside a concatMap, sends its rejects to the dead-letter folder below it, not to the one above", async () => {
    const job = jobs[0] as Job;
    const out = join(dir.path, "route");
    // The second check rejects the written readings with an id over 300, which the first passed.
    const Early = v.object({ ...Reading.entries, id: v.pipe(v.number(), v.integer(), v.maxValue(300)) });
    const summary = await run(
      fromNdjson(job.input).pipe(
        validate(Reading),
        deadLetter(join(out, "above")),
        concatMap((r) => of(r).pipe(validate(Early, { stage: "early" }))),
        deadLetter(join(out, "below")),
        toParquet(join(out, "events"), { schema: Early }),
      ),
    );
    const stagesIn = async (folder: string) => {
      const lines: Record<string, number[]> = {};
      for await (const e of readDeadLetters(join(out, folder))) (lines[e.stage] ??= []).push(e.line);
      for (const found of Object.values(lines)) found.sort((a, b) => a - b);
      return lines;
    };
    const late = job.lines.filter((l) => l.fate.kind !== "parse" && l.fate.kind !== "validate" && l.line > 300).map((l) => l.line);
    expect(await stagesIn("below")).toEqual({ early: late });
    expect(Object.keys(await stagesIn("above")).sort()).toEqual(["parse", "validate"]);
    expect(summary.deadLetteredByStage.early).toBe(late.length);
  });

  test("each branch of a merge sends its source's parse errors to its own dead-letter folder, not to the one subscribed last", async () => {
    const [first, second] = jobs as [Job, Job];
    const out = join(dir.path, "merge");
    const branch = (job: Job, folder: string) => fromNdjson(job.input).pipe(validate(Reading), deadLetter(join(out, folder)));
    await run(merge(branch(first, "first"), branch(second, "second")).pipe(toParquet(join(out, "events"), { schema: Reading })));
    for (const [job, folder] of [[first, "first"], [second, "second"]] as const) {
      const letters: { stage: string; source: string; line: number; raw: string }[] = [];
      for await (const e of readDeadLetters(join(out, folder))) letters.push({ stage: e.stage, source: e.source, line: e.line, raw: e.raw });
      letters.sort((a, b) => a.line - b.line);
      // Without enrich, the records that fail it are written: only parse and validate are dead letters.
      const expected = expectedDeadLetters(job.lines, job.input).filter((l) => l.stage !== "enrich");
      expect(letters).toEqual(expected);
    }
  });

  test("each branch of a merge of push sources sends its input that is not JSON to its own dead-letter folder", async () => {
    const out = join(dir.path, "push-merge");
    const sources = [fromPush<unknown>({ name: "first" }), fromPush<unknown>({ name: "second" })];
    const done = run(
      merge(...sources.map((source, i) => source.pipe(validate(Reading), deadLetter(join(out, `folder-${i}`))))).pipe(
        toParquet(join(out, "events"), { schema: Reading }),
      ),
    );
    for (const source of sources) {
      source.pushInvalid("{not json", "malformed JSON");
      source.push({ id: 1, sensor: "up", value: 1, note: null });
      source.end();
    }
    await done;
    for (const [i, source] of sources.entries()) {
      const letters: string[] = [];
      for await (const e of readDeadLetters(join(out, `folder-${i}`))) letters.push(`${e.stage} ${e.source}:${e.line}`);
      expect(letters.sort()).toEqual([`parse ${source.name}:1`, `validate ${source.name}:2`]);
    }
  });

  test("files named by records of a manifest send their parse errors to the folder below the mergeMap that reads them, not to the manifest's", async () => {
    const out = join(dir.path, "manifest");
    const manifest = join(dir.path, "manifest.ndjson");
    await writeFile(manifest, `${jobs.map((job) => JSON.stringify({ path: job.input })).join("\n")}\n{"path":\n`);
    const Entry = v.object({ path: v.string() });
    await run(
      fromNdjson(manifest).pipe(
        validate(Entry),
        deadLetter(join(out, "manifest")),
        mergeMap((entry) => fromNdjson(entry.path)),
        validate(Reading),
        deadLetter(join(out, "records")),
        toParquet(join(out, "events"), { schema: Reading }),
      ),
    );
    const letters: { stage: string; source: string; line: number }[] = [];
    for await (const e of readDeadLetters(join(out, "records"))) letters.push({ stage: e.stage, source: e.source, line: e.line });
    const order = (a: { source: string; line: number }, b: { source: string; line: number }) => a.source.localeCompare(b.source) || a.line - b.line;
    const expected = jobs.flatMap((job) => expectedDeadLetters(job.lines, job.input).filter((l) => l.stage !== "enrich").map(({ stage, source, line }) => ({ stage, source, line })));
    expect(letters.sort(order)).toEqual(expected.sort(order));
    const inManifest: { stage: string; source: string; line: number }[] = [];
    for await (const e of readDeadLetters(join(out, "manifest"))) inManifest.push({ stage: e.stage, source: e.source, line: e.line });
    expect(inManifest).toEqual([{ stage: "parse", source: manifest, line: jobs.length + 1 }]);
  });

  test("a source subscribed on a Subject fed from outside any run counts and dead-letters into its run", async () => {
    const job = jobs[0] as Job;
    const out = { ...job, out: join(dir.path, "subject") };
    const files = new Subject<string>();
    // Set up before the run, as an HTTP handler would be: its callback runs in no run's scope.
    const feed = setTimeout(() => files.next(job.input), 20);
    try {
      const summary = await run(pipelineOf(out, (source) => files.pipe(take(1), mergeMap(source))));
      await expectOwnOutput(out, summary);
    } finally {
      clearTimeout(feed);
    }
  });

  test("aborting one run stops its own source, subscribed in another run's scope, and not the other's", async () => {
    const [first, second] = jobs as [Job, Job];
    const outs = [
      { ...first, out: join(dir.path, "abort-0") },
      { ...second, out: join(dir.path, "abort-1") },
    ];
    const tick = timer(0, 20).pipe(share());
    // The second run is aborted before its source is subscribed: that source must see its run stopping.
    const stop = new AbortController();
    stop.abort();
    const [kept, stopped] = await Promise.all([
      run(pipelineOf(outs[0] as Job, (source) => tick.pipe(take(1), concatMap(source)))),
      run(pipelineOf(outs[1] as Job, (source) => tick.pipe(take(1), concatMap(source))), { signal: stop.signal }),
    ]);
    await expectOwnOutput(outs[0] as Job, kept);
    expect({ stopped: stopped.stopped, in: stopped.in }).toEqual({ stopped: true, in: 0 });
  });
});
