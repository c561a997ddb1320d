/**
 * What the broker sources (`fromRedisStream`, `fromJetStream`) share: messages held from their read
 * until what they became is durable, acknowledged in line order as the durable prefix grows
 * (`watchDurable`), and reading paced by the sink's gate and by how many messages are held.
 *
 * A broker keeps every message a reader took and did not acknowledge, and gives it to another
 * reader when this one dies. So acknowledging is the commit: it must not run ahead of the files.
 */
import { type Flow, waitForGate } from "../flow/flow.ts";

/**
 * Sends the acknowledgement of a batch of messages; settles once the broker has it. A rejection is
 * left in `flow.settling` for `run()` to see, so `acknowledge` reports its own failure first.
 */
export type Acknowledge<T> = (batch: T[]) => Promise<void>;

/**
 * Messages a broker source has emitted and not acknowledged, by line: acknowledged in line order
 * as the durable prefix grows, every acknowledgement tracked in `flow.settling` until answered.
 */
export class HeldMessages<T> {
  readonly #messages = new Map<number, T>();
  readonly #lines = new Map<T, number>();
  readonly #inflight = new Set<Promise<void>>();
  #acked = 0;

  /** `maxBatch` caps how many messages one `acknowledge` call carries (a command's size). */
  constructor(
    readonly flow: Flow,
    readonly acknowledge: Acknowledge<T>,
    readonly maxBatch = Number.POSITIVE_INFINITY,
  ) {}

  get size(): number {
    return this.#messages.size;
  }

  has(message: T): boolean {
    return this.#lines.has(message);
  }

  add(line: number, message: T): void {
    this.#messages.set(line, message);
    this.#lines.set(message, line);
  }

  /** The held messages, in the order they were added. */
  values(): IterableIterator<T> {
    return this.#messages.values();
  }

  /** Acknowledges every held message with a line up to `upTo`. */
  ack(upTo: number): void {
    const batch: T[] = [];
    for (let line = this.#acked + 1; line <= upTo; line++) {
      const message = this.#messages.get(line);
      if (message === undefined) continue;
      this.#messages.delete(line);
      this.#lines.delete(message);
      batch.push(message);
    }
    this.#acked = Math.max(this.#acked, upTo);
    if (batch.length > 0) this.send(batch);
  }

  /** Acknowledges messages now, held or not (one that has nothing to commit). */
  send(messages: T[]): void {
    for (let i = 0; i < messages.length; i += this.maxBatch) {
      const sent = this.acknowledge(messages.slice(i, i + this.maxBatch));
      // `run()` resolves only once these are answered, so a process that exits after it loses none.
      this.flow.settling.add(sent);
      this.#inflight.add(sent);
      const forget = () => {
        this.flow.settling.delete(sent);
        this.#inflight.delete(sent);
      };
      sent.then(forget, forget);
    }
  }

  /** Settles once every acknowledgement sent so far is answered. */
  async sent(): Promise<void> {
    await Promise.allSettled([...this.#inflight]);
  }
}

/**
 * Paces a broker source's reads: `next()` waits while the sink's memory budget is spent (the flow's
 * gate) or while `full()`, and says whether reading may go on. `wake()` ends a wait on `full()`:
 * the source calls it when acknowledgements free room, on a stop request and on unsubscribe.
 */
export class Pace {
  #wake: () => void = () => {};

  constructor(
    readonly flow: Flow,
    readonly done: () => boolean,
    readonly full: () => boolean,
  ) {}

  wake(): void {
    this.#wake();
  }

  /** Resolves true when reading may go on, false once `done()` (the run stops meanwhile). */
  async next(): Promise<boolean> {
    for (;;) {
      if (this.done()) return false;
      if (this.flow.gate) {
        await waitForGate(this.flow);
        continue;
      }
      if (!this.full()) return true;
      const { promise, resolve } = Promise.withResolvers<void>();
      this.#wake = resolve;
      await promise;
    }
  }
}
