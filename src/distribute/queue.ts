/**
 * Distributed batch runs: the inputs of a file source cut into splits (whole files, or byte ranges
 * of large NDJSON and CSV files cut at record boundaries) and shared by any number of worker
 * processes through a work queue on a broker (a Redis stream with a consumer group, or a NATS
 * JetStream work-queue stream).
 *
 * A split is taken like a broker message and acknowledged like one: only once every record read
 * from it is durable (in a committed Parquet file or a committed dead letter). A worker that dies
 * stops keeping its splits alive; after the lease another worker takes them over, and reads them
 * as *redelivered*: each record is looked up in the ledgers of what is committed (the dataset's
 * footers, the dead-letter files), so what the dead worker committed is not written twice. Split
 * boundaries are fixed when the job is listed, so every delivery of a split holds the same
 * records, under the same input name and line numbers as a single process reading the file.
 */
import { safeUrl as shownUrl } from "../io/credentials.ts";

/** One piece of the job: a byte range of one input, with the number of lines before it. */
export interface Split {
  /** The split's place in the job, from 1: the order of listing (inputs by name, then by offset). */
  readonly seq: number;
  /** The input's path or `s3://` URL, as the source names it on positions. */
  readonly input: string;
  /** The input's size when listed, and its version (a file's mtime, an object's ETag): a changed input fails the run. */
  readonly size: number;
  readonly version: string;
  /** First byte of the split, and the byte after its last (`size` for the last split). */
  readonly start: number;
  readonly end: number;
  /** Lines (line feeds) before `start`: the first record of the split is on line `line + 1`. */
  readonly line: number;
  /** True when the input cannot be cut (compressed, a JSON document): read whole, from its start. */
  readonly whole: boolean;
}

/** A split one worker holds, from its take until its acknowledgement. */
export interface Taken {
  readonly split: Split;
  /**
   * Set when another worker held it before (it died, or lost its lease): a moment
   * (`performance.now()`) after which every file that worker committed exists. The records are
   * then looked up in the ledgers (see `Position.redelivered`).
   */
  readonly redelivered: number | undefined;
}

/** The work queue of one source of a distributed job. */
export interface SplitQueue {
  /** Where it is, for messages (no credentials). */
  readonly where: string;
  /**
   * The next split to read: a new one, or one a dead worker held. Lists the job first when no
   * worker has (or the one that began died): `list` yields the splits in order. Resolves
   * undefined when there is nothing to take now (every split listed and given out) or when
   * `stopped()`.
   */
  take(list: () => AsyncIterable<Split>, stopped: () => boolean): Promise<Taken | undefined>;
  /**
   * Where the job stands, for a worker whose pipeline has ended: `done` once every split is
   * acknowledged; `ready` when there is a split to take (one a dead worker held, now past its
   * lease: it is taken and kept for the next `take`); `held` while other workers hold the rest.
   */
  state(): Promise<"done" | "ready" | "held">;
  /**
   * Throws when this worker may have lost a split it holds to another worker (its keep-alives did
   * not reach the broker for most of the lease): called right before a file commits, so nothing
   * is committed twice.
   */
  assertHeld(): void;
  /**
   * Gives a split back at once for another worker to take (this one stopped inside it), instead of
   * after the lease. Call it only once nothing more of it can commit here.
   */
  release(taken: Taken): Promise<void>;
  /** Acknowledges a split whose records are all durable. */
  ack(taken: Taken): Promise<void>;
  /** Stops keeping splits alive and closes the connections; splits not acknowledged go to another worker after the lease. */
  close(): Promise<void>;
  /** Told when this worker lost a split it holds: set by the source that reads from the queue now. */
  onLost: (error: Error) => void;
}

/** The queue's URL as it may be shown: without its password (nor a NATS user name, which may be a token). */
export function safeUrl(url: string): string {
  return shownUrl(url, { hideUser: /^(nats|tls):/i.test(url) });
}

/** A short stable hash of a text (FNV-1a, 52 bits, base 36): queue keys from a source's inputs. */
export function shortHash(text: string): string {
  let hash = 0xcbf29ce484222325n;
  const bytes = new TextEncoder().encode(text);
  for (const byte of bytes) hash = ((hash ^ BigInt(byte)) * 0x100000001b3n) & 0xfffffffffffffn;
  return hash.toString(36);
}

/** What a queue implementation is opened with. */
export interface QueueSettings {
  readonly url: string;
  readonly job: string;
  /** The source's key within the job. */
  readonly key: string;
  readonly leaseMs: number;
  readonly worker: string;
}

/** A split as the queue carries it: JSON. */
export function encodeSplit(split: Split): string {
  return JSON.stringify(split);
}

/** A split read back from the queue; throws, naming the queue, on anything else. */
export function decodeSplit(text: string, where: string): Split {
  let value: Partial<Split>;
  try {
    value = JSON.parse(text);
  } catch {
    throw new Error(`distribute: the work queue ${where} holds a message that is not a split: ${text.slice(0, 200)}`);
  }
  const numbers = ["seq", "size", "start", "end", "line"] as const;
  if (typeof value.input !== "string" || typeof value.version !== "string" || typeof value.whole !== "boolean" || numbers.some((k) => !Number.isSafeInteger(value[k]))) {
    throw new Error(`distribute: the work queue ${where} holds a message that is not a split: ${text.slice(0, 200)}`);
  }
  return value as Split;
}
