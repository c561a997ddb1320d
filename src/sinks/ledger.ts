/**
 * Ledgers of what is durable, read from what is committed: which records (by input and line) a
 * dataset's Parquet files hold, and which a dead-letter folder holds.
 *
 * A broker gives a message it did not see acknowledged to a reader again: after a crash, after a
 * worker of the group died, after its connection dropped. Files are committed before their
 * messages are acknowledged, so such a message may already be in a committed file (or dead
 * letter), written by this worker or by another one writing the same folder. Every committed
 * Parquet file says which lines it holds in its key-value metadata (`sluice.sources`: ranges of
 * lines per input, for the file's partition), and files appear only by an atomic rename, as do
 * dead-letter files: so the committed files themselves are the ledger, shared by every worker,
 * with nothing else to keep in step.
 *
 * Records a broker delivered again are looked up, and so are first deliveries, as of the reader's
 * connection (a broker may have forgotten what it delivered: see `HeldMessagesOptions` in
 * src/sources/broker.ts). A ledger reads the files it has not read before; a record not found
 * makes it look again unless it already looked after the record's moment (`receivedAt`): every
 * file an earlier reader committed of it was committed by then, so one look after it is enough.
 *
 * Reads are synchronous: the sink asks while it appends a record, and a look happens only for a
 * record not found whose moment is later than the last look: once per redelivered batch, once
 * per connection for first deliveries.
 *
 * A distributed job's files and dead letters name the job (`sluice.job`, a dead letter's `job`),
 * and its workers look up only their own job's: an input is known by its path, and a later job
 * over a file rewritten at the same path, writing into the same folders, holds other records on
 * the same lines.
 */
import { openSync, readdirSync, readFileSync, readSync, closeSync, fstatSync } from "node:fs";
import { join, sep } from "node:path";
import { decodePartitionText } from "../dataset/files.ts";
import { listDeadLetterFilesSync } from "../deadletter/read.ts";
import type { Flow } from "../flow/flow.ts";
import { decodeFileMetaData } from "../parquet/footer.ts";
import { NULL_PARTITION } from "../parquet/partition.ts";

/** The key an input's lines are kept under: its name, within the job that wrote them when there is one. */
function scoped(source: string, job: string | undefined): string {
  // A job name holds no NUL (checkJobName): the two parts cannot run together.
  return job === undefined ? source : `${job}\u0000${source}`;
}

/** Ranges of lines (unsorted, overlapping or not), found by binary search once sorted. */
export class Ranges {
  #firsts: number[] = [];
  #lasts: number[] = [];
  /** `#reach[i]`: the highest last line among ranges 0..i (ranges may overlap). */
  #reach: number[] = [];
  #sorted = true;

  add(first: number, last: number): void {
    const n = this.#firsts.length;
    if (n > 0 && first < (this.#firsts[n - 1] as number)) this.#sorted = false;
    this.#firsts.push(first);
    this.#lasts.push(last);
    this.#reach.push(Math.max(last, n > 0 ? (this.#reach[n - 1] as number) : last));
  }

  has(line: number): boolean {
    if (!this.#sorted) this.#sort();
    const firsts = this.#firsts;
    let low = 0;
    let high = firsts.length - 1;
    // The last range starting at or before `line`.
    while (low <= high) {
      const mid = (low + high) >>> 1;
      if ((firsts[mid] as number) <= line) low = mid + 1;
      else high = mid - 1;
    }
    for (let i = high; i >= 0 && (this.#reach[i] as number) >= line; i--) if ((this.#lasts[i] as number) >= line) return true;
    return false;
  }

  #sort(): void {
    const order = this.#firsts.map((_, i) => i).sort((a, b) => (this.#firsts[a] as number) - (this.#firsts[b] as number));
    const firsts = order.map((i) => this.#firsts[i] as number);
    const lasts = order.map((i) => this.#lasts[i] as number);
    this.#firsts = [];
    this.#lasts = [];
    this.#reach = [];
    this.#sorted = true;
    for (let i = 0; i < firsts.length; i++) this.add(firsts[i] as number, lasts[i] as number);
  }
}

/**
 * What the committed Parquet files of a dataset folder hold: for each partition (as the sink keys
 * it: its values as a JSON array of texts, `["2024-03-01"]`; `[]` when not partitioned), input and
 * line, whether a committed file holds that record. Read from the files' footers.
 *
 * Files that are not sluice's, or whose metadata is broken, claim nothing (a record is then
 * written again rather than lost). Hidden names (`.` or `_` first: temporary files, staging
 * folders) are not read.
 *
 * @example
 * const ledger = new DatasetLedger("out/events");
 * ledger.has('["2024-03-01"]', "jetstream:EVENTS", 1234); // true once a committed file holds it
 */
export class DatasetLedger {
  readonly #read = new Set<string>();
  readonly #ranges = new Map<string, Map<string, Ranges>>();
  /** When it last looked at the folder (`performance.now()`). */
  #lookedAt = Number.NEGATIVE_INFINITY;

  constructor(readonly folder: string) {}

  /**
   * True when a committed file of partition `partitionKey` holds line `line` of `source`, written
   * by distributed job `job` (or, with no job, outside distributed runs). Not found, it looks at
   * the folder again (files committed since), unless it already looked after `receivedAt`
   * (`performance.now()` when the record was received; default: always look).
   */
  has(partitionKey: string, source: string, line: number, receivedAt = Number.POSITIVE_INFINITY, job?: string): boolean {
    const key = scoped(source, job);
    if (this.#find(partitionKey, key, line)) return true;
    if (this.#lookedAt > receivedAt) return false;
    this.refresh();
    return this.#find(partitionKey, key, line);
  }

  #find(partitionKey: string, source: string, line: number): boolean {
    return this.#ranges.get(partitionKey)?.get(source)?.has(line) ?? false;
  }

  /** Reads the footers of the files committed since the last look. */
  refresh(): void {
    this.#lookedAt = performance.now();
    let names: string[];
    try {
      names = readdirSync(this.folder, { recursive: true, encoding: "utf8" });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return;
      throw error;
    }
    for (const name of names) {
      if (!name.endsWith(".parquet") || this.#read.has(name)) continue;
      const parts = name.split(sep);
      if (parts.some((part) => part.startsWith(".") || part.startsWith("_"))) continue;
      const claims = claimsOf(join(this.folder, name));
      // Gone between the listing and the read (replaced by an overwrite): nothing to learn from it.
      if (claims === "missing") continue;
      this.#read.add(name);
      if (claims.sources.length === 0) continue;
      const key = partitionKeyOf(parts.slice(0, -1));
      let bySource = this.#ranges.get(key);
      if (!bySource) this.#ranges.set(key, (bySource = new Map()));
      for (const range of claims.sources) {
        const source = scoped(range.source, claims.job);
        let ranges = bySource.get(source);
        if (!ranges) bySource.set(source, (ranges = new Ranges()));
        ranges.add(range.firstLine, range.lastLine);
      }
    }
  }
}

/**
 * What a dead-letter folder holds: for each input and line, whether a committed dead-letter file
 * has its entry. Lines that are not JSON objects with a `source` and a `line` are passed over.
 *
 * @example
 * const ledger = new DeadLetterLedger("out/dead-letter");
 * ledger.has("jetstream:EVENTS", 7);
 */
export class DeadLetterLedger {
  readonly #read = new Set<string>();
  readonly #lines = new Map<string, Set<number>>();
  #lookedAt = Number.NEGATIVE_INFINITY;

  constructor(readonly folder: string) {}

  /**
   * True when a committed dead letter of distributed job `job` (or, with no job, of a run outside
   * one) names line `line` of `source`; looks again as {@link DatasetLedger.has} does.
   */
  has(source: string, line: number, receivedAt = Number.POSITIVE_INFINITY, job?: string): boolean {
    const key = scoped(source, job);
    if (this.#lines.get(key)?.has(line)) return true;
    if (this.#lookedAt > receivedAt) return false;
    this.refresh();
    return this.#lines.get(key)?.has(line) ?? false;
  }

  /** Reads the dead-letter files committed since the last look. */
  refresh(): void {
    this.#lookedAt = performance.now();
    for (const name of listDeadLetterFilesSync(this.folder)) {
      if (this.#read.has(name)) continue;
      let text: string;
      try {
        text = readFileSync(join(this.folder, name), "utf8");
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "ENOENT") continue;
        throw error;
      }
      this.#read.add(name);
      for (const entry of text.split("\n")) {
        if (entry === "") continue;
        const found = sourceAndLine(entry);
        if (!found) continue;
        const key = scoped(found.source, found.job);
        let lines = this.#lines.get(key);
        if (!lines) this.#lines.set(key, (lines = new Set()));
        lines.add(found.line);
      }
    }
  }
}

// Per run, keyed by the flow object: the dead-letter folders its `deadLetter` operators write.
const deadLetterLedgers = new WeakMap<Flow, DeadLetterLedger[]>();

/**
 * Registers a dead-letter folder of the run, so broker sources can tell a redelivered message
 * whose dead letter is committed already (see {@link alreadyDeadLettered}). The `deadLetter`
 * operator calls it for a folder target.
 */
export function watchDeadLetters(flow: Flow, folder: string): void {
  const ledgers = deadLetterLedgers.get(flow) ?? [];
  if (!ledgers.some((ledger) => ledger.folder === folder)) {
    const ledger = new DeadLetterLedger(folder);
    ledgers.push(ledger);
    flow.ledgers.add(ledger);
  }
  deadLetterLedgers.set(flow, ledgers);
  flow.deadLettered ??= (source, line, receivedAt) => alreadyDeadLettered(flow, source, line, receivedAt);
}

/**
 * True when line `line` of `source` has a committed dead letter in a folder of the run (see
 * {@link watchDeadLetters}), written in the run's distributed job if it is one. Meant for
 * redelivered records only, received at `receivedAt`.
 */
export function alreadyDeadLettered(flow: Flow, source: string, line: number, receivedAt: number): boolean {
  const job = flow.distribution?.job;
  return deadLetterLedgers.get(flow)?.some((ledger) => ledger.has(source, line, receivedAt, job)) ?? false;
}

/** One range of a file's `sluice.sources`. */
interface SourceRange {
  readonly source: string;
  readonly firstLine: number;
  readonly lastLine: number;
}

/** What a Parquet file claims: its line ranges, and the distributed job that wrote it. */
interface Claims {
  readonly sources: SourceRange[];
  readonly job: string | undefined;
}

const NO_CLAIMS: Claims = { sources: [], job: undefined };

/**
 * The line ranges a Parquet file's footer claims (`sluice.sources`) and the job it names
 * (`sluice.job`); none when it claims none or cannot be read as Parquet, "missing" when the file
 * is gone.
 */
function claimsOf(path: string): Claims | "missing" {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return "missing";
    throw error;
  }
  try {
    const size = fstatSync(fd).size;
    if (size < 12) return NO_CLAIMS;
    const tail = Buffer.alloc(8);
    readSync(fd, tail, 0, 8, size - 8);
    if (tail.toString("latin1", 4, 8) !== "PAR1") return NO_CLAIMS;
    const length = tail.readUInt32LE(0);
    if (length > size - 12) return NO_CLAIMS;
    const footer = Buffer.alloc(length);
    readSync(fd, footer, 0, length, size - 8 - length);
    const metadata = decodeFileMetaData(footer).keyValueMetadata;
    const value = metadata.find((entry) => entry.key === "sluice.sources")?.value;
    if (value === undefined) return NO_CLAIMS;
    return { sources: rangesIn(value), job: metadata.find((entry) => entry.key === "sluice.job")?.value ?? undefined };
  } catch {
    // Not Parquet, or a footer that does not decode: it claims nothing.
    return NO_CLAIMS;
  } finally {
    closeSync(fd);
  }
}

/** The well-formed ranges of a `sluice.sources` value; anything else in it is passed over. */
function rangesIn(text: string): SourceRange[] {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return [];
  }
  if (!Array.isArray(value)) return [];
  const ranges: SourceRange[] = [];
  for (const item of value) {
    if (typeof item !== "object" || item === null) continue;
    const { source, firstLine, lastLine } = item as Record<string, unknown>;
    if (typeof source !== "string" || !Number.isSafeInteger(firstLine) || !Number.isSafeInteger(lastLine)) continue;
    if ((firstLine as number) > (lastLine as number)) continue;
    ranges.push({ source, firstLine: firstLine as number, lastLine: lastLine as number });
  }
  return ranges;
}

/** The partition key (values as a JSON array of texts) of a file's folders, `key=value` each. */
function partitionKeyOf(folders: readonly string[]): string {
  const values: (string | null)[] = [];
  for (const folder of folders) {
    const eq = folder.indexOf("=");
    if (eq <= 0) continue;
    const value = folder.slice(eq + 1);
    values.push(value === NULL_PARTITION ? null : decodePartitionText(value));
  }
  return JSON.stringify(values);
}

/** `source` and `line` of a dead-letter line, without trusting its shape. */
function sourceAndLine(text: string): { source: string; line: number; job: string | undefined } | undefined {
  try {
    const entry = JSON.parse(text) as unknown;
    if (typeof entry !== "object" || entry === null) return undefined;
    const { source, line, job } = entry as Record<string, unknown>;
    if (typeof source !== "string" || !Number.isSafeInteger(line) || (line as number) <= 0) return undefined;
    return { source, line: line as number, job: typeof job === "string" ? job : undefined };
  } catch {
    return undefined;
  }
}
