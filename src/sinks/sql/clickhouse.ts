/**
 * The ClickHouse dialect of `toSql` (`clickhouse://user:password@host:8123/db`), over ClickHouse's
 * HTTP interface with `fetch`: each batch is one `INSERT ... FORMAT JSONEachRow` request.
 *
 * Written against the ClickHouse Debian ships (18.16), which has no transactions, no DateTime64
 * and no CHECK constraints. What that changes:
 * - An INSERT of one batch is atomic (one block), but the ledger row that records it is a second
 *   request: a crash between the two leaves a batch the ledger does not know, which a resumed run
 *   writes again. ClickHouse loads are at least once after a crash, exactly once otherwise.
 * - Only `insert` mode: there is no UPDATE or transactional DELETE to build upserts or partition
 *   replacement on (ReplacingMergeTree and `ALTER ... DELETE` are eventual).
 * - Subnormal floats (below 2.2e-308) are refused: 18.16 reads 5e-324 as 0.
 * - Timestamps (microseconds) and dates are stored as ISO-8601 `String`s: `DateTime` holds whole
 *   seconds and `Date` only 1970-2105, and a value outside either would be changed silently.
 */
import { scrub, secretsOf } from "../../io/credentials.ts";
import type { ColumnKind } from "../../schema/columns.ts";
import {
  type BatchWrite,
  type Dialect,
  LEDGER_COLUMNS,
  LEDGER_TABLE,
  type LedgerContents,
  ledgerContents,
  ledgerRows,
  landRows,
  type Refusal,
  type SqlColumn,
  SqlWriteError,
  type TableSetup,
  writeFailure,
} from "./dialect.ts";

/** A backtick-quoted ClickHouse identifier: backslash and backtick escaped with a backslash. */
function q(name: string): string {
  if (name.length === 0) throw new Error("an empty name cannot be a table or column name");
  if (name.includes("\u0000")) throw new Error(`the name ${JSON.stringify(name)} holds a NUL character`);
  return `\`${name.replaceAll("\\", "\\\\").replaceAll("`", "\\`")}\``;
}

const TYPES: Record<ColumnKind, string> = {
  utf8: "String",
  int64: "Int64",
  float64: "Float64",
  bool: "UInt8",
  timestamp: "String",
  date: "String",
  list: "String",
  struct: "String",
  json: "String",
};

/** A failure ClickHouse reported for the data of a row (it names the row), so a batch is halved. */
class ClickHouseRowError extends Error {
  readonly sqlState = "22000";
}

export class ClickHouseDialect implements Dialect {
  readonly target: string;
  readonly parallel = 1;
  readonly storesNonFinite = false;
  readonly #endpoint: string;
  readonly #database: string;
  readonly #auth: string | undefined;
  /** What error messages must not show: the password in its forms. */
  readonly #secrets: readonly string[];
  #setup: TableSetup | undefined;

  constructor(url: string) {
    const u = new URL(url);
    const password = decodeURIComponent(u.password);
    this.#secrets = secretsOf(url);
    this.#database = decodeURIComponent(u.pathname.replace(/^\//, "")) || "default";
    this.#endpoint = `http://${u.host || "127.0.0.1:8123"}/`;
    // UTF-8, as RFC 7617 allows: btoa() takes Latin-1 only and threw on a "€".
    this.#auth = u.username ? `Basic ${Buffer.from(`${decodeURIComponent(u.username)}:${password}`).toString("base64")}` : undefined;
    this.target = `clickhouse://${u.host}/${this.#database}`;
  }

  /** ClickHouse 18.16 reads the smallest subnormal floats (5e-324) as 0: such a value is refused rather than changed. */
  refuse(kind: ColumnKind, value: unknown): string | undefined {
    if (kind === "float64" && value !== 0 && Math.abs(value as number) < 2.2250738585072014e-308) {
      return `${value} is a subnormal float, which ClickHouse 18.16 may read as 0`;
    }
    return undefined;
  }

  /** Each value as its JSON text in a JSONEachRow line. */
  encode(kind: ColumnKind, value: unknown): unknown {
    if (value === null) return "null";
    if (kind === "bool") return value ? "1" : "0";
    // Int64 is read from bare digits, beyond 2^53 too.
    if (kind === "int64" || kind === "float64") return String(value);
    return JSON.stringify(value);
  }

  /** Sends one statement (and a body for an INSERT); resolves with the response text. */
  async #send(query: string, body?: string): Promise<string> {
    const url = `${this.#endpoint}?database=${encodeURIComponent(this.#database)}${body === undefined ? "" : `&query=${encodeURIComponent(query)}`}`;
    const response = await fetch(url, {
      method: "POST",
      headers: this.#auth ? { authorization: this.#auth } : {},
      body: body ?? query,
    });
    const text = await response.text();
    if (!response.ok) {
      const message = scrub(text.trim().split("\n")[0] ?? `HTTP ${response.status}`, this.#secrets);
      // "(at row N)" or a parse failure: the data of a row, not the statement.
      if (body !== undefined && /at row \d+|Cannot parse|Cannot read/i.test(message)) throw new ClickHouseRowError(message);
      throw new Error(message);
    }
    return text;
  }

  #fail(table: string, what: string, error: unknown, advice = ""): SqlWriteError {
    return writeFailure(this.target, table, what, error, this.#secrets, advice);
  }

  async prepare(setup: TableSetup): Promise<void> {
    this.#setup = setup;
    if (setup.mode !== "insert") throw new SqlWriteError(this.target, setup.table, `mode "${setup.mode}" is not supported by ClickHouse: use "insert"`);
    try {
      await this.#send("SELECT 1");
    } catch (error) {
      throw this.#fail(setup.table, "cannot connect to the server", error, "check that it is running and the URL, user and password");
    }
    const table = q(setup.table);
    if (setup.create) {
      const columns = setup.columns.map((c: SqlColumn) => `${q(c.name)} ${c.nullable ? `Nullable(${TYPES[c.kind]})` : TYPES[c.kind]}`);
      const order = setup.key.length > 0 ? `(${setup.key.map(q).join(", ")})` : "tuple()";
      try {
        await this.#send(`CREATE TABLE IF NOT EXISTS ${table} (${columns.join(", ")}) ENGINE = MergeTree() ORDER BY ${order}`);
      } catch (error) {
        throw this.#fail(setup.table, "cannot create the table", error);
      }
    }
    try {
      await this.#send(`SELECT ${setup.columns.map((c) => q(c.name)).join(", ")} FROM ${table} LIMIT 0`);
    } catch (error) {
      throw this.#fail(setup.table, "the table is missing or lacks a column", error, "create it with these columns or pass create: true");
    }
    try {
      await this.#send(`CREATE TABLE IF NOT EXISTS ${q(LEDGER_TABLE)} (table_name String, checkpoint Nullable(String), run_id String,
        source String, first_line Int64, last_line Int64, replaced Nullable(String), committed_at DateTime DEFAULT now())
        ENGINE = MergeTree() ORDER BY (table_name, source)`);
    } catch (error) {
      throw this.#fail(setup.table, `cannot create the ledger table ${LEDGER_TABLE}`, error);
    }
  }

  async write(batch: BatchWrite): Promise<Refusal[]> {
    const setup = this.#setup as TableSetup;
    const names = setup.columns.map((c) => JSON.stringify(c.name));
    const insert = `INSERT INTO ${q(setup.table)} (${setup.columns.map((c) => q(c.name)).join(", ")}) FORMAT JSONEachRow`;
    const refused: Refusal[] = [];
    try {
      // One request is one block, written whole or not at all: no savepoint is needed to halve.
      await landRows(
        batch.rows.map((_, i) => i),
        async (indexes) => {
          let body = "";
          for (const index of indexes) {
            const row = batch.rows[index] as readonly unknown[];
            body += `{${row.map((value, c) => `${names[c]}:${value}`).join(",")}}\n`;
          }
          await this.#send(insert, body);
        },
        refused,
      );
      const columns = LEDGER_COLUMNS.split(", ");
      const lines = ledgerRows(setup.table, batch, refused).map((row) => JSON.stringify(Object.fromEntries(row.map((value, c) => [columns[c], value]))));
      if (lines.length > 0) await this.#send(`INSERT INTO ${q(LEDGER_TABLE)} (${LEDGER_COLUMNS}) FORMAT JSONEachRow`, `${lines.join("\n")}\n`);
    } catch (error) {
      throw this.#fail(setup.table, "the batch could not be written", error);
    }
    return refused;
  }

  async readLedger(checkpoint: string): Promise<LedgerContents> {
    const setup = this.#setup as TableSetup;
    let text: string;
    try {
      text = await this.#send(
        `SELECT source, first_line, last_line FROM ${q(LEDGER_TABLE)} WHERE table_name = ${literal(setup.table)} AND checkpoint = ${literal(checkpoint)} FORMAT JSONEachRow`,
      );
    } catch (error) {
      throw this.#fail(setup.table, `cannot read the ledger ${LEDGER_TABLE}`, error);
    }
    const lines = text.split("\n").filter((line) => line !== "");
    return ledgerContents(lines.map((line) => JSON.parse(line) as { source: string; first_line: string | number; last_line: string | number }));
  }

  async readSources(sources: readonly string[], runId?: string): Promise<LedgerContents> {
    const setup = this.#setup as TableSetup;
    let text: string;
    try {
      text = await this.#send(
        `SELECT source, first_line, last_line FROM ${q(LEDGER_TABLE)} WHERE table_name = ${literal(setup.table)} AND source IN (${sources.map((s) => literal(s)).join(", ")})${runId === undefined ? "" : ` AND run_id = ${literal(runId)}`} FORMAT JSONEachRow`,
      );
    } catch (error) {
      throw this.#fail(setup.table, `cannot read the ledger ${LEDGER_TABLE}`, error);
    }
    const lines = text.split("\n").filter((line) => line !== "");
    return ledgerContents(lines.map((line) => JSON.parse(line) as { source: string; first_line: string | number; last_line: string | number }));
  }

  async hasRows(): Promise<boolean> {
    const setup = this.#setup as TableSetup;
    try {
      return (await this.#send(`SELECT 1 FROM ${q(setup.table)} LIMIT 1 FORMAT TSV`)).trim() !== "";
    } catch (error) {
      throw this.#fail(setup.table, "cannot read the table", error);
    }
  }

  async clearLedger(checkpoint: string): Promise<void> {
    const setup = this.#setup as TableSetup;
    try {
      await this.#send(`ALTER TABLE ${q(LEDGER_TABLE)} DELETE WHERE table_name = ${literal(setup.table)} AND checkpoint = ${literal(checkpoint)}`);
    } catch (error) {
      throw this.#fail(setup.table, `cannot clear the ledger ${LEDGER_TABLE}`, error);
    }
  }

  async close(): Promise<void> {}
}

/** A ClickHouse string literal: backslash and quote escaped. */
function literal(text: string): string {
  return `'${text.replaceAll("\\", "\\\\").replaceAll("'", "\\'")}'`;
}
