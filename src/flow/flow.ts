/**
 * The state one pipeline run shares between its source, its operators and its sink.
 *
 * RxJS passes values downstream and nothing else, but a data pipeline needs three things to
 * travel beside the values:
 * - where the record being processed came from (file and line), so a dead letter can name it
 *   and a commit can say which input is durable. Sources set the cursor just before they emit,
 *   and everything downstream runs synchronously inside that `next` call, so operators read it
 *   without a wrapper object per record;
 * - a way for the sink to slow the source down (RxJS has no backpressure): the sink holds the
 *   gate while its memory budget is spent, and sources wait on it between chunks;
 * - the dead-letter target and the counters of the run summary.
 *
 * Subscription in RxJS runs synchronously from the last operator up to the source, so the flow
 * is handed along during `subscribe`: whoever subscribes first (usually `run`) opens it, and
 * every sluice operator and source picks up the open one as it subscribes.
 */
import type { Checkpoint } from "../checkpoint/checkpoint.ts";
import type { DeadLetter } from "../deadletter/entry.ts";

/** Counters that make up a run's summary. */
export interface FlowStats {
  /** Records read by sources (including lines that did not parse). */
  in: number;
  /** Rows committed to the dataset. */
  written: number;
  /** Dead letters by stage. */
  deadLettered: Record<string, number>;
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
  /** Partition buffers open in the sink (each becomes a file). */
  openPartitions: number;
  /** Time from a buffer's flush to its file being durable, as a histogram over {@link COMMIT_LATENCY_BUCKETS}. */
  commitLatency: { count: number; sumSeconds: number; buckets: number[] };
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

/** Shared state of one pipeline run. See the module comment. */
export interface Flow {
  readonly runId: string;
  // The cursor: where the record now being emitted came from.
  source: string;
  line: number;
  /** Raw text of the current record when the source has it (a line of NDJSON). */
  raw: string | undefined;
  /** Byte offset of the current record in its input, when the source knows it. */
  offset: number | undefined;
  /** Position of the current record in the run, counting from 0. */
  seq: number;
  readonly stats: FlowStats;
  /** Set when the run was asked to stop (SIGINT/SIGTERM): sources finish their chunk and complete. */
  stopping: boolean;
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
}

let open: Flow | undefined;
// Flows of runs in progress: a source subscribed late (inside mergeMap, concat) finds its run here.
const running = new Set<Flow>();

/** A fresh run id: sortable by time, unique enough to name files. */
export function newRunId(): string {
  const stamp = new Date().toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");
  return `${stamp}-${Math.random().toString(36).slice(2, 8)}`;
}

/** Creates a flow with empty counters. */
export function createFlow(runId = newRunId()): Flow {
  return {
    runId,
    source: "",
    line: 0,
    raw: undefined,
    offset: undefined,
    seq: -1,
    stats: {
      in: 0,
      written: 0,
      deadLettered: {},
      files: 0,
      bytes: 0,
      buffered: 0,
      bufferedBytes: 0,
      bytesRead: 0,
      bytesTotal: 0,
      recordsTotal: 0,
      skipped: 0,
      openPartitions: 0,
      commitLatency: { count: 0, sumSeconds: 0, buckets: COMMIT_LATENCY_BUCKETS.map(() => 0).concat(0) },
    },
    stopping: false,
    deadLetterHandler: undefined,
    deadLetterHandlers: [],
    gate: undefined,
    onStop: new Set(),
    checkpoint: undefined,
  };
}

/**
 * The flow of the pipeline being subscribed, or a new one when this is the first sluice piece
 * to subscribe (a pipeline used without `run`). A piece subscribed later, outside that
 * subscription, joins the run in progress when only one is. Call it inside the `Observable` subscribe
 * function, never at operator creation.
 */
export function currentFlow(): Flow {
  if (open) return open;
  // Subscribed outside the pipeline's own subscription (a source inside `mergeMap` or `concat`):
  // it belongs to the run in progress, when there is exactly one.
  if (running.size === 1) return running.values().next().value as Flow;
  return createFlow();
}

/** Marks a flow as the one of a run in progress until the returned function is called. */
export function enterRun(flow: Flow): () => void {
  running.add(flow);
  return () => running.delete(flow);
}

/** Runs `subscribe` with `flow` open, so the sluice pieces it subscribes share it. */
export function withFlow<T>(flow: Flow, subscribe: () => T): T {
  const previous = open;
  open = flow;
  try {
    return subscribe();
  } finally {
    open = previous;
  }
}

/**
 * Points the flow's cursor at the record a source is about to emit (or dead-letter) and counts
 * it as read. Every source calls it once per input record, just before `subscriber.next`.
 * `raw` is the record's text when the source has it (kept for a dead letter); `offset` its byte
 * offset in the input when known.
 */
export function enterRecord(flow: Flow, source: string, line: number, raw: string | undefined, offset?: number): void {
  flow.source = source;
  flow.line = line;
  flow.raw = raw;
  flow.offset = offset;
  flow.seq++;
  flow.stats.in++;
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

const gateHolds = new WeakMap<Flow, { count: number; release: () => void }>();

/** Waits while the gate is held. Sources call it between chunks. */
export async function waitForGate(flow: Flow): Promise<void> {
  while (flow.gate) await flow.gate;
}

/** Finds the dead-letter target of one operator. See {@link deadLetterRoute}. */
export type DeadLetterRoute = () => DeadLetterHandler | undefined;

/**
 * The dead-letter target for the operator subscribing now: the nearest `deadLetter` below it in
 * the pipeline, or, when there is none (a sink at the end), the nearest one above it. Call it in
 * the subscribe function: subscription runs from the bottom of a pipeline up, so the targets
 * installed so far are exactly those below.
 */
export function deadLetterRoute(flow: Flow): DeadLetterRoute {
  const below = flow.deadLetterHandlers.length;
  return () => flow.deadLetterHandlers[below - 1] ?? flow.deadLetterHandlers[below] ?? flow.deadLetterHandler;
}

/** Installs a `deadLetter` operator's target; pieces that subscribe after it (above it) use it. */
export function installDeadLetter(flow: Flow, handler: DeadLetterHandler): void {
  flow.deadLetterHandlers.push(handler);
  flow.deadLetterHandler = handler;
}

/**
 * Sends the current record to the dead letter (through `route` when the caller is an operator
 * between `deadLetter`s, see {@link deadLetterRoute}). Fails loudly when the pipeline has no
 * dead-letter target: a bad record must never vanish.
 */
export function sendToDeadLetter(
  flow: Flow,
  stage: string,
  error: string,
  record: unknown,
  details: Pick<DeadLetter, "issues" | "rawBase64"> = {},
  route?: DeadLetterRoute,
): void {
  // Sources subscribe last, so the target installed last is the one nearest below them.
  const handler = route ? route() : flow.deadLetterHandler;
  if (!handler) {
    throw new Error(
      `a record from ${flow.source || "the source"}${flow.line ? ` line ${flow.line}` : ""} failed at stage "${stage}" (${error}) but this pipeline has no dead-letter target: add deadLetter(folder) after the operators that reject records`,
    );
  }
  const checkpoint = flow.checkpoint;
  if (checkpoint) {
    checkpoint.settled(flow.source, flow.line);
    if (checkpoint.alreadyDeadLettered(flow.source, flow.line)) {
      flow.stats.skipped++;
      return;
    }
  }
  flow.stats.deadLettered[stage] = (flow.stats.deadLettered[stage] ?? 0) + 1;
  handler({
    stage,
    source: flow.source,
    line: flow.line,
    ...(flow.offset !== undefined ? { offset: flow.offset } : {}),
    raw: flow.raw ?? safeJson(record),
    error,
    ...details,
    at: new Date().toISOString(),
    runId: flow.runId,
  });
}

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? v.toString() : v)) ?? String(value);
  } catch {
    return String(value);
  }
}
