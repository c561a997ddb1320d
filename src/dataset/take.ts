/**
 * Picking rows out of Arrow record batches by index: what an exact row filter needs after it has
 * decided which rows match. Arrow JS 21 has no `take`/`filter` kernel, and slicing each run of
 * matching rows would turn one batch into thousands of tiny ones, so the buffers are gathered
 * here, for every type a Parquet file can hold (fixed-width values, booleans, strings and binary,
 * lists, maps, structs, dictionaries).
 *
 * Arrow JS slices fixed-width values and offsets with their Data (index `i` is `values[i]`), but
 * not validity or boolean bitmaps (bit `offset + i`), and list or string offsets keep pointing
 * into the unsliced child or bytes: the functions below follow those rules.
 */
import { type Data, type DataType, makeData, RecordBatch, Struct, Type, vectorFromArray } from "apache-arrow";

/**
 * The values of a dictionary column as one Data. Arrow JS builders grow a dictionary in several
 * chunks (keys index across all of them); Parquet read back has one.
 */
export function dictionaryValues(data: Data): Data | undefined {
  const dictionary = data.dictionary;
  if (!dictionary || dictionary.data.length === 0) return undefined;
  if (dictionary.data.length === 1) return dictionary.data[0] as Data;
  return vectorFromArray([...dictionary], dictionary.type).data[0] as Data;
}

function gatherValidity(data: Data, indices: Int32Array): { nullBitmap?: Uint8Array; nullCount: number } {
  if (data.nullCount === 0) return { nullCount: 0 };
  const bitmap = new Uint8Array((indices.length + 7) >> 3);
  let nulls = 0;
  for (let j = 0; j < indices.length; j++) {
    if (data.getValid(indices[j] as number)) bitmap[j >> 3] = (bitmap[j >> 3] as number) | (1 << (j & 7));
    else nulls++;
  }
  return { nullBitmap: bitmap, nullCount: nulls };
}

/** Elements per row in the values buffer of a fixed-width type (decimals and intervals span several). */
function stride(data: Data): number {
  return data.length === 0 ? 1 : Math.max(1, Math.round((data.values as { length: number }).length / data.length));
}

/**
 * The rows `indices` (ascending or not, repeats allowed) of one column's Data, as a new Data of
 * the same type. Throws for a type it does not know (unions), naming it.
 */
export function takeData(data: Data, indices: Int32Array): Data {
  const type = data.type as DataType;
  const length = indices.length;
  const validity = gatherValidity(data, indices);
  switch (type.typeId) {
    case Type.Null:
      return makeData({ type, length, nullCount: length } as never);
    case Type.Bool: {
      const source = data.values as Uint8Array;
      const out = new Uint8Array((length + 7) >> 3);
      for (let j = 0; j < length; j++) {
        const bit = data.offset + (indices[j] as number);
        if (((source[bit >> 3] as number) >> (bit & 7)) & 1) out[j >> 3] = (out[j >> 3] as number) | (1 << (j & 7));
      }
      return makeData({ type, length, ...validity, data: out } as never);
    }
    case Type.Utf8:
    case Type.Binary:
    case Type.LargeUtf8:
    case Type.LargeBinary: {
      const offsets = data.valueOffsets as Int32Array | BigInt64Array;
      const bytes = data.values as Uint8Array;
      const large = offsets instanceof BigInt64Array;
      let total = 0;
      for (let j = 0; j < length; j++) {
        const i = indices[j] as number;
        total += Number(offsets[i + 1]) - Number(offsets[i]);
      }
      const out = new Uint8Array(total);
      const outOffsets = large ? new BigInt64Array(length + 1) : new Int32Array(length + 1);
      let at = 0;
      for (let j = 0; j < length; j++) {
        const i = indices[j] as number;
        const start = Number(offsets[i]);
        const end = Number(offsets[i + 1]);
        out.set(bytes.subarray(start, end), at);
        at += end - start;
        if (large) (outOffsets as BigInt64Array)[j + 1] = BigInt(at);
        else (outOffsets as Int32Array)[j + 1] = at;
      }
      return makeData({ type, length, ...validity, valueOffsets: outOffsets, data: out } as never);
    }
    case Type.List:
    case Type.LargeList:
    case Type.Map: {
      const offsets = data.valueOffsets as Int32Array | BigInt64Array;
      const large = offsets instanceof BigInt64Array;
      let total = 0;
      for (let j = 0; j < length; j++) {
        const i = indices[j] as number;
        total += Number(offsets[i + 1]) - Number(offsets[i]);
      }
      const childIndices = new Int32Array(total);
      const outOffsets = large ? new BigInt64Array(length + 1) : new Int32Array(length + 1);
      let at = 0;
      for (let j = 0; j < length; j++) {
        const i = indices[j] as number;
        for (let k = Number(offsets[i]); k < Number(offsets[i + 1]); k++) childIndices[at++] = k;
        if (large) (outOffsets as BigInt64Array)[j + 1] = BigInt(at);
        else (outOffsets as Int32Array)[j + 1] = at;
      }
      const child = takeData(data.children[0] as Data, childIndices);
      return makeData({ type, length, ...validity, valueOffsets: outOffsets, child } as never);
    }
    case Type.FixedSizeList: {
      const size = (type as unknown as { listSize: number }).listSize;
      const childIndices = new Int32Array(length * size);
      for (let j = 0; j < length; j++) {
        const base = ((indices[j] as number) + data.offset) * size;
        for (let k = 0; k < size; k++) childIndices[j * size + k] = base + k;
      }
      return makeData({ type, length, ...validity, child: takeData(data.children[0] as Data, childIndices) } as never);
    }
    case Type.Struct: {
      // Struct children are sliced together with their parent: row i of the struct is row i of each child.
      const children = data.children.map((child) => takeData(child as Data, indices));
      return makeData({ type, length, ...validity, children } as never);
    }
    case Type.Dictionary: {
      const keys = data.values as Int8Array | Int16Array | Int32Array | BigInt64Array;
      const KeyArray = keys.constructor as new (n: number) => typeof keys;
      const out = new KeyArray(length);
      for (let j = 0; j < length; j++) (out as unknown as number[])[j] = keys[indices[j] as number] as number;
      return makeData({ type, length, ...validity, data: out, dictionary: data.dictionary } as never);
    }
    case Type.Int:
    case Type.Float:
    case Type.Date:
    case Type.Time:
    case Type.Timestamp:
    case Type.Duration:
    case Type.Interval:
    case Type.Decimal:
    case Type.FixedSizeBinary: {
      const values = data.values as Int32Array;
      const width = stride(data);
      const Values = values.constructor as new (n: number) => Int32Array;
      const out = new Values(length * width);
      if (width === 1) for (let j = 0; j < length; j++) out[j] = values[indices[j] as number] as number;
      else for (let j = 0; j < length; j++) out.set(values.subarray((indices[j] as number) * width, (indices[j] as number) * width + width), j * width);
      return makeData({ type, length, ...validity, data: out } as never);
    }
    default:
      throw new Error(`cannot pick rows of a column of type ${String(type)}`);
  }
}

/**
 * The rows `indices` of a record batch, as a new batch with the same schema.
 *
 * @example
 * takeRows(batch, Int32Array.of(0, 2, 5)).numRows; // 3
 */
export function takeRows(batch: RecordBatch, indices: Int32Array): RecordBatch {
  if (indices.length === batch.numRows && indices.every((v, i) => v === i)) return batch;
  const children = batch.data.children.map((child) => takeData(child as Data, indices));
  const data = makeData({ type: new Struct(batch.schema.fields), length: indices.length, nullCount: 0, children });
  return new RecordBatch(batch.schema, data);
}
