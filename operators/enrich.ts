import { filter, map, Observable, type OperatorFunction } from "rxjs";
import { currentFlow, deadLetterRoute, positionIn, sendToDeadLetter, withFlow } from "../src/flow/flow.ts";
import { positionOf, stamp } from "../src/flow/position.ts";

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
      const flow = currentFlow(subscriber);
      const route = deadLetterRoute(flow, subscriber);
      let index = 0;
      function apply(record: T): R | typeof REJECTED {
        const position = positionIn(flow, record);
        let result: R;
        try {
          result = fn(record, index++);
        } catch (error) {
          // A throw from sendToDeadLetter itself (no target) escapes and errors the stream.
          sendToDeadLetter(flow, stage, messageOf(error), record, position, {}, route);
          return REJECTED;
        }
        // A new object built from the record (`{ ...e, day }`) is the same record: it keeps the position.
        if (position && result !== (record as unknown) && positionOf(result) === undefined) stamp(result, position);
        return result;
      }
      // RxJS's own operators, subscribed with the downstream subscriber: see validate.ts.
      return withFlow(flow, () =>
        source
          .pipe(
            map(apply),
            filter((result): result is R => result !== REJECTED),
          )
          .subscribe(subscriber),
      );
    });
  };
}

const REJECTED: unique symbol = Symbol("rejected");

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
