/**
 * What the broker sources (`fromRedisStream`, `fromJetStream`) share: messages held from their read
 * until what they became is durable, positioned by the broker's own sequence, acknowledged as the
 * durable prefix grows (`watchDurable`), and reading paced by the sink's gate and by how many
 * messages are held.
 *
 * A broker keeps every message a reader took and did not acknowledge, and gives it to another
 * reader when this one dies. So acknowledging is the commit: it must not run ahead of the files.
 * What a crash leaves unacknowledged comes back *redelivered*; the sink and the dead letter look
 * those up in the ledgers of what is committed (src/sinks/ledger.ts) so they are not written twice.
 *
 * Why runs of messages: a Parquet file claims ranges of lines (`sluice.sources`), and a range
 * claims *every* line between its ends for its partition. Several readers share a stream, so the
 * lines one reader sees have gaps that belong to others. Each run of messages with nothing between
 * them that another reader may hold gets an {@link Input} of its own (same name, the stream), and
 * the sink never joins lines of two inputs into one range: a file claims exactly the messages it holds.
 */
import { watchDurable } from "../flow/durable.ts";
import { type DeadLetterHandler, type Flow, waitForGate } from "../flow/flow.ts";
import { Input, type Position } from "../flow/position.ts";
import { alreadyDeadLettered } from "../sinks/ledger.ts";

/**
 * Sends the acknowledgement of a batch of messages; settles once the broker has it. A rejection is
 * left in `flow.settling` for `run()` to see, so `acknowledge` reports its own failure first.
 */
export type Acknowledge<T> = (batch: T[]) => Promise<void>;

/** How a broker source describes one message it positions. */
export interface Delivery {
  /**
   * The broker's position of the message as a line (JetStream's stream sequence, a Redis id's
   * line): the same for every reader and every delivery. Undefined when the broker's position
   * has no exact line: the message is then numbered in this run only (see {@link HeldMessages}).
   */
  readonly line: number | undefined;
  /**
   * True when no message between the previous first delivery this reader positioned and this one
   * can be held by another reader (the broker gave them out one after the other, to this reader).
   */
  readonly adjacent: boolean;
  /**
   * Set when the broker delivered it before, to this reader or another: a moment
   * (`performance.now()`) by which any earlier reader had committed whatever it committed of it.
   * The ledgers then need one look after that moment (see src/sinks/ledger.ts), so the messages
   * of one redelivered batch share a look. A source derives it from how the broker hands a
   * message on: JetStream only `ack_wait` after the holder's last `working()`, Redis's XAUTOCLAIM
   * only `claimIdleMs` after its last reset, and a holder, dead or alive, commits nothing later
   * than its {@link Lease}'s margin before that (a sixth of `ack_wait`; `keepAliveMs`): so the
   * moment is that margin before the redelivery arrived. A restarted consumer's own pending
   * entries: the start of the process, as the one that read them had ended.
   */
  readonly redelivered: number | undefined;
  /** The message's text, kept for a dead letter. */
  readonly raw?: string;
}

/**
 * How long a broker source may be sure that the messages it holds are still its own, and the
 * fence when it no longer can.
 *
 * A broker lends a message for a lease (JetStream's `ack_wait`, Redis's `claimIdleMs`), renewed
 * by each keep-alive that reaches it, and hands it to another reader once the lease runs out. A
 * reader that is alive but cannot renew (the broker restarted or is unreachable, the process
 * stalled) must not commit those messages any more: the other reader writes them too, and the
 * ledger of committed files (src/sinks/ledger.ts) only sees what was committed before it looked.
 *
 * What is proven: a keep-alive round started at `t` and answered before the lease could have run
 * out renews every message held at `t` until at least `t + leaseMs` (the broker restarts the
 * lease when it receives the round, after `t`); a message taken by a read started at `r` is the
 * reader's until at least `r + leaseMs`. So every held message is the reader's until
 * `expiry = min(last answered round's start, earliest read start of messages taken since) +
 * leaseMs`. Commits stop `marginMs` before that (the `deadline`): a redelivered message is looked
 * up in the ledgers as of `marginMs` before its redelivery (`Delivery.redelivered`), so whatever
 * this reader committed is visible by then. Past the deadline with messages held, {@link check}
 * throws (and `onLost` fails the source): sinks call it, through `checkLeases`, right before a
 * file takes its final name.
 */
export class Lease {
  /** Start of the last keep-alive round answered in time (+Infinity before any message is held). */
  #provenAt = Number.POSITIVE_INFINITY;
  /** Earliest read start of the messages taken since that round started. */
  #oldest = Number.POSITIVE_INFINITY;
  /** The round in flight: when it started, and the earliest read start of messages taken since. */
  #round: { startedAt: number; oldest: number } | undefined;
  #lost: Error | undefined;
  #revoked: Error | undefined;

  /**
   * `held()` counts the messages held; `lost(held, silentMs)` makes the error that says this
   * reader lost hold of them; `onLost(error)` runs once, when that is found. `leaseMs` may change
   * once the broker says what it is (an existing consumer's own `ack_wait`).
   */
  constructor(
    public leaseMs: number,
    public marginMs: number,
    readonly held: () => number,
    readonly lost: (held: number, silentMs: number) => Error,
    readonly onLost: (error: Error) => void,
  ) {}

  /** Until when (`performance.now()`) every held message is surely this reader's. */
  get expiry(): number {
    return Math.min(this.#provenAt, this.#oldest) + this.leaseMs;
  }

  /** Until when commits may land. */
  get deadline(): number {
    return this.expiry - this.marginMs;
  }

  /** Messages were taken by a read that started at `readAt`. */
  taken(readAt: number): void {
    if (readAt < this.#oldest) this.#oldest = readAt;
    if (this.#round && readAt < this.#round.oldest) this.#round.oldest = readAt;
  }

  /**
   * Starts a keep-alive round: returns its start, to hand to {@link renewed} once the broker
   * answers, or undefined when there is nothing to renew or a round is still in flight (or the
   * lease is lost). Take the list of messages to keep alive right after it, synchronously.
   */
  renewing(): number | undefined {
    if (this.#lost || this.#revoked || this.#round) return undefined;
    const now = performance.now();
    if (this.held() === 0) {
      this.#provenAt = now;
      this.#oldest = Number.POSITIVE_INFINITY;
      return undefined;
    }
    // Too late to renew what may be someone else's already: the check fences it.
    if (!this.#alive(now)) return undefined;
    this.#round = { startedAt: now, oldest: Number.POSITIVE_INFINITY };
    return now;
  }

  /** The broker answered the round started at `startedAt`. */
  renewed(startedAt: number): void {
    const round = this.#round;
    if (!round || round.startedAt !== startedAt) return;
    this.#round = undefined;
    // Answered after the lease could have run out: the broker may have handed them on before it renewed.
    if (this.#lost || this.#revoked || performance.now() >= this.expiry) return;
    this.#provenAt = startedAt;
    this.#oldest = round.oldest;
  }

  /** The round started at `startedAt` failed: the lease stands as it was. */
  failed(startedAt: number): void {
    if (this.#round?.startedAt === startedAt) this.#round = undefined;
  }

  #alive(now: number): boolean {
    return this.held() === 0 || now <= this.deadline;
  }

  /**
   * Throws when commits must stop: the lease of held messages may run out before a commit lands
   * (the first time, `onLost` is told), or the reader gave its messages back ({@link revoke}).
   */
  readonly check = (): void => {
    if (this.#revoked) throw this.#revoked;
    if (this.#lost) throw this.#lost;
    const now = performance.now();
    if (this.#alive(now)) return;
    const silentMs = Math.round(now - Math.min(this.#provenAt, this.#oldest));
    this.#lost = this.lost(this.held(), silentMs);
    this.onLost(this.#lost);
    throw this.#lost;
  };

  /**
   * {@link check} for a timer: finds a lost lease and tells `onLost`, without throwing. A throw
   * from a timer is an uncaught exception: it would print the error a second time, and end the
   * process of an app that embeds the pipeline.
   */
  readonly poll = (): void => {
    try {
      this.check();
    } catch {
      // Told through onLost, or given back by the reader itself.
    }
  };

  /**
   * The reader gives its messages back (a `nak`): nothing may be committed from now on, and
   * `check` throws `error`.
   */
  revoke(error: Error): void {
    this.#revoked ??= error;
  }
}

/** Messages of one input (a run of adjacent deliveries), oldest first. */
interface Run<K, T> {
  readonly input: Input;
  readonly lines: number[];
  readonly keys: K[];
  readonly messages: T[];
  /** Index of the oldest message not acknowledged. */
  head: number;
  stopWatching: () => void;
  /**
   * Its messages are found by line (their keys give it, `lineOf`), not through the key map: a run
   * of first deliveries, whose lines ascend. Saves two map operations per message.
   */
  readonly byLine: boolean;
}

/** How {@link HeldMessages} acknowledges, and how it positions first deliveries. */
export interface HeldMessagesOptions<K> {
  /** How many messages one `acknowledge` call carries at most (a command's size); default: all. */
  readonly maxBatch?: number;
  /** Runs after each acknowledgement sent. */
  readonly onAcked?: () => void;
  /**
   * The line a key is delivered at (the `Delivery.line` of its message), when the broker's id
   * says it: first deliveries are then found by line, without a map entry each.
   */
  readonly lineOf?: (key: K) => number | undefined;
  /**
   * When this reader's connection to the broker began (`performance.now()`). A broker that forgets
   * what it delivered (a server restarted without its consumer's state, a group's position set
   * back, a consumer deleted and made again) hands committed messages out again as *first*
   * deliveries, with nothing to say they came back. Every such commit was made before the broker
   * forgot, so before this connection (a reader whose connection drops ends its run): each first
   * delivery is looked up in the ledgers as of this moment, which costs one look at the folders
   * per connection and a lookup in memory per record.
   */
  readonly firstDeliveriesAsOf?: number;
  /**
   * Where the source's own rejects (messages that do not parse) go: the `deadLetter` below the
   * source (see `deadLetterBelow` in flow.ts), set on each run's input.
   */
  readonly deadLetterTarget?: DeadLetterHandler | undefined;
}

/**
 * Reads the run's ledgers of committed files (src/sinks/ledger.ts), once a broker source is
 * connected and before it holds a message. First deliveries are looked up as of the connection
 * (see {@link HeldMessagesOptions.firstDeliveriesAsOf}): that look, which reads the footer of
 * every file in the dataset, then happens here rather than in the middle of the first batch,
 * where a large dataset's footers would hold up the keep-alives of what the source holds.
 */
export function readLedgers(flow: Flow): void {
  for (const ledger of flow.ledgers) ledger.refresh();
}

/**
 * Messages a broker source has emitted and not acknowledged, keyed by the broker's id (`K`), in
 * runs of adjacent deliveries, each with an {@link Input} of its own: acknowledged, run by run, up
 * to the line its durable prefix reaches, every acknowledgement tracked in `flow.settling` until
 * answered. Walks held messages in order: lines may be sparse (stream sequences, Redis ids).
 */
export class HeldMessages<K, T> {
  readonly #runs = new Set<Run<K, T>>();
  /** Held messages of the runs found by key (not `byLine`): redelivered ones and those without an exact line. */
  readonly #held = new Map<K, { run: Run<K, T>; line: number }>();
  /** The runs whose messages are found by line. */
  readonly #byLine = new Set<Run<K, T>>();
  #size = 0;
  readonly #inflight = new Set<Promise<void>>();
  /** The run adjacent first deliveries join. */
  #open: Run<K, T> | undefined;
  /** Messages the broker's position gives no exact line: numbered in this run only. */
  #local: Run<K, T> | undefined;

  readonly maxBatch: number;
  readonly onAcked: () => void;
  readonly lineOf: ((key: K) => number | undefined) | undefined;
  /**
   * The moment (`performance.now()`) as of which first deliveries are looked up in the ledgers
   * (see {@link HeldMessagesOptions.firstDeliveriesAsOf}); undefined: they are not looked up.
   */
  readonly firstDeliveriesAsOf: number | undefined;
  readonly deadLetterTarget: DeadLetterHandler | undefined;

  /** `name` is the input's name (`jetstream:<stream>`); `acknowledge` sends the acknowledgement of a batch. */
  constructor(
    readonly flow: Flow,
    readonly name: string,
    readonly acknowledge: Acknowledge<T>,
    options: HeldMessagesOptions<K> = {},
  ) {
    this.maxBatch = options.maxBatch ?? Number.POSITIVE_INFINITY;
    this.onAcked = options.onAcked ?? (() => {});
    this.lineOf = options.lineOf;
    this.firstDeliveriesAsOf = options.firstDeliveriesAsOf;
    this.deadLetterTarget = options.deadLetterTarget;
  }

  get size(): number {
    return this.#size;
  }

  has(key: K): boolean {
    return this.#find(key) !== undefined;
  }

  /**
   * A held message delivered again (its keep-alive came late): the newest handle is kept, since
   * a broker may accept only the latest delivery's acknowledgement; nothing is emitted again.
   */
  replace(key: K, message: T): void {
    const found = this.#find(key);
    if (found) found.run.messages[found.at] = message;
  }

  /** The run holding `key` and its index there, or undefined when it is not held. */
  #find(key: K): { run: Run<K, T>; at: number } | undefined {
    const keyed = this.#held.get(key);
    if (keyed) {
      const at = indexOf(keyed.run.lines, keyed.line, keyed.run.head);
      return at >= 0 ? { run: keyed.run, at } : undefined;
    }
    const line = this.#byLine.size > 0 ? this.lineOf?.(key) : undefined;
    if (line === undefined) return undefined;
    // A few runs at a time (one per batch another reader's interleave): looked up on redeliveries only.
    for (const run of this.#byLine) {
      const { lines, head } = run;
      if (head >= lines.length || line < (lines[head] as number) || line > (lines[lines.length - 1] as number)) continue;
      const at = indexOf(lines, line, head);
      if (at >= 0) return { run, at };
    }
    return undefined;
  }

  /**
   * Holds `message` until durable and returns its position, counted as read; or undefined when it
   * is redelivered and its dead letter is committed already (in a dead-letter folder of the run):
   * then it is counted as skipped and settled, and acknowledged with the others.
   */
  at(key: K, message: T, delivery: Delivery): Position | undefined {
    const run = this.#runFor(delivery);
    const line = delivery.line !== undefined && run !== this.#local ? delivery.line : run.input.lastLine + 1;
    run.lines.push(line);
    run.messages.push(message);
    if (!run.byLine) {
      run.keys.push(key);
      this.#held.set(key, { run, line });
    }
    this.#size++;
    // A first delivery is looked up as of the connection's start, through its run's input.
    const redelivered = run !== this.#local ? (delivery.redelivered ?? run.input.redelivered) : undefined;
    const position = run.input.at(line, delivery.raw, undefined, redelivered);
    if (redelivered !== undefined && alreadyDeadLettered(this.flow, this.name, line, redelivered)) {
      this.flow.stats.skipped++;
      run.input.settle(line);
      return undefined;
    }
    return position;
  }

  #runFor(delivery: Delivery): Run<K, T> {
    if (delivery.line === undefined || !Number.isSafeInteger(delivery.line) || delivery.line <= 0) {
      // Unique to this run: the ledgers are never asked about it, so it is at least once.
      this.#local ??= this.#newRun(`${this.name}~${this.flow.runId}`, false);
      return this.#local;
    }
    // A redelivered message is a run of its own: the lines around it may be another reader's.
    if (delivery.redelivered !== undefined) return this.#newRun(this.name, false);
    const open = this.#open;
    if (open && delivery.adjacent && delivery.line > open.input.lastLine) return open;
    this.#open = this.#newRun(this.name, this.lineOf !== undefined, this.firstDeliveriesAsOf);
    if (open) this.#retireIfDone(open);
    return this.#open;
  }

  #newRun(name: string, byLine: boolean, lookAsOf?: number): Run<K, T> {
    const input = new Input(this.flow, name, lookAsOf);
    input.deadLetterTarget = this.deadLetterTarget;
    const run: Run<K, T> = { input, lines: [], keys: [], messages: [], head: 0, stopWatching: () => {}, byLine };
    run.stopWatching = watchDurable(run.input, (upTo) => this.#ack(run, upTo));
    this.#runs.add(run);
    if (byLine) this.#byLine.add(run);
    return run;
  }

  /** The held messages, run by run, oldest first. */
  *values(): IterableIterator<T> {
    for (const run of this.#runs) for (let i = run.head; i < run.messages.length; i++) yield run.messages[i] as T;
  }

  /** Acknowledges the messages of `run` with a line up to `upTo`, in order. */
  #ack(run: Run<K, T>, upTo: number): void {
    const batch: T[] = [];
    const { lines, keys, messages } = run;
    const start = run.head;
    while (run.head < lines.length && (lines[run.head] as number) <= upTo) {
      batch.push(messages[run.head] as T);
      if (!run.byLine) this.#held.delete(keys[run.head] as K);
      run.head++;
    }
    this.#size -= run.head - start;
    if (run.head > 4096 && run.head * 2 > lines.length) {
      lines.splice(0, run.head);
      keys.splice(0, run.head);
      messages.splice(0, run.head);
      run.head = 0;
    }
    this.#retireIfDone(run);
    if (batch.length > 0) this.send(batch);
    this.onAcked();
  }

  /** A run no message can join any more, all of it acknowledged, is forgotten. */
  #retireIfDone(run: Run<K, T>): void {
    if (run === this.#open || run === this.#local || run.head < run.lines.length) return;
    run.stopWatching();
    this.#runs.delete(run);
    this.#byLine.delete(run);
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

  /**
   * Stops watching for durability: nothing more is acknowledged. The messages still held stay
   * listed ({@link values}), to keep alive or give back.
   */
  close(): void {
    for (const run of this.#runs) run.stopWatching();
    this.#open = undefined;
    this.#local = undefined;
  }
}

/** Index of `line` in the ascending `lines` from `from`, or -1. */
function indexOf(lines: readonly number[], line: number, from: number): number {
  let low = from;
  let high = lines.length - 1;
  while (low <= high) {
    const mid = (low + high) >>> 1;
    const at = lines[mid] as number;
    if (at === line) return mid;
    if (at < line) low = mid + 1;
    else high = mid - 1;
  }
  return -1;
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
