/**
 * What a pipeline module is: the unit `sluice run`, `sluice list` and `sluice dead-letter replay`
 * work with. A pipeline module is a file whose default export is a {@link Pipeline}.
 */
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
}

/**
 * Declares a pipeline module's default export. It only returns its argument: it exists so the
 * module type-checks against {@link Pipeline}.
 *
 * @example
 * export default definePipeline({
 *   description: "Clickstream NDJSON to date-partitioned Parquet",
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
    full = { args: context.args ?? [], runId: checkRunId(context.runId ?? newRunId(), "runPipeline(): context.runId"), replay: context.replay ?? false };
    observable = pipeline.process(pipeline.source(full), full);
  } catch (error) {
    return Promise.reject(error);
  }
  return run(observable, { ...options, runId: full.runId });
}
