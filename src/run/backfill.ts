/**
 * Backfills: one run of a pipeline per date of an inclusive range, in order, stopping at the
 * first failure, and resuming there when run again.
 *
 * Progress lives in a small JSON state file (by default `.sluice/backfill/<pipeline>/<from>..<to>.json`
 * beside the pipeline module; `sluice run --backfill-state` or the `state` option chooses
 * another). It lists the dates whose runs finished, with their run ids and figures, and the
 * last failure. It is rewritten whole after every date (temporary file, fsync, rename), so a
 * crash leaves the previous version or the new one, never half of one. A lock beside it keeps two
 * backfills from sharing it.
 */
import { createHash } from "node:crypto";
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from "node:fs";
import { basename, dirname, extname, join } from "node:path";
import { newRunId } from "../flow/runId.ts";
import { fsyncFolder } from "../io/fsync.ts";
import { acquireLock, lockPathOf } from "../io/lock.ts";
import { civilFromDays, parseIsoDays } from "../schema/instant.ts";
import { createLogger, type Logger } from "./log.ts";
import { type Pipeline, runPipeline } from "./pipeline.ts";
import { redactArgs } from "./redact.ts";
import type { RunOptions, RunSummary } from "./run.ts";

/** The longest range one backfill takes (about 27 years): more is a typo, not a backfill. */
export const MAX_BACKFILL_DAYS = 10_000;

/**
 * The dates of an inclusive range `FROM..TO` (or a single date), in order. Throws an `Error`
 * starting with `who` for text that is not a range, a date that does not exist (`2023-02-29`), a
 * reversed range or one longer than {@link MAX_BACKFILL_DAYS}.
 *
 * @example
 * parseDateRange("2024-02-28..2024-03-01"); // ["2024-02-28", "2024-02-29", "2024-03-01"]
 */
export function parseDateRange(text: string, who = "--backfill"): string[] {
  const shown = text.length > 60 ? `${JSON.stringify(text.slice(0, 60))}…` : JSON.stringify(text);
  const match = /^(\S+?)(?:\.\.(\S+))?$/.exec(text.trim());
  const format = "write FROM..TO with dates YYYY-MM-DD, such as 2024-03-01..2024-03-31 (both included)";
  if (!match || text.length > 60) throw new Error(`${who}: ${shown} is not a date range: ${format}`);
  const [, fromText = "", toText = fromText] = match;
  const day = (value: string, which: string) => {
    if (!/^\d{4}-\d{2}-\d{2}$/.test(value)) throw new Error(`${who}: ${shown} is not a date range: ${which} ${JSON.stringify(value)} is not a date YYYY-MM-DD; ${format}`);
    const days = parseIsoDays(value);
    if (Number.isNaN(days)) throw new Error(`${who}: ${shown}: ${which} ${value} is not a date that exists`);
    return days;
  };
  const from = day(fromText, "FROM");
  const to = day(toText, "TO");
  if (to < from) throw new Error(`${who}: ${shown} is reversed: ${fromText} comes after ${toText}; write the earlier date first`);
  if (to - from + 1 > MAX_BACKFILL_DAYS) throw new Error(`${who}: ${shown} covers ${to - from + 1} days; a backfill covers at most ${MAX_BACKFILL_DAYS}: split it`);
  return Array.from({ length: to - from + 1 }, (_, i) => civilFromDays(from + i));
}

/** The state file a backfill of `modulePath` over `dates` uses unless told otherwise. */
export function defaultBackfillState(modulePath: string, dates: readonly string[]): string {
  const name = basename(modulePath, extname(modulePath));
  return join(dirname(modulePath), ".sluice", "backfill", name, `${dates[0]}..${dates.at(-1)}.json`);
}

/** One finished date, as the state file records it. */
export interface BackfilledDate {
  readonly runId: string;
  readonly finishedAt: string;
  readonly in: number;
  readonly written: number;
  readonly deadLettered: number;
}

/** The state file's content. */
export interface BackfillState {
  readonly version: 1;
  readonly pipeline: string;
  readonly range: string;
  /** SHA-256 of the pipeline arguments: a resume must run with the same ones. */
  readonly argsDigest: string;
  /** The arguments with credentials masked, for people reading the file. */
  readonly args: readonly string[];
  readonly done: Readonly<Record<string, BackfilledDate>>;
  readonly lastFailure?: { readonly date: string; readonly runId?: string; readonly at: string; readonly error: string };
}

/** What running one date gave. */
export type DateOutcome =
  | { readonly ok: true; readonly runId: string; readonly summary: Pick<RunSummary, "in" | "written" | "deadLettered"> }
  | { readonly ok: false; readonly runId?: string; readonly error: string };

/** Options of {@link runBackfill}. */
export interface BackfillOptions {
  /** The dates, in the order to run them (see {@link parseDateRange}). */
  readonly dates: readonly string[];
  /** The state file. */
  readonly state: string;
  /** Names the pipeline in the state file and messages. */
  readonly pipeline: string;
  /** The pipeline's arguments: recorded (as a digest) so a resume with other arguments is refused. */
  readonly args: readonly string[];
  /** Forget what the state file says and run every date again. */
  readonly restart?: boolean;
  /** Runs one date. A rejection counts as a failure of that date. */
  readonly runDate: (date: string) => Promise<DateOutcome>;
  /** Where progress lines go (default: text on standard error). */
  readonly log?: Logger;
}

/** What a backfill did. */
export interface BackfillResult {
  /** Dates run now, in order, and finished. */
  readonly ran: readonly string[];
  /** Dates an earlier backfill with the same state file had finished: not run again. */
  readonly alreadyDone: readonly string[];
  /** The date that failed (the backfill stopped there), with its error. */
  readonly failed?: { readonly date: string; readonly error: string; readonly runId?: string };
  /** Dates not run because an earlier one failed. */
  readonly notRun: readonly string[];
  readonly state: string;
}

/** A state file that cannot be used, or a backfill that cannot start. */
export class BackfillError extends Error {
  readonly state: string;
  constructor(state: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "BackfillError";
    this.state = state;
  }
}

/**
 * Runs `runDate` for each date in order, skipping the dates the state file records as done,
 * recording each finished date before the next starts, and stopping at the first failure (a
 * rejection or `ok: false`). Run again with the same state file, it resumes at the failed date.
 *
 * Rejects with a {@link BackfillError} when the state file is unreadable, belongs to another
 * pipeline or range, or was written with other arguments (unless `restart`), or when another
 * backfill holds it (`LockedError`). A date's failure never rejects: it is in the result.
 *
 * @example
 * const result = await runBackfill({
 *   dates: parseDateRange("2024-03-01..2024-03-31"),
 *   state: "out/.backfill.json",
 *   pipeline: "daily",
 *   args: ["--out", "out"],
 *   runDate: async (date) => ({ ok: true, runId: date, summary: await runDaily(date) }),
 * });
 */
export async function runBackfill(options: BackfillOptions): Promise<BackfillResult> {
  const { dates, state: path } = options;
  if (dates.length === 0) throw new BackfillError(path, "a backfill needs at least one date");
  const log = options.log ?? createLogger();
  const range = `${dates[0]}..${dates.at(-1)}`;
  const argsDigest = createHash("sha256").update(JSON.stringify(options.args)).digest("hex");
  const lock = acquireLock(lockPathOf(path), { runId: newRunId(), what: `backfill state ${path}` });
  try {
    const previous = options.restart ? undefined : readState(path);
    if (previous) {
      const other = previous.pipeline !== options.pipeline ? `pipeline ${previous.pipeline}` : previous.range !== range ? `range ${previous.range}` : undefined;
      if (other) throw new BackfillError(path, `backfill state ${path} belongs to ${other}, not ${options.pipeline} over ${range}; give another state file`);
      if (previous.argsDigest !== argsDigest) {
        throw new BackfillError(
          path,
          `backfill state ${path} was written by a backfill with other pipeline arguments (${previous.args.join(" ")}); give the same arguments, another state file, or restart the backfill`,
        );
      }
    }
    let state: BackfillState = {
      version: 1,
      pipeline: options.pipeline,
      range,
      argsDigest,
      args: redactArgs(options.args),
      done: { ...previous?.done },
    };
    const alreadyDone = dates.filter((d) => state.done[d] !== undefined);
    if (alreadyDone.length > 0) {
      const next = dates.find((d) => !state.done[d]);
      const then = next === undefined ? "nothing left to run (restart, or --backfill-restart, runs them again)" : `going on from ${next}`;
      log.info(`backfill ${options.pipeline} ${range}: ${alreadyDone.length} of ${dates.length} dates already done (state ${path}); ${then}`);
    }
    const ran: string[] = [];
    for (const [index, date] of dates.entries()) {
      if (state.done[date]) continue;
      log.info(`backfill ${options.pipeline} ${range}: date ${index + 1} of ${dates.length}: ${date}`);
      let outcome: DateOutcome;
      try {
        outcome = await options.runDate(date);
      } catch (error) {
        outcome = { ok: false, error: error instanceof Error ? error.message : String(error) };
      }
      if (!outcome.ok) {
        state = { ...state, lastFailure: { date, ...(outcome.runId ? { runId: outcome.runId } : {}), at: new Date().toISOString(), error: outcome.error } };
        writeState(path, state);
        const notRun = dates.slice(index + 1).filter((d) => !state.done[d]);
        log.error(`backfill ${options.pipeline} ${range}: ${date} failed (${outcome.error}); ${notRun.length} later date(s) not run. Run the same backfill again to resume from ${date}`);
        return { ran, alreadyDone, failed: { date, error: outcome.error, ...(outcome.runId ? { runId: outcome.runId } : {}) }, notRun, state: path };
      }
      const { in: read, written, deadLettered } = outcome.summary;
      const { lastFailure: _resolved, ...rest } = state;
      state = { ...rest, done: { ...state.done, [date]: { runId: outcome.runId, finishedAt: new Date().toISOString(), in: read, written, deadLettered } } };
      writeState(path, state);
      ran.push(date);
    }
    log.info(`backfill ${options.pipeline} ${range}: done, ${ran.length} date(s) run now, ${alreadyDone.length} done before (state ${path})`);
    return { ran, alreadyDone, notRun: [], state: path };
  } finally {
    lock.release();
  }
}

/** Reads a state file; undefined when there is none. Throws a {@link BackfillError} for one that is not a state file. */
export function readState(path: string): BackfillState | undefined {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new BackfillError(path, `cannot read backfill state ${path}: ${(error as Error).message}`, { cause: error });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new BackfillError(path, `backfill state ${path} is not JSON (${(error as Error).message}); remove it or restart the backfill`, { cause: error });
  }
  const s = value as Partial<BackfillState> | null;
  if (
    typeof s !== "object" ||
    s === null ||
    s.version !== 1 ||
    typeof s.pipeline !== "string" ||
    typeof s.range !== "string" ||
    typeof s.argsDigest !== "string" ||
    !Array.isArray(s.args) ||
    typeof s.done !== "object" ||
    s.done === null
  ) {
    throw new BackfillError(path, `backfill state ${path} is not a sluice backfill state (version 1); remove it or restart the backfill`);
  }
  return s as BackfillState;
}

function writeState(path: string, state: BackfillState): void {
  mkdirSync(dirname(path), { recursive: true });
  const temporary = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  const fd = openSync(temporary, "w");
  try {
    writeSync(fd, `${JSON.stringify(state, null, 2)}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(temporary, path);
  fsyncFolder(dirname(path));
}

/** Options of {@link backfillPipeline}. */
export interface BackfillPipelineOptions {
  /** The state file (required: a library call has no module path to put it beside). */
  readonly state: string;
  /** Names the pipeline in the state file (default `pipeline`). */
  readonly name?: string;
  /** The pipeline's arguments, the same for every date. */
  readonly args?: readonly string[];
  /** Run every date again, forgetting the state file. */
  readonly restart?: boolean;
  readonly log?: Logger;
  /** Options of each date's `run()` (each date gets a fresh run id). */
  readonly runOptions?: Omit<RunOptions, "runId">;
  /** Called after each date's run finishes. */
  readonly onDate?: (date: string, summary: RunSummary) => void;
}

/**
 * Runs `pipeline` once per date of `range` (`"2024-03-01..2024-03-31"`, inclusive), in order, each
 * run with its own run id and the date in its context (`context.date`), stopping at the first
 * failed or stopped run and resuming at that date when called again with the same state file.
 * Bad records never fail a run; a rejected run (unreadable input, unwritable output) or one
 * stopped by `runOptions.signal` does.
 *
 * @example
 * const result = await backfillPipeline(daily, "2024-03-01..2024-03-31", { state: "out/.backfill.json", args: ["--out", "out"] });
 * if (result.failed) console.error(`stopped at ${result.failed.date}: ${result.failed.error}`);
 */
export function backfillPipeline(pipeline: Pipeline, range: string, options: BackfillPipelineOptions): Promise<BackfillResult> {
  let dates: string[];
  try {
    dates = parseDateRange(range, "backfillPipeline(): range");
  } catch (error) {
    return Promise.reject(error);
  }
  const args = options.args ?? [];
  return runBackfill({
    dates,
    state: options.state,
    pipeline: options.name ?? "pipeline",
    args,
    restart: options.restart ?? false,
    ...(options.log ? { log: options.log } : {}),
    async runDate(date) {
      const summary = await runPipeline(pipeline, { args: [...args], date }, options.runOptions);
      if (summary.stopped) return { ok: false, runId: summary.runId, error: "the run was stopped before the end of its input" };
      options.onDate?.(date, summary);
      return { ok: true, runId: summary.runId, summary };
    },
  });
}
