/**
 * Positions: where a record came from, carried by the record itself.
 *
 * A record's position (its input, line, byte offset and raw text) must reach the dead letter, the
 * sink's commit ranges and the checkpoint through whatever RxJS operators sit in between: `delay`,
 * `mergeMap` with concurrency (which reorders), `bufferCount` then flattening, `share`, `retry`.
 * Those operators pass the record object along untouched, so the position rides on the object as
 * a symbol-keyed property: user code sees a plain value (`JSON.stringify`, `Object.keys`,
 * `for...in` and `Object.entries` ignore symbol keys), sluice's operators find it wherever the
 * record goes, and spreading (`{ ...e, day }`) copies it to the new object, so the most common
 * way of deriving a record keeps its position. (Test matchers that compare symbol keys, such as
 * `toEqual`, see it: compare `collect()`'s output, which has it removed, or strip it.)
 *
 * Code that builds a new object field by field (`map((e) => ({ id: e.id }))`) drops it;
 * sluice's `enrich` carries it over, and {@link carry} does the same for a plain `map`.
 * A value that is not an object (a number, a string) cannot carry a position: sluice still counts
 * it, and names it "position unknown" if it is dead-lettered after leaving its source.
 */
import type { DeadLetterHandler, Flow } from "./flow.ts";

/** The symbol a record's {@link Position} is stored under. */
export const POSITION: unique symbol = Symbol.for("sluice.position") as never;

/** Where one record came from. Created by a source (through {@link Input.at}), read by the rest. */
export class Position {
  constructor(
    /** The input the record was read from. */
    readonly input: Input,
    /** 1-based line or record number in that input. */
    readonly line: number,
    /** The raw text, when the source has it (an NDJSON line); kept for a dead letter. */
    readonly raw: string | undefined,
    /** Byte offset of the record in its input, when the source knows it. */
    readonly offset: number | undefined,
    /**
     * Set when a broker delivered this record before (to this reader or another one): a moment
     * (`performance.now()`) by which every earlier reader had committed whatever it committed of
     * it (see `Delivery` in src/sources/broker.ts). Only such records are looked up in the ledgers
     * of what is committed already (src/sinks/ledger.ts); undefined for every other record.
     */
    readonly redelivered: number | undefined = undefined,
  ) {}

  /**
   * @internal Outputs counted for the record so far (rows written or skipped, dead letters): see
   * {@link countOutput}.
   */
  outputs = 0;

  /** The input's name: a file path, a URL, a topic partition. */
  get source(): string {
    return this.input.name;
  }

  /** Printed in place of the object, so a logged record shows one short line. */
  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return `${this.input.name}:${this.line}`;
  }
}

/**
 * Counts one output of the record at `position`: a row written (or skipped as written before),
 * or a dead letter. The first is what became of the record; each further one (a record turned
 * into several rows, a `share` into two sinks) is counted in `fannedOut`, so the summary's
 * records still add up: `in + fannedOut = written + deadLettered + skipped + discarded + dropped`.
 */
export function countOutput(position: Position | undefined): void {
  if (position !== undefined && position.outputs++ > 0) position.input.flow.stats.fannedOut++;
}

/** The position a record carries, if any. */
export function positionOf(record: unknown): Position | undefined {
  return typeof record === "object" && record !== null ? (record as { [POSITION]?: Position })[POSITION] : undefined;
}

/**
 * Attaches `position` to `record` and returns the record. A value that is not an object cannot
 * take a property: its run queues it with its position until the first sluice operator that
 * receives an equal value claims it (see `positionIn` in flow.ts).
 */
export function stamp<T>(record: T, position: Position): T {
  if (typeof record === "object" && record !== null) {
    try {
      (record as { [POSITION]?: Position })[POSITION] = position;
    } catch {
      // A frozen record cannot take it: it goes on without a position, as a scalar would.
    }
  } else {
    const waiting = position.input.flow.scalars;
    waiting.push({ value: record, position });
    // Values nobody claims (removed by a filter) must not pile up.
    if (waiting.length > 1024) waiting.splice(0, waiting.length - 1024);
  }
  return record;
}

/** Removes the position from a record (for output handed to code outside the pipeline). */
export function unstamp<T>(record: T): T {
  if (typeof record === "object" && record !== null && POSITION in record) {
    try {
      delete (record as { [POSITION]?: Position })[POSITION];
    } catch {
      // Frozen: it could not have been stamped either.
    }
  }
  return record;
}

/**
 * Wraps a function that builds a new record from an old one so the new record keeps the old one's
 * position: `map(carry((e) => ({ id: e.id, day: e.at.slice(0, 10) })))`. Needed only for RxJS's
 * `map` and friends when they return a *new* object; sluice's own operators carry positions
 * themselves, and operators that pass records along (`filter`, `delay`, `mergeMap`, ...) keep them.
 *
 * @example
 * fromNdjson("events.ndjson").pipe(
 *   map(carry((e: Event) => ({ user: e.user_id, day: e.timestamp.slice(0, 10) }))),
 *   validate(Daily),
 * );
 */
export function carry<T, R>(fn: (record: T, index: number) => R): (record: T, index: number) => R {
  return function carried(record, index) {
    const result = fn(record, index);
    const position = positionOf(record);
    if (position && result !== (record as unknown) && positionOf(result) === undefined) stamp(result, position);
    return result;
  };
}

/** Records of one input followed while in flight before the oldest is taken to be gone. */
export const MAX_IN_FLIGHT = 100_000;

/**
 * One input of a run (a file, a URL, a topic partition, an app's pushes): it hands out the
 * positions of its records, counts them as read, and tracks which of them
 * are still in flight so the resume point never passes a record that is not yet durable.
 */
export class Input {
  /** Lines emitted and not yet settled, in emission order. */
  #inflight: number[] = [];
  #head = 0;
  /** Settled lines that were not at the head of `#inflight` when they settled (reordering). */
  #early = new Set<number>();
  /** Highest line handed out. */
  #last = 0;

  /**
   * Where the input's own rejects (parse errors) go, when its source found the `deadLetter` below
   * it (see `deadLetterBelow` in flow.ts); otherwise the run's nearest one.
   */
  deadLetterTarget: DeadLetterHandler | undefined = undefined;

  // Lines in flight are followed with or without a checkpoint: besides the checkpoint's resume
  // point, the sink's commit ranges leave them out, so a file never claims a line another holds.
  constructor(
    readonly flow: Flow,
    readonly name: string,
    /**
     * Set when the input is a split of a distributed run that another worker held before: the
     * {@link Position.redelivered} of every record it hands out.
     */
    readonly redelivered: number | undefined = undefined,
  ) {
    flow.checkpoint?.track(this);
  }

  /**
   * The position of the record at `line`, counted as read. Call once per input record. Lines
   * increase but need not be consecutive: a broker source uses its own sequence numbers, which
   * may be sparse and large (up to 2^53). `redelivered` is for broker sources: see {@link Position.redelivered}.
   */
  at(line: number, raw?: string, offset?: number, redelivered?: number): Position {
    this.flow.stats.in++;
    if (line > this.#last) this.#last = line;
    this.#inflight.push(line);
    // Memory stays bounded when records never settle (RxJS's `filter` removed them): past
    // MAX_IN_FLIGHT records behind it, the oldest is taken to be gone. Only a record held by an
    // operator while that many later ones of its input passed is misjudged (see the limits).
    if (this.#inflight.length - this.#head > MAX_IN_FLIGHT) this.#advance();
    return new Position(this, line, raw, offset, redelivered ?? this.redelivered);
  }

  /**
   * Declares the record at `line` done with: in a sink buffer, dead-lettered, or skipped because
   * an earlier run made it durable. The checkpoint's resume point may then move past it.
   */
  settle(line: number): void {
    if (line <= 0) return;
    const inflight = this.#inflight;
    if (inflight[this.#head] === line) this.#advance();
    else if (this.#head < inflight.length) {
      this.#early.add(line);
      // A line can be settled when it is no longer in flight: a second time (two sinks fed by one
      // source through `connect` each settle every record) or after it was taken to be gone. Kept,
      // such lines would fill the set for as long as the input is read, one per record. Once they
      // could outnumber the lines in flight, keep only the lines still in flight.
      if (this.#early.size > 2 * (inflight.length - this.#head) + 1024) this.#forgetSettled();
    }
  }

  /** Drops from `#early` the lines that are not in flight (settled already, or taken to be gone). */
  #forgetSettled(): void {
    const early = this.#early;
    const kept = new Set<number>();
    const inflight = this.#inflight;
    for (let i = this.#head; i < inflight.length && kept.size < early.size; i++) {
      const line = inflight[i] as number;
      if (early.has(line)) kept.add(line);
    }
    this.#early = kept;
  }

  /** Lines followed: in flight, or settled ahead of an earlier one. Bounded, whatever the input's length. */
  get followed(): number {
    return this.#inflight.length - this.#head + this.#early.size;
  }

  /** Moves past the oldest line in flight and the lines after it that already settled. */
  #advance(): void {
    const inflight = this.#inflight;
    this.#head++;
    // Lines that settled out of order while an earlier one was in flight.
    while (this.#early.size > 0 && this.#head < inflight.length && this.#early.delete(inflight[this.#head] as number)) {
      this.#head++;
    }
    if (this.#head > 4096 && this.#head * 2 > inflight.length) {
      this.#inflight = inflight.slice(this.#head);
      this.#head = 0;
    }
  }

  /** The lowest line emitted and not settled, or undefined when none is in flight. */
  lowestUnsettled(): number | undefined {
    return this.#head < this.#inflight.length ? this.#inflight[this.#head] : undefined;
  }

  /** Highest line handed out so far (0 before the first). */
  get lastLine(): number {
    return this.#last;
  }

  /** Lines in `[first, last]` emitted and not settled: records that are elsewhere in the pipeline. */
  unsettledIn(first: number, last: number): number[] {
    const found: number[] = [];
    const inflight = this.#inflight;
    for (let i = this.#head; i < inflight.length; i++) {
      const line = inflight[i] as number;
      // Lines are handed out in increasing order.
      if (line > last) break;
      if (line >= first && !this.#early.has(line)) found.push(line);
    }
    return found;
  }
}
