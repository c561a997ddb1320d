/**
 * Exports a Postgres table to date-partitioned Parquet: the rows are streamed through a
 * server-side cursor (memory stays flat however big the table is), validated, and written under
 * <outdir>/orders/order_date=YYYY-MM-DD/; rows that do not fit the schema go to <outdir>/dead-letter.
 *
 *   bun examples/postgres-export.ts [outdir] [--url postgres://user@host:5432/db] [--table name] [--rows N] [--json]
 *
 * Defaults: outdir out/postgres, url $DATABASE_URL or postgres://postgres@127.0.0.1:5432/test,
 * table sluice_demo_orders. When the table does not exist it is created and filled with N
 * (default 100,000) generated orders, a few of them with values the schema rejects.
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import { SQL } from "bun";
import * as v from "valibot";
import { formatSummary, fromPostgres, isoInstant, run, type RunSummary, toParquet } from "sluice";
import { deadLetter, validate } from "sluice/operators";

/** One exported order. int8 ids arrive as bigint, numeric amounts as exact text, timestamps as ISO text. */
export const Order = v.object({
  order_id: v.bigint(),
  customer: v.pipe(v.string(), v.minLength(1)),
  amount: v.pipe(v.string(), v.regex(/^-?\d+\.\d{2}$/, "amount must have two decimals")),
  currency: v.picklist(["EUR", "USD", "GBP", "JPY"]),
  quantity: v.pipe(v.number(), v.integer(), v.minValue(1)),
  discount: v.nullable(v.number()),
  paid: v.boolean(),
  created_at: isoInstant(),
  order_date: v.pipe(v.string(), v.isoDate()),
  items: v.array(v.object({ sku: v.string(), qty: v.pipe(v.number(), v.integer()) })),
  tags: v.array(v.string()),
  note: v.nullable(v.string()),
});

/** Creates and fills the demo table unless it exists; returns whether it did. */
export async function ensureDemoTable(url: string, table: string, rows: number): Promise<boolean> {
  if (!/^[a-z_][a-z0-9_]*$/.test(table)) throw new Error(`table name ${table} must be a plain lower-case identifier`);
  const sql = new SQL({ url, max: 1 });
  try {
    const [{ exists }] = await sql`SELECT to_regclass(${table}) IS NOT NULL AS exists`;
    if (exists) return false;
    await sql.unsafe(`CREATE TABLE ${table} (
      order_id int8 PRIMARY KEY, customer text NOT NULL, amount numeric(14, 2) NOT NULL, currency text NOT NULL,
      quantity int4 NOT NULL, discount float8, paid bool NOT NULL, created_at timestamptz NOT NULL,
      items jsonb NOT NULL, tags text[] NOT NULL, note text)`);
    // Generated on the server: one statement, no rows through the client.
    await sql.unsafe(`INSERT INTO ${table}
      SELECT 9000000000000000000 + i,
        'customer-' || (i * 7919 % 5000) || CASE WHEN i % 97 = 0 THEN ' Zoë 日本' ELSE '' END,
        round((i * 37 % 100000) / 100.0 + 0.01, 2),
        -- A few values the schema rejects: an unknown currency, a zero quantity.
        CASE WHEN i % 4999 = 0 THEN 'XXX' ELSE (ARRAY['EUR', 'USD', 'GBP', 'JPY'])[1 + i % 4] END,
        CASE WHEN i % 7001 = 0 THEN 0 ELSE 1 + i % 9 END,
        CASE WHEN i % 5 = 0 THEN NULL ELSE (i % 30) / 100.0 END,
        i % 3 <> 0,
        timestamptz '2024-03-01 00:00:00+00' + i * (interval '7 days' / GREATEST(${rows}, 1)) + (i % 1000) * interval '1 microsecond',
        jsonb_build_array(jsonb_build_object('sku', 'sku-' || (i % 250), 'qty', 1 + i % 4)),
        CASE WHEN i % 2 = 0 THEN ARRAY['web'] ELSE ARRAY['app', 'promo'] END,
        CASE WHEN i % 1000 = 0 THEN '' WHEN i % 7 = 0 THEN 'gift "wrap", please' ELSE NULL END
      FROM generate_series(1, ${rows}) AS i`);
    return true;
  } finally {
    await sql.close();
  }
}

/** Exports `table` to `outDir`, replacing an earlier export. */
export function exportOrders(url: string, table: string, outDir: string): Promise<RunSummary> {
  return run(
    fromPostgres(
      `SELECT order_id, customer, amount, currency, quantity, discount, paid, created_at,
              (created_at AT TIME ZONE 'UTC')::date AS order_date, items, tags, note
       FROM ${table} ORDER BY order_id`,
      { url, batchSize: 2000 },
    ).pipe(
      validate(Order),
      deadLetter(join(outDir, "dead-letter"), { mode: "overwrite" }),
      toParquet(join(outDir, "orders"), { schema: Order, partitionBy: ["order_date"], mode: "overwrite" }),
    ),
    { handleSignals: true },
  );
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Bun.argv.slice(2),
    options: {
      url: { type: "string", default: process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test" },
      table: { type: "string", default: "sluice_demo_orders" },
      rows: { type: "string", default: "100000" },
      json: { type: "boolean", default: false },
    },
    allowPositionals: true,
  });
  const outDir = positionals[0] ?? join("out", "postgres");
  const rows = Number(values.rows);
  if (!Number.isInteger(rows) || rows < 0) {
    console.error("usage: bun examples/postgres-export.ts [outdir] [--url URL] [--table name] [--rows N] [--json]");
    process.exit(2);
  }
  const created = await ensureDemoTable(values.url, values.table, rows);
  if (created && !values.json) console.log(`created ${values.table} with ${rows.toLocaleString("en-US")} orders`);
  const summary = await exportOrders(values.url, values.table, outDir);
  if (values.json) {
    console.log(JSON.stringify(summary));
  } else {
    console.log(formatSummary(summary));
    console.log(`dataset: ${join(outDir, "orders")}   dead letters: ${join(outDir, "dead-letter")}`);
  }
}
