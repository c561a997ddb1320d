/**
 * Thrift's compact protocol, read into a generic tree and written back unchanged but for the
 * fields a caller edits. Parquet's footer (`FileMetaData`) is a compact-protocol struct; the sink
 * joins row groups encoded one at a time into one file by moving their column chunks and writing
 * one footer over them, which needs only a few offsets changed and everything else kept as it
 * came, byte for byte in meaning. A generic tree does that without a model of every Parquet
 * struct: fields it does not know survive the round trip.
 */

/** Compact-protocol type codes. */
export const T = {
  True: 1,
  False: 2,
  I8: 3,
  I16: 4,
  I32: 5,
  I64: 6,
  Double: 7,
  Binary: 8,
  List: 9,
  Set: 10,
  Map: 11,
  Struct: 12,
} as const;
/** A compact-protocol type code. */
export type T = (typeof T)[keyof typeof T];

/** A struct: fields by id, in the order they were read (the writer sorts by id). */
export type TStruct = Map<number, TValue>;

/** A list or set, with the type of its elements. */
export interface TList {
  readonly kind: "list";
  readonly elementType: T;
  readonly items: TAny[];
}

/** A map, with the types of its keys and values. */
export interface TMap {
  readonly kind: "map";
  readonly keyType: T;
  readonly valueType: T;
  readonly entries: [TAny, TAny][];
}

/** A struct already written (by {@link encodeStruct}): written again byte for byte. */
export interface TEncoded {
  readonly kind: "encoded";
  readonly bytes: Uint8Array;
}

/** Any value: booleans, numbers (i8 to i32, double), bigints (i64), bytes, lists, maps, structs. */
export type TAny = boolean | number | bigint | Uint8Array | TList | TMap | TStruct | TEncoded;

/** A field's value with its wire type, so that writing it back keeps the type. */
export interface TValue {
  readonly type: T;
  value: TAny;
}

/** Reads compact-protocol structs from a byte range. */
export class ThriftReader {
  private pos: number;
  private readonly view: DataView;

  constructor(
    private readonly bytes: Uint8Array,
    start = 0,
    private readonly end = bytes.length,
  ) {
    this.pos = start;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  /** Where the next read begins. */
  get position(): number {
    return this.pos;
  }

  readStruct(depth = 0): TStruct {
    if (depth > 64) throw new Error("thrift: structs nested more than 64 deep");
    const fields: TStruct = new Map();
    let lastId = 0;
    for (;;) {
      const header = this.byte();
      if (header === 0) return fields;
      const type = (header & 0x0f) as T;
      const delta = header >> 4;
      const id = delta === 0 ? zigzag32(this.varint()) : lastId + delta;
      lastId = id;
      if (type === T.True || type === T.False) fields.set(id, { type, value: type === T.True });
      else fields.set(id, { type, value: this.read(type, depth) });
    }
  }

  private read(type: T, depth: number): TAny {
    switch (type) {
      case T.True:
      case T.False:
        return this.byte() === T.True;
      case T.I8:
        return (this.byte() << 24) >> 24;
      case T.I16:
      case T.I32:
        return zigzag32(this.varint());
      case T.I64:
        return zigzag64(this.varint64());
      case T.Double: {
        this.need(8);
        const value = this.view.getFloat64(this.pos, true);
        this.pos += 8;
        return value;
      }
      case T.Binary: {
        const length = this.varint();
        this.need(length);
        const value = this.bytes.subarray(this.pos, this.pos + length);
        this.pos += length;
        return value;
      }
      case T.List:
      case T.Set: {
        const header = this.byte();
        const elementType = (header & 0x0f) as T;
        const size = header >> 4 === 15 ? this.varint() : header >> 4;
        if (size > this.end - this.pos) throw new Error(`thrift: a list of ${size} items cannot fit in what is left`);
        const items: TAny[] = [];
        for (let i = 0; i < size; i++) items.push(this.read(elementType, depth + 1));
        return { kind: "list", elementType, items };
      }
      case T.Map: {
        const size = this.varint();
        if (size > this.end - this.pos) throw new Error(`thrift: a map of ${size} entries cannot fit in what is left`);
        if (size === 0) return { kind: "map", keyType: T.Binary, valueType: T.Binary, entries: [] };
        const types = this.byte();
        const keyType = (types >> 4) as T;
        const valueType = (types & 0x0f) as T;
        const entries: [TAny, TAny][] = [];
        for (let i = 0; i < size; i++) entries.push([this.read(keyType, depth + 1), this.read(valueType, depth + 1)]);
        return { kind: "map", keyType, valueType, entries };
      }
      case T.Struct:
        return this.readStruct(depth + 1);
      default:
        throw new Error(`thrift: unknown type ${type} at byte ${this.pos}`);
    }
  }

  private need(n: number): void {
    if (this.pos + n > this.end) throw new Error("thrift: the footer ends in the middle of a value");
  }

  private byte(): number {
    this.need(1);
    return this.bytes[this.pos++] as number;
  }

  private varint(): number {
    let result = 0;
    let shift = 0;
    for (;;) {
      const b = this.byte();
      result += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return result;
      shift += 7;
      if (shift > 35) throw new Error("thrift: a 32-bit varint runs too long");
    }
  }

  private varint64(): bigint {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      const b = this.byte();
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result;
      shift += 7n;
      if (shift > 70n) throw new Error("thrift: a 64-bit varint runs too long");
    }
  }
}

function zigzag32(n: number): number {
  return n % 2 === 0 ? n / 2 : -(n + 1) / 2;
}

function zigzag64(n: bigint): bigint {
  return (n >> 1n) ^ -(n & 1n);
}

/** Writes compact-protocol structs into a growing buffer. */
export class ThriftWriter {
  private buffer = new Uint8Array(1024);
  private length = 0;

  bytes(): Uint8Array {
    return this.buffer.subarray(0, this.length);
  }

  writeStruct(fields: TStruct): void {
    let lastId = 0;
    for (const id of [...fields.keys()].sort((a, b) => a - b)) {
      const field = fields.get(id) as TValue;
      const type = field.type === T.True || field.type === T.False ? (field.value ? T.True : T.False) : field.type;
      const delta = id - lastId;
      if (delta > 0 && delta <= 15) this.byte((delta << 4) | type);
      else {
        this.byte(type);
        this.varint(id >= 0 ? id * 2 : -id * 2 - 1);
      }
      lastId = id;
      if (type !== T.True && type !== T.False) this.write(type, field.value);
    }
    this.byte(0);
  }

  private write(type: T, value: TAny): void {
    switch (type) {
      case T.True:
      case T.False:
        this.byte(value ? T.True : T.False);
        return;
      case T.I8:
        this.byte((value as number) & 0xff);
        return;
      case T.I16:
      case T.I32: {
        const n = value as number;
        this.varint(n >= 0 ? n * 2 : -n * 2 - 1);
        return;
      }
      case T.I64: {
        const n = value as bigint;
        this.varint64(n >= 0n ? n << 1n : (-n << 1n) - 1n);
        return;
      }
      case T.Double: {
        this.reserve(8);
        new DataView(this.buffer.buffer).setFloat64(this.length, value as number, true);
        this.length += 8;
        return;
      }
      case T.Binary: {
        const bytes = value as Uint8Array;
        this.varint(bytes.length);
        this.reserve(bytes.length);
        this.buffer.set(bytes, this.length);
        this.length += bytes.length;
        return;
      }
      case T.List:
      case T.Set: {
        const list = value as TList;
        const size = list.items.length;
        if (size < 15) this.byte((size << 4) | list.elementType);
        else {
          this.byte(0xf0 | list.elementType);
          this.varint(size);
        }
        for (const item of list.items) this.write(list.elementType, item);
        return;
      }
      case T.Map: {
        const map = value as TMap;
        this.varint(map.entries.length);
        if (map.entries.length === 0) return;
        this.byte((map.keyType << 4) | map.valueType);
        for (const [k, v] of map.entries) {
          this.write(map.keyType, k);
          this.write(map.valueType, v);
        }
        return;
      }
      case T.Struct:
        if (value instanceof Map) this.writeStruct(value);
        else this.raw((value as TEncoded).bytes);
        return;
      default:
        throw new Error(`thrift: cannot write type ${type}`);
    }
  }

  private raw(bytes: Uint8Array): void {
    this.reserve(bytes.length);
    this.buffer.set(bytes, this.length);
    this.length += bytes.length;
  }

  private reserve(n: number): void {
    if (this.length + n <= this.buffer.length) return;
    let size = this.buffer.length * 2;
    while (size < this.length + n) size *= 2;
    const grown = new Uint8Array(size);
    grown.set(this.buffer.subarray(0, this.length));
    this.buffer = grown;
  }

  private byte(b: number): void {
    this.reserve(1);
    this.buffer[this.length++] = b;
  }

  private varint(n: number): void {
    while (n >= 0x80) {
      this.byte((n % 0x80) | 0x80);
      n = Math.floor(n / 0x80);
    }
    this.byte(n);
  }

  private varint64(n: bigint): void {
    while (n >= 0x80n) {
      this.byte(Number(n & 0x7fn) | 0x80);
      n >>= 7n;
    }
    this.byte(Number(n));
  }
}

/** A struct as compact-protocol bytes of its own (a copy), to keep or to write inside another. */
export function encodeStruct(fields: TStruct): TEncoded {
  const writer = new ThriftWriter();
  writer.writeStruct(fields);
  return { kind: "encoded", bytes: writer.bytes().slice() };
}
