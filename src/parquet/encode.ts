/**
 * Arrow IPC bytes in, a committed Parquet file out. Runs inside an encoder worker (or inline
 * when workers are turned off), so it only takes plain data.
 */
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { dirname } from "node:path";
import * as pq from "parquet-wasm";

/** How a file is encoded. */
export interface EncodeOptions {
  readonly compression: "zstd" | "snappy" | "gzip" | "brotli" | "lz4" | "none";
  readonly rowGroupSize: number;
  /** Extra key/value metadata stored in the file footer. */
  readonly metadata: Record<string, string>;
}

/** One file to write: the rows, where they go, and the temporary name used until commit. */
export interface EncodeJob {
  readonly ipc: Uint8Array;
  readonly path: string;
  readonly tempPath: string;
  readonly options: EncodeOptions;
}

const COMPRESSION: Record<EncodeOptions["compression"], pq.Compression> = {
  zstd: pq.Compression.ZSTD,
  snappy: pq.Compression.SNAPPY,
  gzip: pq.Compression.GZIP,
  brotli: pq.Compression.BROTLI,
  lz4: pq.Compression.LZ4_RAW,
  none: pq.Compression.UNCOMPRESSED,
};

/** Encodes Arrow IPC stream bytes as Parquet bytes. */
export function encodeParquet(ipc: Uint8Array, options: EncodeOptions): Uint8Array {
  // parquet-wasm consumes both the table and the properties: reusing properties would write
  // the next file uncompressed without a word, so they are built fresh every time.
  const props = new pq.WriterPropertiesBuilder()
    .setCompression(COMPRESSION[options.compression])
    .setMaxRowGroupSize(options.rowGroupSize)
    .setDictionaryEnabled(true)
    .setStatisticsEnabled(pq.EnabledStatistics.Page)
    .setCreatedBy("sluice")
    .setKeyValueMetadata(new Map(Object.entries(options.metadata)))
    .build();
  return pq.writeParquet(pq.Table.fromIPCStream(ipc), props);
}

/**
 * Writes bytes so that readers and crashes only ever see the whole file or none of it: a
 * temporary name, fsync, rename, then fsync of the folder so the rename itself is durable.
 */
export async function commitFile(path: string, tempPath: string, bytes: Uint8Array): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const fd = openSync(tempPath, "w");
  try {
    let written = 0;
    while (written < bytes.length) written += writeSync(fd, bytes, written);
    fsyncSync(fd);
  } catch (error) {
    closeSync(fd);
    rmSync(tempPath, { force: true });
    throw error;
  }
  closeSync(fd);
  renameSync(tempPath, path);
  const dir = openSync(dirname(path), "r");
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}

/** Encodes and commits one file; returns the size written. */
export async function runEncodeJob(job: EncodeJob): Promise<number> {
  const bytes = encodeParquet(job.ipc, job.options);
  await commitFile(job.path, job.tempPath, bytes);
  return bytes.length;
}
