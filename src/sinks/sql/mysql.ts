/**
 * The MySQL/MariaDB dialect of `toSql`, through Bun's built-in `SQL` client.
 *
 * A batch is multi-row `INSERT`s with parameters (`ON DUPLICATE KEY UPDATE` for upserts), in
 * statements of at most 1,000 rows, 60,000 parameters (the protocol's limit is 65,535) and the
 * server's `max_allowed_packet` bytes, in one transaction. Each transaction sets a strict
 * `sql_mode` first: without it MariaDB stores a value out of range as the nearest one and a
 * too-long string cut, with a warning nobody reads.
 * Tables it creates use a binary collation without padding (`utf8mb4_nopad_bin` on MariaDB,
 * `utf8mb4_0900_bin` on MySQL 8), so keys compare as the bytes they are: the default collation
 * would take `"a"` and `"A"` for the same key, and `utf8mb4_bin` still pads, taking `"a"` and
 * `"a "` for one key and merging their rows in an upsert.
 */
import { SQL } from "bun";
import { secretsOf, sqlClientLogin } from "../../io/credentials.ts";
import type { ColumnKind } from "../../schema/columns.ts";
import {
  type BatchWrite,
  columnDefinitions,
  type Dialect,
  describeUrl,
  LEDGER_COLUMNS,
  LEDGER_TABLE,
  type LedgerContents,
  ledgerContents,
  ledgerRows,
  landRows,
  quoteIdentifier,
  type Refusal,
  type SqlColumn,
  type SqlWriteError,
  type TableSetup,
  writeFailure,
} from "./dialect.ts";

const q = (name: string) => quoteIdentifier(name, "`", 64);

function typeOf(column: SqlColumn): string {
  switch (column.kind) {
    case "utf8":
      // An index needs a bounded length: key and partition columns hold at most 255 characters.
      return column.indexed ? "varchar(255)" : "longtext";
    case "int64":
      return "bigint";
    case "float64":
      return "double";
    case "bool":
      return "boolean";
    case "timestamp":
      return "datetime(6)";
    case "date":
      return "date";
    default:
      return "json";
  }
}

/** Binary collations that compare trailing spaces, best first; `utf8mb4_bin` (which pads) is the last resort. */
const NO_PAD_COLLATIONS = ["utf8mb4_nopad_bin", "utf8mb4_0900_bin"];

const STRICT = "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION'";
const MAX_ROWS = 1000;
const MAX_PARAMS = 60_000;
/** Room in a packet for the statement's text and the protocol's per-value framing. */
const PACKET_HEADROOM = 64 * 1024;

/** About how many bytes a parameter takes in the statement's packet (strings dominate). */
function paramBytes(value: unknown): number {
  return typeof value === "string" ? Buffer.byteLength(value) + 9 : 9;
}

export class MysqlDialect implements Dialect {
  readonly target: string;
  readonly parallel = 2;
  readonly storesNonFinite = false;
  readonly #sql: SQL;
  /** What error messages must not show: the password in its forms. */
  readonly #secrets: readonly string[];
  #setup: TableSetup | undefined;
  /** The server's `max_allowed_packet` less headroom: a bigger statement closes the connection. */
  #statementBytes = 4 * 1024 * 1024 - PACKET_HEADROOM;

  constructor(url: string) {
    this.target = describeUrl(url);
    this.#sql = new SQL({ url, max: this.parallel, connectionTimeout: 10 });
    this.#secrets = secretsOf([url, sqlClientLogin(this.#sql)]);
  }

  encode(kind: ColumnKind, value: unknown): unknown {
    // DATETIME takes neither the T nor the zone: the value is UTC by construction.
    if (kind === "timestamp" && typeof value === "string") return value.replace("T", " ").slice(0, -1);
    return value;
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
    const collation = await this.#collation();
    try {
      const [row]: { packet: number | string }[] = await this.#sql`SELECT @@max_allowed_packet AS packet`;
      const packet = Number(row?.packet);
      if (Number.isFinite(packet) && packet > 2 * PACKET_HEADROOM) this.#statementBytes = packet - PACKET_HEADROOM;
    } catch {
      // The default above is MySQL 5.7's smallest usual setting.
    }
    if (setup.create) {
      const columns = columnDefinitions(setup, q, typeOf);
      await this.#ddl(setup.table, `CREATE TABLE IF NOT EXISTS ${table} (${columns.join(", ")}) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=${collation}`, "cannot create the table");
    }
    try {
      await this.#sql.unsafe(`SELECT ${setup.columns.map((c) => q(c.name)).join(", ")} FROM ${table} WHERE 1 = 0`);
    } catch (error) {
      throw this.#fail(setup.table, "the table is missing or lacks a column", error, "create it with these columns or pass create: true");
    }
    if (setup.mode === "upsert") await this.#checkUniqueKey(setup);
    await this.#ddl(
      setup.table,
      `CREATE TABLE IF NOT EXISTS ${q(LEDGER_TABLE)} (table_name varchar(255) NOT NULL, checkpoint varchar(1024) NULL,
        run_id varchar(255) NOT NULL, source longtext NOT NULL, first_line bigint NOT NULL, last_line bigint NOT NULL,
        replaced longtext NULL, committed_at datetime(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
        INDEX ${q(`${LEDGER_TABLE}_lookup`)} (table_name, checkpoint(255))) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=${collation}`,
      `cannot create the ledger table ${LEDGER_TABLE}`,
    );
  }

  /**
   * An upsert needs a primary key or unique index on exactly the key columns: without one
   * `ON DUPLICATE KEY UPDATE` never fires and every run appends its rows again, where PostgreSQL
   * and SQLite refuse `ON CONFLICT`.
   */
  async #checkUniqueKey(setup: TableSetup): Promise<void> {
    let rows: { name: string; columns: string }[];
    try {
      rows = await this.#sql`SELECT INDEX_NAME AS name, GROUP_CONCAT(COLUMN_NAME SEPARATOR '\n') AS columns
        FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ${setup.table} AND NON_UNIQUE = 0
        GROUP BY INDEX_NAME`;
    } catch (error) {
      throw this.#fail(setup.table, "cannot read the table's indexes", error);
    }
    const key = [...setup.key].sort().join("\n");
    if (rows.some((r) => String(r.columns).split("\n").sort().join("\n") === key)) return;
    const columns = setup.key.map(q).join(", ");
    throw this.#fail(
      setup.table,
      `upsert needs a primary key or unique index on (${columns}), and the table has none`,
      new Error(rows.length === 0 ? "no unique index" : `unique indexes: ${rows.map((r) => r.name).join(", ")}`),
      `add one (ALTER TABLE ${q(setup.table)} ADD UNIQUE (${columns})) or let create: true make the table`,
    );
  }

  /** The first of {@link NO_PAD_COLLATIONS} the server has, else `utf8mb4_bin` (MySQL 5.7 has no other). */
  async #collation(): Promise<string> {
    try {
      const rows: { name: string }[] = await this.#sql`SELECT COLLATION_NAME AS name FROM information_schema.COLLATIONS WHERE COLLATION_NAME IN ${this.#sql(NO_PAD_COLLATIONS)}`;
      const names = new Set(rows.map((r) => r.name));
      return NO_PAD_COLLATIONS.find((name) => names.has(name)) ?? "utf8mb4_bin";
    } catch {
      return "utf8mb4_bin";
    }
  }

  async #ddl(table: string, statement: string, what: string): Promise<void> {
    try {
      await this.#sql.unsafe(statement);
    } catch (error) {
      throw this.#fail(table, what, error);
    }
  }

  async write(batch: BatchWrite): Promise<Refusal[]> {
    const setup = this.#setup as TableSetup;
    const table = q(setup.table);
    const width = setup.columns.length;
    const head = `INSERT INTO ${table} (${setup.columns.map((c) => q(c.name)).join(", ")}) VALUES `;
    let tail = "";
    if (setup.mode === "upsert") {
      const rest = setup.columns.filter((c) => !c.key);
      // All columns are the key: nothing to update, and `k = k` keeps the row without IGNORE's silence.
      const sets = (rest.length > 0 ? rest : setup.columns.slice(0, 1)).map((c) => `${q(c.name)} = ${rest.length > 0 ? `VALUES(${q(c.name)})` : q(c.name)}`);
      tail = ` ON DUPLICATE KEY UPDATE ${sets.join(", ")}`;
    }
    const placeholder = `(${new Array(width).fill("?").join(", ")})`;
    const perStatement = Math.max(1, Math.min(MAX_ROWS, Math.floor(MAX_PARAMS / width)));
    const partitionKinds = setup.partitionBy.map((name) => setup.columns.find((c) => c.name === name)?.kind ?? "utf8");
    const refused: Refusal[] = [];
    try {
      await this.#sql.begin(async (tx) => {
        await tx.unsafe(STRICT);
        if (batch.replace.length > 0) {
          const where = setup.partitionBy.map((name) => `${q(name)} <=> ?`).join(" AND ");
          for (const values of batch.replace) {
            await tx.unsafe(`DELETE FROM ${table} WHERE ${where}`, values.map((v, i) => this.encode(partitionKinds[i] as ColumnKind, v)));
          }
        }
        await landRows(
          batch.rows.map((_, i) => i),
          (indexes) =>
            tx.savepoint(async (sp) => {
              // A statement bigger than max_allowed_packet makes the server close the connection,
              // which fails the run: statements end at the packet's size as well as at a row count.
              let params: unknown[] = [];
              let rows = 0;
              let bytes = 0;
              const send = async () => {
                if (rows === 0) return;
                await sp.unsafe(`${head}${new Array(rows).fill(placeholder).join(", ")}${tail}`, params);
                params = [];
                rows = 0;
                bytes = 0;
              };
              for (const index of indexes) {
                const row = batch.rows[index] as readonly unknown[];
                let size = 0;
                for (const value of row) size += paramBytes(value);
                if (rows === perStatement || (rows > 0 && bytes + size > this.#statementBytes)) await send();
                for (const value of row) params.push(value);
                rows++;
                bytes += size;
              }
              await send();
            }),
          refused,
        );
        await writeLedger(tx, setup.table, batch, refused);
      });
    } catch (error) {
      throw this.#fail(setup.table, "the batch could not be written", error);
    }
    return refused;
  }

  async readLedger(checkpoint: string): Promise<LedgerContents> {
    const setup = this.#setup as TableSetup;
    let rows: { source: string; first_line: number | string; last_line: number | string; replaced: string | null }[];
    try {
      rows = await this.#sql.unsafe(
        `SELECT source, first_line, last_line, replaced FROM ${q(LEDGER_TABLE)} WHERE table_name = ? AND checkpoint = ?`,
        [setup.table, checkpoint],
      );
    } catch (error) {
      throw this.#fail(setup.table, `cannot read the ledger ${LEDGER_TABLE}`, error);
    }
    return ledgerContents(rows);
  }

  async readSources(sources: readonly string[], runId?: string): Promise<LedgerContents> {
    const setup = this.#setup as TableSetup;
    let rows: { source: string; first_line: number | string; last_line: number | string }[];
    try {
      rows = await this.#sql.unsafe(
        `SELECT source, first_line, last_line FROM ${q(LEDGER_TABLE)} WHERE table_name = ? AND source IN (${sources.map(() => "?").join(", ")})${runId === undefined ? "" : " AND run_id = ?"}`,
        [setup.table, ...sources, ...(runId === undefined ? [] : [runId])],
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
      await this.#sql.unsafe(`DELETE FROM ${q(LEDGER_TABLE)} WHERE table_name = ? AND checkpoint = ?`, [setup.table, checkpoint]);
    } catch (error) {
      throw this.#fail(setup.table, `cannot clear the ledger ${LEDGER_TABLE}`, error);
    }
  }

  async close(): Promise<void> {
    await this.#sql.close().catch(() => {});
  }
}

async function writeLedger(tx: SQL, table: string, batch: BatchWrite, refused: readonly Refusal[]): Promise<void> {
  const rows = ledgerRows(table, batch, refused);
  for (let start = 0; start < rows.length; start += 1000) {
    const part = rows.slice(start, start + 1000);
    await tx.unsafe(
      `INSERT INTO ${q(LEDGER_TABLE)} (${LEDGER_COLUMNS}) VALUES ${part.map(() => "(?, ?, ?, ?, ?, ?, ?)").join(", ")}`,
      part.flat(),
    );
  }
}
