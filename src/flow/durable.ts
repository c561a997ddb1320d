/**
 * Durability: how far each input's records are safe on disk.
 *
 * A broker message may be acknowledged only once what it became is durable: its row in a committed
 * Parquet file, or its dead letter in a committed dead-letter file. Records of one input reach
 * different files at different times (a partition buffer fills slowly, another quickly), so what is
 * durable is not a prefix of what was read. What this module computes is the prefix that is: for
 * each input, the highest line `upTo` such that every record of the input up to it has left the
 * pipeline (settled: written to a buffer, dead-lettered, or skipped) *and* is not held by any stage
 * that has not committed it yet.
 *
 * Stages that hold records before committing them (the sink's buffers and files being written, a
 * dead-letter folder's entries not yet in a file) register a {@link Holder}; after each commit they
 * call {@link announceDurable}, which tells every watching source how far it may acknowledge. The
 * checkpoint uses the same holders for its resume points.
 */
import type { Flow } from "./flow.ts";
import type { Input } from "./position.ts";

/** Reports, through `note`, the lowest line of each input a stage holds uncommitted. */
export type Holder = (note: (source: string, line: number) => void) => void;

/** The lowest line each input has held uncommitted, by input name, over every holder of the run. */
export function heldLines(flow: Flow): Map<string, number> {
  const lowest = new Map<string, number>();
  const note = (source: string, line: number) => {
    const seen = lowest.get(source);
    if (seen === undefined || line < seen) lowest.set(source, line);
  };
  for (const holder of flow.holders) holder(note);
  return lowest;
}

/** Registers a stage that holds records before committing them; returns the remover. */
export function hold(flow: Flow, holder: Holder): () => void {
  flow.holders.add(holder);
  return () => {
    flow.holders.delete(holder);
  };
}

/**
 * Calls `listener(upTo)` each time more of `input` becomes durable: every record of it with a line
 * up to `upTo` is in a committed file or a committed dead letter (or was skipped as durable from an
 * earlier run). `upTo` only grows. Returns the remover. A source keeps watching after it completes:
 * what it emitted is committed after that (the sink flushes its buffers on completion), and those
 * commits are what it must acknowledge.
 *
 * @example
 * const stop = watchDurable(input, (upTo) => broker.ackUpTo(upTo));
 */
export function watchDurable(input: Input, listener: (upTo: number) => void): () => void {
  const watch = { listener, upTo: 0 };
  input.flow.watched.set(input, watch);
  return () => {
    if (input.flow.watched.get(input) === watch) input.flow.watched.delete(input);
  };
}

/** The highest line of `input` that is durable now (0 when none is). */
export function durableUpTo(input: Input, held: ReadonlyMap<string, number> = heldLines(input.flow)): number {
  const inFlight = input.lowestUnsettled();
  const holding = held.get(input.name);
  const lowest = Math.min(inFlight ?? Number.POSITIVE_INFINITY, holding ?? Number.POSITIVE_INFINITY);
  return lowest === Number.POSITIVE_INFINITY ? input.lastLine : lowest - 1;
}

/** Tells every watching source how far its input is durable now. Stages call it after each commit. */
export function announceDurable(flow: Flow): void {
  if (flow.watched.size === 0) return;
  const held = heldLines(flow);
  for (const [input, watch] of flow.watched) {
    const upTo = durableUpTo(input, held);
    if (upTo > watch.upTo) {
      watch.upTo = upTo;
      watch.listener(upTo);
    }
  }
}

/**
 * Throws when a broker source of the run may have lost hold of messages it has not acknowledged:
 * its keep-alives have not reached the broker for so long that the broker may give them to
 * another reader, which writes them too. A stage calls it synchronously right before a commit
 * takes effect (the link that gives a file its final name), so no file lands once the lease is
 * lost; the error says which source lost what.
 *
 * @example
 * checkLeases(flow);
 * publishFile(tempPath, path);
 */
export function checkLeases(flow: Flow): void {
  for (const check of flow.leases) check();
}
