/**
 * Encoder worker: zstd inside parquet-wasm is the most expensive step of the write path and is
 * single-threaded, so it runs here while the main thread goes on parsing and validating. The rows
 * arrive as column buffers and are serialised to Arrow IPC here too, and the Parquet bytes go back
 * split into body and footer metadata (see partFile.ts), off the main thread.
 */
import { giveBack, takeBuffer } from "../arrow/memory.ts";
import { columnsToIPC } from "../arrow/rows.ts";
import { encodeParquet } from "./encodeParquet.ts";
import { splitParquet } from "./partFile.ts";
import type { EncodeJob, EncodeReply } from "./encoders.ts";

declare const self: Worker;

self.onmessage = (event: MessageEvent<EncodeJob>) => {
  const { id, rows, options, memory } = event.data;
  try {
    const ipc = columnsToIPC(rows, takeBuffer);
    const bytes = encodeParquet(ipc, options);
    // parquet-wasm copied the stream into its own memory: the buffer serves the next job.
    giveBack(ipc.buffer as ArrayBuffer);
    // Split here too: reading the footer's metadata is work the main thread need not do.
    const piece = splitParquet(bytes);
    const buffer = bytes.buffer as ArrayBuffer;
    const transferable = bytes.byteOffset === 0 && bytes.byteLength === buffer.byteLength;
    // The column buffers are done with once encoded: they go back for the next row groups.
    self.postMessage({ id, piece, memory } satisfies EncodeReply, transferable ? [buffer, ...memory] : memory);
  } catch (error) {
    const e = error as NodeJS.ErrnoException;
    self.postMessage({ id, error: { message: e?.message ?? String(error), code: e?.code } } satisfies EncodeReply);
  }
};
