import { describe as group, expect, test } from "bun:test";
import { join } from "node:path";
import { tableFromArrays } from "apache-arrow";
import { readDataset } from "../../src/dataset/read.ts";
import { describe } from "../../src/notebook/describe.ts";
import { DistinctCounter, EXACT_LIMIT } from "../../src/notebook/distinct.ts";
import { dataset, query } from "../helpers/duckdb.ts";
import { sampleDataset } from "../helpers/sample.ts";

group("describe", () => {
  const sample = sampleDataset();

  /** DuckDB's figures for one column, in describe's shapes (timestamps and dates as ISO text, int64 as numbers). */
  async function duck(column: string, kind: "number" | "string" | "timestamp" | "date" | "boolean" | "nested", where = "true") {
    const c = `"${column}"`;
    const shown = kind === "timestamp" ? (e: string) => `strftime(${e}, '%Y-%m-%dT%H:%M:%S.%fZ')` : kind === "date" ? (e: string) => `strftime(${e}, '%Y-%m-%d')` : (e: string) => e;
    const minMax = kind === "nested" ? "NULL AS min, NULL AS max" : `${shown(`min(${c})`)} AS min, ${shown(`max(${c})`)} AS max`;
    const mean = kind === "number" ? `avg(${c})::DOUBLE` : "NULL";
    const [row] = await query(
      `SELECT count(${c})::INT AS count, (count(*) - count(${c}))::INT AS nulls, ${minMax}, ${mean} AS mean, count(DISTINCT ${c})::INT AS distinct FROM ${dataset(sample.folder)} WHERE ${where}`,
    );
    const r = row as Record<string, unknown>;
    // DuckDB's JSON rows give BIGINT min/max as text.
    if (kind === "number" && typeof r.min === "string") r.min = Number(r.min);
    if (kind === "number" && typeof r.max === "string") r.max = Number(r.max);
    return r;
  }

  const KINDS = {
    id: "number",
    name: "string",
    score: "number",
    at: "timestamp",
    day: "date",
    ok: "boolean",
    region: "string",
    note: "string",
    long_text: "string",
    tags: "nested",
    nested: "nested",
  } as const;

  test("gives DuckDB's count, nulls, min, max, mean and exact distinct counts for every kind of column of a dataset", async () => {
    const rows = await describe(sample.folder, { batchSize: 37 });
    for (const [column, kind] of Object.entries(KINDS)) {
      const got = rows.find((r) => r.column === column);
      const expected = await duck(column, kind);
      const pick = (r: Record<string, unknown> | undefined) => ({ column, count: r?.count, nulls: r?.nulls, min: r?.min, max: r?.max, distinct: r?.distinct });
      expect(pick(got as unknown as Record<string, unknown>)).toEqual(pick(expected));
      if (expected.mean === null) expect(got?.mean).toBeNull();
      else expect(got?.mean).toBeCloseTo(expected.mean as number, 9);
    }
    expect(rows.map((r) => `${r.column}: ${r.type}`)).toContain("at: timestamp(us, UTC)");
  });

  test("keeps int64 values beyond 2^53 exact in min and max", async () => {
    const [{ min, max }] = (await query(`SELECT min(big)::VARCHAR AS min, max(big)::VARCHAR AS max FROM ${dataset(sample.folder)}`)) as [{ min: string; max: string }];
    const big = (await describe(sample.folder, { columns: ["big"] }))[0];
    expect(String(big?.min)).toBe(min);
    expect(String(big?.max)).toBe(max);
  });

  test("describes a table in memory the same as the dataset it was read from, and filters rows first with where", async () => {
    const table = await readDataset(sample.folder);
    expect(await describe(table)).toEqual(await describe(sample.folder));
    const filtered = await describe(sample.folder, { columns: ["score"], where: [["region", "=", "eu"]] });
    const expected = await duck("score", "number", "region = 'eu'");
    expect(filtered[0]).toMatchObject({ count: expected.count, nulls: expected.nulls, min: expected.min, max: expected.max, distinct: expected.distinct });
  });

  test("estimates distinct counts beyond the exact limit within 3 % of DuckDB's exact count, in bounded memory", async () => {
    const n = 60_000;
    // Values repeat: about 40,000 distinct integers and strings.
    const ints = Float64Array.from({ length: n }, (_, i) => (i * 7919) % 40_009);
    const strings = Array.from(ints, (v) => `user-${v}`);
    const rows = await describe(tableFromArrays({ ints, strings }));
    const [{ d }] = (await query(`SELECT count(DISTINCT (i * 7919) % 40009)::INT AS d FROM range(${n}) t(i)`)) as [{ d: number }];
    for (const row of rows) expect(Math.abs(row.distinct - d) / d).toBeLessThan(0.03);
  });

  test("counts exactly up to the exact limit, then estimates", () => {
    const counter = new DistinctCounter();
    for (let i = 0; i < EXACT_LIMIT; i++) counter.addWords(i, 0);
    for (let i = 0; i < EXACT_LIMIT; i++) counter.addWords(i, 0);
    expect(counter.count()).toBe(EXACT_LIMIT);
    expect(counter.isExact).toBe(true);
    counter.addWords(-1, -1);
    expect(counter.isExact).toBe(false);
    expect(Math.abs(counter.count() - EXACT_LIMIT - 1)).toBeLessThan(EXACT_LIMIT * 0.03);
  });

  test("treats NaN as the largest number and -0 as 0, and handles empty and all-null columns", async () => {
    const rows = await describe(
      tableFromArrays({ x: Float64Array.from([1, Number.NaN, -0, 0, -5]), s: ["", "b", "b", "a", ""] }),
    );
    expect(rows[0]).toMatchObject({ count: 5, nulls: 0, min: -5, distinct: 4 });
    expect(rows[0]?.max).toBeNaN();
    expect(rows[1]).toMatchObject({ min: "", max: "b", distinct: 3, mean: null });
    const empty = await describe(sample.folder, { columns: ["id", "name"], where: [["id", "<", 0]] });
    expect(empty).toEqual([
      { column: "id", type: "int64", count: 0, nulls: 0, min: null, max: null, mean: null, distinct: 0 },
      { column: "name", type: "string", count: 0, nulls: 0, min: null, max: null, mean: null, distinct: 0 },
    ]);
    const nulls = (await describe(sample.folder, { columns: ["score"], where: [["score", "is null"]] }))[0];
    expect(nulls).toMatchObject({ count: 0, nulls: 80, min: null, max: null, mean: null, distinct: 0 });
  });

  test("prints as a table with thousands separators in the counts", async () => {
    const text = Bun.inspect(await describe(sample.folder, { columns: ["id", "day"] }));
    expect(text.split("\n")[0]).toMatch(/^column │ type\s+│ count │ nulls │ min\s+│ max\s+│ mean\s+│ distinct$/);
    expect(text).toContain("2 rows");
  });

  test("names a missing column or path", async () => {
    await expect(describe(sample.folder, { columns: ["wat"] })).rejects.toThrow('column "wat" is not in');
    await expect(describe(tableFromArrays({ a: [1] }), { columns: ["b"] })).rejects.toThrow('describe: no column "b"; the table has a');
    await expect(describe(join(sample.path, "nope"))).rejects.toThrow("does not exist");
  });
});
