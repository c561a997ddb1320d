/**
 * What a Parquet dataset holds, from its files' footers alone: partitions, files, rows, sizes,
 * row groups, schema, and per-column min / max / null counts. No data page is read, so
 * inspecting a large dataset costs a few kilobytes per file.
 */
import { type DatasetFile, type DatasetListing, displayPath, listDataset } from "../dataset/files.ts";
import { isoDate, isoTime, isoTimestamp, type Unit } from "../schema/instant.ts";
import {
  type ColumnChunk,
  type FileMetaData,
  type LogicalType,
  type PhysicalType,
  readFooter,
  type SchemaElement,
  type Statistics,
  type TimeUnit,
} from "./footer.ts";

/** A statistic as JSON-friendly data: timestamps and dates as ISO text, 64-bit integers beyond 2^53 and decimals as text. */
export type StatValue = string | number | boolean;

/** Statistics of one leaf column, over a file, a partition or the whole dataset. */
export interface ColumnSummary {
  /** Dotted path (`tags.list.item` for the items of a list). */
  readonly name: string;
  readonly path: readonly string[];
  readonly physicalType: PhysicalType;
  /** The type a reader sees (`string`, `int64`, `timestamp(us, UTC)`, `date`, `decimal(10,2)`, …). */
  readonly type: string;
  /** Values stored (for a column inside a list: list items, nulls included). */
  readonly values: number;
  /** Null values, or null when a file did not record them. */
  readonly nullCount: number | null;
  /** Smallest value, or null when no statistics cover every non-null value (or all are null). */
  readonly min: StatValue | null;
  readonly max: StatValue | null;
  /** False when the writer truncated the value (long strings): the true minimum starts with `min`. */
  readonly minExact: boolean;
  /** False when the writer truncated the value: the true maximum is at most `max` (compared as bytes). */
  readonly maxExact: boolean;
  readonly compressedBytes: number;
  readonly uncompressedBytes: number;
}

/** A top-level field of the schema. */
export interface SchemaField {
  readonly name: string;
  /** `string`, `int64`, `list<string>`, `struct<a: int64, b: string>`, … */
  readonly type: string;
  readonly nullable: boolean;
}

/** One file. */
export interface FileSummary {
  /** Relative to the dataset folder (or the path given, for a single file). */
  readonly path: string;
  readonly partition: Readonly<Record<string, string | null>>;
  readonly rows: number;
  /** Size on disk. */
  readonly bytes: number;
  readonly rowGroups: number;
  readonly createdBy: string | null;
  /** The footer's key/value metadata, without the (large, binary) `ARROW:schema` entry. */
  readonly metadata: Readonly<Record<string, string | null>>;
}

/** One partition folder (the dataset root when it has no partitions). */
export interface PartitionSummary {
  /** The folder relative to the dataset (`event_date=2024-03-01`), `""` for the root. */
  readonly path: string;
  readonly values: Readonly<Record<string, string | null>>;
  readonly files: number;
  readonly rows: number;
  readonly bytes: number;
  readonly rowGroups: number;
  readonly columns: readonly ColumnSummary[];
}

/** Everything `inspect` reports about a dataset. */
export interface DatasetSummary {
  readonly path: string;
  readonly isFile: boolean;
  readonly partitionKeys: readonly string[];
  readonly files: number;
  readonly rows: number;
  readonly bytes: number;
  readonly rowGroups: number;
  /** The first file's schema. */
  readonly schema: readonly SchemaField[];
  /** Files whose schema differs from the first file's. */
  readonly schemaDiffers: readonly string[];
  readonly columns: readonly ColumnSummary[];
  readonly partitions: readonly PartitionSummary[];
  readonly fileList: readonly FileSummary[];
}

// ---------------------------------------------------------------------------------------------
// The schema tree.

interface SchemaNode {
  readonly element: SchemaElement;
  readonly children: SchemaNode[];
  readonly path: string[];
}

/** Rebuilds the tree Parquet stores depth-first (each group says how many children follow). */
function schemaTree(elements: readonly SchemaElement[]): { root: SchemaNode; leaves: SchemaNode[] } {
  let next = 0;
  const leaves: SchemaNode[] = [];
  function build(path: string[]): SchemaNode {
    const element = elements[next++];
    if (!element) throw new Error("the footer's schema is shorter than its groups declare");
    const node: SchemaNode = { element, children: [], path };
    const count = element.numChildren ?? 0;
    if (element.type === undefined || count > 0) {
      for (let i = 0; i < count; i++) {
        const child = elements[next];
        node.children.push(build(child ? [...path, child.name] : path));
      }
    }
    if (node.children.length === 0 && element.type !== undefined) leaves.push(node);
    return node;
  }
  const root = build([]);
  return { root, leaves };
}

const UNIT_NAMES: Record<TimeUnit, Unit> = { MILLIS: "ms", MICROS: "us", NANOS: "ns" };

/** The logical meaning of a leaf, from its logical type or (older writers) its converted type. */
function logicalOf(e: SchemaElement): LogicalType | undefined {
  if (e.logicalType) return e.logicalType;
  const c = e.convertedType;
  if (!c) return undefined;
  if (c === "UTF8") return { type: "STRING" };
  if (c === "ENUM" || c === "JSON" || c === "BSON" || c === "DATE" || c === "LIST" || c === "MAP") return { type: c };
  if (c === "DECIMAL") return { type: "DECIMAL", scale: e.scale ?? 0, precision: e.precision ?? 0 };
  if (c.startsWith("TIMESTAMP_")) return { type: "TIMESTAMP", unit: c.endsWith("MILLIS") ? "MILLIS" : "MICROS", isAdjustedToUTC: true };
  if (c.startsWith("TIME_")) return { type: "TIME", unit: c.endsWith("MILLIS") ? "MILLIS" : "MICROS", isAdjustedToUTC: true };
  const int = /^(U?)INT_(\d+)$/.exec(c);
  if (int) return { type: "INTEGER", bitWidth: Number(int[2]), isSigned: int[1] === "" };
  return undefined;
}

function leafType(e: SchemaElement): string {
  const logical = logicalOf(e);
  switch (logical?.type) {
    case "STRING":
      return "string";
    case "ENUM":
      return "enum";
    case "JSON":
      return "json";
    case "BSON":
      return "bson";
    case "UUID":
      return "uuid";
    case "FLOAT16":
      return "float16";
    case "DATE":
      return "date";
    case "DECIMAL":
      return `decimal(${logical.precision},${logical.scale})`;
    case "TIME":
      return `time(${UNIT_NAMES[logical.unit]})`;
    case "TIMESTAMP":
      return `timestamp(${UNIT_NAMES[logical.unit]}${logical.isAdjustedToUTC ? ", UTC" : ""})`;
    case "INTEGER":
      return `${logical.isSigned ? "" : "u"}int${logical.bitWidth}`;
    case "UNKNOWN":
      return "null";
  }
  switch (e.type) {
    case "BOOLEAN":
      return "boolean";
    case "INT32":
      return "int32";
    case "INT64":
      return "int64";
    case "INT96":
      return "int96 timestamp";
    case "FLOAT":
      return "float";
    case "DOUBLE":
      return "double";
    case "BYTE_ARRAY":
      return "binary";
    case "FIXED_LEN_BYTE_ARRAY":
      return `fixed_binary(${e.typeLength ?? "?"})`;
    default:
      return "group";
  }
}

/** The type of a schema node as a reader sees it, nested types spelled out. */
function nodeType(node: SchemaNode): string {
  const e = node.element;
  if (node.children.length === 0) {
    // A repeated leaf outside a LIST annotation is a list in the legacy two-level form.
    return e.repetition === "REPEATED" ? `list<${leafType(e)}>` : leafType(e);
  }
  const logical = logicalOf(e)?.type;
  if (logical === "LIST" && node.children.length === 1) {
    const repeated = node.children[0] as SchemaNode;
    // The standard three-level form is LIST { repeated group list { element } }; older writers
    // used a repeated leaf, or a repeated group that is itself the element (named "array" or "*_tuple").
    if (repeated.children.length === 0) return `list<${leafType(repeated.element)}>`;
    const isElement = repeated.children.length > 1 || repeated.element.name === "array" || repeated.element.name.endsWith("_tuple");
    return `list<${isElement ? structType(repeated) : nodeType(repeated.children[0] as SchemaNode)}>`;
  }
  if ((logical === "MAP" || e.convertedType === "MAP_KEY_VALUE") && node.children.length === 1) {
    const kv = node.children[0] as SchemaNode;
    const [key, value] = kv.children;
    return `map<${key ? nodeType(key) : "?"}, ${value ? nodeType(value) : "?"}>`;
  }
  return e.repetition === "REPEATED" ? `list<${structType(node)}>` : structType(node);
}

function structType(node: SchemaNode): string {
  return `struct<${node.children.map((c) => `${c.element.name}: ${nodeType(c)}`).join(", ")}>`;
}

function schemaFields(root: SchemaNode): SchemaField[] {
  return root.children.map((child) => ({
    name: child.element.name,
    type: nodeType(child),
    nullable: child.element.repetition === "OPTIONAL",
  }));
}

// ---------------------------------------------------------------------------------------------
// Statistics.

/** A decoded statistic: what is shown, and a key that orders it the way Parquet orders the column. */
interface Decoded {
  readonly value: StatValue;
  readonly key: number | bigint | Uint8Array;
}

const utf8 = new TextDecoder();

function hex(bytes: Uint8Array): string {
  return `0x${Buffer.from(bytes).toString("hex")}`;
}

function bigEndianSigned(bytes: Uint8Array): bigint {
  if (bytes.length === 0) return 0n;
  let value = 0n;
  for (const b of bytes) value = (value << 8n) | BigInt(b);
  return BigInt.asIntN(bytes.length * 8, value);
}

function decimalText(unscaled: bigint, scale: number): string {
  if (scale <= 0) return (unscaled * 10n ** BigInt(-scale)).toString();
  const negative = unscaled < 0n;
  const digits = (negative ? -unscaled : unscaled).toString().padStart(scale + 1, "0");
  return `${negative ? "-" : ""}${digits.slice(0, -scale)}.${digits.slice(-scale)}`;
}

function integerValue(value: bigint): StatValue {
  return value <= BigInt(Number.MAX_SAFE_INTEGER) && value >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(value) : value.toString();
}

function floatValue(value: number): StatValue {
  return Number.isFinite(value) ? value : String(value);
}

function float16(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * 2 ** -14 * (fraction / 1024);
  if (exponent === 31) return fraction ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
}

/**
 * Decodes a min or max from its plain encoding, using the column's physical and logical type.
 * Returns undefined for bytes that do not fit the type (a corrupt or foreign statistic).
 */
export function decodeStatistic(bytes: Uint8Array, element: SchemaElement): Decoded | undefined {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const logical = logicalOf(element);
  switch (element.type) {
    case "BOOLEAN":
      if (bytes.length < 1) return undefined;
      return { value: ((bytes[0] as number) & 1) === 1, key: (bytes[0] as number) & 1 };
    case "INT32": {
      if (bytes.length !== 4) return undefined;
      if (logical?.type === "INTEGER" && !logical.isSigned) {
        const v = view.getUint32(0, true);
        return { value: v, key: v };
      }
      const v = view.getInt32(0, true);
      if (logical?.type === "DATE") return { value: isoDate(v), key: v };
      if (logical?.type === "DECIMAL") return { value: decimalText(BigInt(v), logical.scale), key: v };
      if (logical?.type === "TIME") return { value: isoTime(v, UNIT_NAMES[logical.unit]), key: v };
      return { value: v, key: v };
    }
    case "INT64": {
      if (bytes.length !== 8) return undefined;
      if (logical?.type === "INTEGER" && !logical.isSigned) {
        const v = view.getBigUint64(0, true);
        return { value: integerValue(v), key: v };
      }
      const v = view.getBigInt64(0, true);
      if (logical?.type === "TIMESTAMP") return { value: isoTimestamp(v, UNIT_NAMES[logical.unit], logical.isAdjustedToUTC), key: v };
      if (logical?.type === "TIME") return { value: isoTime(v, UNIT_NAMES[logical.unit]), key: v };
      if (logical?.type === "DECIMAL") return { value: decimalText(v, logical.scale), key: v };
      return { value: integerValue(v), key: v };
    }
    case "INT96": {
      if (bytes.length !== 12) return undefined;
      // Legacy Impala/Spark timestamps: nanoseconds of the day, then the Julian day number.
      const nanos = view.getBigInt64(0, true) + (BigInt(view.getInt32(8, true)) - 2_440_588n) * 86_400_000_000_000n;
      return { value: isoTimestamp(nanos, "ns", false), key: nanos };
    }
    case "FLOAT":
      if (bytes.length !== 4) return undefined;
      return { value: floatValue(view.getFloat32(0, true)), key: view.getFloat32(0, true) };
    case "DOUBLE":
      if (bytes.length !== 8) return undefined;
      return { value: floatValue(view.getFloat64(0, true)), key: view.getFloat64(0, true) };
    case "BYTE_ARRAY":
    case "FIXED_LEN_BYTE_ARRAY": {
      switch (logical?.type) {
        case "STRING":
        case "ENUM":
        case "JSON":
          return { value: utf8.decode(bytes), key: bytes };
        case "DECIMAL": {
          const unscaled = bigEndianSigned(bytes);
          return { value: decimalText(unscaled, logical.scale), key: unscaled };
        }
        case "UUID": {
          const h = Buffer.from(bytes).toString("hex");
          return { value: `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`, key: bytes };
        }
        case "FLOAT16":
          if (bytes.length !== 2) return undefined;
          return { value: floatValue(float16(view.getUint16(0, true))), key: float16(view.getUint16(0, true)) };
        default:
          return { value: hex(bytes), key: bytes };
      }
    }
    default:
      return undefined;
  }
}

function compareKeys(a: Decoded["key"], b: Decoded["key"]): number {
  if (a instanceof Uint8Array && b instanceof Uint8Array) {
    // Parquet orders byte arrays as unsigned bytes; JavaScript's string order (UTF-16) differs.
    const n = Math.min(a.length, b.length);
    for (let i = 0; i < n; i++) if (a[i] !== b[i]) return (a[i] as number) - (b[i] as number);
    return a.length - b.length;
  }
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Whether the deprecated `min`/`max` fields (signed order) are meaningful for this column. */
function legacyOrderIsValid(e: SchemaElement): boolean {
  const logical = logicalOf(e);
  if (logical?.type === "INTEGER" && !logical.isSigned) return false;
  return e.type === "BOOLEAN" || e.type === "INT32" || e.type === "INT64" || e.type === "FLOAT" || e.type === "DOUBLE";
}

function chunkMinMax(stats: Statistics | undefined, e: SchemaElement): { min?: Decoded; max?: Decoded; minExact: boolean; maxExact: boolean } {
  if (!stats) return { minExact: false, maxExact: false };
  const legacy = legacyOrderIsValid(e);
  const minBytes = stats.minValue ?? (legacy ? stats.min : undefined);
  const maxBytes = stats.maxValue ?? (legacy ? stats.max : undefined);
  const min = minBytes ? decodeStatistic(minBytes, e) : undefined;
  const max = maxBytes ? decodeStatistic(maxBytes, e) : undefined;
  return {
    ...(min ? { min } : {}),
    ...(max ? { max } : {}),
    minExact: stats.isMinValueExact ?? true,
    maxExact: stats.isMaxValueExact ?? true,
  };
}

/** Running totals of one leaf column over several chunks. */
interface ColumnAccumulator {
  readonly leaf: SchemaNode;
  values: number;
  nullCount: number;
  nullsKnown: boolean;
  min: Decoded | undefined;
  max: Decoded | undefined;
  minExact: boolean;
  maxExact: boolean;
  /** A chunk with non-null values had no usable min/max: the range is unknown. */
  rangeUnknown: boolean;
  compressed: number;
  uncompressed: number;
}

function accumulator(leaf: SchemaNode): ColumnAccumulator {
  return {
    leaf,
    values: 0,
    nullCount: 0,
    nullsKnown: true,
    min: undefined,
    max: undefined,
    minExact: true,
    maxExact: true,
    rangeUnknown: false,
    compressed: 0,
    uncompressed: 0,
  };
}

function addChunk(acc: ColumnAccumulator, chunk: ColumnChunk): void {
  const meta = chunk.metaData;
  if (!meta) {
    acc.nullsKnown = false;
    acc.rangeUnknown = true;
    return;
  }
  acc.values += meta.numValues;
  acc.compressed += meta.totalCompressedSize;
  acc.uncompressed += meta.totalUncompressedSize;
  const nulls = meta.statistics?.nullCount;
  if (nulls === undefined) acc.nullsKnown = false;
  else acc.nullCount += nulls;
  const allNull = nulls !== undefined && nulls >= meta.numValues;
  if (allNull) return;
  const { min, max, minExact, maxExact } = chunkMinMax(meta.statistics, acc.leaf.element);
  if (!min || !max) {
    acc.rangeUnknown = true;
    return;
  }
  if (!acc.min || compareKeys(min.key, acc.min.key) < 0) {
    acc.min = min;
    acc.minExact = minExact;
  } else if (compareKeys(min.key, acc.min.key) === 0) acc.minExact &&= minExact;
  if (!acc.max || compareKeys(max.key, acc.max.key) > 0) {
    acc.max = max;
    acc.maxExact = maxExact;
  } else if (compareKeys(max.key, acc.max.key) === 0) acc.maxExact &&= maxExact;
}

function mergeAccumulator(into: ColumnAccumulator, from: ColumnAccumulator): void {
  into.values += from.values;
  into.compressed += from.compressed;
  into.uncompressed += from.uncompressed;
  into.nullCount += from.nullCount;
  into.nullsKnown &&= from.nullsKnown;
  into.rangeUnknown ||= from.rangeUnknown;
  if (from.min) {
    const order = into.min ? compareKeys(from.min.key, into.min.key) : -1;
    if (order < 0) {
      into.min = from.min;
      into.minExact = from.minExact;
    } else if (order === 0) into.minExact &&= from.minExact;
  }
  if (from.max) {
    const order = into.max ? compareKeys(from.max.key, into.max.key) : 1;
    if (order > 0) {
      into.max = from.max;
      into.maxExact = from.maxExact;
    } else if (order === 0) into.maxExact &&= from.maxExact;
  }
}

function summarize(acc: ColumnAccumulator): ColumnSummary {
  const known = !acc.rangeUnknown;
  return {
    name: acc.leaf.path.join("."),
    path: acc.leaf.path,
    physicalType: acc.leaf.element.type ?? "BYTE_ARRAY",
    type: leafType(acc.leaf.element),
    values: acc.values,
    nullCount: acc.nullsKnown ? acc.nullCount : null,
    min: known && acc.min ? acc.min.value : null,
    max: known && acc.max ? acc.max.value : null,
    minExact: known && acc.min !== undefined && acc.minExact,
    maxExact: known && acc.max !== undefined && acc.maxExact,
    compressedBytes: acc.compressed,
    uncompressedBytes: acc.uncompressed,
  };
}

/** What one row group's statistics say about one top-level column, for skipping row groups. */
export interface ChunkBounds {
  /** Values in the chunk, nulls included. */
  readonly values: number;
  /** Null values, or undefined when the writer did not record them. */
  readonly nullCount: number | undefined;
  /**
   * Lower and upper bounds of the non-null values, in the order readers compare them: numbers and
   * bigints for integers, floats and dates (days), bigint nanoseconds for timestamps, 0/1 for
   * booleans, UTF-8 bytes for strings. Undefined when not recorded, or for a type not listed.
   * Truncated string statistics stay bounds (Parquet rounds a truncated max up).
   */
  readonly min: number | bigint | Uint8Array | undefined;
  readonly max: number | bigint | Uint8Array | undefined;
  /** Both bounds are exact values (not truncated). */
  readonly exact: boolean;
}

const NANOS_PER: Record<TimeUnit, bigint> = { MILLIS: 1_000_000n, MICROS: 1_000n, NANOS: 1n };

/** A statistic's key in the order {@link ChunkBounds} documents, or undefined for other types. */
function boundKey(decoded: Decoded | undefined, e: SchemaElement): ChunkBounds["min"] {
  if (!decoded) return undefined;
  const logical = logicalOf(e);
  if (logical?.type === "DECIMAL" || logical?.type === "TIME" || logical?.type === "FLOAT16" || e.type === "INT96") return undefined;
  if (logical?.type === "TIMESTAMP") return (decoded.key as bigint) * NANOS_PER[logical.unit];
  if (e.type === "BYTE_ARRAY" && logical?.type !== "STRING" && logical?.type !== "ENUM" && logical?.type !== "JSON") return undefined;
  if (e.type === "FIXED_LEN_BYTE_ARRAY") return undefined;
  return decoded.key;
}

/**
 * Per row group, the bounds and null counts of each top-level column of simple type (not inside a
 * list or struct), keyed by column name: what a row filter needs to skip row groups unread.
 *
 * @example
 * const bounds = rowGroupBounds(await readFooter(path)).get("price")?.[0]; // row group 0
 */
export function rowGroupBounds(meta: FileMetaData): Map<string, ChunkBounds[]> {
  const { leaves } = schemaTree(meta.schema);
  const out = new Map<string, ChunkBounds[]>();
  leaves.forEach((leaf, index) => {
    if (leaf.path.length !== 1 || leaf.element.repetition === "REPEATED") return;
    out.set(
      leaf.path[0] as string,
      meta.rowGroups.map((group) => {
        const chunk = group.columns[index]?.metaData;
        if (!chunk) return { values: group.numRows, nullCount: undefined, min: undefined, max: undefined, exact: false };
        const { min, max, minExact, maxExact } = chunkMinMax(chunk.statistics, leaf.element);
        return {
          values: chunk.numValues,
          nullCount: chunk.statistics?.nullCount,
          min: boundKey(min, leaf.element),
          max: boundKey(max, leaf.element),
          exact: minExact && maxExact,
        };
      }),
    );
  });
  return out;
}

// ---------------------------------------------------------------------------------------------
// Files and datasets.

/** One file's footer, summarised. */
interface FileFacts {
  readonly file: DatasetFile;
  readonly summary: FileSummary;
  readonly schema: SchemaField[];
  readonly schemaKey: string;
  readonly columns: Map<string, ColumnAccumulator>;
}

async function fileFacts(listing: DatasetListing, file: DatasetFile): Promise<FileFacts> {
  const meta: FileMetaData & { fileBytes: number } = await readFooter(file.path);
  const { root, leaves } = schemaTree(meta.schema);
  const columns = new Map<string, ColumnAccumulator>();
  const accs = leaves.map((leaf) => {
    const acc = accumulator(leaf);
    columns.set(leaf.path.join("\u0000"), acc);
    return acc;
  });
  for (const group of meta.rowGroups) {
    group.columns.forEach((chunk, i) => {
      const acc = accs[i];
      if (acc) addChunk(acc, chunk);
    });
  }
  const schema = schemaFields(root);
  const metadata: Record<string, string | null> = {};
  for (const { key, value } of meta.keyValueMetadata) if (key !== "ARROW:schema") metadata[key] = value ?? null;
  return {
    file,
    schema,
    schemaKey: JSON.stringify(schema),
    columns,
    summary: {
      path: displayPath(listing, file),
      partition: file.partition,
      rows: meta.numRows,
      bytes: meta.fileBytes,
      rowGroups: meta.rowGroups.length,
      createdBy: meta.createdBy ?? null,
      metadata,
    },
  };
}

/** Runs `fn` over `items` with at most `limit` at a time, keeping the order of results. */
async function mapLimited<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  async function worker() {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i] as T);
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

function mergeColumns(target: Map<string, ColumnAccumulator>, source: Map<string, ColumnAccumulator>): void {
  for (const [key, acc] of source) {
    const existing = target.get(key);
    if (existing) mergeAccumulator(existing, acc);
    else {
      const copy = accumulator(acc.leaf);
      mergeAccumulator(copy, acc);
      target.set(key, copy);
    }
  }
}

/**
 * Describes a Parquet dataset folder (hive-partitioned or not) or a single Parquet file from the
 * files' footers: partitions, files, rows, sizes, row groups, schema, and per-column min, max and
 * null counts for the dataset and for each partition. Data pages are never read.
 *
 * Statistics are what the writer recorded: a column whose files lack min/max reports `null`, and
 * long strings may be truncated by the writer (`minExact`/`maxExact` false). Rejects with a
 * message naming the path when it does not exist, holds no Parquet files, or a file is not
 * readable Parquet.
 *
 * @example
 * const info = await inspectDataset("out/events");
 * console.log(info.rows, info.partitions.length, info.columns.find((c) => c.name === "price"));
 */
export async function inspectDataset(path: string): Promise<DatasetSummary> {
  const listing = await listDataset(path);
  if (listing.files.length === 0) throw new Error(`${path} holds no Parquet files`);
  const facts = await mapLimited(listing.files, 16, (file) => fileFacts(listing, file));
  const first = facts[0] as FileFacts;
  const datasetColumns = new Map<string, ColumnAccumulator>();
  const partitions = new Map<string, { values: Readonly<Record<string, string | null>>; files: FileFacts[]; columns: Map<string, ColumnAccumulator> }>();
  for (const f of facts) {
    mergeColumns(datasetColumns, f.columns);
    let partition = partitions.get(f.file.partitionPath);
    if (!partition) {
      partition = { values: f.file.partition, files: [], columns: new Map() };
      partitions.set(f.file.partitionPath, partition);
    }
    partition.files.push(f);
    mergeColumns(partition.columns, f.columns);
  }
  const sum = (list: readonly FileFacts[], pick: (s: FileSummary) => number) => list.reduce((total, f) => total + pick(f.summary), 0);
  return {
    path,
    isFile: listing.isFile,
    partitionKeys: listing.partitionKeys,
    files: facts.length,
    rows: sum(facts, (s) => s.rows),
    bytes: sum(facts, (s) => s.bytes),
    rowGroups: sum(facts, (s) => s.rowGroups),
    schema: first.schema,
    schemaDiffers: facts.filter((f) => f.schemaKey !== first.schemaKey).map((f) => f.summary.path),
    columns: [...datasetColumns.values()].map(summarize),
    partitions: [...partitions.entries()].map(([partitionPath, p]) => ({
      path: partitionPath,
      values: p.values,
      files: p.files.length,
      rows: sum(p.files, (s) => s.rows),
      bytes: sum(p.files, (s) => s.bytes),
      rowGroups: sum(p.files, (s) => s.rowGroups),
      columns: [...p.columns.values()].map(summarize),
    })),
    fileList: facts.map((f) => f.summary),
  };
}
