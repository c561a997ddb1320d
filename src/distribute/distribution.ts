/**
 * A worker's part in a distributed run: the options, and the queues of its sources on the broker
 * the URL names (src/distribute/redis.ts, src/distribute/jetstream.ts; the model they share is in
 * src/distribute/queue.ts).
 */
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { type QueueSettings, safeUrl, type SplitQueue } from "./queue.ts";

/** Settings of a distributed run (`sluice run --distribute <url>`, or `run(…, { distribute })`). */
export interface DistributeOptions {
  /** The broker: `redis://…` (or `rediss://`) for a Redis stream, `nats://…` for a JetStream work-queue stream. */
  readonly url: string;
  /**
   * The job's name, the same in every worker. A job that finished stays finished: workers started
   * again with the same name read nothing, as a re-run with a checkpoint does. Give each run of a
   * job a name of its own (`clicks-2024-03-01`).
   */
  readonly job: string;
  /** Bytes a split of a large NDJSON or CSV input holds, about (default 64 MiB). */
  readonly splitBytes?: number;
  /**
   * How long a split a worker stopped keeping alive stays its own before another worker takes
   * it (default 60 s). Workers keep theirs alive every third of it.
   */
  readonly leaseMs?: number;
  /** This worker's name in the queue (default `<hostname>-<pid>-<6 random hex digits>`, new in each run). */
  readonly worker?: string;
}

/**
 * A worker's part in a distributed job: the queue of each source, opened once and kept over the
 * worker's rounds (see `run()`): a round reads until there is nothing to take, and the worker
 * runs another when a dead worker's splits come free, until the job is done.
 */
export interface Distribution {
  readonly job: string;
  /** This worker's name in the queue. */
  readonly worker: string;
  readonly splitBytes: number;
  readonly leaseMs: number;
  /** The queue of one source, `key` naming it within the job (the same in every worker); opened on first use. */
  open(key: string): Promise<SplitQueue>;
  /** Where the job stands over every queue opened (see {@link SplitQueue.state}); `done` when none was. */
  state(): Promise<"done" | "ready" | "held">;
  /** Closes every queue. */
  close(): Promise<void>;
  /**
   * Set by a source whose pipeline stopped reading it before its input ended (RxJS's `take`,
   * `first`): the worker runs no further round; the split it was in goes back to the queue.
   */
  endedEarly: boolean;
}

/** Checks a job name: letters, digits, `.`, `_`, `-` (it becomes part of broker keys and subjects). */
export function checkJobName(name: string, what: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/.test(name)) throw new Error(`${what} must be 1 to 100 letters, digits, '.', '_' or '-' (starting with a letter or digit), not ${JSON.stringify(name)}`);
  return name;
}

/**
 * The distribution of a run: checks the options and picks the queue by the URL's scheme. The
 * broker is reached only when a source opens its queue.
 */
/** Checks that `url` names a work queue sluice can use; returns its scheme (`redis:`, `nats:`, ...). */
export function checkQueueUrl(url: string, what: string): string {
  let protocol: string;
  try {
    protocol = new URL(url).protocol;
  } catch {
    throw new Error(`${what}: ${safeUrl(url)} is not a URL; give redis://host:port or nats://host:port`);
  }
  if (!["redis:", "rediss:", "nats:", "tls:"].includes(protocol)) {
    throw new Error(`${what}: ${safeUrl(url)}: the work queue is a Redis stream (redis://, rediss://) or a NATS JetStream stream (nats://), not ${protocol.replace(/:$/, "")}`);
  }
  return protocol;
}

export function createDistribution(options: DistributeOptions): Distribution {
  const { url } = options;
  const protocol = checkQueueUrl(url, "distribute");
  if (options.job === undefined) throw new Error("distribute: a job name is required (job), the same in every worker of the job");
  const job = checkJobName(options.job, "distribute: the job name");
  const splitBytes = Math.floor(options.splitBytes ?? 64 * 1024 * 1024);
  if (!(splitBytes >= 4096)) throw new Error(`distribute: splitBytes must be at least 4096, not ${options.splitBytes}`);
  const leaseMs = Math.floor(options.leaseMs ?? 60_000);
  if (!(leaseMs >= 300)) throw new Error(`distribute: leaseMs must be at least 300, not ${options.leaseMs}`);
  // Host and pid alone are not unique: containers on the host network share a host name and
  // often run as pid 1. Two workers under one name would each take the other's splits for its own.
  const worker = options.worker ?? `${hostname()}-${process.pid}-${randomBytes(3).toString("hex")}`;
  const settings = { url, job, leaseMs, worker };
  const opener: (settings: QueueSettings) => Promise<SplitQueue> =
    protocol === "redis:" || protocol === "rediss:"
      ? async (s) => (await import("./redis.ts")).openRedisQueue(s, () => {})
      : async (s) => (await import("./jetstream.ts")).openJetStreamQueue(s, () => {});
  const queues = new Map<string, Promise<SplitQueue>>();
  return {
    job,
    worker,
    splitBytes,
    leaseMs,
    endedEarly: false,
    open(key) {
      let queue = queues.get(key);
      if (!queue) {
        queue = opener({ ...settings, key });
        queues.set(key, queue);
        // A queue that could not be opened is tried again by the next round.
        queue.catch(() => queues.delete(key));
      }
      return queue;
    },
    async state() {
      const states = await Promise.all([...queues.values()].map(async (queue) => (await queue).state()));
      return states.includes("ready") ? "ready" : states.includes("held") ? "held" : "done";
    },
    async close() {
      const opened = await Promise.allSettled([...queues.values()]);
      queues.clear();
      await Promise.all(opened.map((o) => (o.status === "fulfilled" ? o.value.close() : undefined)));
    },
  };
}
