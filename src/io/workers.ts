/**
 * Worker threads kept between uses. Starting a worker loads its modules again (for the Parquet
 * encoder: apache-arrow and parquet-wasm, about 0.2 s wall and 0.3 s CPU), so a process that runs
 * many short pipelines (a scheduler, an ingest endpoint, a test suite) would pay it every time.
 * A worker given back clean is kept: it does not hold the process open (unref) and ends after
 * `idleMs` unused, or when its thread ends.
 */
export interface WorkerPool {
  /** A kept worker, or a new one. */
  take(): Worker;
  /** Gives back a worker with nothing outstanding and no failure; its handlers are cleared. */
  keep(worker: Worker): void;
  /** Ends the kept workers at once. */
  endIdle(): void;
}

/** A pool of workers running the module at `url`. */
export function workerPool(url: URL, idleMs = 30_000): WorkerPool {
  const idle = new Set<Worker>();
  // How to cancel a kept worker's idle end when it is taken again.
  const takenBack = new WeakMap<Worker, () => void>();
  return {
    take() {
      for (const worker of idle) {
        idle.delete(worker);
        takenBack.get(worker)?.();
        worker.ref();
        return worker;
      }
      return new Worker(url.href);
    },
    keep(worker) {
      worker.onmessage = null;
      worker.onerror = null;
      worker.unref();
      idle.add(worker);
      // A kept worker whose thread ends (or that nobody takes in time) is dropped.
      const drop = () => {
        clearTimeout(timer);
        worker.removeEventListener("close", drop);
        if (idle.delete(worker)) worker.terminate();
      };
      const timer = setTimeout(drop, idleMs);
      timer.unref();
      worker.addEventListener("close", drop);
      takenBack.set(worker, drop);
    },
    endIdle() {
      for (const worker of [...idle]) takenBack.get(worker)?.();
    },
  };
}
