/**
 * A buffer of rows for one output file: records go in one at a time, an Arrow table comes out.
 */
import { Field, makeData, RecordBatch, Schema, Struct, Table, tableToIPC } from "apache-arrow";
import type { ColumnSpec } from "../schema/columns.ts";
import { previewValue } from "../schema/preview.ts";
import { builderFor, type ColumnBuilder } from "./columns.ts";

/** Rows held as Arrow column buffers, with the means to take back a row that does not fit. */
export class RowBuffer {
  private readonly builders: ColumnBuilder[];
  rows = 0;

  constructor(readonly columns: readonly ColumnSpec[]) {
    this.builders = columns.map(builderFor);
  }

  /**
   * Appends a record; returns `undefined` on success, or a message naming the first column whose
   * value has the wrong type (the row is then taken back whole).
   */
  append(record: Record<string, unknown>): string | undefined {
    const builders = this.builders;
    for (let i = 0; i < builders.length; i++) {
      const builder = builders[i] as ColumnBuilder;
      const value = record[builder.spec.name];
      if (!builder.append(value)) {
        for (let j = 0; j < i; j++) (builders[j] as ColumnBuilder).truncate(this.rows);
        return describeMismatch(builder.spec, value);
      }
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

  /** The rows as an Arrow IPC stream, the form that crosses to an encoder worker. */
  toIPC(): Uint8Array {
    return tableToIPC(this.toTable(), "stream");
  }
}

const EXPECTED: Record<ColumnSpec["kind"], string> = {
  utf8: "a string",
  json: "a JSON value",
  float64: "a number",
  int64: "a safe integer",
  bool: "a boolean",
  timestamp: "an ISO-8601 instant or a Date (microsecond precision at most)",
  date: "an ISO-8601 date (YYYY-MM-DD)",
  list: "an array",
  struct: "an object",
};

function describeMismatch(spec: ColumnSpec, value: unknown): string {
  if (value === null || value === undefined) {
    return `column "${spec.name}" is required but the value is ${value === null ? "null" : "missing"}`;
  }
  return `column "${spec.name}" expects ${EXPECTED[spec.kind]}${
    spec.kind === "list" || spec.kind === "struct" ? " of the declared types" : ""
  }, got ${previewValue(value)}`;
}

