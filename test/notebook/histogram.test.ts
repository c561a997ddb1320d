import { describe, expect, test } from "bun:test";
import { tableFromArrays } from "apache-arrow";
import type { ScanReport } from "../../src/dataset/read.ts";
import { readDataset } from "../../src/dataset/read.ts";
import { histogram } from "../../src/notebook/histogram.ts";
import { dataset, query } from "../helpers/duckdb.ts";
import { sampleDataset } from "../helpers/sample.ts";

describe("histogram", () => {
  const sample = sampleDataset();

  /** DuckDB's count per bin for the same equal-width bins, over `expr` (a number). */
  async function duckBins(expr: string, bins: number, where = "true"): Promise<number[]> {
    const rows = await query(
      `WITH v AS (SELECT (${expr})::DOUBLE AS x FROM ${dataset(sample.folder)} WHERE ${where} AND ${expr} IS NOT NULL),
            r AS (SELECT min(x) AS lo, max(x) AS hi FROM v)
       SELECT CASE WHEN hi = lo THEN 0 ELSE least(floor((x - lo) / ((hi - lo) / ${bins})), ${bins} - 1) END::INT AS bin, count(*)::INT AS n
       FROM v, r GROUP BY ALL`,
    );
    const counts = new Array(bins).fill(0);
    for (const r of rows) counts[r.bin as number] = r.n;
    return counts;
  }

  test.each([
    ["score", "score", 7],
    ["id", "id", 10],
    ["big", "big", 4],
    ["at", `epoch_us("at")`, 12],
    ["day", `"day" - DATE '1970-01-01'`, 3],
  ] as const)("counts %s into the same bins as DuckDB", async (column, expr, bins) => {
    const h = await histogram(sample.folder, column, { bins });
    expect(h.map((b) => b.count)).toEqual(await duckBins(expr, bins));
    expect(h).toHaveLength(bins);
  });

  test("leaves nulls out and counts them; edges run from the minimum to the maximum", async () => {
    const h = await histogram(sample.folder, "score", { bins: 4 });
    const [{ lo, hi, nulls }] = (await query(`SELECT min(score) AS lo, max(score) AS hi, (count(*) - count(score))::INT AS nulls FROM ${dataset(sample.folder)}`)) as [
      { lo: number; hi: number; nulls: number },
    ];
    expect(h.nulls).toBe(nulls);
    expect(h[0]?.from).toBe(lo);
    expect(h.at(-1)?.to).toBe(hi);
    const at = await histogram(sample.folder, "at", { bins: 2 });
    expect(at[0]?.from).toMatch(/^1969-12-26T03:59:59\.999999Z$/);
  });

  test("reads the dataset once when the footers give the range, twice under a row filter", async () => {
    const reports: ScanReport[] = [];
    await histogram(sample.folder, "id", { onScan: (r) => reports.push(r) });
    const rowsRead = reports.reduce((sum, r) => sum + r.rowsRead, 0);
    expect(rowsRead).toBeLessThan(2 * 400);
    expect(reports.at(-1)?.rowsRead).toBe(400);
    reports.length = 0;
    const h = await histogram(sample.folder, "id", { where: [["id", "<", 100]], bins: 5, onScan: (r) => reports.push(r) });
    expect(reports.map((r) => r.rowsMatched)).toEqual([100, 100]);
    expect(h.map((b) => b.count)).toEqual(await duckBins("id", 5, "id < 100"));
  });

  test("draws bars scaled to the fullest bin and prints as a table; NaN and a single value are handled", async () => {
    const table = tableFromArrays({ x: Float64Array.from([1, 1, 1, 1, 2, 3, Number.NaN, 3]) });
    const h = await histogram(table, "x", { bins: 2, width: 5 });
    // 3 of 4 of 5 cells is 30 eighths: three full blocks and a six-eighths block.
    expect(h.map((b) => [b.from, b.to, b.count, b.bar])).toEqual([
      [1, 2, 4, "█████"],
      [2, 3, 3, "███▊"],
    ]);
    expect(h.nans).toBe(1);
    const text = Bun.inspect(h);
    expect(text.split("\n")[0]).toMatch(/^from │ to │ count │ bar$/);
    const single = await histogram(tableFromArrays({ x: Float64Array.from([5, 5]) }), "x", { bins: 3, width: 4 });
    expect(single.map((b) => b.count)).toEqual([2, 0, 0]);
    expect(single[0]?.bar).toBe("████");
  });

  test("refuses a column that is not a number, timestamp or date, and a bad bin count", async () => {
    await expect(histogram(sample.folder, "name")).rejects.toThrow('histogram: column "name" is Utf8; a histogram needs numbers, timestamps or dates');
    await expect(histogram(await readDataset(sample.folder, { columns: ["id"] }), "id", { bins: 0 })).rejects.toThrow("bins must be a whole number of at least 1");
  });
});
