import { describe, expect, test } from "bun:test";
import { tableFromArrays } from "apache-arrow";
import { readDataset } from "../../src/dataset/read.ts";
import { countBy } from "../../src/notebook/countBy.ts";
import { dataset, query } from "../helpers/duckdb.ts";
import { sampleDataset } from "../helpers/sample.ts";

describe("countBy", () => {
  const sample = sampleDataset();

  test.each(["region", "day", "ok", "note"])("counts a dataset's rows by %s as DuckDB's GROUP BY does", async (column) => {
    const table = await readDataset(sample.folder);
    const counts = countBy(table, column);
    const expected = await query(`SELECT "${column}"::VARCHAR AS key, count(*)::INT AS n FROM ${dataset(sample.folder)} GROUP BY ALL`);
    const text = (value: unknown) => (value === null ? null : String(value));
    const byKey = (rows: { key: string | null; n: number }[]) => rows.sort((a, b) => String(a.key).localeCompare(String(b.key)));
    expect(byKey(counts.map((c) => ({ key: text(c[column]), n: c.count })))).toEqual(
      byKey(expected.map((r) => ({ key: r.key === "__HIVE_DEFAULT_PARTITION__" ? null : (r.key as string | null), n: r.n as number }))),
    );
    expect(counts.reduce((sum, c) => sum + c.count, 0)).toBe(400);
    for (let i = 1; i < counts.length; i++) expect((counts[i - 1] as { count: number }).count).toBeGreaterThanOrEqual((counts[i] as { count: number }).count);
  });

  test("counts arrays of objects and of plain values; nulls and missing values are one group; ties keep first appearance", () => {
    expect(countBy([{ t: "b" }, { t: "a" }, {}, { t: "a" }, { t: null }, { t: "b" }], "t")).toEqual([
      { t: "b", count: 2 },
      { t: "a", count: 2 },
      { t: null, count: 2 },
    ]);
    expect(countBy(["x", "y", "x"])).toEqual([
      { value: "x", count: 2 },
      { value: "y", count: 1 },
    ]);
    expect(countBy([], "t")).toEqual([]);
  });

  test("groups lists, structs and dates by what they hold, not by identity", () => {
    const day = (text: string) => new Date(text);
    expect(countBy([{ l: [1, 2] }, { l: [1, 2] }, { l: [2] }], "l")).toEqual([
      { l: [1, 2], count: 2 },
      { l: [2], count: 1 },
    ]);
    expect(countBy([{ d: day("2024-03-01") }, { d: day("2024-03-01") }], "d").map((c) => c.count)).toEqual([2]);
    expect(countBy([{ n: 1n }, { n: 1n }, { n: 1 }], "n").map((c) => c.count)).toEqual([2, 1]);
  });

  test("prints as a table with counts grouped by thousands, and names the columns when the column is unknown", () => {
    const table = tableFromArrays({ kind: Array.from({ length: 1500 }, (_, i) => (i < 1200 ? "a" : "b")) });
    expect(Bun.inspect(countBy(table, "kind")).split("\n")).toEqual(["kind │ count", "─────┼──────", "a    │ 1,200", "b    │   300", "2 rows"]);
    expect(() => countBy(table, "nope")).toThrow('countBy: no column "nope"; the table has kind');
    expect(() => countBy(table)).toThrow("name the column");
  });
});
