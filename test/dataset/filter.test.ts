import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { Float64, Int32, Table, tableFromArrays, tableToIPC, vectorFromArray } from "apache-arrow";
import * as pq from "parquet-wasm";
import { readDataset, readDatasetBatches, type RowCondition, type ScanReport } from "../../src/dataset/read.ts";
import { takeRows } from "../../src/dataset/take.ts";
import { rowsOf } from "../../src/notebook/values.ts";
import { dataset, query } from "../helpers/duckdb.ts";
import { sampleDataset } from "../helpers/sample.ts";

const sql = (text: string) => text.replaceAll("'", "''");

describe("readDataset row filters", () => {
  const sample = sampleDataset();

  const SELECT = `id::INT AS id, name, score, strftime("at", '%Y-%m-%dT%H:%M:%S.%fZ') AS "at", strftime("day", '%Y-%m-%d') AS "day", ok, region`;
  const COLUMNS = ["id", "name", "score", "at", "day", "ok", "region"];
  const byId = (rows: Record<string, unknown>[]) => rows.sort((a, b) => (a.id as number) - (b.id as number));

  // Each case: sluice's conditions, DuckDB's WHERE for the same rows.
  const cases: readonly (readonly [string, readonly RowCondition[], string])[] = [
    ["an integer range", [["id", ">=", 40], ["id", "<", 90]], "id >= 40 AND id < 90"],
    ["an integer beyond 2^53 compared as a bigint", [["big", ">", 9007199254740600n]], "big > 9007199254740600"],
    ["equality on a float with nulls", [["score", "=", -12.5]], "score = -12.5"],
    ["!= skips nulls, as SQL does", [["score", "!=", 0]], "score != 0"],
    ["is null", [["score", "is null"]], "score IS NULL"],
    ["is not null and <", [["score", "is not null"], ["score", "<", -20]], "score IS NOT NULL AND score < -20"],
    ["strings in UTF-8 byte order (～ before 😀)", [["name", ">", "～"]], "name > '～'"],
    ["string equality and the empty string", [["name", "in", ["", "name-0042", "😀55"]]], "name IN ('', 'name-0042', '😀55')"],
    ["not in", [["name", "not in", ["", "name-0042"]], ["id", "<", 60]], "name NOT IN ('', 'name-0042') AND id < 60"],
    ["a timestamp from ISO text, before 1970", [["at", "<", "1969-12-31T00:00:00.000003Z"]], `"at" < TIMESTAMPTZ '1969-12-31 00:00:00.000003+00'`],
    ["a timestamp from a Date", [["at", ">=", new Date("1970-03-01T00:00:00Z")]], `"at" >= TIMESTAMPTZ '1970-03-01 00:00:00+00'`],
    ["a date", [["day", "=", "2024-03-02"]], `"day" = DATE '2024-03-02'`],
    ["a boolean", [["ok", "=", true], ["id", "<=", 100]], "ok AND id <= 100"],
    ["a partition column held in the files", [["region", "=", "a/b"]], "region = 'a/b'"],
    ["the null partition", [["region", "is null"], ["id", ">", 300]], "region IS NULL AND id > 300"],
    ["nothing matches", [["id", ">", 100000]], "id > 100000"],
    ["a bigint beyond 64 bits", [["big", "<", 2n ** 70n], ["id", "<", 10]], "big < 1180591620717411303424 AND id < 10"],
    ["a number beyond 2^1023 and a fraction on an integer column", [["id", "<", 1e308], ["id", "<=", 4.5]], "id < 1e308 AND id <= 4.5"],
  ];

  test.each(cases)("returns the rows DuckDB returns for %s", async (_name, where, duckWhere) => {
    const reports: ScanReport[] = [];
    const table = await readDataset(sample.folder, { where, columns: COLUMNS, onScan: (r) => reports.push(r) });
    const expected = await query(`SELECT ${SELECT} FROM ${dataset(sample.folder)} WHERE ${duckWhere} ORDER BY id`);
    expect(byId(rowsOf(table))).toEqual(expected);
    expect(reports).toHaveLength(1);
    expect(reports[0]?.rowsMatched).toBe(expected.length);
  });

  test("skips row groups whose statistics rule every row out, and says how many", async () => {
    const [{ groups }] = (await query(`SELECT count(DISTINCT (file_name, row_group_id))::INT AS groups FROM parquet_metadata('${sql(sample.folder)}/**/*.parquet')`)) as [{ groups: number }];
    let report: ScanReport | undefined;
    const table = await readDataset(sample.folder, { where: [["id", "<", 30]], columns: ["id"], onScan: (r) => { report = r; } });
    expect(table.numRows).toBe(30);
    expect(report?.rowGroups).toBe(groups);
    // ids ascend within each partition's files, so most row groups start above 30.
    expect(report?.rowGroupsSkipped).toBeGreaterThan(groups / 2);
    expect(report?.rowsRead).toBeLessThan(400);
    // Rows read are those of the row groups kept: check it against the footers' row counts.
    const [{ kept }] = (await query(
      `SELECT sum(row_group_num_rows)::INT AS kept FROM (SELECT DISTINCT file_name, row_group_id, row_group_num_rows FROM parquet_metadata('${sql(sample.folder)}/**/*.parquet') WHERE path_in_schema = 'id' AND stats_min_value::BIGINT < 30)`,
    )) as [{ kept: number }];
    expect(report?.rowsRead).toBe(kept);
  });

  test("a condition on a partition column only in folder names skips whole files", async () => {
    const other = join(sample.path, "duck");
    await query(`COPY (SELECT i AS n, ['p', 'q', 'r/s'][i % 3 + 1] AS k FROM range(30) t(i)) TO '${sql(other)}' (FORMAT parquet, PARTITION_BY (k))`);
    let report: ScanReport | undefined;
    const table = await readDataset(other, { where: [["k", "!=", "q"], ["n", ">", 5]], onScan: (r) => { report = r; } });
    const expected = await query(`SELECT n::INT AS n, k FROM read_parquet('${sql(other)}/**/*.parquet', hive_partitioning = true) WHERE k != 'q' AND n > 5 ORDER BY n`);
    expect(rowsOf(table).sort((a, b) => (a.n as number) - (b.n as number))).toEqual(expected);
    expect(report?.filesSkipped).toBe(1);
    await expect(readDataset(other, { where: [["k", "=", 1]] })).rejects.toThrow('where[0] ["k", "=", 1]: column "k" is Utf8; compare it with a string');
  });

  test("NaN matches no comparison but != (IEEE 754, as in JavaScript); float statistics skip row groups, a NaN bound is ignored", async () => {
    // Written with parquet-wasm (sluice's writer refuses NaN; DuckDB's ignores small row groups).
    const file = join(sample.path, "nan.parquet");
    const x = Array.from({ length: 200 }, (_, i) => (i % 7 === 0 && i < 60 ? Number.NaN : i % 11 === 0 ? null : i / 4));
    const table = new Table({ id: vectorFromArray(Array.from({ length: 200 }, (_, i) => i), new Int32()), x: vectorFromArray(x, new Float64()) });
    const props = new pq.WriterPropertiesBuilder().setMaxRowGroupSize(20).setStatisticsEnabled(pq.EnabledStatistics.Chunk).build();
    await Bun.write(file, pq.writeParquet(pq.Table.fromIPCStream(tableToIPC(table, "stream")), props));
    const ids = async (where: readonly RowCondition[], report?: (r: ScanReport) => void) =>
      rowsOf(await readDataset(file, { where, columns: ["id"], ...(report ? { onScan: report } : {}) })).map((r) => r.id);
    const duckIds = async (w: string) => (await query(`SELECT id::INT AS id FROM '${sql(file)}' WHERE ${w} ORDER BY id`)).map((r) => r.id);
    let report: ScanReport | undefined;
    expect(await ids([["x", ">", 40]], (r) => { report = r; })).toEqual(await duckIds("x > 40 AND NOT isnan(x)"));
    expect(report?.rowGroupsSkipped).toBeGreaterThan(0);
    expect(await ids([["x", "<=", 3]])).toEqual(await duckIds("x <= 3 AND NOT isnan(x)"));
    expect(await ids([["x", "!=", 5]])).toEqual(await duckIds("x != 5 OR isnan(x)"));
    expect(await ids([["x", "=", Number.NaN]])).toEqual([]);
    expect(await ids([["x", "not in", [1, Number.NaN]]])).toEqual(await duckIds("x != 1 OR isnan(x)"));
  });

  test("the limit counts matching rows, and batches hold only matching rows", async () => {
    let total = 0;
    for await (const batch of readDatasetBatches(sample.folder, { where: [["ok", "=", false]], columns: ["id", "ok"], batchSize: 7, limit: 50 })) {
      expect(batch.getChild("ok")?.toArray().every((v: boolean) => v === false)).toBe(true);
      total += batch.numRows;
    }
    expect(total).toBe(50);
  });

  test("filters on a column it does not return", async () => {
    const table = await readDataset(sample.folder, { where: [["score", ">", 10]], columns: ["id"] });
    const expected = await query(`SELECT id::INT AS id FROM ${dataset(sample.folder)} WHERE score > 10 ORDER BY id`);
    expect(table.schema.fields.map((f) => f.name)).toEqual(["id"]);
    expect(byId(rowsOf(table))).toEqual(expected);
  });

  test("lists, structs and nulls survive the row picking whole", async () => {
    const table = await readDataset(sample.folder, { where: [["id", "in", [3, 9, 18, 19, 100]]], columns: ["id", "tags", "nested", "note"] });
    const expected = await query(`SELECT id::INT AS id, tags, {'a': nested.a::INT, 'b': nested.b} AS nested, note FROM ${dataset(sample.folder)} WHERE id IN (3, 9, 18, 19, 100) ORDER BY id`);
    expect(byId(rowsOf(table))).toEqual(expected);
  });

  test.each([
    [[["nope", "=", 1]], 'where[0] ["nope", "=", 1] names no column of'],
    [[["id", "~", 1]], "where[0] is not a condition: expected [column, op, value]"],
    [[["id", ">", "7"]], 'column "id" is Int64; compare it with a number or bigint'],
    [[["id", "=", null]], 'compare with null by "is null"'],
    [[["id", ">", 1], ["at", "<", "yesterday"]], 'where[1] ["at", "<", "yesterday"]: column "at" is Timestamp<MICROSECOND, UTC>; compare it with a Date or ISO-8601'],
    [[["tags", "=", "x"]], 'column "tags" is List<Utf8>; conditions compare numbers'],
    [[["id", "in", 3]], '"in" takes a list of values'],
  ] as const)("refuses a bad condition with a message naming it: %j", async (where, message) => {
    await expect(readDataset(sample.folder, { where: where as unknown as RowCondition[] })).rejects.toThrow(message);
  });
});

describe("takeRows", () => {
  test("picks rows of a sliced batch, nulls and strings included", () => {
    const table = tableFromArrays({ n: Float64Array.from([1, 2, 3, 4, 5, 6]), s: ["a", "bb", "", "dddd", "e", "ff"] });
    const batch = (table.batches[0] as Table["batches"][number]).slice(1, 6);
    const picked = takeRows(batch, Int32Array.of(0, 2, 4));
    expect(rowsOf(picked)).toEqual([
      { n: 2, s: "bb" },
      { n: 4, s: "dddd" },
      { n: 6, s: "ff" },
    ]);
  });
});
