/**
 * A REST-API extractor with retries, a raw zone and analytics on top:
 * paginated JSON API → validation → enrichment → date-partitioned Parquet, every response body
 * archived as received, every rejected record in the dead letter, then a small summary computed
 * from the Parquet files themselves; then the raw zone is loaded into SQLite (and PostgreSQL when
 * --pg is given) with upserts, and a second report is computed by SQL in the database.
 *
 *   bun examples/rest-extractor.ts [--out DIR] [--url URL] [--pg POSTGRES_URL] [--table NAME]
 *
 * writes DIR/orders/order_date=YYYY-MM-DD/*.parquet, DIR/dead-letter/*.ndjson,
 * DIR/raw/YYYY-MM-DD/<runId>-<page>.json and DIR/orders.db, a SQLite database whose table NAME
 * (default `orders`) holds every valid order once, keyed by order_id: a second run updates the
 * rows rather than adding to them (DIR defaults to out/rest). Without --url it starts a
 * local fake API (paginated, failing now and then with 503 and 429 + Retry-After, wanting a
 * bearer token) so it runs offline. The token is read from REST_API_TOKEN (the fake API's
 * default, `demo-token`, is used when it is not set and no --url is given).
 */
import { Database } from "bun:sqlite";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { tableFromIPC } from "apache-arrow";
import { SQL } from "bun";
import * as pq from "parquet-wasm";
import * as v from "valibot";
import { civilFromDays, formatSummary, fromHttp, fromJson, isoInstant, parseIsoMicros, type RunSummary, run, toParquet, toSql } from "sluice";
import { deadLetter, enrich, validate } from "sluice/operators";
import { seededRandom } from "../src/generate/random.ts";

const STATUSES = ["placed", "paid", "shipped", "refunded"] as const;
const CURRENCIES = ["EUR", "USD", "GBP"] as const;
const nonEmpty = v.pipe(v.string(), v.minLength(1));

/** One order as the API returns it. Nothing is coerced: "12.50" is not an amount. */
export const Order = v.object({
  order_id: nonEmpty,
  customer_id: nonEmpty,
  country: v.pipe(v.string(), v.regex(/^[A-Z]{2}$/, "country must be two upper-case letters")),
  status: v.picklist(STATUSES),
  amount: v.pipe(v.number(), v.minValue(0)),
  currency: v.picklist(CURRENCIES),
  items: v.pipe(v.number(), v.integer(), v.minValue(1)),
  created_at: isoInstant(),
});
export type Order = v.InferOutput<typeof Order>;

/** A stored order: the API's fields, `created_ts` as a timestamp column, and the UTC day. */
export const StoredOrder = v.object({
  ...Order.entries,
  created_at: v.string(),
  created_ts: isoInstant(),
  order_date: v.pipe(v.string(), v.isoDate()),
});
export type StoredOrder = v.InferOutput<typeof StoredOrder>;

/** Adds the timestamp column and the UTC day the dataset is partitioned by. */
export function enrichOrder(order: Order): StoredOrder {
  const micros = parseIsoMicros(order.created_at);
  if (Number.isNaN(micros)) throw new Error(`created_at ${order.created_at} is not a real instant`);
  return { ...order, created_ts: order.created_at, order_date: civilFromDays(Math.floor(micros / 86_400_000_000)) };
}

/**
 * The fake API's orders: deterministic for a seed, with about 3% defects of the kinds real APIs
 * send (a string amount, an unknown status, a missing customer, a lower-case country).
 */
export function fakeOrders(count: number, seed = 1): { order: Record<string, unknown>; defect: string | undefined }[] {
  const random = seededRandom(seed);
  const start = Date.parse("2024-03-01T00:00:00Z");
  return Array.from({ length: count }, (_, i) => {
    const order: Record<string, unknown> = {
      order_id: `ord-${String(i + 1).padStart(6, "0")}`,
      customer_id: `cus-${random.int(400)}`,
      country: random.pick(["DE", "FR", "GB", "US", "NL", "ES", "JP"]),
      status: random.pick(STATUSES),
      amount: Math.round(random.next() * 50_000) / 100,
      currency: random.pick(CURRENCIES),
      items: 1 + random.int(6),
      created_at: new Date(start + random.int(7 * 86_400_000)).toISOString(),
    };
    let defect: string | undefined;
    if (random.next() < 0.03) {
      defect = random.pick(["string_amount", "unknown_status", "missing_customer", "lower_country"]);
      if (defect === "string_amount") order.amount = String(order.amount);
      if (defect === "unknown_status") order.status = "lost";
      if (defect === "missing_customer") delete order.customer_id;
      if (defect === "lower_country") order.country = (order.country as string).toLowerCase();
    }
    return { order, defect };
  });
}

/**
 * A local stand-in for a real API: `GET /v1/orders?page=N&per_page=S` answering
 * `{ "data": [...], "page": N }`, asking for a bearer token, answering 503 to about one request
 * in ten and 429 with `Retry-After: 1` to the 4th and 15th requests.
 */
export function startFakeApi(orders: readonly unknown[], token: string, seed = 7): { url: string; requests: () => number; stop: () => void } {
  const random = seededRandom(seed);
  let requests = 0;
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    fetch(request) {
      const url = new URL(request.url);
      if (url.pathname !== "/v1/orders") return Response.json({ error: "not found" }, { status: 404 });
      requests++;
      if (request.headers.get("authorization") !== `Bearer ${token}`) return Response.json({ error: "bad token" }, { status: 401 });
      if (requests === 4 || requests === 15) return new Response("rate limited", { status: 429, headers: { "retry-after": "1" } });
      if (random.next() < 0.1) return new Response("<html><body>503 Service Unavailable</body></html>", { status: 503, headers: { "content-type": "text/html" } });
      const page = Number(url.searchParams.get("page") ?? 1);
      const size = Math.min(Number(url.searchParams.get("per_page") ?? 100), 500);
      return Response.json({ data: orders.slice((page - 1) * size, page * size), page });
    },
  });
  return { url: `http://127.0.0.1:${server.port}/v1/orders`, requests: () => requests, stop: () => server.stop(true) };
}

/** Extracts every page of `url` into `outDir` (replacing an earlier run's dataset). */
export function extractOrders(url: string, outDir: string, options: { runId?: string } = {}): Promise<RunSummary> {
  return run(
    fromHttp({
      url,
      records: "data",
      pagination: { type: "page", param: "page", sizeParam: "per_page", size: 100 },
      headersFromEnv: { Authorization: "Bearer $REST_API_TOKEN" },
      concurrency: 4,
      archive: join(outDir, "raw"),
      // Short waits for a local API; Retry-After is honoured whatever these say.
      backoff: { baseMs: 50, maxMs: 2000 },
    }).pipe(
      validate(Order),
      enrich(enrichOrder),
      deadLetter(join(outDir, "dead-letter"), { mode: "overwrite" }),
      toParquet(join(outDir, "orders"), { schema: StoredOrder, partitionBy: ["order_date"], mode: "overwrite" }),
    ),
    { runId: options.runId, handleSignals: true },
  );
}

/**
 * Loads every order of the raw zone into `table` of the database at `url`, upserted by order_id
 * with lineage columns: the raw zone is what the API answered, so the database can be rebuilt
 * from it at any time, and loading it twice leaves the same table. Records the extraction
 * dead-lettered are rejected here again and only counted (they are in DIR/dead-letter already).
 */
export async function loadOrders(outDir: string, url: string, table: string): Promise<{ summary: RunSummary; rejected: number }> {
  let rejected = 0;
  const summary = await run(
    fromJson(join(outDir, "raw", "*", "*.json"), { path: "data" }).pipe(
      validate(Order),
      enrich(enrichOrder),
      deadLetter(() => rejected++),
      toSql(url, table, { schema: StoredOrder, mode: "upsert", key: ["order_id"], create: true, lineage: true }),
    ),
    { handleSignals: true },
  );
  return { summary, rejected };
}

/** What the database report prints: computed by SQL in the database the orders were loaded into. */
export interface DatabaseReport {
  orders: number;
  revenueByCountry: { country: string; revenue: number }[];
  busiestDay: { day: string; orders: number };
  averageItemsPaid: number;
}

/** The report's SQL; it runs unchanged on SQLite and PostgreSQL. */
export function reportQueries(table: string): Record<keyof DatabaseReport, string> {
  const t = `"${table.replaceAll('"', '""')}"`;
  return {
    orders: `SELECT count(*) AS n FROM ${t}`,
    revenueByCountry: `SELECT country, round(CAST(sum(amount) AS numeric), 2) AS revenue FROM ${t} WHERE currency = 'EUR' GROUP BY country ORDER BY revenue DESC, country LIMIT 3`,
    busiestDay: `SELECT CAST(order_date AS text) AS day, count(*) AS n FROM ${t} GROUP BY order_date ORDER BY n DESC, day LIMIT 1`,
    averageItemsPaid: `SELECT round(CAST(avg(items) AS numeric), 3) AS avg FROM ${t} WHERE status = 'paid'`,
  };
}

/** Runs the report's queries through `query` (a database client's "rows of this SQL"). */
export async function databaseReport(query: (sql: string) => Promise<Record<string, unknown>[]>, table: string): Promise<DatabaseReport> {
  const q = reportQueries(table);
  const [orders] = await query(q.orders);
  const countries = await query(q.revenueByCountry);
  const [day] = await query(q.busiestDay);
  const [avg] = await query(q.averageItemsPaid);
  return {
    orders: Number(orders?.n),
    revenueByCountry: countries.map((r) => ({ country: String(r.country), revenue: Number(r.revenue) })),
    busiestDay: { day: String(day?.day), orders: Number(day?.n) },
    averageItemsPaid: Number(avg?.avg),
  };
}

/** The report from the database at `url` (a `sqlite:` file or a PostgreSQL URL). */
export async function reportFrom(url: string, table: string): Promise<DatabaseReport> {
  if (url.startsWith("sqlite:")) {
    const db = new Database(url.slice("sqlite:".length), { readonly: true });
    try {
      return await databaseReport(async (text) => db.query(text).all() as Record<string, unknown>[], table);
    } finally {
      db.close();
    }
  }
  const sql = new SQL({ url, max: 1 });
  try {
    return await databaseReport(async (text) => [...(await sql.unsafe(text))], table);
  } finally {
    await sql.close();
  }
}

/** The database report as a few lines for a terminal. */
export function formatDatabaseReport(name: string, r: DatabaseReport): string {
  const n = (x: number) => x.toLocaleString("en-US");
  return [
    `${name}: ${n(r.orders)} orders`,
    `  EUR revenue by country  ${r.revenueByCountry.map((c) => `${c.country} ${c.revenue.toFixed(2)}`).join(", ")}`,
    `  busiest day             ${r.busiestDay.day} (${n(r.busiestDay.orders)} orders)`,
    `  items per paid order    ${r.averageItemsPaid.toFixed(3)}`,
  ].join("\n");
}

/** What the summary prints, computed from the Parquet files, not from the records in flight. */
export interface OrderAnalytics {
  orders: number;
  byStatus: Record<string, number>;
  revenueByCurrency: Record<string, number>;
  topCountries: { country: string; orders: number }[];
  days: number;
}

/** Reads the dataset's Parquet files back (parquet-wasm → Arrow) and aggregates them. */
export async function analyse(folder: string): Promise<OrderAnalytics> {
  const result: OrderAnalytics = { orders: 0, byStatus: {}, revenueByCurrency: {}, topCountries: [], days: 0 };
  const countries = new Map<string, number>();
  const days = new Set<string>();
  const files = (await readdir(folder, { recursive: true })).filter((name) => name.endsWith(".parquet")).sort();
  for (const name of files) {
    const file = await pq.ParquetFile.fromFile(Bun.file(join(folder, name)));
    const table = tableFromIPC((await file.read({ columns: ["status", "amount", "currency", "country"] })).intoIPCStream());
    const [status, amount, currency, country] = ["status", "amount", "currency", "country"].map((c) => table.getChild(c));
    for (let i = 0; i < table.numRows; i++) {
      result.orders++;
      const s = status?.get(i) as string;
      result.byStatus[s] = (result.byStatus[s] ?? 0) + 1;
      const c = currency?.get(i) as string;
      result.revenueByCurrency[c] = Math.round(((result.revenueByCurrency[c] ?? 0) + (amount?.get(i) as number)) * 100) / 100;
      const k = country?.get(i) as string;
      countries.set(k, (countries.get(k) ?? 0) + 1);
    }
    days.add(/order_date=([^/]+)/.exec(name)?.[1] ?? "");
  }
  result.topCountries = [...countries]
    .map(([country, orders]) => ({ country, orders }))
    .sort((a, b) => b.orders - a.orders || a.country.localeCompare(b.country))
    .slice(0, 3);
  result.days = days.size;
  return result;
}

/** The analytics as a few lines for a terminal. */
export function formatAnalytics(a: OrderAnalytics): string {
  const n = (x: number) => x.toLocaleString("en-US");
  const money = Object.entries(a.revenueByCurrency)
    .sort(([x], [y]) => x.localeCompare(y))
    .map(([currency, total]) => `${currency} ${total.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`);
  return [
    `orders         ${n(a.orders)} over ${a.days} days`,
    `by status      ${Object.entries(a.byStatus).sort(([x], [y]) => x.localeCompare(y)).map(([s, c]) => `${s} ${n(c)}`).join(", ")}`,
    `revenue        ${money.join(", ")}`,
    `top countries  ${a.topCountries.map((c) => `${c.country} ${n(c.orders)}`).join(", ")}`,
  ].join("\n");
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Bun.argv.slice(2),
    options: { out: { type: "string" }, url: { type: "string" }, pg: { type: "string" }, table: { type: "string" } },
  });
  const table = values.table ?? "orders";
  const outDir = values.out ?? join("out", "rest");
  let url = values.url;
  let api: ReturnType<typeof startFakeApi> | undefined;
  if (!url) {
    process.env.REST_API_TOKEN ||= "demo-token";
    api = startFakeApi(fakeOrders(2_500).map((o) => o.order), process.env.REST_API_TOKEN);
    url = api.url;
    console.log(`fake API with 2,500 orders at ${url}`);
  }
  try {
    const summary = await extractOrders(url, outDir);
    console.log(formatSummary(summary));
    if (api) console.log(`requests       ${api.requests()} (including retries after 503 and 429)`);
    console.log(`dataset: ${join(outDir, "orders")}   raw zone: ${join(outDir, "raw")}   dead letters: ${join(outDir, "dead-letter")}`);
    console.log("");
    console.log(formatAnalytics(await analyse(join(outDir, "orders"))));
    console.log("");
    const targets: [string, string][] = [["SQLite", `sqlite:${join(outDir, "orders.db")}`]];
    if (values.pg) targets.push(["PostgreSQL", values.pg]);
    for (const [name, url] of targets) {
      const { summary: loaded, rejected } = await loadOrders(outDir, url, table);
      console.log(`${name} upsert: ${loaded.written.toLocaleString("en-US")} rows upserted into ${table} (${rejected} rejected again, already dead-lettered)`);
      console.log(formatDatabaseReport(name, await reportFrom(url, table)));
    }
  } finally {
    api?.stop();
  }
}
