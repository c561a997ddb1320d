import { asyncScheduler, Observable, type OperatorFunction, type SchedulerLike, type Subscription } from "rxjs";
import { currentFlow, deadLetterRoute, holdGate, joinFlow, positionIn, sendToDeadLetter, withFlow } from "../src/flow/flow.ts";
import { type Position, positionOf, stamp } from "../src/flow/position.ts";

export interface EnrichBatchOptions {
  /** Records per call (default 100). */
  readonly size?: number;
  /**
   * A partial batch is sent after waiting this long for it to fill (default 1,000 ms), so a
   * slow source (a broker) does not hold records back indefinitely.
   */
  readonly maxWaitMs?: number;
  /** Batches waiting for or inside a call before the source is paused (default 4). */
  readonly maxPending?: number;
  /** Stage name written on dead letters (default `enrich`). */
  readonly stage?: string;
  /**
   * Runs the `maxWaitMs` timer (default `asyncScheduler`). Pass RxJS's `TestScheduler` to test
   * the time-based batching in virtual time.
   */
  readonly scheduler?: SchedulerLike;
}

/** A record waiting for its batch's call, with its position (its result takes it over). */
interface Held<T> {
  readonly record: T;
  readonly position: Position | undefined;
}

/**
 * Enriches records in batches with an asynchronous call, such as a prediction API that takes
 * many records at once. `fn` gets up to `size` records and resolves with one result per record,
 * in the same order; a result that is an `Error` sends its record to the dead letter (stage
 * `enrich`) and the others go on.
 *
 * Unlike `bufferCount` + `concatMap`, it keeps what a sluice pipeline relies on: each result
 * carries its own record's position (so dead letters, commits and checkpoints name the right
 * line), batches are called one at a time in input order, and the source is paused while more
 * than `maxPending` batches wait (RxJS would queue without limit).
 *
 * On complete, the last partial batch is sent and completion follows the last result. A call
 * that rejects, or resolves with the wrong number of results, errors the stream naming the
 * batch's first and last positions: an infrastructure failure (retry inside `fn`). Unsubscribing
 * drops the batches not yet emitted and releases the source.
 *
 * @example
 * fromCsv("tx/*.csv", { schema: Transaction }).pipe(
 *   validate(Transaction),
 *   enrichBatch(async (txs) => {
 *     const response = await fetch(api, { method: "POST", body: JSON.stringify(txs) });
 *     return ((await response.json()) as Prediction[]).map((p, i) => ({ ...txs[i], ...p }));
 *   }, { size: 100 }),
 *   deadLetter("out/dead-letter"),
 * );
 */
export function enrichBatch<T, R>(
  fn: (records: T[]) => Promise<readonly (R | Error)[]>,
  options: EnrichBatchOptions = {},
): OperatorFunction<T, R> {
  const size = Math.max(1, Math.floor(options.size ?? 100));
  const maxWaitMs = options.maxWaitMs ?? 1000;
  const maxPending = Math.max(1, options.maxPending ?? 4);
  const stage = options.stage ?? "enrich";
  const scheduler = options.scheduler ?? asyncScheduler;

  return function enrichBatchOperator(source) {
    return new Observable<R>((subscriber) => {
      const flow = currentFlow(subscriber);
      const route = deadLetterRoute(flow, subscriber);
      let batch: Held<T>[] = [];
      let timer: Subscription | undefined;
      // Batches are chained so calls run one at a time and results leave in input order.
      let chain: Promise<void> = Promise.resolve();
      let pending = 0;
      let release: (() => void) | undefined;
      let upstreamDone = false;

      function send() {
        timer?.unsubscribe();
        timer = undefined;
        if (batch.length === 0) return;
        const held = batch;
        batch = [];
        pending++;
        if (pending > maxPending && !release) release = holdGate(flow);
        chain = chain.then(() => call(held));
        // A failed call errors the stream at once, not only when the source ends.
        chain.catch((error) => subscriber.error(error));
      }

      async function call(held: Held<T>[]) {
        if (subscriber.closed) return;
        const first = held[0] as Held<T>;
        const last = held[held.length - 1] as Held<T>;
        const where = `${first.position?.source ?? "input"} ${first.position?.line ?? "?"}–${last.position?.source === first.position?.source ? "" : `${last.position?.source ?? "input"} `}${last.position?.line ?? "?"}`;
        let results: readonly (R | Error)[];
        try {
          results = await fn(held.map((h) => h.record));
        } catch (error) {
          throw new Error(`enrichBatch: the call for records ${where} failed: ${error instanceof Error ? error.message : String(error)}`, {
            cause: error,
          });
        }
        if (!Array.isArray(results) || results.length !== held.length) {
          throw new Error(
            `enrichBatch: the call for records ${where} returned ${Array.isArray(results) ? results.length : typeof results} result(s) for ${held.length} records; it must return one per record, in order`,
          );
        }
        pending--;
        if (release && pending <= maxPending / 2) {
          release();
          release = undefined;
        }
        for (let i = 0; i < held.length && !subscriber.closed; i++) {
          const h = held[i] as Held<T>;
          const result = results[i] as R | Error;
          if (result instanceof Error) sendToDeadLetter(flow, stage, result.message, h.record, h.position, {}, route);
          else subscriber.next(h.position && result !== (h.record as unknown) && positionOf(result) === undefined ? stamp(result, h.position) : result);
        }
      }

      function finish() {
        // A rejected chain has already errored the stream (see send).
        chain.then(
          () => {
            if (upstreamDone) subscriber.complete();
          },
          () => {},
        );
      }

      const subscription = withFlow(flow, () =>
        source.subscribe(joinFlow(flow, {
          next(record) {
            if (subscriber.closed) return;
            batch.push({ record, position: positionIn(flow, record) });
            if (batch.length >= size) send();
            else if (batch.length === 1 && maxWaitMs !== Number.POSITIVE_INFINITY) timer = scheduler.schedule(send, maxWaitMs);
          },
          error: (error) => subscriber.error(error),
          complete() {
            upstreamDone = true;
            send();
            finish();
          },
        })),
      );

      return () => {
        subscription.unsubscribe();
        timer?.unsubscribe();
        batch = [];
        release?.();
        release = undefined;
      };
    });
  };
}
