/**
 * `describe`: a summary of every column (type, values, nulls, min, max, mean, distinct values),
 * as Polars' `describe` and DuckDB's `SUMMARIZE` give, computed in one pass over record batches
 * so a dataset larger than memory is summarised in 64 KB per column.
 */
import { type Data, type DataType, type Field, makeData, Null, Schema, type Timestamp, TimeUnit, Type } from "apache-arrow";
import { readDataset } from "../dataset/read.ts";
import { dictionaryValues, takeData } from "../dataset/take.ts";
import { isoDate, isoTimestamp, type Unit } from "../schema/instant.ts";
import { DistinctCounter, ValueHasher } from "./distinct.ts";
import { batchesOf, type ReadOptions, type Tabular } from "./input.ts";
import { formatPreview } from "./view.ts";

/** One line of {@link describe}'s result. */
export interface ColumnDescription {
  readonly column: string;
  /** `int64`, `double`, `string`, `timestamp(us, UTC)`, `date`, `boolean`, `list<string>`, … */
  readonly type: string;
  /** Non-null values. */
  readonly count: number;
  readonly nulls: number;
  /** Smallest and largest non-null value (strings in UTF-8 byte order, timestamps and dates as ISO text); null for nested types. */
  readonly min: number | bigint | string | boolean | null;
  readonly max: number | bigint | string | boolean | null;
  /** Mean of the non-null values of a number column (NaN when one is NaN); null for other types. */
  readonly mean: number | null;
  /** Distinct non-null values: exact up to 4,096, a HyperLogLog estimate (within about 1 %) above. */
  readonly distinct: number;
}

/** Options of {@link describe}: for a dataset path, how it is read. */
export interface DescribeOptions extends ReadOptions {
  /** Columns to describe (default: all). */
  readonly columns?: readonly string[];
}

const UNITS: Record<TimeUnit, Unit> = { [TimeUnit.SECOND]: "s", [TimeUnit.MILLISECOND]: "ms", [TimeUnit.MICROSECOND]: "us", [TimeUnit.NANOSECOND]: "ns" };

/** A reader's name for an Arrow type. */
export function typeName(type: DataType): string {
  switch (type.typeId) {
    case Type.Int: {
      const t = type as unknown as { bitWidth: number; isSigned: boolean };
      return `${t.isSigned ? "" : "u"}int${t.bitWidth}`;
    }
    case Type.Float:
      return ["half", "float", "double"][(type as unknown as { precision: number }).precision] ?? "float";
    case Type.Utf8:
    case Type.LargeUtf8:
      return "string";
    case Type.Bool:
      return "boolean";
    case Type.Binary:
    case Type.LargeBinary:
      return "binary";
    case Type.Timestamp: {
      const t = type as Timestamp;
      return `timestamp(${UNITS[t.unit]}${t.timezone ? `, ${t.timezone}` : ""})`;
    }
    case Type.Date:
      return "date";
    case Type.Dictionary:
      return typeName((type as unknown as { dictionary: DataType }).dictionary);
    case Type.List:
    case Type.LargeList:
      return `list<${type.children?.[0] ? typeName((type.children[0] as Field).type) : "?"}>`;
    case Type.Struct:
      return `struct<${(type.children ?? []).map((f: Field) => `${f.name}: ${typeName(f.type)}`).join(", ")}>`;
    default:
      return String(type).toLowerCase();
  }
}

type Kind = "number" | "int64" | "timestamp" | "date" | "string" | "boolean" | "other";

function kindOf(type: DataType): Kind {
  switch (type.typeId) {
    case Type.Int:
      return (type as unknown as { bitWidth: number }).bitWidth === 64 ? "int64" : "number";
    case Type.Float:
      return "number";
    case Type.Timestamp:
      return "timestamp";
    case Type.Date:
      return (type as unknown as { unit: number }).unit === 0 ? "date" : "other";
    case Type.Utf8:
      return "string";
    case Type.Bool:
      return "boolean";
    default:
      return "other";
  }
}

/** Orders `bytes[start, end)` against `other` as unsigned bytes (UTF-8 byte order). */
function compareBytes(bytes: Uint8Array, start: number, end: number, other: Uint8Array): number {
  const n = Math.min(end - start, other.length);
  for (let i = 0; i < n; i++) {
    const a = bytes[start + i] as number;
    const b = other[i] as number;
    if (a !== b) return a - b;
  }
  return end - start - other.length;
}

const utf8 = new TextDecoder();

/** Running figures of one column. */
class ColumnStats {
  readonly distinct = new DistinctCounter();
  count = 0;
  nulls = 0;
  sum = 0;
  min: number | bigint | Uint8Array | boolean | undefined;
  max: number | bigint | Uint8Array | boolean | undefined;
  sawNaN = false;

  constructor(
    readonly field: Field,
    readonly kind: Kind,
  ) {}

  add(data: Data): void {
    const valid = (i: number) => data.nullCount === 0 || data.getValid(i);
    const n = data.length;
    this.nulls += data.nullCount;
    this.count += n - data.nullCount;
    switch (this.kind) {
      case "number": {
        const values = data.values as Float64Array | Int32Array;
        const scratch = new Float64Array(1);
        const words = new Int32Array(scratch.buffer);
        for (let i = 0; i < n; i++) {
          if (!valid(i)) continue;
          const v = values[i] as number;
          this.sum += v;
          if (Number.isNaN(v)) this.sawNaN = true;
          else {
            if (this.min === undefined || v < (this.min as number)) this.min = v;
            if (this.max === undefined || v > (this.max as number)) this.max = v;
          }
          scratch[0] = v === 0 ? 0 : v; // -0 and 0 are one value
          this.distinct.addWords(words[0] as number, words[1] as number);
        }
        return;
      }
      case "int64":
      case "timestamp": {
        const values = data.values as BigInt64Array;
        const words = new Int32Array(values.buffer, values.byteOffset, values.length * 2);
        for (let i = 0; i < n; i++) {
          if (!valid(i)) continue;
          const v = values[i] as bigint;
          if (this.kind === "int64") this.sum += Number(v);
          if (this.min === undefined || v < (this.min as bigint)) this.min = v;
          if (this.max === undefined || v > (this.max as bigint)) this.max = v;
          this.distinct.addWords(words[2 * i] as number, words[2 * i + 1] as number);
        }
        return;
      }
      case "date": {
        const values = data.values as Int32Array;
        for (let i = 0; i < n; i++) {
          if (!valid(i)) continue;
          const v = values[i] as number;
          if (this.min === undefined || v < (this.min as number)) this.min = v;
          if (this.max === undefined || v > (this.max as number)) this.max = v;
          this.distinct.addWords(v, 0);
        }
        return;
      }
      case "string": {
        const offsets = data.valueOffsets as Int32Array;
        const bytes = data.values as Uint8Array;
        for (let i = 0; i < n; i++) {
          if (!valid(i)) continue;
          const start = offsets[i] as number;
          const end = offsets[i + 1] as number;
          // Compared in place: a view per value would be millions of short-lived objects.
          if (this.min === undefined || compareBytes(bytes, start, end, this.min as Uint8Array) < 0) this.min = bytes.slice(start, end);
          if (this.max === undefined || compareBytes(bytes, start, end, this.max as Uint8Array) > 0) this.max = bytes.slice(start, end);
          this.distinct.addBytes(bytes, start, end);
        }
        return;
      }
      case "boolean": {
        const bits = data.values as Uint8Array;
        for (let i = 0; i < n; i++) {
          if (!valid(i)) continue;
          const v = (((bits[(data.offset + i) >> 3] as number) >> ((data.offset + i) & 7)) & 1) === 1;
          if (this.min === undefined || (!v && this.min)) this.min = v;
          if (this.max === undefined || (v && !this.max)) this.max = v;
          this.distinct.addWords(v ? 1 : 0, 0);
        }
        return;
      }
      default: {
        // Nested and rare types: distinct values by a hash of their buffers, no order.
        const feed = feeder(data);
        for (let i = 0; i < n; i++) {
          if (!valid(i)) continue;
          hasher.reset();
          feed(i);
          this.distinct.addHashed(hasher);
        }
      }
    }
  }

  result(): ColumnDescription {
    const shown = (v: ColumnStats["min"]): ColumnDescription["min"] => {
      if (v === undefined) return null;
      if (this.kind === "string") return utf8.decode(v as Uint8Array);
      if (this.kind === "timestamp") {
        const t = this.field.type as Timestamp;
        return isoTimestamp(v as bigint, UNITS[t.unit], t.timezone != null);
      }
      if (this.kind === "date") return isoDate(v as number);
      if (typeof v === "bigint") return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(v) : v;
      return v as number | boolean;
    };
    const numeric = this.kind === "number" || this.kind === "int64";
    return {
      column: this.field.name,
      type: typeName(this.field.type),
      count: this.count,
      nulls: this.nulls,
      // Like DuckDB, NaN is the largest number.
      min: this.sawNaN && this.min === undefined ? Number.NaN : shown(this.min),
      max: this.sawNaN ? Number.NaN : shown(this.max),
      mean: numeric && this.count > 0 ? this.sum / this.count : null,
      distinct: this.distinct.count(),
    };
  }
}

const hasher = new ValueHasher();
const NULL_WORD = 0x6e756c6c; // "null": a null item inside a list or struct

/**
 * A function feeding row `i` of `data` (any type) to the shared {@link hasher}: fixed-width values
 * by their bytes, strings and binary by their bytes and length, lists by their length and items,
 * structs by their fields, dictionaries by the value a key points to.
 */
function feeder(data: Data): (i: number) => void {
  const valid = (i: number) => data.nullCount === 0 || data.getValid(i);
  const withNulls = (feed: (i: number) => void) => (i: number) => (valid(i) ? feed(i) : hasher.word(NULL_WORD));
  switch (data.type.typeId) {
    case Type.Null:
      return () => hasher.word(NULL_WORD);
    case Type.Bool: {
      const bits = data.values as Uint8Array;
      return withNulls((i) => hasher.word(((bits[(data.offset + i) >> 3] as number) >> ((data.offset + i) & 7)) & 1));
    }
    case Type.Utf8:
    case Type.Binary:
    case Type.LargeUtf8:
    case Type.LargeBinary: {
      const offsets = data.valueOffsets as Int32Array | BigInt64Array;
      const bytes = data.values as Uint8Array;
      return withNulls((i) => hasher.bytes(bytes, Number(offsets[i]), Number(offsets[i + 1])));
    }
    case Type.List:
    case Type.LargeList:
    case Type.Map: {
      const offsets = data.valueOffsets as Int32Array | BigInt64Array;
      const item = feeder(data.children[0] as Data);
      return withNulls((i) => {
        const start = Number(offsets[i]);
        const end = Number(offsets[i + 1]);
        hasher.word(end - start);
        for (let k = start; k < end; k++) item(k);
      });
    }
    case Type.FixedSizeList: {
      const size = (data.type as unknown as { listSize: number }).listSize;
      const item = feeder(data.children[0] as Data);
      return withNulls((i) => {
        for (let k = 0; k < size; k++) item((data.offset + i) * size + k);
      });
    }
    case Type.Struct: {
      const fields = data.children.map((child) => feeder(child as Data));
      return withNulls((i) => {
        for (const field of fields) field(i);
      });
    }
    case Type.Dictionary: {
      const dictionary = dictionaryValues(data);
      const keys = data.values as Int32Array;
      const value = dictionary ? feeder(dictionary) : () => hasher.word(NULL_WORD);
      return withNulls((i) => value(Number(keys[i])));
    }
    default: {
      // Fixed-width values (numbers, timestamps, dates, decimals, intervals): their bytes.
      const values = data.values as Int32Array;
      const bytes = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
      const width = data.length === 0 ? 0 : values.byteLength / data.length;
      return withNulls((i) => hasher.bytes(bytes, i * width, i * width + width));
    }
  }
}

/** The Data of a column with a dictionary resolved to its values, for the fast paths above. */
function plainData(data: Data): Data {
  if (data.type.typeId !== Type.Dictionary) return data;
  const dictionary = dictionaryValues(data);
  if (!dictionary || dictionary.length === 0) return makeData({ type: new Null(), length: data.length, nullCount: data.length });
  const keys = data.values as Int32Array;
  const indices = new Int32Array(data.length);
  const bitmap = new Uint8Array((data.length + 7) >> 3);
  for (let i = 0; i < data.length; i++) {
    const valid = data.nullCount === 0 || data.getValid(i);
    // A null row may hold any key: point it at entry 0 and keep it null through the bitmap.
    indices[i] = valid ? Number(keys[i]) : 0;
    if (valid) bitmap[i >> 3] = (bitmap[i >> 3] as number) | (1 << (i & 7));
  }
  const values = takeData(dictionary, indices);
  return makeData({
    type: values.type,
    length: values.length,
    nullCount: data.nullCount,
    nullBitmap: bitmap,
    valueOffsets: values.valueOffsets,
    data: values.values,
  } as never);
}

async function schemaOf(input: Tabular, columns: readonly string[] | undefined): Promise<Schema> {
  if (typeof input === "string") return (await readDataset(input, { limit: 0, ...(columns ? { columns } : {}) })).schema;
  if (!columns) return input.schema;
  return new Schema(columns.map((name) => input.schema.fields.find((f) => f.name === name)).filter((f): f is Field => f !== undefined));
}

/**
 * Describes every column of a table, a record batch or a dataset (a folder or a Parquet file,
 * read one batch at a time with only the columns asked for): type, non-null count, nulls, min,
 * max, mean (number columns) and distinct values (exact up to 4,096, a HyperLogLog estimate
 * above: memory stays 64 KB per column whatever the size). Strings order by their
 * UTF-8 bytes as in Parquet and DuckDB; NaN counts as the largest number. Printed in a REPL, the
 * result is a table.
 *
 * Rejects when the path cannot be read or a column does not exist, naming it; `where` in the
 * options filters the rows of a dataset first (see `readDataset`).
 *
 * @example
 * console.log(await describe("out/events", { columns: ["price", "event_type"] }));
 * // column     │ type   │  count │ nulls │ min  │ max    │ mean   │ distinct
 * // price      │ double │ 70,012 │ 28,002│ 0.5  │ 499.99 │ 250.12 │   35,210
 */
export async function describe(input: Tabular, options: DescribeOptions = {}): Promise<ColumnDescription[]> {
  const { columns, ...read } = options;
  let stats: ColumnStats[] | undefined;
  for await (const batch of batchesOf("describe", input, columns, read)) {
    const columns = (stats ??= batch.schema.fields.map((field) => {
      const type = field.type.typeId === Type.Dictionary ? (field.type as unknown as { dictionary: DataType }).dictionary : field.type;
      return new ColumnStats(field, kindOf(type));
    }));
    batch.data.children.forEach((child, c) => {
      (columns[c] as ColumnStats).add(plainData(child as Data));
    });
  }
  // No rows (a filter that matches nothing, an empty table): every column, counted zero.
  stats ??= (await schemaOf(input, columns)).fields.map((field) => {
    const type = field.type.typeId === Type.Dictionary ? (field.type as unknown as { dictionary: DataType }).dictionary : field.type;
    return new ColumnStats(field, kindOf(type));
  });
  const rows = stats.map((s) => s.result());
  // Printed, means show 6 significant digits (the values keep every digit), so the table fits.
  const shown = rows.map((r) => ({ ...r, mean: r.mean === null ? null : Number(r.mean.toPrecision(6)) }));
  Object.defineProperty(rows, Symbol.for("nodejs.util.inspect.custom"), {
    value: function inspectDescription() {
      return formatPreview(shown, { counts: ["count", "nulls", "distinct"], rows: 1000, maxWidth: 28 });
    },
  });
  return rows;
}
