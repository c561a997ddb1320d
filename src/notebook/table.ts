/**
 * Rows as a column-aligned terminal table: what `sluice head`, the `preview` operator and a REPL
 * session print.
 */
import type { RecordBatch, Table } from "apache-arrow";
import { columnNames, isArrowTabular, rowsOf, toJson } from "./values.ts";

/** Options of {@link formatTable}. */
export interface FormatTableOptions {
  /** Widest a column may be, in terminal cells; longer values end in `…` (default 40). */
  readonly maxWidth?: number | undefined;
  /** Rows shown at most; a last line says how many more there are (default: all). */
  readonly limit?: number;
}

/** The text of one cell: what a reader needs to see the value's kind at a glance. */
export function formatCell(value: unknown): string {
  if (value === null || value === undefined) return "null";
  if (typeof value === "string") return escapeControls(value);
  if (typeof value === "number" || typeof value === "boolean" || typeof value === "bigint") return String(value);
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? "Invalid Date" : value.toISOString();
  if (value instanceof Uint8Array) return `0x${Buffer.from(value).toString("hex")}`;
  try {
    return escapeControls(toJson(value, "hex"));
  } catch {
    return String(value);
  }
}

// A newline or tab inside a value would break the table's lines: show it as an escape instead.
function escapeControls(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are exactly what is replaced
  return text.replace(/[\u0000-\u001f\u007f]/g, (c) => (c === "\n" ? "\\n" : c === "\t" ? "\\t" : c === "\r" ? "\\r" : `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`));
}

/** Cuts `text` to at most `width` terminal cells, ending in `…` when it was cut. */
export function truncateCells(text: string, width: number): string {
  if (Bun.stringWidth(text) <= width) return text;
  if (width <= 0) return "";
  let out = "";
  let used = 0;
  // Iterating by code point keeps surrogate pairs whole; stringWidth counts wide characters as 2.
  for (const char of text) {
    const w = Bun.stringWidth(char);
    if (used + w > width - 1) break;
    out += char;
    used += w;
  }
  return `${out}…`;
}

function pad(text: string, width: number, right: boolean): string {
  const fill = " ".repeat(Math.max(0, width - Bun.stringWidth(text)));
  return right ? fill + text : text + fill;
}

/**
 * Renders rows as an aligned table: one column per key (in order of first appearance, or the
 * `columns` given), numbers right-aligned, nulls and missing values shown as `null`, `Date`s as
 * ISO text, objects and arrays as JSON, long values cut to `maxWidth` cells with `…`. Accepts an
 * array of objects (or of plain values, shown in one `value` column) or an Arrow table or record
 * batch, whose timestamps and dates are shown as ISO text at their precision.
 *
 * @example
 * console.log(formatTable([{ id: "a", n: 1 }, { id: "b", n: null }]));
 * // id │ n
 * // ───┼─────
 * // a  │    1
 * // b  │ null
 */
export function formatTable(rows: readonly unknown[] | Table | RecordBatch, columns?: readonly string[], options: FormatTableOptions = {}): string {
  const maxWidth = Math.max(1, options.maxWidth ?? 40);
  const limit = options.limit ?? Number.POSITIVE_INFINITY;
  let records: unknown[];
  let total: number;
  let names: string[];
  if (isArrowTabular(rows)) {
    total = rows.numRows;
    records = rowsOf(rows, limit);
    names = columns ? [...columns] : columnNames(rows);
  } else {
    total = rows.length;
    records = rows.slice(0, Math.min(limit, rows.length));
    names = columns ? [...columns] : keysOf(records);
  }
  const plainValues = !columns && records.length > 0 && records.every((r) => !isRecord(r));
  if (plainValues) names = ["value"];

  const cells = records.map((record) =>
    names.map((name) => {
      const value = plainValues ? record : isRecord(record) ? record[name] : undefined;
      return truncateCells(formatCell(value), maxWidth);
    }),
  );
  const numeric = names.map((name) =>
    records.some((r) => cellValue(r, name, plainValues) != null) &&
    records.every((r) => {
      const v = cellValue(r, name, plainValues);
      return v == null || typeof v === "number" || typeof v === "bigint";
    }),
  );
  const headers = names.map((name) => truncateCells(escapeControls(name), maxWidth));
  const widths = headers.map((h, c) => Math.max(Bun.stringWidth(h), ...cells.map((row) => Bun.stringWidth(row[c] as string))));
  const line = (values: string[]) =>
    values
      .map((v, c) => pad(v, widths[c] as number, numeric[c] as boolean))
      .join(" │ ")
      .trimEnd();
  const out = [line(headers.map((h, c) => pad(h, widths[c] as number, false))), widths.map((w) => "─".repeat(w)).join("─┼─")];
  for (const row of cells) out.push(line(row));
  if (total > records.length) out.push(`… ${(total - records.length).toLocaleString("en-US")} more row${total - records.length === 1 ? "" : "s"}`);
  return out.join("\n");
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof Date) && !(value instanceof Uint8Array);
}

function cellValue(record: unknown, name: string, plainValues: boolean): unknown {
  return plainValues ? record : isRecord(record) ? record[name] : undefined;
}

function keysOf(records: readonly unknown[]): string[] {
  const seen = new Set<string>();
  for (const record of records) if (isRecord(record)) for (const key of Object.keys(record)) seen.add(key);
  return [...seen];
}
