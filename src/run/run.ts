/**
 * `run`: subscribes a pipeline, waits for it to finish, and reports what happened to every record.
 */
import type { Observable } from "rxjs";
import { type Checkpoint, openCheckpoint } from "../checkpoint/checkpoint.ts";
import { createFlow, enterRun, type Flow, newRunId, stopFlow, withFlow } from "../flow/flow.ts";
import { checkRunId } from "./runId.ts";

/** Options of {@link run}. */
export interface RunOptions {
  /** Stop reading on SIGINT/SIGTERM, commit what is buffered, then resolve (default true). */
  readonly handleSignals?: boolean;
  /** Aborting stops reading the same way a signal does. */
  readonly signal?: AbortSignal;
  /** Identifies the run in file names, dead letters and logs (default: time-based). */
  readonly runId?: string;
  /** Called with every value the pipeline emits (a `Commit` when it ends in `toParquet`). */
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
}

/** What a run did. `in = written + deadLettered + skipped + dropped`. */
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
   * Records neither written nor dead-lettered: removed on purpose by an operator such as
   * RxJS's `filter`, or still in flight when a run without a sink ended. 0 for a pipeline of
   * sluice pieces only.
   */
  readonly dropped: number;
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
 * On SIGINT or SIGTERM (or `signal` aborting) the sources stop reading, what is buffered is
 * committed, and the promise resolves with `stopped: true`. A second signal exits at once.
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
  const flow = createFlow(checkRunId(options.runId ?? newRunId(), "run(): options.runId"));
  const started = performance.now();
  let emitted = 0;
  let checkpoint: Checkpoint | undefined;
  try {
    if (options.checkpoint) checkpoint = flow.checkpoint = openCheckpoint(options.checkpoint, flow.runId);
  } catch (error) {
    return Promise.reject(error);
  }
  options.onStart?.(flow);

  return new Promise<RunSummary>((resolve, reject) => {
    const stop = () => stopFlow(flow);
    const onSignal = (signal: NodeJS.Signals) => {
      if (flow.stopping) process.exit(signal === "SIGINT" ? 130 : 143);
      stop();
    };
    if (options.handleSignals !== false) {
      process.on("SIGINT", onSignal);
      process.on("SIGTERM", onSignal);
    }
    options.signal?.addEventListener("abort", stop, { once: true });
    const leaveRun = enterRun(flow);
    const cleanup = () => {
      leaveRun();
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
      options.signal?.removeEventListener("abort", stop);
    };

    withFlow(flow, () =>
      pipeline.subscribe({
        next(value) {
          emitted++;
          options.onValue?.(value);
        },
        error(error) {
          cleanup();
          checkpoint?.close();
          reject(error);
        },
        complete() {
          cleanup();
          const done = checkpoint ? checkpoint.finish().finally(() => checkpoint?.close()) : Promise.resolve();
          done.then(() => resolve(summarize(flow, emitted, performance.now() - started)), reject);
        },
      }),
    );
  });
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
    dropped: s.in - s.written - deadLettered - s.skipped,
    emitted,
    files: s.files,
    bytes: s.bytes,
    bytesRead: s.bytesRead,
    durationMs: Math.round(durationMs),
    stopped: flow.stopping,
  };
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
    ...(summary.dropped !== 0 ? [["dropped", n(summary.dropped)]] : []),
    ["files", `${n(summary.files)} (${formatBytes(summary.bytes)})`],
    ["read", formatBytes(summary.bytesRead)],
    ["duration", `${seconds.toFixed(2)} s (${n(Math.round(summary.in / Math.max(seconds, 0.001)))} records/s)`],
  ];
  return rows.map(([k, v]) => `${k.padEnd(14)} ${v}`).join("\n");
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
