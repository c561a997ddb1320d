/**
 * Rows as a column-aligned terminal table: what `sluice head`, the `preview` operator and a REPL
 * session print.
 *
 * One rule for numbers in every human table: data values are shown as stored (`12345`, never
 * `12,345`, so a number reads back as itself), while counts sluice computed about the data (rows,
 * files, row groups, nulls; the columns named in `counts`, and the "more rows" line) get thousands
 * separators. `--json` output never has separators.
 */
import type { RecordBatch, Table } from "apache-arrow";
import { columnNames, isArrowTabular, rowsOf, toJson } from "./values.ts";

/** Options of {@link formatTable}. */
export interface FormatTableOptions {
  /** Widest a column may be, in terminal cells; longer values end in `…` (default 40). */
  readonly maxWidth?: number | undefined;
  /** Rows shown at most; a last line says how many more there are (default: all). */
  readonly limit?: number;
  /**
   * Widest the whole table may be, in terminal cells (default: no limit). A table wider than this
   * is printed as records instead, like psql's `\x`: one `column │ value` block per row, values
   * cut to what is left of the width.
   */
  readonly width?: number | undefined;
  /** Columns holding counts (rows, files, nulls): their numbers get thousands separators. */
  readonly counts?: readonly string[];
}

/** A count as human tables show it: `1,234,567`. */
export function formatCount(value: number | bigint): string {
  return value.toLocaleString("en-US");
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

// A newline or tab inside a value would break the table's lines, and a bidirectional override
// would turn the rest of a line around (a value that reads as another): show them as escapes.
// C0 and C1 controls, DEL, the line and paragraph separators, and the bidirectional marks,
// embeddings, overrides and isolates.
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are exactly what is replaced
const CONTROLS = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u2028-\u202e\u2066-\u2069]/g;

/** `text` with control, line-separator and bidirectional characters shown as escapes (`\n`, `\u202e`). */
export function escapeControls(text: string): string {
  return text.replace(CONTROLS, (c) => (c === "\n" ? "\\n" : c === "\t" ? "\\t" : c === "\r" ? "\\r" : `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`));
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
 * ISO text, objects and arrays as JSON, long values cut to `maxWidth` cells with `…`; counts
 * (`counts` columns) with thousands separators; as records when wider than `width`. Accepts an
 * array of objects (or of plain values, shown in one `value` column) or an Arrow table or record
 * batch, whose timestamps and dates are shown as ISO text at their precision.
 *
 * @example
 * console.log(formatTable([{ id: "a", n: 1 }, { id: "b", n: null }]));
 * // id │ n
 * // ───┼─────
 * // a  │    1
 * // b  │ null
 * console.log(formatTable(rows, undefined, { width: process.stdout.columns ?? 100 })); // records when too wide
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

  const counts = new Set(options.counts ?? []);
  const text = (record: unknown, name: string) => {
    const value = cellValue(record, name, plainValues);
    return counts.has(name) && (typeof value === "number" || typeof value === "bigint") ? formatCount(value) : formatCell(value);
  };
  const more = total > records.length ? `… ${formatCount(total - records.length)} more row${total - records.length === 1 ? "" : "s"}` : undefined;
  const cells = records.map((record) => names.map((name) => truncateCells(text(record, name), maxWidth)));
  const numeric = names.map((name) =>
    counts.has(name) ||
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
  const tableWidth = widths.reduce((sum, w) => sum + w, 0) + 3 * Math.max(0, widths.length - 1);
  if (options.width !== undefined && tableWidth > options.width && records.length > 0) {
    return formatRecords(
      records.map((record) => names.map((name) => text(record, name))),
      names.map((name) => escapeControls(name)),
      options.width,
      more,
    );
  }
  const out = [line(headers.map((h, c) => pad(h, widths[c] as number, false))), widths.map((w) => "─".repeat(w)).join("─┼─")];
  for (const row of cells) out.push(line(row));
  if (more) out.push(more);
  return out.join("\n");
}

// The record view: a block per row, labels aligned, values cut to the width left after them.
// Label and value widths are measured over all rows so the blocks line up with one another.
function formatRecords(rows: readonly string[][], names: readonly string[], width: number, more: string | undefined): string {
  const labelWidth = Math.min(Math.max(...names.map((n) => Bun.stringWidth(n))), Math.max(8, Math.floor(width / 3)));
  const valueWidth = Math.max(8, width - labelWidth - 3);
  const labels = names.map((n) => pad(truncateCells(n, labelWidth), labelWidth, false));
  const values = rows.map((row) => row.map((v) => truncateCells(v, valueWidth)));
  const blockWidth = Math.min(width, labelWidth + 3 + Math.max(...values.flat().map((v) => Bun.stringWidth(v))));
  const out: string[] = [];
  for (const [r, row] of values.entries()) {
    const title = `─[ row ${r + 1} ]`;
    out.push(title + "─".repeat(Math.max(0, blockWidth - Bun.stringWidth(title))));
    for (const [c, value] of row.entries()) out.push(`${labels[c]} │ ${value}`.trimEnd());
  }
  if (more) out.push(more);
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
