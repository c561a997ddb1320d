import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFile, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { ColumnSummary, DatasetSummary } from "../../src/parquet/metadata.ts";
import { dataset, query, tempDir } from "../helpers/duckdb.ts";
import { writeSample } from "../helpers/sample.ts";

const REPO = join(import.meta.dir, "../..");

/** Runs the sluice CLI as a user would and returns what it printed. */
async function sluice(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = Bun.spawn(["bun", "src/cli/main.ts", ...args], { cwd: REPO, stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
  return { code, stdout, stderr };
}

async function inspectJson(path: string): Promise<DatasetSummary> {
  const { code, stdout, stderr } = await sluice("inspect", path, "--json");
  expect(stderr).toBe("");
  expect(code).toBe(0);
  return JSON.parse(stdout) as DatasetSummary;
}

const sql = (text: string) => text.replaceAll("'", "''");
const glob = (folder: string) => `'${sql(folder)}/**/*.parquet'`;

function column(info: { columns: readonly ColumnSummary[] }, name: string): ColumnSummary {
  const found = info.columns.find((c) => c.name === name);
  if (!found) throw new Error(`no column ${name} in ${info.columns.map((c) => c.name).join(", ")}`);
  return found;
}

describe("sluice inspect", () => {
  let dir: { path: string; remove: () => Promise<void> };
  let folder: string;
  let info: DatasetSummary;

  beforeAll(async () => {
    dir = await tempDir();
    folder = join(dir.path, "sample");
    await writeSample(folder);
    info = await inspectJson(folder);
  });
  afterAll(() => dir.remove());

  test("counts rows, files and row groups as DuckDB does, for the dataset and each partition", async () => {
    const [totals] = await query(`SELECT count(*)::INT AS rows FROM ${dataset(folder)}`);
    const [groups] = await query(
      `SELECT count(DISTINCT file_name)::INT AS files, count(DISTINCT (file_name, row_group_id))::INT AS row_groups FROM parquet_metadata(${glob(folder)})`,
    );
    expect({ rows: info.rows, files: info.files, rowGroups: info.rowGroups }).toEqual({ rows: totals.rows as number, files: groups.files as number, rowGroups: groups.row_groups as number });
    expect(info.rowGroups).toBeGreaterThan(info.files); // the sample has several row groups per file

    const perPartition = await query(`SELECT region, count(*)::INT AS rows FROM ${dataset(folder)} GROUP BY ALL`);
    expect(info.partitionKeys).toEqual(["region"]);
    const mineByRegion: unknown[] = info.partitions.map((p) => [p.values.region, p.rows]).sort();
    expect(mineByRegion).toEqual(perPartition.map((r) => [r.region, r.rows]).sort());
    expect(info.partitions.find((p) => p.values.region === "a/b")?.path).toBe("region=a%2Fb");
  });

  test("reports the size of every file on disk and of every column chunk", async () => {
    for (const file of info.fileList) expect(file.bytes).toBe((await stat(join(folder, file.path))).size);
    expect(info.bytes).toBe(info.fileList.reduce((sum, f) => sum + f.bytes, 0));
    const sizes = await query(
      `SELECT array_to_string(string_split(path_in_schema, ', '), '.') AS name, sum(total_compressed_size)::INT AS compressed, sum(total_uncompressed_size)::INT AS uncompressed FROM parquet_metadata(${glob(folder)}) GROUP BY ALL`,
    );
    for (const row of sizes) {
      const c = column(info, row.name as string);
      expect([c.name, c.compressedBytes, c.uncompressedBytes]).toEqual([row.name as string, row.compressed as number, row.uncompressed as number]);
    }
  });

  test("sums null counts per leaf column as the footers record them (DuckDB's parquet_metadata)", async () => {
    const nulls = await query(
      `SELECT array_to_string(string_split(path_in_schema, ', '), '.') AS name, sum(stats_null_count)::INT AS nulls FROM parquet_metadata(${glob(folder)}) GROUP BY ALL`,
    );
    expect(Object.fromEntries(info.columns.map((c) => [c.name, c.nullCount]))).toEqual(Object.fromEntries(nulls.map((r) => [r.name, r.nulls])));
  });

  test("null counts of top-level columns equal the nulls in the data", async () => {
    const [counted] = await query(
      `SELECT (count(*) - count(score))::INT AS score, (count(*) - count(note))::INT AS note, (count(*) - count(region))::INT AS region, (count(*) - count(nested.b))::INT AS nested_b FROM read_parquet(${glob(folder)})`,
    );
    expect([column(info, "score").nullCount, column(info, "note").nullCount, column(info, "region").nullCount, column(info, "nested.b").nullCount]).toEqual([
      counted.score as number,
      counted.note as number,
      counted.region as number,
      counted.nested_b as number,
    ]);
  });

  test("min and max of every exact column equal DuckDB's min() and max() over the data, decoded by type", async () => {
    const [m] = await query(`
      SELECT min(id)::VARCHAR AS id_min, max(id)::VARCHAR AS id_max,
             min(name) AS name_min, max(name) AS name_max,
             min(score) AS score_min, max(score) AS score_max,
             min(big)::VARCHAR AS big_min, max(big)::VARCHAR AS big_max,
             strftime(min("at"), '%Y-%m-%dT%H:%M:%S.%fZ') AS at_min, strftime(max("at"), '%Y-%m-%dT%H:%M:%S.%fZ') AS at_max,
             min("day")::VARCHAR AS day_min, max("day")::VARCHAR AS day_max,
             min(ok) AS ok_min, max(ok) AS ok_max,
             min(note) AS note_min, max(note) AS note_max,
             min(nested.a)::VARCHAR AS a_min, max(nested.a)::VARCHAR AS a_max,
             min(nested.b) AS b_min, max(nested.b) AS b_max
      FROM read_parquet(${glob(folder)})`);
    const [tags] = await query(`SELECT min(t) AS lo, max(t) AS hi FROM (SELECT unnest(tags) AS t FROM read_parquet(${glob(folder)}))`);
    const mine = (name: string): unknown[] => {
      const c = column(info, name);
      expect([name, c.minExact, c.maxExact]).toEqual([name, true, true]);
      return [c.min, c.max].map((v) => (typeof v === "number" && !Number.isInteger(v) ? v : String(v)));
    };
    expect(mine("id")).toEqual([m.id_min, m.id_max]);
    // The maximum name is "😀…" although JavaScript orders "～" (U+FF5E) after it: Parquet orders bytes.
    expect(mine("name")).toEqual([m.name_min, m.name_max]);
    expect(String(m.name_max).startsWith("😀")).toBe(true);
    expect(mine("score")).toEqual([m.score_min, m.score_max]);
    expect(mine("big")).toEqual([m.big_min, m.big_max]);
    expect(mine("at")).toEqual([m.at_min, m.at_max]);
    expect(String(m.at_min) < "1970").toBe(true);
    expect(mine("day")).toEqual([m.day_min, m.day_max]);
    expect(mine("ok")).toEqual([String(m.ok_min), String(m.ok_max)]);
    expect(mine("note")).toEqual([m.note_min, m.note_max]);
    expect(mine("nested.a")).toEqual([m.a_min, m.a_max]);
    expect(mine("nested.b")).toEqual([m.b_min, m.b_max]);
    expect(mine("tags.list.item")).toEqual([tags.lo, tags.hi]);
    expect(column(info, "at").type).toBe("timestamp(us, UTC)");
    expect(column(info, "big").min).toBe(-(Number.MAX_SAFE_INTEGER - 1));
  });

  test("marks statistics the writer truncated as inexact, and they are prefixes of the real values", async () => {
    const [m] = await query(`SELECT min(long_text) AS lo, max(long_text) AS hi FROM read_parquet(${glob(folder)})`);
    const [stats] = await query(`SELECT min(stats_min_value) AS lo, max(stats_max_value) AS hi FROM parquet_metadata(${glob(folder)}) WHERE path_in_schema = 'long_text'`);
    const c = column(info, "long_text");
    expect([c.min, c.max]).toEqual([stats.lo as string, stats.hi as string]);
    expect(c.minExact).toBe(false);
    expect(String(m.lo).startsWith(String(c.min))).toBe(true);
    expect(String(c.min).length).toBeLessThan(String(m.lo).length);
  });

  test("gives each partition its own statistics", async () => {
    const rows = await query(
      `SELECT region, count(*) - count(note) AS note_nulls, min(id)::VARCHAR AS lo, max(id)::VARCHAR AS hi FROM ${dataset(folder)} GROUP BY ALL`,
    );
    for (const row of rows) {
      const partition = info.partitions.find((p) => p.values.region === row.region);
      expect(partition).toBeDefined();
      const id = column(partition!, "id");
      const note = column(partition!, "note");
      expect([row.region, String(id.min), String(id.max), note.nullCount]).toEqual([row.region, row.lo, row.hi, Number(row.note_nulls)]);
    }
  });

  test("describes the schema with nested types and nullability", () => {
    expect(info.schema).toEqual([
      { name: "id", type: "int64", nullable: false },
      { name: "name", type: "string", nullable: false },
      { name: "score", type: "double", nullable: true },
      { name: "big", type: "int64", nullable: false },
      { name: "at", type: "timestamp(us, UTC)", nullable: false },
      { name: "day", type: "date", nullable: false },
      { name: "ok", type: "boolean", nullable: false },
      { name: "tags", type: "list<string>", nullable: false },
      { name: "region", type: "string", nullable: true },
      { name: "note", type: "string", nullable: true },
      { name: "long_text", type: "string", nullable: false },
      { name: "nested", type: "struct<a: int64, b: string>", nullable: false },
    ]);
    expect(info.schemaDiffers).toEqual([]);
    expect(info.fileList[0].metadata["sluice.run_id"]).toBeString();
    expect(info.fileList[0].metadata["ARROW:schema"]).toBeUndefined();
  });

  test("prints a readable report with the numbers, the schema and the partitions", async () => {
    const { code, stdout } = await sluice("inspect", folder);
    expect(code).toBe(0);
    expect(stdout).toContain(`rows       ${info.rows}`);
    expect(stdout).toContain(`files      ${info.files} (`);
    expect(stdout).toContain(`${info.rowGroups} row groups`);
    expect(stdout).toMatch(/at\s+timestamp\(us, UTC\) not null/);
    expect(stdout).toMatch(/score\s+│ double\s+│\s+80 │ -24\.875/);
    expect(stdout).toContain("region=a%2Fb");
    expect(stdout).toContain("region=__HIVE_DEFAULT_PARTITION__");
    expect(stdout).toContain("truncated prefix");
  });

  test("shows counts with thousands separators in its tables, as in its summary lines, and plain numbers in --json", async () => {
    const rows = 12_345;
    const big = join(dir.path, "counts.parquet");
    await query(`COPY (SELECT range AS id, CASE WHEN range % 3 = 0 THEN NULL ELSE range END AS v FROM range(${rows})) TO '${sql(big)}' (FORMAT parquet)`);
    const { code, stdout } = await sluice("inspect", big);
    expect(code).toBe(0);
    expect(stdout).toContain("rows       12,345");
    expect(stdout).toMatch(/v\s+│ int64\s+│ 4,115 │ 1\s+│ 12344 /);
    const json = JSON.parse((await sluice("inspect", big, "--json")).stdout);
    expect(json.rows).toBe(rows);
    expect(json.columns.find((c: { name: string }) => c.name === "v").nullCount).toBe(4115);
  });

  test("reads only the footer: a file whose data pages are destroyed is still described", async () => {
    const source = join(folder, info.fileList[0].path);
    const broken = join(dir.path, "broken.parquet");
    await copyFile(source, broken);
    const bytes = new Uint8Array(await readFile(broken));
    const footerLength = new DataView(bytes.buffer).getUint32(bytes.length - 8, true);
    bytes.fill(0xff, 4, bytes.length - 8 - footerLength);
    await writeFile(broken, bytes);
    const one = await inspectJson(broken);
    expect(one.isFile).toBe(true);
    expect(one.rows).toBe(info.fileList[0].rows);
    expect(column(one, "id").max).toBeNumber();
    const readBack = query(`SELECT sum(id) FROM read_parquet('${sql(broken)}')`);
    await expect(readBack).rejects.toThrow();
  });

  test("describes a dataset another writer made, with partition columns only in folder names", async () => {
    const duck = join(dir.path, "duck");
    await query(`COPY (SELECT i::BIGINT AS id, (i * 1.5)::DECIMAL(18,3) AS d18, (i / 4 - 3)::DECIMAL(4,2) AS d4, i::UINTEGER AS u,
        TIMESTAMP '2024-01-01' + INTERVAL (i) HOUR AS ts, uuid() AS uid, (i % 3)::VARCHAR AS k
      FROM range(50) t(i)) TO '${sql(duck)}' (FORMAT parquet, PARTITION_BY (k))`);
    const other = await inspectJson(duck);
    const [m] = await query(`SELECT count(*)::INT AS n, min(d18)::VARCHAR AS d18_lo, max(d18)::VARCHAR AS d18_hi, min(d4)::VARCHAR AS d4_lo, max(d4)::VARCHAR AS d4_hi,
        min(u)::VARCHAR AS u_hi, strftime(max(ts), '%Y-%m-%dT%H:%M:%S.%f') AS ts_hi, min(uid)::VARCHAR AS uid_lo, max(uid)::VARCHAR AS uid_hi
      FROM read_parquet(${glob(duck)})`);
    expect(other.rows).toBe(m.n as number);
    expect(other.partitionKeys).toEqual(["k"]);
    expect(other.schema.map((f) => f.name)).not.toContain("k");
    expect(other.schema.map((f) => f.type)).toEqual(["int64", "decimal(18,3)", "decimal(4,2)", "uint32", "timestamp(us)", "uuid"]);
    expect([column(other, "d18").min, column(other, "d18").max]).toEqual([m.d18_lo as string, m.d18_hi as string]);
    expect([column(other, "d4").min, column(other, "d4").max]).toEqual([m.d4_lo as string, m.d4_hi as string]);
    expect(String(column(other, "u").min)).toBe(m.u_hi as string);
    expect(column(other, "ts").max).toBe(m.ts_hi as string);
    expect([column(other, "uid").min, column(other, "uid").max]).toEqual([m.uid_lo as string, m.uid_hi as string]);
    const { stdout } = await sluice("inspect", duck);
    expect(stdout).toMatch(/k\s+\(partition folder only\)/);
  });

  test("fails with a message naming the input when it is missing, empty or not Parquet", async () => {
    const missing = await sluice("inspect", join(dir.path, "nope"));
    expect([missing.code, missing.stdout]).toEqual([1, ""]);
    expect(missing.stderr).toContain(`${join(dir.path, "nope")} does not exist`);

    const empty = join(dir.path, "empty");
    await Bun.write(join(empty, "readme.txt"), "nothing here");
    const none = await sluice("inspect", empty);
    expect(none.code).toBe(1);
    expect(none.stderr).toContain(`${empty} holds no Parquet files`);

    const fake = join(dir.path, "fake.parquet");
    await Bun.write(fake, '{"not":"parquet"}\n');
    const notParquet = await sluice("inspect", fake);
    expect(notParquet.code).toBe(1);
    expect(notParquet.stderr).toContain(`${fake}: not a Parquet file`);

    const usage = await sluice("inspect");
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain("usage: sluice inspect");
  });
});
