/**
 * Plain JavaScript values from Arrow columns, for printing and for NDJSON.
 *
 * Arrow JS returns timestamps as fractional milliseconds (losing microseconds), dates as epoch
 * milliseconds, lists as Vectors and structs as row proxies. A reader wants the value as it was
 * written: timestamps and dates as ISO-8601 text at the column's precision, lists as arrays,
 * structs as objects, 64-bit integers as numbers when they are exact (bigint otherwise).
 */
import { type Data, type DataType, type RecordBatch, type Table, type Timestamp, TimeUnit, Type, makeVector } from "apache-arrow";
import { isoDate, isoTimestamp, type Unit } from "../schema/instant.ts";
import { setField } from "../schema/fields.ts";

const ARROW_UNITS: Record<TimeUnit, Unit> = {
  [TimeUnit.SECOND]: "s",
  [TimeUnit.MILLISECOND]: "ms",
  [TimeUnit.MICROSECOND]: "us",
  [TimeUnit.NANOSECOND]: "ns",
};

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

function exactInteger(value: bigint): number | bigint {
  return value <= MAX_SAFE && value >= -MAX_SAFE ? Number(value) : value;
}

/** The values of one chunk of a column, as plain JavaScript values (null for nulls; see {@link rowsOf}). */
export function dataValues(data: Data, count = data.length): unknown[] {
  const type = data.type as DataType;
  const n = Math.min(count, data.length);
  const out: unknown[] = new Array(n);
  const valid = (i: number) => data.nullCount === 0 || data.getValid(i);
  switch (type.typeId) {
    case Type.Timestamp: {
      const t = type as Timestamp;
      const unit = ARROW_UNITS[t.unit];
      const values = data.values as BigInt64Array;
      for (let i = 0; i < n; i++) out[i] = valid(i) ? isoTimestamp(values[i] as bigint, unit, t.timezone != null) : null;
      return out;
    }
    case Type.Date: {
      const vector = makeVector(data);
      for (let i = 0; i < n; i++) {
        const ms = vector.get(i) as number | null;
        out[i] = ms == null ? null : isoDate(Math.floor(ms / 86_400_000));
      }
      return out;
    }
    case Type.Struct: {
      // Arrow slices struct children together with their parent, so row i of the struct is row i of each child.
      const children = (type.children ?? []).map((field, c) => [field.name, dataValues(data.children[c] as Data, n)] as const);
      for (let i = 0; i < n; i++) {
        if (!valid(i)) {
          out[i] = null;
          continue;
        }
        const row: Record<string, unknown> = {};
        for (const [name, values] of children) put(row, name, values[i]);
        out[i] = row;
      }
      return out;
    }
    case Type.List:
    case Type.LargeList:
    case Type.Map: {
      const offsets = data.valueOffsets as Int32Array | BigInt64Array;
      const end = Number(offsets[n] ?? 0);
      const items = dataValues(data.children[0] as Data, end);
      for (let i = 0; i < n; i++) {
        if (!valid(i)) {
          out[i] = null;
          continue;
        }
        const slice = items.slice(Number(offsets[i]), Number(offsets[i + 1]));
        out[i] = type.typeId === Type.Map ? mapValue(slice) : slice;
      }
      return out;
    }
    case Type.FixedSizeList: {
      const size = (type as unknown as { listSize: number }).listSize;
      const items = dataValues(data.children[0] as Data, n * size);
      for (let i = 0; i < n; i++) {
        const start = i * size;
        out[i] = valid(i) ? items.slice(start, start + size) : null;
      }
      return out;
    }
    default: {
      const vector = makeVector(data);
      for (let i = 0; i < n; i++) out[i] = plain(vector.get(i));
      return out;
    }
  }
}

/** Map entries as an object when every key is a string, as `[key, value]` pairs otherwise. */
function mapValue(entries: unknown[]): unknown {
  const pairs = entries.map((e) => {
    const entry = e as Record<string, unknown>;
    // A map entry is a struct of exactly two fields, key and value.
    const [k, v] = Object.keys(entry) as [string, string];
    return [entry[k], entry[v]] as const;
  });
  if (pairs.every(([key]) => typeof key === "string")) return Object.fromEntries(pairs);
  return pairs;
}

/** Sets a field; `__proto__` becomes a field of that name, as it is in the file, not the object's prototype. */
function put(row: Record<string, unknown>, name: string, value: unknown): void {
  if (name === "__proto__") setField(row, name, value);
  else row[name] = value;
}

function plain(value: unknown): unknown {
  if (value === undefined) return null;
  if (typeof value === "bigint") return exactInteger(value);
  return value;
}

/**
 * The first `limit` rows (all by default) of an Arrow table or record batch as plain objects:
 * timestamps and dates as ISO text, 64-bit integers as numbers (bigint beyond 2^53), lists as
 * arrays, structs as objects, binary as `Uint8Array`, nulls as `null`.
 *
 * @example
 * rowsOf(await readDataset("out/events", { columns: ["event_id", "event_ts"] }), 3)
 * // [{ event_id: "evt-…", event_ts: "2024-03-01T00:01:15.850002Z" }, …]
 */
export function rowsOf(table: Table | RecordBatch, limit = Number.POSITIVE_INFINITY): Record<string, unknown>[] {
  const total = Math.min(limit, table.numRows);
  const rows: Record<string, unknown>[] = Array.from({ length: total }, () => ({}));
  for (const field of table.schema.fields) {
    const column = table.getChild(field.name);
    if (!column) continue;
    let row = 0;
    for (const data of column.data) {
      if (row >= total) break;
      const values = dataValues(data, total - row);
      for (const value of values) put(rows[row++] as Record<string, unknown>, field.name, value);
    }
  }
  return rows;
}

/** Column names of an Arrow table or batch, in schema order. */
export function columnNames(table: Table | RecordBatch): string[] {
  return table.schema.fields.map((f) => f.name);
}

/** Whether a value is an Arrow table or record batch (rather than an array of rows). */
export function isArrowTabular(value: unknown): value is Table | RecordBatch {
  return typeof value === "object" && value !== null && "schema" in value && "numRows" in value && typeof (value as Table).getChild === "function";
}

// Bun implements JSON.rawJSON (TC39 "JSON.parse source text access"); TypeScript's lib does not declare it yet.
const rawJSON = (JSON as unknown as { rawJSON(text: string): unknown }).rawJSON;

/**
 * A value as JSON text: bigints as JSON numbers with their exact digits, binary as base64 (or
 * `0x…` hex with `binary: "hex"`), `Date`s as ISO text.
 */
export function toJson(value: unknown, binary: "base64" | "hex" = "base64"): string {
  return (
    JSON.stringify(value, function replacer(this: unknown, _key, v) {
      if (typeof v === "bigint") return rawJSON(v.toString());
      if (v instanceof Uint8Array) return binary === "hex" ? `0x${Buffer.from(v).toString("hex")}` : Buffer.from(v).toString("base64");
      return v;
    }) ?? "null"
  );
}

/** One row as a line of NDJSON (see {@link toJson}). */
export function toJsonLine(row: unknown): string {
  return toJson(row);
}
