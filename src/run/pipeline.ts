/**
 * What a pipeline module is: the unit `sluice run`, `sluice list` and `sluice dead-letter replay`
 * work with. A pipeline module is a file whose default export is a {@link Pipeline}.
 */
import { Cron } from "croner";
import type { Observable } from "rxjs";
import { type RunOptions, type RunSummary, run } from "./run.ts";
import { checkRunId, newRunId } from "../flow/runId.ts";

/** What `process` is told about the run it is part of. */
export interface PipelineContext {
  /** The command-line arguments after the module path. */
  readonly args: readonly string[];
  readonly runId: string;
  /**
   * True when the records are dead letters sent back through the pipeline by
   * `sluice dead-letter replay`: the sink must then add to the dataset (`mode: "append"`)
   * rather than replace it.
   */
  readonly replay: boolean;
  /**
   * The date (`YYYY-MM-DD`) this run is for, when it is one date of a backfill
   * (`sluice run --backfill 2024-03-01..2024-03-31`, {@link backfillPipeline}); absent otherwise.
   */
  readonly date?: string;
  /** When `sluice schedule` runs the pipeline: the time the run was due (its cron time). */
  readonly scheduledAt?: Date;
}

/** A pipeline's schedule, when it says more than a cron expression. */
export interface ScheduleSpec {
  /**
   * A cron expression: 5 fields (`minute hour day-of-month month day-of-week`), or 6 with seconds
   * first, or a nickname (`@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`). Day of month
   * and day of week combine with OR, as in Vixie cron.
   */
  readonly cron: string;
  /** The IANA time zone the expression is read in (default `UTC`). */
  readonly timezone?: string;
  /** The pipeline's arguments on scheduled runs, as they would follow the module path of `sluice run` (default none). */
  readonly args?: readonly string[];
  /**
   * How many times a scheduled run that failed (or ran out of `timeoutSeconds`) is started again
   * for the same cron time, each a new run with its own run id and log (default 0). Safe for a
   * pipeline that replaces its output (mode `overwrite`, or a checkpoint); one that appends adds
   * again what a failed attempt committed.
   */
  readonly retries?: number;
  /** Seconds before the first retry, doubled before each further one (default 60). */
  readonly retryDelaySeconds?: number;
  /**
   * Seconds a scheduled run may take: then it is stopped as SIGTERM stops `sluice run` (what is
   * buffered is committed, the rest of the input is not read) and counts as failed (default: no
   * limit).
   */
  readonly timeoutSeconds?: number;
}

/**
 * A pipeline split in two, so the same processing can run on its usual source or on replayed
 * dead letters.
 */
export interface Pipeline {
  /** One line shown by `sluice list`. */
  readonly description: string;
  /** The records in, built from the command-line arguments. */
  readonly source: (context: PipelineContext) => Observable<unknown>;
  /** Everything after the source: validation, enrichment, the dead letter and the sink. */
  readonly process: (records: Observable<unknown>, context: PipelineContext) => Observable<unknown>;
  /**
   * When `sluice schedule` runs it: a cron expression (`"0 2 * * *"`, read in UTC), or
   * {@link ScheduleSpec} for a time zone and arguments. Checked when the module is loaded.
   */
  readonly schedule?: string | ScheduleSpec;
}

/** A pipeline's schedule, checked: what {@link parseSchedule} returns. */
export interface Schedule {
  readonly cron: string;
  readonly timezone: string;
  readonly args: readonly string[];
  /** Retries of a failed run (0: none). */
  readonly retries: number;
  /** Milliseconds before the first retry, doubled before each further one. */
  readonly retryDelayMs: number;
  /** Milliseconds a run may take, or undefined for no limit. */
  readonly timeoutMs: number | undefined;
  /** The first time strictly after `after` when the pipeline is due, or undefined when it never is again. */
  next(after: Date): Date | undefined;
}

/** The longest cron expression accepted: longer text is not a schedule anyone wrote by hand. */
const MAX_CRON_LENGTH = 256;

/**
 * Checks a pipeline's `schedule` and returns it with defaults filled in. Throws an `Error` that
 * starts with `who` (the module's path) and says what is wrong: not a string or object, an
 * expression cron cannot read (croner's reason is quoted), an unknown time zone, arguments that
 * are not strings, or an expression that never fires (`0 0 31 2 *`).
 *
 * @example
 * const schedule = parseSchedule({ cron: "0 2 * * *", timezone: "Europe/Berlin" }, "pipelines/daily.ts");
 * schedule.next(new Date("2024-03-01T00:00:00Z")); // 2024-03-01T01:00:00.000Z
 */
export function parseSchedule(schedule: unknown, who: string): Schedule {
  const spec = typeof schedule === "string" ? { cron: schedule } : schedule;
  if (typeof spec !== "object" || spec === null || Array.isArray(spec)) {
    throw new Error(`${who}: schedule must be a cron expression such as "0 2 * * *" or { cron, timezone?, args?, retries?, retryDelaySeconds?, timeoutSeconds? }, not ${typeName(schedule)}`);
  }
  const {
    cron,
    timezone = "UTC",
    args = [],
    retries = 0,
    retryDelaySeconds = 60,
    timeoutSeconds,
  } = spec as { cron?: unknown; timezone?: unknown; args?: unknown; retries?: unknown; retryDelaySeconds?: unknown; timeoutSeconds?: unknown };
  if (typeof cron !== "string") throw new Error(`${who}: schedule.cron must be a cron expression such as "0 2 * * *", not ${typeName(cron)}`);
  const shown = cron.length > 60 ? `${JSON.stringify(cron.slice(0, 60))}… (${cron.length} characters)` : JSON.stringify(cron);
  if (cron.length > MAX_CRON_LENGTH) throw new Error(`${who}: schedule ${shown} is not a cron expression: longer than ${MAX_CRON_LENGTH} characters`);
  if (typeof timezone !== "string" || !isTimeZone(timezone)) {
    throw new Error(`${who}: schedule time zone ${JSON.stringify(timezone)} is not an IANA time zone such as "UTC" or "Europe/Berlin"`);
  }
  if (!Array.isArray(args) || !args.every((a) => typeof a === "string")) throw new Error(`${who}: schedule.args must be an array of strings`);
  if (typeof retries !== "number" || !Number.isInteger(retries) || retries < 0 || retries > MAX_RETRIES) {
    throw new Error(`${who}: schedule.retries must be a whole number from 0 to ${MAX_RETRIES}, not ${shownValue(retries)}`);
  }
  if (typeof retryDelaySeconds !== "number" || !Number.isFinite(retryDelaySeconds) || retryDelaySeconds < 0 || retryDelaySeconds > MAX_SECONDS) {
    throw new Error(`${who}: schedule.retryDelaySeconds must be a number of seconds from 0 to ${MAX_SECONDS}, not ${shownValue(retryDelaySeconds)}`);
  }
  if (timeoutSeconds !== undefined && (typeof timeoutSeconds !== "number" || !Number.isFinite(timeoutSeconds) || timeoutSeconds <= 0 || timeoutSeconds > MAX_SECONDS)) {
    throw new Error(`${who}: schedule.timeoutSeconds must be a number of seconds above 0 and at most ${MAX_SECONDS}, not ${shownValue(timeoutSeconds)}`);
  }
  let parsed: Cron;
  try {
    // mode: 5 fields (minutes) or 6 (seconds first); a 7th field (years) is not cron as people know it.
    parsed = new Cron(cron.trim(), { timezone, mode: "5-or-6-parts" });
  } catch (error) {
    const reason = (error instanceof Error ? error.message : String(error)).replace(/^CronPattern: /, "");
    throw new Error(`${who}: schedule ${shown} is not a valid cron expression: ${reason}`);
  }
  const next = (after: Date) => parsed.nextRun(after) ?? undefined;
  if (next(new Date()) === undefined) throw new Error(`${who}: schedule ${shown} never fires (no such date, e.g. February 30)`);
  return {
    cron: cron.trim(),
    timezone,
    args: [...args],
    retries,
    retryDelayMs: retryDelaySeconds * 1000,
    timeoutMs: timeoutSeconds === undefined ? undefined : timeoutSeconds * 1000,
    next,
  };
}

/** More retries than this is a loop, not a schedule. */
const MAX_RETRIES = 100;
/** Thirty days: a longer delay or timeout is a mistake in units. */
const MAX_SECONDS = 30 * 86_400;

function shownValue(value: unknown): string {
  return typeof value === "number" ? String(value) : typeName(value);
}

function isTimeZone(name: string): boolean {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: name });
    return name.length > 0;
  } catch {
    return false;
  }
}

function typeName(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return typeof value === "object" ? "an object" : `a ${typeof value}`;
}

/**
 * Declares a pipeline module's default export. It only returns its argument: it exists so the
 * module type-checks against {@link Pipeline}.
 *
 * @example
 * export default definePipeline({
 *   description: "Clickstream NDJSON to date-partitioned Parquet",
 *   schedule: "0 2 * * *", // for `sluice schedule`: every day at 02:00 UTC
 *   source: ({ args }) => fromNdjson(args[0] ?? "data/*.ndjson"),
 *   process: (records, { replay }) => records.pipe(
 *     validate(Event),
 *     deadLetter("out/dead-letter"),
 *     toParquet("out/events", { schema: Event, mode: replay ? "append" : "overwrite" }),
 *   ),
 * });
 */
export function definePipeline(pipeline: Pipeline): Pipeline {
  return pipeline;
}

/**
 * True when `value` has the shape of a {@link Pipeline}: a string `description` and functions
 * `source` and `process`. Used to check a module's default export before running it.
 *
 * @example
 * const module = await import(path);
 * if (!isPipeline(module.default)) throw new Error(`${path} does not export a pipeline`);
 */
export function isPipeline(value: unknown): value is Pipeline {
  if (typeof value !== "object" || value === null) return false;
  const candidate = value as { description?: unknown; source?: unknown; process?: unknown };
  return typeof candidate.description === "string" && typeof candidate.source === "function" && typeof candidate.process === "function";
}

/**
 * Runs a pipeline on its own source, the way `sluice run` does: `process(source(context),
 * context)` through {@link run}, with the context's run id. Resolves with the run's summary;
 * rejects as `run` does (infrastructure failures), or at once when `source`/`process` throw
 * while building the pipeline (bad arguments) or the run id is not a safe one (see `checkRunId`).
 *
 * @example
 * const summary = await runPipeline(pipeline, { args: ["--date", "2024-03-01"] });
 */
export function runPipeline(
  pipeline: Pipeline,
  context: Partial<PipelineContext> = {},
  options: Omit<RunOptions, "runId"> = {},
): Promise<RunSummary> {
  let full: PipelineContext;
  let observable: Observable<unknown>;
  try {
    full = {
      args: context.args ?? [],
      runId: checkRunId(context.runId ?? newRunId(), "runPipeline(): context.runId"),
      replay: context.replay ?? false,
      ...(context.date !== undefined ? { date: context.date } : {}),
      ...(context.scheduledAt !== undefined ? { scheduledAt: context.scheduledAt } : {}),
    };
    observable = pipeline.process(pipeline.source(full), full);
  } catch (error) {
    return Promise.reject(error);
  }
  return run(observable, { ...options, runId: full.runId });
}
