/**
 * Grouping and counting over a table or a dataset, one record batch at a time: `valueCounts`
 * (Polars' `value_counts`, DuckDB's `GROUP BY x ORDER BY count(*) DESC`) and `groupBy(...).agg`
 * with counts, sums, means, minimums and maximums. Memory grows with the number of groups, never
 * with the number of rows.
 */
import { type Data, type DataType, type Field, Type } from "apache-arrow";
import { batchesOf, type ReadOptions, type Tabular } from "./input.ts";
import { dataValues, toJson } from "./values.ts";
import { withPreview } from "./view.ts";

/** An aggregation of {@link groupBy}: made by {@link count}, {@link sum}, {@link mean}, {@link min}, {@link max}. */
export interface Aggregation {
  readonly kind: "count" | "sum" | "mean" | "min" | "max";
  /** The column aggregated (none for `count()`: rows). */
  readonly column?: string;
}

/** Rows in each group (`count()`), or non-null values of `column` (`count("x")`), as SQL's `count(*)` and `count(x)`. */
export function count(column?: string): Aggregation {
  return column === undefined ? { kind: "count" } : { kind: "count", column };
}
/** Sum of the non-null values of a number column (null when there are none); exact for 64-bit integers. */
export function sum(column: string): Aggregation {
  return { kind: "sum", column };
}
/** Mean of the non-null values of a number column (null when there are none). */
export function mean(column: string): Aggregation {
  return { kind: "mean", column };
}
/** Smallest non-null value (numbers, strings in UTF-8 byte order, timestamps, dates, booleans). */
export function min(column: string): Aggregation {
  return { kind: "min", column };
}
/** Largest non-null value (see {@link min}). */
export function max(column: string): Aggregation {
  return { kind: "max", column };
}

/** One result row: the keys' values, then each aggregation under its name. */
export type GroupRow = Record<string, unknown>;

/** Orders two plain values of one column: numbers with NaN greatest, strings by code point (UTF-8 byte order). */
function compareValues(a: unknown, b: unknown): number {
  if (typeof a === "string" && typeof b === "string") {
    // Code point order is UTF-8 byte order; UTF-16 order differs above U+FFFF.
    const x = a.length > 0 && hasSurrogate(a) ? [...a] : a;
    const y = b.length > 0 && hasSurrogate(b) ? [...b] : b;
    const n = Math.min(x.length, y.length);
    for (let i = 0; i < n; i++) {
      const ca = (typeof x === "string" ? x.codePointAt(i) : (x[i] as string).codePointAt(0)) as number;
      const cb = (typeof y === "string" ? y.codePointAt(i) : (y[i] as string).codePointAt(0)) as number;
      if (ca !== cb) return ca - cb;
    }
    return x.length - y.length;
  }
  if (typeof a === "number" && Number.isNaN(a)) return typeof b === "number" && Number.isNaN(b) ? 0 : 1;
  if (typeof b === "number" && Number.isNaN(b)) return -1;
  if (typeof a === "boolean" && typeof b === "boolean") return Number(a) - Number(b);
  return (a as number) < (b as number) ? -1 : (a as number) > (b as number) ? 1 : 0;
}

function hasSurrogate(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdfff) return true;
  }
  return false;
}

/** A Map key for a value: the value itself for scalars, JSON text for lists and structs. */
function identity(value: unknown): unknown {
  return typeof value === "object" && value !== null ? `\u0000json:${toJson(value)}` : value;
}

function numericKind(type: DataType): "number" | "int64" | undefined {
  if (type.typeId === Type.Int) return (type as unknown as { bitWidth: number }).bitWidth === 64 ? "int64" : "number";
  if (type.typeId === Type.Float) return "number";
  if (type.typeId === Type.Dictionary) return numericKind((type as unknown as { dictionary: DataType }).dictionary);
  return undefined;
}

function orderable(type: DataType): boolean {
  const id = type.typeId === Type.Dictionary ? (type as unknown as { dictionary: DataType }).dictionary.typeId : type.typeId;
  return [Type.Int, Type.Float, Type.Utf8, Type.LargeUtf8, Type.Bool, Type.Timestamp, Type.Date, Type.Time].includes(id);
}

/** Running state of one aggregation in one group. */
interface Cell {
  n: number;
  total: number | bigint;
  best: unknown;
}

/**
 * Groups the rows of a table, a record batch or a dataset (read batch by batch, only the columns
 * needed) by the values of `keys`, then `.agg({ name: aggregation })` computes one row per group:
 * the keys' values, then each aggregation under its name. Rows come ordered by their keys
 * (ascending, nulls last, strings in UTF-8 byte order), as `GROUP BY ... ORDER BY ALL` gives.
 * Nulls form one group per key, as in SQL. Keys and values are compared as `formatTable` shows
 * them: timestamps and dates as ISO text, lists and structs by their JSON.
 *
 * `agg` rejects naming the column when one is missing, or when `sum`/`mean` names a column that
 * is not a number, or `min`/`max` a nested one. The result prints as a table in a REPL.
 *
 * @example
 * const byType = await groupBy("out/events", "event_type").agg({ events: count(), revenue: sum("price"), avg: mean("price") });
 * // event_type │ events │ revenue    │ avg
 * // add_to_cart│ 12,199 │ 1532211.25 │ 250.61 …
 */
export function groupBy(input: Tabular, keys: string | readonly string[], options: ReadOptions = {}) {
  const keyList = typeof keys === "string" ? [keys] : [...keys];
  return {
    /** Computes the aggregations, one row per group (see {@link groupBy}). */
    async agg(aggregations: Readonly<Record<string, Aggregation>>): Promise<GroupRow[]> {
      const entries = Object.entries(aggregations);
      for (const [name, a] of entries) {
        if (keyList.includes(name)) throw new Error(`groupBy: the aggregation "${name}" has the name of a key; name it differently`);
        if (typeof a !== "object" || a === null || !["count", "sum", "mean", "min", "max"].includes(a.kind)) {
          throw new Error(`groupBy: "${name}" is not an aggregation; use count(), sum(column), mean(column), min(column) or max(column)`);
        }
      }
      const valueColumns = entries.map(([, a]) => a.column).filter((c): c is string => c !== undefined);
      const columns = [...new Set([...keyList, ...valueColumns])];
      const groups = new Map<unknown, { keys: unknown[]; cells: Cell[] }>();
      let kinds: ("number" | "int64" | undefined)[] | undefined;
      for await (const batch of batchesOf("groupBy", input, columns, options)) {
        const fields = columns.map((name) => batch.schema.fields.find((f) => f.name === name) as Field);
        kinds ??= entries.map(([name, a]) => checkAggregation(name, a, a.column === undefined ? undefined : fields[columns.indexOf(a.column)]));
        const values = columns.map((name) => dataValues(batch.getChild(name)?.data[0] as Data));
        const keyValues = keyList.map((name) => values[columns.indexOf(name)] as unknown[]);
        const aggValues = entries.map(([, a]) => (a.column === undefined ? undefined : (values[columns.indexOf(a.column)] as unknown[])));
        for (let row = 0; row < batch.numRows; row++) {
          const rowKeys = keyValues.map((v) => v[row] ?? null);
          const id = rowKeys.length === 1 ? identity(rowKeys[0]) : JSON.stringify(rowKeys.map((k) => String(identity(k)) + typeof k));
          let group = groups.get(id);
          if (!group) {
            group = { keys: rowKeys, cells: entries.map(() => ({ n: 0, total: 0, best: undefined })) };
            groups.set(id, group);
          }
          for (let a = 0; a < entries.length; a++) {
            const cell = group.cells[a] as Cell;
            const [, agg] = entries[a] as [string, Aggregation];
            const source = aggValues[a];
            if (!source) {
              cell.n++;
              continue;
            }
            const value = source[row];
            if (value === null || value === undefined) continue;
            cell.n++;
            if (agg.kind === "sum" || agg.kind === "mean") {
              if ((kinds[a] === "int64" && agg.kind === "sum") || typeof cell.total === "bigint") cell.total = BigInt(cell.total) + BigInt(value as number);
              else cell.total = (cell.total as number) + (value as number);
            } else if (agg.kind === "min" || agg.kind === "max") {
              const order = cell.best === undefined ? 0 : compareValues(value, cell.best);
              if (cell.best === undefined || (agg.kind === "min" ? order < 0 : order > 0)) cell.best = value;
            }
          }
        }
      }
      const rows = [...groups.values()].map((group) => {
        const row: GroupRow = {};
        keyList.forEach((name, k) => {
          row[name] = group.keys[k];
        });
        entries.forEach(([name, agg], a) => {
          const cell = group.cells[a] as Cell;
          row[name] = result(agg, cell);
        });
        return row;
      });
      rows.sort((x, y) => {
        for (const name of keyList) {
          const a = x[name];
          const b = y[name];
          if (a === b) continue;
          if (a === null) return 1;
          if (b === null) return -1;
          const order = typeof a === "object" || typeof b === "object" ? compareValues(toJson(a), toJson(b)) : compareValues(a, b);
          if (order !== 0) return order;
        }
        return 0;
      });
      const counts = entries.filter(([, a]) => a.kind === "count").map(([name]) => name);
      return withPreview(rows, { counts, rows: 50 });
    },
  };
}

function checkAggregation(name: string, a: Aggregation, field: Field | undefined): "number" | "int64" | undefined {
  if (a.column === undefined) return undefined;
  if (!field) throw new Error(`groupBy: "${name}" names no column "${a.column}"`);
  const numeric = numericKind(field.type);
  if ((a.kind === "sum" || a.kind === "mean") && !numeric) {
    throw new Error(`groupBy: "${name}" is ${a.kind}("${a.column}"), but "${a.column}" is ${String(field.type)}, not a number`);
  }
  if ((a.kind === "min" || a.kind === "max") && !orderable(field.type)) {
    throw new Error(`groupBy: "${name}" is ${a.kind}("${a.column}"), but "${a.column}" is ${String(field.type)}, which has no order`);
  }
  return numeric;
}

function result(agg: Aggregation, cell: Cell): unknown {
  switch (agg.kind) {
    case "count":
      return cell.n;
    case "sum":
      if (cell.n === 0) return null;
      return typeof cell.total === "bigint" && cell.total <= BigInt(Number.MAX_SAFE_INTEGER) && cell.total >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(cell.total) : cell.total;
    case "mean":
      return cell.n === 0 ? null : Number(cell.total) / cell.n;
    default:
      return cell.best === undefined ? null : cell.best;
  }
}

/** One line of {@link valueCounts}: the value under the column's name, and its count. */
export type ValueCount<K extends string> = { readonly [key in K]: unknown } & { readonly count: number };

/** Options of {@link valueCounts}. */
export interface ValueCountsOptions extends ReadOptions {
  /** Keep only the `limit` most frequent values (default: all). */
  readonly limit?: number;
}

/**
 * Counts the rows of a table, a record batch or a dataset (read batch by batch, that column
 * only) by the value of `column`: one `{ [column]: value, count }` per distinct value, the most
 * frequent first (ties in order of first appearance), nulls as one `null` value. Values compare
 * as `formatTable` shows them (timestamps as ISO text, lists and structs by their JSON). Memory
 * grows with the number of distinct values. Prints as a table in a REPL.
 *
 * Rejects naming the column when it does not exist, or the path when it cannot be read.
 *
 * @example
 * await valueCounts("out/events", "event_type", { limit: 3 });
 * // event_type       │  count
 * // remove_from_cart │ 12,336 …
 */
export async function valueCounts<K extends string>(input: Tabular, column: K, options: ValueCountsOptions = {}): Promise<ValueCount<K>[]> {
  const { limit, ...read } = options;
  const counts = new Map<unknown, { value: unknown; count: number }>();
  for await (const batch of batchesOf("valueCounts", input, [column], read)) {
    for (const raw of dataValues(batch.getChild(column)?.data[0] as Data)) {
      const value = raw ?? null;
      const id = identity(value);
      const entry = counts.get(id);
      if (entry) entry.count++;
      else counts.set(id, { value, count: 1 });
    }
  }
  const sorted = [...counts.values()].sort((a, b) => b.count - a.count);
  const kept = limit === undefined ? sorted : sorted.slice(0, Math.max(0, limit));
  return withPreview(
    kept.map((e) => ({ [column]: e.value, count: e.count }) as ValueCount<K>),
    { counts: ["count"], rows: 50 },
  );
}
