/**
 * What a REPL shows for the tables and arrays the notebook helpers return: the first rows as
 * {@link formatTable} draws them and the size, instead of Arrow's internals (hundreds of lines
 * of buffers and types for one table) or every collected object.
 *
 * Bun's `console.log`, `Bun.inspect` and `bun repl` (like Node's `util.inspect`) call a value's
 * `Symbol.for("nodejs.util.inspect.custom")` method, also when it is an own property of one
 * instance. The view is set on the returned value only, never on Arrow's prototypes: other
 * tables, and tables derived from this one (`slice`, `select`), print as Arrow prints them.
 */
import type { RecordBatch, Table } from "apache-arrow";
import { formatCount, formatTable } from "./table.ts";
import { columnNames, isArrowTabular } from "./values.ts";

const INSPECT = Symbol.for("nodejs.util.inspect.custom");

/** Options of {@link formatPreview} and {@link withPreview}. */
export interface PreviewOptions {
  /** Rows shown (default 10). */
  readonly rows?: number;
  /** Columns holding counts, shown with thousands separators (see `formatTable`). */
  readonly counts?: readonly string[];
  /** Terminal cells to fit in (default: the terminal's width, 100 when not a terminal). */
  readonly width?: number;
  /** Widest a value may be, in terminal cells (default 40; see `formatTable`). */
  readonly maxWidth?: number;
}

/**
 * The first rows of a table, batch or array as an aligned table (one block per row when too
 * wide), then its size: `N rows × M columns` for Arrow data, `N rows` for an array of objects,
 * `N values` for other arrays.
 *
 * @example
 * console.log(formatPreview(await readDataset("out/events"), { rows: 5 }));
 */
export function formatPreview(value: readonly unknown[] | Table | RecordBatch, options: PreviewOptions = {}): string {
  const width = options.width ?? ((process.stdout.isTTY ? process.stdout.columns : undefined) || 100);
  const table = formatTable(value, undefined, { limit: options.rows ?? 10, width, counts: options.counts ?? [], maxWidth: options.maxWidth });
  const size = isArrowTabular(value)
    ? `${plural(value.numRows, "row")} × ${plural(columnNames(value).length, "column")}`
    : plural(value.length, value.length > 0 && value.every(isPlainObject) ? "row" : "value");
  return `${table}\n${size}`;
}

/**
 * Gives `value` (an Arrow table or batch, or an array) the compact view of {@link formatPreview}
 * when printed by `console.log`, `Bun.inspect` or a REPL, and returns it. The view is a
 * non-enumerable own property: the value is otherwise unchanged (JSON, iteration, Arrow methods).
 *
 * @example
 * const table = withPreview(tableFromArrays({ id: [1, 2, 3] }));
 * table; // in bun repl: the rows as a table, then "3 rows × 1 column"
 */
export function withPreview<T extends readonly unknown[] | Table | RecordBatch>(value: T, options: PreviewOptions = {}): T {
  Object.defineProperty(value, INSPECT, {
    value: function inspectPreview() {
      return formatPreview(value, options);
    },
    enumerable: false,
    configurable: true,
    writable: true,
  });
  return value;
}

function isPlainObject(value: unknown): boolean {
  return typeof value === "object" && value !== null && Object.getPrototypeOf(value) === Object.prototype;
}

function plural(count: number, word: string): string {
  return `${formatCount(count)} ${word}${count === 1 ? "" : "s"}`;
}
