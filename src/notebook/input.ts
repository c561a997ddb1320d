/**
 * What the notebook helpers (`describe`, `valueCounts`, `groupBy`, `histogram`) read: an Arrow
 * table or batch in memory, or a dataset on disk read one record batch at a time, so a dataset
 * larger than memory can be summarised.
 */
import { type Data, type Field, makeData, RecordBatch, Schema, Struct, type Table } from "apache-arrow";
import { type ReadDatasetOptions, readDatasetBatches } from "../dataset/read.ts";
import { columnNames, isArrowTabular } from "./values.ts";

/** A table or batch in memory, or the path of a dataset folder or Parquet file. */
export type Tabular = Table | RecordBatch | string;

/** How a dataset path is read: a row or partition filter, the batch size, a row limit, a scan report. */
export type ReadOptions = Pick<ReadDatasetOptions, "where" | "batchSize" | "limit" | "onScan">;

/**
 * The record batches of `input`, with only `columns` when given (a dataset reads only those
 * column chunks). Throws naming the function and the columns available when one is missing.
 */
export async function* batchesOf(who: string, input: Tabular, columns: readonly string[] | undefined, read: ReadOptions = {}): AsyncGenerator<RecordBatch> {
  if (typeof input === "string") {
    yield* readDatasetBatches(input, { ...read, ...(columns ? { columns } : {}) });
    return;
  }
  if (!isArrowTabular(input)) throw new Error(`${who}: expected an Arrow table, a record batch or a dataset path (got ${typeof input})`);
  const names = columnNames(input);
  for (const name of columns ?? []) {
    if (!names.includes(name)) throw new Error(`${who}: no column "${name}"; the table has ${names.join(", ")}`);
  }
  const batches = "batches" in input ? input.batches : [input];
  for (const batch of batches) yield columns ? selectColumns(batch, columns) : batch;
}

/** The batch with only `columns`, in that order (Arrow JS's own `select` loses values here). */
export function selectColumns(batch: RecordBatch, columns: readonly string[]): RecordBatch {
  const indices = columns.map((name) => batch.schema.fields.findIndex((f) => f.name === name));
  const fields = indices.map((i) => batch.schema.fields[i] as Field);
  const children = indices.map((i) => batch.data.children[i] as Data);
  return new RecordBatch(new Schema(fields), makeData({ type: new Struct(fields), length: batch.numRows, nullCount: 0, children }));
}
