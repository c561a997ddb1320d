/**
 * What the broker sinks (`toJetStream`, `toRedisStream`) and dead-letter publishing share: an
 * {@link Outbox} of messages on their way to a broker, the sink operator built on it
 * ({@link publishSink}), the default JSON encoding and the way errors name a broker.
 *
 * A published message is durable once the broker acknowledged it (a JetStream PubAck, the entry id
 * XADD replies). Until then the record it came from is held: the outbox registers a holder (see
 * `src/flow/durable.ts`), so an upstream broker source does not acknowledge it and a checkpoint does
 * not move past it, and it announces after every acknowledged batch, exactly as the Parquet sink
 * does after a file commits.
 *
 * RxJS has no backpressure, so the outbox bounds itself: while `maxInFlight` messages (or
 * `maxInFlightBytes`) are queued or waiting for their acknowledgement it holds the flow's gate,
 * and sources stop reading until acknowledgements free room.
 *
 * A broker restart or a dropped connection is an outage, not the end of the run: the outbox
 * drops the connection, waits (exponential backoff with jitter), connects again and sends again
 * what was not acknowledged, in its order, for as long as `retry` allows. Meanwhile nothing is
 * acknowledged upstream and the gate holds the sources once `maxInFlight` messages wait. A message
 * sent again may already be stored (its acknowledgement was lost): JetStream drops it by its
 * `Nats-Msg-Id` within the stream's duplicate window; Redis stores it twice (at least once).
 */
import { Observable, type OperatorFunction } from "rxjs";
import { announceDurable, hold } from "../flow/durable.ts";
import { currentFlow, deadLetterRoute, type Flow, holdGate, joinFlow, positionIn, sendToDeadLetter, withFlow } from "../flow/flow.ts";
import { countOutput, type Position } from "../flow/position.ts";
import { redactText } from "../run/redact.ts";

/** How much a publisher keeps on its way to the broker: options every broker sink takes. */
export interface PublishLimits {
  /** Messages sent in one batch, acknowledged together (default 500). */
  readonly batchSize?: number;
  /**
   * Messages queued or sent and not yet acknowledged (default 5,000). When as many are, the sink
   * holds the flow's gate: sources stop reading until acknowledgements free room.
   */
  readonly maxInFlight?: number;
  /** Payload bytes queued or sent and not yet acknowledged (default 16 MiB); the gate is held above it. */
  readonly maxInFlightBytes?: number;
  /**
   * How a lost connection, a broker that cannot be reached or a publish that fails for a reason
   * that may pass (a timeout, a restart) is retried; `false`: not at all, the run errors at once.
   * Errors that cannot pass (no stream takes the subject, a key of another type, refused
   * credentials) are never retried.
   */
  readonly retry?: RetryOptions | false;
}

/**
 * Retries of a broker sink (defaults as Kafka Connect's `errors.retry.timeout` / Vector's
 * `retry_max_duration_secs` would be set for a sink that must not lose messages). An outage starts
 * at the first failure after an acknowledgement and ends with the next acknowledgement; the run
 * errors once an outage lasted `timeoutMs` or took `maxAttempts` attempts.
 */
export interface RetryOptions {
  /** How long one outage is retried before the run errors (default 60,000 ms). */
  readonly timeoutMs?: number;
  /** Attempts (a connect, or a send again) in one outage before the run errors (default: no bound but `timeoutMs`). */
  readonly maxAttempts?: number;
  /** Wait before the first attempt again (default 100 ms); doubled each attempt, with ±20% jitter. */
  readonly initialBackoffMs?: number;
  /** Longest wait between attempts (default 5,000 ms). */
  readonly maxBackoffMs?: number;
}

/**
 * A broker failure as a publisher reports it: `transient` when trying again may succeed (a lost
 * connection, a timeout, a broker not ready), and, for a batch, the messages it did not get an
 * acknowledgement for (undefined: all of them).
 */
export class PublishError extends Error {
  constructor(
    message: string,
    readonly transient: boolean,
    readonly unsent?: readonly Outgoing[],
  ) {
    super(message);
  }
}

/** Options every broker sink takes. */
export interface PublishOptions<T> extends PublishLimits {
  /**
   * Turns a record into the message's payload (default: JSON, see {@link encodeJson}). A throw
   * sends the record to the dead letter at stage `write`, and the stream goes on.
   */
  readonly encode?: (record: T) => string | Uint8Array;
}

/** One message on its way to a broker, and the record it stands for. */
export interface Outgoing {
  readonly payload: string | Uint8Array;
  /** Payload size in bytes. */
  readonly bytes: number;
  /** A de-duplication id (JetStream's `Nats-Msg-Id`); undefined for none. */
  readonly id: string | undefined;
  /** The input the record came from (`""` when it has no position) and its line (0 when none). */
  readonly source: string;
  readonly line: number;
  /** The record's position, when a sink's record has one: its output is counted once acknowledged. */
  readonly position?: Position | undefined;
  /** Called instead of publishing when the broker cannot take the message (too large): a dead letter. */
  readonly reject: (reason: string) => void;
  /** A smaller form of the message, tried before `reject` when it is too large. */
  readonly shrink?: () => Outgoing;
}

/** What the broker answered for a batch. */
export interface BatchAnswer {
  /** Messages the broker already held (same de-duplication id within its window): not stored again. */
  readonly duplicates: number;
}

/** A connection to a broker, as the outbox uses it. Each broker sink makes its own. */
export interface Publisher {
  /** The destination as messages and errors name it: servers without credentials, subject or stream. */
  readonly where: string;
  /** The largest payload the broker takes; larger ones are rejected (a dead letter), not sent. */
  readonly maxPayload: number;
  /**
   * Publishes a batch in order; resolves once the broker acknowledged all of it; rejects with an
   * error naming `where` (a {@link PublishError} says whether to retry and what is unacknowledged).
   */
  send(batch: readonly Outgoing[]): Promise<BatchAnswer>;
  /** Closes the connection (after what was sent is answered). */
  close(): Promise<void>;
  /** Registers what to call when the connection is lost on its own. */
  onLost(listener: (error: Error) => void): void;
}

/** One acknowledged batch, as a broker sink emits it. */
export interface Published {
  /** Where it went: `jetstream:<subject>` or `redis:<stream>`. */
  readonly target: string;
  /** Messages in the batch (duplicates included). */
  readonly messages: number;
  /** Payload bytes in the batch. */
  readonly bytes: number;
  /** Messages the broker already held (JetStream, same `Nats-Msg-Id` within its duplicate window). */
  readonly duplicates: number;
  /** The lowest and highest line of each input the batch holds. */
  readonly sources: readonly { readonly source: string; readonly firstLine: number; readonly lastLine: number }[];
}

/** Messages sent (or to be sent) together, with the lowest line of each input among them. */
interface Batch {
  /** Order of creation: batches sent again go back into the queue in this order. */
  readonly seq: number;
  /** What is (still) to send. */
  messages: Outgoing[];
  bytes: number;
  readonly lowest: Map<string, number>;
  /** What the batch held when first sent (after dropping what is too large): reported once acknowledged. */
  sent?: Outgoing[];
}

let batches = 0;

function newBatch(seq = ++batches): Batch {
  return { seq, messages: [], bytes: 0, lowest: new Map() };
}

/** The retry settings with their defaults; undefined for none. */
export function retrySettings(retry: RetryOptions | false | undefined): Required<RetryOptions> | undefined {
  if (retry === false) return undefined;
  const whole = (value: number | undefined, fallback: number, least: number) => Math.max(least, Math.floor(value ?? fallback));
  return {
    timeoutMs: whole(retry?.timeoutMs, 60_000, 0),
    maxAttempts: retry?.maxAttempts === undefined ? Number.POSITIVE_INFINITY : whole(retry.maxAttempts, 0, 0),
    initialBackoffMs: whole(retry?.initialBackoffMs, 100, 1),
    maxBackoffMs: whole(retry?.maxBackoffMs, 5000, 1),
  };
}

/**
 * The wait before attempt `attempts + 1` of an outage `elapsedMs` old: `initialBackoffMs` doubled
 * each attempt up to `maxBackoffMs`, ±20% jitter, never past the outage's deadline.
 */
export function backoffMs(retry: Required<RetryOptions>, attempts: number, elapsedMs: number): number {
  const base = Math.min(retry.maxBackoffMs, retry.initialBackoffMs * 2 ** Math.min(30, Math.max(0, attempts - 1)));
  return Math.max(0, Math.min(base * (0.8 + Math.random() * 0.4), retry.timeoutMs - elapsedMs));
}

/** The end of an error's message when retries ran out: how many attempts over how long, and the bounds. */
export function gaveUp(retry: Required<RetryOptions>, attempts: number, elapsedMs: number): string {
  return `(gave up after ${attempts} failed attempts over ${(elapsedMs / 1000).toFixed(1)} s: retry.timeoutMs ${retry.timeoutMs}, retry.maxAttempts ${retry.maxAttempts})`;
}

/** An outage: since when, how many attempts, and the last error. */
interface Outage {
  readonly since: number;
  attempts: number;
  last: Error;
}

function addTo(batch: Batch, message: Outgoing): void {
  batch.messages.push(message);
  batch.bytes += message.bytes;
  if (message.line > 0) {
    const seen = batch.lowest.get(message.source);
    if (seen === undefined || message.line < seen) batch.lowest.set(message.source, message.line);
  }
}

/**
 * Messages on their way to one broker destination: queued, sent in batches, held (for durability
 * and for the gate) until the broker acknowledges them. State with a lifecycle (connecting, open,
 * failed, closed), hence a class.
 */
export class Outbox {
  readonly #flow: Flow;
  readonly #open: () => Promise<Publisher>;
  readonly #batchSize: number;
  readonly #maxInFlight: number;
  readonly #maxInFlightBytes: number;
  readonly #retry: Required<RetryOptions> | undefined;
  /** Batches waiting to be sent, oldest first (by `seq`): batches sent again go back in order. */
  readonly #queue: Batch[] = [];
  #queuedCount = 0;
  #queuedBytes = 0;
  readonly #inflight = new Set<Batch>();
  /** Batches dropped unsent (a failure, a close before the end): held for good, never durable. */
  readonly #unsent: Batch[] = [];
  #inflightCount = 0;
  #inflightBytes = 0;
  readonly #answers = new Set<Promise<void>>();
  /** The open connection; undefined while connecting (at the start, and again after an outage). */
  #publisher: Publisher | undefined;
  /** Connecting (again): settles once a publisher is open, or the outbox failed or closed. */
  #connecting: Promise<void>;
  #outage: Outage | undefined;
  /** Ends a backoff wait early (on close). */
  #wake: (() => void) | undefined;
  #failure: Error | undefined;
  #closed = false;
  #scheduled = false;
  #release: (() => void) | undefined;
  readonly #stopHolding: () => void;

  constructor(
    flow: Flow,
    open: () => Promise<Publisher>,
    limits: PublishLimits,
    readonly events: {
      /** After each acknowledged batch (and after the holder let go of it). */
      readonly acknowledged: (batch: readonly Outgoing[], answer: BatchAnswer, publisher: Publisher) => void;
      /** Once, when connecting or publishing failed for good (retries ran out, or an error that cannot pass). */
      readonly failed: (error: Error) => void;
    },
  ) {
    this.#flow = flow;
    this.#open = open;
    this.#batchSize = Math.max(1, Math.floor(limits.batchSize ?? 500));
    this.#maxInFlight = Math.max(this.#batchSize, Math.floor(limits.maxInFlight ?? 5000));
    this.#maxInFlightBytes = Math.max(1, Math.floor(limits.maxInFlightBytes ?? 16 * 1024 * 1024));
    this.#retry = retrySettings(limits.retry);
    // Until acknowledged, a message's record is not durable: sources must not acknowledge it.
    // Each batch knows its lowest lines, so this costs a few steps per batch, not per message.
    this.#stopHolding = hold(flow, (note) => {
      for (const batch of this.#queue) for (const [source, line] of batch.lowest) note(source, line);
      for (const batch of this.#inflight) for (const [source, line] of batch.lowest) note(source, line);
      for (const batch of this.#unsent) for (const [source, line] of batch.lowest) note(source, line);
    });
    this.#connecting = this.#connect(false);
  }

  /** Messages queued or sent and not yet acknowledged. */
  get held(): number {
    return this.#queuedCount + this.#inflightCount;
  }

  /** Messages sent and not yet acknowledged. */
  get inFlight(): number {
    return this.#inflightCount;
  }

  /** Queues a message; it is sent with the next batch. Ignored once the outbox failed or closed. */
  add(message: Outgoing): void {
    if (this.#failure || this.#closed) return;
    let last = this.#queue[this.#queue.length - 1];
    if (!last || last.messages.length >= this.#batchSize || last.sent) {
      last = newBatch();
      this.#queue.push(last);
    }
    addTo(last, message);
    this.#queuedCount++;
    this.#queuedBytes += message.bytes;
    this.#pump(false);
    this.#updateGate();
  }

  /**
   * Sends everything queued and resolves once all of it is acknowledged, reconnecting as `retry`
   * allows; rejects with the failure, if any.
   */
  async drain(): Promise<void> {
    for (;;) {
      await this.#connecting;
      if (this.#failure || this.#closed) break;
      this.#pump(true);
      if (this.#answers.size === 0 && this.#queue.length === 0) break;
      await Promise.all([...this.#answers]);
      // An answer that failed started connecting again: wait for it before pumping what came back.
      await this.#connecting;
    }
    if (this.#failure) throw this.#failure;
  }

  /**
   * Stops taking messages and closes the connection once what was sent is answered. Messages still
   * queued (also those waiting to be sent again) are dropped (never acknowledged, so their records
   * are not durable).
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#wake?.();
    this.#dropQueue();
    this.#releaseGate();
    await this.#connecting;
    const publisher = this.#publisher;
    await Promise.allSettled([...this.#answers]);
    // Batches answered with a failure meanwhile went back to the queue: they are dropped too.
    this.#dropQueue();
    // Messages never acknowledged stay held: an upstream source must not acknowledge their records.
    if (!this.#failure && this.#unsent.length === 0 && this.#inflight.size === 0) this.#stopHolding();
    await publisher?.close().catch(() => {});
  }

  /**
   * Opens a publisher; while that fails for a reason that may pass, waits and tries again as
   * `retry` allows. `again`: after a lost connection, so the first try waits too.
   */
  async #connect(again: boolean): Promise<void> {
    let wait = again;
    for (;;) {
      if (wait && !(await this.#backoff())) return;
      wait = true;
      if (this.#closed || this.#failure) return;
      let publisher: Publisher;
      try {
        publisher = await this.#open();
      } catch (error) {
        if (!this.#mayRetry(asError(error))) return;
        continue;
      }
      if (this.#closed || this.#failure) {
        publisher.close().catch(() => {});
        return;
      }
      this.#publisher = publisher;
      publisher.onLost((error) => this.#lost(publisher, error));
      this.#pump(false);
      return;
    }
  }

  /**
   * Counts a failed attempt against the outage and says whether to try again; when not, fails the
   * outbox with the error (and how long it was retried).
   */
  #mayRetry(error: Error): boolean {
    if (this.#closed || this.#failure) return false;
    const retry = this.#retry;
    if (!retry || (error instanceof PublishError && !error.transient)) {
      this.#fail(error);
      return false;
    }
    const now = performance.now();
    const outage = this.#outage ?? { since: now, attempts: 0, last: error };
    this.#outage = outage;
    outage.attempts++;
    outage.last = error;
    if (outage.attempts > retry.maxAttempts || now - outage.since >= retry.timeoutMs) {
      this.#fail(new Error(`${error.message} ${gaveUp(retry, outage.attempts, now - outage.since)}`));
      return false;
    }
    return true;
  }

  /** Waits before the next attempt: resolves false when the outbox closed or failed meanwhile. */
  async #backoff(): Promise<boolean> {
    const retry = this.#retry;
    if (!retry || this.#closed || this.#failure) return false;
    // The last attempt lands at the deadline rather than after it.
    const ms = backoffMs(retry, this.#outage?.attempts ?? 1, this.#outage ? performance.now() - this.#outage.since : 0);
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.#wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    this.#wake = undefined;
    return !this.#closed && !this.#failure;
  }

  /**
   * The connection of `publisher` is gone (lost, or a send failed): it is dropped, and once every
   * answer it still owes is in (failed batches back in the queue, in order), connecting again starts.
   */
  #lost(publisher: Publisher, error: Error): void {
    if (this.#publisher !== publisher) return;
    this.#publisher = undefined;
    publisher.close().catch(() => {});
    if (!this.#mayRetry(error)) return;
    const answers = [...this.#answers];
    this.#connecting = Promise.allSettled(answers).then(() => this.#connect(true));
  }

  /**
   * Sends full batches while fewer than `maxInFlight` messages wait for acknowledgements; with
   * `all`, a short last batch too. A short batch otherwise goes on the next turn of the event loop.
   * The bound holds even for a source that ignores the gate (RxJS's `from`): its records wait here.
   */
  #pump(all: boolean): void {
    const publisher = this.#publisher;
    if (!publisher || this.#failure || this.#closed) return;
    while (this.#queue.length > 0 && this.#inflightCount < this.#maxInFlight) {
      const first = this.#queue[0] as Batch;
      if (!all && !first.sent && this.#queue.length === 1 && first.messages.length < this.#batchSize) break;
      this.#queue.shift();
      this.#queuedCount -= first.messages.length;
      this.#queuedBytes -= first.bytes;
      this.#send(publisher, first);
    }
    if (this.#queue.length > 0 && !this.#scheduled && this.#inflightCount < this.#maxInFlight) {
      // Records that arrive in one turn go together; a trickle still goes out at once.
      this.#scheduled = true;
      setImmediate(() => {
        this.#scheduled = false;
        this.#pump(true);
      });
    }
  }

  #send(publisher: Publisher, taken: Batch): void {
    let batch = taken;
    if (!taken.sent) {
      // First sent: what the broker cannot take is dropped (a dead letter) once, here.
      batch = newBatch(taken.seq);
      for (let message of taken.messages) {
        if (message.bytes > publisher.maxPayload && message.shrink) message = message.shrink();
        if (message.bytes <= publisher.maxPayload) addTo(batch, message);
        else message.reject(`the message is ${message.bytes} bytes; ${publisher.where} takes at most ${publisher.maxPayload}`);
      }
      batch.sent = batch.messages;
    }
    const fits = batch.messages;
    if (fits.length === 0) {
      announceDurable(this.#flow);
      this.#updateGate();
      return;
    }
    this.#inflight.add(batch);
    this.#inflightCount += fits.length;
    this.#inflightBytes += batch.bytes;
    const answered = publisher.send(fits).then(
      (answer) => {
        this.#settle(batch);
        if (this.#failure) return;
        this.#outage = undefined;
        announceDurable(this.#flow);
        this.events.acknowledged(batch.sent ?? fits, answer, publisher);
        this.#pump(false);
      },
      (reason: unknown) => {
        const error = asError(reason);
        if (this.#retry && !this.#closed && !this.#failure && !(error instanceof PublishError && !error.transient)) {
          // Sent again once connected again: the messages not acknowledged, in the batch's place.
          this.#settle(batch);
          this.#requeue(batch, error instanceof PublishError && error.unsent ? [...error.unsent] : fits);
          this.#lost(publisher, error);
          return;
        }
        // Not acknowledged: its records stay held, so nothing upstream treats them as durable.
        this.#fail(error);
        this.#settle(batch, false);
      },
    );
    this.#answers.add(answered);
    // `run()` resolves only once every answer is in: a source may still acknowledge after it.
    this.#flow.settling.add(answered);
    answered.finally(() => {
      this.#answers.delete(answered);
      this.#flow.settling.delete(answered);
    });
  }

  /** Puts a batch whose send failed back into the queue, in its place, with what is left to send. */
  #requeue(batch: Batch, messages: Outgoing[]): void {
    batch.messages = messages;
    let bytes = 0;
    for (const message of messages) bytes += message.bytes;
    batch.bytes = bytes;
    let at = this.#queue.findIndex((queued) => queued.seq > batch.seq);
    if (at < 0) at = this.#queue.length;
    this.#queue.splice(at, 0, batch);
    this.#queuedCount += messages.length;
    this.#queuedBytes += bytes;
    this.#updateGate();
  }

  #settle(batch: Batch, forget = true): void {
    if (forget) this.#inflight.delete(batch);
    this.#inflightCount -= batch.messages.length;
    this.#inflightBytes -= batch.bytes;
    this.#updateGate();
  }

  #fail(error: Error): void {
    if (this.#failure || this.#closed) return;
    this.#failure = error;
    this.#wake?.();
    this.#dropQueue();
    this.#releaseGate();
    const publisher = this.#publisher;
    this.#publisher = undefined;
    publisher?.close().catch(() => {});
    this.events.failed(error);
  }

  /** Drops what was never sent: those records are never acknowledged, so they are not durable. */
  #dropQueue(): void {
    this.#unsent.push(...this.#queue);
    this.#queue.length = 0;
    this.#queuedCount = 0;
    this.#queuedBytes = 0;
  }

  #updateGate(): void {
    const full = !this.#failure && !this.#closed && (this.held >= this.#maxInFlight || this.#queuedBytes + this.#inflightBytes >= this.#maxInFlightBytes);
    if (full && !this.#release) this.#release = holdGate(this.#flow);
    else if (!full) this.#releaseGate();
  }

  #releaseGate(): void {
    this.#release?.();
    this.#release = undefined;
  }
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

/**
 * The broker sink operator: encodes each record, publishes it through an {@link Outbox} and emits
 * one {@link Published} per acknowledged batch. `who` names the sink in errors; `target` is what
 * `Published.target` says; `idOf` gives a message's de-duplication id.
 */
export function publishSink<T>(
  who: string,
  target: string,
  options: PublishOptions<T>,
  open: () => Promise<Publisher>,
  idOf?: (record: T, position: Position | undefined, payload: string | Uint8Array) => string | undefined,
): OperatorFunction<T, Published> {
  const encode = options.encode ?? encodeJson;
  return function publishOperator(source) {
    return new Observable<Published>((subscriber) => {
      const flow = currentFlow(subscriber);
      const route = deadLetterRoute(flow, subscriber);
      let failed = false;
      const fail = (error: unknown) => {
        if (failed) return;
        failed = true;
        subscriber.error(error);
      };
      const checkpoint = flow.checkpoint;
      let lastSave = 0;
      const outbox = new Outbox(flow, open, options, {
        acknowledged(batch, answer) {
          flow.stats.written += batch.length;
          for (const message of batch) countOutput(message.position);
          flow.stats.buffered -= batch.length;
          // As the Parquet sink does after commits: resume points move on about once a second, so
          // a crash re-reads (and publishes again) only what came after.
          if (checkpoint && Date.now() - lastSave >= 1000) {
            lastSave = Date.now();
            checkpoint.save().catch((error: unknown) => fail(new Error(`checkpoint ${checkpoint.path}: could not save resume points: ${(error as Error)?.message ?? String(error)}`, { cause: error })));
          }
          let bytes = 0;
          for (const message of batch) bytes += message.bytes;
          subscriber.next({ target, messages: batch.length, bytes, duplicates: answer.duplicates, sources: rangesOf(batch) });
        },
        failed: fail,
      });

      function reject(record: T, position: Position | undefined, reason: string): void {
        try {
          sendToDeadLetter(flow, "write", reason, record, position, {}, route);
        } catch (error) {
          fail(error);
        }
      }

      function append(record: T): void {
        const position = positionIn(flow, record);
        let payload: string | Uint8Array;
        try {
          payload = encode(record);
          if (typeof payload !== "string" && !(payload instanceof Uint8Array)) {
            throw new Error(`encode returned ${payload === null ? "null" : typeof payload}, not a string or Uint8Array`);
          }
        } catch (error) {
          reject(record, position, `${who}: cannot encode the record for ${target}: ${(error as Error).message}`);
          return;
        }
        let id: string | undefined;
        try {
          id = idOf?.(record, position, payload);
        } catch (error) {
          reject(record, position, `${who}: msgId threw for ${target}: ${(error as Error).message}`);
          return;
        }
        // In the outbox, the record has left the pipeline; it is held there until acknowledged.
        if (position) position.input.settle(position.line);
        flow.stats.buffered++;
        outbox.add({
          payload,
          bytes: typeof payload === "string" ? Buffer.byteLength(payload) : payload.byteLength,
          id,
          source: position?.input.name ?? "",
          line: position?.line ?? 0,
          position,
          reject(reason) {
            flow.stats.buffered--;
            reject(record, position, `${who}: ${reason}`);
          },
        });
      }

      const subscription = withFlow(flow, () =>
        source.subscribe(joinFlow(flow, {
          next(record) {
            if (!failed) append(record);
          },
          error: (error) => {
            fail(error);
            outbox.close().catch(() => {});
          },
          complete() {
            outbox.drain().then(
              () => outbox.close().then(() => subscriber.complete()),
              (error) => fail(error),
            );
          },
        })),
      );
      return function stopPublishing() {
        subscription.unsubscribe();
        // What is sent and not answered yet is left to land; what is queued is dropped (never acknowledged).
        outbox.close().catch(() => {});
      };
    });
  };
}

function rangesOf(batch: readonly Outgoing[]): Published["sources"] {
  const ranges = new Map<string, { source: string; firstLine: number; lastLine: number }>();
  for (const { source, line } of batch) {
    if (line <= 0) continue;
    const range = ranges.get(source);
    if (!range) ranges.set(source, { source, firstLine: line, lastLine: line });
    else {
      if (line < range.firstLine) range.firstLine = line;
      if (line > range.lastLine) range.lastLine = line;
    }
  }
  return [...ranges.values()];
}

/**
 * A record as JSON text, refusing what JSON would change silently: `NaN` and `Infinity` (which
 * `JSON.stringify` writes as `null`) and integers beyond 2^53 (a bigint a JSON reader reads back
 * rounded). A bigint within ±2^53 is written as a number. Throws, naming the field, for those, for
 * a cycle, for nesting too deep to serialise and for `undefined`.
 *
 * @example
 * encodeJson({ id: 1n, at: new Date(0) }); // '{"id":1,"at":"1970-01-01T00:00:00.000Z"}'
 */
export function encodeJson(record: unknown): string {
  // Fast path: without a replacer. A bigint makes it throw; NaN and Infinity come out as `null`,
  // so text without "null" cannot hold one. Anything else takes the checking path.
  try {
    const plain = JSON.stringify(record);
    if (plain !== undefined && !plain.includes("null")) return plain;
  } catch (error) {
    // Nested too deep: walking it again would only overflow again. A bigint or a cycle: the checking path says which.
    if (error instanceof RangeError) throw new Error(`the record cannot be written as JSON: ${error.message}`);
  }
  const text = JSON.stringify(record, function exact(key, value: unknown) {
    if (typeof value === "number" && !Number.isFinite(value)) {
      throw new Error(`${fieldName(key)} holds ${value}, which JSON cannot hold`);
    }
    if (typeof value === "bigint") {
      if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER)) {
        throw new Error(`${fieldName(key)} holds ${value}, beyond 2^53: a JSON reader would read it back rounded (pass an encode that writes it as text)`);
      }
      return Number(value);
    }
    return value;
  });
  if (text === undefined) throw new Error(`${typeof record} cannot be written as JSON`);
  return text;
}

function fieldName(key: string): string {
  return key === "" ? "the record" : `field ${JSON.stringify(key)}`;
}

/**
 * The default de-duplication id of a record's message: `<input>:<line>:<hash of the payload>`, or
 * undefined for a record without a position. The same record at the same place gives the same id
 * in every run; a different payload at the same place does not.
 */
export function positionId(position: Position | undefined, payload: string | Uint8Array): string | undefined {
  if (!position || position.line <= 0) return undefined;
  return `${position.input.name}:${position.line}:${Bun.hash.wyhash(payload).toString(16)}`;
}

/**
 * An error for a broker failure: `<who>: <what> failed (<where>): <reason>`, with the credentials
 * removed from the client's own message (which may quote a URL); the client's error is not kept as
 * the cause, since it may hold them. `transient`: trying again may succeed (see {@link PublishError}).
 */
export function brokerError(who: string, what: string, where: string, error: unknown, secrets: readonly string[], transient = false, unsent?: readonly Outgoing[]): PublishError {
  let reason = redactText(error instanceof Error ? error.message : String(error));
  // Very short values (a user "u") would mangle every word they occur in; the URL form is masked above.
  for (const secret of secrets) if (secret.length >= 4) reason = reason.replaceAll(secret, "***");
  return new PublishError(`${who}: ${what} failed (${where}): ${reason}`, transient, unsent);
}
