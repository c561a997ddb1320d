/**
 * Running pipelines on their cron schedules, in this process: what `sluice schedule` does.
 *
 * Each pipeline has its own loop: wait until its next cron time, then start a run unless the
 * previous one is still going (then the time is skipped and logged). Runs of different pipelines
 * go on at once, each with its own flow (counters, gate, dead-letter targets), as `run()` allows.
 * Every run gets a fresh run id and its own log file, `<logs>/<pipeline>/<runId>.log`.
 *
 * Time comes from a {@link Clock}, so tests move it by hand ({@link ManualClock}) instead of
 * waiting for real minutes.
 */
import { closeSync, mkdirSync, openSync, writeSync } from "node:fs";
import { join } from "node:path";
import type { Flow } from "../flow/flow.ts";
import { createLogger, type LogFormat, type Logger } from "./log.ts";
import { parseSchedule, type Pipeline, runPipeline, type Schedule } from "./pipeline.ts";
import { redactArgs } from "./redact.ts";
import { formatSummary, type RunSummary } from "./run.ts";

/** Where a scheduler gets the time and how it waits for it. */
export interface Clock {
  /** Epoch milliseconds. */
  now(): number;
  /** Resolves once `now() >= time`, or as soon as `signal` aborts. Never rejects. */
  sleepUntil(time: number, signal: AbortSignal): Promise<void>;
}

/** The longest single timer of {@link systemClock}: it checks the time again after this, so a changed wall clock or a suspended machine is noticed. */
const MAX_TIMER_MS = 60_000;

/** The real clock: `Date.now()` and timers. */
export const systemClock: Clock = {
  now: () => Date.now(),
  sleepUntil(time, signal) {
    return new Promise<void>((resolve) => {
      if (signal.aborted) return resolve();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        resolve();
      };
      const wait = () => {
        const left = time - Date.now();
        if (left <= 0) return done();
        timer = setTimeout(wait, Math.min(left, MAX_TIMER_MS));
      };
      signal.addEventListener("abort", done, { once: true });
      wait();
    });
  },
};

/**
 * A clock that moves only when told: for tests of schedules. `advanceTo` wakes every sleeper due
 * on the way, one at a time in time order, at its own time, and lets what it started run before
 * moving on, so a scheduler sees each cron time as it would in real time.
 *
 * @example
 * const clock = new ManualClock("2024-03-01T10:07:00Z");
 * const scheduler = new Scheduler(pipelines, { clock, logs: "logs" });
 * scheduler.start();
 * await clock.advanceTo("2024-03-01T11:00:00Z"); // every fire time up to 11:00 has started
 */
export class ManualClock implements Clock {
  #now: number;
  readonly #sleepers = new Set<{ readonly time: number; readonly wake: () => void }>();

  constructor(start: Date | string | number) {
    this.#now = instant(start);
  }

  now(): number {
    return this.#now;
  }

  sleepUntil(time: number, signal: AbortSignal): Promise<void> {
    if (time <= this.#now || signal.aborted) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const sleeper = {
        time,
        wake: () => {
          this.#sleepers.delete(sleeper);
          signal.removeEventListener("abort", sleeper.wake);
          resolve();
        },
      };
      this.#sleepers.add(sleeper);
      signal.addEventListener("abort", sleeper.wake, { once: true });
    });
  }

  /** How many are waiting for a later time. */
  get sleeping(): number {
    return this.#sleepers.size;
  }

  /** Moves the time forward to `to`, waking each sleeper due on the way at its own time. */
  async advanceTo(to: Date | string | number): Promise<void> {
    const target = instant(to);
    for (;;) {
      let first: { readonly time: number; readonly wake: () => void } | undefined;
      for (const s of this.#sleepers) if (s.time <= target && (!first || s.time < first.time)) first = s;
      if (!first) break;
      this.#now = Math.max(this.#now, first.time);
      first.wake();
      await settle();
    }
    this.#now = Math.max(this.#now, target);
    await settle();
  }

  /** Moves the time forward by `ms`. */
  advance(ms: number): Promise<void> {
    return this.advanceTo(this.#now + ms);
  }
}

function instant(value: Date | string | number): number {
  const time = value instanceof Date ? value.getTime() : typeof value === "string" ? Date.parse(value) : value;
  if (!Number.isFinite(time)) throw new Error(`ManualClock: ${String(value)} is not a time`);
  return time;
}

/** Lets promise callbacks and one turn of the event loop run. */
function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** A pipeline to run on a schedule. */
export interface ScheduledPipeline {
  /** Names its log folder and its lines; unique among the scheduled pipelines. */
  readonly name: string;
  readonly pipeline: Pipeline;
  /** Default: the pipeline's own `schedule` (a pipeline without one is refused). */
  readonly schedule?: Schedule;
  /** The module's path, for log lines. */
  readonly path?: string;
}

/**
 * What happened to one cron time of one pipeline. `attempt` counts the runs of that cron time:
 * 1, then 2 for its first retry, and so on.
 */
export type ScheduleEvent =
  | {
      readonly type: "started";
      readonly pipeline: string;
      readonly runId: string;
      readonly scheduledAt: Date;
      readonly logFile: string;
      readonly attempt: number;
    }
  | {
      readonly type: "finished";
      readonly pipeline: string;
      readonly runId: string;
      readonly scheduledAt: Date;
      readonly logFile: string;
      readonly attempt: number;
      readonly summary: RunSummary;
    }
  | {
      readonly type: "failed";
      readonly pipeline: string;
      readonly runId: string;
      readonly scheduledAt: Date;
      readonly logFile: string;
      readonly attempt: number;
      readonly error: string;
      /** When the next attempt starts, if the schedule has a retry left; undefined when none follows. */
      readonly retryAt: Date | undefined;
    }
  | { readonly type: "skipped"; readonly pipeline: string; readonly scheduledAt: Date; readonly runningRunId: string };

/** Options of {@link Scheduler}. */
export interface SchedulerOptions {
  /** The folder of the run logs: `<logs>/<pipeline>/<runId>.log`. */
  readonly logs: string;
  /** Default {@link systemClock}. */
  readonly clock?: Clock;
  /** The scheduler's own lines: runs started, finished, failed, skipped (default: text on standard error). */
  readonly log?: Logger;
  /** Called for every {@link ScheduleEvent}, after it is logged. */
  readonly onEvent?: (event: ScheduleEvent) => void;
  /**
   * Called when a run starts, with its flow and its log; returns a function called when it ends.
   * `sluice schedule` writes progress lines into the run's log with it.
   */
  readonly watch?: (flow: Flow, log: Logger) => () => void;
  /** The format of the run logs (default `text`). */
  readonly logFormat?: LogFormat;
}

/** A cron time being run: its current attempt (replaced by each retry) and the whole of it. */
interface Running {
  runId: string;
  log: Logger;
  controller: AbortController;
  done: Promise<void>;
  /** Set while the attempt `runId` has failed and the next one is waited for: when it starts. */
  retryAt: Date | undefined;
}

/** How one attempt ended. */
type Outcome = "finished" | "stopped" | "failed";

/**
 * Runs pipelines on their cron schedules until {@link Scheduler.stop}.
 *
 * A cron time that comes while the same pipeline's previous run is still going is skipped, and
 * the skip is logged (in the scheduler's log and the running run's log). A cron time missed
 * because the process was busy or asleep is not made up: the next run is the next cron time after
 * now. A run that fails is logged and the pipeline stays scheduled. With `retries` in its
 * schedule, a failed run is started again after `retryDelaySeconds` (doubled each time), as a new
 * run with its own id and log; cron times that come meanwhile are skipped, as while a run goes
 * on. With `timeoutSeconds`, a run still going then is stopped (what is buffered is committed)
 * and counts as failed.
 *
 * `stop()` stops starting runs and stops the running ones the way SIGTERM stops `sluice run`:
 * their sources stop reading, what is buffered is committed, and `stop()` resolves once every
 * one has ended.
 *
 * @example
 * const found = (await discoverPipelines("pipelines")).filter((p) => p.ok && p.schedule);
 * const scheduler = new Scheduler(found.flatMap((p) => (p.ok ? [{ name: p.name, pipeline: p.pipeline }] : [])), { logs: "logs" });
 * scheduler.start();
 * process.once("SIGTERM", () => scheduler.stop());
 */
export class Scheduler {
  readonly #entries: readonly (ScheduledPipeline & { readonly schedule: Schedule })[];
  readonly #options: SchedulerOptions;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #running = new Map<string, Running>();
  readonly #stop = new AbortController();
  #loops: Promise<void>[] = [];
  #started = false;

  /** Throws when two pipelines share a name or one has no schedule (or an invalid one). */
  constructor(pipelines: readonly ScheduledPipeline[], options: SchedulerOptions) {
    const names = new Set<string>();
    this.#entries = pipelines.map((p) => {
      if (names.has(p.name)) throw new Error(`Scheduler: two pipelines are named ${p.name}`);
      names.add(p.name);
      // The name is a folder of the logs: any file name will do, but not one that leaves it.
      // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it refuses
      if (p.name === "" || p.name === "." || p.name === ".." || /[/\\\u0000-\u001f\u007f]/.test(p.name)) {
        throw new Error(`Scheduler: pipeline name ${JSON.stringify(p.name)} cannot name a log folder (no '/', '\\', control characters, '.' or '..')`);
      }
      if (p.schedule) return { ...p, schedule: p.schedule };
      if (p.pipeline.schedule === undefined) throw new Error(`Scheduler: pipeline ${p.name} has no schedule`);
      return { ...p, schedule: parseSchedule(p.pipeline.schedule, p.path ?? p.name) };
    });
    this.#options = options;
    this.#clock = options.clock ?? systemClock;
    this.#log = options.log ?? createLogger();
  }

  /** Starts every pipeline's loop. Calling it again does nothing. */
  start(): void {
    if (this.#started) return;
    this.#started = true;
    this.#loops = this.#entries.map((entry) => this.#loop(entry));
  }

  /** Pipeline name → run id of the runs going on now. */
  get running(): ReadonlyMap<string, string> {
    return new Map([...this.#running].map(([name, r]) => [name, r.runId]));
  }

  /**
   * Stops scheduling and stops the running runs (their sources stop reading, what is buffered is
   * committed); resolves when all have ended. Idempotent.
   */
  async stop(): Promise<void> {
    this.#stop.abort();
    for (const running of this.#running.values()) running.controller.abort();
    await Promise.all(this.#loops);
    await Promise.all([...this.#running.values()].map((r) => r.done));
  }

  async #loop(entry: ScheduledPipeline & { readonly schedule: Schedule }): Promise<void> {
    let after = this.#clock.now();
    while (!this.#stop.signal.aborted) {
      const due = entry.schedule.next(new Date(after));
      if (!due) {
        this.#log.info(`${entry.name}: its schedule ${entry.schedule.cron} has no more times; no more runs`);
        return;
      }
      await this.#clock.sleepUntil(due.getTime(), this.#stop.signal);
      if (this.#stop.signal.aborted) return;
      // Times missed while the process was busy or asleep are not made up.
      after = Math.max(due.getTime(), this.#clock.now());
      const running = this.#running.get(entry.name);
      if (running) {
        const { retryAt } = running;
        const why = retryAt ? `run ${running.runId} failed and is retried at ${retryAt.toISOString()}` : `run ${running.runId} is still running`;
        const json = this.#log.format === "json";
        this.#log.warn(
          `${entry.name}: skipped the run due at ${due.toISOString()}: ${why}`,
          json ? { pipeline: entry.name, due: due.toISOString(), running: running.runId, ...(retryAt ? { retryAt: retryAt.toISOString() } : {}) } : undefined,
        );
        // While a retry is waited for, no run is going: the failed attempt's log is closed.
        if (!retryAt) running.log.warn(`a run of ${entry.name} due at ${due.toISOString()} was skipped: this run was still going`);
        this.#options.onEvent?.({ type: "skipped", pipeline: entry.name, scheduledAt: due, runningRunId: running.runId });
        continue;
      }
      this.#start(entry, due);
    }
  }

  #start(entry: ScheduledPipeline & { readonly schedule: Schedule }, due: Date): void {
    const state: Running = { runId: "", log: this.#log, controller: new AbortController(), done: Promise.resolve(), retryAt: undefined };
    this.#running.set(entry.name, state);
    state.done = (async () => {
      const { retries, retryDelayMs } = entry.schedule;
      for (let attempt = 1; ; attempt++) {
        // The wait before the next attempt, should this one fail with a retry left.
        const delay = attempt <= retries ? retryDelayMs * 2 ** (attempt - 1) : undefined;
        const outcome = await this.#attempt(entry, due, attempt, state, delay);
        // The time the failure announced (state.retryAt) is the time the next attempt starts.
        const next = state.retryAt;
        if (outcome !== "failed" || next === undefined || this.#stop.signal.aborted) return;
        await this.#clock.sleepUntil(next.getTime(), this.#stop.signal);
        state.retryAt = undefined;
        if (this.#stop.signal.aborted) return;
      }
    })().finally(() => this.#running.delete(entry.name));
  }

  /** Runs one attempt of the cron time `due`, in its own log; resolves with how it ended. */
  async #attempt(
    entry: ScheduledPipeline & { readonly schedule: Schedule },
    due: Date,
    attempt: number,
    state: Running,
    retryDelayMs: number | undefined,
  ): Promise<Outcome> {
    // On failure: when the next attempt starts, if one follows (kept in `state` for the skips and the wait).
    const retryAt = () => {
      state.retryAt = retryDelayMs !== undefined && !this.#stop.signal.aborted ? new Date(this.#clock.now() + retryDelayMs) : undefined;
      return state.retryAt;
    };
    const runId = scheduledRunId(due);
    const logFile = join(this.#options.logs, entry.name, `${runId}.log`);
    const json = this.#log.format === "json";
    const of = attempt > 1 ? ` (attempt ${attempt} of ${entry.schedule.retries + 1})` : "";
    state.runId = runId;
    let fd: number;
    // Once the attempt is over its descriptor is closed, and its number may be another file's.
    let closed = false;
    try {
      mkdirSync(join(this.#options.logs, entry.name), { recursive: true });
      fd = openSync(logFile, "a");
    } catch (error) {
      const message = `${entry.name}: cannot open the run log ${logFile}: ${(error as Error).message}; the run due at ${due.toISOString()} did not start`;
      this.#log.error(message);
      this.#options.onEvent?.({ type: "failed", pipeline: entry.name, runId, scheduledAt: due, logFile, attempt, error: message, retryAt: retryAt() });
      return "failed";
    }
    const runLog = createLogger({
      format: this.#options.logFormat ?? "text",
      runId,
      now: () => new Date(this.#clock.now()),
      write: (line) => {
        if (closed) return;
        try {
          writeSync(fd, `${line}\n`);
        } catch {
          // A full disk must not stop the run: its data matters more than its log.
        }
      },
    });
    const controller = new AbortController();
    state.log = runLog;
    state.controller = controller;
    // A stop that came while this run was being set up still stops it.
    if (this.#stop.signal.aborted) controller.abort();
    const fields = (extra: Record<string, unknown> = {}) =>
      json ? { pipeline: entry.name, run: runId, logFile, ...(attempt > 1 ? { attempt } : {}), ...extra } : undefined;
    this.#log.info(json ? "run started" : `${entry.name}: run ${runId}${of} started (due ${due.toISOString()}), log ${logFile}`, fields({ due: due.toISOString() }));
    this.#options.onEvent?.({ type: "started", pipeline: entry.name, runId, scheduledAt: due, logFile, attempt });
    runLog.info(`run ${runId} of ${entry.name}${entry.path ? ` (${entry.path})` : ""} due at ${due.toISOString()}${of}`, {
      schedule: entry.schedule.cron,
      timezone: entry.schedule.timezone,
      args: redactArgs(entry.schedule.args),
    });

    // The time limit: the run is stopped as the scheduler's shutdown stops it, and then failed.
    const { timeoutMs } = entry.schedule;
    let timedOut = false;
    const ended = new AbortController();
    if (timeoutMs !== undefined) {
      this.#clock.sleepUntil(this.#clock.now() + timeoutMs, ended.signal).then(() => {
        if (ended.signal.aborted) return;
        timedOut = true;
        runLog.warn(`run stopped: it took longer than its timeout of ${timeoutMs / 1000} s`);
        controller.abort();
      });
    }

    const fail = (message: string): Outcome => {
      const next = retryAt();
      const then = next ? `; retry at ${next.toISOString()}` : "";
      runLog.error(`run failed: ${message}${then}`);
      this.#log.error(json ? "run failed" : `${entry.name}: run ${runId} failed: ${message} (log ${logFile})${then}`, fields({ error: message, ...(next ? { retryAt: next.toISOString() } : {}) }));
      this.#options.onEvent?.({ type: "failed", pipeline: entry.name, runId, scheduledAt: due, logFile, attempt, error: message, retryAt: next });
      return "failed";
    };

    let unwatch: (() => void) | undefined;
    try {
      const summary = await runPipeline(
        entry.pipeline,
        { args: [...entry.schedule.args], runId, scheduledAt: due },
        {
          signal: controller.signal,
          onStart: (flow) => {
            unwatch = this.#options.watch?.(flow, runLog);
          },
        },
      );
      unwatch?.();
      for (const line of formatSummary(summary).split("\n")) runLog.info(line);
      if (timedOut && summary.stopped) {
        runLog.info("run stopped after committing what was buffered; the rest of the input was not read", {
          in: summary.in,
          written: summary.written,
          deadLettered: summary.deadLettered,
          files: summary.files,
        });
        return fail(`timed out after ${timeoutMs === undefined ? 0 : timeoutMs / 1000} s (stopped after committing ${summary.written} row(s); the rest of the input was not read)`);
      }
      const status = summary.stopped ? "stopped by the scheduler's shutdown after committing what was buffered; the rest of the input was not read" : "finished";
      runLog.info(`run ${status}`, { in: summary.in, written: summary.written, deadLettered: summary.deadLettered, files: summary.files });
      this.#log.info(
        json ? "run finished" : `${entry.name}: run ${runId} ${summary.stopped ? "stopped" : "finished"}: in ${summary.in}, written ${summary.written}, dead-lettered ${summary.deadLettered}`,
        fields({ in: summary.in, written: summary.written, deadLettered: summary.deadLettered, stopped: summary.stopped }),
      );
      this.#options.onEvent?.({ type: "finished", pipeline: entry.name, runId, scheduledAt: due, logFile, attempt, summary });
      return summary.stopped ? "stopped" : "finished";
    } catch (error) {
      unwatch?.();
      return fail(error instanceof Error ? error.message : String(error));
    } finally {
      ended.abort();
      closed = true;
      try {
        closeSync(fd);
      } catch {
        // Already closed.
      }
    }
  }
}

/**
 * The run id of a scheduled run: its due time (UTC, to the second) and a random suffix, so ids
 * sort by due time and two runs never share one. Always accepted by `checkRunId`.
 *
 * @example
 * scheduledRunId(new Date("2024-03-01T02:00:00Z")); // "20240301T020000Z-k3j9x2"
 */
export function scheduledRunId(due: Date): string {
  const stamp = due.toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");
  return `${stamp}-${Math.random().toString(36).slice(2, 8).padEnd(6, "0")}`;
}

/**
 * The first `count` runs after `after` of all the pipelines together, in time order (ties in the
 * order given): what `sluice schedule --dry-run` prints.
 *
 * @example
 * upcomingRuns([{ name: "daily", schedule }], new Date("2024-03-01T00:00:00Z"), 3);
 * // [{ name: "daily", at: 2024-03-01T02:00:00Z }, { name: "daily", at: 2024-03-02T02:00:00Z }, …]
 */
export function upcomingRuns(
  pipelines: readonly { readonly name: string; readonly schedule: Schedule }[],
  after: Date,
  count: number,
): { readonly name: string; readonly at: Date }[] {
  const runs: { name: string; at: Date; order: number }[] = [];
  pipelines.forEach(({ name, schedule }, order) => {
    let from = after;
    for (let i = 0; i < count; i++) {
      const at = schedule.next(from);
      if (!at) break;
      runs.push({ name, at, order });
      from = at;
    }
  });
  runs.sort((a, b) => a.at.getTime() - b.at.getTime() || a.order - b.order);
  return runs.slice(0, count).map(({ name, at }) => ({ name, at }));
}
