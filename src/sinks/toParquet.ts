/**
 * `toParquet`: the sink that turns records into a hive-partitioned Parquet dataset.
 */
import { existsSync, readdirSync, renameSync, rmdirSync, rmSync } from "node:fs";
import { fsyncFolder } from "../io/fsync.ts";
import { mkdir, readdir, rename, rm, stat } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { Observable, type OperatorFunction } from "rxjs";
import type * as v from "valibot";
import { RowBuffer } from "../arrow/rows.ts";
import { modeUnder } from "../checkpoint/checkpoint.ts";
import { announceDurable, checkLeases, hold } from "../flow/durable.ts";
import { currentFlow, holdGate, joinFlow, observeCommitLatency, positionIn, sendToDeadLetter, withFlow } from "../flow/flow.ts";
import { countOutput, type Input, type Position } from "../flow/position.ts";
import { acquireLock, acquireSharedLock, type Lock, LockedError, lockPathOf } from "../io/lock.ts";
import type { EncodeOptions } from "../parquet/encode.ts";
import { DictionaryChoice } from "../parquet/dictionary.ts";
import { createEncoders } from "../parquet/encoders.ts";
import { PartFile } from "../parquet/partFile.ts";
import type { S3Options } from "../io/s3.ts";
import { type BucketTarget, isS3Url, objectUrl, openBucketTarget } from "./bucket.ts";
import { ParquetWriteError } from "../parquet/errors.ts";
import { partitionKeyProblem, partitionSegment } from "../parquet/partition.ts";
import { type ColumnSpec, columnsOf, SchemaError } from "../schema/columns.ts";
import { fieldOf, inheritedName } from "../schema/fields.ts";
import { DatasetLedger } from "./ledger.ts";

/** What to do when the dataset folder already holds Parquet files. */
export type WriteMode = "error" | "overwrite" | "append";

/** Options of {@link toParquet}. */
export interface ParquetSinkOptions<T> {
  /** The valibot object schema of the records written: it decides the columns and their types. */
  readonly schema: v.GenericSchema<unknown, T>;
  /** Fields whose values name the `key=value` folders, outermost first. */
  readonly partitionBy?: readonly (keyof T & string)[];
  /**
   * `error` (default) refuses to write into a folder that holds Parquet files; `overwrite`
   * replaces the dataset once this run completes (see {@link toParquet}); `append` adds files
   * named with the run id next to the existing ones.
   */
  readonly mode?: WriteMode;
  /** Default `zstd`. */
  readonly compression?: EncodeOptions["compression"];
  /** A row group is written once it holds this many rows (default 131,072). */
  readonly rowGroupSize?: number;
  /**
   * A row group is written once its rows take this many bytes in memory as Arrow buffers
   * (default 4 MiB), or earlier when the memory budget needs the room.
   */
  readonly rowGroupBytes?: number;
  /** A partition's file is committed once it holds this many rows (default: no limit). */
  readonly maxFileRows?: number;
  /**
   * A partition's file is committed once it has this many bytes of Parquet on disk (default
   * 128 MiB), checked as row groups land: row groups still being encoded can take it past.
   */
  readonly maxFileBytes?: number;
  /** A partition's file is committed at most this long after it was opened, even with no new records (default 60 s). */
  readonly maxFileAgeMs?: number;
  /**
   * Bytes all open partition buffers and row groups being encoded may hold together (default
   * 16 MiB). When it is full the largest buffers become row groups, and the source waits until
   * encodes finish. Open files keep only their row groups' metadata in memory (about 100 bytes a
   * column a row group; a file whose metadata reaches 4 MiB is committed).
   */
  readonly memoryBudget?: number;
  /** Encoder worker threads (default 1; 0 encodes on the main thread). */
  readonly encoders?: number;
  /**
   * Let several sinks (the workers of a broker's consumer group, in this process or others)
   * append to the folder at once: mode `append` only. See "Several writers" in {@link toParquet}.
   */
  readonly shared?: boolean;
  /**
   * For a dataset in a bucket (`toParquet("s3://bucket/prefix", …)`): endpoint and credentials;
   * by default from the environment (`S3_ENDPOINT`/`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, …).
   */
  readonly s3?: S3Options;
}

/** A committed file, emitted once it is durable under its final name. */
export interface Commit {
  /**
   * The file. When an `overwrite` replaces a dataset, the file is durable in the staging folder
   * and is at this path once the run completes.
   */
  readonly path: string;
  /** The partition's values by key, as written in the folder names (null for a null value). */
  readonly partition: Readonly<Record<string, string | null>>;
  readonly rows: number;
  readonly bytes: number;
  /**
   * For each input, ranges of lines (or record numbers): every record of this partition from
   * that input whose line is in a range is in this file, and no other. Usually one range per
   * input; an operator that reorders records (`mergeMap`) can split it.
   */
  readonly sources: readonly CommitRange[];
}

/** Lines of one input held by a file. */
export interface CommitRange {
  readonly source: string;
  readonly firstLine: number;
  readonly lastLine: number;
}

interface Span {
  first: number;
  last: number;
}

/**
 * A partition's open file: the rows of its current row group in `buffer`, its earlier row groups
 * in `part` (written to its temporary file, or being encoded).
 */
interface OpenPartition {
  /** The partition's values as JSON: how the checkpoint names it. */
  readonly key: string;
  /** How the sink finds it among the open ones (see lookupKeyOf). */
  readonly lookup: string | symbol;
  /** The partition's folder relative to the dataset's (`""` when not partitioned). */
  readonly subfolder: string;
  readonly values: Record<string, string | null>;
  /** The current row group's rows; none between a row group written and the next record. */
  buffer: RowBuffer | undefined;
  readonly firstIndex: number;
  readonly openedAt: number;
  /** Bytes of `buffer` when last measured. */
  bytes: number;
  /** The file's row groups written or being encoded; created with the first. */
  part: PartFile | undefined;
  /** Rows in `part`'s row groups. */
  fileRows: number;
  /** Lines of each input in this buffer, as ascending spans (see {@link claim}). */
  readonly spans: Map<Input, Span[]>;
  /** Lines of this partition the sink dead-lettered while the buffer was open: not in the file. */
  readonly rejected: Map<Input, number[]>;
  /** The input of the last record, and its spans: most records come from the same input as the one before. */
  lastInput: Input | undefined;
  lastSpans: Span[] | undefined;
  /** The highest line of `lastInput` an earlier file of this partition claimed (fixed while the buffer is open). */
  lastFloor: number;
}

/**
 * Writes records as a hive-partitioned Parquet dataset under `folder` and emits a {@link Commit}
 * for every file once it is durable.
 *
 * Records are appended straight into Arrow column buffers, one buffer per open partition. A
 * buffer becomes a row group of the partition's open file when it reaches `rowGroupSize` rows or
 * `rowGroupBytes`, or when the memory budget needs the room: row groups are encoded (zstd by
 * default) on a worker thread and appended to the file's temporary name (see partFile.ts). A file
 * is committed when it reaches `maxFileBytes` on disk or `maxFileRows`, when it is older than
 * `maxFileAgeMs`, or when the source completes: footer, fsync, its final name. File names are
 * `part-<index>.parquet`, where index is the position of the file's first record among the
 * records the sink received (rolled by `maxFileRows`, the same input gives the same names; by size
 * or age, boundaries depend on timing). Partition columns are written inside the files as well as in the folder names.
 *
 * A record whose value does not fit its column (a string in an integer column, a missing required
 * field) is sent to the dead letter with stage `write`; nothing is converted.
 *
 * One writer per dataset: the sink holds the folder's lock (`.<folder>.lock` beside it) from
 * subscribe until it completes, errors or is unsubscribed (after the writes in flight land). A
 * second sink on the same folder, in this process or another, errors at subscribe with a
 * `LockedError` naming the holder (run id, pid, host, since when) and writes nothing. A lock
 * left by a process that died is taken over. A file is never committed over an existing one.
 *
 * Several writers: with `shared: true` (mode `append`), any number of sinks append to the folder
 * at once (each file is named with its run id), holding the lock shared; a sink that needs the
 * folder alone (`error`, `overwrite`, unshared) is refused while they write, and they while it does.
 * A record a broker delivered again (a worker died before acknowledging it) is skipped, counted
 * as skipped, when a committed file of the folder holds it already: every file's footer names
 * the lines it holds (see src/sinks/ledger.ts). Not in mode `overwrite`.
 *
 * `overwrite` over an existing dataset writes the new files into a staging folder beside it
 * (`.<folder>.staging-<runId>`). While the run goes on, readers of the folder see the old
 * dataset, whole and unchanged. When the run completes, two renames swap the folders (for that
 * instant the folder is missing), then the old dataset is deleted: readers see the new dataset,
 * whole. A run that fails, is unsubscribed, is killed or is stopped (a signal or an abort) leaves
 * the old dataset as it was and its own files are dropped (the next run removes what a killed one
 * left, and finishes a swap a crash cut in two); a stopped run's summary then counts none of its
 * rows as written. With no dataset to replace, `overwrite` writes in place like the other modes.
 * Under a checkpoint it also writes in place, and the old dataset is removed when the first run
 * starts: the checkpoint's later runs append to what that run committed, so its files must be
 * where the checkpoint recorded them.
 *
 * Completes once every buffer is committed. Errors with a `ParquetWriteError` when a file cannot
 * be written (disk full, permissions): rows already committed stay (except an overwrite's, see
 * above), the failing file leaves no partial file under its final name. Unsubscribing discards
 * uncommitted buffers.
 *
 * @example
 * fromNdjson("events.ndjson").pipe(
 *   validate(Event),
 *   deadLetter("out/dead-letter"),
 *   toParquet("out/events", { schema: Event, partitionBy: ["event_date"] }),
 * );
 */
export function toParquet<T>(folder: string, options: ParquetSinkOptions<T>): OperatorFunction<T, Commit> {
  const columns = columnsOf(options.schema as v.GenericSchema);
  const partitionBy: readonly string[] = options.partitionBy ?? [];
  const partitionColumns = partitionBy.map((key) => {
    const column = columns.find((c) => c.name === key);
    if (!column) throw new SchemaError(key, "is named in partitionBy but is not a field of the schema");
    const keyProblem = partitionKeyProblem(key);
    if (keyProblem !== undefined) throw new SchemaError(key, keyProblem);
    if (column.kind === "list" || column.kind === "struct" || column.kind === "json") {
      throw new SchemaError(key, `a ${column.kind} column cannot name a partition folder`);
    }
    return column;
  });
  // Which partition columns are read as the record's own only (fields.ts): decided once, not per record.
  const partitionOwn = partitionColumns.map((column) => inheritedName(column.name));
  const givenMode = options.mode ?? "error";
  // A bound of 0, a negative one or NaN never works: memoryBudget 0 held a push source's writes
  // forever, maxFileRows 0 wrote a file per row. Say so before anything runs.
  const bound = (name: string, value: number | undefined, fallback: number, atLeast: number) => {
    if (value === undefined) return fallback;
    if (typeof value !== "number" || Number.isNaN(value) || value < atLeast) {
      throw new RangeError(`toParquet("${folder}"): options.${name} must be a number >= ${atLeast}, got ${String(value)}`);
    }
    return value;
  };
  const rowGroupSize = bound("rowGroupSize", options.rowGroupSize, 131_072, 1);
  const rowGroupBytes = bound("rowGroupBytes", options.rowGroupBytes, 4 * 1024 * 1024, 1);
  const maxFileRows = bound("maxFileRows", options.maxFileRows, Number.POSITIVE_INFINITY, 1);
  const maxFileBytes = bound("maxFileBytes", options.maxFileBytes, 128 * 1024 * 1024, 1);
  const maxFileAgeMs = bound("maxFileAgeMs", options.maxFileAgeMs, 60_000, 0);
  const memoryBudget = bound("memoryBudget", options.memoryBudget, 16 * 1024 * 1024, 1);

  return function parquetSink(source) {
    return new Observable<Commit>((subscriber) => {
      const flow = currentFlow(subscriber);
      // The workers of a distributed run add to one dataset together: shared, mode append.
      const shared = options.shared === true || flow.distribution !== undefined;
      const mode: WriteMode = flow.distribution !== undefined && givenMode === "error" ? "append" : givenMode;
      // Taken before anything else: a second writer is refused before its source is read.
      const inBucket = isS3Url(folder);
      let lock: Pick<Lock, "release">;
      try {
        // A bucket has no lock: its files are named with the run id (mode append) or it is empty (mode error).
        if (inBucket) lock = { release() {} };
        else {
        if (shared && mode !== "append") {
          throw new Error(
            flow.distribution
              ? `toParquet: a distributed run adds to ${folder} from every worker: mode "${mode}" cannot be shared; use "append" (the default there)`
              : `toParquet: shared: true needs mode "append" (the folder ${folder} is written by several sinks at once), not "${mode}"`,
          );
        }
        lock = (shared ? acquireSharedLock : acquireLock)(lockPathOf(folder), { runId: flow.runId, what: `dataset folder ${folder}` });
        }
      } catch (error) {
        subscriber.error(error instanceof LockedError || !(error as NodeJS.ErrnoException)?.code ? error : new ParquetWriteError(folder, error));
        return;
      }
      const encoders = createEncoders(options.encoders ?? 1);
      // Loaded while the first rows gather, not when the first row group is due.
      encoders.warm();
      const encodeOptions: EncodeOptions = { compression: options.compression ?? "zstd", rowGroupSize };
      // Columns whose values hardly repeat are written without a dictionary (see dictionary.ts).
      const dictionary = new DictionaryChoice(columns, encodeOptions.compression);
      const open = new Map<string | symbol, OpenPartition>();
      const single = partitionColumns.length === 1 ? partitionColumns[0] : undefined;
      const writes = new Set<Promise<void>>();
      // Line ranges of files being written, until they are durable (the checkpoint's low-water mark).
      const inflightRanges = new Set<readonly CommitRange[]>();
      // Highest line of each input that an earlier file of each partition claimed (see claim()).
      const claimed = new Map<string, Map<Input, number>>();
      const checkpoint = flow.checkpoint;
      // What committed files hold, for a broker's records that may be there already (an overwrite's old files do not count).
      const ledger = mode !== "overwrite" && !inBucket ? new DatasetLedger(folder) : undefined;
      if (ledger) flow.ledgers.add(ledger);
      let lastSave = 0;
      // Rows in buffers and files being written are not durable yet: the checkpoint and sources
      // waiting to acknowledge must not move past them.
      const stopHolding = hold(flow, (note) => {
        for (const partition of open.values()) {
          for (const [input, spans] of partition.spans) for (const span of spans) note(input.name, span.first);
        }
        for (const ranges of inflightRanges) for (const r of ranges) note(r.source, r.firstLine);
      });
      // Resume points are saved after commits, at most about once a second: each save also
      // commits a dead-letter file when dead letters are waiting.
      function saveCheckpointSoon() {
        const now = Date.now();
        if (!checkpoint || now - lastSave < 1000) return;
        lastSave = now;
        checkpoint.save().catch((error) => fail(checkpointFailure(checkpoint.path, "save resume points", error)));
      }
      let received = 0;
      let bufferedBytes = 0;
      let inflightBytes = 0;
      let release: (() => void) | undefined;
      let failed = false;
      // What an overwrite's staging folder holds; `ended` once it replaced the dataset or was dropped.
      let staged: { rows: number; files: number; bytes: number; ended: boolean } | undefined;
      let readyState: "pending" | "ok" | "failed" = "pending";
      // A folder that cannot be made (a file in the way, no permission) is a write failure like any other.
      let bucket: BucketTarget | undefined;
      const prepared: Promise<Target> = inBucket
        ? openBucketTarget(folder, modeUnder(flow.checkpoint, mode), options.s3).then((target) => {
            bucket = target;
            return { root: target.localRoot, staged: false, made: false };
          })
        : prepareFolder(folder, modeUnder(flow.checkpoint, mode), flow.runId, checkpoint !== undefined, shared);
      // The folder this sink made and has not committed a file to: removed again if the run fails.
      let madeEmpty: string | undefined;
      const ready = prepared.then(
        (target) => {
          readyState = "ok";
          if (target.made && !shared) madeEmpty = folder;
          if (target.staged) staged = { rows: 0, files: 0, bytes: 0, ended: false };
          return target;
        },
        (error) => {
          readyState = "failed";
          throw error instanceof ParquetWriteError || !(error as NodeJS.ErrnoException)?.code ? error : new ParquetWriteError(folder, error);
        },
      );
      ready.catch((error) => fail(error));

      // Settles once the teardown has let go of the folder (temporary files removed, an empty
      // folder this run made gone, the lock released): `run()` reports a failure after it.
      let letGo!: () => void;
      const released = new Promise<void>((resolve) => {
        letGo = resolve;
      });

      function fail(error: unknown) {
        if (failed) return;
        failed = true;
        // `run()` reports the failure once the teardown has let go of the folder, also when the
        // folder was still being prepared (a source that failed at once, such as a missing input).
        flow.settling.add(released);
        released.then(() => flow.settling.delete(released));
        subscriber.error(error);
      }

      /**
       * The key open partitions are found by, per record: with one partition column its text
       * itself (no string is built), null being a symbol no text can equal; with several, the
       * texts as JSON, which cannot mix up `null` and `"null"` or values holding the separator.
       */
      function lookupKeyOf(record: Record<string, unknown>): string | symbol {
        return single ? (partitionText(single, fieldOf(record, single.name, partitionOwn[0] as boolean)) ?? NULL_KEY) : checkpointKeyOf(record);
      }

      /** The partition's key as the checkpoint stores it: its texts as JSON, unambiguous. */
      function checkpointKeyOf(record: Record<string, unknown>): string {
        return JSON.stringify(partitionColumns.map((column, i) => partitionText(column, fieldOf(record, column.name, partitionOwn[i] as boolean))));
      }

      function partitionOf(record: Record<string, unknown>, lookup: string | symbol): OpenPartition {
        let partition = open.get(lookup);
        if (!partition) {
          const values: Record<string, string | null> = {};
          const segments: string[] = [];
          for (const [i, column] of partitionColumns.entries()) {
            const text = partitionText(column, fieldOf(record, column.name, partitionOwn[i] as boolean));
            values[column.name] = text;
            segments.push(partitionSegment(column.name, text));
          }
          partition = {
            key: checkpointKeyOf(record),
            lookup,
            subfolder: join("", ...segments),
            values,
            buffer: new RowBuffer(columns),
            firstIndex: received,
            openedAt: Date.now(),
            bytes: 0,
            part: undefined,
            fileRows: 0,
            spans: new Map(),
            rejected: new Map(),
            lastInput: undefined,
            lastSpans: undefined,
            lastFloor: 0,
          };
          open.set(lookup, partition);
          flow.stats.openPartitions = open.size;
        }
        return partition;
      }

      function append(record: T) {
        const row = record as Record<string, unknown>;
        const position = positionIn(flow, record);
        if (!position) {
          reject(record, undefined, `a row must be an object, got ${record === null ? "null" : typeof record}`);
          return;
        }
        const input = position.input;
        let partition: OpenPartition;
        try {
          const lookup = lookupKeyOf(row);
          if (checkpoint?.alreadyWritten(open.get(lookup)?.key ?? checkpointKeyOf(row), input.name, position.line)) {
            // Resumed after a crash: an earlier run committed this row already.
            flow.stats.skipped++;
            countOutput(position);
            input.settle(position.line);
            return;
          }
          if (position.redelivered !== undefined && ledger?.has(open.get(lookup)?.key ?? checkpointKeyOf(row), input.name, position.line, position.redelivered, flow.distribution?.job)) {
            // A broker delivered it again: a committed file (this worker's or another's) holds it already.
            flow.stats.skipped++;
            countOutput(position);
            input.settle(position.line);
            return;
          }
          partition = partitionOf(row, lookup);
        } catch (error) {
          reject(record, position, (error as Error).message);
          return;
        }
        let problem: string | undefined;
        try {
          problem = (partition.buffer ??= new RowBuffer(columns)).append(row);
        } catch (error) {
          // A value no column can take without failing (nested too deep to serialise).
          problem = `the record cannot be written: ${(error as Error).message}`;
        }
        if (problem !== undefined) {
          if (partition.buffer?.rows === 0 && partition.part === undefined) {
            open.delete(partition.lookup);
            flow.stats.openPartitions = open.size;
          } else {
            const lines = partition.rejected.get(input);
            if (lines) lines.push(position.line);
            else partition.rejected.set(input, [position.line]);
          }
          reject(record, position, problem);
          return;
        }
        dictionary.add(row);
        received++;
        flow.stats.buffered++;
        claim(partition, input, position.line);
        countOutput(position);
        input.settle(position.line);
        const rows = (partition.buffer as RowBuffer).rows;
        if (rows === 1 || (rows & 1023) === 0) measure(partition);
        if (partition.fileRows + rows >= maxFileRows || (partition.part?.bytes ?? 0) >= maxFileBytes) roll(partition);
        else if (rows >= rowGroupSize || partition.bytes >= rowGroupBytes) writeRowGroup(partition);
        if (bufferedBytes > memoryBudget / 2) relieve();
        else if (bufferedBytes + inflightBytes > memoryBudget) updateGate();
      }

      function reject(record: T, position: Position | undefined, problem: string) {
        try {
          sendToDeadLetter(flow, "write", problem, record, position);
        } catch (error) {
          fail(error);
        }
      }

      /**
       * Adds a line to the spans of lines the partition's file will claim from `input`. A span
       * claims every line of this partition and input between its ends, so it only grows upward
       * while no earlier file of the partition claimed lines above it; a line below (a record an
       * operator such as `mergeMap` delayed) gets a span of its own unless one holds it already.
       */
      function claim(partition: OpenPartition, input: Input, line: number) {
        let spans = partition.lastInput === input ? partition.lastSpans : partition.spans.get(input);
        if (!spans) {
          spans = [];
          partition.spans.set(input, spans);
        }
        if (partition.lastInput !== input) {
          partition.lastInput = input;
          partition.lastSpans = spans;
          partition.lastFloor = claimed.get(partition.key)?.get(input) ?? 0;
        }
        const last = spans[spans.length - 1];
        if (last && line > last.last) {
          if (last.last >= partition.lastFloor) last.last = line;
          else spans.push({ first: line, last: line });
          return;
        }
        if (!last) {
          spans.push({ first: line, last: line });
          return;
        }
        // Below the top of the spans: reordered. Keep the spans sorted and apart.
        let i = spans.length - 1;
        while (i >= 0 && (spans[i] as Span).first > line) i--;
        if (i >= 0 && (spans[i] as Span).last >= line) return;
        spans.splice(i + 1, 0, { first: line, last: line });
      }

      /**
       * The ranges a closed buffer's file claims: its spans less the lines that are not in it (still
       * in flight elsewhere in the pipeline, or rejected here). Remembers the highest line claimed.
       */
      function rangesOf(partition: OpenPartition): CommitRange[] {
        const ranges: CommitRange[] = [];
        let highs = claimed.get(partition.key);
        for (const [input, spans] of partition.spans) {
          const rejected = partition.rejected.get(input);
          for (const span of spans) {
            const holes = input.unsettledIn(span.first, span.last);
            if (rejected) for (const line of rejected) if (line >= span.first && line <= span.last) holes.push(line);
            holes.sort((a, b) => a - b);
            let first = span.first;
            for (const hole of holes) {
              if (hole > first) ranges.push({ source: input.name, firstLine: first, lastLine: hole - 1 });
              if (hole >= first) first = hole + 1;
            }
            if (first <= span.last) ranges.push({ source: input.name, firstLine: first, lastLine: span.last });
          }
          const top = (spans[spans.length - 1] as Span).last;
          if (!highs) claimed.set(partition.key, (highs = new Map()));
          if (top > (highs.get(input) ?? 0)) highs.set(input, top);
        }
        return ranges;
      }

      function measure(partition: OpenPartition) {
        const bytes = partition.buffer?.byteSize() ?? 0;
        bufferedBytes += bytes - partition.bytes;
        partition.bytes = bytes;
        flow.stats.bufferedBytes = bufferedBytes + inflightBytes;
      }

      // Buffers past half the budget: write the largest as row groups until they hold a quarter, and
      // hold the source while buffers and encodes in flight together are over the budget. Decided
      // on buffered bytes alone (measured every 1,024 rows), not on how fast encodes finish, so the
      // same input cuts the same row groups.
      function relieve() {
        for (const partition of open.values()) measure(partition);
        while (bufferedBytes > memoryBudget / 4) {
          let largest: OpenPartition | undefined;
          for (const partition of open.values()) if (!largest || partition.bytes > largest.bytes) largest = partition;
          if (!largest?.buffer) break;
          writeRowGroup(largest);
        }
        updateGate();
      }

      function updateGate() {
        const over = bufferedBytes + inflightBytes > memoryBudget;
        if (over && !release) release = holdGate(flow);
        else if (!over && release) {
          release();
          release = undefined;
        }
        flow.stats.bufferedBytes = bufferedBytes + inflightBytes;
      }

      /** The file's name: the position of its first record among those the sink received. */
      function nameOf(partition: OpenPartition): string {
        // A checkpointed run adds to what earlier runs wrote, so its names carry its run id too.
        const withRunId = mode === "append" || checkpoint !== undefined;
        return `part-${withRunId ? `${flow.runId}-` : ""}${String(partition.firstIndex).padStart(12, "0")}.parquet`;
      }

      /** Sends the buffer's rows to be encoded as a row group and appended to the partition's file. */
      function writeRowGroup(partition: OpenPartition) {
        const buffer = partition.buffer;
        measure(partition);
        bufferedBytes -= partition.bytes;
        partition.buffer = undefined;
        partition.bytes = 0;
        const rows = buffer?.rows ?? 0;
        if (!buffer || rows === 0) return;
        // The column buffers move to the encoder worker; until it is done they count as in flight.
        const { columns: rowColumns, transfer, bytes: size } = buffer.toColumns();
        partition.fileRows += rows;
        inflightBytes += size;
        const name = nameOf(partition);
        // Where the file is once the run is over; an overwrite writes it in its staging folder first.
        const part = (partition.part ??= new PartFile(
          ready.then((target) => ({
            path: join(target.root, partition.subfolder, name),
            tempPath: join(target.root, partition.subfolder, `.${name}.${process.pid}.tmp`),
          })),
        ));
        const written: Promise<void> = part
          .append(encoders.encode(rowColumns, transfer, dictionary.plain?.length ? { ...encodeOptions, plainColumns: dictionary.plain } : encodeOptions))
          .then(
            () => {
              if (open.get(partition.lookup) === partition && (part.bytes >= maxFileBytes || part.metaBytes >= MAX_FOOTER_BYTES)) roll(partition);
            },
            (error) => fail(error instanceof ParquetWriteError ? error : new ParquetWriteError(join(folder, partition.subfolder, name), error)),
          )
          .finally(() => {
            inflightBytes -= size;
            writes.delete(written);
            flow.settling.delete(written);
            updateGate();
          });
        writes.add(written);
        flow.settling.add(written);
      }

      /** Closes the partition's file: its last row group, then the footer, fsync and its final name. */
      function roll(partition: OpenPartition) {
        if (open.get(partition.lookup) !== partition) return;
        open.delete(partition.lookup);
        flow.stats.openPartitions = open.size;
        const rolledAt = performance.now();
        writeRowGroup(partition);
        const part = partition.part;
        if (!part) return;
        const rows = partition.fileRows;
        const name = nameOf(partition);
        const path = inBucket ? objectUrl(folder, partition.subfolder, name) : join(folder, partition.subfolder, name);
        const sources = rangesOf(partition);
        inflightRanges.add(sources);
        if (checkpoint) {
          try {
            checkpoint.intent(path, partition.key, sources);
          } catch (error) {
            // Without its intent a file would be invisible to a resume: it is not committed at all.
            inflightRanges.delete(sources);
            part.discard();
            fail(checkpointFailure(checkpoint.path, `record ${path} before committing it`, error));
            return;
          }
        }
        // No file lands once a broker source may have lost hold of its messages (see checkLeases).
        const leased = () => checkLeases(flow);
        const write: Promise<void> = part
          .commit({ "sluice.run_id": flow.runId, ...(flow.distribution ? { "sluice.job": flow.distribution.job } : {}), "sluice.sources": JSON.stringify(sources) }, bucket ? undefined : leased)
          // In a bucket the committed local file goes up, then into the manifest: only then is it in the dataset.
          .then(async (bytes) => {
            if (!bucket) return bytes;
            leased();
            return bucket.publish(await part.location.then((l) => l.path), partition.subfolder, name, rows, flow.runId);
          })
          .then(
            (bytes) => {
              if (staged) {
                staged.rows += rows;
                staged.files++;
                staged.bytes += bytes;
              }
              flow.stats.files++;
              madeEmpty = undefined;
              flow.stats.bytes += bytes;
              flow.stats.written += rows;
              flow.stats.buffered -= rows;
              observeCommitLatency(flow.stats, (performance.now() - rolledAt) / 1000);
              // A file in an overwrite's staging folder is not durable in the dataset until the
              // swap: a stopped run drops it, so a broker must not be told yet.
              if (!staged) {
                inflightRanges.delete(sources);
                announceDurable(flow);
              }
              if (checkpoint) {
                try {
                  checkpoint.committed(path);
                } catch (error) {
                  // The file is whole under its name; the next run's reconciliation finds it.
                  fail(checkpointFailure(checkpoint.path, `record that ${path} is committed`, error));
                  return;
                }
                saveCheckpointSoon();
              }
              subscriber.next({ path, partition: partition.values, rows, bytes, sources });
            },
            (error) => {
              inflightRanges.delete(sources);
              part.discard();
              fail(error instanceof ParquetWriteError ? error : new ParquetWriteError(path, error));
            },
          )
          .finally(() => {
            writes.delete(write);
            flow.settling.delete(write);
            updateGate();
          });
        writes.add(write);
        flow.settling.add(write);
      }

      const ageTimer = setInterval(
        () => {
          const now = Date.now();
          for (const partition of [...open.values()]) {
            if (now - partition.openedAt >= maxFileAgeMs) roll(partition);
          }
          updateGate();
        },
        Math.max(10, Math.min(maxFileAgeMs / 4, 1000)),
      );

      const subscription = withFlow(flow, () =>
        source.subscribe(joinFlow(flow, {
          next(record) {
            if (!failed) append(record);
          },
          error: (error) => fail(error),
          async complete() {
            for (const partition of [...open.values()]) roll(partition);
            while (writes.size > 0) await Promise.all([...writes]);
            if (failed) return;
            const target = await ready.catch(() => undefined);
            if (!target || failed) return;
            if (target.staged) {
              try {
                // A stopped run did not read its whole input: the dataset it would replace stays.
                if (flow.stopping) dropStaging();
                else {
                  if (staged) staged.ended = true;
                  await swapIn(folder, target.root, flow.runId);
                  inflightRanges.clear();
                  announceDurable(flow);
                }
              } catch (error) {
                fail(new ParquetWriteError(folder, error));
                return;
              }
            }
            await bucket?.close();
            // A run that completed keeps its folder, empty or not.
            madeEmpty = undefined;
            lock.release();
            subscriber.complete();
          },
        })),
      );

      /** Drops an overwrite's staging folder: the old dataset stays, and the counts say so. */
      function dropStaging() {
        if (!staged || staged.ended) return;
        staged.ended = true;
        rmSync(stagingOf(folder, flow.runId), { recursive: true, force: true });
        flow.stats.written -= staged.rows;
        flow.stats.discarded += staged.rows;
        flow.stats.files -= staged.files;
        flow.stats.bytes -= staged.bytes;
      }

      return () => {
        clearInterval(ageTimer);
        subscription.unsubscribe();
        release?.();
        // Files not committed are dropped, once the row groups being written are.
        const discarding: Promise<void>[] = [];
        for (const partition of open.values()) if (partition.part) discarding.push(partition.part.discard());
        open.clear();
        flow.stats.openPartitions = 0;
        // Files in flight finish (they are whole) before the workers stop; until then the folder
        // is still being written, so the lock is kept. An overwrite that did not complete drops
        // its staging folder before the lock goes.
        const end = () => {
          try {
            stopHolding();
            encoders.close();
            dropStaging();
            bucket?.close();
            // A run that failed or was stopped before its first file leaves no empty dataset folder
            // behind (rmdir removes only an empty one: a file that got there after all stays).
            if (madeEmpty !== undefined) removeEmptyFolders(madeEmpty);
            lock.release();
          } finally {
            // Even if letting go threw: a failed run is still reported, not left waiting.
            letGo();
          }
        };
        // Nothing can still be written (the folder was never ready, or nothing is in flight): at once,
        // so a run that failed has let go of the folder by the time its caller hears of it. A
        // temporary file being dropped is waited for: it is in the folder, and until it is gone a
        // next run in this process could open one of the same name.
        if (discarding.length === 0 && (readyState === "failed" || (readyState === "ok" && writes.size === 0))) end();
        else Promise.allSettled([ready, ...writes, ...discarding]).then(end);
      };
    });
  };
}

const NULL_KEY: unique symbol = Symbol("null partition");

/**
 * An open file's row-group metadata, kept in memory for its footer, is capped: a file of very many
 * small row groups (hundreds of partitions sharing the budget) is committed at this size.
 */
const MAX_FOOTER_BYTES = 4 * 1024 * 1024;

/** A checkpoint write that failed (disk full, I/O error), as an error that says where and what is safe. */
function checkpointFailure(path: string, doing: string, cause: unknown): Error {
  const reason = cause instanceof Error ? cause.message : String(cause);
  return new Error(
    `checkpoint ${path}: could not ${doing}: ${reason}. Files already committed are whole; a re-run with the same checkpoint reconciles them`,
    { cause },
  );
}

/** The text a partition value takes in its folder name, or null. */
function partitionText(column: ColumnSpec, value: unknown): string | null {
  if (value === null || value === undefined) return null;
  if (value instanceof Date) {
    const iso = value.toISOString();
    return column.kind === "date" ? iso.slice(0, 10) : iso;
  }
  if (typeof value === "string" || typeof value === "number" || typeof value === "bigint" || typeof value === "boolean") {
    return String(value);
  }
  throw new Error(`partition column "${column.name}" holds ${typeof value}, which cannot name a folder`);
}

/** Where the sink commits files until the run is over. */
interface Target {
  readonly root: string;
  /** True when `root` is an overwrite's staging folder, swapped in at completion. */
  readonly staged: boolean;
  /** True when the dataset folder did not exist before this run made it. */
  readonly made: boolean;
}

/**
 * Applies the write mode to the dataset folder before the first file is committed. Runs under the
 * folder's lock, so what it finds beside the folder was left by runs that ended.
 */
async function prepareFolder(folder: string, mode: WriteMode, runId: string, inPlace: boolean, shared: boolean): Promise<Target> {
  finishEarlierRuns(folder);
  // Alone in the folder (its lock is held), every file still open under a temporary name was left
  // by a run that was killed. Shared, the others' open files look the same: they are left alone.
  if (!shared) await removeTemporaries(folder);
  const existing = await countParquet(folder);
  if (existing > 0 && mode === "error") {
    throw new Error(
      `toParquet: ${folder} already holds ${existing} Parquet file(s); pass mode "overwrite" to replace the dataset or "append" to add to it`,
    );
  }
  if (mode === "overwrite" && existing > 0 && !inPlace) {
    const root = stagingOf(folder, runId);
    await mkdir(root, { recursive: true });
    return { root, staged: true, made: false };
  }
  if (mode === "overwrite" && existing >= 0 && inPlace) {
    // Moved aside first so the old dataset is never mixed with the new one, even after a crash.
    const aside = besideOf(folder, "removed", runId);
    await rename(folder, aside);
    await rm(aside, { recursive: true, force: true });
  }
  // mkdir answers with the first folder it made: the dataset folder itself, or one above it. An
  // in-place overwrite made it again after moving the old one aside: that folder existed.
  const made = (await mkdir(folder, { recursive: true })) !== undefined && !(mode === "overwrite" && inPlace);
  return { root: folder, staged: false, made };
}

/** Removes `folder` and the folders under it when none of them holds a file; files stay. */
function removeEmptyFolders(folder: string): void {
  try {
    for (const entry of readdirSync(folder, { withFileTypes: true })) {
      if (entry.isDirectory()) removeEmptyFolders(join(folder, entry.name));
    }
    rmdirSync(folder);
  } catch {
    // Not empty (a file stays where it is), or gone already.
  }
}

/** `.<name>.<what>-<runId>` beside the dataset folder: on the same file system, so renames work. */
function besideOf(folder: string, what: "staging" | "replaced" | "removed", runId: string): string {
  const absolute = resolve(folder);
  return join(dirname(absolute), `.${basename(absolute)}.${what}-${runId}`);
}

function stagingOf(folder: string, runId: string): string {
  return besideOf(folder, "staging", runId);
}

/**
 * Replaces the dataset with a complete staging folder. Each rename is atomic, the two together
 * are not: between them the folder is missing, and a crash there is finished by the next run
 * (see {@link finishEarlierRuns}).
 */
async function swapIn(folder: string, staging: string, runId: string): Promise<void> {
  const replaced = besideOf(folder, "replaced", runId);
  renameSync(folder, replaced);
  renameSync(staging, folder);
  fsyncFolder(dirname(resolve(folder)));
  await rm(replaced, { recursive: true, force: true });
}

/**
 * Cleans up beside a dataset folder after runs that ended without doing so (killed, or exited
 * before a cleanup finished): a staging folder is an overwrite that did not complete (dropped); a
 * replaced or removed folder is an old dataset on its way out (deleted). A replaced folder with the
 * dataset missing is a swap cut in two: that run's staging folder is complete and is put in place.
 */
function finishEarlierRuns(folder: string): void {
  const absolute = resolve(folder);
  const prefix = `.${basename(absolute)}.`;
  let names: string[];
  try {
    names = readdirSync(dirname(absolute)).filter((name) => name.startsWith(prefix));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return;
    throw error;
  }
  const runsOf = (what: string) => names.filter((n) => n.startsWith(`${prefix}${what}-`)).map((n) => n.slice(prefix.length + what.length + 1));
  const stagings = new Set(runsOf("staging"));
  for (const runId of runsOf("replaced")) {
    if (!existsSync(absolute)) {
      if (stagings.delete(runId)) renameSync(besideOf(folder, "staging", runId), absolute);
      // No staging folder to finish the swap with: the old dataset goes back.
      else renameSync(besideOf(folder, "replaced", runId), absolute);
    }
    rmSync(besideOf(folder, "replaced", runId), { recursive: true, force: true });
  }
  for (const runId of stagings) rmSync(besideOf(folder, "staging", runId), { recursive: true, force: true });
  for (const runId of runsOf("removed")) rmSync(besideOf(folder, "removed", runId), { recursive: true, force: true });
}


/** Removes the temporary files (`.part-….parquet.<pid>.tmp`) of killed runs under a dataset folder. */
async function removeTemporaries(folder: string): Promise<void> {
  let entries: string[];
  try {
    entries = await readdir(folder, { recursive: true });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT" || (error as NodeJS.ErrnoException).code === "ENOTDIR") return;
    throw error;
  }
  for (const entry of entries) {
    if (/^\.part-.*\.parquet\.\d+\.tmp$/.test(basename(entry))) await rm(join(folder, entry), { force: true });
  }
}

/** Parquet files under a folder, or -1 when the folder does not exist. */
async function countParquet(folder: string): Promise<number> {
  try {
    if (!(await stat(folder)).isDirectory()) throw new Error(`toParquet: ${folder} exists and is not a folder`);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return -1;
    throw error;
  }
  const entries = await readdir(folder, { recursive: true });
  return entries.filter((name) => name.endsWith(".parquet")).length;
}

