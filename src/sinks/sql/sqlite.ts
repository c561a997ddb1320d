/**
 * The SQLite dialect of `toSql`, through `bun:sqlite`.
 *
 * The database is a local file in WAL mode with `synchronous = FULL` (a committed batch survives
 * a power cut, not only a crash). A batch is one `BEGIN IMMEDIATE ... COMMIT` of one prepared
 * `INSERT` per row: SQLite runs them in-process at several hundred thousand rows a second, and a
 * row its constraints refuse fails alone (a statement's failure undoes only that statement), so
 * no halving is needed. Tables it creates are `STRICT`: a value of the wrong type is refused, not
 * stored as whatever it looked like.
 */
import { Database, type Statement } from "bun:sqlite";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import type { ColumnKind } from "../../schema/columns.ts";
import {
  type BatchWrite,
  columnDefinitions,
  type Dialect,
  isRowError,
  LEDGER_COLUMNS,
  LEDGER_TABLE,
  type LedgerContents,
  ledgerContents,
  ledgerRows,
  messageOf,
  missingUniqueKey,
  onConflictUpdate,
  quoteIdentifier,
  type Refusal,
  type SqlWriteError,
  type TableSetup,
  writeFailure,
} from "./dialect.ts";

const q = (name: string) => quoteIdentifier(name, '"', 1024);

const TYPES: Record<ColumnKind, string> = {
  utf8: "TEXT",
  int64: "INTEGER",
  float64: "REAL",
  bool: "INTEGER",
  timestamp: "TEXT",
  date: "TEXT",
  list: "TEXT",
  struct: "TEXT",
  json: "TEXT",
};

/** The file a `sqlite:` URL (or a plain path) names. */
export function sqlitePath(url: string): string {
  for (const prefix of ["sqlite://", "sqlite:", "file://", "file:"]) if (url.startsWith(prefix)) return url.slice(prefix.length);
  return url;
}

export class SqliteDialect implements Dialect {
  readonly target: string;
  readonly parallel = 1;
  readonly storesNonFinite = false;
  readonly #path: string;
  #db: Database | undefined;
  #setup: TableSetup | undefined;
  #insert: Statement | undefined;

  constructor(url: string) {
    this.#path = sqlitePath(url);
    this.target = `sqlite:${this.#path}`;
  }

  encode(kind: ColumnKind, value: unknown): unknown {
    if (kind === "bool" && value !== null) return value ? 1 : 0;
    return value;
  }

  #fail(table: string, what: string, error: unknown, advice = ""): SqlWriteError {
    // A file path holds no password to redact.
    return writeFailure(this.target, table, what, error, [], advice);
  }

  async prepare(setup: TableSetup): Promise<void> {
    this.#setup = setup;
    const table = q(setup.table);
    let db: Database;
    try {
      if (this.#path !== ":memory:") mkdirSync(dirname(this.#path), { recursive: true });
      db = this.#db = new Database(this.#path, { create: true });
      db.run("PRAGMA busy_timeout = 10000");
      db.run("PRAGMA journal_mode = WAL");
      db.run("PRAGMA synchronous = FULL");
    } catch (error) {
      throw this.#fail(setup.table, "cannot open the database file", error);
    }
    try {
      if (setup.create) {
        const columns = columnDefinitions(setup, q, (c) => TYPES[c.kind]);
        db.run(`CREATE TABLE IF NOT EXISTS ${table} (${columns.join(", ")}) STRICT`);
      }
    } catch (error) {
      throw this.#fail(setup.table, "cannot create the table", error);
    }
    const names = setup.columns.map((c) => q(c.name)).join(", ");
    try {
      db.query(`SELECT ${names} FROM ${table} WHERE 0`).all();
    } catch (error) {
      throw this.#fail(setup.table, "the table is missing or lacks a column", error);
    }
    let sql = `INSERT INTO ${table} (${names}) VALUES (${setup.columns.map(() => "?").join(", ")})`;
    if (setup.mode === "upsert") sql += onConflictUpdate(setup, q);
    try {
      this.#insert = db.prepare(sql);
      db.run(`CREATE TABLE IF NOT EXISTS ${q(LEDGER_TABLE)} (table_name TEXT NOT NULL, checkpoint TEXT, run_id TEXT NOT NULL,
        source TEXT NOT NULL, first_line INTEGER NOT NULL, last_line INTEGER NOT NULL, replaced TEXT,
        committed_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))`);
      db.run(`CREATE INDEX IF NOT EXISTS ${q(`${LEDGER_TABLE}_lookup`)} ON ${q(LEDGER_TABLE)} (table_name, checkpoint, source)`);
    } catch (error) {
      if (setup.mode === "upsert" && /ON CONFLICT clause does not match/.test(String((error as Error)?.message))) {
        const { what, advice } = missingUniqueKey(setup, q);
        throw this.#fail(setup.table, what, error, advice);
      }
      throw this.#fail(setup.table, "cannot prepare the insert and the ledger table", error);
    }
  }

  async write(batch: BatchWrite): Promise<Refusal[]> {
    const setup = this.#setup as TableSetup;
    const db = this.#db as Database;
    const insert = this.#insert as Statement;
    const refused: Refusal[] = [];
    try {
      db.run("BEGIN IMMEDIATE");
    } catch (error) {
      throw this.#fail(setup.table, "cannot start a transaction", error);
    }
    try {
      if (batch.replace.length > 0) {
        const kinds = setup.partitionBy.map((name) => setup.columns.find((c) => c.name === name)?.kind ?? "utf8");
        const remove = db.prepare(`DELETE FROM ${q(setup.table)} WHERE ${setup.partitionBy.map((name) => `${q(name)} IS ?`).join(" AND ")}`);
        for (const values of batch.replace) remove.run(...(values.map((v, i) => this.encode(kinds[i] as ColumnKind, v)) as never[]));
      }
      for (let i = 0; i < batch.rows.length; i++) {
        try {
          insert.run(...((batch.rows[i] as unknown[]) as never[]));
        } catch (error) {
          if (!isRowError(error)) throw error;
          refused.push({ index: i, message: messageOf(error) });
        }
      }
      const ledger = db.prepare(`INSERT INTO ${q(LEDGER_TABLE)} (${LEDGER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)`);
      for (const row of ledgerRows(setup.table, batch, refused)) ledger.run(...(row as never[]));
      db.run("COMMIT");
    } catch (error) {
      try {
        db.run("ROLLBACK");
      } catch {
        // SQLite already rolled back (a full disk ends the transaction itself).
      }
      throw this.#fail(setup.table, "the batch could not be written", error);
    }
    return refused;
  }

  async readLedger(checkpoint: string): Promise<LedgerContents> {
    const setup = this.#setup as TableSetup;
    const rows = (this.#db as Database)
      .query(`SELECT source, first_line, last_line, replaced FROM ${q(LEDGER_TABLE)} WHERE table_name = ? AND checkpoint = ?`)
      .all(setup.table, checkpoint) as { source: string; first_line: number; last_line: number; replaced: string | null }[];
    return ledgerContents(rows);
  }

  async readSources(sources: readonly string[], runId?: string): Promise<LedgerContents> {
    const setup = this.#setup as TableSetup;
    const rows = (this.#db as Database)
      .query(
        `SELECT source, first_line, last_line FROM ${q(LEDGER_TABLE)} WHERE table_name = ? AND source IN (${sources.map(() => "?").join(", ")})${runId === undefined ? "" : " AND run_id = ?"}`,
      )
      .all(setup.table, ...sources, ...(runId === undefined ? [] : [runId])) as { source: string; first_line: number; last_line: number }[];
    return ledgerContents(rows);
  }

  async hasRows(): Promise<boolean> {
    const setup = this.#setup as TableSetup;
    return (this.#db as Database).query(`SELECT 1 FROM ${q(setup.table)} LIMIT 1`).get() !== null;
  }

  async clearLedger(checkpoint: string): Promise<void> {
    const setup = this.#setup as TableSetup;
    (this.#db as Database).query(`DELETE FROM ${q(LEDGER_TABLE)} WHERE table_name = ? AND checkpoint = ?`).run(setup.table, checkpoint);
  }

  async close(): Promise<void> {
    this.#insert?.finalize();
    this.#db?.close();
  }
}
