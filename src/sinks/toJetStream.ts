/**
 * `toJetStream`: publishes records to a NATS JetStream subject and waits for each message's
 * PubAck (the stream stored it) before the record counts as durable.
 *
 * Every message carries a `Nats-Msg-Id`: the server drops a message whose id it saw within the
 * stream's duplicate window (2 minutes by default) and says so in its PubAck, so a re-run of the
 * same input inside the window does not store its messages twice.
 */
import type { NatsConnection } from "@nats-io/transport-node";
import type { OperatorFunction } from "rxjs";
import type { Position } from "../flow/position.ts";
import { NATS_CREDENTIALS, safeUrl, secretsOf } from "../io/credentials.ts";
import { loadNats } from "../io/nats.ts";
import {
  brokerError,
  type Outgoing,
  type Published,
  type Publisher,
  type PublishOptions,
  positionId,
  publishSink,
} from "./publish.ts";


/** Where {@link toJetStream} (or a dead letter's `publish`) sends messages. */
export interface JetStreamTarget {
  /** Where NATS is (`nats://host:port`, or several, comma-separated). Default: `NATS_URL`, else `nats://127.0.0.1:4222`. */
  readonly servers?: string | readonly string[];
  /** The subject messages are published to; a stream must take it (the run errors at the start otherwise). */
  readonly subject: string;
  /** How long one message waits for its PubAck before the run errors (default 30,000 ms). */
  readonly ackTimeoutMs?: number;
}

/** Options of {@link toJetStream}. */
export interface ToJetStreamOptions<T> extends JetStreamTarget, PublishOptions<T> {
  /**
   * The message's `Nats-Msg-Id`, by which the stream drops a message it already stored within its
   * duplicate window. Default: `<input>:<line>:<hash of the payload>` from the record's position
   * (none for a record without one). A function (`(e) => e.event_id`) uses a key of the record
   * instead (undefined: no id); `false` sends no ids.
   */
  readonly msgId?: false | ((record: T, position: Position | undefined) => string | undefined);
}

/** Bytes of a message's payload left for its headers (`Nats-Msg-Id`, `Nats-Expected-Stream`) under `max_payload`. */
const HEADER_ROOM = 1024;

/**
 * Publishes each record to a JetStream subject (JSON by default, or what `encode` returns) and
 * emits one {@link Published} per batch once the stream acknowledged every message of it.
 *
 * A record is durable once its message is acknowledged: until then it is held, so an upstream
 * broker source (`fromRedisStream`, `fromJetStream`) does not acknowledge it and a checkpoint does
 * not pass it. At most `maxInFlight` messages (`maxInFlightBytes`) wait for acknowledgements at a
 * time; while that many do, the sink holds the flow's gate and sources stop reading.
 *
 * A record `encode` throws on (the default refuses NaN, Infinity and integers beyond 2^53, which
 * JSON would change) or whose message is larger than the server's `max_payload` less 1 KiB is sent
 * to the dead letter at stage `write`.
 *
 * When NATS cannot be reached, the connection drops or a PubAck does not come within
 * `ackTimeoutMs`, it connects again and sends again the messages without a PubAck, in order, with
 * backoff, for as long as `retry` allows (default: an outage of up to 60 s). A message stored
 * whose PubAck was lost is dropped by the stream by its `Nats-Msg-Id`, so each record is stored
 * once as long as the outage is shorter than the stream's duplicate window (and `msgId` is not
 * `false`).
 *
 * Completes once every message is acknowledged and the connection is closed. Errors, naming the
 * servers without credentials and the subject, when no stream takes the subject, the server
 * refuses a message for good, or `retry` runs out; messages not acknowledged then are not durable
 * (their records are never acknowledged upstream). Unsubscribing drops what is queued and closes
 * the connection.
 *
 * @example
 * await run(
 *   fromNdjson("events.ndjson").pipe(
 *     validate(Event),
 *     deadLetter("out/dead-letter"),
 *     toJetStream({ subject: "events.web" }),
 *   ),
 * );
 */
export function toJetStream<T>(options: ToJetStreamOptions<T>): OperatorFunction<T, Published> {
  const problem = subjectProblem(options.subject);
  if (problem) throw new Error(`toJetStream: options.subject ${problem}`);
  const { subject } = options;
  const msgId = options.msgId;
  const idOf =
    msgId === false
      ? undefined
      : msgId
        ? (record: T, position: Position | undefined) => msgId(record, position)
        : (_record: T, position: Position | undefined, payload: string | Uint8Array) => positionId(position, payload);
  return publishSink("toJetStream", `jetstream:${subject}`, options, () => openJetStreamPublisher("toJetStream", options), idOf);
}

/**
 * Connects to NATS and finds the stream that takes `target.subject`; the {@link Publisher} sends
 * each message of a batch with its id and the expected stream, and resolves with the PubAcks.
 * Rejects, naming the servers without credentials, when NATS cannot be reached or no stream takes
 * the subject.
 */
export async function openJetStreamPublisher(who: string, target: JetStreamTarget): Promise<Publisher> {
  const problem = subjectProblem(target.subject);
  if (problem) throw new Error(`${who}: the JetStream subject ${problem}`);
  const { NATS_URL } = process.env;
  const given = target.servers ?? NATS_URL ?? "nats://127.0.0.1:4222";
  const servers = (typeof given === "string" ? given.split(",") : [...given]).map((s) => s.trim()).filter((s) => s.length > 0);
  // A NATS user name may be a token: hidden too.
  const secrets = secretsOf(servers, NATS_CREDENTIALS);
  const where = `NATS ${servers.map((s) => safeUrl(s, NATS_CREDENTIALS)).join(",")}, subject "${target.subject}"`;
  const timeout = Math.max(1, Math.floor(target.ackTimeoutMs ?? 30_000));
  const { js: client, transport } = await loadNats();
  let nc: NatsConnection;
  try {
    // No reconnecting inside the client: a dropped connection closes, and the outbox connects
    // again and sends again what was not acknowledged (its `retry`), within its own deadline.
    nc = await transport.connect({ servers, name: `sluice ${who} ${target.subject}`, reconnect: false });
  } catch (error) {
    throw brokerError(who, "connecting", where, error, secrets, !refused(error));
  }
  let stream: string;
  try {
    const jsm = await client.jetstreamManager(nc);
    stream = await jsm.streams.find(target.subject);
  } catch (error) {
    await nc.close().catch(() => {});
    const missing = /no stream matches subject/i.test(String((error as Error)?.message));
    const reason = missing ? "no JetStream stream takes this subject: add one whose subjects match it" : error;
    // JetStream answers "no responders" (503) for a while after the server starts: that passes.
    throw brokerError(who, "finding the stream", where, reason, secrets, !missing && !refused(error));
  }
  const js = client.jetstream(nc, { timeout });
  const shown = `${where} (stream "${stream}")`;
  let closing = false;
  let lost: ((error: Error) => void) | undefined;
  nc.closed().then((error) => {
    if (!closing) lost?.(brokerError(who, "the connection", shown, error ?? new Error("closed by the server"), secrets, !refused(error)));
  });
  return {
    where: shown,
    maxPayload: Math.max(0, nc.info?.max_payload ?? 1024 * 1024) - HEADER_ROOM,
    async send(batch: readonly Outgoing[]) {
      // Sent together, in order, on one connection: the stream stores them in this order.
      const answers = await Promise.allSettled(
        batch.map((m) =>
          js.publish(target.subject, m.payload, { ...(m.id !== undefined ? { msgID: m.id } : {}), expect: { streamName: stream } }),
        ),
      );
      let duplicates = 0;
      let failed: unknown;
      const unsent: Outgoing[] = [];
      answers.forEach((answer, i) => {
        if (answer.status === "fulfilled") {
          if (answer.value.duplicate) duplicates++;
          return;
        }
        failed ??= answer.reason;
        unsent.push(batch[i] as Outgoing);
      });
      // Sent again, only the messages without a PubAck; one stored whose PubAck was lost is dropped by its id.
      if (failed !== undefined) throw brokerError(who, `publishing ${batch.length} messages`, shown, failed, secrets, !refused(failed), unsent);
      return { duplicates };
    },
    async close() {
      closing = true;
      await nc.close();
    },
    onLost(listener) {
      lost = listener;
    },
  };
}

/**
 * True for an answer that trying again cannot change: the message is too large, the subject is
 * not the stream's, the credentials or permissions are refused. Anything else (a lost connection,
 * a timeout, JetStream not ready after a restart) may pass.
 */
function refused(error: unknown): boolean {
  const text = String((error as Error)?.message ?? error);
  return /maximum (payload|message)|message size exceeds|expected stream|wrong last|permissions violation|authorization|authentication|user not found/i.test(text);
}

/** Why a subject cannot be published to, or undefined: messages go to one literal subject. */
function subjectProblem(subject: unknown): string | undefined {
  if (typeof subject !== "string" || subject.length === 0) return "is required";
  const shown = JSON.stringify(subject);
  if (/\s/.test(subject)) return `${shown} holds white space`;
  const tokens = subject.split(".");
  if (tokens.some((t) => t.length === 0)) return `${shown} has an empty token (a leading, trailing or doubled ".")`;
  if (tokens.some((t) => t === "*" || t === ">")) return `${shown} holds a wildcard ("*" or ">"): publish to one literal subject`;
  return undefined;
}
