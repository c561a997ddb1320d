/**
 * One Parquet file of a partition, written row group by row group while it is open.
 *
 * parquet-wasm writes whole files; its streaming writer keeps a writer (and WebAssembly memory,
 * which never shrinks) per open file, and a partitioned dataset has dozens of files open at
 * once. So each row group is encoded on its own, as a small complete file, on an encoder worker;
 * its column chunks are appended here to the partition's temporary file, and their metadata
 * (offsets moved to where the chunks now are) is kept. Committing writes one footer over every
 * row group, then fsync and the final name (see {@link commitFile}). An open file keeps only its
 * row groups' metadata in memory (encoded, a few hundred bytes a column chunk), however large it
 * grows on disk.
 *
 * The page indexes of the encoded pieces (column and offset indexes) are not carried over:
 * statistics per row group (min, max, null count) stay in each column chunk's metadata.
 */
import { rmSync } from "node:fs";
import { type FileHandle, open, rm } from "node:fs/promises";
import { mkdir } from "node:fs/promises";
import { dirname } from "node:path";
import { publishFile } from "./encode.ts";
import { encodeStruct, T, type TEncoded, type TList, ThriftReader, type TStruct, type TValue, ThriftWriter } from "./thrift.ts";

const MAGIC = new Uint8Array([0x50, 0x41, 0x52, 0x31]); // "PAR1"

/** Where a file is written (`tempPath`) and the name it takes when committed (`path`). */
export interface Location {
  readonly path: string;
  readonly tempPath: string;
}

/** A small Parquet file cut in two: its column chunks' bytes and its metadata. */
export interface EncodedPiece {
  /** The bytes from after the leading magic to the end of the last column chunk. */
  readonly body: Uint8Array;
  /** The footer, with its row groups' offsets counted from the start of `body`. */
  readonly meta: TStruct;
  readonly rowGroups: TStruct[];
}

// Field ids of parquet.thrift's structs that hold file offsets.
const FILE_META = { numRows: 3, rowGroups: 4, keyValue: 5 } as const;
const ROW_GROUP = { columns: 1, numRows: 3, fileOffset: 5, ordinal: 7 } as const;
const COLUMN_CHUNK = { fileOffset: 2, meta: 3, offsetIndexOffset: 4, offsetIndexLength: 5, columnIndexOffset: 6, columnIndexLength: 7 } as const;
const COLUMN_META = { compressedSize: 7, dataPageOffset: 9, indexPageOffset: 10, dictionaryPageOffset: 11, bloomOffset: 14, bloomLength: 15 } as const;

function field(struct: TStruct, id: number): TValue | undefined {
  return struct.get(id);
}

function listOf(struct: TStruct, id: number): TStruct[] {
  const value = struct.get(id)?.value as TList | undefined;
  return (value?.items ?? []) as TStruct[];
}

function i64(struct: TStruct, id: number): bigint | undefined {
  const value = struct.get(id)?.value;
  return typeof value === "bigint" ? value : undefined;
}

/** Adds `delta` to an i64 offset field, when present. */
function shift(struct: TStruct, id: number, delta: bigint): void {
  const f = field(struct, id);
  if (f && typeof f.value === "bigint") f.value += delta;
}

/** Moves every file offset a row group's metadata holds by `delta` bytes. */
function moveOffsets(rowGroup: TStruct, delta: bigint): void {
  for (const chunk of listOf(rowGroup, ROW_GROUP.columns)) {
    const columnMeta = field(chunk, COLUMN_CHUNK.meta)?.value as TStruct;
    for (const id of [COLUMN_META.dataPageOffset, COLUMN_META.indexPageOffset, COLUMN_META.dictionaryPageOffset]) shift(columnMeta, id, delta);
    shift(chunk, COLUMN_CHUNK.fileOffset, delta);
  }
  shift(rowGroup, ROW_GROUP.fileOffset, delta);
}

/**
 * Files the process's Parquet writers hold open at once, all sinks together. Each open is short
 * (a row group's bytes, or a footer, fsync and rename), so a writer waiting for a slot waits only
 * for others' writes, never for a partition to be committed: no deadlock, however many partitions
 * are open. Well below the usual limit of 1,024 descriptors a process (256 on macOS), which
 * sockets and inputs share.
 */
const FILE_SLOTS = 128;
let slotsInUse = 0;
const slotWaiters: (() => void)[] = [];

async function withFileSlot<R>(work: () => Promise<R>): Promise<R> {
  if (slotsInUse >= FILE_SLOTS) await new Promise<void>((resolve) => slotWaiters.push(resolve));
  else slotsInUse++;
  try {
    return await work();
  } finally {
    // The slot passes straight to the next waiter, if any: the count stays as it is.
    const next = slotWaiters.shift();
    if (next) next();
    else slotsInUse--;
  }
}

/** Writes all of `bytes` at `position`. */
async function writeAt(handle: FileHandle, bytes: Uint8Array, position: number): Promise<void> {
  let written = 0;
  while (written < bytes.length) {
    const { bytesWritten } = await handle.write(bytes, written, bytes.length - written, position + written);
    written += bytesWritten;
  }
}

/**
 * Cuts an encoded file into its column chunks and its footer; offsets in the returned row groups
 * are still the encoded file's (`body` begins at byte 4, after the leading magic). Throws when the
 * bytes are not a Parquet file laid out as one writer writes it (chunks first, contiguous).
 */
export function splitParquet(file: Uint8Array): EncodedPiece {
  const n = file.length;
  if (n < 12 || !MAGIC.every((b, i) => file[i] === b && file[n - 4 + i] === b)) {
    throw new Error("an encoded row group is not a Parquet file (magic bytes missing)");
  }
  const footerLength = new DataView(file.buffer, file.byteOffset + n - 8, 4).getUint32(0, true);
  const footerStart = n - 8 - footerLength;
  if (footerStart < 4) throw new Error("an encoded row group's footer is longer than the file");
  // Read from a copy of the footer: byte fields are views into what they were read from, and the
  // encoded file (megabytes) must not stay alive for as long as the metadata is kept.
  const meta = new ThriftReader(file.slice(footerStart, n - 8)).readStruct();
  const rowGroups = listOf(meta, FILE_META.rowGroups);
  let end = 4n;
  for (const rowGroup of rowGroups) {
    for (const chunk of listOf(rowGroup, ROW_GROUP.columns)) {
      const columnMeta = field(chunk, COLUMN_CHUNK.meta)?.value as TStruct | undefined;
      if (!columnMeta) throw new Error("an encoded row group's column chunk has no metadata");
      const start = i64(columnMeta, COLUMN_META.dictionaryPageOffset) ?? i64(columnMeta, COLUMN_META.dataPageOffset);
      const size = i64(columnMeta, COLUMN_META.compressedSize);
      if (start === undefined || size === undefined) throw new Error("an encoded column chunk has no offsets");
      if (start + size > end) end = start + size;
      // Page indexes and bloom filters lie outside the chunks and are not copied.
      for (const id of [COLUMN_CHUNK.offsetIndexOffset, COLUMN_CHUNK.offsetIndexLength, COLUMN_CHUNK.columnIndexOffset, COLUMN_CHUNK.columnIndexLength]) {
        chunk.delete(id);
      }
      columnMeta.delete(COLUMN_META.bloomOffset);
      columnMeta.delete(COLUMN_META.bloomLength);
    }
  }
  if (end > BigInt(footerStart)) throw new Error("an encoded row group's column chunks overlap its footer");
  return { body: file.subarray(4, Number(end)), meta, rowGroups };
}

/**
 * A Parquet file being written under a temporary name. Pieces are appended in the order
 * {@link PartFile.append} is called, whatever order their encodes finish in; {@link PartFile.commit}
 * runs after every append. Any failure rejects the commit (and every later step), and
 * {@link PartFile.discard} removes the temporary file.
 */
export class PartFile {
  #location: Location | undefined;
  /** True once the temporary file exists (its magic bytes written). */
  #created = false;
  #chain: Promise<void> = Promise.resolve();
  #offset = 4;
  #meta: TStruct | undefined;
  /** Each row group's metadata, offsets moved, as compact-protocol bytes (a few hundred bytes a column). */
  readonly #rowGroups: TEncoded[] = [];
  #metaBytes = 0;
  #rows = 0n;
  #discarded = false;

  /** `location` says where the file goes; nothing is written before it resolves. */
  constructor(readonly location: Promise<Location>) {
    // Its failure is reported by the write that awaits it, not as unhandled before that.
    location.catch(() => undefined);
  }

  /** Bytes written so far (the column chunks; the footer comes at commit). */
  get bytes(): number {
    return this.#offset;
  }

  /** Bytes of row-group metadata held for the footer: the memory an open file keeps. */
  get metaBytes(): number {
    return this.#metaBytes;
  }

  /**
   * Appends the row groups of an encoded piece (split already, as the encoders give it, or a whole
   * encoded Parquet file) once it and every earlier piece are written.
   * The returned promise settles when this piece is on its way to disk (written, not synced).
   */
  append(encoded: Promise<EncodedPiece | Uint8Array>): Promise<void> {
    // An encode that fails after an earlier step failed is never awaited by the chain: its
    // rejection is this step's, not an unhandled one.
    encoded.catch(() => undefined);
    const step = this.#chain.then(() => encoded).then((bytes) => this.#write(bytes));
    this.#chain = step;
    return step;
  }

  async #write(encoded: EncodedPiece | Uint8Array): Promise<void> {
    if (this.#discarded) return;
    const piece = encoded instanceof Uint8Array ? splitParquet(encoded) : encoded;
    const location = (this.#location ??= await this.location);
    if (!this.#created) await mkdir(dirname(location.tempPath), { recursive: true });
    // The file is open only while it is written: a dataset with thousands of partitions open
    // holds no file descriptors for them, and writes at once take at most FILE_SLOTS.
    await withFileSlot(async () => {
      const handle = await open(location.tempPath, this.#created ? "r+" : "w");
      try {
        if (!this.#created) await handle.write(MAGIC, 0, 4, 0);
        this.#created = true;
        await writeAt(handle, piece.body, this.#offset);
      } finally {
        await handle.close();
      }
    });
    // The piece's body began at its byte 4; here it begins at this file's offset.
    const delta = BigInt(this.#offset - 4);
    for (const rowGroup of piece.rowGroups) {
      moveOffsets(rowGroup, delta);
      const ordinal = this.#rowGroups.length;
      if (ordinal <= 0x7fff) rowGroup.set(ROW_GROUP.ordinal, { type: T.I16, value: ordinal });
      else rowGroup.delete(ROW_GROUP.ordinal);
      const encoded = encodeStruct(rowGroup);
      this.#rowGroups.push(encoded);
      this.#metaBytes += encoded.bytes.length;
      this.#rows += i64(rowGroup, ROW_GROUP.numRows) ?? 0n;
    }
    if (!this.#meta) {
      // The rest of the footer (schema, key/value metadata) is the first piece's; row groups are kept encoded.
      this.#meta = piece.meta;
      this.#meta.delete(FILE_META.rowGroups);
    }
    this.#offset += piece.body.length;
  }

  /**
   * Writes the footer over every row group appended (with `metadata` replacing key/value entries
   * of the same key), fsyncs, and gives the file its final name. Resolves with the file's size.
   * `beforePublish` runs synchronously right before the name is given: a throw keeps the file
   * from landing (its temporary file is removed) and rejects with it.
   */
  commit(metadata: Readonly<Record<string, string>>, beforePublish?: () => void): Promise<number> {
    const step = this.#chain.then(() => this.#commit(metadata, beforePublish));
    this.#chain = step.then(
      () => undefined,
      () => undefined,
    );
    return step;
  }

  async #commit(metadata: Readonly<Record<string, string>>, beforePublish?: () => void): Promise<number> {
    const meta = this.#meta;
    const location = this.#location;
    if (this.#discarded) throw new Error("a discarded Parquet file cannot be committed");
    if (!this.#created || !meta || !location) throw new Error("a Parquet file with no row groups cannot be committed");
    meta.set(FILE_META.numRows, { type: T.I64, value: this.#rows });
    meta.set(FILE_META.rowGroups, { type: T.List, value: { kind: "list", elementType: T.Struct, items: this.#rowGroups } });
    const encoder = new TextEncoder();
    const decoder = new TextDecoder();
    const entries = listOf(meta, FILE_META.keyValue).filter((kv) => {
      const key = kv.get(1)?.value;
      return !(key instanceof Uint8Array && decoder.decode(key) in metadata);
    });
    for (const [key, value] of Object.entries(metadata)) {
      entries.push(
        new Map<number, TValue>([
          [1, { type: T.Binary, value: encoder.encode(key) }],
          [2, { type: T.Binary, value: encoder.encode(value) }],
        ]),
      );
    }
    meta.set(FILE_META.keyValue, { type: T.List, value: { kind: "list", elementType: T.Struct, items: entries } });
    const writer = new ThriftWriter();
    writer.writeStruct(meta);
    const footer = writer.bytes();
    const tail = new Uint8Array(footer.length + 8);
    tail.set(footer);
    new DataView(tail.buffer).setUint32(footer.length, footer.length, true);
    tail.set(MAGIC, footer.length + 4);
    await withFileSlot(async () => {
      const handle = await open(location.tempPath, "r+");
      try {
        await writeAt(handle, tail, this.#offset);
        // fsync makes the file's data durable, whichever descriptor wrote it.
        await handle.sync();
      } finally {
        await handle.close();
      }
      try {
        beforePublish?.();
      } catch (error) {
        // Whole and closed, but not to land: gone at once, not when the file is discarded.
        rmSync(location.tempPath, { force: true });
        throw error;
      }
      await publishFile(location.tempPath, location.path);
    });
    return this.#offset + tail.length;
  }

  /**
   * Stops writing and removes the temporary file (after the step in progress, if any). Never
   * rejects: it runs when the file has already failed or is abandoned.
   */
  async discard(): Promise<void> {
    this.#discarded = true;
    await this.#chain.catch(() => undefined);
    if (this.#location) await rm(this.#location.tempPath, { force: true }).catch(() => undefined);
  }
}
