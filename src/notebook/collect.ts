/**
 * Collecting a pipeline's output in memory, for a REPL session or a short script.
 */
import type { Table } from "apache-arrow";
import { Observable, type OperatorFunction } from "rxjs";
import type * as v from "valibot";
import { RowBuffer } from "../arrow/rows.ts";
import { currentFlow, joinFlow, positionIn, sendToDeadLetter, withFlow } from "../flow/flow.ts";
import { countOutput } from "../flow/position.ts";
import { run, type RunOptions } from "../run/run.ts";
import { columnsOf } from "../schema/columns.ts";
import { withPreview } from "./view.ts";

/** Options of {@link collect} and {@link collectTable}: those of `run`, without `onValue`. */
export type CollectOptions = Omit<RunOptions, "onValue" | "checkpoint">;

/**
 * Runs a pipeline to its end, as `run` does, and resolves with every value it emitted, in order.
 * Sources, validation and dead letters behave exactly as under `run` (a reject without a
 * `deadLetter` in the pipeline rejects the promise). Everything emitted is held in memory: put a
 * `take(n)` or a `filter` in the pipeline for large inputs. Printed (`console.log`, a REPL), the
 * array shows its first 10 values as a table and their number (see `withPreview`).
 *
 * Rejects with the pipeline's error. Signals are not handled unless `handleSignals: true` is
 * given (a REPL keeps its Ctrl-C); pass `signal` to stop early (the values so far are kept).
 *
 * @example
 * const events = await collect(fromNdjson("events.ndjson").pipe(validate(Event), deadLetter(() => {})));
 */
export async function collect<T>(pipeline: Observable<T>, options: CollectOptions = {}): Promise<T[]> {
  const values: T[] = [];
  // run() hands the values over plain: positions are the pipeline's business.
  await run(pipeline, { handleSignals: false, ...options, onValue: (value) => values.push(value as T) });
  return withPreview(values);
}

/**
 * Appends each record to Arrow column buffers; a record that does not fit its column goes to
 * the dead letter at stage `write`, as in the Parquet sink.
 */
function intoBuffer<T>(buffer: RowBuffer): OperatorFunction<T, never> {
  return function collectRows(source) {
    return new Observable<never>((subscriber) => {
      const flow = currentFlow(subscriber);
      return withFlow(flow, () =>
        source.subscribe(joinFlow(flow, {
          next(record) {
            const position = positionIn(flow, record);
            const problem = buffer.append(record as Record<string, unknown>);
            if (problem === undefined) {
              position?.input.settle(position.line);
              countOutput(position);
              flow.stats.written++;
              return;
            }
            try {
              sendToDeadLetter(flow, "write", problem, record, position);
            } catch (error) {
              subscriber.error(error);
            }
          },
          error: (error) => subscriber.error(error),
          complete: () => subscriber.complete(),
        })),
      );
    });
  };
}

/**
 * Runs a pipeline to its end and resolves with its records as an Arrow table whose columns come
 * from the valibot `schema` (the same mapping `toParquet` uses: timestamps in µs UTC, dates,
 * int64, lists, structs). A record whose value does not fit its column is dead-lettered at stage
 * `write`, exactly as the Parquet sink does; nothing is converted. Printed, the table shows its
 * first 10 rows and its size (see `withPreview`).
 *
 * Rejects with the pipeline's error, or when a record must be dead-lettered and the pipeline has
 * no `deadLetter`. Throws a `SchemaError` at once when the schema has no column mapping.
 *
 * @example
 * const table = await collectTable(fromNdjson("events.ndjson").pipe(validate(Event), deadLetter("dl")), Event);
 * console.log(formatTable(table, undefined, { limit: 5 }));
 */
export async function collectTable<T>(
  pipeline: Observable<T>,
  schema: v.GenericSchema<unknown, T>,
  options: CollectOptions = {},
): Promise<Table> {
  const buffer = new RowBuffer(columnsOf(schema as v.GenericSchema));
  await run(pipeline.pipe(intoBuffer<T>(buffer)), { handleSignals: false, ...options });
  return withPreview(buffer.toTable());
}
