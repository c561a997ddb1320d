/**
 * The PostgreSQL dialect of `toSql`, through Bun's built-in `SQL` client.
 *
 * Every batch goes in by `COPY ... FROM STDIN` (text format), the fast path (NOTES: about ten
 * times multi-row INSERT; measured against psql in test/bench/sql.ts), in one transaction with its
 * ledger rows. Inserts COPY straight into the table; upserts COPY into a temporary staging table
 * and move it with one `INSERT ... SELECT DISTINCT ON (key) ... ON CONFLICT (key) DO UPDATE`,
 * since COPY itself cannot update. When the table's constraints refuse a row, the COPY fails
 * whole; the transaction is rolled back and the batch done again, halved inside savepoints until
 * the refused rows stand alone.
 */
import { SQL } from "bun";
import { secretsOf, sqlClientLogin } from "../../io/credentials.ts";
import type { ColumnKind } from "../../schema/columns.ts";
import {
  type BatchWrite,
  columnDefinitions,
  type Dialect,
  describeUrl,
  isRowError,
  LEDGER_COLUMNS,
  LEDGER_TABLE,
  type LedgerContents,
  ledgerContents,
  ledgerRows,
  landRows,
  missingUniqueKey,
  onConflictUpdate,
  quoteIdentifier,
  type Refusal,
  type SqlWriteError,
  type TableSetup,
  writeFailure,
} from "./dialect.ts";

const q = (name: string) => quoteIdentifier(name, '"', 63);

const TYPES: Record<ColumnKind, string> = {
  utf8: "text",
  int64: "bigint",
  float64: "double precision",
  bool: "boolean",
  timestamp: "timestamptz",
  date: "date",
  list: "jsonb",
  struct: "jsonb",
  json: "jsonb",
};

/** COPY's text format: backslash, tab, newline and carriage return are escaped; `\N` is null. */
function copyText(text: string): string {
  // Most values need no escape: test once rather than four replaceAll scans.
  if (!/[\\\t\n\r]/.test(text)) return text;
  return text.replaceAll("\\", "\\\\").replaceAll("\t", "\\t").replaceAll("\n", "\\n").replaceAll("\r", "\\r");
}

/** Staging rows are sent in COPY chunks of about this many characters. */
const COPY_CHUNK = 1 << 20;

export class PostgresDialect implements Dialect {
  readonly target: string;
  readonly parallel = 2;
  readonly storesNonFinite = true;
  readonly #sql: SQL;
  /** What error messages must not show: the password in its forms. */
  readonly #secrets: readonly string[];
  #setup: TableSetup | undefined;

  constructor(url: string) {
    this.target = describeUrl(url);
    this.#sql = new SQL({ url, max: this.parallel, connectionTimeout: 10 });
    this.#secrets = secretsOf([url, sqlClientLogin(this.#sql)]);
  }

  encode(kind: ColumnKind, value: unknown): unknown {
    if (value === null) return "\\N";
    switch (kind) {
      case "bool":
        return value ? "t" : "f";
      case "int64":
        return String(value);
      case "float64":
        // String(-0) is "0": PostgreSQL keeps the sign of zero when it is written.
        return Number.isNaN(value)
          ? "NaN"
          : value === Number.POSITIVE_INFINITY
            ? "Infinity"
            : value === Number.NEGATIVE_INFINITY
              ? "-Infinity"
              : Object.is(value, -0)
                ? "-0"
                : String(value);
      default:
        return copyText(value as string);
    }
  }

  #fail(table: string, what: string, error: unknown, advice = ""): SqlWriteError {
    return writeFailure(this.target, table, what, error, this.#secrets, advice);
  }

  async prepare(setup: TableSetup): Promise<void> {
    this.#setup = setup;
    const table = q(setup.table);
    try {
      await this.#sql`SELECT 1`;
    } catch (error) {
      throw this.#fail(setup.table, "cannot connect to the server", error, "check that it is running and the URL, user and password");
    }
    if (setup.create) {
      const columns = columnDefinitions(setup, q, (c) => TYPES[c.kind]);
      await this.#ddl(setup.table, `CREATE TABLE IF NOT EXISTS ${table} (${columns.join(", ")})`, "cannot create the table");
    }
    try {
      await this.#sql.unsafe(`SELECT ${setup.columns.map((c) => q(c.name)).join(", ")} FROM ${table} WHERE false`);
    } catch (error) {
      throw this.#fail(setup.table, "the table is missing or lacks a column", error, "create it with these columns or pass create: true");
    }
    await this.#ddl(
      setup.table,
      `CREATE TABLE IF NOT EXISTS ${q(LEDGER_TABLE)} (table_name text NOT NULL, checkpoint text, run_id text NOT NULL,
        source text NOT NULL, first_line bigint NOT NULL, last_line bigint NOT NULL, replaced text,
        committed_at timestamptz NOT NULL DEFAULT now())`,
      `cannot create the ledger table ${LEDGER_TABLE}`,
    );
    await this.#ddl(
      setup.table,
      `CREATE INDEX IF NOT EXISTS ${q(`${LEDGER_TABLE}_lookup`)} ON ${q(LEDGER_TABLE)} (table_name, checkpoint, source)`,
      `cannot index the ledger table ${LEDGER_TABLE}`,
    );
  }

  /** Runs a `CREATE ... IF NOT EXISTS`; two sinks creating the same table at once race in the catalog, so it is tried twice. */
  async #ddl(table: string, statement: string, what: string): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        await this.#sql.unsafe(statement);
        return;
      } catch (error) {
        if (attempt === 0 && (error as { errno?: string }).errno === "23505") continue;
        throw this.#fail(table, what, error);
      }
    }
  }

  async write(batch: BatchWrite): Promise<Refusal[]> {
    const setup = this.#setup as TableSetup;
    const table = q(setup.table);
    const names = setup.columns.map((c) => q(c.name)).join(", ");
    const stage = "sluice_stage";
    const upsert = setup.mode === "upsert";
    const keys = setup.key.map(q).join(", ");
    // An upsert batch may hold a key twice, which one INSERT ... ON CONFLICT refuses: the staging
    // rows carry their order, and the last row of each key is the one written.
    let insert = `INSERT INTO ${table} (${names}) SELECT DISTINCT ON (${keys}) ${names} FROM ${stage} ORDER BY ${keys}, sluice_ord DESC`;
    if (upsert) insert += onConflictUpdate(setup, q);
    const all = batch.rows.map((_, i) => i);
    // Each statement waits for a turn of the event loop, which the sources keep busy parsing the
    // next batch: the common case, a batch the database takes whole, goes without savepoints (four
    // round trips). Only when it refuses a row is the batch done again, halved inside savepoints.
    for (const isolate of [false, true]) {
      const refused: Refusal[] = [];
      try {
        await this.#sql.begin(async (tx) => {
          if (upsert) {
            await tx.unsafe(`CREATE TEMP TABLE ${stage} ON COMMIT DROP AS SELECT ${names}, 0::bigint AS sluice_ord FROM ${table} WITH NO DATA`);
          }
          if (batch.replace.length > 0) {
            const where = setup.partitionBy.map((name, i) => `${q(name)} IS NOT DISTINCT FROM $${i + 1}`).join(" AND ");
            for (const values of batch.replace) await tx.unsafe(`DELETE FROM ${table} WHERE ${where}`, [...values]);
          }
          let staged = false;
          // Inserts COPY straight into the table (its constraints refuse the COPY); upserts go
          // through the staging table and ON CONFLICT.
          const attempt = async (sql: SQL, indexes: readonly number[]) => {
            if (!upsert) return copyRows(sql, `COPY ${table} (${names}) FROM STDIN`, batch.rows, indexes, false);
            if (staged) await sql.unsafe(`DELETE FROM ${stage}`);
            staged = true;
            await copyRows(sql, `COPY ${stage} (${names}, sluice_ord) FROM STDIN`, batch.rows, indexes, true);
            await sql.unsafe(insert);
          };
          if (isolate) {
            await landRows(all, (indexes) => tx.savepoint((sp) => attempt(sp, indexes)), refused);
            await writeLedger(tx, setup.table, batch, refused);
          } else {
            // The ledger INSERT is queued behind the COPY on the connection, saving a wait for the
            // event loop between them; if the COPY fails, the INSERT fails in the aborted transaction.
            const results = await Promise.allSettled([attempt(tx, all), writeLedger(tx, setup.table, batch, refused)]);
            for (const result of results) if (result.status === "rejected") throw result.reason;
          }
        });
        return refused;
      } catch (error) {
        if (upsert && (error as { errno?: unknown }).errno === "42P10") {
          const { what, advice } = missingUniqueKey(setup, q);
          throw this.#fail(setup.table, what, error, advice);
        }
        if (isolate || !isRowError(error)) throw this.#fail(setup.table, "the batch could not be written", error);
      }
    }
    throw new Error("unreachable");
  }

  async readLedger(checkpoint: string): Promise<LedgerContents> {
    const setup = this.#setup as TableSetup;
    let rows: { source: string; first_line: string; last_line: string; replaced: string | null }[];
    try {
      rows = await this.#sql.unsafe(
        `SELECT source, first_line, last_line, replaced FROM ${q(LEDGER_TABLE)} WHERE table_name = $1 AND checkpoint = $2`,
        [setup.table, checkpoint],
      );
    } catch (error) {
      throw this.#fail(setup.table, `cannot read the ledger ${LEDGER_TABLE}`, error);
    }
    return ledgerContents(rows);
  }

  async readSources(sources: readonly string[], runId?: string): Promise<LedgerContents> {
    const setup = this.#setup as TableSetup;
    let rows: { source: string; first_line: string; last_line: string }[];
    try {
      rows = await this.#sql.unsafe(
        `SELECT source, first_line, last_line FROM ${q(LEDGER_TABLE)} WHERE table_name = $1 AND source = ANY($2::text[])${runId === undefined ? "" : " AND run_id = $3"}`,
        runId === undefined ? [setup.table, sources] : [setup.table, sources, runId],
      );
    } catch (error) {
      throw this.#fail(setup.table, `cannot read the ledger ${LEDGER_TABLE}`, error);
    }
    return ledgerContents(rows);
  }

  async hasRows(): Promise<boolean> {
    const setup = this.#setup as TableSetup;
    try {
      return (await this.#sql.unsafe(`SELECT 1 FROM ${q(setup.table)} LIMIT 1`)).length > 0;
    } catch (error) {
      throw this.#fail(setup.table, "cannot read the table", error);
    }
  }

  async clearLedger(checkpoint: string): Promise<void> {
    const setup = this.#setup as TableSetup;
    try {
      await this.#sql.unsafe(`DELETE FROM ${q(LEDGER_TABLE)} WHERE table_name = $1 AND checkpoint = $2`, [setup.table, checkpoint]);
    } catch (error) {
      throw this.#fail(setup.table, `cannot clear the ledger ${LEDGER_TABLE}`, error);
    }
  }

  async close(): Promise<void> {
    await this.#sql.close().catch(() => {});
  }
}

/** Streams the rows at `indexes` into a COPY, in chunks of about {@link COPY_CHUNK} characters. */
async function copyRows(sql: SQL, statement: string, rows: readonly (readonly unknown[])[], indexes: readonly number[], ordered: boolean): Promise<void> {
  const query = sql.unsafe(statement);
  const writer = query.writable().getWriter();
  try {
    let chunk = "";
    for (const index of indexes) {
      chunk += ordered ? `${(rows[index] as readonly unknown[]).join("\t")}\t${index}\n` : `${(rows[index] as readonly unknown[]).join("\t")}\n`;
      if (chunk.length >= COPY_CHUNK) {
        await writer.write(chunk);
        chunk = "";
      }
    }
    if (chunk) await writer.write(chunk);
    await writer.close();
  } catch (error) {
    await writer.abort(error).catch(() => {});
    throw error;
  }
  await query;
}

/** The ledger rows of a batch, inside its transaction: the database itself records what landed. */
async function writeLedger(tx: SQL, table: string, batch: BatchWrite, refused: readonly Refusal[]): Promise<void> {
  const rows = ledgerRows(table, batch, refused);
  for (let start = 0; start < rows.length; start += 1000) {
    const part = rows.slice(start, start + 1000);
    const values = part.map((_, r) => `(${[1, 2, 3, 4, 5, 6, 7].map((c) => `$${r * 7 + c}`).join(", ")})`).join(", ");
    await tx.unsafe(
      `INSERT INTO ${q(LEDGER_TABLE)} (${LEDGER_COLUMNS}) VALUES ${values}`,
      part.flat(),
    );
  }
}
