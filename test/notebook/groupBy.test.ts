import { describe, expect, expectTypeOf, test } from "bun:test";
import { tableFromArrays } from "apache-arrow";
import { readDataset } from "../../src/dataset/read.ts";
import { count, groupBy, max, mean, min, sum, type ValueCount, valueCounts } from "../../src/notebook/groupBy.ts";
import { dataset, query } from "../helpers/duckdb.ts";
import { sampleDataset } from "../helpers/sample.ts";

describe("groupBy and valueCounts", () => {
  const sample = sampleDataset();

  const ISO = (c: string) => `strftime(${c}, '%Y-%m-%dT%H:%M:%S.%fZ')`;

  test("groups a dataset by two keys with counts, sums, means, minimums and maximums as DuckDB's GROUP BY does", async () => {
    const rows = await groupBy(sample.folder, ["region", "ok"], { batchSize: 29 }).agg({
      n: count(),
      scored: count("score"),
      ids: sum("id"),
      bigs: sum("big"),
      avg: mean("score"),
      first: min("name"),
      last: max("name"),
      latest: max("at"),
      day: min("day"),
    });
    const expected = await query(
      `SELECT region, ok, count(*)::INT AS n, count(score)::INT AS scored, sum(id)::INT AS ids, sum(big)::VARCHAR AS bigs, avg(score) AS avg,
              min(name) AS first, max(name) AS last, ${ISO("max(\"at\")")} AS latest, strftime(min("day"), '%Y-%m-%d') AS day
       FROM ${dataset(sample.folder)} GROUP BY ALL ORDER BY region NULLS LAST, ok`,
    );
    expect(rows).toHaveLength(expected.length);
    rows.forEach((row, i) => {
      const want = expected[i] as Record<string, unknown>;
      expect({ ...row, bigs: String(row.bigs), avg: undefined } as Record<string, unknown>).toEqual({ ...want, avg: undefined });
      if (want.avg === null) expect(row.avg).toBeNull();
      else expect(row.avg as number).toBeCloseTo(want.avg as number, 9);
    });
  });

  test("a table in memory gives the same groups as the dataset it was read from", async () => {
    const aggs = { n: count(), total: sum("score") };
    expect(await groupBy(await readDataset(sample.folder), "day").agg(aggs)).toEqual(await groupBy(sample.folder, "day").agg(aggs));
  });

  test("sums 64-bit integers exactly beyond 2^53, and nulls sum to null", async () => {
    const table = tableFromArrays({ k: ["a", "a", "b"], v: BigInt64Array.from([9007199254740991n, 10n, 5n]), f: Float64Array.from([1, 2, 3]) });
    const rows = await groupBy(table, "k").agg({ total: sum("v") });
    expect(rows).toEqual([
      { k: "a", total: 9007199254741001n },
      { k: "b", total: 5 },
    ]);
    const nulls = await groupBy(sample.folder, "region", { where: [["score", "is null"]] }).agg({ s: sum("score"), m: mean("score"), n: count("score") });
    for (const row of nulls) expect(row).toMatchObject({ s: null, m: null, n: 0 });
  });

  test("refuses aggregations that do not fit their column, naming them", async () => {
    await expect(groupBy(sample.folder, "region").agg({ s: sum("name") })).rejects.toThrow('groupBy: "s" is sum("name"), but "name" is Utf8, not a number');
    await expect(groupBy(sample.folder, "region").agg({ t: max("tags") })).rejects.toThrow('"t" is max("tags"), but "tags" is List<Utf8>, which has no order');
    await expect(groupBy(sample.folder, "region").agg({ region: count() })).rejects.toThrow('the aggregation "region" has the name of a key');
    await expect(groupBy(sample.folder, "region").agg({ x: "count" as never })).rejects.toThrow('"x" is not an aggregation');
    await expect(groupBy(sample.folder, "nope").agg({ n: count() })).rejects.toThrow('column "nope" is not in');
  });

  test.each(["region", "day", "ok", "note", "tags"])("valueCounts counts a dataset's rows by %s as DuckDB does, most frequent first", async (column) => {
    const counts = await valueCounts(sample.folder, column, { batchSize: 50 });
    const expected = await query(`SELECT to_json("${column}")::VARCHAR AS key, count(*)::INT AS n FROM ${dataset(sample.folder)} GROUP BY ALL`);
    const want = new Map(expected.map((r) => [r.key === null ? "null" : (r.key as string), r.n as number]));
    expect(counts.length).toBe(want.size);
    for (const c of counts) expect(want.get(JSON.stringify(c[column]))).toBe(c.count);
    for (let i = 1; i < counts.length; i++) expect((counts[i - 1] as { count: number }).count).toBeGreaterThanOrEqual((counts[i] as { count: number }).count);
  });

  test("valueCounts rows are typed by the column's name", async () => {
    const rows = await valueCounts(tableFromArrays({ shop: ["a", "b", "a"] }), "shop");
    expectTypeOf(rows).toEqualTypeOf<ValueCount<"shop">[]>();
    expectTypeOf<(typeof rows)[number]["count"]>().toEqualTypeOf<number>();
    expect(rows).toEqual([
      { shop: "a", count: 2 },
      { shop: "b", count: 1 },
    ]);
  });

  test("valueCounts keeps the most frequent values with limit and prints as a table", async () => {
    const top = await valueCounts(sample.folder, "day", { limit: 2 });
    expect(top).toHaveLength(2);
    const text = Bun.inspect(top);
    expect(text.split("\n")[0]).toMatch(/^day\s+│ count$/);
    expect(text.split("\n").at(-1)).toBe("2 rows");
  });
});
