/**
 * `fromPush`: records an app hands over one at a time (an HTTP handler, a socket, a callback
 * API), as a source with the same contract as every other: counted, positioned, paced by the
 * sink's gate, and stopped by the run's signal.
 *
 * The app cannot be paused the way a file can, so backpressure is a question the app asks:
 * `push` says whether the record was taken, `drained()` says when to try again, and `write`
 * does both. What the source holds is bounded by `highWaterMark`, whatever the app does.
 */
import { Observable, type Subscriber, type TeardownLogic } from "rxjs";
import { currentFlow, deadLetterBelow, type Flow, sendToDeadLetter, waitForGate, withFlow } from "../flow/flow.ts";
import { Input, stamp } from "../flow/position.ts";

/** Options of {@link fromPush}. */
export interface PushOptions {
  /** The input name on positions, dead letters and commits (default `"push"`). */
  readonly name?: string;
  /** Records that may wait in the source before `push` refuses more (default 1000). */
  readonly highWaterMark?: number;
}

/** Where a pushed record came from, when the app knows better than a sequence number. */
export interface PushPosition {
  /** The input name (default: the source's `name`). */
  readonly source?: string;
  /** 1-based line or record number (default: one more than the highest so far for that input). */
  readonly line?: number;
  /** The text the record was parsed from, kept on its dead letter instead of the record as JSON. */
  readonly raw?: string;
}

/** A record accepted and not yet emitted. `invalid` holds the reason for input that never became a record. */
interface Queued<T> {
  readonly record: T | undefined;
  readonly source: string;
  readonly line: number;
  readonly raw: string | undefined;
  readonly invalid: string | undefined;
}

/** The subscriber a push source currently feeds, with its run's flow. */
interface Attached<T> {
  readonly subscriber: Subscriber<T>;
  readonly flow: Flow;
  /** One input per source name, for this run. */
  readonly inputs: Map<string, Input>;
  readonly onStop: () => void;
}

type Closed = { readonly kind: "ended" } | { readonly kind: "stopped" } | { readonly kind: "errored"; readonly error: unknown };

/**
 * A source an app pushes records into: an RxJS `Observable<T>` (pipe it like any source) with
 * `push`, `write`, `drained`, `end` and `error`. Made by {@link fromPush}.
 */
export class PushSource<T> extends Observable<T> {
  readonly name: string;
  readonly highWaterMark: number;
  #queue: Queued<T>[] = [];
  /** Highest line handed out per input name: the sequence numbers continue across runs. */
  #lines = new Map<string, number>();
  #attached: Attached<T> | undefined;
  #closed: Closed | undefined;
  #waiters: { resolve: () => void; reject: (error: Error) => void }[] = [];
  #scheduled = false;
  #watchingGate = false;

  constructor(options: PushOptions = {}) {
    super((subscriber) => this.#attach(subscriber));
    const name = options.name ?? "push";
    const highWaterMark = options.highWaterMark ?? 1000;
    if (typeof name !== "string" || name === "") throw new TypeError("fromPush: options.name must be a non-empty string");
    if (!(Number.isInteger(highWaterMark) && highWaterMark >= 1)) {
      throw new RangeError(`fromPush("${name}"): options.highWaterMark must be a whole number of records >= 1, got ${highWaterMark}`);
    }
    this.name = name;
    this.highWaterMark = highWaterMark;
  }

  /**
   * Offers one record. Returns true when it was taken: it will enter the run in push order,
   * counted as read, with its position. Returns false when it was NOT taken: the run's gate is
   * held (the sink's memory budget is spent), `highWaterMark` records already wait, or the
   * source is {@link closed}. Keep the record and try again after {@link drained}, or use
   * {@link write}. Throws only on a `position.line` that is not a whole number >= 1.
   */
  push(record: T, position?: PushPosition): boolean {
    return this.#offer(record, undefined, position);
  }

  /**
   * Offers input the app could not turn into a record (a request line that is not JSON): when
   * taken it is counted as read and becomes a dead letter at stage `parse` with `raw` as its
   * text, `error` as the reason, and its position. Returns what {@link push} returns.
   */
  pushInvalid(raw: string, error: string, position?: Omit<PushPosition, "raw">): boolean {
    return this.#offer(undefined, error, { ...position, raw });
  }

  /**
   * Pushes one record, waiting while it cannot be taken. Resolves once it is taken; rejects,
   * with a message saying why, when the source is or becomes {@link closed} first.
   */
  async write(record: T, position?: PushPosition): Promise<void> {
    while (!this.push(record, position)) await this.drained();
  }

  /**
   * Resolves when a push would be taken now (the gate is open and fewer than `highWaterMark`
   * records wait), at once if it would be already. Rejects when the source is or becomes
   * {@link closed}: waiting would never end.
   */
  drained(): Promise<void> {
    if (this.#closed) return Promise.reject(this.#refusal());
    if (this.#accepts()) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      this.#waiters.push({ resolve, reject });
      if (this.#attached) this.#watchGate(this.#attached);
    });
  }

  /** No more records: those taken are still emitted, then the source completes. Later pushes are refused. */
  end(): void {
    if (this.#closed) return;
    this.#close({ kind: "ended" });
    this.#schedule();
  }

  /**
   * Fails the source: the subscriber errors with `error` at once (the run rejects with it), and
   * records taken but not yet emitted are discarded. Later pushes are refused; a later
   * subscriber errors with the same error.
   */
  error(error: unknown): void {
    if (this.#closed) return;
    this.#queue = [];
    this.#close({ kind: "errored", error });
    const attached = this.#attached;
    if (attached) {
      this.#detach(attached);
      attached.subscriber.error(error);
    }
  }

  /**
   * True once the source takes no more records, for good: after {@link end}, after
   * {@link error}, or once the run it feeds is stopping (an abort, or a signal under
   * `run(..., { handleSignals: true })`). Tells a refused push that waiting will not help.
   */
  get closed(): boolean {
    return this.#closed !== undefined;
  }

  /** Records taken and not yet emitted into the run. */
  get waiting(): number {
    return this.#queue.length;
  }

  #offer(record: T | undefined, invalid: string | undefined, position: PushPosition | undefined): boolean {
    const given = position?.line;
    if (given !== undefined && !(Number.isInteger(given) && given >= 1)) {
      throw new RangeError(`fromPush("${this.name}"): position.line must be a whole number >= 1, got ${given}`);
    }
    if (!this.#accepts()) {
      if (this.#attached) this.#watchGate(this.#attached);
      return false;
    }
    const source = position?.source ?? this.name;
    const last = this.#lines.get(source) ?? 0;
    const line = given ?? last + 1;
    if (line > last) this.#lines.set(source, line);
    this.#queue.push({ record, source, line, raw: position?.raw, invalid });
    this.#schedule();
    return true;
  }

  #accepts(): boolean {
    if (this.#closed || this.#queue.length >= this.highWaterMark) return false;
    const flow = this.#attached?.flow;
    return !(flow && (flow.gate || flow.stopping));
  }

  #refusal(): Error {
    const closed = this.#closed;
    const why =
      closed?.kind === "stopped"
        ? "the run it feeds is stopping (an abort or a signal)"
        : closed?.kind === "errored"
          ? `it failed: ${closed.error instanceof Error ? closed.error.message : String(closed.error)}`
          : "it was ended";
    return new Error(`fromPush("${this.name}"): ${why}; it takes no more records`);
  }

  #attach(subscriber: Subscriber<T>): TeardownLogic {
    if (this.#attached) {
      subscriber.error(
        new Error(`fromPush("${this.name}"): already feeding a run; a push source feeds one subscriber at a time (make one source per run)`),
      );
      return;
    }
    const closed = this.#closed;
    if (closed?.kind === "errored") {
      subscriber.error(closed.error);
      return;
    }
    const flow = currentFlow(subscriber);
    const attached: Attached<T> = { subscriber, flow, inputs: new Map(), onStop: () => this.#stop() };
    this.#attached = attached;
    flow.onStop.add(attached.onStop);
    if (flow.stopping) this.#stop();
    // Records pushed before this subscriber came are emitted now, on the run's flow.
    this.#schedule();
    return () => this.#detach(attached);
  }

  #detach(attached: Attached<T>): void {
    attached.flow.onStop.delete(attached.onStop);
    if (this.#attached === attached) this.#attached = undefined;
    // Records still waiting stay for the next subscriber; a writer waiting on this run's gate
    // would otherwise wait for a run that has gone.
    this.#wake();
  }

  /** The run is stopping: take nothing more, emit what was taken, complete. */
  #stop(): void {
    if (!this.#closed) this.#close({ kind: "stopped" });
    this.#schedule();
  }

  #close(closed: Closed): void {
    this.#closed = closed;
    this.#wake();
  }

  // Emission is never inside the app's push call: a microtask later, in the run's scope, so
  // the pipeline's work joins the run (not the HTTP request that pushed) and a pipeline that
  // pushes back into its own source does not re-enter itself.
  #schedule(): void {
    if (this.#scheduled || !this.#attached) return;
    this.#scheduled = true;
    queueMicrotask(() => {
      this.#scheduled = false;
      const attached = this.#attached;
      if (attached) withFlow(attached.flow, () => this.#drain(attached));
    });
  }

  #drain(attached: Attached<T>): void {
    const { subscriber, flow } = attached;
    const queue = this.#queue;
    let emitted = 0;
    try {
      // Records enter the run only while its gate is open, also when it is stopping: the gate
      // opens as soon as the writes in flight commit, and at most highWaterMark records wait.
      while (emitted < queue.length && !flow.gate && !subscriber.closed && this.#attached === attached) {
        const item = queue[emitted++] as Queued<T>;
        let input = attached.inputs.get(item.source);
        if (!input) {
          input = new Input(flow, item.source);
          // Its parse errors go to the folder below this source (see deadLetterBelow).
          input.deadLetterTarget = deadLetterBelow(subscriber);
          attached.inputs.set(item.source, input);
        }
        const position = input.at(item.line, item.raw);
        if (item.raw !== undefined) flow.stats.bytesRead += Buffer.byteLength(item.raw);
        if (item.invalid !== undefined) sendToDeadLetter(flow, "parse", item.invalid, undefined, position);
        else subscriber.next(stamp(item.record as T, position));
      }
    } catch (error) {
      // No dead-letter target: a record must never vanish, so the run fails loudly.
      queue.splice(0, emitted);
      this.#detach(attached);
      subscriber.error(error);
      return;
    }
    queue.splice(0, emitted);
    if (this.#attached !== attached) return;
    const closed = this.#closed;
    if (queue.length === 0 && closed && closed.kind !== "errored") {
      this.#detach(attached);
      subscriber.complete();
      return;
    }
    if (flow.gate) this.#watchGate(attached);
    this.#wake();
  }

  /** Once the gate opens: emit what waits, and tell waiting writers. One watcher at a time. */
  #watchGate(attached: Attached<T>): void {
    if (this.#watchingGate || !attached.flow.gate) return;
    this.#watchingGate = true;
    waitForGate(attached.flow).then(() => {
      this.#watchingGate = false;
      this.#schedule();
      this.#wake();
    });
  }

  #wake(): void {
    if (this.#waiters.length === 0) return;
    if (this.#closed) {
      const error = this.#refusal();
      for (const waiter of this.#waiters.splice(0)) waiter.reject(error);
    } else if (this.#accepts()) {
      for (const waiter of this.#waiters.splice(0)) waiter.resolve();
    }
  }
}

/**
 * A source an app pushes records into, for embedding sluice in a service: an HTTP endpoint,
 * a socket, a callback API. The result is an RxJS `Observable<T>`, so a pipeline reads as it
 * does for any source (`events.pipe(validate(E), deadLetter(d), toParquet(o, ...))`), plus:
 *
 * - `push(record, position?)`: true when taken, false when not (the run's gate is held because
 *   the sink's memory budget is spent, `highWaterMark` records already wait, or the source is
 *   closed). A false push did not take the record: keep it and try again after `drained()`.
 * - `write(record, position?)`: pushes, waiting while the source cannot take it; rejects when
 *   the source is closed.
 * - `pushInvalid(raw, error, position?)`: input that never became a record (a body line that is
 *   not JSON): a dead letter at stage `parse` with its raw text and position.
 * - `drained()`: resolves when a push would be taken; rejects once the source is closed.
 * - `end()`, `error(e)`, `closed`, `waiting`.
 *
 * Each record taken is counted as read (`in`; the UTF-8 bytes of its `raw` text, when given,
 * as bytes read) when it enters the run, and carries a position: input `name` (default
 * `"push"`) and line = its sequence number from 1, unless the app gives `position.source`,
 * `.line` or `.raw`. Records enter the run in push order, a microtask after the push, inside
 * the run's context, and only while the gate is open.
 *
 * One subscriber at a time: a second subscriber while one is attached errors. Pushes before
 * the first subscriber are taken until `highWaterMark` records wait, then refused; the
 * subscriber then receives them first. Completes after `end()` once every record taken is
 * emitted. Completes, too, when the run it feeds is stopping (`run(..., { signal })` aborted,
 * or SIGINT/SIGTERM with `handleSignals: true`): it refuses new pushes from that moment
 * (`closed` is true, `write` and `drained` reject) and emits what it had taken first, so
 * everything pushed before the stop becomes durable when the run resolves. `error(e)` errors
 * the subscriber at once and discards what waits. Unsubscribing detaches the run and keeps
 * what waits for a later subscriber (a `retry`); the source stays open. No input that the source took
 * is lost silently: a record that cannot reach a dead-letter target errors the run.
 *
 * @example
 * const events = fromPush<unknown>({ name: "http" });
 * const stop = new AbortController();
 * const done = run(
 *   events.pipe(validate(Event), deadLetter("out/dead-letter"), toParquet("out/events", { schema: Event })),
 *   { signal: stop.signal },
 * );
 * Bun.serve({
 *   async fetch(request) {
 *     if (!events.push(await request.json())) return new Response("busy", { status: 503, headers: { "Retry-After": "1" } });
 *     return new Response("accepted", { status: 202 });
 *   },
 * });
 * // on shutdown: stop.abort(); console.log(formatSummary(await done));
 */
export function fromPush<T = unknown>(options: PushOptions = {}): PushSource<T> {
  return new PushSource<T>(options);
}
