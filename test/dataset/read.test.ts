import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { readDataset, readDatasetBatches } from "../../src/dataset/read.ts";
import { rowsOf } from "../../src/notebook/values.ts";
import { dataset, query } from "../helpers/duckdb.ts";
import { sampleDataset } from "../helpers/sample.ts";

const sql = (text: string) => text.replaceAll("'", "''");

describe("readDataset", () => {
  const sample = sampleDataset();

  /** The rows DuckDB reads for a filter, in the shape rowsOf gives, sorted by id. */
  async function duck(where: string, select = `id::INT AS id, name, score, strftime("at", '%Y-%m-%dT%H:%M:%S.%fZ') AS "at", tags, region`) {
    return query(`SELECT ${select} FROM ${dataset(sample.folder)} WHERE ${where} ORDER BY id`);
  }
  const byId = (rows: Record<string, unknown>[]) => rows.sort((a, b) => (a.id as number) - (b.id as number));

  test.each([
    ["one value", { region: "eu" }, "region = 'eu'"],
    ["a list of values, one needing escapes", { region: ["us", "a/b"] }, "region IN ('us', 'a/b')"],
    ["null, the __HIVE_DEFAULT_PARTITION__ folder", { region: null }, "region IS NULL"],
    ["a predicate", { region: (value: string | null) => value !== null && value.length === 2 }, "length(region) = 2"],
  ] as const)("filters partitions by %s and returns the chosen columns, as DuckDB reads them", async (_name, where, duckWhere) => {
    const columns = ["id", "name", "score", "at", "tags", "region"];
    const table = await readDataset(sample.folder, { where, columns });
    expect(table.schema.fields.map((f) => f.name)).toEqual(columns);
    const expected = await duck(duckWhere);
    expect(expected.length).toBeGreaterThan(0);
    expect(byId(rowsOf(table))).toEqual(expected);
  });

  test("reads every column of every partition with the types the schema gave them", async () => {
    const table = await readDataset(sample.folder);
    const [count] = await query(`SELECT count(*)::INT AS n FROM ${dataset(sample.folder)}`);
    expect(table.numRows).toBe(count.n as number);
    expect(Object.fromEntries(table.schema.fields.map((f) => [f.name, String(f.type)]))).toMatchObject({
      id: "Int64",
      at: "Timestamp<MICROSECOND, UTC>",
      day: "Date32<DAY>",
      tags: "List<Utf8>",
      nested: "Struct<{a:Int64, b:Utf8}>",
    });
  });

  test("prunes partitions before opening files: a broken file in another partition is never read", async () => {
    const broken = join(sample.folder, "region=zz", "part-0.parquet");
    await Bun.write(broken, "not parquet");
    try {
      const table = await readDataset(sample.folder, { where: { region: "eu" }, columns: ["id"] });
      expect(table.numRows).toBe(100);
      await expect(readDataset(sample.folder, { columns: ["id"] })).rejects.toThrow(broken);
    } finally {
      await Bun.file(broken).delete();
    }
  });

  test("returns an empty table with the chosen columns when no partition matches", async () => {
    const table = await readDataset(sample.folder, { where: { region: "nowhere" }, columns: ["name", "id"] });
    expect(table.numRows).toBe(0);
    expect(table.schema.fields.map((f) => `${f.name}: ${f.type}`)).toEqual(["name: Utf8", "id: Int64"]);
  });

  test("streams batches of batchSize rows and stops at the limit", async () => {
    const sizes: number[] = [];
    for await (const batch of readDatasetBatches(sample.folder, { columns: ["id"], batchSize: 16, limit: 70 })) sizes.push(batch.numRows);
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(70);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(16);
  });

  test("closes the file when the reader stops early", async () => {
    const batches = readDatasetBatches(sample.folder, { batchSize: 10 });
    const first = await batches.next();
    expect(first.done).toBe(false);
    expect(await batches.return(undefined)).toEqual({ done: true, value: undefined });
  });

  test("adds partition columns that only live in folder names, as DuckDB's hive partitioning does", async () => {
    const other = join(sample.path, "duck");
    await query(`COPY (SELECT i AS n, ['p', 'q', 'r/s'][i % 3 + 1] AS k FROM range(30) t(i)) TO '${sql(other)}' (FORMAT parquet, PARTITION_BY (k))`);
    const table = await readDataset(other, { where: { k: ["q", "r/s"] } });
    expect(table.schema.fields.map((f) => `${f.name}: ${f.type}`)).toEqual(["n: Int64", "k: Utf8"]);
    const expected = await query(`SELECT n::INT AS n, k FROM read_parquet('${sql(other)}/**/*.parquet', hive_partitioning = true) WHERE k IN ('q', 'r/s') ORDER BY n`);
    expect(rowsOf(table).sort((a, b) => (a.n as number) - (b.n as number))).toEqual(expected);
    const onlyKeys = await readDataset(other, { columns: ["k"], where: { k: "p" } });
    expect(onlyKeys.numRows).toBe(10);
    expect(new Set(onlyKeys.getChild("k")?.toArray())).toEqual(new Set(["p"]));
  });

  test("names the unknown key, the unknown column or the missing path", async () => {
    await expect(readDataset(sample.folder, { where: { country: "DE" } })).rejects.toThrow('"country" is not a partition key of');
    await expect(readDataset(sample.folder, { columns: ["id", "wat"] })).rejects.toThrow('column "wat" is not in');
    await expect(readDataset(join(sample.path, "nope"))).rejects.toThrow(`${join(sample.path, "nope")} does not exist`);
  });
});
