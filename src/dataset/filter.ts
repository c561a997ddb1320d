/**
 * Row filters for reading datasets: conditions on any column, checked first against each row
 * group's statistics (a row group whose min/max/null count rule out every row is never read),
 * then exactly on each row of the row groups that are read.
 *
 * Comparisons follow SQL (and DuckDB): a null never satisfies a comparison (`!=` and `not in`
 * included; ask with `is null`), strings compare by their UTF-8 bytes (the order Parquet
 * statistics use, not JavaScript's UTF-16 order), NaN is unequal to everything (IEEE 754, as in
 * JavaScript and Polars; DuckDB instead orders NaN above every number), and nothing is converted: a number is compared with numbers, a string with strings,
 * timestamps with `Date`s or ISO-8601 text, dates with `YYYY-MM-DD` text or `Date`s.
 */
import { type Data, type DataType, type Field, type Timestamp, TimeUnit, Type } from "apache-arrow";
import { parseIsoDays, parseIsoMicrosExact } from "../schema/instant.ts";
import type { ChunkBounds } from "../parquet/metadata.ts";
import { dictionaryValues } from "./take.ts";

/** A value a condition compares with. */
export type FilterValue = string | number | bigint | boolean | Date;

/** One condition on one column; a list of them must all hold (AND). */
export type RowCondition =
  | readonly [column: string, op: "=" | "!=" | "<" | "<=" | ">" | ">=", value: FilterValue]
  | readonly [column: string, op: "in" | "not in", values: readonly FilterValue[]]
  | readonly [column: string, op: "is null" | "is not null"];

/** A key in the order the column's values compare (see {@link ChunkBounds}). */
type Key = number | bigint | Uint8Array;

const OPS = new Set(["=", "!=", "<", "<=", ">", ">=", "in", "not in", "is null", "is not null"]);
const encoder = new TextEncoder();

/** Orders two keys of one column: bytes as unsigned bytes, numbers and bigints by value (callers keep NaN out). */
export function compareKeys(a: Key, b: Key): number {
  if (a instanceof Uint8Array || b instanceof Uint8Array) {
    const x = a as Uint8Array;
    const y = b as Uint8Array;
    const n = Math.min(x.length, y.length);
    for (let i = 0; i < n; i++) if (x[i] !== y[i]) return (x[i] as number) - (y[i] as number);
    return x.length - y.length;
  }
  return a < b ? -1 : a > b ? 1 : 0;
}

function isNaNKey(key: Key): boolean {
  return typeof key === "number" && Number.isNaN(key);
}

/** How a column's values become keys: the kinds of column a condition can name. */
type Kind = "number" | "bigint" | "float" | "string" | "boolean" | "timestamp" | "date";

function kindOf(type: DataType): Kind | undefined {
  switch (type.typeId) {
    case Type.Int:
      return (type as unknown as { bitWidth: number }).bitWidth === 64 ? "bigint" : "number";
    case Type.Float:
      return "float";
    case Type.Utf8:
    case Type.LargeUtf8:
      return "string";
    case Type.Bool:
      return "boolean";
    case Type.Timestamp:
      return "timestamp";
    case Type.Date:
      return "date";
    case Type.Dictionary:
      return kindOf((type as unknown as { dictionary: DataType }).dictionary);
    default:
      return undefined;
  }
}

const NANOS: Record<TimeUnit, bigint> = {
  [TimeUnit.SECOND]: 1_000_000_000n,
  [TimeUnit.MILLISECOND]: 1_000_000n,
  [TimeUnit.MICROSECOND]: 1_000n,
  [TimeUnit.NANOSECOND]: 1n,
};

function describeCondition(c: RowCondition): string {
  const shown = (v: unknown) => (v instanceof Date ? v.toISOString() : typeof v === "bigint" ? `${v}n` : JSON.stringify(v));
  return c.length === 2 ? `["${c[0]}", "${c[1]}"]` : `["${c[0]}", "${c[1]}", ${Array.isArray(c[2]) ? `[${c[2].map(shown).join(", ")}]` : shown(c[2])}]`;
}

/** The key of a condition's value for a column of `kind`, or an error message. */
function valueKey(value: unknown, kind: Kind): Key | string {
  switch (kind) {
    case "number":
    case "bigint":
    case "float":
      if (typeof value === "number" || typeof value === "bigint") return value;
      return "a number or bigint";
    case "string":
      return typeof value === "string" ? encoder.encode(value) : "a string";
    case "boolean":
      return typeof value === "boolean" ? (value ? 1 : 0) : "true or false";
    case "timestamp": {
      if (value instanceof Date && !Number.isNaN(value.getTime())) return BigInt(value.getTime()) * 1_000_000n;
      if (typeof value === "string") {
        const micros = parseIsoMicrosExact(value);
        if (typeof micros === "bigint" || !Number.isNaN(micros)) return BigInt(micros) * 1_000n;
      }
      return "a Date or ISO-8601 timestamp text";
    }
    case "date": {
      if (value instanceof Date && !Number.isNaN(value.getTime())) return value.getTime() / 86_400_000;
      if (typeof value === "string") {
        const days = parseIsoDays(value);
        if (!Number.isNaN(days)) return days;
      }
      return "a Date or YYYY-MM-DD text";
    }
  }
}

/** A condition checked and turned into keys for one column. */
export interface BoundCondition {
  readonly column: string;
  readonly op: RowCondition[1];
  /** The value's key (comparisons), the values' keys (`in`), nothing (`is null`). */
  readonly keys: readonly Key[];
  readonly kind: Kind;
  readonly text: string;
}

/**
 * Checks a condition's shape and its value against the column's type; throws naming the
 * condition, its position in the list, the column and what it needs.
 */
export function bindCondition(condition: RowCondition, index: number, field: Field | undefined, columns: readonly string[], where: string): BoundCondition {
  const at = `where[${index}]`;
  if (!Array.isArray(condition) || typeof condition[0] !== "string" || !OPS.has(condition[1] as string)) {
    throw new Error(
      `readDataset: ${at} is not a condition: expected [column, op, value] with op one of =, !=, <, <=, >, >=, in, not in, is null, is not null (got ${safeText(condition)})`,
    );
  }
  const text = describeCondition(condition);
  const [column, op] = condition;
  if (!field) throw new Error(`readDataset: ${at} ${text} names no column of ${where} (columns: ${columns.join(", ")})`);
  const kind = kindOf(field.type);
  if (!kind) throw new Error(`readDataset: ${at} ${text}: column "${column}" is ${String(field.type)}; conditions compare numbers, strings, booleans, timestamps and dates`);
  if (op === "is null" || op === "is not null") {
    if (condition.length !== 2) throw new Error(`readDataset: ${at} ${text}: "${op}" takes no value`);
    return { column, op, keys: [], kind, text };
  }
  const raw = condition[2];
  const list = op === "in" || op === "not in";
  if (list !== Array.isArray(raw)) throw new Error(`readDataset: ${at} ${text}: "${op}" takes ${list ? "a list of values" : "one value"}`);
  const values: readonly unknown[] = list ? (raw as readonly unknown[]) : [raw];
  const keys = values.map((value) => {
    if (value === null || value === undefined) throw new Error(`readDataset: ${at} ${text}: compare with null by "is null" or "is not null"`);
    const key = valueKey(value, kind);
    if (typeof key === "string") throw new Error(`readDataset: ${at} ${text}: column "${column}" is ${String(field.type)}; compare it with ${key}`);
    return key;
  });
  return { column, op, keys, kind, text };
}

function safeText(value: unknown): string {
  try {
    return JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? `${v}n` : v)) ?? String(value);
  } catch {
    return String(value);
  }
}

/** Whether a non-null key satisfies a comparison (not the null tests). */
function holds(c: BoundCondition, key: Key): boolean {
  // IEEE 754: NaN equals nothing and orders with nothing; only "!=" and "not in" hold for it.
  if (isNaNKey(key)) return c.op === "!=" || c.op === "not in";
  switch (c.op) {
    case "=":
      return compareKeys(key, c.keys[0] as Key) === 0;
    case "!=":
      return isNaNKey(c.keys[0] as Key) || compareKeys(key, c.keys[0] as Key) !== 0;
    case "<":
      return compareKeys(key, c.keys[0] as Key) < 0;
    case "<=":
      return compareKeys(key, c.keys[0] as Key) <= 0;
    case ">":
      return compareKeys(key, c.keys[0] as Key) > 0;
    case ">=":
      return compareKeys(key, c.keys[0] as Key) >= 0;
    case "in":
      return c.keys.some((k) => compareKeys(key, k) === 0);
    case "not in":
      return c.keys.every((k) => isNaNKey(k) || compareKeys(key, k) !== 0);
    default:
      return false;
  }
}

/** Whether a value (null included) satisfies the condition. */
export function matchesValue(c: BoundCondition, key: Key | null): boolean {
  if (c.op === "is null") return key === null;
  if (c.op === "is not null") return key !== null;
  return key !== null && holds(c, key);
}

/**
 * Whether a row group may hold a matching row, from its statistics alone: false only when the
 * bounds or null count rule every row out. Writers leave NaN out of float statistics (or, old
 * ones, write it as a bound, which is then ignored): NaN matches no comparison but `!=`, so only
 * `!=` cannot use a float column's bounds.
 */
export function mayMatch(c: BoundCondition, bounds: ChunkBounds | undefined, rows: number): boolean {
  if (!bounds) return true;
  const nulls = bounds.nullCount;
  if (c.op === "is null") return nulls === undefined || nulls > 0;
  const allNull = nulls !== undefined && nulls >= bounds.values;
  if (c.op === "is not null") return !allNull;
  if (allNull && rows > 0) return false;
  const { min, max } = bounds;
  if (min === undefined || max === undefined || isNaNKey(min) || isNaNKey(max)) return true;
  const float = c.kind === "float";
  const key = c.keys[0] as Key;
  // A NaN value matches no comparison but "!=" (handled below).
  if ((c.op === "=" || c.op === "<" || c.op === "<=" || c.op === ">" || c.op === ">=") && isNaNKey(key)) return false;
  switch (c.op) {
    case "=":
      return compareKeys(key, min) >= 0 && compareKeys(key, max) <= 0;
    case "in":
      return c.keys.some((k) => !isNaNKey(k) && compareKeys(k, min) >= 0 && compareKeys(k, max) <= 0);
    case "<":
      return compareKeys(min, key) < 0;
    case "<=":
      return compareKeys(min, key) <= 0;
    case ">":
      return compareKeys(max, key) > 0;
    case ">=":
      return compareKeys(max, key) >= 0;
    case "!=":
      return float || isNaNKey(key) || !bounds.exact || !(compareKeys(min, key) === 0 && compareKeys(max, key) === 0);
    default:
      return true;
  }
}

/** Reads row `i` of a column as a key (null for a null). */
type KeyReader = (i: number) => Key | null;

function keyReader(data: Data, kind: Kind): KeyReader {
  const valid = (i: number) => data.nullCount === 0 || data.getValid(i);
  if (data.type.typeId === Type.Dictionary) {
    const dictionary = dictionaryValues(data);
    const keys = data.values as Int32Array;
    if (!dictionary) return () => null;
    const inner = keyReader(dictionary, kind);
    return (i) => (valid(i) ? inner(Number(keys[i])) : null);
  }
  switch (kind) {
    case "number":
    case "bigint":
    case "float": {
      const values = data.values as Float64Array | BigInt64Array;
      return (i) => (valid(i) ? (values[i] as number | bigint) : null);
    }
    case "date": {
      // Date32 holds days; Date64 holds milliseconds.
      const values = data.values as Int32Array | BigInt64Array;
      const perDay = (data.type as unknown as { unit: number }).unit === 0 ? 1 : 86_400_000;
      return (i) => (valid(i) ? Number(values[i]) / perDay : null);
    }
    case "timestamp": {
      const values = data.values as BigInt64Array;
      const scale = NANOS[(data.type as Timestamp).unit];
      return (i) => (valid(i) ? (values[i] as bigint) * scale : null);
    }
    case "boolean": {
      const bits = data.values as Uint8Array;
      return (i) => (valid(i) ? (((bits[(data.offset + i) >> 3] as number) >> ((data.offset + i) & 7)) & 1) : null);
    }
    case "string": {
      const offsets = data.valueOffsets as Int32Array | BigInt64Array;
      const bytes = data.values as Uint8Array;
      return (i) => (valid(i) ? bytes.subarray(Number(offsets[i]), Number(offsets[i + 1])) : null);
    }
  }
}

/**
 * The indices of the rows of `columns` (one Data per condition, in order) for which every
 * condition holds.
 */
export function matchingRows(conditions: readonly BoundCondition[], columns: readonly Data[], length: number): Int32Array {
  const readers = conditions.map((c, i) => keyReader(columns[i] as Data, c.kind));
  const out = new Int32Array(length);
  let n = 0;
  for (let row = 0; row < length; row++) {
    let ok = true;
    for (let c = 0; c < conditions.length && ok; c++) ok = matchesValue(conditions[c] as BoundCondition, (readers[c] as KeyReader)(row));
    if (ok) out[n++] = row;
  }
  return out.subarray(0, n);
}

/** A folder value (text, or null for `__HIVE_DEFAULT_PARTITION__`) as a key of a string column. */
export function folderKey(value: string | null): Key | null {
  return value === null ? null : encoder.encode(value);
}
