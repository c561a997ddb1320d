import { describe, expect, test } from "bun:test";
import { copyFile } from "node:fs/promises";
import { join } from "node:path";
import { tableFromArrays } from "apache-arrow";
import { listDataset } from "../../src/dataset/files.ts";
import { readDataset } from "../../src/dataset/read.ts";
import { count, groupBy, sum } from "../../src/notebook/groupBy.ts";
import { sql } from "../../src/notebook/sql.ts";
import { rowsOf } from "../../src/notebook/values.ts";
import { dataset, query } from "../helpers/duckdb.ts";
import { sampleDataset, writeSample } from "../helpers/sample.ts";

describe("sql", () => {
  const sample = sampleDataset();

  test("queries a dataset folder: the same groups as groupBy, nulls as nulls, partition columns with their stored values", async () => {
    const rows = await sql("SELECT region, count(*) AS n, sum(id) AS total FROM events GROUP BY ALL ORDER BY region NULLS LAST", { events: sample.folder });
    expect(rows).toEqual(await groupBy(sample.folder, "region").agg({ n: count(), total: sum("id") }));
    expect(rows.at(-1)?.region).toBeNull();
  });

  test("reads only the files readDataset reads: a hidden temporary file is left out", async () => {
    const { files } = await listDataset(sample.folder);
    const first = files[0]?.path as string;
    const hidden = join(sample.folder, ".part-in-progress.parquet");
    await copyFile(first, hidden);
    try {
      const [{ n }] = (await sql("SELECT count(*) AS n FROM t", { t: sample.folder })) as [{ n: number }];
      expect(n).toBe(400);
    } finally {
      await Bun.file(hidden).delete();
    }
  });

  test("hands a table in memory over with exact values: microsecond timestamps, int64 beyond 2^53, lists, structs, unicode", async () => {
    const table = await readDataset(sample.folder, { columns: ["id", "name", "big", "at", "day", "tags", "nested", "score"] });
    const rows = await sql("SELECT * FROM t ORDER BY id", { t: table });
    expect(rows).toEqual(rowsOf(table).sort((a, b) => (a.id as number) - (b.id as number)));
    const [{ big }] = (await sql("SELECT max(big) AS big FROM t", { t: table })) as [{ big: unknown }];
    const [{ want }] = (await query(`SELECT max(big)::VARCHAR AS want FROM ${dataset(sample.folder)}`)) as [{ want: string }];
    expect(String(big)).toBe(want);
  });

  test("joins a table with a dataset", async () => {
    const labels = tableFromArrays({ region: ["eu", "us"], label: ["Europe", "United States"] });
    const rows = await sql("SELECT label, count(*) AS n FROM events JOIN labels USING (region) GROUP BY ALL ORDER BY label", { events: sample.folder, labels });
    const expected = await query(`SELECT CASE region WHEN 'eu' THEN 'Europe' ELSE 'United States' END AS label, count(*)::INT AS n FROM ${dataset(sample.folder)} WHERE region IN ('eu', 'us') GROUP BY ALL ORDER BY label`);
    expect(rows).toEqual(expected);
  });

  test("rejects with DuckDB's message for a bad query and names a missing path", async () => {
    await expect(sql("SELECT nope FROM t", { t: sample.folder })).rejects.toThrow('Referenced column "nope" not found');
    await expect(sql("SELECT 1", { t: join(sample.path, "missing") })).rejects.toThrow(`sql: "t": ${join(sample.path, "missing")} does not exist`);
    await expect(sql("SELECT 1", { t: 42 as never })).rejects.toThrow('sql: "t" must be a dataset path or an Arrow table');
  });

  test("without @duckdb/node-api installed, pipelines still run and sql says how to add it", async () => {
    const script = `
      import { from } from "rxjs";
      import { collect, sql } from "${join(import.meta.dir, "..", "..", "src", "index.ts")}";
      console.log((await collect(from([1, 2, 3]))).length);
      await sql("SELECT 1").catch((error) => console.log(error.message));
    `;
    const proc = Bun.spawn(["bun", "--preload", join(import.meta.dir, "fixtures", "without-duckdb.ts"), "-e", script], { stdout: "pipe", stderr: "pipe" });
    const [out, err] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
    expect({ code: await proc.exited, err }).toEqual({ code: 0, err: "" });
    expect(out.split("\n")[0]).toBe("3");
    expect(out).toContain("sql: needs DuckDB's client, an optional dependency sluice does not install: run `bun add @duckdb/node-api@1.5.6-r.1` in your project");
  });

  test("a path and a table name holding quotes are passed safely", async () => {
    const odd = join(sample.path, `it's "odd"`);
    await writeSample(odd, 40);
    const rows = await sql(`SELECT count(*) AS n FROM "we""ird"`, { 'we"ird': odd });
    expect(rows).toEqual([{ n: 40 }]);
  });

  test("a table name needing quotes works, and printed rows form a table", async () => {
    const rows = await sql('SELECT count(*) AS n FROM "my events"', { "my events": sample.folder });
    expect(rows).toEqual([{ n: 400 }]);
    expect(Bun.inspect(rows)).toBe("n\n───\n400\n1 row");
  });
});
