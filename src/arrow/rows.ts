/**
 * A buffer of rows for one output file: records go in one at a time, an Arrow table comes out.
 */
import { Data, type DataType, Field, makeData, RecordBatch, RecordBatchStreamWriter, Schema, Struct, Table, tableToIPC } from "apache-arrow";
import type { ColumnSpec } from "../schema/columns.ts";
import { fieldOf, inheritedName } from "../schema/fields.ts";
import { notWellFormed, previewValue } from "../schema/preview.ts";
import { arrowTypeOf, builderFor, type ColumnBuilder } from "./columns.ts";

/**
 * A buffer's rows as plain data: the column specs and each column's Arrow buffers, which a
 * worker receives by transfer (see {@link RowBuffer.toColumns}) and turns back into a table with
 * {@link columnsToIPC}.
 */
export interface RowColumns {
  readonly columns: readonly ColumnSpec[];
  readonly rows: number;
  readonly data: readonly DataParts[];
}

/** One Arrow `Data` without its type (the spec gives it back): lengths, buffers, children. */
interface DataParts {
  readonly length: number;
  readonly nullCount: number;
  readonly buffers: readonly (ArrayBufferView | undefined)[];
  readonly children: readonly DataParts[];
}

/** Appends one record's fields to `builders`; returns -1, or the index of the column that refused its value. */
type RowAppender = (builders: readonly ColumnBuilder[], record: Record<string, unknown>) => number;

const rowAppenders = new WeakMap<readonly ColumnSpec[], RowAppender>();

/**
 * The {@link RowAppender} for a list of columns, generated once per list (with `new Function`) and
 * shared by every buffer of a sink. Each column gets its own field read and its own call: the
 * engine then caches, site by site, where the field is in the records' shape and which builder
 * class it calls, where a loop over the columns reads every field at one site and calls every
 * builder through one (about a fifth of the sink's time on the main thread, in the clickstream
 * job). A name every object inherits (`constructor`) is read as an own field only (see
 * schema/fields.ts). Names reach the code as JSON string literals, whatever they hold.
 */
function rowAppenderFor(columns: readonly ColumnSpec[]): RowAppender {
  let appender = rowAppenders.get(columns);
  if (appender === undefined) {
    const lines = columns.map((column, i) => {
      const name = JSON.stringify(column.name);
      const value = inheritedName(column.name) ? `(Object.hasOwn(r, ${name}) ? r[${name}] : undefined)` : `r[${name}]`;
      return `  if (!b[${i}].append(${value})) return ${i};`;
    });
    appender = new Function("b", "r", `${lines.join("\n")}\n  return -1;`) as RowAppender;
    rowAppenders.set(columns, appender);
  }
  return appender;
}

/** Rows held as Arrow column buffers, with the means to take back a row that does not fit. */
export class RowBuffer {
  private readonly builders: ColumnBuilder[];
  readonly #appendRow: RowAppender;
  rows = 0;

  constructor(readonly columns: readonly ColumnSpec[]) {
    this.builders = columns.map(builderFor);
    this.#appendRow = rowAppenderFor(columns);
  }

  /**
   * Appends a record; returns `undefined` on success, or a message naming the first column whose
   * value has the wrong type (the row is then taken back whole).
   */
  append(record: Record<string, unknown>): string | undefined {
    const builders = this.builders;
    const failed = this.#appendRow(builders, record);
    if (failed >= 0) {
      for (let j = 0; j < failed; j++) (builders[j] as ColumnBuilder).truncate(this.rows);
      const builder = builders[failed] as ColumnBuilder;
      return describeMismatch(builder.spec, fieldOf(record, builder.spec.name, builder.inherited));
    }
    this.rows++;
    return undefined;
  }

  /** Bytes held by the buffers. */
  byteSize(): number {
    let bytes = 0;
    for (const builder of this.builders) bytes += builder.byteSize();
    return bytes;
  }

  /** The rows as an Arrow table; the buffer must not be appended to afterwards. */
  toTable(): Table {
    const schema = new Schema(
      this.builders.map((b) => new Field(b.spec.name, b.arrowType(), b.spec.nullable)),
    );
    const data = makeData({
      type: new Struct(schema.fields),
      length: this.rows,
      nullCount: 0,
      children: this.builders.map((b) => b.finish()),
    });
    return new Table([new RecordBatch(schema, data)]);
  }

  /** The rows as an Arrow IPC stream. */
  toIPC(): Uint8Array {
    return tableToIPC(this.toTable(), "stream");
  }

  /**
   * The rows as plain column buffers, the form that crosses to an encoder worker: `transfer`
   * lists the memory behind them, to be moved rather than copied, and `bytes` its size (what the
   * process holds until the worker is done with it). Serialising to IPC on the main thread cost
   * it a copy of every byte (about 7% of its time in the clickstream job); the worker does that
   * now, beside the encode. The buffer must not be used afterwards.
   */
  toColumns(): { columns: RowColumns; transfer: ArrayBuffer[]; bytes: number } {
    const memory = new Set<ArrayBuffer>();
    const partsOf = (data: Data): DataParts => {
      const { valueOffsets, values, nullBitmap, typeIds } = data;
      const buffers = [valueOffsets, values, nullBitmap, typeIds] as (ArrayBufferView | undefined)[];
      // Empty arrays are cloned (they cost nothing and may be Arrow's own); the builders' memory moves.
      for (const b of buffers) if (b && b.byteLength > 0) memory.add(b.buffer as ArrayBuffer);
      return { length: data.length, nullCount: data.nullCount, buffers, children: data.children.map(partsOf) };
    };
    const data = this.builders.map((b) => partsOf(b.finish()));
    let bytes = 0;
    for (const buffer of memory) bytes += buffer.byteLength;
    return { columns: { columns: this.columns, rows: this.rows, data }, transfer: [...memory], bytes };
  }
}

/**
 * Arrow IPC stream bytes of rows sent by {@link RowBuffer.toColumns}, written into a buffer of at
 * least `byteLength` bytes that `memory` gives (an encoder worker takes it from its pool and gives
 * it back once the bytes are encoded).
 */
export function columnsToIPC({ columns, rows, data }: RowColumns, memory: (byteLength: number) => ArrayBuffer = (n) => new ArrayBuffer(n)): Uint8Array {
  const fields = columns.map((spec) => new Field(spec.name, arrowTypeOf(spec), spec.nullable));
  const dataOf = (type: DataType, parts: DataParts): Data =>
    new Data(
      type,
      0,
      parts.length,
      parts.nullCount,
      parts.buffers as never,
      parts.children.map((child, i) => dataOf((type.children[i] as Field).type, child)),
    );
  const schema = new Schema(fields);
  const struct = makeData({
    type: new Struct(fields),
    length: rows,
    nullCount: 0,
    children: fields.map((field, i) => dataOf(field.type, data[i] as DataParts)),
  });
  const writer = RecordBatchStreamWriter.writeAll(new Table([new RecordBatch(schema, struct)]));
  // The stream's pieces (the messages, and the column buffers themselves as views) are copied
  // into one buffer from `memory`. Arrow's own join (`tableToIPC`) copies into a fresh buffer each
  // time, and faulting in that memory cost 35 ms per 40,960-row group of the clickstream job on
  // an encoder worker, against 1 ms for memory the worker takes back from its pool.
  // They are the writer's queue (apache-arrow 21); should that change, its own join is copied.
  const queued = (writer as unknown as { _sink?: { _values?: unknown } })._sink?._values;
  const pieces = Array.isArray(queued) && queued.every((piece) => piece instanceof Uint8Array) ? (queued as Uint8Array[]) : [writer.toUint8Array(true)];
  let byteLength = 0;
  for (const piece of pieces) byteLength += piece.byteLength;
  const out = new Uint8Array(memory(byteLength), 0, byteLength);
  let at = 0;
  for (const piece of pieces) {
    out.set(piece, at);
    at += piece.byteLength;
  }
  return out;
}

const EXPECTED: Record<ColumnSpec["kind"], string> = {
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

function describeMismatch(spec: ColumnSpec, value: unknown): string {
  const inner = innerMismatch(spec, value, spec.name);
  return inner === undefined ? mismatchOf(spec, value) : `${mismatchOf(spec, value)}: ${inner}`;
}

function mismatchOf(spec: ColumnSpec, value: unknown): string {
  if (value === null || value === undefined) {
    return `column "${spec.name}" is required but the value is ${value === null ? "null" : "missing"}`;
  }
  if (spec.kind === "utf8" && typeof value === "string" && !value.isWellFormed()) return notWellFormed(spec.name, value);
  return `column "${spec.name}" expects ${EXPECTED[spec.kind]}${
    spec.kind === "list" || spec.kind === "struct" ? " of the declared types" : ""
  }, got ${previewValue(value)}`;
}

/**
 * The first element or field of a list or struct value that its own column refuses, named by its
 * path (`tags.1`, `box.deep.1.t`) and with the reason, so "expects an array of the declared types"
 * does not leave the reader to find which of a thousand elements holds a lone surrogate. Only a
 * refused record gets here; the schema bounds the depth.
 */
function innerMismatch(spec: ColumnSpec, value: unknown, path: string): string | undefined {
  if (spec.kind === "list" && spec.item !== undefined && Array.isArray(value)) {
    const builder = builderFor(spec.item);
    for (let i = 0; i < value.length; i++) {
      if (builder.append(value[i])) continue;
      const at = `${path}.${i}`;
      return innerMismatch(spec.item, value[i], at) ?? mismatchOf({ ...spec.item, name: at }, value[i]);
    }
  }
  if (spec.kind === "struct" && spec.fields !== undefined && typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof Date)) {
    for (const field of spec.fields) {
      const item = fieldOf(value as Record<string, unknown>, field.name, inheritedName(field.name));
      if (builderFor(field).append(item)) continue;
      const at = `${path}.${field.name}`;
      return innerMismatch(field, item, at) ?? mismatchOf({ ...field, name: at }, item);
    }
  }
  return undefined;
}

