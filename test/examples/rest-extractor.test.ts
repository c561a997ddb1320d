import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { SQL } from "bun";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { enrichOrder, fakeOrders, type Order, reportQueries } from "../../examples/rest-extractor.ts";
import type { DeadLetter } from "../../src/deadletter/entry.ts";
import { readDeadLetters } from "../../src/index.ts";
import { dataset, query, tempDir } from "../helpers/duckdb.ts";

/** Every file under `folder`, relative, sorted. */
async function filesUnder(folder: string): Promise<string[]> {
  return (await readdir(folder, { recursive: true, withFileTypes: true }))
    .filter((entry) => entry.isFile())
    .map((entry) => join(entry.parentPath, entry.name).slice(folder.length + 1))
    .sort();
}

describe("the REST extractor example", () => {
  let dir: { path: string; remove: () => Promise<void> };
  let out: string;
  let stdout: string;
  let exitCode: number;
  const orders = fakeOrders(2_500);
  const PG = "postgres://postgres@127.0.0.1:5432/test";
  const table = `sluice_rest_orders_${process.pid}`;
  /** Runs the example once more into the same folder and tables. */
  async function runExample(): Promise<[string, number, string]> {
    const env = { ...process.env };
    delete env.REST_API_TOKEN;
    const child = Bun.spawn(["bun", "examples/rest-extractor.ts", "--out", out, "--pg", PG, "--table", table], {
      cwd: join(import.meta.dir, "../.."),
      env,
      stdout: "pipe",
      stderr: "pipe",
    });
    const [text, code, errors] = await Promise.all([new Response(child.stdout).text(), child.exited, new Response(child.stderr).text()]);
    return [text, code, errors];
  }
  /** The SQLite table's rows, ordered, as the test compares them. */
  function sqliteRows(): Record<string, unknown>[] {
    const db = new Database(join(out, "orders.db"), { readonly: true });
    try {
      return db
        .query(`SELECT order_id, customer_id, country, status, amount, currency, CAST(items AS TEXT) AS items, created_at, created_ts, order_date, _sluice_input, _sluice_line FROM "${table}" ORDER BY order_id`)
        .all() as Record<string, unknown>[];
    } finally {
      db.close();
    }
  }

  beforeAll(async () => {
    dir = await tempDir("sluice-rest-");
    out = join(dir.path, "rest");
    let errors: string;
    [stdout, exitCode, errors] = await runExample();
    if (exitCode !== 0) console.error(errors);
  });
  afterAll(async () => {
    const sql = new SQL({ url: PG, max: 1 });
    await sql.unsafe(`DROP TABLE IF EXISTS "${table}"`);
    await sql.unsafe("DELETE FROM _sluice_commits WHERE table_name = $1", [table]);
    await sql.close();
    await dir.remove();
  });

  test("runs offline against its own fake API, retrying through 503s and 429s", () => {
    expect(exitCode).toBe(0);
    expect(stdout).toContain("records in     2,500");
    const requests = Number(/requests\s+(\d+)/.exec(stdout)?.[1]);
    // 25 pages and the empty one that ends the extraction, plus at least the two planned 429s.
    expect(requests).toBeGreaterThanOrEqual(28);
  });

  test("DuckDB reads back exactly the valid orders, with their enriched columns", async () => {
    const rows = await query(`
      SELECT order_id, customer_id, country, status, amount, currency, items, created_at,
             epoch_us(created_ts) AS created_us, order_date::VARCHAR AS order_date
      FROM ${dataset(join(out, "orders"))} ORDER BY order_id`);
    const expected = orders
      .filter((o) => !o.defect)
      .map(({ order }) => {
        const stored = enrichOrder(order as Order);
        return {
          order_id: stored.order_id,
          customer_id: stored.customer_id,
          country: stored.country,
          status: stored.status,
          amount: stored.amount,
          currency: stored.currency,
          items: String(stored.items),
          created_at: stored.created_at,
          created_us: String(Date.parse(stored.created_at) * 1000),
          order_date: stored.created_at.slice(0, 10),
        };
      });
    expect(rows.length).toBe(expected.length);
    expect(rows).toEqual(expected);
  });

  test("dead letters hold each planted defect with its page URL, record position and raw JSON", async () => {
    const entries: DeadLetter[] = [];
    for await (const entry of readDeadLetters(join(out, "dead-letter"))) entries.push(entry);
    entries.sort((a, b) => a.line - b.line);
    const planted = orders.flatMap((o, i) => (o.defect ? [i + 1] : []));
    expect(planted.length).toBeGreaterThan(20);
    expect(entries.map((e) => e.line)).toEqual(planted);
    for (const entry of entries) {
      const page = Math.ceil(entry.line / 100);
      expect(entry.stage).toBe("validate");
      expect(entry.source).toMatch(new RegExp(`^http://127\\.0\\.0\\.1:\\d+/v1/orders\\?page=${page}&per_page=100$`));
      expect(JSON.parse(entry.raw)).toEqual(orders[entry.line - 1].order);
    }
  });

  test("the raw zone holds every page's body as served, and no secret anywhere", async () => {
    const raw = join(out, "raw");
    const files = await filesUnder(raw);
    expect(files.length).toBe(26);
    for (const file of files) expect(file).toMatch(/^\d{4}-\d{2}-\d{2}\/\d{8}T\d{6}Z-[a-z0-9]+-\d{6}\.json$/);
    const served: unknown[] = [];
    for (const file of files) served.push(...(JSON.parse(await readFile(join(raw, file), "utf8")) as { data: unknown[] }).data);
    expect(served).toEqual(orders.map((o) => o.order));

    const everything = [stdout];
    for (const file of await filesUnder(out)) everything.push((await readFile(join(out, file))).toString("latin1"));
    expect(everything.some((text) => text.includes("demo-token"))).toBe(false);
  });

  test("the printed analytics agree with DuckDB", async () => {
    const [{ n, days }] = await query(`SELECT count(*) AS n, count(DISTINCT order_date) AS days FROM ${dataset(join(out, "orders"))}`);
    expect(stdout).toContain(`orders         ${Number(n).toLocaleString("en-US")} over ${Number(days)} days`);
    const statuses = await query(`SELECT status, count(*) AS n FROM ${dataset(join(out, "orders"))} GROUP BY status ORDER BY status`);
    expect(stdout).toContain(`by status      ${statuses.map((s) => `${s.status} ${Number(s.n).toLocaleString("en-US")}`).join(", ")}`);
    const revenue = await query(`SELECT currency, round(sum(amount), 2) AS total FROM ${dataset(join(out, "orders"))} GROUP BY currency ORDER BY currency`);
    const money = revenue.map((r) => `${r.currency} ${Number(r.total).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`);
    expect(stdout).toContain(`revenue        ${money.join(", ")}`);
  });
  test("SQLite and PostgreSQL hold every valid order once, with the values DuckDB reads from the Parquet files", async () => {
    const parquet = await query(`
      SELECT order_id, customer_id, country, status, amount, currency, items::VARCHAR AS items, created_at,
             strftime(created_ts AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%S.%fZ') AS created_ts, order_date::VARCHAR AS order_date
      FROM ${dataset(join(out, "orders"))} ORDER BY order_id`);
    const lite = sqliteRows();
    expect(lite.map(({ _sluice_input, _sluice_line, ...row }) => row)).toEqual(parquet);
    // Lineage names the raw-zone page and the record's place in it.
    for (const row of lite.slice(0, 50)) expect(String(row._sluice_input)).toMatch(/raw\/\d{4}-\d{2}-\d{2}\/\d{8}T\d{6}Z-[a-z0-9]+-\d{6}\.json$/);
    const sql = new SQL({ url: PG, max: 1 });
    try {
      const pg = await sql.unsafe(`SELECT order_id, customer_id, country, status, amount, currency, items::text AS items, created_at,
        to_char(created_ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS created_ts, order_date::text AS order_date
        FROM "${table}" ORDER BY order_id COLLATE "C"`);
      expect([...pg]).toEqual(parquet);
    } finally {
      await sql.close();
    }
  });

  test("the report computed in each database is printed, and agrees with DuckDB on the Parquet files", async () => {
    const d = dataset(join(out, "orders"));
    const countries = await query(`SELECT country, round(sum(amount), 2) AS revenue FROM ${d} WHERE currency = 'EUR' GROUP BY country ORDER BY revenue DESC, country LIMIT 3`);
    const [day] = await query(`SELECT order_date::VARCHAR AS day, count(*) AS n FROM ${d} GROUP BY order_date ORDER BY n DESC, day LIMIT 1`);
    const [avg] = await query(`SELECT round(avg(items), 3) AS avg FROM ${d} WHERE status = 'paid'`);
    const [{ n }] = await query(`SELECT count(*) AS n FROM ${d}`);
    for (const name of ["SQLite", "PostgreSQL"]) {
      expect(stdout).toContain(
        [
          `${name}: ${Number(n).toLocaleString("en-US")} orders`,
          `  EUR revenue by country  ${countries.map((c) => `${c.country} ${Number(c.revenue).toFixed(2)}`).join(", ")}`,
          `  busiest day             ${day?.day} (${Number(day?.n).toLocaleString("en-US")} orders)`,
          `  items per paid order    ${Number(avg?.avg).toFixed(3)}`,
        ].join("\n"),
      );
    }
    expect(Object.keys(reportQueries(table))).toEqual(["orders", "revenueByCountry", "busiestDay", "averageItemsPaid"]);
  });

  test("running the example again upserts: the tables keep one row per order", async () => {
    const before = sqliteRows().map(({ _sluice_input, _sluice_line, ...row }) => row);
    const [again, code, errors] = await runExample();
    if (code !== 0) console.error(errors);
    expect(code).toBe(0);
    // The raw zone now holds both runs' pages: twice the rows go in, the same orders come out.
    expect(again).toMatch(new RegExp(`SQLite upsert: ${(before.length * 2).toLocaleString("en-US")} rows upserted`));
    expect(sqliteRows().map(({ _sluice_input, _sluice_line, ...row }) => row)).toEqual(before);
    const sql = new SQL({ url: PG, max: 1 });
    try {
      const [{ n, d }] = (await sql.unsafe(`SELECT count(*)::int AS n, count(DISTINCT order_id)::int AS d FROM "${table}"`)) as { n: number; d: number }[];
      expect([n, d]).toEqual([before.length, before.length]);
    } finally {
      await sql.close();
    }
  });
});
