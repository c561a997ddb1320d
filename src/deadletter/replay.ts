/**
 * Replaying dead letters through a (fixed) pipeline, exactly once.
 *
 * What lives in the dead-letter folder besides the dead letters:
 * - `replayed-<runId>.ledger`: one per finished replay. NDJSON: a header line (the replay's run
 *   id, module, counts), then `{"file": "<dead-letter file>", "ranges": [[first, last], ...]}`
 *   naming the entries (1-based lines of that file) the replay sent through the pipeline. An
 *   entry in a ledger is never replayed again, and `summarize` counts it apart. The extension is
 *   not `.ndjson` so that the readers of dead letters (read.ts, and so the checkpoint) skip it.
 * - `replay.lock`: the replay in progress (run id, pid, host). Taken before anything else with
 *   src/io/lock.ts; removed after the ledger is committed. One replay at a time per folder: when
 *   several find a dead replay's lock at once, exactly one rolls it back and runs.
 * - `.replay-<runId>/`: hard links to the dead-letter files as they were when the replay began
 *   (the snapshot it reads, so the dead letters it writes itself are never read back, and a
 *   module that wrongly overwrites the folder cannot lose them) and `checkpoint.sqlite`, the run's
 *   checkpoint, in which the Parquet sink records every file's path before renaming it into place.
 *
 * Why nothing is lost or duplicated: the ledger is committed (temporary name, fsync, rename) only
 * after the pipeline completed, when every row it wrote and every new dead letter is durable. A
 * replay that did not get that far (crash, kill, failed write) leaves its lock behind; the next
 * replay of the folder rolls it back before starting: it deletes the dataset files named in the
 * checkpoint (they hold only replayed rows) and the `dead-letter-<runId>-*` files, so the entries
 * are open again and are replayed once, by the new replay. A crash after the ledger commit only
 * leaves the lock and snapshot, which the next replay removes.
 *
 * Why a crafted lock or checkpoint cannot delete anything else: the lock's run id must be a safe
 * run id (`checkRunId`: no path separators, no `..`), so the snapshot folder it names is inside
 * the dead-letter folder; only files named like that run's own (`part-<runId>-<n>.parquet`,
 * `dead-letter-<runId>-<n>.ndjson`) are deleted, any other path in the checkpoint stops the
 * rollback before anything is deleted; and the lock's `cwd` is never used to find files.
 */
import { Database } from "bun:sqlite";
import { existsSync, linkSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { fsyncFolder } from "../io/fsync.ts";
import { mkdir, rm } from "node:fs/promises";
import { basename, isAbsolute, join, resolve } from "node:path";
import { Observable } from "rxjs";
import type { Pipeline, PipelineContext } from "../run/pipeline.ts";
import { currentFlow, sendToDeadLetter, waitForGate } from "../flow/flow.ts";
import { Input, stamp } from "../flow/position.ts";
import { acquireLock, isLive, type Lock, LockedError, readLockFile, type StoredLock } from "../io/lock.ts";
import { commitFile } from "../parquet/encode.ts";
import { type ParsedJson, parseJson } from "../sources/json/numbers.ts";
import { loadPipeline } from "../run/discover.ts";
import { redactArgs } from "../run/redact.ts";
import { type RunOptions, type RunSummary, run } from "../run/run.ts";
import { checkRunId, isDatasetFileOf, isDeadLetterFileOf, newRunId } from "../flow/runId.ts";
import type { DeadLetter } from "./entry.ts";
import { listDeadLetterFiles, listDeadLetterFilesSync, type StoredDeadLetter, streamDeadLetters } from "./read.ts";

/** The lock file of a dead-letter folder while a replay runs. */
export const REPLAY_LOCK = "replay.lock";

/** Which dead letters to replay. Unset filters match every entry. */
export interface ReplayFilter {
  /** Only entries of these stages (`parse`, `validate`, `enrich`, `write`, ...). */
  readonly stages?: readonly string[] | undefined;
  /** Only entries whose `source` matches this glob (`Bun.Glob`: `data/2024-03-*.ndjson`, `**\/a.ndjson`). */
  readonly source?: string | undefined;
  /** Only entries dead-lettered by this run id (a replay's run id selects its failures, as `again` does). */
  readonly run?: string | undefined;
  /**
   * Also replay the dead letters earlier replays wrote (records that failed again). Off by
   * default, so replaying twice with the same pipeline sends nothing the second time; turn it on
   * after fixing the pipeline further.
   */
  readonly again?: boolean | undefined;
}

/** Options of {@link replayDeadLetters}. */
export interface ReplayOptions extends ReplayFilter {
  /** Arguments handed to the pipeline module (`context.args`), such as `["--out", "out"]`. */
  readonly args?: readonly string[];
  /**
   * The replay's run id (default: time-based). Names its dataset files, dead letters and ledger,
   * so it must be a safe run id (see `checkRunId`).
   */
  readonly runId?: string | undefined;
  /** Count what would be replayed; run nothing, write nothing. */
  readonly dryRun?: boolean;
  /** Passed to {@link run}: signal handling, an abort signal, a progress hook. */
  readonly runOptions?: Pick<RunOptions, "handleSignals" | "signal" | "onStart">;
}

/** What an earlier, unfinished replay left, and what was done about it. */
export interface ReplayRollback {
  readonly runId: string;
  /** True when that replay had committed its ledger: nothing was rolled back, only cleaned up. */
  readonly finished: boolean;
  /** Dataset files of that replay that were deleted. */
  readonly datasetFiles: readonly string[];
  /** Its new dead-letter files that were deleted. */
  readonly deadLetterFiles: readonly string[];
  /** Dead-letter files that had vanished and were put back from its snapshot. */
  readonly restored: readonly string[];
}

/** What {@link replayDeadLetters} did. */
export interface ReplayResult {
  readonly runId: string;
  readonly folder: string;
  /** Dead letters read from the snapshot. */
  readonly considered: number;
  /** Skipped: an earlier replay's ledger names them. */
  readonly alreadyReplayed: number;
  /** Skipped: they do not match the filters. */
  readonly filteredOut: number;
  /** Skipped: written by an earlier replay (failed again); `again` replays them. */
  readonly fromEarlierReplays: number;
  /** Sent through the pipeline (with `dryRun`: would be). Less than the matches when stopped early. */
  readonly replayed: number;
  /** The pipeline run (undefined on a dry run or when nothing matched). `written` rows now pass. */
  readonly summary: RunSummary | undefined;
  /** The ledger committed, when entries were replayed. */
  readonly ledger: string | undefined;
  /** An earlier replay that had not finished, rolled back before this one began. */
  readonly rolledBack: ReplayRollback | undefined;
  /** Dead-letter files the pipeline removed during this replay (its dead letter used mode "overwrite"), put back. */
  readonly restored: readonly string[];
}

/** The replay ledgers and lock of a folder, as `summarize` and `replay` see them. */
export interface ReplayState {
  /** True when a finished replay's ledger names this entry. */
  isReplayed(file: string, index: number): boolean;
  /** True when `runId` is a finished replay's (its dead letters are records that failed again). */
  isReplayRun(runId: string): boolean;
  /** The finished replays, oldest first. */
  readonly ledgers: readonly { readonly runId: string; readonly path: string; readonly replayed: number }[];
  /** A replay whose lock is still there: `running` when its process is alive on this host. */
  readonly unfinished: { readonly runId: string; readonly pid: number; readonly startedAt: string; readonly running: boolean } | undefined;
}

interface LockInfo {
  readonly runId: string;
  readonly pid: number;
  readonly startedAt: string;
  readonly module: string;
  /**
   * Where the replay ran: the dataset paths its checkpoint records may be relative to it. Only
   * compared with the current folder, never used to find files to delete: a lock can be crafted.
   */
  readonly cwd: string;
}

interface LedgerHeader {
  readonly ledger: 1;
  readonly runId: string;
  readonly module: string;
  readonly args: readonly string[];
  readonly filter: ReplayFilter;
  readonly finishedAt: string;
  readonly replayed: number;
  readonly written: number;
  readonly deadLettered: number;
  readonly deadLetteredByStage: Readonly<Record<string, number>>;
  readonly dropped: number;
  readonly stopped: boolean;
}

/**
 * A replay whose pipeline failed after it started (an infrastructure failure). Nothing was
 * marked replayed; the next replay of the folder rolls back what this one wrote.
 */
export class ReplayFailedError extends Error {
  readonly runId: string;
  readonly folder: string;
  constructor(runId: string, folder: string, cause: unknown) {
    super(
      `replay ${runId} of ${folder} failed: ${(cause as Error)?.message ?? String(cause)}; nothing was marked replayed, and the next replay of this folder rolls back what this one wrote`,
      { cause },
    );
    this.name = "ReplayFailedError";
    this.runId = runId;
    this.folder = folder;
  }
}

/**
 * Reads the replay ledgers and the lock of a dead-letter folder. Holds the replayed entries as
 * line ranges per file, so a replay of a million consecutive entries costs one range.
 *
 * @example
 * const state = readReplayState("out/dead-letter");
 * if (state.unfinished && !state.unfinished.running) console.log(`replay ${state.unfinished.runId} did not finish`);
 */
export function readReplayState(folder: string): ReplayState {
  const byFile = new Map<string, [number, number][]>();
  const ledgers: { runId: string; path: string; replayed: number }[] = [];
  let names: string[] = [];
  try {
    names = readdirSync(folder).sort();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  for (const name of names) {
    if (!name.startsWith("replayed-") || !name.endsWith(".ledger")) continue;
    const path = join(folder, name);
    const lines = readFileSync(path, "utf8").split("\n");
    const header = JSON.parse(lines[0] ?? "{}") as Partial<LedgerHeader>;
    ledgers.push({ runId: header.runId ?? name.slice(9, -7), path, replayed: header.replayed ?? 0 });
    for (const text of lines.slice(1)) {
      if (!text) continue;
      const { file, ranges } = JSON.parse(text) as { file: string; ranges: [number, number][] };
      const list = byFile.get(file) ?? [];
      list.push(...ranges);
      byFile.set(file, list);
    }
  }
  for (const list of byFile.values()) list.sort((a, b) => a[0] - b[0]);
  // A lock naming an unsafe run id is reported by the next replay, which refuses to use it.
  let lock: LockInfo | undefined;
  try {
    lock = readLock(folder);
  } catch {
    lock = undefined;
  }
  const replayRuns = new Set(ledgers.map((l) => l.runId));
  return {
    isReplayed(file, index) {
      const ranges = byFile.get(file);
      if (!ranges) return false;
      // Ranges of different ledgers may overlap nothing but may interleave: binary search on starts.
      let lo = 0;
      let hi = ranges.length - 1;
      while (lo <= hi) {
        const mid = (lo + hi) >> 1;
        const [first, last] = ranges[mid] as [number, number];
        if (index < first) hi = mid - 1;
        else if (index > last) lo = mid + 1;
        else return true;
      }
      return false;
    },
    isReplayRun: (runId) => replayRuns.has(runId),
    ledgers,
    unfinished:
      lock && !existsSync(ledgerPath(folder, lock.runId))
        ? { runId: lock.runId, pid: lock.pid, startedAt: lock.startedAt, running: isLive(lock as unknown as Record<string, unknown>) }
        : undefined,
  };
}

/**
 * Sends the dead letters of `folder` through a pipeline module's `process` (with
 * `context.replay` true), exactly once each. Entries that now pass land in the pipeline's
 * dataset; entries that fail again go to the pipeline's dead letter with the new error, as new
 * files of this replay's run id; both are committed before the ledger marks the old entries as
 * replayed. Entries named by an earlier ledger, or not matching the filters, are skipped.
 *
 * Each entry is emitted with the flow's cursor at its ORIGINAL source, line and raw text, so new
 * dead letters and the Parquet files' source ranges point at the input, not at the dead letter.
 * `raw` is parsed as JSON; an entry whose raw still is not JSON (or whose bytes are not UTF-8)
 * goes back to the dead letter at stage `parse`.
 *
 * Resolves when the ledger is committed (or at once on a dry run). Rejects when the run id is not
 * a safe one (see `checkRunId`), when another replay of the folder is running, when its lock or
 * checkpoint names an unsafe run id or files that are not its own (nothing is deleted then),
 * when the module cannot be loaded or built, or when the pipeline fails
 * (an infrastructure failure, a {@link ReplayFailedError}): then no ledger is written and the next replay of the folder rolls
 * back what this one committed. On SIGINT/SIGTERM (or `runOptions.signal` aborting) it stops
 * reading, commits what was buffered, and ledgers only the entries that were sent.
 *
 * @example
 * const result = await replayDeadLetters("out/dead-letter", "pipelines/clickstream-fixed.ts", {
 *   args: ["--out", "out"],
 *   stages: ["validate"],
 * });
 * console.log(`${result.summary?.written} rows now pass; ${result.summary?.deadLettered} failed again`);
 */
export async function replayDeadLetters(
  folder: string,
  pipeline: Pipeline | string,
  options: ReplayOptions = {},
): Promise<ReplayResult> {
  const runId = checkRunId(options.runId ?? newRunId(), "replay: runId");
  if (!existsSync(folder)) throw new Error(`replay: dead-letter folder ${folder} does not exist`);
  const moduleName = typeof pipeline === "string" ? pipeline : "(pipeline object)";
  const loaded = typeof pipeline === "string" ? await loadPipeline(pipeline) : pipeline;
  const matches = filterOf(options);

  if (options.dryRun) {
    const state = readReplayState(folder);
    const tally = newTally();
    for await (const stored of streamDeadLetters(folder)) {
      if (state.unfinished && isDeadLetterFileOf(stored.file, state.unfinished.runId)) continue;
      classify(stored, state, matches, options, tally);
    }
    return { runId, folder, ...tally, summary: undefined, ledger: undefined, rolledBack: undefined, restored: [] };
  }

  if (existsSync(ledgerPath(folder, runId)) || (await listDeadLetterFiles(folder, { runs: [runId] })).length > 0) {
    throw new Error(`replay: run id ${runId} was already used in ${folder}; choose another (its files would be overwritten)`);
  }
  const { lock, rolledBack } = takeLock(folder, runId, moduleName);
  let started = false;
  try {
    const state = readReplayState(folder);
    const snapshot = snapshotDir(folder, runId);
    await mkdir(snapshot, { recursive: true });
    const files = await listDeadLetterFiles(folder);
    for (const file of files) linkSync(join(folder, file), join(snapshot, file));
    fsyncFolder(snapshot);
    const checkpoint = join(snapshot, "checkpoint.sqlite");
    guardCheckpoint(checkpoint);

    const tally = newTally();
    const sent = new Map<string, [number, number][]>();
    const context: PipelineContext = { args: [...(options.args ?? [])], runId, replay: true };
    const records = replaySource(folder, snapshot, files, (stored) => {
      if (!classify(stored, state, matches, options, tally)) return false;
      const ranges = sent.get(stored.file) ?? [];
      const last = ranges[ranges.length - 1];
      if (last && last[1] === stored.index - 1) last[1] = stored.index;
      else ranges.push([stored.index, stored.index]);
      sent.set(stored.file, ranges);
      return true;
    });
    const observable = loaded.process(records, context);
    started = true;
    // The checkpoint records every dataset file before it is renamed into place: a replay that
    // dies can be rolled back. It was created with an earlier "run" in it, so the sink adds to
    // the dataset even when the module forgets `context.replay` and asks for "overwrite".
    const summary = await run(observable, { ...options.runOptions, runId, checkpoint });

    // A dead letter in mode "overwrite" removes the folder's files: put the originals back.
    const restored = restoreFromSnapshot(folder, snapshot);

    let ledger: string | undefined;
    if (tally.replayed > 0) {
      ledger = ledgerPath(folder, runId);
      const header: LedgerHeader = {
        ledger: 1,
        runId,
        module: moduleName,
        // The ledger is read by people: credentials in the arguments are masked as in logs.
        args: redactArgs(context.args),
        filter: { stages: options.stages, source: options.source, run: options.run, again: options.again },
        finishedAt: new Date().toISOString(),
        replayed: tally.replayed,
        written: summary.written,
        deadLettered: summary.deadLettered,
        deadLetteredByStage: summary.deadLetteredByStage,
        dropped: summary.dropped,
        stopped: summary.stopped,
      };
      const lines = [JSON.stringify(header), ...[...sent].map(([file, ranges]) => JSON.stringify({ file, ranges }))];
      await commitFile(ledger, join(folder, `.replayed-${runId}.ledger.tmp`), Buffer.from(`${lines.join("\n")}\n`));
    }
    await rm(snapshot, { recursive: true, force: true });
    lock.release();
    fsyncFolder(folder);
    return { runId, folder, ...tally, summary, ledger, rolledBack, restored };
  } catch (error) {
    if (!started) {
      // Nothing ran (the module could not build its pipeline): nothing to roll back.
      await rm(snapshotDir(folder, runId), { recursive: true, force: true });
      lock.release();
      throw error;
    }
    // The lock stays, stale from now on: the next replay rolls back whatever this one
    // committed. Rolling back here could race with writes still finishing after the failure.
    lock.abandon();
    throw new ReplayFailedError(runId, folder, error);
  }
}

/**
 * Rolls back (or cleans up after) an unfinished replay of `folder`, as the next replay would,
 * without starting a new one. Resolves with what was done, or undefined when no replay was
 * unfinished. Rejects when that replay is still running.
 *
 * @example
 * const undone = await recoverReplay("out/dead-letter");
 * if (undone) console.log(`removed ${undone.datasetFiles.length} files of replay ${undone.runId}`);
 */
export async function recoverReplay(folder: string): Promise<ReplayRollback | undefined> {
  if (!existsSync(join(folder, REPLAY_LOCK))) return undefined;
  // Taken over like any stale lock (so two recoveries, or a recovery and a replay, never both
  // roll back), then given up at once.
  const { lock, rolledBack } = takeLock(folder, newRunId(), "(recovery)");
  lock.release();
  fsyncFolder(folder);
  return rolledBack;
}

type Tally = { considered: number; alreadyReplayed: number; filteredOut: number; fromEarlierReplays: number; replayed: number };

function newTally(): Tally {
  return { considered: 0, alreadyReplayed: 0, filteredOut: 0, fromEarlierReplays: 0, replayed: 0 };
}

function classify(stored: StoredDeadLetter, state: ReplayState, matches: (entry: DeadLetter) => boolean, filter: ReplayFilter, tally: Tally): boolean {
  tally.considered++;
  if (state.isReplayed(stored.file, stored.index)) {
    tally.alreadyReplayed++;
    return false;
  }
  if (!matches(stored.entry)) {
    tally.filteredOut++;
    return false;
  }
  const runId = stored.entry.runId;
  if (!filter.again && filter.run !== runId && state.isReplayRun(runId)) {
    tally.fromEarlierReplays++;
    return false;
  }
  tally.replayed++;
  return true;
}

/** The test an entry must pass to match `filter`'s stages, source glob and run (`again` aside). */
export function filterOf(filter: ReplayFilter): (entry: DeadLetter) => boolean {
  const stages = filter.stages && filter.stages.length > 0 ? new Set(filter.stages) : undefined;
  const glob = filter.source ? new Bun.Glob(filter.source) : undefined;
  const runId = filter.run;
  return function matches(entry) {
    if (stages && !stages.has(entry.stage)) return false;
    if (runId !== undefined && entry.runId !== runId) return false;
    if (glob && !glob.match(entry.source)) return false;
    return true;
  };
}

/**
 * The replay's source: the snapshot's entries, each emitted with its original position. `take` decides (and records) whether an entry is replayed; it runs just before the
 * entry is emitted, so an entry is recorded exactly when it enters the pipeline.
 */
function replaySource(folder: string, snapshot: string, files: readonly string[], take: (stored: StoredDeadLetter) => boolean): Observable<unknown> {
  return new Observable<unknown>((subscriber) => {
    const flow = currentFlow(subscriber);
    // Each original input is an input of the replay, so dead letters and commits name it again.
    const inputs = new Map<string, Input>();
    let cancelled = false;
    async function pump(): Promise<void> {
      for await (const stored of streamDeadLetters(folder, { files, from: snapshot })) {
        if (flow.gate) await waitForGate(flow);
        if (cancelled || subscriber.closed || flow.stopping) break;
        if (!take(stored)) continue;
        const { entry } = stored;
        let input = inputs.get(entry.source);
        if (!input) inputs.set(entry.source, (input = new Input(flow, entry.source)));
        const position = input.at(entry.line, entry.raw, entry.offset);
        const parsed = parseRaw(entry);
        if (parsed.error !== undefined) {
          sendToDeadLetter(flow, "parse", parsed.error, undefined, position, entry.rawBase64 !== undefined ? { rawBase64: entry.rawBase64 } : {});
        } else {
          subscriber.next(stamp(parsed.value, position));
        }
      }
      subscriber.complete();
    }
    pump().catch((error) => subscriber.error(error));
    return () => {
      cancelled = true;
    };
  });
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

function parseRaw(entry: DeadLetter): ParsedJson {
  let text = entry.raw;
  if (entry.rawBase64 !== undefined) {
    try {
      text = strictUtf8.decode(Buffer.from(entry.rawBase64, "base64"));
    } catch {
      // Still the reason the source gave ("line is not valid UTF-8", "record ..."): the same
      // words, without a note of what was cut, so `summarize` counts both in one group.
      const said = /^\w+ is not valid UTF-8/.exec(entry.error)?.[0];
      return { ok: false, error: said ?? "not valid UTF-8 (the exact bytes are in rawBase64)" };
    }
  }
  return parseJson(text);
}

function ledgerPath(folder: string, runId: string): string {
  return join(folder, `replayed-${runId}.ledger`);
}

function snapshotDir(folder: string, runId: string): string {
  return join(folder, `.replay-${runId}`);
}

/**
 * The folder's lock, or undefined when it is missing or torn. Throws when it names an unsafe run
 * id: sluice never writes one, and that id would name paths outside the folder.
 */
function readLock(folder: string): LockInfo | undefined {
  return lockInfoOf(readLockFile(join(folder, REPLAY_LOCK)), folder);
}

/** A lock file's fields as a replay's lock, or undefined when it is torn (see {@link readLock}). */
function lockInfoOf(info: StoredLock | undefined, folder: string): LockInfo | undefined {
  if (info === undefined || typeof info.pid !== "number" || info.runId === undefined) return undefined;
  const path = join(folder, REPLAY_LOCK);
  try {
    checkRunId(info.runId, `replay: the lock ${path}`);
  } catch (error) {
    throw new Error(`${(error as Error).message}. sluice never writes such a lock, so nothing it names was deleted: look at the folder, then remove the lock`);
  }
  return info as unknown as LockInfo;
}

function busy(folder: string, holder: StoredLock | undefined, cause: LockedError): LockedError {
  const who = holder
    ? `run ${String(holder.runId)}, pid ${String(holder.pid)} on host ${String(holder.host ?? "this host")}, since ${String(holder.since ?? holder.startedAt ?? "an unknown time")}`
    : "unknown";
  return new LockedError(
    cause.path,
    `replay: another replay (${who}) is running on ${folder}; wait for it to finish, or remove ${cause.path} if no such process exists`,
    holder,
  );
}

/**
 * Takes the folder's replay lock for `runId`. A stale one (its replay died) is taken over
 * through src/io/lock.ts, which lets exactly one of the replays that find it at once roll the
 * dead replay back (`onStale`) and take its place; the others then find a live lock and stop.
 * Two replays that both rolled back and both ran happened in 1 of 12 trials before.
 */
function takeLock(folder: string, runId: string, moduleName: string): { lock: Lock; rolledBack: ReplayRollback | undefined } {
  let rolledBack: ReplayRollback | undefined;
  try {
    const lock = acquireLock(join(folder, REPLAY_LOCK), {
      runId,
      what: `dead-letter folder ${folder} (replay)`,
      fields: { startedAt: new Date().toISOString(), module: moduleName, cwd: process.cwd() },
      onStale(stale) {
        rolledBack = reconcile(folder, lockInfoOf(stale, folder));
      },
    });
    return { lock, rolledBack };
  } catch (error) {
    if (error instanceof LockedError && error.path === join(folder, REPLAY_LOCK)) throw busy(folder, error.holder, error);
    throw error;
  }
}

/**
 * Undoes an unfinished replay (or only cleans up after one whose ledger is committed). Its lock
 * is left in place: the caller replaces it with its own.
 */
function reconcile(folder: string, lock: LockInfo | undefined): ReplayRollback {
  if (!lock) {
    // Torn lock: the replay died before it made its snapshot, so it wrote nothing.
    return { runId: "(unknown)", finished: false, datasetFiles: [], deadLetterFiles: [], restored: [] };
  }
  const snapshot = snapshotDir(folder, lock.runId);
  const finished = existsSync(ledgerPath(folder, lock.runId));
  const datasetFiles: string[] = [];
  const deadLetterFiles: string[] = [];
  if (!finished) {
    // Every path is checked before any is deleted: a checkpoint naming another file was not
    // written by this replay's sink, and is not trusted with anything.
    for (const path of replayDatasetFiles(join(snapshot, "checkpoint.sqlite"), lock)) {
      if (existsSync(path)) {
        rmSync(path, { force: true });
        datasetFiles.push(path);
      }
    }
    for (const name of listDeadLetterFilesSync(folder, { runs: [lock.runId] })) {
      rmSync(join(folder, name), { force: true });
      deadLetterFiles.push(join(folder, name));
    }
    // A file it was committing when it died, under its temporary name.
    for (const name of readdirSync(folder)) {
      if (isDeadLetterFileOf(name, lock.runId, { temporary: true })) rmSync(join(folder, name), { force: true });
    }
  }
  const restored = existsSync(snapshot) ? restoreFromSnapshot(folder, snapshot) : [];
  rmSync(snapshot, { recursive: true, force: true });
  fsyncFolder(folder);
  return { runId: lock.runId, finished, datasetFiles, deadLetterFiles, restored };
}

/**
 * The dataset files an unfinished replay's checkpoint saw the sink start to commit (recorded
 * before each rename), as absolute paths. Relative paths are resolved against the current
 * folder, never the lock's `cwd`. Throws, deleting nothing, when a path is not named like the
 * replay's own files (`part-<runId>-<n>.parquet`), or when paths are relative and the replay ran
 * in another folder (they would name other files here).
 */
function replayDatasetFiles(path: string, lock: LockInfo): string[] {
  const recorded = checkpointFiles(path, lock.runId);
  const foreign = recorded.filter((file) => typeof file !== "string" || !isDatasetFileOf(basename(file), lock.runId));
  if (foreign.length > 0) {
    throw new Error(
      `replay: the checkpoint ${path} of unfinished replay ${lock.runId} names ${foreign.length} file(s) that are not that replay's (such as ${JSON.stringify(foreign[0])}; its files are named part-${lock.runId}-<n>.parquet). sluice's sink never records those, so nothing was deleted: look at the folder, then remove ${join(path, "..")} and the lock`,
    );
  }
  const relative = recorded.filter((file) => !isAbsolute(file));
  if (relative.length > 0 && typeof lock.cwd === "string" && resolve(lock.cwd) !== process.cwd()) {
    throw new Error(
      `replay: unfinished replay ${lock.runId} wrote ${relative.length} dataset file(s) with paths relative to the folder it ran in (such as ${relative[0]}), and its lock says that was ${lock.cwd}, not ${process.cwd()}: run the replay from the folder the interrupted one ran in, so its files can be rolled back; nothing was deleted`,
    );
  }
  return recorded.map((file) => resolve(file));
}

/** The paths the checkpoint recorded for `runId`, as written. */
function checkpointFiles(path: string, runId: string): string[] {
  if (!existsSync(path)) return [];
  const db = new Database(path, { readonly: true });
  try {
    const rows = db.query("SELECT DISTINCT path FROM commits WHERE run_id = ?").all(runId) as { path: unknown }[];
    return rows.map((row) => row.path as string);
  } catch {
    // The run died before the checkpoint created its tables: no file was started.
    return [];
  } finally {
    db.close();
  }
}

/** Creates the replay's checkpoint with an earlier run in it, so the sink never replaces the dataset. */
function guardCheckpoint(path: string): void {
  const db = new Database(path, { create: true });
  try {
    db.run("CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY, started_at TEXT NOT NULL, finished_at TEXT)");
    const now = new Date().toISOString();
    db.query("INSERT OR IGNORE INTO runs (run_id, started_at, finished_at) VALUES (?, ?, ?)").run("replay-guard", now, now);
  } finally {
    db.close();
  }
}

function restoreFromSnapshot(folder: string, snapshot: string): string[] {
  const restored: string[] = [];
  for (const name of listDeadLetterFilesSync(snapshot)) {
    const target = join(folder, name);
    if (!existsSync(target)) {
      linkSync(join(snapshot, name), target);
      restored.push(target);
    }
  }
  if (restored.length > 0) fsyncFolder(folder);
  return restored;
}

