/**
 * The operator matrix: RxJS operators that delay, reorder, batch, group, share, retry or rebuild
 * records, put between sluice's pieces. Whatever sits there, every dead letter must name the
 * exact input line it came from, the summary must account for every line, the dataset (read back
 * with DuckDB) must hold exactly the valid records, and every file's commit ranges must claim
 * exactly the lines it holds.
 *
 * `retry` is the exception by design: it resubscribes to the source, which reads its file again
 * from the start, so the lines before the failure are processed twice (and counted twice). The
 * test at the end pins down exactly what a user sees.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import {
  bufferCount,
  bufferTime,
  concatMap,
  delay,
  from,
  groupBy,
  identity,
  map,
  mergeMap,
  type MonoTypeOperatorFunction,
  of,
  retry,
  share,
} from "rxjs";
import * as v from "valibot";
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

const LINES = 3000;

let dir: { path: string; remove: () => Promise<void> };
let input: string;
let lines: ReadingLine[];
let counter = 0;

beforeAll(async () => {
  dir = await tempDir("sluice-matrix-");
  input = join(dir.path, "readings.ndjson");
  lines = generateReadings(LINES, 2024);
  await writeReadings(input, lines);
});

afterAll(async () => {
  await dir.remove();
});

type Op = MonoTypeOperatorFunction<unknown>;

/**
 * Runs the pipeline with `before` between the source and validate and `between` between validate
 * and enrich, under a checkpoint of its own when asked.
 */
async function runWith(before: Op, between: Op = identity, options: { checkpoint?: boolean } = {}) {
  const out = join(dir.path, `run-${counter++}`);
  const commits: Commit[] = [];
  const summary = await run(
    fromNdjson(input).pipe(
      before,
      validate(Reading),
      between as MonoTypeOperatorFunction<Reading>,
      enrich(enrichReading),
      deadLetter(join(out, "dead-letter")),
      // Small files, so ranges are split and claimed across many commits.
      toParquet(join(out, "events"), { schema: StoredReading, partitionBy: ["sensor"], maxFileRows: 128 }),
    ),
    {
      onValue: (c) => commits.push(c as Commit),
      ...(options.checkpoint ? { checkpoint: join(out, "checkpoint.sqlite") } : {}),
    },
  );
  return { out, summary, commits };
}

/** The dead letters of a folder as `{ stage, source, line, raw }`, by line. */
async function deadLettersOf(folder: string) {
  const found: { stage: string; source: string; line: number; raw: string }[] = [];
  for await (const e of readDeadLetters(folder)) found.push({ stage: e.stage, source: e.source, line: e.line, raw: e.raw });
  return found.sort((a, b) => a.line - b.line || a.stage.localeCompare(b.stage));
}

/** The rows of each committed file, by path: ids ascending. */
async function idsByFile(folder: string): Promise<Map<string, number[]>> {
  const rows = await query(
    `SELECT filename, list(id::INTEGER ORDER BY id) AS ids FROM read_parquet('${folder}/**/*.parquet', hive_partitioning = true, filename = true) GROUP BY filename`,
  );
  return new Map(rows.map((r) => [r.filename as string, r.ids as number[]]));
}

/** The line ranges each file records in its own metadata, by path. */
async function rangesInFiles(folder: string): Promise<Map<string, unknown>> {
  const rows = await query(
    `SELECT file_name, decode(value) AS sources FROM parquet_kv_metadata('${folder}/**/*.parquet') WHERE decode(key) = 'sluice.sources'`,
  );
  return new Map(rows.map((r) => [r.file_name as string, JSON.parse(r.sources as string)]));
}

/**
 * Checks each commit's ranges against the file it names: the file holds exactly the valid lines
 * of its partition inside its ranges (the promise of `Commit.sources`), records the same ranges
 * in its metadata, and every valid line is claimed by exactly one file.
 */
async function expectExactRanges(out: string, commits: readonly Commit[]) {
  const files = await idsByFile(join(out, "events"));
  const recorded = await rangesInFiles(join(out, "events"));
  const byLine = new Map(lines.map((l) => [l.line, l]));
  const claims = new Map<number, string[]>();
  const problems: string[] = [];
  for (const commit of commits) {
    const claimed: number[] = [];
    for (const range of commit.sources) {
      if (range.source !== input) problems.push(`${commit.path} names source ${range.source}`);
      for (let line = range.firstLine; line <= range.lastLine; line++) {
        const fate = byLine.get(line)?.fate;
        if (fate?.kind === "written" && fate.row.sensor === commit.partition.sensor) {
          claimed.push(line);
          claims.set(line, [...(claims.get(line) ?? []), commit.path]);
        }
      }
    }
    claimed.sort((a, b) => a - b);
    const held = files.get(commit.path) ?? [];
    if (held.length !== commit.rows) problems.push(`${commit.path} holds ${held.length} rows, its commit says ${commit.rows}`);
    const missing = claimed.filter((l) => !held.includes(l));
    const extra = held.filter((l) => !claimed.includes(l));
    if (missing.length > 0 || extra.length > 0) {
      problems.push(`${commit.path} ${JSON.stringify(commit.sources.map((r) => [r.firstLine, r.lastLine]))}: claims lines it does not hold ${missing.slice(0, 10)}; holds lines it does not claim ${extra.slice(0, 10)}`);
    }
    if (JSON.stringify(recorded.get(commit.path)) !== JSON.stringify(commit.sources)) {
      problems.push(`${commit.path} records ${JSON.stringify(recorded.get(commit.path))} in its metadata, its commit says ${JSON.stringify(commit.sources)}`);
    }
  }
  expect(commits.length).toBe(files.size);
  for (const row of expectedRows(lines)) {
    const by = claims.get(row.id) ?? [];
    if (by.length !== 1) problems.push(`line ${row.id} is claimed by ${by.length} files`);
  }
  expect(problems.slice(0, 20)).toEqual([]);
}

/** The summary, dead letters and dataset of a run over `lines`, checked exactly. */
async function expectExactOutput(result: { out: string; summary: RunSummary }) {
  const { out, summary } = result;
  const stages = expectedStages(lines);
  const bad = Object.values(stages).reduce((a, b) => a + b, 0);
  expect({
    in: summary.in,
    written: summary.written,
    deadLettered: summary.deadLettered,
    byStage: summary.deadLetteredByStage,
    dropped: summary.dropped,
    skipped: summary.skipped,
  }).toEqual({ in: LINES, written: LINES - bad, deadLettered: bad, byStage: stages, dropped: 0, skipped: 0 });
  expect(await deadLettersOf(join(out, "dead-letter"))).toEqual(expectedDeadLetters(lines, input));
  expect(await query(readingsSql(dataset(join(out, "events"))))).toEqual(expectedRows(lines) as unknown as Record<string, unknown>[]);
}

/** A pseudo-random delay in [0, n) ms per record, the same on every run. */
function jitter(seed: number, n: number): () => number {
  const random = seededRandom(seed);
  return () => random.int(n);
}

interface Case {
  readonly name: string;
  readonly before?: () => Op;
  readonly between?: () => Op;
  /** Reorders records of one partition, so a file's ranges must be split around lines still in flight. */
  readonly reorders?: boolean;
}

const CASES: readonly Case[] = [
  { name: "delay(0) between the source and validate", before: () => delay(0) },
  {
    name: "concatMap over inner observables, some of them delayed, between the source and validate",
    before: () => {
      const ms = jitter(1, 24);
      // One record in twelve waits 1-2 ms (a wait is a timer of at least 1 ms: all would take seconds).
      return concatMap((x) => {
        const wait = ms();
        return wait > 0 && wait < 3 ? of(x).pipe(delay(wait)) : of(x);
      });
    },
  },
  {
    name: "mergeMap with concurrency 4 and random delays of 0-3 ms between the source and validate",
    before: () => {
      const ms = jitter(2, 4);
      return mergeMap((x) => of(x).pipe(delay(ms())), 4);
    },
    reorders: true,
  },
  {
    name: "bufferCount(50) then concatMap over each buffer between the source and validate",
    before: () => (s) => s.pipe(bufferCount(50), concatMap((b) => from(b))),
  },
  {
    name: "bufferTime(5) then mergeMap over each buffer between the source and validate",
    before: () => (s) => s.pipe(bufferTime(5), mergeMap((b) => b)),
  },
  {
    name: "groupBy a field then a delay in each group between the source and validate",
    before: () => (s) =>
      s.pipe(
        groupBy((r) => (r as { sensor?: unknown }).sensor),
        mergeMap((g) => g.pipe(delay(1))),
      ),
  },
  { name: "share() between the source and validate", before: () => share() },
  {
    name: "a user map that spreads each record into a new object between the source and validate",
    before: () => map((e) => ({ ...(e as object), extra: 1 })),
  },
  {
    name: "mergeMap with concurrency 4 and random delays between validate and the dead letter",
    between: () => {
      const ms = jitter(3, 4);
      return mergeMap((x) => of(x).pipe(delay(ms())), 4);
    },
    reorders: true,
  },
  {
    name: "bufferCount then concatMap before validate and mergeMap with delays after it",
    before: () => (s) => s.pipe(bufferCount(7), concatMap((b) => from(b))),
    between: () => {
      const ms = jitter(4, 3);
      return mergeMap((x) => of(x).pipe(delay(ms())), 8);
    },
    reorders: true,
  },
];

function pipelineOf(c: Case): [Op, Op] {
  return [c.before?.() ?? identity, c.between?.() ?? identity];
}

describe("operators in the pipeline, without a checkpoint", () => {
  for (const c of CASES) {
    if (!c.reorders) {
      test(`${c.name} keeps every dead letter, count, row and commit range exact`, async () => {
        const result = await runWith(...pipelineOf(c));
        await expectExactOutput(result);
        await expectExactRanges(result.out, result.commits);
      });
      continue;
    }
    // One run checked twice: its output, and its commit ranges (a run takes a second or two).
    let once: ReturnType<typeof runWith> | undefined;
    const result = () => (once ??= runWith(...pipelineOf(c)));
    test(`${c.name} keeps every dead letter, count and row exact`, async () => {
      await expectExactOutput(await result());
    });
    test(`${c.name} gives every file commit ranges that claim exactly the lines it holds`, async () => {
      const { out, commits } = await result();
      await expectExactRanges(out, commits);
    });
  }
});

describe("operators in the pipeline, under a checkpoint", () => {
  for (const c of CASES) {
    test(`${c.name} keeps every dead letter, count, row and commit range exact`, async () => {
      const result = await runWith(...pipelineOf(c), { checkpoint: true });
      await expectExactOutput(result);
      await expectExactRanges(result.out, result.commits);
      // The records did arrive out of order: some file's ranges were split around a line in flight.
      if (c.reorders) expect(result.commits.some((commit) => commit.sources.length > 1)).toBe(true);
    });
  }
});

describe("two dead-letter folders with a reordering operator above each", () => {
  for (const checkpoint of [false, true]) {
    test(`validate's rejects go to the folder below validate and enrich's to the one below enrich${checkpoint ? ", under a checkpoint" : ""}`, async () => {
      const out = join(dir.path, `run-${counter++}`);
      const ms = jitter(5, 4);
      const commits: Commit[] = [];
      const summary = await run(
        fromNdjson(input).pipe(
          validate(Reading),
          mergeMap((x) => of(x).pipe(delay(ms())), 4),
          deadLetter(join(out, "rejected")),
          enrich(enrichReading),
          mergeMap((x) => of(x).pipe(delay(ms())), 4),
          deadLetter(join(out, "unenriched")),
          toParquet(join(out, "events"), { schema: StoredReading, partitionBy: ["sensor"], maxFileRows: 128 }),
        ),
        { onValue: (c) => commits.push(c as Commit), ...(checkpoint ? { checkpoint: join(out, "checkpoint.sqlite") } : {}) },
      );
      const expected = expectedDeadLetters(lines, input);
      expect(await deadLettersOf(join(out, "rejected"))).toEqual(expected.filter((l) => l.stage !== "enrich"));
      expect(await deadLettersOf(join(out, "unenriched"))).toEqual(expected.filter((l) => l.stage === "enrich"));
      expect({ in: summary.in, written: summary.written, byStage: summary.deadLetteredByStage, dropped: summary.dropped }).toEqual({
        in: LINES,
        written: expectedRows(lines).length,
        byStage: expectedStages(lines),
        dropped: 0,
      });
      expect(await query(readingsSql(dataset(join(out, "events"))))).toEqual(expectedRows(lines) as unknown as Record<string, unknown>[]);
      await expectExactRanges(out, commits);
    });
  }
});

describe("values that are not objects", () => {
  // A scalar cannot carry its position; position.ts promises it is found while it is the last
  // scalar its source emitted, and is "position unknown" (line 0) otherwise, never another line's.
  const SCALARS = ['{"id":1}', "42", '{"id":3}', "42", '"x"', "true", "null", '{"id":8}', "42"];

  async function scalarLetters(before: Op) {
    const path = join(dir.path, `scalars-${counter++}.ndjson`);
    await Bun.write(path, `${SCALARS.join("\n")}\n`);
    const letters: { source: string; line: number; raw: string }[] = [];
    const summary = await run(
      fromNdjson(path).pipe(
        before,
        validate(v.object({ id: v.number() })),
        deadLetter((e) => letters.push({ source: e.source, line: e.line, raw: e.raw })),
      ),
    );
    return { path, letters, summary };
  }

  test("scalar lines in a synchronous pipeline are dead-lettered with their own lines", async () => {
    const { path, letters, summary } = await scalarLetters(identity);
    expect(letters).toEqual(
      SCALARS.flatMap((raw, i) => (raw.startsWith("{") ? [] : [{ source: path, line: i + 1, raw }])),
    );
    expect(summary.deadLettered).toBe(6);
  });

  test("scalar lines behind delay(0) are dead-lettered with their own lines or as position unknown, never with another line's", async () => {
    const { path, letters, summary } = await scalarLetters(delay(0));
    expect(summary.deadLettered).toBe(6);
    for (const letter of letters) {
      if (letter.line === 0) expect(letter.source).toBe("");
      else expect({ source: letter.source, raw: SCALARS[letter.line - 1] }).toEqual({ source: path, raw: letter.raw });
    }
    const named = letters.filter((l) => l.line !== 0).map((l) => l.line);
    expect(new Set(named).size).toBe(named.length);
  });
});

describe("retry between the source and validate", () => {
  test("re-reads the file after a user map throws once: lines before the throw are written and dead-lettered twice, the thrown record is dropped, and the summary accounts for every read", async () => {
    const THROW_AT = 1500;
    expect(lines[THROW_AT - 1]?.fate.kind).toBe("written");
    let thrown = false;
    const { out, summary } = await runWith((s) =>
      s.pipe(
        map((e) => {
          if ((e as Reading).id === THROW_AT && !thrown) {
            thrown = true;
            throw new Error("a transient failure in user code");
          }
          return e;
        }),
        // Resubscribes to fromNdjson, which reads the file again from its first line.
        retry(2),
      ),
    );
    const before = lines.filter((l) => l.line < THROW_AT);
    const stages = expectedStages(lines);
    for (const [stage, n] of Object.entries(expectedStages(before))) stages[stage] = (stages[stage] ?? 0) + n;
    const rows = [...expectedRows(before), ...expectedRows(lines)].sort((a, b) => a.id - b.id);
    expect({
      in: summary.in,
      written: summary.written,
      byStage: summary.deadLetteredByStage,
      dropped: summary.dropped,
    }).toEqual({ in: LINES + THROW_AT, written: rows.length, byStage: stages, dropped: 1 });
    const letters = [...expectedDeadLetters(before, input), ...expectedDeadLetters(lines, input)];
    expect(await deadLettersOf(join(out, "dead-letter"))).toEqual(letters.sort((a, b) => a.line - b.line || a.stage.localeCompare(b.stage)));
    expect(await query(`${readingsSql(dataset(join(out, "events")))}, label`)).toEqual(rows as unknown as Record<string, unknown>[]);
  });
});
