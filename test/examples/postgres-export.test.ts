import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { SQL } from "bun";
import { readDeadLetters } from "../../src/index.ts";
import type { RunSummary } from "../../src/run/run.ts";
import { dataset, query, tempDir } from "../helpers/duckdb.ts";

const EXAMPLE = join(import.meta.dir, "..", "..", "examples", "postgres-export.ts");
const URL = "postgres://postgres@127.0.0.1:5432/test";
const TABLE = `sluice_demo_orders_test_${process.pid}`;
const ROWS = 15_000;

async function runExample(outDir: string): Promise<RunSummary> {
  const child = Bun.spawn(["bun", EXAMPLE, outDir, "--url", URL, "--table", TABLE, "--rows", String(ROWS), "--json"], {
    stdout: "pipe",
    stderr: "pipe",
  });
  const [out, err, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
  expect(err).toBe("");
  expect(code).toBe(0);
  return JSON.parse(out) as RunSummary;
}

describe("the postgres export example", () => {
  let sql: SQL;
  let dir: { path: string; remove: () => Promise<void> };
  let summary: RunSummary;
  beforeAll(async () => {
    sql = new SQL({ url: URL, max: 1 });
    await sql.unsafe(`DROP TABLE IF EXISTS ${TABLE}`);
    dir = await tempDir("sluice-pg-example-");
    summary = await runExample(join(dir.path, "out"));
  });
  afterAll(async () => {
    await sql.unsafe(`DROP TABLE IF EXISTS ${TABLE}`);
    await sql.close();
    await dir.remove();
  });

  test("creates the demo table and exports every row to the dataset or the dead letter", async () => {
    const [{ n }] = await sql.unsafe(`SELECT count(*)::int AS n FROM ${TABLE}`);
    expect(n).toBe(ROWS);
    expect(summary.in).toBe(ROWS);
    const [{ bad }] = await sql.unsafe(`SELECT count(*)::int AS bad FROM ${TABLE} WHERE currency NOT IN ('EUR', 'USD', 'GBP', 'JPY') OR quantity < 1`);
    expect(bad).toBeGreaterThan(0);
    expect(summary.deadLettered).toBe(bad);
    expect(summary.written).toBe(ROWS - bad);

    const ids = [];
    for await (const entry of readDeadLetters(join(dir.path, "out", "dead-letter"))) {
      expect(entry.stage).toBe("validate");
      expect(entry.source).toStartWith(`postgres://127.0.0.1:5432/test: SELECT order_id`);
      ids.push(JSON.parse(entry.raw).order_id);
    }
    const expectedIds = await sql.unsafe(`SELECT order_id::text AS id FROM ${TABLE} WHERE currency NOT IN ('EUR', 'USD', 'GBP', 'JPY') OR quantity < 1 ORDER BY order_id`);
    expect(ids.sort()).toEqual(expectedIds.map((r: { id: string }) => r.id));
  });

  test("DuckDB reads back the values Postgres holds, partitioned by order date", async () => {
    const expected = await sql.unsafe(`SELECT order_id::text AS order_id, customer, amount::text AS amount, quantity, discount, paid,
        (extract(epoch FROM created_at) * 1000000)::int8::text AS created_us, (created_at AT TIME ZONE 'UTC')::date::text AS order_date,
        items::text AS items, to_json(tags)::text AS tags, note
      FROM ${TABLE} WHERE currency IN ('EUR', 'USD', 'GBP', 'JPY') AND quantity >= 1 ORDER BY order_id`);
    const actual = await query(`SELECT order_id::VARCHAR AS order_id, customer, amount, quantity, discount, paid,
        epoch_us(created_at)::VARCHAR AS created_us, order_date::VARCHAR AS order_date, items, tags, note
      FROM ${dataset(join(dir.path, "out", "orders"))} ORDER BY order_id`);
    expect(actual).toHaveLength(expected.length);
    for (let i = 0; i < expected.length; i++) {
      const e = expected[i];
      // Integers are int64 columns (in the struct too), which DuckDB hands back as text.
      const items = (JSON.parse(e.items) as { sku: string; qty: number }[]).map((item) => ({ ...item, qty: String(item.qty) }));
      expect(actual[i]).toEqual({ ...e, quantity: String(e.quantity), items, tags: JSON.parse(e.tags) });
    }
    const days = await query(`SELECT DISTINCT regexp_extract(filename, 'order_date=([0-9-]+)', 1) AS day FROM read_parquet('${join(dir.path, "out", "orders")}/**/*.parquet', filename = true) ORDER BY day`);
    expect(days.map((d) => d.day)).toEqual(["2024-03-01", "2024-03-02", "2024-03-03", "2024-03-04", "2024-03-05", "2024-03-06", "2024-03-07", "2024-03-08"]);
  });

  test("leaves an existing table alone and exports it again the same", async () => {
    const again = await runExample(join(dir.path, "again"));
    expect(again.written).toBe(summary.written);
    const [{ n }] = await sql.unsafe(`SELECT count(*)::int AS n FROM ${TABLE}`);
    expect(n).toBe(ROWS);
  });
});
