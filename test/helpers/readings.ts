/**
 * A generated NDJSON input whose every line's fate is known in advance: which lines are written
 * (and as what row), which fail to parse, which fail validation and which fail enrichment. Tests
 * that put RxJS operators between sluice's pieces compare what a run did against it exactly.
 */
import { writeFile } from "node:fs/promises";
import * as v from "valibot";
import { seededRandom } from "../../src/generate/random.ts";

export const SENSORS = ["north", "south", "east", "west"] as const;

/** One input record. */
export const Reading = v.object({
  id: v.pipe(v.number(), v.integer()),
  sensor: v.picklist(SENSORS),
  value: v.number(),
  note: v.nullable(v.string()),
});
export type Reading = v.InferOutput<typeof Reading>;

/** A stored record: the input plus what {@link enrichReading} derives. */
export const StoredReading = v.object({
  ...Reading.entries,
  bucket: v.pipe(v.number(), v.integer()),
  label: v.string(),
});
export type StoredReading = v.InferOutput<typeof StoredReading>;

/** A note that passes validation but makes {@link enrichReading} throw. */
export const ENRICH_FAILS = "enrich fails here";

/** The enrichment step: spreads the record (so it keeps its position) and adds two fields. */
export function enrichReading(r: Reading): StoredReading {
  if (r.note === ENRICH_FAILS) throw new Error(`reading ${r.id} cannot be enriched`);
  return { ...r, bucket: r.id % 7, label: `${r.sensor}-${r.id}` };
}

/** What becomes of one input line. */
export type Fate =
  | { readonly kind: "written"; readonly row: StoredReading }
  | { readonly kind: "parse" | "validate" | "enrich" };

/** One generated line, 1-based. */
export interface ReadingLine {
  readonly line: number;
  readonly text: string;
  readonly fate: Fate;
}

const NOTES = [null, "", "plain", "ünïcödé 😀", 'a "quoted" \\ back\tslash', "～ sorts oddly", "x".repeat(300)];

/**
 * Generates `count` lines. Line 1 is malformed, line 2 blank and the last line fails validation,
 * so the edges are covered; elsewhere about 3% are malformed JSON (truncated objects, stray
 * brackets), 3% fail validation (wrong types, unknown sensor, missing fields, arrays, empty
 * objects) and 0.5% fail enrichment.
 */
export function generateReadings(count: number, seed: number): ReadingLine[] {
  const random = seededRandom(seed);
  const lines: ReadingLine[] = [];
  for (let line = 1; line <= count; line++) {
    const good: Reading = {
      id: line,
      sensor: random.pick(SENSORS),
      // Two decimals and a sign: exact through JSON, Parquet and DuckDB.
      value: Math.round(random.next() * 2_000_000 - 1_000_000) / 100,
      note: random.pick(NOTES),
    };
    const text = JSON.stringify(good);
    const r = random.next();
    if (line === 1 || (line !== 2 && line !== count && r < 0.03)) {
      // A prefix of an object's JSON is never JSON (cut between code points, so the file stays
      // UTF-8); one in five is another kind of garbage.
      const chars = Array.from(text);
      const garbage =
        random.int(5) === 0
          ? random.pick(["{]", "{'id': 1}", "nul", '{"id":1,}', "\u0000"])
          : chars.slice(0, 1 + random.int(chars.length - 1)).join("");
      lines.push({ line, text: garbage, fate: { kind: "parse" } });
    } else if (line === 2) {
      lines.push({ line, text: "", fate: { kind: "parse" } });
    } else if (line === count || r < 0.06) {
      const bad: unknown = random.pick([
        { ...good, value: String(good.value) },
        { ...good, sensor: "up" },
        { ...good, id: line + 0.5 },
        { sensor: good.sensor, value: good.value, note: good.note },
        { ...good, note: 42 },
        [good.id, good.sensor],
        {},
      ]);
      lines.push({ line, text: JSON.stringify(bad), fate: { kind: "validate" } });
    } else if (r < 0.065) {
      lines.push({ line, text: JSON.stringify({ ...good, note: ENRICH_FAILS }), fate: { kind: "enrich" } });
    } else {
      lines.push({ line, text, fate: { kind: "written", row: enrichReading(good) } });
    }
  }
  return lines;
}

/** Writes the lines as an NDJSON file (newline-terminated). */
export async function writeReadings(path: string, lines: readonly ReadingLine[]): Promise<void> {
  await writeFile(path, `${lines.map((l) => l.text).join("\n")}\n`);
}

/** The rows a run must write, by id. */
export function expectedRows(lines: readonly ReadingLine[]): StoredReading[] {
  return lines.flatMap((l) => (l.fate.kind === "written" ? [l.fate.row] : []));
}

/** The dead letters a run must write, as `{ stage, source, line, raw }`, by line. */
export function expectedDeadLetters(lines: readonly ReadingLine[], source: string) {
  return lines.flatMap((l) => (l.fate.kind === "written" ? [] : [{ stage: l.fate.kind, source, line: l.line, raw: l.text }]));
}

/** Dead letters by stage, as a run summary counts them. */
export function expectedStages(lines: readonly ReadingLine[]): Record<string, number> {
  const stages: Record<string, number> = {};
  for (const l of lines) if (l.fate.kind !== "written") stages[l.fate.kind] = (stages[l.fate.kind] ?? 0) + 1;
  return stages;
}

/** SQL selecting a dataset's rows in the shape of {@link StoredReading}, ordered by id. */
export function readingsSql(from: string): string {
  return `SELECT id::INTEGER AS id, sensor, value::DOUBLE AS value, note, bucket::INTEGER AS bucket, label FROM ${from} ORDER BY id`;
}
