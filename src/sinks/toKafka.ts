/**
 * `toKafka`: publishes records to a Kafka topic, a batch at a time, and counts them as written
 * once every in-sync replica has them (acks = all).
 *
 * A published record is durable once the broker acknowledged it. Until then the record is held:
 * this sink registers a holder (see `src/flow/durable.ts`), so an upstream broker source does not
 * commit or acknowledge it and a checkpoint does not move past it, and it announces after every
 * acknowledged batch, as the Parquet sink does after a file commits.
 *
 * RxJS has no backpressure, so the sink bounds itself: while `maxInFlight` records (or
 * `maxInFlightBytes` of payload) are queued or waiting for their acknowledgement it holds the
 * flow's gate, and sluice sources stop reading until acknowledgements free room.
 */
import type { Producer } from "@platformatic/kafka";
import { Observable, type OperatorFunction } from "rxjs";
import { announceDurable, hold } from "../flow/durable.ts";
import { currentFlow, deadLetterRoute, holdGate, joinFlow, positionIn, sendToDeadLetter, withFlow } from "../flow/flow.ts";
import { countOutput, type Position } from "../flow/position.ts";
import { type KafkaConnectionOptions, kafkaConnection, kafkaReason } from "../sources/kafka.ts";
import { backoffMs, gaveUp, type RetryOptions, retrySettings } from "./publish.ts";

/** Options of {@link toKafka}. */
export interface ToKafkaOptions<T> extends KafkaConnectionOptions {
  /** The topic (it must exist, unless the cluster creates topics on first use). */
  readonly topic: string;
  /**
   * The message key: the name of a record field (its value as text; null or missing: no key), or a
   * function. Kafka's default partitioner sends equal keys to one partition; no key spreads them.
   */
  readonly key?: string | ((record: T) => string | Uint8Array | null | undefined);
  /** Turns a record into the message's value (default: JSON; a bigint is written as its digits). A throw dead-letters the record at stage `write`. */
  readonly encode?: (record: T) => string | Uint8Array;
  /** Records sent in one produce request, acknowledged together (default 500). */
  readonly batchSize?: number;
  /** Records queued or sent and not yet acknowledged (default 5,000); above it the flow's gate is held. */
  readonly maxInFlight?: number;
  /** Value bytes queued or sent and not yet acknowledged (default 16 MiB); above it the flow's gate is held. */
  readonly maxInFlightBytes?: number;
  /**
   * The largest value (with its key) sent (default 1,000,000 bytes, the broker's default
   * `message.max.bytes`); a larger record is dead-lettered at stage `write` instead of failing its batch.
   */
  readonly maxMessageBytes?: number;
  /** Compression of each batch (default `"none"`). */
  readonly compression?: "none" | "gzip" | "snappy" | "lz4" | "zstd";
  /**
   * How a batch the cluster did not acknowledge (a broker restart, a lost connection, a timeout,
   * after the client's own 3 quick tries) is sent again: as the other broker sinks' `retry`
   * (default: an outage of up to 60 s, backoff from 100 ms to 5 s); `false`: the run errors at
   * once. A batch stored whose answer was lost is stored twice: at least once (no idempotent
   * producer, see docs/brokers.md). Refused credentials or a record too large are not retried.
   */
  readonly retry?: RetryOptions | false;
}

/** One acknowledged batch, as {@link toKafka} emits it. */
export interface KafkaPublished {
  /** `kafka:<topic>`. */
  readonly target: string;
  readonly topic: string;
  /** Records in the batch. */
  readonly messages: number;
  /** Value and key bytes in the batch. */
  readonly bytes: number;
  /** The offset the broker gave the batch's first message, per partition written. */
  readonly offsets: readonly { readonly partition: number; readonly offset: number }[];
  /** The lowest and highest line of each input the batch holds. */
  readonly sources: readonly { readonly source: string; readonly firstLine: number; readonly lastLine: number }[];
}

interface Outgoing {
  readonly key: Buffer | undefined;
  readonly value: Buffer;
  readonly source: string;
  readonly line: number;
  /** The record's position, if it has one: its output is counted once acknowledged. */
  readonly position: Position | undefined;
}

/** Records sent (or to be sent) together, with the lowest and highest line of each input among them. */
class Batch {
  readonly messages: Outgoing[] = [];
  bytes = 0;
  readonly lines = new Map<string, { firstLine: number; lastLine: number }>();

  add(message: Outgoing): void {
    this.messages.push(message);
    this.bytes += message.value.length + (message.key?.length ?? 0);
    if (message.line <= 0) return;
    const seen = this.lines.get(message.source);
    if (!seen) this.lines.set(message.source, { firstLine: message.line, lastLine: message.line });
    else {
      if (message.line < seen.firstLine) seen.firstLine = message.line;
      if (message.line > seen.lastLine) seen.lastLine = message.line;
    }
  }
}

/**
 * Publishes each record to `topic` as one Kafka message (JSON by default, keyed by `key`), in
 * batches of `batchSize` sent as soon as they fill or the upstream pauses, each waiting for
 * acknowledgement by all in-sync replicas. Emits one {@link KafkaPublished} per acknowledged batch.
 *
 * Backpressured: while `maxInFlight` records or `maxInFlightBytes` are unacknowledged it holds the
 * flow's gate, so sluice sources stop reading. A record that cannot be encoded, or whose message is
 * over `maxMessageBytes`, goes to the dead letter at stage `write` and the stream goes on.
 *
 * Completes once every batch is acknowledged and the producer is closed. Errors, naming the topic
 * and the brokers (never credentials), when the cluster cannot be reached or refuses a batch: the
 * records of unacknowledged batches are never announced durable, so an upstream broker source
 * reads them again. Unsubscribing closes the producer; batches in flight may or may not land.
 *
 * @example
 * await run(
 *   fromNdjson("events/*.ndjson").pipe(
 *     validate(Event),
 *     deadLetter("out/dead-letter"),
 *     toKafka({ topic: "events", key: "user_id" }),
 *   ),
 * );
 */
export function toKafka<T>(options: ToKafkaOptions<T>): OperatorFunction<T, KafkaPublished> {
  const { topic } = options;
  if (!topic) throw new Error("toKafka: options.topic is required");
  const connection = kafkaConnection("toKafka", options);
  const batchSize = Math.max(1, Math.floor(options.batchSize ?? 500));
  const maxInFlight = Math.max(batchSize, Math.floor(options.maxInFlight ?? 5000));
  const maxInFlightBytes = Math.max(1024, Math.floor(options.maxInFlightBytes ?? 16 * 1024 * 1024));
  const maxMessageBytes = Math.max(1, Math.floor(options.maxMessageBytes ?? 1_000_000));
  // A batch is sent before it passes a quarter of the byte bound, so several can be in flight.
  const batchBytes = Math.max(1, Math.floor(maxInFlightBytes / 4));
  const where = `${connection.where}, topic "${topic}"`;
  const keyOf = keyFunction(options.key);
  const encode = options.encode ?? encodeJson;
  const retry = retrySettings(options.retry);

  return function toKafkaOperator(source) {
    return new Observable<KafkaPublished>((subscriber) => {
      const flow = currentFlow(subscriber);
      const route = deadLetterRoute(flow, subscriber);
      // The client is loaded on first use: importing it costs about 60 MB of memory that a
      // process that never publishes to Kafka should not pay.
      const producer: Promise<Producer> = import("@platformatic/kafka").then(
        ({ Producer }) =>
          new Producer({
            ...connection.client,
            acks: -1,
            ...(options.compression ? { compression: options.compression } : {}),
          }),
      );
      const closeProducer = (force?: boolean) => producer.then((p) => p.close(force));
      let current = new Batch();
      const inflight = new Set<Batch>();
      let unacknowledged = 0;
      let unacknowledgedBytes = 0;
      let release: (() => void) | undefined;
      let scheduled: ReturnType<typeof setImmediate> | undefined;
      let upstreamDone = false;
      /** Failed sends with no acknowledgement since: since when, and how many. */
      let outage: { since: number; attempts: number } | undefined;
      let failed = false;
      let closed = false;
      // Records queued or in flight are not durable: sources must not acknowledge past them.
      const stopHolding = hold(flow, (note) => {
        for (const batch of [current, ...inflight]) for (const [input, lines] of batch.lines) note(input, lines.firstLine);
      });

      function fail(error: Error) {
        if (failed || closed) return;
        failed = true;
        if (scheduled) clearImmediate(scheduled);
        releaseGate();
        closeProducer(true).catch(() => {});
        subscriber.error(error);
      }

      function releaseGate() {
        if (release) {
          release();
          release = undefined;
        }
      }

      function updateGate() {
        const over = unacknowledged >= maxInFlight || unacknowledgedBytes >= maxInFlightBytes;
        if (over && !release) release = holdGate(flow);
        else if (!over) releaseGate();
      }

      function accept(record: T) {
        const position = positionIn(flow, record);
        const reject = (why: string) => {
          try {
            sendToDeadLetter(flow, "write", why, record, position, {}, route);
          } catch (error) {
            fail(error as Error);
          }
        };
        let value: Buffer;
        let key: Buffer | undefined;
        try {
          const encoded = encode(record);
          value = typeof encoded === "string" ? Buffer.from(encoded) : Buffer.from(encoded.buffer, encoded.byteOffset, encoded.byteLength);
          const k = keyOf(record);
          key = k === undefined || k === null ? undefined : typeof k === "string" ? Buffer.from(k) : Buffer.from(k.buffer, k.byteOffset, k.byteLength);
        } catch (error) {
          reject(`cannot be published to ${where}: ${error instanceof Error ? error.message : String(error)}`);
          return;
        }
        const size = value.length + (key?.length ?? 0);
        if (size > maxMessageBytes) {
          reject(`the message is ${size} bytes, over maxMessageBytes (${maxMessageBytes}) for ${where}`);
          return;
        }
        current.add({ key, value, source: position?.input.name ?? "", line: position?.line ?? 0, position });
        // The record has left the pipeline: from here the holder keeps it from being taken as durable.
        position?.input.settle(position.line);
        unacknowledged++;
        unacknowledgedBytes += size;
        flow.stats.buffered++;
        if (current.messages.length >= batchSize || current.bytes >= batchBytes) send();
        else if (!scheduled) scheduled = setImmediate(send);
        updateGate();
      }

      function send() {
        if (scheduled) {
          clearImmediate(scheduled);
          scheduled = undefined;
        }
        const batch = current;
        if (batch.messages.length === 0 || failed) return;
        current = new Batch();
        inflight.add(batch);
        transmit(batch);
      }

      /** Sends a batch; one the cluster did not acknowledge goes again after a wait, as `retry` allows. */
      function transmit(batch: Batch) {
        const sent = producer
          .then((p) => p.send({ messages: batch.messages.map((m) => ({ topic, value: m.value, ...(m.key ? { key: m.key } : {}) })), acks: -1 }))
          .then(
            (result) => {
              outage = undefined;
              acknowledged(batch, result.offsets ?? []);
            },
            (error: unknown) => {
              if (failed || closed) return;
              const reason = kafkaReason(error, connection.secrets);
              const message = `toKafka: publishing ${batch.messages.length} records failed (${where}): ${reason}`;
              if (!retry || refused(reason)) return fail(new Error(message));
              const now = performance.now();
              outage ??= { since: now, attempts: 0 };
              outage.attempts++;
              const elapsed = now - outage.since;
              if (outage.attempts > retry.maxAttempts || elapsed >= retry.timeoutMs) return fail(new Error(`${message} ${gaveUp(retry, outage.attempts, elapsed)}`));
              // The client connects again on its own; the batch stays held (in flight) meanwhile.
              const again = Bun.sleep(backoffMs(retry, outage.attempts, elapsed)).then(() => {
                if (!failed && !closed) transmit(batch);
              });
              flow.settling.add(again);
              again.finally(() => flow.settling.delete(again));
            },
          );
        flow.settling.add(sent);
        sent.finally(() => flow.settling.delete(sent));
      }

      function acknowledged(batch: Batch, offsets: readonly { topic: string; partition: number; offset: bigint }[]) {
        if (failed) return;
        inflight.delete(batch);
        const count = batch.messages.length;
        unacknowledged -= count;
        unacknowledgedBytes -= batch.bytes;
        flow.stats.buffered -= count;
        flow.stats.written += count;
        for (const message of batch.messages) countOutput(message.position);
        announceDurable(flow);
        updateGate();
        subscriber.next({
          target: `kafka:${topic}`,
          topic,
          messages: count,
          bytes: batch.bytes,
          offsets: offsets.filter((o) => o.topic === topic).map((o) => ({ partition: o.partition, offset: Number(o.offset) })),
          sources: [...batch.lines].map(([source, lines]) => ({ source, ...lines })),
        });
        finishIfDone();
      }

      function finishIfDone() {
        if (!upstreamDone || failed || closed || inflight.size > 0 || current.messages.length > 0) return;
        closed = true;
        stopHolding();
        closeProducer().then(
          () => subscriber.complete(),
          () => subscriber.complete(),
        );
      }

      const upstream = withFlow(flow, () =>
        source.subscribe(joinFlow(flow, {
          next: (record) => {
            if (!failed) accept(record);
          },
          error: (error) => {
            if (failed) return;
            failed = true;
            releaseGate();
            closeProducer(true).catch(() => {});
            subscriber.error(error);
          },
          complete: () => {
            upstreamDone = true;
            send();
            finishIfDone();
          },
        })),
      );

      return function stopKafkaSink() {
        upstream.unsubscribe();
        if (scheduled) clearImmediate(scheduled);
        releaseGate();
        if (!closed) {
          closed = true;
          closeProducer(true).catch(() => {});
          // Records never acknowledged stay held: nothing upstream may take them as durable.
          if (inflight.size === 0 && current.messages.length === 0) stopHolding();
        }
      };
    });
  };
}

/** True for a reason trying again cannot change: refused credentials or permissions, a record the broker refuses. */
function refused(reason: string): boolean {
  return /authoriz|authenticat|SASL|too large|MESSAGE_TOO_LARGE|RecordTooLarge|InvalidRecord|CorruptRecord|UnsupportedVersion|InvalidTopic/i.test(reason);
}

/** A record as JSON text; a bigint as its digits. Throws for a cycle, nesting too deep, or a value without a JSON form. */
function encodeJson(record: unknown): string {
  const text = JSON.stringify(record, (_key, value) => (typeof value === "bigint" ? value.toString() : value));
  if (text === undefined) throw new Error(`a ${typeof record} has no JSON form`);
  return text;
}

function keyFunction<T>(key: ToKafkaOptions<T>["key"]): (record: T) => string | Uint8Array | null | undefined {
  if (key === undefined) return () => undefined;
  if (typeof key === "function") return key;
  return (record) => {
    const value = record !== null && typeof record === "object" ? (record as Record<string, unknown>)[key] : undefined;
    if (value === undefined || value === null) return undefined;
    if (typeof value === "string") return value;
    if (typeof value === "number" || typeof value === "bigint" || typeof value === "boolean") return String(value);
    throw new Error(`the key field "${key}" holds ${Array.isArray(value) ? "an array" : typeof value}, not a text or a number`);
  };
}
