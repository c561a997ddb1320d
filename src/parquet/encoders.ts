/**
 * A small pool of encoder workers. Jobs go to the least busy worker; IPC bytes are transferred,
 * not copied (a 10 MB transfer costs about 0.6 ms, a copy about 20 ms).
 */
import { type EncodeJob, runEncodeJob } from "./encode.ts";

/** Encodes and commits Parquet files off the main thread. */
export interface Encoders {
  /** Resolves with the committed file's size once it is durable under its final name. */
  encode(job: EncodeJob): Promise<number>;
  /** Stops the workers; jobs still running are abandoned (their temporary files stay behind). */
  close(): void;
}

interface Pending {
  resolve(bytes: number): void;
  reject(error: Error): void;
}

/**
 * Creates `count` encoder workers, started on first use. With `count` 0 every job runs on the
 * calling thread, which is simpler to debug and enough for small outputs.
 */
export function createEncoders(count: number): Encoders {
  if (count <= 0) return { encode: runEncodeJob, close() {} };

  const workers: { worker: Worker; busy: number }[] = [];
  const pending = new Map<number, Pending>();
  let nextId = 0;

  function start() {
    const worker = new Worker(new URL("./worker.ts", import.meta.url).href);
    const slot = { worker, busy: 0 };
    worker.onmessage = (event: MessageEvent<{ id: number; bytes?: number; error?: { message: string; code?: string } }>) => {
      const { id, bytes, error } = event.data;
      const job = pending.get(id);
      pending.delete(id);
      slot.busy--;
      if (!job) return;
      if (error) job.reject(Object.assign(new Error(error.message), { code: error.code }));
      else job.resolve(bytes ?? 0);
    };
    worker.onerror = (event) => {
      // A crashed worker fails every job it held: they surface as write errors, never as silence.
      for (const [id, job] of pending) {
        job.reject(new Error(`parquet encoder worker failed: ${event.message}`));
        pending.delete(id);
      }
    };
    workers.push(slot);
    return slot;
  }

  return {
    encode(job) {
      const slot =
        workers.length < count ? start() : workers.reduce((a, b) => (b.busy < a.busy ? b : a));
      const id = nextId++;
      slot.busy++;
      return new Promise<number>((resolve, reject) => {
        pending.set(id, { resolve, reject });
        const buffer = job.ipc.buffer as ArrayBuffer;
        const transferable = job.ipc.byteOffset === 0 && job.ipc.byteLength === buffer.byteLength;
        slot.worker.postMessage({ id, job }, transferable ? [buffer] : []);
      });
    },
    close() {
      for (const { worker } of workers) worker.terminate();
      workers.length = 0;
    },
  };
}
