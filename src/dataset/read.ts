/**
 * Reading a written dataset back as Arrow: a partition filter decides which files are opened,
 * a column list decides which column chunks are read, and batches stream one at a time.
 */
import {
  type Data,
  Field,
  makeData,
  RecordBatch,
  Schema,
  Struct,
  Table,
  tableFromIPC,
  Utf8,
} from "apache-arrow";
import type * as pq from "parquet-wasm";
import { parquetWasm } from "../parquet/wasm.ts";
import { type DatasetFile, listDataset } from "./files.ts";
import { asRemote, isS3Url, localDataset } from "../io/s3.ts";
import { type BoundCondition, bindCondition, folderKey, matchesValue, matchingRows, mayMatch, type RowCondition } from "./filter.ts";
import { takeRows } from "./take.ts";
import { withPreview } from "../notebook/view.ts";
import { readFooter } from "../parquet/footer.ts";
import { rowGroupBounds } from "../parquet/metadata.ts";

export type { FilterValue, RowCondition } from "./filter.ts";

/** A partition value to match: folder values are text, so numbers and booleans match their text. */
export type PartitionValue = string | number | bigint | boolean | null;

/** A value, a list of values (any of them), or a predicate over the folder's value (null for a null partition). */
export type PartitionMatch = PartitionValue | readonly PartitionValue[] | ((value: string | null) => boolean);

/** Options of {@link readDataset} and {@link readDatasetBatches}. */
export interface ReadDatasetOptions {
  /**
   * Columns to read, in the order wanted (default: all, in the first file's order, then partition
   * columns the files do not hold). Only these columns' chunks are read from the files.
   */
  readonly columns?: readonly string[] | undefined;
  /**
   * Which rows to read. An object filters partition folders only (`{ event_date: "2024-03-01" }`):
   * only files under matching `key=value` folders are opened; keys must be partition keys.
   * A list of conditions filters rows on any column (`[["amount", ">", 100], ["event_type", "in",
   * ["click", "view"]]]`, all must hold): row groups whose statistics rule every row out are not
   * read, files whose partition folder rules them out are not opened, and the rows read are
   * filtered exactly (see `RowCondition` for the comparison rules).
   */
  readonly where?: Readonly<Record<string, PartitionMatch>> | readonly RowCondition[];
  /** Called once when reading ends (or stops early) with what a row filter skipped. */
  readonly onScan?: (report: ScanReport) => void;
  /** Rows per batch (default 65,536). */
  readonly batchSize?: number;
  /** Stop after this many rows (default: all). */
  readonly limit?: number;
}

/** What a read opened and skipped: how well a row filter used the statistics. */
export interface ScanReport {
  /** Files of the dataset after the partition filter. */
  readonly files: number;
  /** Files not read: their folder or every row group's statistics ruled them out. */
  readonly filesSkipped: number;
  /** Row groups in those files. */
  readonly rowGroups: number;
  /** Row groups not read because their statistics (or folder) ruled every row out. */
  readonly rowGroupsSkipped: number;
  /** Rows decoded from the row groups read. */
  readonly rowsRead: number;
  /** Rows that matched the conditions (before `limit`). */
  readonly rowsMatched: number;
}

const DEFAULT_BATCH_SIZE = 65_536;

interface Plan {
  readonly files: readonly DatasetFile[];
  readonly partitionKeys: readonly string[];
  /** The first file of the whole dataset (even when filtered out): it gives an empty result its schema. */
  readonly first: DatasetFile;
}

function matches(value: string | null, match: PartitionMatch): boolean {
  if (typeof match === "function") return match(value);
  const list: readonly PartitionValue[] = Array.isArray(match) ? match : [match as PartitionValue];
  return list.some((m) => (m === null ? value === null : value !== null && value === String(m)));
}

async function plan(path: string, options: ReadDatasetOptions): Promise<Plan> {
  const listing = await listDataset(path);
  if (listing.files.length === 0) throw new Error(`readDataset: ${path} holds no Parquet files`);
  const where = options.where === undefined || Array.isArray(options.where) ? {} : (options.where as Readonly<Record<string, PartitionMatch>>);
  for (const key of Object.keys(where)) {
    if (!listing.partitionKeys.includes(key)) {
      throw new Error(
        `readDataset: "${key}" is not a partition key of ${path} (${listing.partitionKeys.length > 0 ? `partition keys: ${listing.partitionKeys.join(", ")}` : "it has no partition folders"}); where filters partition folders only`,
      );
    }
  }
  const files = listing.files.filter((file) =>
    Object.entries(where).every(([key, match]) => matches(key in file.partition ? (file.partition[key] ?? null) : null, match)),
  );
  return { files, partitionKeys: listing.partitionKeys, first: listing.files[0] as DatasetFile };
}

const encoder = new TextEncoder();

/** A utf8 column repeating one value (or null), built directly as Arrow buffers. */
function constantUtf8(value: string | null, length: number): Data<Utf8> {
  if (value === null) {
    return makeData({
      type: new Utf8(),
      length,
      nullCount: length,
      nullBitmap: new Uint8Array((length + 7) >> 3),
      valueOffsets: new Int32Array(length + 1),
      data: new Uint8Array(0),
    });
  }
  const bytes = encoder.encode(value);
  const data = new Uint8Array(bytes.length * length);
  const offsets = new Int32Array(length + 1);
  for (let i = 0; i < length; i++) {
    data.set(bytes, i * bytes.length);
    offsets[i + 1] = (i + 1) * bytes.length;
  }
  return makeData({ type: new Utf8(), length, nullCount: 0, valueOffsets: offsets, data });
}

/** Which columns come from the file and which from the folder names, in output order. */
interface Projection {
  /** Column names read from the file (undefined: all of them). */
  readonly fromFile: readonly string[] | undefined;
  /** Output columns in order: a file column, or a partition value added from the folder. */
  readonly output: readonly ({ readonly kind: "file"; readonly name: string } | { readonly kind: "partition"; readonly name: string })[];
  readonly fileSchema: Schema;
}

function project(file: DatasetFile, fileSchema: Schema, partitionKeys: readonly string[], columns: readonly string[] | undefined): Projection {
  const inFile = new Set(fileSchema.fields.map((f) => f.name));
  if (columns) {
    for (const name of columns) {
      if (!inFile.has(name) && !partitionKeys.includes(name)) {
        throw new Error(
          `readDataset: column "${name}" is not in ${file.path} (columns: ${[...inFile, ...partitionKeys.filter((k) => !inFile.has(k))].join(", ")})`,
        );
      }
    }
    return {
      fromFile: columns.filter((name) => inFile.has(name)),
      output: columns.map((name) => ({ kind: inFile.has(name) ? "file" : "partition", name }) as const),
      fileSchema,
    };
  }
  return {
    fromFile: undefined,
    output: [
      ...fileSchema.fields.map((f) => ({ kind: "file", name: f.name }) as const),
      ...partitionKeys.filter((k) => !inFile.has(k)).map((name) => ({ kind: "partition", name }) as const),
    ],
    fileSchema,
  };
}

/** The output schema of a projection (partition columns added from folders are nullable utf8). */
function outputSchema(projection: Projection): Schema {
  const fields = projection.output.map((column) =>
    column.kind === "file" ? (projection.fileSchema.fields.find((f) => f.name === column.name) as Field) : new Field(column.name, new Utf8(), true),
  );
  return new Schema(fields);
}

/** Rearranges a batch read from a file into the output columns, adding partition values. */
function shape(batch: RecordBatch, projection: Projection, file: DatasetFile, schema: Schema): RecordBatch {
  const children = projection.output.map((column) => {
    if (column.kind === "partition") return constantUtf8(file.partition[column.name] ?? null, batch.numRows);
    const child = batch.getChild(column.name);
    if (!child) throw new Error(`readDataset: ${file.path} returned no column "${column.name}"`);
    // A record batch holds each column as exactly one Data.
    return child.data[0] as Data;
  });
  const data = makeData({ type: new Struct(schema.fields), length: batch.numRows, nullCount: 0, children });
  return new RecordBatch(schema, data);
}

function sameColumns(a: Schema, b: Schema): boolean {
  return a.fields.length === b.fields.length && a.fields.every((f, i) => f.name === (b.fields[i] as Field).name && String(f.type) === String((b.fields[i] as Field).type));
}

function describeColumns(schema: Schema): string {
  return schema.fields.map((f) => `${f.name}: ${f.type}`).join(", ");
}

async function openFile(file: DatasetFile): Promise<{ parquet: pq.ParquetFile; schema: Schema }> {
  let parquet: pq.ParquetFile;
  try {
    parquet = await (await parquetWasm()).ParquetFile.fromFile(Bun.file(file.path));
  } catch (error) {
    throw new Error(`readDataset: ${file.path} is not a readable Parquet file (${String(error)})`);
  }
  const schema = tableFromIPC(parquet.schema().intoIPCStream()).schema;
  return { parquet, schema };
}

/** Batches of only partition columns, for a read that asks for no column inside the files. */
function* partitionOnlyBatches(rows: number, batchSize: number, projection: Projection, file: DatasetFile, schema: Schema): Generator<RecordBatch> {
  for (let start = 0; start < rows; start += batchSize) {
    const length = Math.min(batchSize, rows - start);
    const empty = new RecordBatch(new Schema([]), makeData({ type: new Struct([]), length, nullCount: 0, children: [] }));
    yield shape(empty, projection, file, schema);
  }
}

/**
 * Reads a dataset folder written by sluice (or any hive-partitioned Parquet dataset, or a single
 * Parquet file) as a stream of Arrow record batches, one batch in memory at a time.
 *
 * Files are read in path order. `where` is applied to the `key=value` folder names before any
 * file is opened; `columns` limits the column chunks read. Partition columns the files do not
 * hold (other writers leave them out) are added from the folder names as nullable utf8 columns.
 *
 * With `where` as a list of conditions, each file's footer is read first: row groups whose
 * statistics rule out every row are not read, and the rows read are filtered exactly (batches
 * then hold only matching rows, so they may be smaller than `batchSize`). `onScan` reports what
 * was skipped when reading ends.
 *
 * An async iterable rather than an Observable: the reader pulls each batch, so nothing is read
 * ahead of the consumer. Breaking out of a `for await` loop (or calling `return()`) closes the
 * open file. Throws, naming the path, the column or the key, when the path is missing, holds no
 * Parquet, a column or partition key does not exist, a condition is malformed or does not fit its
 * column's type (naming it and its index), or a file's columns differ from the first file read.
 *
 * @example
 * for await (const batch of readDatasetBatches("out/events", { where: { event_date: "2024-03-01" }, columns: ["event_id", "price"] })) {
 *   console.log(batch.numRows);
 * }
 * const pricey = readDatasetBatches("out/events", { where: [["price", ">", 400], ["event_type", "in", ["purchase", "checkout"]]], onScan: console.log });
 */
export async function* readDatasetBatches(path: string, options: ReadDatasetOptions = {}): AsyncGenerator<RecordBatch, void, undefined> {
  if (isS3Url(path)) {
    // A dataset in a bucket is read from a local copy: the files a `limit` needs, or all of them.
    const copy = await localDataset(path, options.limit !== undefined && options.where === undefined ? { rows: options.limit } : {});
    try {
      yield* readDatasetBatches(copy.path, options);
    } catch (error) {
      throw new Error(asRemote((error as Error).message, copy, path));
    } finally {
      copy.dispose();
    }
    return;
  }
  const { files, partitionKeys } = await plan(path, options);
  const conditions = Array.isArray(options.where) && options.where.length > 0 ? (options.where as readonly RowCondition[]) : undefined;
  if (options.where !== undefined && !Array.isArray(options.where) && (typeof options.where !== "object" || options.where === null)) {
    throw new Error(`readDataset: where must be an object of partition values or a list of conditions (got ${typeof options.where})`);
  }
  const batchSize = Math.max(1, options.batchSize ?? DEFAULT_BATCH_SIZE);
  let remaining = options.limit ?? Number.POSITIVE_INFINITY;
  let expected: { schema: Schema; file: string } | undefined;
  const report = { files: files.length, filesSkipped: 0, rowGroups: 0, rowGroupsSkipped: 0, rowsRead: 0, rowsMatched: 0 };
  try {
    for (const file of files) {
      if (remaining <= 0) return;
      const { parquet, schema: fileSchema } = await openFile(file);
      let reader: ReadableStreamDefaultReader<pq.RecordBatch> | undefined;
      try {
        const projection = project(file, fileSchema, partitionKeys, options.columns);
        const schema = outputSchema(projection);
        if (!expected) expected = { schema, file: file.path };
        else if (!sameColumns(expected.schema, schema)) {
          throw new Error(
            `readDataset: ${file.path} has columns (${describeColumns(schema)}) that differ from ${expected.file} (${describeColumns(expected.schema)}); read them separately or choose common columns`,
          );
        }
        const groupCount = parquet.metadata().numRowGroups();
        report.rowGroups += groupCount;
        const filter = conditions ? await planFilter(conditions, file, fileSchema, partitionKeys) : undefined;
        if (filter && filter.rowGroups.length < groupCount) {
          report.rowGroupsSkipped += groupCount - filter.rowGroups.length;
          if (filter.rowGroups.length === 0) {
            report.filesSkipped++;
            continue;
          }
        }
        const rowFilter = filter && filter.onRows.length > 0 ? filter : undefined;
        const groups = filter && filter.rowGroups.length < groupCount ? filter.rowGroups : undefined;
        // A filter needs its columns read even when they are not returned.
        const read = projection.fromFile && rowFilter ? [...new Set([...projection.fromFile, ...rowFilter.fileColumns])] : projection.fromFile;
        if (read?.length === 0) {
          // Only partition columns asked for, and the folder decided: count the rows of the file, or of the row groups kept.
          const meta = parquet.metadata();
          const kept = groups ? groups.reduce((sum, g) => sum + meta.rowGroup(g).numRows(), 0) : meta.fileMetadata().numRows();
          const rows = Math.min(kept, remaining);
          report.rowsRead += rows;
          report.rowsMatched += rows;
          for (const batch of partitionOnlyBatches(rows, batchSize, projection, file, schema)) {
            remaining -= batch.numRows;
            yield batch;
          }
          continue;
        }
        const stream = await parquet.stream({
          batchSize: rowFilter ? batchSize : Math.min(batchSize, remaining),
          ...(read ? { columns: [...read] } : {}),
          ...(groups ? { rowGroups: groups } : {}),
          ...(Number.isFinite(remaining) && !rowFilter ? { limit: remaining } : {}),
        });
        reader = stream.getReader() as ReadableStreamDefaultReader<pq.RecordBatch>;
        for (;;) {
          const { done, value } = await reader.read();
          if (done) {
            reader = undefined;
            break;
          }
          const table = tableFromIPC(value.intoIPCStream());
          for (let batch of table.batches) {
            report.rowsRead += batch.numRows;
            if (rowFilter) batch = takeRows(batch, filteredRows(batch, rowFilter.onRows));
            report.rowsMatched += batch.numRows;
            if (batch.numRows === 0) continue;
            const shaped = shape(batch.numRows > remaining ? batch.slice(0, remaining) : batch, projection, file, schema);
            remaining -= shaped.numRows;
            yield shaped;
            if (remaining <= 0) return;
          }
        }
      } finally {
        await reader?.cancel().catch(() => {});
        parquet.free();
      }
    }
  } finally {
    options.onScan?.({ ...report });
  }
}

/** What a row filter decided for one file before reading it. */
interface FilePlan {
  /** Row groups that may hold a matching row (all when the statistics cannot tell). */
  readonly rowGroups: number[];
  /** Conditions to check on each row read, on columns inside the file. */
  readonly onRows: readonly BoundCondition[];
  readonly fileColumns: readonly string[];
}

async function planFilter(conditions: readonly RowCondition[], file: DatasetFile, fileSchema: Schema, partitionKeys: readonly string[]): Promise<FilePlan> {
  const inFile = new Map(fileSchema.fields.map((f) => [f.name, f]));
  const all = [...inFile.keys(), ...partitionKeys.filter((k) => !inFile.has(k))];
  const onRows: BoundCondition[] = [];
  let folderRulesOut = false;
  conditions.forEach((condition, index) => {
    const name = Array.isArray(condition) ? condition[0] : undefined;
    const field = typeof name === "string" ? (inFile.get(name) ?? (partitionKeys.includes(name) ? new Field(name, new Utf8(), true) : undefined)) : undefined;
    const bound = bindCondition(condition, index, field, all, file.path);
    if (inFile.has(bound.column)) onRows.push(bound);
    // A partition column only in the folder names: the folder decides for the whole file.
    else if (!matchesValue(bound, folderKey(file.partition[bound.column] ?? null))) folderRulesOut = true;
  });
  const footer = await readFooter(file.path);
  if (folderRulesOut) return { rowGroups: [], onRows, fileColumns: [] };
  const bounds = rowGroupBounds(footer);
  const rowGroups = footer.rowGroups.map((_, g) => g).filter((g) => onRows.every((c) => mayMatch(c, bounds.get(c.column)?.[g], footer.rowGroups[g]?.numRows ?? 0)));
  return { rowGroups, onRows, fileColumns: [...new Set(onRows.map((c) => c.column))] };
}

function filteredRows(batch: RecordBatch, conditions: readonly BoundCondition[]): Int32Array {
  const columns = conditions.map((c) => {
    const child = batch.getChild(c.column);
    if (!child) throw new Error(`readDataset: the file returned no column "${c.column}" to filter on`);
    return child.data[0] as Data;
  });
  return matchingRows(conditions, columns, batch.numRows);
}

/**
 * Reads a dataset (or a single Parquet file) into one Arrow table. The same options as
 * {@link readDatasetBatches}: a partition filter, a column choice, a row limit. The table holds
 * every row read: filter partitions and choose columns for large datasets, or iterate batches.
 *
 * An empty result (a filter that matches no partition) is an empty table with the dataset's columns.
 * Printed (`console.log`, a REPL), the table shows its first 10 rows and its size, not Arrow's
 * internals (see `withPreview`).
 * Rejects with the same messages as {@link readDatasetBatches}.
 *
 * @example
 * const table = await readDataset("out/events", { where: { event_date: ["2024-03-01", "2024-03-02"] }, columns: ["event_id", "price"] });
 * console.log(table.numRows, table.getChild("price")?.toArray());
 */
export async function readDataset(path: string, options: ReadDatasetOptions = {}): Promise<Table> {
  if (isS3Url(path)) {
    const copy = await localDataset(path);
    try {
      return await readDataset(copy.path, options);
    } catch (error) {
      throw new Error(asRemote((error as Error).message, copy, path));
    } finally {
      copy.dispose();
    }
  }
  const batches: RecordBatch[] = [];
  for await (const batch of readDatasetBatches(path, options)) batches.push(batch);
  if (batches.length > 0) return withPreview(new Table((batches[0] as RecordBatch).schema, batches));
  const { first, partitionKeys } = await plan(path, { ...options, where: {} });
  const { parquet, schema } = await openFile(first);
  parquet.free();
  return withPreview(new Table(outputSchema(project(first, schema, partitionKeys, options.columns))));
}
