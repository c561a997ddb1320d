/**
 * Checkpoints: what a run has made durable, kept in a small SQLite file beside the output, so a
 * re-run skips finished inputs and resumes a partly read one without losing or duplicating rows.
 *
 * The difficulty is that "durable" is not a prefix of the input. A partitioned sink holds rows of
 * many partitions at once and commits them at different times, so when a run dies, line 900 of a
 * file may already be in a committed Parquet file while line 5 was still in a buffer. Two
 * records make a re-run exact:
 *
 * - the resume point of each input: a place (line and byte offset, at a chunk boundary) before
 *   which every record is durable: written, dead-lettered, or filtered out. It is the lowest
 *   line still held in a sink buffer or in flight, capped by the highest line that reached the
 *   sink or the dead letter (records between the source and the sink, inside an operator that
 *   batches, are not durable yet);
 * - every committed file's line ranges per input, recorded *before* the file is renamed into
 *   place. After the resume point, a record whose partition already has a committed file
 *   covering its line is skipped: a partition's buffer takes that partition's records in line
 *   order, so a file's range holds all of them. Dead letters written after the resume point are
 *   found again in the dead-letter folder, by run id, and skipped the same way.
 *
 * It relies on the operators between a source and the sink keeping each input's order
 * (`map`, `filter`, `concatMap`, sluice's operators do; `mergeMap` with concurrency does not).
 */
import { Database } from "bun:sqlite";
import { existsSync, mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { readDeadLettersSync } from "../deadletter/read.ts";
import { acquireLock, type Lock, lockPathOf } from "../io/lock.ts";

/** Where a source begins reading an input: line numbering resumes after `line`, bytes at `byteOffset`. */
export interface StartPoint {
  readonly line: number;
  readonly byteOffset: number;
}

/**
 * An input whose records the checkpoint follows while they are in flight (the flow's `Input`). The
 * checkpoint asks only this of it, so it knows nothing of the flow that holds it.
 */
export interface TrackedInput {
  /** The input's name, as the source reports it to {@link Checkpoint.startOf} and `mark`. */
  readonly name: string;
  /** The lowest line emitted and not yet settled (written, dead-lettered or dropped), if any. */
  lowestUnsettled(): number | undefined;
}

/** A run's checkpoint. Sources, the sink and the dead letter report to it; `run` saves it. */
export interface Checkpoint {
  /** The SQLite file. */
  readonly path: string;
  readonly runId: string;
  /** True when no earlier run was recorded: the sink's write mode applies only then. */
  readonly fresh: boolean;

  /**
   * Where to begin an input: `"done"` to skip it, undefined to read it all. Throws when it shrank,
   * or when `version` (an object's ETag) differs from the one an earlier run recorded: replaced.
   */
  startOf(source: string, size: number, version?: string): StartPoint | "done" | undefined;
  /** Every record of `source` up to `line` has been emitted; the next one begins at `byteOffset`. */
  mark(source: string, line: number, byteOffset: number): void;
  /** `source` was read to its end. */
  ended(source: string, size: number): void;
  /**
   * True when `source` asked {@link startOf} in this run: an input the checkpoint resumes, whose
   * line N is the same record in every run. A source that reads everything again (`fromHttp`,
   * `fromPostgres`, `fromStdin`, `fromPush`, a generator) may hand other records out under the same
   * lines on a later run, so a sink must not skip its records by line.
   */
  resumes(source: string): boolean;

  /** Follows an input's records in flight: the resume point never passes one that has not settled. */
  track(input: TrackedInput): void;
  /** True when an earlier run already committed this record's row in this partition. */
  alreadyWritten(partitionKey: string, source: string, line: number): boolean;
  /** True when an earlier run already dead-lettered this record durably. */
  alreadyDeadLettered(source: string, line: number): boolean;
  /** Reads the dead letters earlier runs left in `folder`, so they are not written twice. */
  loadDeadLetters(folder: string): void;
  /**
   * {@link loadDeadLetters} for a folder read asynchronously (a prefix in a bucket): `read(runs)`
   * yields the entries of the files the earlier runs `runs` of this checkpoint wrote there.
   */
  loadDeadLettersFrom(read: (runs: readonly string[]) => AsyncIterable<{ source: string; line: number }>): Promise<void>;
  /** The sink tells, on demand, the lowest line of each input it holds uncommitted. */
  setPending(pending: () => ReadonlyMap<string, number>): void;
  /** Called before a file is renamed into place, with the line ranges it holds. */
  intent(path: string, partitionKey: string, ranges: readonly CommitRange[]): void;
  /** Called once the file is durable. */
  committed(path: string): void;
  /**
   * Files in a bucket (`s3://`) an earlier run recorded and did not mark committed: whether they
   * are committed is found in the bucket (see src/sinks/bucket.ts `settleObjects`), before the
   * run reads anything.
   */
  pendingObjects(): { path: string; partitionKey: string }[];
  /** Settles a pending object: committed (its rows are skipped) or not (they are written again). */
  resolveObject(path: string, committed: boolean): void;
  /** Runs before each save: the dead letter makes what it gathered durable. Returns a remover. */
  beforeSave(flush: () => Promise<void>): () => void;

  /** Records the resume points that are durable now. */
  save(): Promise<void>;
  /** After the pipeline completed: everything emitted is durable; inputs read to the end are done. */
  finish(): Promise<void>;
  close(): void;
}

/**
 * The write mode an output (the dataset, the dead-letter folder) takes under a checkpoint: the
 * one asked for on the first run, `append` once an earlier run has written (replacing its
 * output would lose what the checkpoint says is durable).
 */
export function modeUnder<M extends string>(checkpoint: Checkpoint | undefined, mode: M): M | "append" {
  return checkpoint && !checkpoint.fresh ? "append" : mode;
}

/** The lines of one input held by a committed file. */
export interface CommitRange {
  readonly source: string;
  readonly firstLine: number;
  readonly lastLine: number;
}

interface SourceState {
  /** Resume point stored for it (line, byte offset). */
  line: number;
  byteOffset: number;
  /** Places a re-run could resume from, ascending, not yet saved. */
  marks: [line: number, byteOffset: number][];
  ended: boolean;
  size: number;
  /** The version (ETag) of an object read, recorded with its resume point. */
  version: string | null;
  done: boolean;
  dirty: boolean;
}

/**
 * Opens (or creates) the checkpoint file for a run. Files whose commit was started by an earlier
 * run are reconciled: a file that reached its final name counts as committed, one that did not is
 * forgotten.
 *
 * One run at a time: the checkpoint is locked (`.<file>.lock` beside it) until `close`, and a
 * second run opening it throws a `LockedError` naming the run that holds it.
 *
 * @example
 * const summary = await run(pipeline, { checkpoint: "out/.sluice/checkpoint.sqlite" });
 */
export function openCheckpoint(path: string, runId: string): Checkpoint {
  mkdirSync(dirname(path), { recursive: true });
  // Two runs sharing a checkpoint would each resume from the same point and write the same
  // records; the second used to fail on SQLITE_BUSY only after committing files. It is refused
  // here, before anything is opened, read or written.
  const lock = acquireLock(lockPathOf(path), { runId, what: `checkpoint ${path}` });
  try {
    return openLocked(path, runId, lock);
  } catch (error) {
    lock.release();
    throw error;
  }
}

function openLocked(path: string, runId: string, lock: Lock): Checkpoint {
  const db = new Database(path, { create: true });
  db.run("PRAGMA journal_mode = WAL");
  db.run("PRAGMA synchronous = FULL");
  db.run(`CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY, started_at TEXT NOT NULL, finished_at TEXT)`);
  db.run(`CREATE TABLE IF NOT EXISTS inputs (
    source TEXT PRIMARY KEY, line INTEGER NOT NULL, byte_offset INTEGER NOT NULL,
    size INTEGER NOT NULL, done INTEGER NOT NULL, run_id TEXT NOT NULL, updated_at TEXT NOT NULL)`);
  db.run(`CREATE TABLE IF NOT EXISTS commits (
    path TEXT NOT NULL, partition_key TEXT NOT NULL, source TEXT NOT NULL,
    first_line INTEGER NOT NULL, last_line INTEGER NOT NULL, run_id TEXT NOT NULL, durable INTEGER NOT NULL)`);
  db.run("CREATE INDEX IF NOT EXISTS commits_source ON commits (source, last_line)");
  // Added for objects in a bucket; a checkpoint written before it has no such column.
  if (!(db.query("PRAGMA table_info(inputs)").all() as { name: string }[]).some((c) => c.name === "version")) {
    db.run("ALTER TABLE inputs ADD COLUMN version TEXT");
  }

  const earlierRuns = (db.query("SELECT run_id FROM runs").all() as { run_id: string }[]).map((r) => r.run_id);
  // An earlier run that failed or was killed may have committed dead letters of inputs it saved no
  // resume point of; when every earlier run finished, only unfinished inputs can have any to skip.
  const everyRunFinished = (db.query("SELECT count(*) AS n FROM runs WHERE finished_at IS NULL").get() as { n: number }).n === 0;
  const fresh = earlierRuns.length === 0;
  db.query("INSERT INTO runs (run_id, started_at) VALUES (?, ?)").run(runId, new Date().toISOString());

  // A crash between recording a file and renaming it: the file decides.
  const intents = db.query("SELECT DISTINCT path FROM commits WHERE durable = 0").all() as { path: string }[];
  for (const { path: file } of intents) {
    // A file in a bucket is settled by the run, which can ask the bucket (pendingObjects).
    if (file.startsWith("s3://")) continue;
    if (existsSync(file)) db.query("UPDATE commits SET durable = 1 WHERE path = ?").run(file);
    else db.query("DELETE FROM commits WHERE path = ?").run(file);
  }

  const sources = new Map<string, SourceState>();
  // Inputs that asked where to begin in this run (see `resumes`).
  const asked = new Set<string>();
  // Committed ranges after the resume point, by input, then by partition.
  const written = new Map<string, { maxLine: number; byPartition: Map<string, [number, number][]> }>();
  // Dead letters earlier runs made durable after the resume point: `${source}\0${line}`.
  const deadLettered = new Set<string>();
  // Dead letters earlier runs made durable for inputs they saved no resume point of (a run that
  // failed before its first save): such an input is read from its start again, if it is one the
  // checkpoint resumes (see `resumes`), so these count only for inputs that ask where to begin.
  const deadLetteredUnsaved = new Set<string>();
  /** The inputs earlier runs saved a resume point of: their resume lines, and whether they ended. */
  const savedInputs = () => {
    const saved = new Map<string, { line: number; done: boolean }>();
    for (const row of db.query("SELECT source, line, done FROM inputs").all() as { source: string; line: number; done: number }[]) {
      saved.set(row.source, { line: row.line, done: row.done !== 0 });
    }
    return saved;
  };
  /**
   * The saved inputs to check earlier runs' dead letters against, or undefined when none can be
   * met again: a fresh checkpoint, or every earlier run finished with every input done.
   */
  const inputsToCheck = () => {
    if (fresh) return undefined;
    const saved = savedInputs();
    return everyRunFinished && ![...saved.values()].some((input) => !input.done) ? undefined : saved;
  };
  /** Notes a dead letter a resumed run will meet again: one past its input's resume point. */
  const noteDeadLettered = (saved: ReadonlyMap<string, { line: number; done: boolean }>, entry: { source: string; line: number }) => {
    const input = saved.get(entry.source);
    if (input === undefined) deadLetteredUnsaved.add(`${entry.source}\u0000${entry.line}`);
    else if (!input.done && entry.line > input.line) deadLettered.add(`${entry.source}\u0000${entry.line}`);
  };
  const saveHooks = new Set<() => Promise<void>>();
  // Inputs of this run by name (a source subscribed again, by `retry`, adds another).
  const tracked = new Map<string, TrackedInput[]>();
  let pending: () => ReadonlyMap<string, number> = () => new Map();
  let saving: Promise<void> = Promise.resolve();
  let closed = false;

  const insertIntent = db.query(
    "INSERT INTO commits (path, partition_key, source, first_line, last_line, run_id, durable) VALUES (?, ?, ?, ?, ?, ?, 0)",
  );
  const markDurable = db.query("UPDATE commits SET durable = 1 WHERE path = ?");
  const upsertInput = db.query(`INSERT INTO inputs (source, line, byte_offset, size, done, run_id, updated_at, version)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (source) DO UPDATE SET line = excluded.line, byte_offset = excluded.byte_offset,
      size = excluded.size, done = excluded.done, run_id = excluded.run_id, updated_at = excluded.updated_at, version = excluded.version`);
  const prune = db.query("DELETE FROM commits WHERE source = ? AND last_line <= ? AND durable = 1");

  function loadWritten(source: string, after: number) {
    const rows = db
      .query("SELECT partition_key, first_line, last_line FROM commits WHERE source = ? AND last_line > ? AND durable = 1")
      .all(source, after) as { partition_key: string; first_line: number; last_line: number }[];
    if (rows.length === 0) return;
    const byPartition = new Map<string, [number, number][]>();
    let maxLine = 0;
    for (const row of rows) {
      const ranges = byPartition.get(row.partition_key) ?? [];
      ranges.push([row.first_line, row.last_line]);
      byPartition.set(row.partition_key, ranges);
      maxLine = Math.max(maxLine, row.last_line);
    }
    written.set(source, { maxLine, byPartition });
  }

  function state(source: string): SourceState {
    let s = sources.get(source);
    if (!s) {
      s = { line: 0, byteOffset: 0, marks: [], ended: false, size: 0, version: null, done: false, dirty: true };
      sources.set(source, s);
    }
    return s;
  }

  /** The resume point each input can move to now, and whether it is finished. */
  function advance(everythingSettled: boolean): void {
    const held = everythingSettled ? new Map<string, number>() : pending();
    for (const [source, s] of sources) {
      if (s.done || s.marks.length === 0) continue;
      let lowest = held.get(source) ?? Number.POSITIVE_INFINITY;
      for (const input of tracked.get(source) ?? []) lowest = Math.min(lowest, input.lowestUnsettled() ?? Number.POSITIVE_INFINITY);
      const durable = everythingSettled ? Number.POSITIVE_INFINITY : lowest - 1;
      let chosen = -1;
      for (let i = 0; i < s.marks.length; i++) if ((s.marks[i] as [number, number])[0] <= durable) chosen = i;
      if (chosen < 0) continue;
      const [line, byteOffset] = s.marks[chosen] as [number, number];
      s.marks.splice(0, chosen + 1);
      s.line = line;
      s.byteOffset = byteOffset;
      s.dirty = true;
      if (s.ended && s.marks.length === 0 && byteOffset >= s.size) s.done = true;
    }
  }

  function write(): void {
    const now = new Date().toISOString();
    db.transaction(() => {
      for (const [source, s] of sources) {
        if (!s.dirty) continue;
        upsertInput.run(source, s.line, s.byteOffset, s.size, s.done ? 1 : 0, runId, now, s.version);
        prune.run(source, s.done ? Number.MAX_SAFE_INTEGER : s.line);
        s.dirty = false;
      }
    })();
  }

  async function save(everythingSettled: boolean): Promise<void> {
    if (closed) return;
    // Resume points are chosen before the dead letters are flushed, so every dead letter at or
    // before them is in that flush.
    advance(everythingSettled);
    for (const flush of saveHooks) await flush();
    if (!closed) write();
  }

  return {
    path,
    runId,
    fresh,

    startOf(source, size, version) {
      asked.add(source);
      const row = db.query("SELECT line, byte_offset, size, done, version FROM inputs WHERE source = ?").get(source) as
        | { line: number; byte_offset: number; size: number; done: number; version: string | null }
        | null;
      const s = state(source);
      s.size = size;
      s.version = version ?? null;
      if (!row) {
        // No resume point saved yet, but an earlier run may have committed files from it.
        loadWritten(source, 0);
        return written.has(source) ? { line: 0, byteOffset: 0 } : undefined;
      }
      if (size < row.byte_offset) {
        throw new Error(
          `checkpoint ${path}: input ${source} is ${size} bytes but an earlier run already read ${row.byte_offset} bytes of it; it was replaced or truncated. Remove the checkpoint file to read everything again.`,
        );
      }
      if (version !== undefined && row.version !== null && row.version !== version && row.byte_offset > 0) {
        throw new Error(
          `checkpoint ${path}: input ${source} was replaced (ETag ${row.version} when an earlier run read ${row.byte_offset} bytes of it, ${version} now). Remove the checkpoint file to read everything again.`,
        );
      }
      s.line = row.line;
      s.byteOffset = row.byte_offset;
      s.dirty = false;
      if (row.done && size === row.byte_offset) {
        s.done = true;
        return "done";
      }
      loadWritten(source, row.line);
      return { line: row.line, byteOffset: row.byte_offset };
    },

    mark(source, line, byteOffset) {
      const s = state(source);
      const last = s.marks[s.marks.length - 1];
      if (last && last[0] === line) last[1] = byteOffset;
      else s.marks.push([line, byteOffset]);
    },

    ended(source, size) {
      const s = state(source);
      s.ended = true;
      s.size = size;
    },

    resumes(source) {
      return asked.has(source);
    },

    track(input) {
      const list = tracked.get(input.name);
      if (list) list.push(input);
      else tracked.set(input.name, [input]);
    },

    alreadyWritten(partitionKey, source, line) {
      const w = written.get(source);
      if (!w || line > w.maxLine) return false;
      const ranges = w.byPartition.get(partitionKey);
      if (!ranges) return false;
      for (const [first, last] of ranges) if (line >= first && line <= last) return true;
      return false;
    },

    alreadyDeadLettered(source, line) {
      if (deadLettered.size > 0 && deadLettered.has(`${source}\u0000${line}`)) return true;
      return deadLetteredUnsaved.size > 0 && asked.has(source) && deadLetteredUnsaved.has(`${source}\u0000${line}`);
    },

    loadDeadLetters(folder) {
      if (!existsSync(folder)) return;
      const resumed = inputsToCheck();
      if (!resumed) return;
      // Only the files earlier runs of this checkpoint wrote, named exactly: another run whose id
      // starts with one of theirs (`a-b` after `a`) left dead letters of other records.
      for (const { entry } of readDeadLettersSync(folder, { runs: earlierRuns })) noteDeadLettered(resumed, entry);
    },

    async loadDeadLettersFrom(read) {
      const resumed = inputsToCheck();
      if (!resumed) return;
      for await (const entry of read(earlierRuns)) noteDeadLettered(resumed, entry);
    },

    setPending(provider) {
      pending = provider;
    },

    intent(file, partitionKey, ranges) {
      // Closed: the run failed and its sink was torn down, so no new file starts.
      if (closed) return;
      db.transaction(() => {
        for (const r of ranges) insertIntent.run(file, partitionKey, r.source, r.firstLine, r.lastLine, runId);
      })();
    },

    committed(file) {
      // A write that was in flight when the run failed: its intent is recorded, and the next
      // run's reconciliation finds the file under its final name.
      if (closed) return;
      markDurable.run(file);
    },

    pendingObjects() {
      return (
        db.query("SELECT DISTINCT path, partition_key FROM commits WHERE durable = 0 AND path LIKE 's3://%'").all() as {
          path: string;
          partition_key: string;
        }[]
      ).map((row) => ({ path: row.path, partitionKey: row.partition_key }));
    },

    resolveObject(file, committed) {
      if (committed) markDurable.run(file);
      else db.query("DELETE FROM commits WHERE path = ?").run(file);
    },

    beforeSave(flush) {
      saveHooks.add(flush);
      return () => saveHooks.delete(flush);
    },

    save() {
      saving = saving.then(() => save(false));
      return saving;
    },

    finish() {
      saving = saving
        .then(() => save(true))
        .then(() => {
          db.query("UPDATE runs SET finished_at = ? WHERE run_id = ?").run(new Date().toISOString(), runId);
        });
      return saving;
    },

    close() {
      if (closed) return;
      closed = true;
      try {
        db.close();
      } finally {
        lock.release();
      }
    },
  };
}
