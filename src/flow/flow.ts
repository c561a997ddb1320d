/**
 * The context of one pipeline run: its counters, its dead-letter targets, its memory gate and its
 * checkpoint. Every run has its own, so any number of runs can share a process.
 *
 * RxJS passes values downstream and nothing else; a data pipeline needs more beside them:
 * - where each record came from, so a dead letter can name it and a commit can say which input
 *   is durable. That travels on the record itself (see `position.ts`), so it survives any RxJS
 *   operator, including those that delay or reorder;
 * - a way for the sink to slow the source down (RxJS has no backpressure): the sink holds the
 *   gate while its memory budget is spent, and sources wait on it between chunks;
 * - the dead-letter targets and the counters of the run summary.
 *
 * Those last two belong to a run, not to a record. `run()` opens the run's flow around its
 * `subscribe` call with an `AsyncLocalStorage` scope, and every sluice source, operator and sink
 * takes the flow it finds there once, when it is subscribed, and keeps it. The scope follows
 * asynchronous work, so a source subscribed late (inside `concatMap` after a `timer`) joins the
 * run that started it. A source subscribed by an RxJS operator on an emission from elsewhere (a
 * timer another run set up, a `Subject` an HTTP handler feeds) finds its run by the subscribers
 * below it instead (see `currentFlow`), so two runs in one process never see each other's flow.
 * A piece subscribed outside any run (a pipeline subscribed by hand) opens a flow of its own for
 * everything it subscribes.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import type { Observer } from "rxjs";
import type { Checkpoint } from "../checkpoint/checkpoint.ts";
import type { DeadLetter } from "../deadletter/entry.ts";
import type { Distribution } from "../distribute/distribution.ts";
import type { Holder } from "./durable.ts";
import { newRunId } from "./runId.ts";
import { countOutput, Input, type Position, positionOf } from "./position.ts";

/** Counters that make up a run's summary. */
export interface FlowStats {
  /** Records read by sources (including lines that did not parse). */
  in: number;
  /** Rows committed to the dataset. */
  written: number;
  /** Dead letters by stage. */
  deadLettered: Record<string, number>;
  /** Dead letters known durable: in a committed dead-letter file, or handed to a function target. */
  deadLetteredDurable: number;
  /** Parquet files committed. */
  files: number;
  /** Bytes of Parquet committed. */
  bytes: number;
  /** Rows held in sink buffers, not yet committed. */
  buffered: number;
  /** Bytes held in sink buffers and in-flight encodes. */
  bufferedBytes: number;
  /** Bytes read from inputs. */
  bytesRead: number;
  /** Bytes the inputs hold, when the sources know (files: their sizes, less what a resume skips); 0 = unknown. */
  bytesTotal: number;
  /** Records the inputs hold, when the sources know; 0 = unknown. */
  recordsTotal: number;
  /** Records read again after a resume that an earlier run had already written or dead-lettered. */
  skipped: number;
  /**
   * Rows and dead letters an overwrite took back because the run did not complete: its staging
   * folder was dropped and the earlier dataset (or dead letters) stays.
   */
  discarded: number;
  /** Rows and dead letters beyond a record's first: records turned into several (see `countOutput`). */
  fannedOut: number;
  /** Partition buffers open in the sink (each becomes a file). */
  openPartitions: number;
  /** Time from a buffer's flush to its file being durable, as a histogram over {@link COMMIT_LATENCY_BUCKETS}. */
  commitLatency: { count: number; sumSeconds: number; buckets: number[] };
  /**
   * Consumer lag per source partition, as the broker last reported it, keyed by source, partition
   * and group (see `setLag` in run/metrics.ts). Broker sources fill it while they read.
   */
  lag: Map<string, SourceLag>;
}

/** One source partition's consumer lag, as its broker reported it. */
export interface SourceLag {
  /** The input's name without the partition: `redis:<stream>`, `jetstream:<stream>`, `kafka:<topic>`. */
  readonly source: string;
  /** The partition (Kafka's number; `0` for Redis and JetStream streams, which have one). */
  readonly partition: string;
  /** The consumer group (Redis group, JetStream durable consumer, Kafka group). */
  readonly group: string;
  /** Messages the group has not acknowledged: not yet delivered, plus delivered and not acknowledged. */
  readonly messages: number;
  /** Of those, delivered and not acknowledged, when the broker says (Redis, JetStream). */
  readonly pending: number | undefined;
  /** When the broker answered, epoch milliseconds. */
  readonly at: number;
}

/** Upper bounds, in seconds, of the commit latency histogram's buckets (the last one is +Inf). */
export const COMMIT_LATENCY_BUCKETS: readonly number[] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** Records one commit's latency in the flow's histogram. */
export function observeCommitLatency(stats: FlowStats, seconds: number): void {
  const latency = stats.commitLatency;
  latency.count++;
  latency.sumSeconds += seconds;
  let i = 0;
  while (i < COMMIT_LATENCY_BUCKETS.length && seconds > (COMMIT_LATENCY_BUCKETS[i] as number)) i++;
  latency.buckets[i] = (latency.buckets[i] ?? 0) + 1;
}

/** Receives a dead letter. Called synchronously; must not throw for ordinary bad records. */
export type DeadLetterHandler = (entry: DeadLetter) => void;

/** The context of one pipeline run. See the module comment. */
export interface Flow {
  readonly runId: string;
  readonly stats: FlowStats;
  /** Set when the run was asked to stop (a signal, an abort): sources finish their chunk and complete. */
  stopping: boolean;
  /**
   * Set by `run()` when the pipeline errored, before its pieces are torn down: a piece that
   * finishes after the completion passed it (a dead-letter folder below which the sink failed its
   * last commit) then ends as after a failure, not as after a completed run.
   */
  failed: boolean;
  /** The dead-letter target installed last (the topmost `deadLetter`: the one nearest a source). */
  deadLetterHandler: DeadLetterHandler | undefined;
  /** Every `deadLetter` of the pipeline, in the order they subscribed: bottom-most first. */
  readonly deadLetterHandlers: DeadLetterHandler[];
  /** While set, sources must wait on it before reading more. */
  gate: Promise<void> | undefined;
  /** Called when `stopping` is set, so sources waiting for input (a timer, a broker) wake up. */
  readonly onStop: Set<() => void>;
  /** The run's checkpoint, when it resumes and records progress (`run(..., { checkpoint })`). */
  checkpoint: Checkpoint | undefined;
  /** The input of records that reached sluice without a position (from RxJS's `from`, a Subject). */
  unnamed: Input | undefined;
  /**
   * Work that may still change what is durable after the pipeline errored (a Parquet file being
   * written): `run()` waits for it before it closes the checkpoint and rejects.
   */
  readonly settling: Set<Promise<unknown>>;
  /** Stages holding records they have not committed yet (see `durable.ts`). */
  readonly holders: Set<Holder>;
  /** Sources waiting to hear how far their input is durable, with the last line announced. */
  readonly watched: Map<Input, { readonly listener: (upTo: number) => void; upTo: number }>;
  /**
   * One check per broker source that holds messages lent by its broker: it throws once the source
   * may have lost hold of them (see `checkLeases`), so nothing is committed from then on.
   */
  readonly leases: Set<() => void>;
  /**
   * The ledgers of what the run's sinks and dead-letter folders have committed (src/sinks/ledger.ts).
   * A broker source reads them once it is connected and before it holds a message, so the first
   * look, which reads every committed footer, holds up no keep-alive.
   */
  readonly ledgers: Set<{ refresh(): void }>;
  /** Values that are not objects, emitted by sources and not yet claimed, oldest first (see `stamp`). */
  readonly scalars: { readonly value: unknown; readonly position: Position }[];
  /**
   * Set for a distributed run (`run(…, { distribute })`): file sources take their inputs as
   * splits from the job's work queue, and sinks add to their folders together with the other workers.
   */
  distribution: Distribution | undefined;
  /**
   * Called once when the pipeline under `run()` has ended: `completed` (every record reached its
   * end; what a piece starts now, in `settling`, is waited for) or failed.
   */
  readonly onEnd: Set<(completed: boolean) => void>;
  /**
   * Tells whether a dead letter for line `line` of `source` is committed already, looking again
   * when it has not since `receivedAt` (the dead-letter folders' ledgers, src/sinks/ledger.ts).
   * Asked for redelivered records only.
   */
  deadLettered: ((source: string, line: number, receivedAt: number) => boolean) | undefined;
}

const scope = new AsyncLocalStorage<Flow>();

/** Creates a flow with empty counters. */
export function createFlow(runId = newRunId()): Flow {
  return {
    runId,
    stats: {
      in: 0,
      written: 0,
      deadLettered: {},
      deadLetteredDurable: 0,
      files: 0,
      bytes: 0,
      buffered: 0,
      bufferedBytes: 0,
      bytesRead: 0,
      bytesTotal: 0,
      recordsTotal: 0,
      skipped: 0,
      discarded: 0,
      fannedOut: 0,
      openPartitions: 0,
      commitLatency: { count: 0, sumSeconds: 0, buckets: COMMIT_LATENCY_BUCKETS.map(() => 0).concat(0) },
      lag: new Map(),
    },
    stopping: false,
    failed: false,
    deadLetterHandler: undefined,
    deadLetterHandlers: [],
    gate: undefined,
    onStop: new Set(),
    checkpoint: undefined,
    unnamed: undefined,
    settling: new Set(),
    holders: new Set(),
    watched: new Map(),
    leases: new Set(),
    ledgers: new Set(),
    scalars: [],
    distribution: undefined,
    onEnd: new Set(),
    deadLettered: undefined,
  };
}

/**
 * The flow of the run this piece is subscribed in, or a new one when it is subscribed outside
 * any run. Call it inside the `Observable` subscribe function, never at operator creation, with
 * the piece's subscriber, and subscribe upstream inside {@link withFlow} (an observer object
 * through {@link joinFlow}) so the pieces above join the same flow.
 *
 * The run is the one the subscriber's records go to: the first sluice piece (or `run()`) found
 * below it, following the subscribers down the pipeline; only when there is none, the run whose
 * scope the subscription happens in. A source subscribed late by an RxJS operator (`concatMap`,
 * `mergeMap`) is subscribed in the scope of whatever emitted to that operator: a timer or
 * `share()`d observable another run set up, or a `Subject` an HTTP handler feeds, outside every
 * run. Its scope names another run, or none; its subscribers name its own.
 */
export function currentFlow(subscriber?: object): Flow {
  const flow = (subscriber && flowBelow(subscriber)) ?? scope.getStore() ?? createFlow();
  if (subscriber) joined.set(subscriber, flow);
  return flow;
}

/**
 * Marks `observer`, which a piece subscribes upstream with, as going to `flow`, so pieces
 * subscribed above it later, in another scope, find the run (see {@link currentFlow}).
 */
export function joinFlow<T>(flow: Flow, observer: Partial<Observer<T>>): Partial<Observer<T>> {
  joined.set(observer, flow);
  return observer;
}

// Subscribers and observers of sluice pieces, by the flow they belong to.
const joined = new WeakMap<object, Flow>();

/**
 * The flow of the nearest marked subscriber below `subscriber`. RxJS's subscribers hold the one
 * below as `destination`; one made from an observer object (`source.subscribe({ next })`) holds
 * it as `partialObserver` of its `destination`. Neither is typed as public: when a later RxJS
 * names them otherwise, this finds nothing and the scope decides, as before.
 */
function flowBelow(subscriber: object): Flow | undefined {
  return markBelow(joined, subscriber);
}

/** The value `marks` holds for the nearest subscriber below `subscriber`, itself included. */
function markBelow<V>(marks: WeakMap<object, V>, subscriber: object): V | undefined {
  let at: unknown = subscriber;
  for (let depth = 0; depth < 10_000 && typeof at === "object" && at !== null; depth++) {
    const mark = marks.get(at);
    if (mark !== undefined) return mark;
    const next = at as { destination?: unknown; partialObserver?: unknown };
    at = next.destination ?? next.partialObserver;
  }
  return undefined;
}

/** Runs `subscribe` (and the asynchronous work it starts) inside `flow`'s scope. */
export function withFlow<T>(flow: Flow, subscribe: () => T): T {
  return scope.getStore() === flow ? subscribe() : scope.run(flow, subscribe);
}

/**
 * The position a record carries, or a new one when it has none (it came from a source that is not
 * sluice's: RxJS's `from`, a Subject): such a record is counted as read here, numbered in the
 * order it arrived, under the input name `unnamed`. A value that is not an object cannot carry a
 * position: the first sluice operator that receives it claims the oldest equal value its sources
 * emitted (see `stamp`); later operators, or a value no source emitted, get undefined
 * ("position unknown"). It is not counted again.
 */
export function positionIn(flow: Flow, record: unknown): Position | undefined {
  if (typeof record !== "object" || record === null) {
    // The oldest unclaimed equal value is taken to be this one: in order, that is exact; when an
    // operator reorders equal values, which of them gets which line cannot be told apart anyway.
    const waiting = flow.scalars;
    const end = Math.min(waiting.length, 64);
    for (let i = 0; i < end; i++) {
      const entry = waiting[i] as { value: unknown; position: Position };
      if (Object.is(entry.value, record)) {
        waiting.splice(i, 1);
        return entry.position;
      }
    }
    return undefined;
  }
  const known = positionOf(record) ?? adopted.get(flow)?.get(record);
  if (known) return known;
  // Records from the run's own sources came before: this one lost its position on the way.
  if (flow.stats.in > (flow.unnamed?.lastLine ?? 0)) warnPositionLost(flow);
  flow.unnamed ??= new Input(flow, "unnamed");
  const position = flow.unnamed.at(flow.unnamed.lastLine + 1);
  // The app's own object is not changed: its position is kept beside it, for this run only.
  let map = adopted.get(flow);
  if (!map) adopted.set(flow, (map = new WeakMap()));
  map.set(record, position);
  return position;
}

// Keyed by the flow object: nothing here outlives or crosses a run.
const adopted = new WeakMap<Flow, WeakMap<object, Position>>();
const warnedPositionLost = new WeakSet<Flow>();

/**
 * Warns once per run (a process warning, code `SLUICE_POSITION_LOST`) that an object without a
 * position reached a sluice operator in a run whose sources stamp one: almost always a function
 * that rebuilt the record field by field. It is still accounted for, under `unnamed`.
 */
function warnPositionLost(flow: Flow): void {
  if (warnedPositionLost.has(flow)) return;
  warnedPositionLost.add(flow);
  process.emitWarning(
    `run ${flow.runId}: a record reached a sluice operator without its position: an operator before it built a new object instead of passing the record on (such as map((r) => ({ id: r.id }))). It is counted again as read, from input "unnamed", and its dead letter or commit range names that instead of its input line. Spread the record ({ ...r, x }), use enrich(), or wrap the function in carry() (see docs/operators.md).`,
    { code: "SLUICE_POSITION_LOST" },
  );
}

/**
 * Waits for the flow's `settling` work (files being written, acknowledgements, a dead-letter
 * folder closing), work added while it waits included, leaving out what `skip` names. Each piece
 * is waited for once: a failed one may stay in the set for `run()` to report, and waiting on it
 * again would spin without ever yielding to the event loop. With `until` (a `performance.now()`
 * time), stops waiting then. Resolves with the first failure met, or undefined.
 */
export async function settleFlow(
  flow: Flow,
  options: { readonly skip?: (work: Promise<unknown>) => boolean; readonly until?: () => number } = {},
): Promise<{ readonly error: unknown } | undefined> {
  const { skip, until } = options;
  // Often called from a completion or a teardown: the other pieces' teardowns run right after it.
  await undefined;
  const waited = new Set<Promise<unknown>>();
  let failure: { readonly error: unknown } | undefined;
  for (;;) {
    const fresh = [...flow.settling].filter((work) => !waited.has(work) && !skip?.(work));
    const left = until === undefined ? Number.POSITIVE_INFINITY : until() - performance.now();
    if (fresh.length === 0 || left <= 0) return failure;
    const all = Promise.allSettled(fresh).then((outcomes) => {
      for (const outcome of outcomes) if (outcome.status === "rejected") failure ??= { error: outcome.reason };
      return true;
    });
    const done = until === undefined ? await all : await Promise.race([all, Bun.sleep(Math.min(left, 250)).then(() => false)]);
    if (done) for (const work of fresh) waited.add(work);
  }
}

/** Asks the sources of a flow to stop reading; what is buffered is still committed. */
export function stopFlow(flow: Flow): void {
  if (flow.stopping) return;
  flow.stopping = true;
  for (const wake of flow.onStop) wake();
}

/**
 * Closes the gate until the returned function is called: while any hold is open, sources wait.
 * The sink holds while its buffers and in-flight writes are over the memory budget.
 */
export function holdGate(flow: Flow): () => void {
  const holds = gateHolds.get(flow) ?? { count: 0, release: () => {} };
  if (holds.count === 0) {
    flow.gate = new Promise<void>((resolve) => {
      holds.release = resolve;
    });
  }
  holds.count++;
  gateHolds.set(flow, holds);
  let released = false;
  return function release() {
    if (released) return;
    released = true;
    if (--holds.count === 0) {
      flow.gate = undefined;
      holds.release();
    }
  };
}

// Per flow, keyed by the flow object itself: nothing here outlives or crosses a run.
const gateHolds = new WeakMap<Flow, { count: number; release: () => void }>();

/** Waits while the gate is held. Sources call it between chunks. */
export async function waitForGate(flow: Flow): Promise<void> {
  while (flow.gate) await flow.gate;
}

/** Finds the dead-letter target of one operator. See {@link deadLetterRoute}. */
export type DeadLetterRoute = () => DeadLetterHandler | undefined;

/**
 * The dead-letter target for the operator subscribing now with `subscriber`: the nearest
 * `deadLetter` below it in the pipeline, or, when there is none (a sink at the end), the nearest
 * one above it. Call it in the subscribe function. The one below is found by following the
 * subscribers down (see {@link currentFlow}), so an operator subscribed late (inside a
 * `concatMap`, after the pieces above it installed theirs) finds it too; without a subscriber,
 * by the order of subscription, which runs from the bottom of a pipeline up, so the targets
 * installed so far are exactly those below.
 */
export function deadLetterRoute(flow: Flow, subscriber?: object): DeadLetterRoute {
  const nearest = subscriber && deadLetterBelow(subscriber);
  if (nearest) return () => nearest;
  const below = flow.deadLetterHandlers.length;
  return () => flow.deadLetterHandlers[below - 1] ?? flow.deadLetterHandlers[below] ?? flow.deadLetterHandler;
}

/**
 * Installs a `deadLetter` operator's target; pieces that subscribe after it (above it) use it, and
 * so do pieces whose subscribers lead down to `subscriber`, the one its records go on to.
 */
export function installDeadLetter(flow: Flow, handler: DeadLetterHandler, subscriber?: object): void {
  flow.deadLetterHandlers.push(handler);
  flow.deadLetterHandler = handler;
  if (subscriber) deadLetterMarks.set(subscriber, handler);
}

// The subscriber each `deadLetter` passes its records on to, with that operator's target.
const deadLetterMarks = new WeakMap<object, DeadLetterHandler>();

/**
 * The target of the nearest `deadLetter` below `subscriber`, following the subscribers down, or
 * undefined. A source sets it on its inputs (`Input.deadLetterTarget`), so its parse errors go to
 * its own branch's folder: in `merge(a.pipe(deadLetter(x)), b.pipe(deadLetter(y)))`, or below a
 * `mergeMap` that subscribes it under a `deadLetter` of the records that named it.
 */
export function deadLetterBelow(subscriber: object): DeadLetterHandler | undefined {
  return markBelow(deadLetterMarks, subscriber);
}

/** What a dead letter may add beyond stage, error and position. */
export type DeadLetterDetails = Pick<DeadLetter, "issues" | "rawBase64">;

/**
 * Sends a record to the dead letter, named by `position` (through `route` when the caller is an
 * operator between `deadLetter`s, see {@link deadLetterRoute}). `record` is the value as it is
 * now (kept as JSON when the position has no raw text); undefined for input that never became a
 * value. Fails loudly when the pipeline has no dead-letter target: a bad record must never vanish.
 * A raw text or `rawBase64` longer than {@link DEAD_LETTER_RAW_BYTES} is cut to that many bytes,
 * and the error says so and how long it was.
 */
export function sendToDeadLetter(
  flow: Flow,
  stage: string,
  error: string,
  record: unknown,
  position: Position | undefined,
  details: DeadLetterDetails = {},
  route?: DeadLetterRoute,
): void {
  // A source's input knows the target below it; otherwise sources subscribe last, so the target
  // installed last is the one nearest below them.
  const handler = route ? route() : (position?.input.deadLetterTarget ?? flow.deadLetterHandler);
  const source = position?.input.name ?? "";
  const line = position?.line ?? 0;
  if (!handler) {
    throw new Error(
      `a record from ${source || "the source"}${line ? ` line ${line}` : ""} failed at stage "${stage}" (${error}) but this pipeline has no dead-letter target: add deadLetter(folder) after the operators that reject records`,
    );
  }
  position?.input.settle(line);
  countOutput(position);
  const checkpoint = flow.checkpoint;
  if (checkpoint && position && checkpoint.alreadyDeadLettered(source, line)) {
    flow.stats.skipped++;
    return;
  }
  // Delivered again (a broker message, a distributed split): its dead letter may be committed already.
  if (position?.redelivered !== undefined && flow.deadLettered?.(source, line, position.redelivered)) {
    flow.stats.skipped++;
    return;
  }
  flow.stats.deadLettered[stage] = (flow.stats.deadLettered[stage] ?? 0) + 1;
  handler({
    stage,
    source,
    line,
    ...(position?.offset !== undefined ? { offset: position.offset } : {}),
    ...keptRaw(position?.raw ?? recordText(record), error, details),
    at: new Date().toISOString(),
    runId: flow.runId,
    ...(flow.distribution ? { job: flow.distribution.job } : {}),
  });
}

/**
 * Bytes of a record's raw text (and, apart, of its exact bytes in `rawBase64`) a dead letter keeps.
 * A line up to the sources' line limit (128 MiB) is read whole, but kept whole in a dead letter it
 * costs several times its size while the entry is serialised (a line of NUL bytes becomes six
 * times longer as JSON), and the full record is still in the input, at the source and line named.
 */
export const DEAD_LETTER_RAW_BYTES = 64 * 1024;

const utf8 = new TextEncoder();

/**
 * `raw` and `rawBase64` cut to their first {@link DEAD_LETTER_RAW_BYTES} bytes (at a character
 * boundary, ending with `…`), with a note of how long they were appended to `error`.
 */
function keptRaw(raw: string, error: string, details: DeadLetterDetails): DeadLetterDetails & { raw: string; error: string } {
  const notes: string[] = [];
  // A UTF-16 unit is at most 3 UTF-8 bytes: only long texts need their bytes counted.
  if (raw.length * 3 > DEAD_LETTER_RAW_BYTES) {
    const bytes = Buffer.byteLength(raw);
    if (bytes > DEAD_LETTER_RAW_BYTES) {
      // encodeInto writes whole characters only, so the cut never splits one.
      const { read } = utf8.encodeInto(raw, new Uint8Array(DEAD_LETTER_RAW_BYTES));
      raw = `${raw.slice(0, read)}…`;
      notes.push(`raw cut to its first ${DEAD_LETTER_RAW_BYTES} of ${bytes} bytes`);
    }
  }
  let rawBase64 = details.rawBase64;
  // Four base64 characters carry three bytes.
  if (rawBase64 !== undefined && rawBase64.length > Math.ceil(DEAD_LETTER_RAW_BYTES / 3) * 4) {
    const padding = rawBase64.endsWith("==") ? 2 : rawBase64.endsWith("=") ? 1 : 0;
    const bytes = (rawBase64.length / 4) * 3 - padding;
    rawBase64 = Buffer.from(rawBase64.slice(0, Math.ceil(DEAD_LETTER_RAW_BYTES / 3) * 4), "base64")
      .subarray(0, DEAD_LETTER_RAW_BYTES)
      .toString("base64");
    notes.push(`rawBase64 cut to its first ${DEAD_LETTER_RAW_BYTES} of ${bytes} bytes`);
  }
  return {
    raw,
    error: notes.length > 0 ? `${error} (${notes.join("; ")})` : error,
    ...details,
    ...(rawBase64 !== undefined ? { rawBase64 } : {}),
  };
}

/**
 * A record as JSON for a dead letter. Never throws: a record too deep to serialise (JSON.stringify
 * overflows the stack) or holding a cycle is described instead, so one bad record cannot fail a run.
 */
export function recordText(value: unknown): string {
  if (value === undefined) return "";
  try {
    return JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? v.toString() : v)) ?? describe(value);
  } catch (error) {
    return `[record could not be written as JSON: ${error instanceof Error ? error.message : "unknown error"}]`;
  }
}

function describe(value: unknown): string {
  try {
    return String(value);
  } catch {
    return `[${typeof value}]`;
  }
}
