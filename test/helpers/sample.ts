/**
 * A small dataset written by sluice with the edge cases readers get wrong: several partitions
 * (one null, one needing escapes), several files per partition and several row groups per file,
 * nulls, an all-null column in some files, negative and pre-1970 values, strings whose UTF-8 and
 * UTF-16 orders differ, strings long enough for writers to truncate their statistics, lists and
 * structs.
 */
import { afterAll, beforeAll } from "bun:test";
import { join } from "node:path";
import { from } from "rxjs";
import * as v from "valibot";
import { run } from "../../src/run/run.ts";
import { isoInstant } from "../../src/schema/instant.ts";
import { toParquet } from "../../src/sinks/toParquet.ts";
import { tempDir } from "./duckdb.ts";

export const SampleRow = v.object({
  id: v.pipe(v.number(), v.integer()),
  name: v.string(),
  score: v.nullable(v.number()),
  big: v.pipe(v.number(), v.integer()),
  at: isoInstant(),
  day: v.pipe(v.string(), v.isoDate()),
  ok: v.boolean(),
  tags: v.array(v.string()),
  region: v.nullable(v.string()),
  note: v.nullish(v.string()),
  long_text: v.string(),
  nested: v.object({ a: v.pipe(v.number(), v.integer()), b: v.nullable(v.string()) }),
});
export type SampleRow = v.InferOutput<typeof SampleRow>;

export const REGIONS = ["eu", "us", "a/b", null] as const;

/** The rows of the sample dataset, deterministic. */
export function sampleRows(count = 400): SampleRow[] {
  return Array.from({ length: count }, (_, i) => {
    const region = REGIONS[i % REGIONS.length];
    const micros = (i - 20) * 3_600_000_000 * 7 + (i % 7) - 1; // some instants before 1970
    const seconds = Math.floor(micros / 1_000_000);
    const fraction = String(((micros % 1_000_000) + 1_000_000) % 1_000_000).padStart(6, "0");
    return {
      id: i,
      // "～" (U+FF5E) sorts after "😀" in UTF-16 but before it in UTF-8, the order Parquet uses.
      name: i % 11 === 0 ? `😀${i}` : i % 13 === 0 ? `～${i}` : i % 17 === 0 ? "" : `name-${String(i).padStart(4, "0")}`,
      score: i % 5 === 0 ? null : (i - 200) / 8,
      big: (i % 2 === 0 ? 1 : -1) * (Number.MAX_SAFE_INTEGER - i),
      at: `${new Date(seconds * 1000).toISOString().slice(0, 19)}.${fraction}Z`,
      day: `2024-03-0${1 + (i % 3)}`,
      ok: i % 3 === 0,
      tags: i % 4 === 1 ? [] : [`t${i % 6}`, ...(i % 9 === 0 ? ["ünï"] : [])],
      region,
      note: region === "us" ? null : i % 2 === 0 ? `note ${i}` : undefined,
      long_text: `${"x".repeat(70)}-${String(1000 - i).padStart(4, "0")}`,
      nested: { a: i * 3 - 100, b: i % 6 === 0 ? null : `b${i % 10}` },
    };
  });
}

/**
 * Writes the sample dataset into `folder` with sluice: partitioned by region, at most 60 rows
 * per file and 25 per row group, so every partition has several files and row groups.
 */
export async function writeSample(folder: string, count = 400): Promise<SampleRow[]> {
  const rows = sampleRows(count);
  await run(
    from(rows).pipe(
      toParquet(folder, { schema: SampleRow, partitionBy: ["region"], maxFileRows: 60, rowGroupSize: 25, encoders: 0, mode: "overwrite" }),
    ),
    { handleSignals: false },
  );
  return rows;
}

/**
 * The sample dataset in a temporary folder for the enclosing `describe`'s tests: written before
 * them (in `<path>/sample`, see {@link writeSample}) and removed with the folder after them. `path`
 * is the temporary folder, free for a test's other files; `folder` is the dataset.
 */
export function sampleDataset() {
  let dir: { path: string; remove: () => Promise<void> } | undefined;
  beforeAll(async () => {
    dir = await tempDir();
    await writeSample(join(dir.path, "sample"));
  });
  afterAll(async () => {
    await dir?.remove();
  });
  return {
    get path(): string {
      if (!dir) throw new Error("sampleDataset: used outside a test");
      return dir.path;
    },
    get folder(): string {
      return join(this.path, "sample");
    },
  };
}
