/**
 * `fromJetStream`: messages of a NATS JetStream stream, read through a durable pull consumer and
 * acknowledged only once what they became is durable.
 *
 * The consumer's ack policy is explicit: the server keeps every message it delivered and was not
 * acknowledged as pending, and delivers it again once `ack_wait` passes without an ack. So a
 * message is acknowledged only when its row is in a committed Parquet file or its dead letter is
 * committed (`watchDurable`); until then this reader tells the server it is still working on it
 * (`msg.working()`, every `ackWait / 3`) so it is not delivered again meanwhile. A reader that
 * dies stops doing so, and its messages go to the next one after `ack_wait`.
 *
 * Acks are published without a reply (one per message, as explicit acking requires); a flush (a
 * PING the server answers after everything sent before it) is what `run()` waits for.
 */
import { AckPolicy, type Consumer, type ConsumerMessages, type JetStreamManager, type JsMsg, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Observable } from "rxjs";
import { announceDurable } from "../flow/durable.ts";
import { currentFlow, sendToDeadLetter } from "../flow/flow.ts";
import { stamp } from "../flow/position.ts";
import { setLag } from "../run/metrics.ts";
import { HeldMessages, Pace } from "./broker.ts";

/** Options of {@link fromJetStream}. */
export interface JetStreamOptions {
  /** Where NATS is (`nats://host:port`, or several, comma-separated). Default: `NATS_URL`, else `nats://127.0.0.1:4222`. */
  readonly servers?: string | readonly string[];
  /** The stream (it must exist). */
  readonly stream: string;
  /** The durable consumer's name; created (pull, explicit acks) when it does not exist, used as it is when it does. */
  readonly consumer: string;
  /** The subject filter of a consumer created here (default: every subject of the stream). */
  readonly subject?: string;
  /** Messages asked for at a time (default 500). */
  readonly batch?: number;
  /** How long one pull waits for messages (default 1000 ms, the client's minimum). A stop request cuts it short. */
  readonly expiresMs?: number;
  /**
   * The consumer's `max_ack_pending` when created here (default 10,000); reading also pauses while
   * this many messages are held. Holding messages until their file commits needs it to be at least
   * the message rate times the sink's roll interval.
   */
  readonly maxAckPending?: number;
  /** The consumer's `ack_wait` when created here (default 30,000 ms): held messages are kept alive every third of it. */
  readonly ackWaitMs?: number;
  /** Turns a message's payload into the record instead of `JSON.parse` of its text; a throw dead-letters the message. */
  readonly decode?: (data: Uint8Array) => unknown;
  /**
   * How often the consumer's lag is read (consumer info: `num_pending` + `num_ack_pending`;
   * default 2,000 ms; 0: never) for the metrics (`sluice_source_lag`) and the live progress.
   */
  readonly lagIntervalMs?: number;
}

/**
 * Reads a JetStream stream through a durable pull consumer and emits one record per message: the
 * JSON in its payload (or what `decode` makes of it). Each record's position is the input
 * `jetstream:<stream>` and its stream sequence as the line, the same for every reader; a message
 * whose payload is not JSON goes to the dead letter at stage `parse`, naming the stream and sequence.
 *
 * The consumer is created if missing (ack policy explicit, `ackWaitMs`, `maxAckPending`,
 * `subject`); an existing one is used as it is. Reading waits while the sink's memory budget is
 * spent and while `maxAckPending` messages are held.
 *
 * A message is acknowledged only once every record up to it is durable: in a committed Parquet
 * file or a committed dead letter. Messages read when the run stops, errors or crashes are not
 * acknowledged and are delivered again after `ack_wait`, to this consumer's next reader, marked
 * redelivered: those a committed file or dead letter already holds are skipped (src/sinks/ledger.ts),
 * so each is written once, also when several workers share the consumer and one dataset
 * (`shared: true` on the sink and the dead letter). Under `run()`, the run resolves after the
 * server has received the last acks.
 *
 * Never completes on its own: a stop request (an AbortSignal, SIGINT/SIGTERM under `run`) ends the
 * pull at once and completes. Errors, naming the servers without credentials and the stream, when
 * NATS cannot be reached, the stream is missing, a request fails or the connection closes.
 * Unsubscribing closes the connection.
 *
 * @example
 * const stop = new AbortController();
 * await run(
 *   fromJetStream({ stream: "EVENTS", consumer: "lake", ackWaitMs: 60_000 }).pipe(
 *     validate(Event),
 *     deadLetter("out/dead-letter"),
 *     toParquet("out/events", { schema: Event, partitionBy: ["day"], maxFileAgeMs: 10_000 }),
 *   ),
 *   { signal: stop.signal, handleSignals: true },
 * );
 */
export function fromJetStream(options: JetStreamOptions): Observable<unknown> {
  const { stream, consumer } = options;
  if (!stream || !consumer) throw new Error("fromJetStream: options.stream and options.consumer are required");
  const { NATS_URL } = process.env;
  const given = options.servers ?? NATS_URL ?? "nats://127.0.0.1:4222";
  const servers = (typeof given === "string" ? given.split(",") : [...given]).map((s) => s.trim()).filter((s) => s.length > 0);
  const batch = Math.max(1, Math.floor(options.batch ?? 500));
  const expiresMs = Math.max(1000, Math.floor(options.expiresMs ?? 1000));
  const maxAckPending = Math.max(batch, Math.floor(options.maxAckPending ?? 10_000));
  const ackWaitMs = Math.max(1, Math.floor(options.ackWaitMs ?? 30_000));
  const lagIntervalMs = Math.max(0, Math.floor(options.lagIntervalMs ?? 2000));
  const hide = servers.flatMap(secretsOf);
  const where = `NATS ${servers.map(safeUrl).join(",")}, stream "${stream}", consumer "${consumer}"`;
  const decoder = new TextDecoder();

  return new Observable<unknown>((subscriber) => {
    const flow = currentFlow();
    let nc: NatsConnection | undefined;
    let held: HeldMessages<number, JsMsg> | undefined;
    // The last first delivery positioned: the next one joins its input when the consumer's delivery sequence follows on.
    let previous: { stream: number; delivery: number } | undefined;
    let pull: ConsumerMessages | undefined;
    let finished = false;
    const stopped = () => finished || flow.stopping;
    const done = () => stopped() || subscriber.closed;
    const pacing = new Pace(flow, done, () => (held?.size ?? 0) >= maxAckPending);
    const keepAlive = setInterval(() => keepHeld(nc, held), Math.max(1, Math.floor(ackWaitMs / 3)));
    keepAlive.unref();
    // The consumer's lag, read from the server every lagIntervalMs once the consumer exists, and once more after the last acks.
    let manager: JetStreamManager | undefined;
    let lagTimer: ReturnType<typeof setInterval> | undefined;
    let lagRead: Promise<void> | undefined;
    const readLag = () => {
      const jsm = manager;
      if (!jsm || nc?.isClosed()) return Promise.resolve();
      lagRead ??= jsm.consumers
        .info(stream, consumer)
        .then(
          (info) => setLag(flow, { source: `jetstream:${stream}`, partition: "0", group: consumer }, { messages: info.num_pending + info.num_ack_pending, pending: info.num_ack_pending }),
          // Failures are left to the pulls and acks to report.
          () => {},
        )
        .finally(() => {
          lagRead = undefined;
        });
      return lagRead;
    };
    const onStop = () => {
      // Ends a pull waiting on the server now rather than after expiresMs.
      pull?.stop();
      pacing.wake();
    };
    flow.onStop.add(onStop);

    let closing: Promise<void> | undefined;
    function close() {
      if (closing) return;
      clearInterval(keepAlive);
      const lagging = lagTimer !== undefined;
      clearInterval(lagTimer);
      lagTimer = undefined;
      held?.close();
      pull?.stop();
      const connection = nc;
      // The last acks are flushed first: closing drops whatever is still unsent. The lag is read
      // once more after them, so the last figure is the one after the last acks.
      closing = (held?.sent() ?? Promise.resolve())
        .then(() => (lagging ? readLag() : undefined))
        .then(() => connection?.close())
        .catch(() => {});
      flow.settling.add(closing);
      closing.finally(() => flow.settling.delete(closing as Promise<void>));
    }

    function abort(error: Error) {
      if (finished) return;
      finished = true;
      flow.onStop.delete(onStop);
      close();
      subscriber.error(error);
    }
    // The client's own message may quote a server URL: credentials are scrubbed, and it is not kept as the cause.
    const fail = (what: string, error: unknown) =>
      abort(new Error(`fromJetStream: ${what} failed (${where}): ${scrub(error instanceof Error ? error.message : String(error), hide)}`));

    function emit(msg: JsMsg): void {
      const info = msg.info;
      const seq = info.streamSequence;
      // Delivered again while this reader holds it (its keep-alive came late): it is in flight here.
      if (info.redelivered && held?.has(seq)) {
        held.replace(seq, msg);
        return;
      }
      const data = msg.data;
      const raw = decoder.decode(data);
      flow.stats.bytesRead += data.length;
      // First deliveries go out in stream order, numbered by the consumer's delivery sequence: two
      // that follow on have no message between them that another reader could hold.
      const adjacent = !info.redelivered && previous !== undefined && info.deliverySequence === previous.delivery + 1 && seq > previous.stream;
      if (!info.redelivered) previous = { stream: seq, delivery: info.deliverySequence };
      // Delivered again only ack_wait after its holder's last working(), sent every third of it.
      const redelivered = info.redelivered ? performance.now() - ackWaitMs / 3 : undefined;
      const position = held?.at(seq, msg, { line: seq, adjacent, redelivered, raw });
      // Redelivered, and its dead letter is committed already.
      if (!position) return;
      let record: unknown;
      try {
        record = options.decode ? options.decode(data) : JSON.parse(raw);
      } catch (error) {
        const why = options.decode ? "decode threw" : "payload is not JSON";
        sendToDeadLetter(flow, "parse", `JetStream stream "${stream}", sequence ${msg.seq}: ${why}: ${(error as Error).message}`, undefined, position);
        return;
      }
      subscriber.next(stamp(record, position));
    }

    async function read(): Promise<void> {
      try {
        nc = await connect({ servers, name: `sluice ${stream}/${consumer}` });
      } catch (error) {
        return fail("connecting", error);
      }
      if (done()) {
        nc.close().catch(() => {});
        return;
      }
      const connection = nc;
      held = new HeldMessages<number, JsMsg>(flow, `jetstream:${stream}`, (messages) => {
        for (const msg of messages) msg.ack();
        // Acks carry no reply; a flush returns once the server has processed everything before it.
        return connection.flush().then(
          () => {},
          (error: unknown) => {
            abort(
              new Error(
                `fromJetStream: acknowledging ${messages.length} committed messages failed (${where}): ${scrub(error instanceof Error ? error.message : String(error), hide)}. They are delivered again and found in the committed files (see the ledger in docs/brokers.md)`,
              ),
            );
          },
        );
      }, Number.POSITIVE_INFINITY, () => {
        pacing.wake();
        if (finished && (held?.size ?? 0) === 0) close();
      });
      connection.closed().then((error) => {
        if (!finished && !closing) fail("the connection", error ?? new Error("closed by the server"));
      });
      let source: Consumer;
      try {
        const jsm = await jetstreamManager(connection);
        await jsm.streams.info(stream);
        const exists = await jsm.consumers.info(stream, consumer).then(
          () => true,
          (error: unknown) => {
            if (/consumer not found/i.test(String((error as Error).message))) return false;
            throw error;
          },
        );
        if (!exists) {
          await jsm.consumers.add(stream, {
            durable_name: consumer,
            ack_policy: AckPolicy.Explicit,
            ack_wait: ackWaitMs * 1_000_000,
            max_ack_pending: maxAckPending,
            ...(options.subject ? { filter_subject: options.subject } : {}),
          });
        }
        source = await jetstream(connection).consumers.get(stream, consumer);
        manager = jsm;
      } catch (error) {
        if (stopped()) return complete();
        return fail("setting up the consumer", error);
      }
      if (lagIntervalMs > 0 && !finished) {
        readLag();
        lagTimer = setInterval(readLag, lagIntervalMs);
        lagTimer.unref();
      }
      while (!done()) {
        if (!(await pacing.next())) break;
        const room = Math.min(batch, maxAckPending - (held?.size ?? 0));
        try {
          pull = await source.fetch({ max_messages: room, expires: expiresMs });
          for await (const msg of pull) {
            emit(msg);
            if (done()) break;
          }
          // Records skipped as committed already settle without a commit to announce them.
          announceDurable(flow);
        } catch (error) {
          if (stopped()) break;
          return fail("pulling messages", error);
        } finally {
          pull = undefined;
        }
      }
      complete();
    }

    function complete() {
      if (finished) return;
      finished = true;
      flow.onStop.delete(onStop);
      subscriber.complete();
      // What was emitted commits after this (the sink flushes on completion); acks close the rest.
      if ((held?.size ?? 0) === 0) close();
    }

    read().catch((error) => fail("reading", error));

    return function stopJetStream() {
      flow.onStop.delete(onStop);
      pacing.wake();
      if (!finished) {
        // Unsubscribed before completing (the pipeline errored, the app let go): messages in
        // flight are not acknowledged and are delivered again after ack_wait.
        finished = true;
        close();
      }
    };
  });
}

/** Tells the server every held message is still being worked on, so it is not delivered again. */
function keepHeld(connection: NatsConnection | undefined, held: HeldMessages<number, JsMsg> | undefined): void {
  if (!connection || !held || connection.isClosed()) return;
  for (const msg of held.values()) msg.working();
}

/** A server URL as it may be shown: without user or password. */
function safeUrl(server: string): string {
  try {
    const parsed = new URL(server.includes("://") ? server : `nats://${server}`);
    if (parsed.username) parsed.username = "***";
    if (parsed.password) parsed.password = "***";
    return parsed.toString().replace(/\/$/, "");
  } catch {
    return "(an unparsable URL)";
  }
}

/** The credentials in a server URL, as written and decoded, to remove from any message a client produces. */
function secretsOf(server: string): string[] {
  try {
    const { username, password } = new URL(server.includes("://") ? server : `nats://${server}`);
    const found = [username, password].filter((s) => s.length > 0).flatMap((s) => [s, decodeURIComponent(s)]);
    return [...new Set(found)].sort((a, b) => b.length - a.length);
  } catch {
    return [];
  }
}

function scrub(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const secret of secrets) out = out.replaceAll(secret, "***");
  return out;
}
