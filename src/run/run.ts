/**
 * `run`: subscribes a pipeline, waits for it to finish, and reports what happened to every record.
 */
import type { Observable } from "rxjs";
import { type Checkpoint, openCheckpoint } from "../checkpoint/checkpoint.ts";
import { heldLines } from "../flow/durable.ts";
import { createFlow, type Flow, joinFlow, settleFlow, stopFlow, withFlow } from "../flow/flow.ts";
import { unstamp } from "../flow/position.ts";
import { checkRunId, newRunId } from "../flow/runId.ts";
import { createDistribution, type DistributeOptions, type Distribution } from "../distribute/distribution.ts";

/** Options of {@link run}. */
export interface RunOptions {
  /**
   * Stop reading on SIGINT/SIGTERM, commit what is buffered, then resolve (default false: an app
   * that embeds sluice keeps its own handlers; the CLI and scripts ask for it). sluice never
   * exits the process: a second signal is the caller's to handle.
   */
  readonly handleSignals?: boolean;
  /** Aborting stops reading: sources complete, what is buffered is committed, the run resolves with `stopped: true`. */
  readonly signal?: AbortSignal;
  /** Identifies the run in file names, dead letters and logs (default: time-based). */
  readonly runId?: string;
  /**
   * Called with every value the pipeline emits (a `Commit` when it ends in `toParquet`). Records
   * arrive plain: the position sluice attached to them for the pipeline's own use is removed.
   */
  readonly onValue?: (value: unknown) => void;
  /** Receives the run's shared state once it starts (progress displays, metrics). */
  readonly onStart?: (flow: Flow) => void;
  /**
   * A SQLite file (created when missing) that records what this run made durable. A later run
   * with the same file skips finished inputs and resumes partly read ones, writing every record
   * exactly once even after a crash. With it, the sink adds files to the dataset (the write mode
   * applies only to the first run). File sources resume; other sources read everything again.
   */
  readonly checkpoint?: string;
  /**
   * Makes this process one worker of a distributed run: its file sources take their inputs, as
   * splits (whole files, or byte ranges of large NDJSON and CSV files), from the job's work queue
   * on a broker (`redis://…` or `nats://…`), shared with every other worker started with the same
   * URL and job name, and sinks add to their folders together with them. A split is acknowledged
   * once what it became is durable; a dead worker's splits go to another after the lease (see
   * {@link DistributeOptions}: `url` and `job` are required). Not with `checkpoint`: the queue is
   * the job's checkpoint.
   */
  readonly distribute?: DistributeOptions;
}

/** What a run did. `in + fannedOut = written + deadLettered + skipped + discarded + dropped`. */
export interface RunSummary {
  readonly runId: string;
  /** Records read by the sources. */
  readonly in: number;
  /** Rows committed to the dataset. */
  readonly written: number;
  /** Dead letters, all stages. */
  readonly deadLettered: number;
  /** Dead letters by stage (`parse`, `validate`, `enrich`, `write`, ...). */
  readonly deadLetteredByStage: Readonly<Record<string, number>>;
  /** Records read again after a resume that an earlier run had already written or dead-lettered. */
  readonly skipped: number;
  /**
   * Records that reached an overwrite's staging folder (as rows or as dead letters) in a run that
   * was stopped: the overwrite keeps the earlier dataset and drops them. Read again by the next
   * run of a file source; a push source's records are gone (use mode `append` for an app's events).
   */
  readonly discarded: number;
  /**
   * Records neither written nor dead-lettered: removed on purpose by an operator such as
   * RxJS's `filter`, or still in flight when a run without a sink ended. 0 for a pipeline of
   * sluice pieces only.
   */
  readonly dropped: number;
  /**
   * Rows and dead letters beyond each record's first: a record turned into several (a `mergeMap`
   * over an order's items, each keeping the order's position) counts once in `in` and once per
   * row in `written`. 0 when every record became one row or one dead letter.
   */
  readonly fannedOut: number;
  /** Values the pipeline emitted at its end (commits, for a Parquet sink). */
  readonly emitted: number;
  readonly files: number;
  readonly bytes: number;
  readonly bytesRead: number;
  readonly durationMs: number;
  /** True when the run was stopped early by a signal or an abort. */
  readonly stopped: boolean;
}

/**
 * Runs a pipeline to its end and resolves with its summary. Rejects with the pipeline's error
 * (an infrastructure failure: unreadable input, unwritable output); bad records never reject.
 *
 * When `signal` aborts (or, with `handleSignals: true`, on SIGINT or SIGTERM) the sources stop
 * reading, what is buffered is committed, and the promise resolves with `stopped: true`.
 *
 * Each call has its own context (counters, dead-letter targets, memory gate, checkpoint), so any
 * number of runs can go on in one process at once.
 *
 * @example
 * const summary = await run(
 *   fromNdjson("events.ndjson").pipe(
 *     validate(Event),
 *     deadLetter("out/dead-letter"),
 *     toParquet("out/events", { schema: Event }),
 *   ),
 * );
 * console.log(formatSummary(summary));
 */
export function run(pipeline: Observable<unknown>, options: RunOptions = {}): Promise<RunSummary> {
  return options.distribute === undefined ? runOnce(pipeline, options, options.runId) : runWorker(pipeline, options);
}

/**
 * A worker of a distributed run, in rounds: a round runs the pipeline until its sources find
 * nothing more to take, and completes (its sinks commit, its splits are acknowledged). While other
 * workers hold the rest of the job, the worker waits; when a split comes free (its worker died,
 * and the lease passed), it runs another round, with run id `<runId>.<round>`. It resolves once
 * every split of the job is acknowledged, with the rounds' summaries added up.
 */
async function runWorker(pipeline: Observable<unknown>, options: RunOptions): Promise<RunSummary> {
  if (options.checkpoint) throw new Error("run(): distribute and checkpoint do not go together: the work queue records what is done");
  const runId = checkRunId(options.runId ?? newRunId(), "run(): options.runId");
  const distribution = createDistribution(options.distribute as DistributeOptions);
  const started = performance.now();
  const rounds: RunSummary[] = [];
  // A stop between rounds ends the wait at once.
  let stopping = options.signal?.aborted === true;
  const wake = new Set<() => void>();
  const stop = () => {
    stopping = true;
    for (const w of wake) w();
  };
  options.signal?.addEventListener("abort", stop, { once: true });
  if (options.handleSignals === true) {
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  }
  const pause = (ms: number) =>
    new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        wake.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      wake.add(done);
    });
  try {
    for (let round = 1; ; round++) {
      const { onStart, ...rest } = options;
      const summary = await runOnce(pipeline, round === 1 ? options : rest, round === 1 ? runId : `${runId}.${round}`, distribution);
      rounds.push(summary);
      if (summary.stopped || stopping || distribution.endedEarly) break;
      let state = await distribution.state();
      while (state === "held" && !stopping) {
        await pause(Math.min(1000, distribution.leaseMs / 4));
        state = await distribution.state();
      }
      if (state === "done" || stopping) break;
    }
  } finally {
    options.signal?.removeEventListener("abort", stop);
    process.off("SIGINT", stop);
    process.off("SIGTERM", stop);
    await distribution.close();
  }
  return addUp(rounds, runId, performance.now() - started, stopping);
}

/** The summaries of a worker's rounds as one. */
function addUp(rounds: readonly RunSummary[], runId: string, durationMs: number, stopped: boolean): RunSummary {
  const sum = (pick: (s: RunSummary) => number) => rounds.reduce((total, s) => total + pick(s), 0);
  const byStage: Record<string, number> = {};
  for (const s of rounds) for (const [stage, n] of Object.entries(s.deadLetteredByStage)) byStage[stage] = (byStage[stage] ?? 0) + n;
  return {
    runId,
    in: sum((s) => s.in),
    written: sum((s) => s.written),
    deadLettered: sum((s) => s.deadLettered),
    deadLetteredByStage: byStage,
    skipped: sum((s) => s.skipped),
    discarded: sum((s) => s.discarded),
    dropped: sum((s) => s.dropped),
    fannedOut: sum((s) => s.fannedOut),
    emitted: sum((s) => s.emitted),
    files: sum((s) => s.files),
    bytes: sum((s) => s.bytes),
    bytesRead: sum((s) => s.bytesRead),
    durationMs: Math.round(durationMs),
    stopped: stopped || rounds.some((s) => s.stopped),
  };
}

/** One run of the pipeline in a flow of its own. */
function runOnce(pipeline: Observable<unknown>, options: RunOptions, runId: string | undefined, distribution?: Distribution): Promise<RunSummary> {
  let flow: Flow;
  try {
    flow = createFlow(checkRunId(runId ?? newRunId(), "run(): options.runId"));
  } catch (error) {
    return Promise.reject(error);
  }
  flow.distribution = distribution;
  const started = performance.now();
  let checkpoint: Checkpoint | undefined;
  try {
    if (options.checkpoint) {
      checkpoint = flow.checkpoint = openCheckpoint(options.checkpoint, flow.runId);
      // Resume points stay below every record a stage holds uncommitted (the sink's buffers).
      checkpoint.setPending(() => heldLines(flow));
    }
  } catch (error) {
    return Promise.reject(error);
  }
  // Files an interrupted run left half-committed in a bucket are settled before anything is read.
  if (checkpoint && checkpoint.pendingObjects().length > 0) {
    const opened = checkpoint;
    const ready = flow;
    return import("../sinks/bucket.ts")
      .then(({ settleObjects }) => settleObjects(opened))
      .then(
        () => start(pipeline, options, ready, opened, started),
        (error) => {
          opened.close();
          throw error;
        },
      );
  }
  return start(pipeline, options, flow, checkpoint, started);
}

/** Subscribes to the pipeline in the run's context and resolves with its summary. */
function start(
  pipeline: Observable<unknown>,
  options: RunOptions,
  flow: Flow,
  checkpoint: Checkpoint | undefined,
  started: number,
): Promise<RunSummary> {
  let emitted = 0;
  try {
    options.onStart?.(flow);
  } catch (error) {
    // Nothing ran: the checkpoint (and its lock) is let go, and the run fails as a promise.
    checkpoint?.close();
    end(flow, false);
    return Promise.reject(error);
  }

  return new Promise<RunSummary>((resolve, reject) => {
    const stop = () => stopFlow(flow);
    const onSignal = stop;
    if (options.handleSignals === true) {
      process.on("SIGINT", onSignal);
      process.on("SIGTERM", onSignal);
    }
    if (options.signal?.aborted) stop();
    else options.signal?.addEventListener("abort", stop, { once: true });
    const cleanup = () => {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
      options.signal?.removeEventListener("abort", stop);
    };

    withFlow(flow, () =>
      pipeline.subscribe(joinFlow(flow, {
        next(value) {
          emitted++;
          options.onValue?.(unstamp(value));
        },
        error(error) {
          // Before the teardowns that follow this call: a dead-letter folder the completion had
          // passed must not replace its earlier dead letters (mode overwrite) in a failed run.
          flow.failed = true;
          cleanup();
          // Files still being written may land: the checkpoint (and its lock) stays open until they
          // have, so the next run that opens it reconciles them.
          // Then the splits of a distributed run go back to the queue, and the run rejects once
          // they have: the worker's queue closes right after, and a split whose release it cut
          // off would wait for the lease to end before another worker could take it.
          settleAll(flow, false)
            .then(() => {
              end(flow, false);
              return settleAll(flow, false);
            })
            .finally(() => {
              try {
                checkpoint?.close();
              } finally {
                reject(error);
              }
            });
        },
        complete() {
          cleanup();
          // Work started by the last commits (a broker source acknowledging what they made durable,
          // a dead-letter folder closing once the sink's last refusals are in) is answered before
          // the run resolves, so a process that exits then loses none of it. Then the pieces that
          // finish their work once everything is durable do so (a distributed source acknowledging
          // the splits it read), and that is settled too. The checkpoint records the end last: a
          // crash before then resumes rather than starting over.
          const done = settleAll(flow, true)
            .then(
              () => {
                end(flow, true);
                return settleAll(flow, true);
              },
              (error: unknown) => {
                // Something did not become durable: the splits go back to the queue, as after a failure.
                end(flow, false);
                return settleAll(flow, false).then(() => {
                  throw error;
                });
              },
            )
            .then(() =>
              checkpoint?.finish().catch((error: unknown) => {
                throw new Error(
                  `checkpoint ${checkpoint?.path}: could not record the end of the run: ${error instanceof Error ? error.message : String(error)}. Every file and dead letter is committed; a re-run with the same checkpoint reads the last inputs again and skips what is durable`,
                  { cause: error },
                );
              }),
            )
            // The checkpoint is closed before the run resolves or rejects.
            .finally(() => checkpoint?.close());
          done.then(
            () => resolve(summarize(flow, emitted, performance.now() - started)),
            (error) => reject(error),
          );
        },
      })),
    );
  });
}

/** Tells the pieces that wait for the end of the run that it ended: `completed`, or failed. */
function end(flow: Flow, completed: boolean): void {
  for (const onEnd of flow.onEnd) onEnd(completed);
  flow.onEnd.clear();
}

function summarize(flow: Flow, emitted: number, durationMs: number): RunSummary {
  const s = flow.stats;
  const deadLettered = Object.values(s.deadLettered).reduce((a, b) => a + b, 0);
  return {
    runId: flow.runId,
    in: s.in,
    written: s.written,
    deadLettered,
    deadLetteredByStage: { ...s.deadLettered },
    skipped: s.skipped,
    discarded: s.discarded,
    dropped: s.in + s.fannedOut - s.written - deadLettered - s.skipped - s.discarded,
    fannedOut: s.fannedOut,
    emitted,
    files: s.files,
    bytes: s.bytes,
    bytesRead: s.bytesRead,
    durationMs: Math.round(durationMs),
    stopped: flow.stopping,
  };
}

/**
 * Waits for all of the flow's `settling` work ({@link settleFlow}), including what a piece torn
 * down after the completion reached `run()` adds then (a dead-letter folder closing once the
 * sink's last writes have settled). With `failFast`, rejects with the first failure once it is all
 * settled; otherwise resolves whatever it did.
 */
async function settleAll(flow: Flow, failFast: boolean): Promise<void> {
  const failure = await settleFlow(flow);
  if (failFast && failure) throw failure.error;
}

/** A summary as a few aligned lines for a terminal or a log. */
export function formatSummary(summary: RunSummary): string {
  const n = (x: number) => x.toLocaleString("en-US");
  const stages = Object.entries(summary.deadLetteredByStage)
    .map(([stage, count]) => `${stage} ${n(count)}`)
    .join(", ");
  const seconds = summary.durationMs / 1000;
  const rows = [
    ["run", summary.runId + (summary.stopped ? " (stopped early)" : "")],
    ["records in", n(summary.in)],
    ["written", n(summary.written)],
    ["dead-lettered", `${n(summary.deadLettered)}${stages ? ` (${stages})` : ""}`],
    ...(summary.skipped !== 0 ? [["skipped", `${n(summary.skipped)} (already durable from an earlier run)`]] : []),
    ...(summary.discarded !== 0 ? [["discarded", `${n(summary.discarded)} (the run stopped: the overwrite keeps the earlier dataset)`]] : []),
    ...(summary.fannedOut !== 0 ? [["fanned out", `${n(summary.fannedOut)} (rows and dead letters beyond a record's first: records turned into several)`]] : []),
    ...(summary.dropped !== 0 ? [["dropped", n(summary.dropped)]] : []),
    ["files", `${n(summary.files)} (${formatBytes(summary.bytes)})`],
    ["read", formatBytes(summary.bytesRead)],
    ["duration", `${seconds.toFixed(2)} s (${n(Math.round(summary.in / Math.max(seconds, 0.001)))} records/s)`],
  ];
  return rows.map(([k, v]) => `${(k as string).padEnd(14)} ${v}`).join("\n");
}

/** Bytes as a short human-readable size. */
export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}
