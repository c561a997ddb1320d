/**
 * A file source in a distributed run: its inputs cut into splits, and the splits taken from the
 * job's work queue, read, and acknowledged once every record read from them is durable (see
 * src/distribute/queue.ts for the model).
 *
 * Cutting reads each input once, front to back, without parsing: it counts line feeds, so a split
 * knows the line its records begin on and every record keeps the input name and line a single
 * process would give it (dead letters, the dataset's `sluice.sources`, the ledgers). An NDJSON
 * input is cut after any line feed; a CSV input only after a line feed that ends a record (the
 * same byte grammar as the reader's, so a quoted field holding line breaks is never cut); a
 * compressed input or a JSON document is one split.
 */
import { type FileHandle, open } from "node:fs/promises";
import { watchDurable, durableUpTo } from "../flow/durable.ts";
import type { Flow } from "../flow/flow.ts";
import { Input } from "../flow/position.ts";
import type { Split, SplitQueue, Taken } from "../distribute/queue.ts";
import { objectReader, type S3Object, type S3Options, type ObjectReadOptions } from "../io/s3.ts";
import { FIELD_START, type ByteScan, scanRecord } from "./csv/records.ts";

/** Where a source's inputs may be cut: after any line feed, after a CSV record, or nowhere. */
export type SplitRule = { readonly kind: "lines" } | { readonly kind: "csv"; readonly delimiter: number; readonly quote: number } | { readonly kind: "whole" };

/** How an input is read while it is cut: a ranged read, and what to close after. */
interface Bytes {
  readonly size: number;
  readonly version: string;
  readAt(buffer: Uint8Array, position: number): Promise<number>;
  close(): Promise<void> | void;
}

/** First bytes of the compressions a file source reads: such an input is one split. */
const COMPRESSED = [
  [0x1f, 0x8b],
  [0x28, 0xb5, 0x2f, 0xfd],
];

const CHUNK = 4 * 1024 * 1024;

/**
 * The splits of `targets`, in order (`seq` from 1). An input of at most `splitBytes` is one split.
 * Throws, naming the input, when one cannot be read or is not a regular file.
 */
export async function* cutSplits(
  who: string,
  targets: readonly (string | S3Object)[],
  rule: SplitRule,
  splitBytes: number,
  s3?: S3Options & ObjectReadOptions,
): AsyncGenerator<Split> {
  let seq = 0;
  for (const target of targets) {
    const name = typeof target === "string" ? target : target.url;
    const bytes = await openBytes(who, target, s3);
    try {
      const head = new Uint8Array(4);
      const n = await bytes.readAt(head, 0);
      const compressed = COMPRESSED.some((magic) => n >= magic.length && magic.every((b, i) => head[i] === b));
      const one = { input: name, size: bytes.size, version: bytes.version };
      if (rule.kind === "whole" || compressed || bytes.size <= splitBytes) {
        yield { seq: ++seq, ...one, start: 0, end: bytes.size, line: 0, whole: rule.kind === "whole" || compressed };
        continue;
      }
      for await (const [start, end, line] of cutPoints(bytes, rule, splitBytes)) yield { seq: ++seq, ...one, start, end, line, whole: false };
    } finally {
      await bytes.close();
    }
  }
}

/** `[start, end, lines before start]` of each split of one input. */
async function* cutPoints(bytes: Bytes, rule: Exclude<SplitRule, { kind: "whole" }>, splitBytes: number): AsyncGenerator<[number, number, number]> {
  const buffer = new Uint8Array(CHUNK);
  const scan: ByteScan = { state: FIELD_START, newlines: 0 };
  let start = 0;
  let startLine = 0;
  /** Line feeds before `base`. */
  let lines = 0;
  let base = 0;
  while (base < bytes.size) {
    const n = await bytes.readAt(buffer, base);
    if (n === 0) break;
    // The reader skips a byte order mark, so a quote right after it opens a field: scan as it reads.
    let i = base === 0 && rule.kind === "csv" && n >= 3 && buffer[0] === 0xef && buffer[1] === 0xbb && buffer[2] === 0xbf ? 3 : 0;
    while (i < n) {
      // The next place a cut may go: after a line feed (NDJSON) or after a record's line feed (CSV).
      let next: number;
      if (rule.kind === "lines") {
        next = buffer.indexOf(10, i);
        if (next < 0 || next >= n) {
          lines += countLineFeeds(buffer, i, n);
          break;
        }
        lines += countLineFeeds(buffer, i, next) + 1;
        next += 1;
      } else {
        const before = scan.newlines;
        next = scanRecord(buffer, i, n, scan, rule.delimiter, rule.quote);
        lines += scan.newlines - before;
        if (next < 0) break;
        lines += 1;
      }
      i = next;
      const at = base + next;
      if (at - start >= splitBytes && at < bytes.size) {
        yield [start, at, startLine];
        start = at;
        startLine = lines;
      }
      // Far from the next cut: count the rest of this stretch at once instead of line by line.
      if (rule.kind === "lines") {
        const skipTo = Math.min(n, start + splitBytes - base);
        if (skipTo > i + 1) {
          lines += countLineFeeds(buffer, i, skipTo - 1);
          i = skipTo - 1;
        }
      }
    }
    base += n;
  }
  yield [start, bytes.size, startLine];
}

function countLineFeeds(buffer: Uint8Array, from: number, to: number): number {
  let count = 0;
  for (let i = buffer.indexOf(10, from); i >= 0 && i < to; i = buffer.indexOf(10, i + 1)) count++;
  return count;
}

async function openBytes(who: string, target: string | S3Object, s3: (S3Options & ObjectReadOptions) | undefined): Promise<Bytes> {
  if (typeof target !== "string") {
    const reader = objectReader(target, s3);
    return {
      size: target.size,
      version: target.etag,
      readAt: (buffer, position) => reader.readAt(buffer, 0, Math.min(buffer.length, target.size - position), position),
      close: () => reader.close(),
    };
  }
  let handle: FileHandle;
  try {
    handle = await open(target, "r");
  } catch (error) {
    throw new Error(`${who}: cannot open ${target}: ${(error as Error).message}`, { cause: error });
  }
  const info = await handle.stat();
  if (!info.isFile()) {
    await handle.close();
    throw new Error(`${who}: ${target} is not a regular file (a pipe?): a distributed run reads only files and objects, which every worker can open`);
  }
  return {
    size: info.size,
    version: fileVersion(info),
    readAt: async (buffer, position) => (await handle.read(buffer, 0, buffer.length, position)).bytesRead,
    close: () => handle.close(),
  };
}

/** A local file's version as a split records it: its modification time and size. */
export function fileVersion(info: { mtimeMs: number; size: number }): string {
  return `${Math.floor(info.mtimeMs)}:${info.size}`;
}

/** What {@link readSplits} needs of the file source it runs in. */
export interface SplitReader {
  readonly flow: Flow;
  readonly who: string;
  /** Splits read at the same time (the source's `concurrency`). */
  readonly concurrency: number;
  /** Lists the splits, when this worker lists the job. */
  readonly list: () => AsyncIterable<Split>;
  /** Reads one split, stamping its records with `input`. */
  readonly read: (split: Split, input: Input) => Promise<void>;
  readonly stopped: () => boolean;
}

/**
 * Splits read to their end and not yet acknowledged, with what acknowledges each; and splits whose
 * reading stopped part-way (a stop, a failure), given back when the run has ended.
 */
export interface ReadSplits {
  readonly read: Map<Taken, () => void>;
  readonly unfinished: Set<Taken>;
}

/**
 * Takes splits from `queue` and reads them until there is nothing to take (or the run stops). A
 * split is acknowledged once read to its end and every record of it is durable; `read` keeps those
 * read to their end and not yet acknowledged, which the run acknowledges when it completes (every
 * record has then reached its end: committed, dead-lettered, or dropped by an operator such as
 * `filter`). A split whose reading stopped part-way is left for another take (its records are
 * found in the ledgers).
 */
export async function readSplits(queue: SplitQueue, reader: SplitReader, splits: ReadSplits): Promise<void> {
  const { flow } = reader;
  const lane = async () => {
    for (;;) {
      if (reader.stopped()) return;
      const taken = await queue.take(reader.list, reader.stopped);
      if (!taken) return;
      const input = new Input(flow, taken.split.input, taken.redelivered);
      splits.unfinished.add(taken);
      await reader.read(taken.split, input);
      if (reader.stopped()) return;
      splits.unfinished.delete(taken);
      acknowledgeWhenDurable(queue, taken, input, flow, splits.read);
    }
  };
  await Promise.all(Array.from({ length: reader.concurrency }, lane));
}

/** Acknowledges `taken` once every record `input` read from it is durable (or when the run completes). */
function acknowledgeWhenDurable(queue: SplitQueue, taken: Taken, input: Input, flow: Flow, read: Map<Taken, () => void>): void {
  const last = input.lastLine;
  const ack = () => {
    if (!read.delete(taken)) return;
    stop();
    const sent = queue.ack(taken);
    flow.settling.add(sent);
    sent.then(
      () => flow.settling.delete(sent),
      () => flow.settling.delete(sent),
    );
  };
  read.set(taken, ack);
  const stop = watchDurable(input, (upTo) => {
    if (upTo >= last) ack();
  });
  // Nothing of it may be held any more (every record dead-lettered and committed, or skipped).
  if (durableUpTo(input) >= last) ack();
}
