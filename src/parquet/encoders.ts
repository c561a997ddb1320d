/**
 * A small pool of encoder workers. Jobs go to the least busy worker; the rows' column buffers go
 * and the Parquet bytes come back by transfer, not copied (a 10 MB transfer costs about 0.6 ms, a
 * copy about 20 ms).
 */
import { giveBack, takeBuffer } from "../arrow/memory.ts";
import { columnsToIPC, type RowColumns } from "../arrow/rows.ts";
import { workerPool } from "../io/workers.ts";
import type { EncodeOptions } from "./encode.ts";
import { type EncodedPiece, splitParquet } from "./partFile.ts";

/** Encodes Arrow IPC bytes as Parquet off the main thread. */
export interface Encoders {
  /**
   * Resolves with the rows (see `RowBuffer.toColumns`) encoded as Parquet, split into the column
   * chunks and the footer's metadata as a part file takes them. The buffers in `transfer` move to
   * the worker: do not use them afterwards.
   */
  encode(rows: RowColumns, transfer: ArrayBuffer[], options: EncodeOptions): Promise<EncodedPiece>;
  /**
   * Starts loading an encoder now (a worker and parquet-wasm take 0.2 s, and over a second on a
   * busy machine), so the first encode does not wait for it: a sink calls it when subscribed,
   * and an app's first file, rolled by age, lands when promised.
   */
  warm(): void;
  /** Stops the workers; jobs still running are failed. */
  close(): void;
}

interface Pending {
  resolve(piece: EncodedPiece): void;
  reject(error: Error): void;
}

/** The message an encoder worker is sent. */
export interface EncodeJob {
  readonly id: number;
  readonly rows: RowColumns;
  readonly options: EncodeOptions;
  /** The memory behind `rows`, sent back with the reply for reuse (see arrow/memory.ts). */
  readonly memory: ArrayBuffer[];
}

/** The message an encoder worker answers with. */
export interface EncodeReply {
  readonly id: number;
  readonly piece?: EncodedPiece;
  readonly memory?: ArrayBuffer[];
  readonly error?: { message: string; code?: string | undefined };
}

// Job ids are unique in the process, not per sink: a worker serves one sink after another.
let nextId = 0;

/** Encoder workers no sink is using, kept for the next one (see io/workers.ts). */
const pool = workerPool(new URL("./worker.ts", import.meta.url));

/** Ends the encoder workers kept for later sinks, at once rather than when unused for a while. */
export function endIdleEncoders(): void {
  pool.endIdle();
}

/**
 * Creates `count` encoder workers, started (or taken from those kept) on first use. With `count`
 * 0 every job runs on the calling thread, which is simpler to debug and enough for small outputs.
 */
export function createEncoders(count: number): Encoders {
  if (count <= 0) {
    return {
      // Loaded on first use, like the workers: a sink that never encodes does not load parquet-wasm.
      encode: (rows, transfer, options) =>
        import("./encodeParquet.ts").then(({ encodeParquet }) => {
          const ipc = columnsToIPC(rows, takeBuffer);
          const piece = splitParquet(encodeParquet(ipc, options));
          giveBack(ipc.buffer as ArrayBuffer);
          for (const buffer of transfer) giveBack(buffer);
          return piece;
        }),
      warm() {
        import("./encodeParquet.ts").catch(() => undefined);
      },
      close() {},
    };
  }

  type Slot = { worker: Worker; busy: number; jobs: Set<number>; failed: boolean; stopListening: () => void };
  const workers: Slot[] = [];
  // Every worker started, also those whose thread already ended: close() ends or keeps each once.
  const started: Slot[] = [];
  const pending = new Map<number, Pending>();
  let closing = false;

  function start() {
    const worker = pool.take();
    const slot: Slot = { worker, busy: 0, jobs: new Set<number>(), failed: false, stopListening: () => {} };
    // A worker that stops fails every job it held: they surface as write errors, never as silence.
    const failAll = (reason: string) => {
      slot.failed = true;
      for (const id of slot.jobs) {
        pending.get(id)?.reject(new Error(`parquet encoder worker failed: ${reason}`));
        pending.delete(id);
      }
      slot.jobs.clear();
      slot.busy = 0;
    };
    worker.onmessage = (event: MessageEvent<EncodeReply>) => {
      const { id, piece, memory, error } = event.data;
      for (const buffer of memory ?? []) giveBack(buffer);
      const job = pending.get(id);
      pending.delete(id);
      slot.jobs.delete(id);
      slot.busy--;
      if (error || !piece) slot.failed = true;
      if (!job) return;
      if (error || !piece) job.reject(Object.assign(new Error(error?.message ?? "the encoder answered without bytes"), { code: error?.code }));
      else job.resolve(piece);
    };
    worker.onerror = (event) => failAll(event.message);
    // A thread that ends without an error event (process.exit in the worker, killed by the runtime).
    const onClose = (event: Event) => {
      const index = workers.indexOf(slot);
      if (index >= 0) workers.splice(index, 1);
      if (!closing) failAll(`the worker thread exited (code ${(event as Event & { code?: number }).code ?? "unknown"})`);
    };
    worker.addEventListener("close", onClose);
    slot.stopListening = () => worker.removeEventListener("close", onClose);
    workers.push(slot);
    started.push(slot);
    return slot;
  }

  return {
    encode(rows, transfer, options) {
      const slot = workers.length < count ? start() : workers.reduce((a, b) => (b.busy < a.busy ? b : a));
      const id = nextId++;
      slot.busy++;
      slot.jobs.add(id);
      return new Promise<EncodedPiece>((resolve, reject) => {
        pending.set(id, { resolve, reject });
        slot.worker.postMessage({ id, rows, options, memory: transfer } satisfies EncodeJob, transfer);
      });
    },
    warm() {
      if (workers.length === 0 && !closing) start();
    },
    close() {
      closing = true;
      for (const slot of started) {
        slot.stopListening();
        // Only a worker with nothing outstanding is kept: a late reply must never reach another sink.
        if (!slot.failed && slot.busy === 0 && workers.includes(slot)) pool.keep(slot.worker);
        else slot.worker.terminate();
      }
      started.length = 0;
      workers.length = 0;
      for (const [id, job] of pending) {
        job.reject(new Error("parquet encoders were closed"));
        pending.delete(id);
      }
    },
  };
}
