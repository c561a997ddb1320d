/**
 * `fromGenerator`: synthetic events at target rates, for demos and load tests.
 *
 * Every producer has a fixed schedule: its event k (from 0) is due `k * perMs / events`
 * milliseconds after the start. All producers' schedules merged in time order (ties go to the
 * producer listed first) make one sequence that depends only on the producers and the seed.
 * Time (real, or an RxJS scheduler's virtual time) only decides when each event is released, so
 * the same seed gives the same events in the same order with the same timestamps, however fast
 * the sink writes.
 */
import { asyncScheduler, Observable, type SchedulerLike, type Subscription } from "rxjs";
import { generateClickstream } from "../generate/clickstream.ts";
import { type Random, seededRandom } from "../generate/random.ts";
import { currentFlow } from "../flow/flow.ts";
import { Input, stamp } from "../flow/position.ts";

/** How often a producer emits: `events` every `perMs` milliseconds (`{ events: 500, perMs: 1000 }` is 500/s). */
export interface Rate {
  readonly events: number;
  readonly perMs: number;
}

/** One stream of synthetic events. */
export interface Producer<T> {
  /** The source name on dead letters and commits; unique within a generator. */
  readonly name: string;
  readonly rate: Rate;
  /**
   * Makes event `index` (counting from 0; its position is `index + 1`). `random` is this
   * producer's own seeded source, so other producers do not change its values. `time` is the
   * event's scheduled time in epoch milliseconds (may have a fraction).
   */
  readonly make: (random: Random, index: number, time: number) => T;
}

/** Options of {@link fromGenerator}. */
export interface GeneratorOptions<T> {
  readonly producers: readonly Producer<T>[];
  /** Seeds every producer's random source (default 42). */
  readonly seed?: number;
  /** Complete after this many events in all (default: no limit). */
  readonly count?: number;
  /** Complete once this much schedule time has passed: the events due before it are emitted (default: no limit). */
  readonly durationMs?: number;
  /** Epoch milliseconds the schedule starts at, for the `time` given to `make` (default: the scheduler's `now()` at subscribe). */
  readonly startTime?: number;
  /**
   * The most schedule time a generator that fell behind (the sink held the gate, the event loop
   * was busy) releases at once when it can go on (default 1000 ms). Events further behind are
   * not dropped: the schedule resumes from there, so event times fall behind the clock by the
   * part of the delay beyond this bound.
   */
  readonly maxLagMs?: number;
  /** The shortest wait between two releases (default 10 ms): higher rates are released in batches. */
  readonly batchMs?: number;
  /** Decides when events are released (default `asyncScheduler`); a `TestScheduler` runs in virtual time. */
  readonly scheduler?: SchedulerLike;
}

/**
 * Emits synthetic events from several producers, each at its own rate, deterministically: the
 * same producers and seed give the same events, in the same order, with the same timestamps.
 *
 * Each event moves the flow's cursor to its producer (`source` = the producer's name, position =
 * its event number there, from 1). Releasing stops while the sink holds the gate and, when it
 * opens, catches up at most `maxLagMs` of schedule at once (see {@link GeneratorOptions.maxLagMs}).
 *
 * Completes after `count` events or `durationMs` of schedule time, or when the run stops
 * (SIGINT/SIGTERM under `run`); without either limit it runs until unsubscribed. Errors, naming
 * the producer and event, when a `make` throws (a bug in the maker, not bad data: to simulate bad
 * data, return a bad value). Unsubscribing cancels the pending release. Throws at once on
 * producers without a positive finite rate or with duplicate names.
 *
 * @example
 * fromGenerator({
 *   producers: [
 *     { name: "web", rate: { events: 200, perMs: 1000 }, make: (r, i, t) => ({ id: `w${i}`, at: new Date(t).toISOString(), n: r.int(10) }) },
 *     { name: "app", rate: { events: 50, perMs: 1000 }, make: (r, i, t) => ({ id: `a${i}`, at: new Date(t).toISOString(), n: r.int(10) }) },
 *   ],
 *   seed: 7,
 *   durationMs: 10_000,
 * })
 */
export function fromGenerator<T>(options: GeneratorOptions<T>): Observable<T> {
  const producers = options.producers;
  const names = new Set<string>();
  for (const producer of producers) {
    const { events, perMs } = producer.rate;
    if (!(events > 0 && perMs > 0 && Number.isFinite(events) && Number.isFinite(perMs))) {
      throw new Error(`fromGenerator: producer "${producer.name}" needs a positive, finite rate, got ${events} per ${perMs} ms`);
    }
    if (names.has(producer.name)) throw new Error(`fromGenerator: two producers are named "${producer.name}"; names must be unique`);
    names.add(producer.name);
  }
  const seed = options.seed ?? 42;
  const count = options.count ?? Number.POSITIVE_INFINITY;
  const durationMs = options.durationMs ?? Number.POSITIVE_INFINITY;
  const maxLagMs = Math.max(0, options.maxLagMs ?? 1000);
  const batchMs = Math.max(0, options.batchMs ?? 10);
  const scheduler = options.scheduler ?? asyncScheduler;

  return new Observable<T>((subscriber) => {
    const flow = currentFlow(subscriber);
    const randoms = producers.map((p) => seededRandom(producerSeed(seed, p.name)));
    const inputs = producers.map((p) => new Input(flow, p.name));
    const intervals = producers.map((p) => p.rate.perMs / p.rate.events);
    const next = producers.map(() => 0);
    const started = scheduler.now();
    const startTime = options.startTime ?? started;
    // Schedule time given up after falling behind by more than maxLagMs.
    let forgiven = 0;
    let emitted = 0;
    let action: Subscription | undefined;
    let finished = false;

    // The producer whose next event is due first (ties: the one listed first), and when.
    function earliest(): { index: number; due: number } {
      let index = -1;
      let due = Number.POSITIVE_INFINITY;
      for (let p = 0; p < producers.length; p++) {
        const at = (next[p] as number) * (intervals[p] as number);
        if (at < due) {
          due = at;
          index = p;
        }
      }
      return { index, due };
    }

    function finish() {
      if (finished) return;
      finished = true;
      flow.onStop.delete(onStop);
      action?.unsubscribe();
      subscriber.complete();
    }

    function release() {
      action = undefined;
      if (finished || subscriber.closed) return;
      if (flow.stopping) return finish();
      if (flow.gate) {
        // The sink is over its budget: release nothing until it has committed.
        flow.gate.then(() => wake(0));
        return;
      }
      let clock = scheduler.now() - started - forgiven;
      const behind = clock - earliest().due;
      if (behind > maxLagMs) {
        forgiven += behind - maxLagMs;
        clock -= behind - maxLagMs;
      }
      for (;;) {
        if (emitted >= count) return finish();
        const { index, due } = earliest();
        if (due >= durationMs) {
          // Nothing more will be due: end when the schedule reaches the duration.
          if (clock >= durationMs || index < 0) return finish();
          return wake(durationMs - clock);
        }
        if (due > clock) return wake(Math.max(due - clock, batchMs));
        // index is in range: earliest() gives -1 only when nothing is due (due = Infinity), handled above.
        const producer = producers[index] as Producer<T>;
        const k = (next[index] as number)++;
        emitted++;
        const position = (inputs[index] as Input).at(k + 1);
        let value: T;
        try {
          value = producer.make(randoms[index] as Random, k, startTime + due);
        } catch (error) {
          finished = true;
          flow.onStop.delete(onStop);
          subscriber.error(
            new Error(`fromGenerator: producer "${producer.name}" threw making event ${k + 1}: ${(error as Error).message}`, { cause: error }),
          );
          return;
        }
        subscriber.next(stamp(value, position));
        if (finished || subscriber.closed) return;
        if (flow.stopping) return finish();
        if (flow.gate) return wake(0);
      }
    }

    function wake(delay: number) {
      if (finished || subscriber.closed) return;
      action = scheduler.schedule(release, delay);
    }

    // A stop request while waiting (a slow producer's next event may be seconds away) ends now.
    function onStop() {
      action?.unsubscribe();
      wake(0);
    }
    flow.onStop.add(onStop);
    wake(0);

    return function stopGenerator() {
      finished = true;
      flow.onStop.delete(onStop);
      action?.unsubscribe();
    };
  });
}

/** Each producer's seed mixes the generator's seed with its name, so adding a producer leaves the others' values alone. */
function producerSeed(seed: number, name: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) hash = Math.imul(hash ^ name.charCodeAt(i), 0x01000193);
  return (hash ^ Math.imul(seed | 0, 0x9e3779b1)) >>> 0;
}

/** Options of {@link clickstreamProducer}. */
export interface ClickstreamProducerOptions {
  readonly name: string;
  readonly rate: Rate;
  /** Share of events with a planted defect (default 0.02), as `generateClickstream` plants them. */
  readonly defectRate?: number;
}

/**
 * A producer of clickstream events shaped like `generateClickstream`'s lines (the schema of
 * `examples/clickstream.ts`), parsed, stamped with the event's scheduled time and given an id
 * unique across producers (`<name>-<index>`). Defects are planted at `defectRate`: wrong types,
 * missing fields, unknown event types, impossible timestamps, lower-case countries, and
 * truncated JSON, which arrives as the truncated text (a string record) for validation to reject.
 *
 * @example
 * fromGenerator({ producers: [clickstreamProducer({ name: "web", rate: { events: 1000, perMs: 1000 } })], durationMs: 5000 })
 */
export function clickstreamProducer(options: ClickstreamProducerOptions): Producer<unknown> {
  return {
    name: options.name,
    rate: options.rate,
    make(random, index, time) {
      const start = new Date(Math.floor(time)).toISOString();
      // One event from the generator, seeded from this producer's stream; days: 0 puts it at `start`.
      const line = generateClickstream({ count: 1, seed: random.int(2 ** 32), defectRate: options.defectRate, start, days: 0 }).next()
        .value as { text: string; defect: string | undefined };
      if (line.defect === "malformed_json") return line.text;
      const event = JSON.parse(line.text) as { [field: string]: unknown; event_id?: unknown };
      if ("event_id" in event) event.event_id = `${options.name}-${index}`;
      return event;
    },
  };
}
