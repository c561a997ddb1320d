import { Observable, type OperatorFunction } from "rxjs";
import { currentFlow, sendToDeadLetter, withFlow } from "../src/flow/flow.ts";

export interface EnrichOptions {
  /** Stage name written on dead letters (default `enrich`). */
  readonly stage?: string;
}

/**
 * Maps each record with `fn`. When `fn` throws for a record, that record goes to the dead
 * letter (stage `enrich`, the thrown message as error) and the stream goes on: one bad record
 * never stops a run. Use RxJS's `map` instead when a throw should end the stream.
 *
 * Completes, errors and unsubscribes with its source.
 *
 * @example
 * fromNdjson("events.ndjson").pipe(
 *   validate(Click),
 *   enrich((e) => ({ ...e, event_date: e.timestamp.slice(0, 10) })),
 * );
 */
export function enrich<T, R>(
  fn: (record: T, index: number) => R,
  options: EnrichOptions = {},
): OperatorFunction<T, R> {
  const stage = options.stage ?? "enrich";
  return function enrichOperator(source) {
    return new Observable<R>((subscriber) => {
      const flow = currentFlow();
      let index = 0;
      return withFlow(flow, () =>
        source.subscribe({
          next(record) {
            let result: R;
            try {
              result = fn(record, index++);
            } catch (error) {
              try {
                sendToDeadLetter(flow, stage, messageOf(error), record);
              } catch (routing) {
                subscriber.error(routing);
              }
              return;
            }
            subscriber.next(result);
          },
          error: (error) => subscriber.error(error),
          complete: () => subscriber.complete(),
        }),
      );
    });
  };
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
