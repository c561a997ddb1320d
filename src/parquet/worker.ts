/**
 * Encoder worker: zstd inside parquet-wasm is the most expensive step of the write path and is
 * single-threaded, so it runs here while the main thread goes on parsing and validating.
 */
import { type EncodeJob, runEncodeJob } from "./encode.ts";

declare const self: Worker;

self.onmessage = async (event: MessageEvent<{ id: number; job: EncodeJob }>) => {
  const { id, job } = event.data;
  try {
    const bytes = await runEncodeJob(job);
    self.postMessage({ id, bytes });
  } catch (error) {
    const e = error as NodeJS.ErrnoException;
    self.postMessage({ id, error: { message: e?.message ?? String(error), code: e?.code } });
  }
};
