/**
 * What `toSql` needs from a database, and what the dialects share: identifier quoting, the
 * conversion of record values into column values (checked, never coerced), errors that name the
 * target without its password, the split of a batch the database refused into the rows it
 * takes and the ones it does not, and the ledger rows a batch writes and a resumed run reads.
 *
 * A dialect knows SQL and its client; it knows nothing of flows, positions or checkpoints: the sink
 * hands it rows as arrays of already-checked values and the line ranges to record, and it answers
 * which rows the database refused and why.
 */
import { scrub } from "../../io/credentials.ts";
import type { ColumnKind, ColumnSpec } from "../../schema/columns.ts";
import { isoTimestamp, parseIsoDays, parseIsoMicrosExact } from "../../schema/instant.ts";
import { notWellFormed, previewValue } from "../../schema/preview.ts";

/** A column of the target table: a schema field, or one of the lineage columns. */
export interface SqlColumn {
  readonly name: string;
  readonly kind: ColumnKind;
  readonly nullable: boolean;
  /** Part of the upsert key (the primary key when the sink creates the table). */
  readonly key: boolean;
  /** Part of the key or of `partitionBy`: MariaDB needs a bounded type to index it. */
  readonly indexed: boolean;
}

/** How rows are added to the table. */
export type SqlMode = "insert" | "upsert" | "replace-partition";

/** What the dialect does with the table before the first batch. */
export interface TableSetup {
  readonly table: string;
  readonly columns: readonly SqlColumn[];
  readonly mode: SqlMode;
  /** Key columns (upsert), in order. */
  readonly key: readonly string[];
  /** Partition columns (replace-partition), in order. */
  readonly partitionBy: readonly string[];
  readonly create: boolean;
}

/** One line range of one input, as the ledger (`_sluice_commits`) stores it. */
export interface LedgerRange {
  readonly source: string;
  readonly firstLine: number;
  readonly lastLine: number;
}

/** One batch, ready for the database. */
export interface BatchWrite {
  /** Values in column order, already converted for this dialect. */
  readonly rows: readonly (readonly unknown[])[];
  /** Values of the partition columns whose rows are deleted first (replace-partition). */
  readonly replace: readonly (readonly unknown[])[];
  /** The ledger rows written in the same transaction. */
  readonly ledger: {
    readonly runId: string;
    readonly checkpoint: string | null;
    /** The line ranges the batch claims, given the rows the database refused (called once, before the commit). */
    readonly ranges: (refused: readonly Refusal[]) => readonly LedgerRange[];
    /** The partitions this batch replaced, as JSON keys (see `partitionKeyOf`), or null. */
    readonly replaced: string | null;
  };
}

/** A row of a batch the database refused, with its message. */
export interface Refusal {
  readonly index: number;
  readonly message: string;
}

/** What an earlier run of the same checkpoint committed into this table. */
export interface LedgerContents {
  /** Committed line ranges by input. */
  readonly ranges: Map<string, [number, number][]>;
  /** Partitions already replaced (their JSON keys). */
  readonly replaced: Set<string>;
}

/** A database `toSql` loads into. */
export interface Dialect {
  /** The target as `scheme://host:port/db` or a file path, never with the password. */
  readonly target: string;
  /** Batches it can write at once (on as many connections), when their order does not matter. */
  readonly parallel: number;
  /** Whether a non-finite float (NaN, ±Infinity) can be stored as such. */
  readonly storesNonFinite: boolean;
  /** Why this database cannot store a checked value faithfully, if it cannot (the row is then a write dead letter). */
  refuse?(kind: ColumnKind, value: unknown): string | undefined;
  /** Converts a checked value of a column into what the client sends. */
  encode(kind: ColumnKind, value: unknown): unknown;
  /** Connects, then creates the table (when asked) and the ledger, and checks the columns exist. */
  prepare(setup: TableSetup): Promise<void>;
  /** Writes one batch in one transaction; returns the rows the database refused. */
  write(batch: BatchWrite): Promise<Refusal[]>;
  /** What earlier runs of `checkpoint` recorded for the table. */
  readLedger(checkpoint: string): Promise<LedgerContents>;
  /**
   * What runs recorded for the table from inputs `sources` (under a checkpoint or not): any run,
   * or only run `runId` when given.
   */
  readSources(sources: readonly string[], runId?: string): Promise<LedgerContents>;
  /** Whether the table holds any row. */
  hasRows(): Promise<boolean>;
  /** Forgets what runs of `checkpoint` recorded for the table (a fresh checkpoint starts over). */
  clearLedger(checkpoint: string): Promise<void>;
  close(): Promise<void>;
}

/** The ledger table, created beside the target table. */
export const LEDGER_TABLE = "_sluice_commits";

/** The ledger's columns a batch writes, in the order of {@link ledgerRows}' values. */
export const LEDGER_COLUMNS = "table_name, checkpoint, run_id, source, first_line, last_line, replaced";

/**
 * The ledger rows of a batch written into `table`, as values in {@link LEDGER_COLUMNS} order: one
 * per line range it claims once `refused` is left out, the replaced partitions on the first. A
 * batch that claims no range but replaced partitions records them in a row of its own (empty
 * source), so a resumed run does not replace them again.
 */
export function ledgerRows(table: string, batch: BatchWrite, refused: readonly Refusal[]): unknown[][] {
  const { runId, checkpoint, replaced } = batch.ledger;
  const rows: unknown[][] = batch.ledger.ranges(refused).map((r, i) => [table, checkpoint, runId, r.source, r.firstLine, r.lastLine, i === 0 ? replaced : null]);
  if (rows.length === 0 && replaced !== null) rows.push([table, checkpoint, runId, "", 0, 0, replaced]);
  return rows;
}

/** What ledger rows read back say (integers may come as text, as PostgreSQL's bigint does). */
export function ledgerContents(
  rows: Iterable<{ source: string; first_line: number | string; last_line: number | string; replaced?: string | null }>,
): LedgerContents {
  const contents: LedgerContents = { ranges: new Map(), replaced: new Set() };
  for (const row of rows) addLedgerRow(contents, row.source, Number(row.first_line), Number(row.last_line), row.replaced ?? null);
  return contents;
}

/** The lineage columns `lineage: true` adds. */
export const LINEAGE_COLUMNS: readonly SqlColumn[] = [
  { name: "_sluice_run_id", kind: "utf8", nullable: false, key: false, indexed: false },
  { name: "_sluice_input", kind: "utf8", nullable: false, key: false, indexed: false },
  { name: "_sluice_line", kind: "int64", nullable: false, key: false, indexed: false },
];

/** An infrastructure failure of a database sink (unreachable server, missing table, lost connection). */
export class SqlWriteError extends Error {
  /** The target, without credentials. */
  readonly target: string;
  readonly table: string;
  constructor(target: string, table: string, message: string, cause?: unknown) {
    super(`toSql ${target} table "${table}": ${message}`, cause === undefined ? undefined : { cause });
    this.name = "SqlWriteError";
    this.target = target;
    this.table = table;
  }
}

/**
 * The {@link SqlWriteError} for `what` failing on `table`: the database's message in parentheses
 * with `secrets` (see `secretsOf` in io/credentials.ts) removed, then what to do (`advice`), if anything.
 */
export function writeFailure(target: string, table: string, what: string, error: unknown, secrets: readonly string[], advice = ""): SqlWriteError {
  return new SqlWriteError(target, table, `${what} (${scrub(messageOf(error), secrets)})${advice ? `: ${advice}` : ""}`, error);
}

/**
 * The column definitions of a `CREATE TABLE` for `setup`: each column with its type and
 * `NOT NULL` unless nullable, then the primary key when there is one.
 */
export function columnDefinitions(setup: TableSetup, quote: (name: string) => string, typeOf: (column: SqlColumn) => string): string[] {
  const columns = setup.columns.map((c) => `${quote(c.name)} ${typeOf(c)}${c.nullable ? "" : " NOT NULL"}`);
  if (setup.key.length > 0) columns.push(`PRIMARY KEY (${setup.key.map(quote).join(", ")})`);
  return columns;
}

/**
 * Why an upsert into a table with no primary key or unique index on exactly its key columns
 * fails in PostgreSQL and SQLite (`ON CONFLICT` matches no constraint), and what to do, worded
 * as MySQL/MariaDB's check says it.
 */
export function missingUniqueKey(setup: TableSetup, quote: (name: string) => string): { what: string; advice: string } {
  const columns = setup.key.map(quote).join(", ");
  return {
    what: `upsert needs a primary key or unique index on (${columns}), and the table has none`,
    advice: `add one (CREATE UNIQUE INDEX ${quote(`${setup.table}_key`)} ON ${quote(setup.table)} (${columns})) or let create: true make the table`,
  };
}

/**
 * The clause that makes an `INSERT` an upsert where the database has `ON CONFLICT` (PostgreSQL,
 * SQLite): a row whose key is taken updates the other columns, or is left alone when every column
 * is part of the key.
 */
export function onConflictUpdate(setup: TableSetup, quote: (name: string) => string): string {
  const rest = setup.columns.filter((c) => !c.key);
  const update = rest.length === 0 ? "NOTHING" : `UPDATE SET ${rest.map((c) => `${quote(c.name)} = EXCLUDED.${quote(c.name)}`).join(", ")}`;
  return ` ON CONFLICT (${setup.key.map(quote).join(", ")}) DO ${update}`;
}

/**
 * `name` quoted as an identifier with `quote` (`"` or a backtick): the quote doubled inside, so a
 * name holding quotes, spaces or SQL stays one identifier. Refuses names no database can hold.
 */
export function quoteIdentifier(name: string, quote: '"' | "`", maxBytes: number): string {
  if (name.length === 0) throw new Error("an empty name cannot be a table or column name");
  if (name.includes("\u0000")) throw new Error(`the name ${JSON.stringify(name)} holds a NUL character`);
  // PostgreSQL cuts longer names silently, which could make two columns one.
  if (Buffer.byteLength(name) > maxBytes) throw new Error(`the name ${JSON.stringify(name)} is longer than ${maxBytes} bytes`);
  return `${quote}${name.replaceAll(quote, quote + quote)}${quote}`;
}

/** `url` without user info, query or fragment: what messages may show. */
export function describeUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return "(an unparsable database URL)";
  }
}

/** The message of an error, or its text. */
export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * True when the database refused a row's data rather than the statement or the connection:
 * SQLSTATE class 22 (data exception: out of range, bad text) or 23 (integrity constraint: NOT
 * NULL, CHECK, UNIQUE, foreign key), or SQLite's constraint and mismatch codes. Only those are
 * split down to the rows that caused them; anything else fails the run.
 */
export function isRowError(error: unknown): boolean {
  const e = error as { errno?: unknown; sqlState?: unknown; code?: unknown } | undefined;
  if (!e) return false;
  for (const state of [e.sqlState, e.errno]) {
    if (typeof state === "string" && /^2[23][0-9A-Z]{3}$/.test(state)) return true;
  }
  return typeof e.code === "string" && /^SQLITE_(CONSTRAINT|MISMATCH|TOOBIG)/.test(e.code);
}

/**
 * Writes `rows` through `attempt` (one statement group inside a savepoint) and, when the database
 * refuses them for a row's data, halves the set until the refused rows stand alone: the rest lands,
 * each refused row is reported once with the database's message. `k` bad rows among `n` cost about
 * `2·k·log2(n)` attempts; small sets go row by row.
 */
export async function landRows(
  indexes: readonly number[],
  attempt: (indexes: readonly number[]) => Promise<void>,
  refused: Refusal[],
): Promise<void> {
  try {
    await attempt(indexes);
    return;
  } catch (error) {
    if (!isRowError(error)) throw error;
    if (indexes.length === 1) {
      refused.push({ index: indexes[0] as number, message: messageOf(error) });
      return;
    }
  }
  if (indexes.length <= 8) {
    for (const index of indexes) await landRows([index], attempt, refused);
    return;
  }
  const half = Math.ceil(indexes.length / 2);
  await landRows(indexes.slice(0, half), attempt, refused);
  await landRows(indexes.slice(half), attempt, refused);
}

/** A value that does not fit its column: the message says which column and what it got. */
export class Mismatch {
  constructor(readonly message: string) {}
}

const EXPECTED: Record<ColumnKind, string> = {
  utf8: "a string",
  json: "a JSON value",
  float64: "a number",
  int64: "a safe integer or a bigint within 64 bits",
  bool: "a boolean",
  timestamp: "an ISO-8601 instant or a Date (microsecond precision at most)",
  date: "an ISO-8601 date (YYYY-MM-DD)",
  list: "an array",
  struct: "an object",
};

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const MS_PER_DAY = 86_400_000;
/** Milliseconds of 0000-01-01 and of the end of 9999: `toISOString` prints four-digit years between. */
const FIRST_MS = -62_167_219_200_000;
const LAST_MS = 253_402_300_800_000;

/**
 * Checks a record's value for a column and returns its canonical form (a string for text, dates,
 * timestamps as `YYYY-MM-DDTHH:MM:SS.ffffffZ` and JSON; a number or bigint for integers; a number
 * for floats; a boolean), null for a missing value, or a {@link Mismatch}. Nothing is coerced:
 * `"12"` is not an integer.
 */
export function canonicalValue(column: ColumnSpec, value: unknown, nonFinite: boolean): unknown {
  if (value === null || value === undefined) {
    return column.nullable ? null : new Mismatch(`column "${column.name}" is required but the value is ${value === null ? "null" : "missing"}`);
  }
  switch (column.kind) {
    case "utf8":
      if (typeof value === "string") {
        if (value.isWellFormed()) return value;
        // The client would send it as U+FFFD: the row would land changed, without a word.
        return new Mismatch(notWellFormed(column.name, value));
      }
      break;
    case "int64":
      if (typeof value === "number" && Number.isSafeInteger(value)) return value;
      if (typeof value === "bigint" && value >= INT64_MIN && value <= INT64_MAX) return value;
      break;
    case "float64":
      if (typeof value === "number") {
        if (Number.isFinite(value) || nonFinite) return value;
        return new Mismatch(`column "${column.name}" holds ${value}, which this database cannot store as a float`);
      }
      break;
    case "bool":
      if (typeof value === "boolean") return value;
      break;
    case "timestamp": {
      const micros = typeof value === "string" ? parseIsoMicrosExact(value) : value instanceof Date ? value.getTime() * 1000 : Number.NaN;
      if (typeof micros === "bigint") return isoTimestamp(micros, "us", true);
      if (!Number.isNaN(micros)) return isoMicros(micros);
      break;
    }
    case "date": {
      if (typeof value === "string" && !Number.isNaN(parseIsoDays(value))) return value;
      if (value instanceof Date && value.getTime() % MS_PER_DAY === 0) return new Date(value.getTime()).toISOString().slice(0, 10);
      break;
    }
    case "list":
    case "struct":
    case "json": {
      if (column.kind === "list" && !Array.isArray(value)) break;
      if (column.kind === "struct" && (typeof value !== "object" || Array.isArray(value) || value instanceof Date)) break;
      try {
        const text = JSON.stringify(value, (_key, v) => (typeof v === "bigint" ? v.toString() : v));
        if (text !== undefined) return text;
      } catch (error) {
        return new Mismatch(`column "${column.name}" cannot be written as JSON: ${messageOf(error)}`);
      }
      break;
    }
  }
  return new Mismatch(`column "${column.name}" expects ${EXPECTED[column.kind]}, got ${previewValue(value)}`);
}

/** Microseconds since the epoch as ISO-8601 UTC with six fraction digits. */
function isoMicros(micros: number): string {
  const ms = Math.floor(micros / 1000);
  if (ms < FIRST_MS || ms >= LAST_MS || !Number.isSafeInteger(micros)) return isoTimestamp(BigInt(micros), "us", true);
  const below = micros - ms * 1000;
  return `${new Date(ms).toISOString().slice(0, 23)}${below < 10 ? "00" : below < 100 ? "0" : ""}${below}Z`;
}

/** The JSON key of a row's partition values: how replaced partitions are remembered. */
export function partitionKeyOf(values: readonly unknown[]): string {
  return JSON.stringify(values, (_key, v) => (typeof v === "bigint" ? v.toString() : v));
}

/** Adds one ledger row to what was read: ranges by input, partitions replaced. */
function addLedgerRow(contents: LedgerContents, source: string, first: number, last: number, replaced: string | null): void {
  if (replaced) for (const key of JSON.parse(replaced) as string[]) contents.replaced.add(key);
  if (!source) return;
  const ranges = contents.ranges.get(source);
  if (ranges) ranges.push([first, last]);
  else contents.ranges.set(source, [[first, last]]);
}
