/**
 * SQL over datasets and tables through DuckDB, for what the notebook helpers do not cover (joins,
 * window functions, arbitrary expressions). DuckDB is an optional peer dependency: pipelines never
 * load it, and `sql` imports it only when called.
 *
 * How data reaches DuckDB: a dataset is handed over as its Parquet files (DuckDB reads them
 * itself, streaming, with its own row-group pruning: nothing passes through JavaScript). A table
 * in memory is written once to a temporary Parquet file (uncompressed, through parquet-wasm) that
 * DuckDB reads: @duckdb/node-api 1.5 has no call that takes Arrow data, and DuckDB's Arrow IPC
 * reader is an extension it downloads at run time, which an offline machine cannot. Measured
 * here: a 1M-row, 4-column table is encoded in 0.2-0.6 s (10 MB) and a group-by over it answers in
 * 0.6-1.8 s; the same query over the same Parquet file on disk takes 0.02-0.2 s (docs/notebooks.md).
 *
 * Under Bun, @duckdb/node-api runs in-process here (Bun 1.4.4, node-api 1.5.6-r.1): every test
 * that reads output back with DuckDB does so. A crash under Bun has been reported upstream; if
 * your Bun build crashes, run the same code under `node`.
 */
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type RecordBatch, Table, tableToIPC } from "apache-arrow";
import { parquetWasm } from "../parquet/wasm.ts";
import { listDataset } from "../dataset/files.ts";
import { readFooter } from "../parquet/footer.ts";
import { isoDate, isoTime, isoTimestamp } from "../schema/instant.ts";
import { isArrowTabular } from "./values.ts";
import { withPreview } from "./view.ts";

/** The part of @duckdb/node-api that `sql` uses (declared here so sluice type-checks without it). */
interface DuckDB {
  DuckDBInstance: { create(path: string): Promise<{ connect(): Promise<Connection>; closeSync?(): void }> };
}
interface Connection {
  run(sql: string): Promise<unknown>;
  runAndReadAll(sql: string): Promise<{ getRowObjects(): Record<string, unknown>[]; columnNames(): string[] }>;
  closeSync?(): void;
}

// A variable, not a literal: TypeScript must not resolve the optional module when type-checking an app without it.
const DUCKDB = "@duckdb/node-api";

async function loadDuckDB(): Promise<DuckDB> {
  try {
    return (await import(DUCKDB)) as DuckDB;
  } catch (error) {
    throw new Error(
      `sql: needs DuckDB's client, an optional dependency sluice does not install: run \`bun add @duckdb/node-api@1.5.6-r.1\` in your project (${(error as Error).message})`,
    );
  }
}

function quoteIdentifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

function quoteText(text: string): string {
  return `'${text.replaceAll("'", "''")}'`;
}

/** The FROM expression reading a dataset folder or Parquet file the way `readDataset` does. */
async function datasetSource(name: string, path: string): Promise<string> {
  const listing = await listDataset(path).catch((error: Error) => {
    throw new Error(`sql: "${name}": ${error.message}`);
  });
  if (listing.files.length === 0) throw new Error(`sql: "${name}": ${path} holds no Parquet files`);
  const files = `[${listing.files.map((f) => quoteText(f.path)).join(", ")}]`;
  // sluice keeps partition columns inside its files (typed, nulls as nulls): read them from there.
  // Other writers leave them in folder names only: let DuckDB read the folders, as readDataset does.
  const footer = await readFooter((listing.files[0] as { path: string }).path);
  const inFile = new Set(footer.schema.map((e) => e.name));
  const hive = listing.partitionKeys.some((key) => !inFile.has(key));
  return `read_parquet(${files}${hive ? ", hive_partitioning = true" : ", hive_partitioning = false"})`;
}

/** Writes a table to a Parquet file DuckDB can read (uncompressed: it is read once, at once). */
async function writeTable(table: Table, path: string): Promise<void> {
  const pq = await parquetWasm();
  const props = new pq.WriterPropertiesBuilder().setCompression(pq.Compression.UNCOMPRESSED).setMaxRowGroupSize(122_880).build();
  const bytes = pq.writeParquet(pq.Table.fromIPCStream(tableToIPC(table, "stream")), props);
  await Bun.write(path, bytes);
}

/** A DuckDB value as a plain JavaScript value, the way `rowsOf` shows Arrow values. */
function plainValue(value: unknown): unknown {
  if (value === null || value === undefined) return null;
  if (typeof value === "bigint") return value <= BigInt(Number.MAX_SAFE_INTEGER) && value >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(value) : value;
  if (typeof value !== "object") return value;
  const v = value as {
    constructor: { name: string };
    micros?: bigint;
    millis?: bigint;
    seconds?: bigint;
    nanos?: bigint;
    days?: number;
    items?: unknown[];
    entries?: unknown;
    bytes?: Uint8Array;
  };
  switch (v.constructor.name) {
    case "DuckDBTimestampValue":
      return isoTimestamp(v.micros as bigint, "us", false);
    case "DuckDBTimestampTZValue":
      return isoTimestamp(v.micros as bigint, "us", true);
    case "DuckDBTimestampMillisecondsValue":
      return isoTimestamp(v.millis as bigint, "ms", false);
    case "DuckDBTimestampSecondsValue":
      return isoTimestamp(v.seconds as bigint, "s", false);
    case "DuckDBTimestampNanosecondsValue":
      return isoTimestamp(v.nanos as bigint, "ns", false);
    case "DuckDBDateValue":
      return isoDate(v.days as number);
    case "DuckDBTimeValue":
      return isoTime(v.micros as bigint, "us");
    case "DuckDBListValue":
    case "DuckDBArrayValue":
      return (v.items as unknown[]).map(plainValue);
    case "DuckDBStructValue":
      return Object.fromEntries(Object.entries(v.entries as Record<string, unknown>).map(([k, x]) => [k, plainValue(x)]));
    case "DuckDBMapValue":
      return (v.entries as { key: unknown; value: unknown }[]).map((e) => ({ key: plainValue(e.key), value: plainValue(e.value) }));
    case "DuckDBBlobValue":
      return v.bytes;
    default:
      // Decimals (exact text), UUIDs, intervals and the rest: their SQL text.
      return String(value);
  }
}

/** A table for {@link sql}: a dataset path, or an Arrow table or batch in memory. */
export type SqlTable = string | Table | RecordBatch;

/**
 * Runs a DuckDB SQL query over datasets (folder or Parquet file paths) and Arrow tables, each
 * available under its key in `tables`, and resolves with the result rows as plain objects
 * (timestamps and dates as ISO text, 64-bit integers as numbers when exact and bigints beyond,
 * decimals as exact text, lists as arrays, structs as objects), printing as a table in a REPL.
 *
 * Datasets are read by DuckDB straight from their Parquet files (only those `readDataset` reads:
 * temporary and hidden files are left out); tables are handed over as a temporary Parquet file,
 * removed afterwards. Each call uses its own in-memory DuckDB database. Needs `@duckdb/node-api`
 * installed in the app (an optional peer dependency); without it, rejects saying how to add it.
 * Rejects with DuckDB's message for a bad query, and naming the table for a bad path.
 *
 * @example
 * const top = await sql("SELECT event_type, count(*) AS n FROM events GROUP BY ALL ORDER BY n DESC LIMIT 3", { events: "out/events" });
 */
export async function sql(query: string, tables: Readonly<Record<string, SqlTable>> = {}): Promise<Record<string, unknown>[]> {
  const duckdb = await loadDuckDB();
  let temp: string | undefined;
  const instance = await duckdb.DuckDBInstance.create(":memory:");
  const connection = await instance.connect();
  try {
    for (const [name, table] of Object.entries(tables)) {
      let source: string;
      if (typeof table === "string") {
        await stat(table).catch(() => {
          throw new Error(`sql: "${name}": ${table} does not exist`);
        });
        source = await datasetSource(name, table);
      } else if (isArrowTabular(table)) {
        temp ??= await mkdtemp(join(tmpdir(), "sluice-sql-"));
        const file = join(temp, `${Object.keys(tables).indexOf(name)}.parquet`);
        await writeTable(table instanceof Table ? table : new Table([table]), file);
        source = `read_parquet(${quoteText(file)})`;
      } else {
        throw new Error(`sql: "${name}" must be a dataset path or an Arrow table (got ${typeof table})`);
      }
      // A view, also over a temporary file: nothing is copied into DuckDB, and a query reads only
      // the columns and row groups it needs.
      await connection.run(`CREATE VIEW ${quoteIdentifier(name)} AS SELECT * FROM ${source}`);
    }
    const reader = await connection.runAndReadAll(query);
    const names = reader.columnNames();
    const rows = reader.getRowObjects().map((row) => Object.fromEntries(names.map((n) => [n, plainValue(row[n])])));
    return withPreview(rows, { rows: 20 });
  } finally {
    connection.closeSync?.();
    instance.closeSync?.();
    if (temp) await rm(temp, { recursive: true, force: true });
  }
}
