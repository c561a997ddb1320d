/**
 * Arrow IPC bytes in, Parquet bytes out: on an encoder worker, or inline when workers are turned
 * off, so it only takes plain data. Importing this module loads parquet-wasm.
 */
import * as pq from "parquet-wasm";
import type { EncodeOptions } from "./encode.ts";

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
  let builder = new pq.WriterPropertiesBuilder()
    .setCompression(COMPRESSION[options.compression])
    .setMaxRowGroupSize(options.rowGroupSize)
    .setDictionaryEnabled(true);
  // A one-part column path: only top-level columns can be named here (a nested leaf's path has
  // several parts), which is all the sink asks for.
  for (const column of options.plainColumns ?? []) builder = builder.setColumnDictionaryEnabled(column, false);
  const props = builder
    // Statistics per column chunk (min, max, nulls): the row groups of a piece are moved into a
    // larger file (see partFile.ts) without their page indexes.
    .setStatisticsEnabled(pq.EnabledStatistics.Chunk)
    .setCreatedBy("sluice")
    .setKeyValueMetadata(new Map(Object.entries(options.metadata ?? {})))
    .build();
  return pq.writeParquet(pq.Table.fromIPCStream(ipc), props);
}
