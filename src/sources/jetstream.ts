/**
 * `fromJetStream`: messages of a NATS JetStream stream, read through a durable pull consumer and
 * acknowledged only once what they became is durable.
 *
 * The consumer's ack policy is explicit: the server keeps every message it delivered and was not
 * acknowledged as pending, and delivers it again once `ack_wait` passes without an ack. So a
 * message is acknowledged only when its row is in a committed Parquet file or its dead letter is
 * committed (`watchDurable`); until then this reader tells the server it is still working on it
 * (`msg.working()`, every `ackWait / 6`) so it is not delivered again meanwhile. A reader that
 * dies stops doing so, and its messages go to the next one after `ack_wait`. A reader that lives
 * but cannot reach the server for that long stops committing and fails the run (see `Lease`):
 * the server may have given its messages to another reader.
 *
 * Acks are published without a reply (one per message, as explicit acking requires); a flush (a
 * PING the server answers after everything sent before it) is what `run()` waits for.
 */
import type { Consumer, ConsumerMessages, JetStreamManager, JsMsg } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { Observable } from "rxjs";
import { announceDurable } from "../flow/durable.ts";
import { currentFlow, deadLetterBelow, sendToDeadLetter, settleFlow } from "../flow/flow.ts";
import { stamp } from "../flow/position.ts";
import { setLag } from "../run/metrics.ts";
import { NATS_CREDENTIALS, safeUrl, scrub, secretsOf } from "../io/credentials.ts";
import { loadNats, type Nats } from "../io/nats.ts";
import { HeldMessages, Lease, Pace, readLedgers } from "./broker.ts";
import { messageLoss } from "./json/numbers.ts";
import { deliveryOf, sendAcks } from "./natsAcks.ts";

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
  /**
   * Messages asked for at a time (default 5,000, at most what `maxAckPending` leaves room for).
   * Each pull is a round trip that waits for the server: on a busy machine 500 a pull held one
   * worker to about 10,000 msg/s, 5,000 to about 25,000 (docs/brokers.md).
   */
  readonly batch?: number;
  /** How long one pull waits for messages (default 1000 ms, the client's minimum). A stop request cuts it short. */
  readonly expiresMs?: number;
  /**
   * The consumer's `max_ack_pending` when created here (default 10,000); reading also pauses while
   * this many messages are held. Holding messages until their file commits needs it to be at least
   * the message rate times the sink's roll interval.
   */
  readonly maxAckPending?: number;
  /**
   * The consumer's `ack_wait` when created here (default 30,000 ms): held messages are kept alive
   * every sixth of it, and the run fails when no keep-alive reached the server for five sixths of it.
   */
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
  const batch = Math.max(1, Math.floor(options.batch ?? 5000));
  const expiresMs = Math.max(1000, Math.floor(options.expiresMs ?? 1000));
  const maxAckPending = Math.max(batch, Math.floor(options.maxAckPending ?? 10_000));
  const ackWaitMs = Math.max(1, Math.floor(options.ackWaitMs ?? 30_000));
  const lagIntervalMs = Math.max(0, Math.floor(options.lagIntervalMs ?? 2000));
  const hide = secretsOf(servers, NATS_CREDENTIALS);
  const where = `NATS ${servers.map((server) => safeUrl(server, NATS_CREDENTIALS)).join(",")}, stream "${stream}", consumer "${consumer}"`;
  const decoder = new TextDecoder();

  return new Observable<unknown>((subscriber) => {
    const flow = currentFlow(subscriber);
    let nc: NatsConnection | undefined;
    let nats: Nats;
    let held: HeldMessages<number, JsMsg> | undefined;
    // The last first delivery positioned: the next one joins its input when the consumer's delivery sequence follows on.
    let previous: { stream: number; delivery: number } | undefined;
    let pull: ConsumerMessages | undefined;
    // Until when the server may still answer the last pull request (`performance.now()`).
    let pullUntil = 0;
    let finished = false;
    const stopped = () => finished || flow.stopping;
    const done = () => stopped() || subscriber.closed;
    const pacing = new Pace(flow, done, () => (held?.size ?? 0) >= maxAckPending);
    // Held messages are lent for ack_wait (an existing consumer's own, once known), kept alive every
    // sixth of it; commits stop a sixth of it before the lease could run out (see Lease).
    const lease: Lease = new Lease(
      ackWaitMs,
      ackWaitMs / 6,
      () => held?.size ?? 0,
      (count, silentMs): Error =>
        new Error(
          `fromJetStream: lost hold of ${count} messages (${where}): no keep-alive (working()) has reached the server for ${silentMs} ms, and after ack_wait (${lease.leaseMs} ms) it may deliver them to another reader, which writes them too. This run stops without committing them; they are delivered again and written once (restart the worker). If the server was not down, the process stalled: raise ackWaitMs`,
        ),
      (error) => {
        if (!finished) abort(error);
        else close(error);
      },
    );
    // Stays registered for the run: once lost or given back, nothing more may commit.
    flow.leases.add(lease.check);
    // The lease is checked more often than it is renewed, so a lost one fails the run soon.
    let keepAlive: ReturnType<typeof setInterval> | undefined;
    let fence: ReturnType<typeof setInterval> | undefined;
    const startKeepingAlive = () => {
      keepAlive = setInterval(() => keepHeld(nc, held, lease), Math.max(1, Math.floor(lease.marginMs)));
      keepAlive.unref();
      fence = setInterval(lease.poll, Math.max(10, Math.floor(lease.marginMs / 4)));
      fence.unref();
    };
    const stopKeepingAlive = () => {
      clearInterval(keepAlive);
      clearInterval(fence);
    };
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
    /**
     * Closes the connection once the last acks are flushed. On an unclean stop (`giveBack`: the
     * run failed, or the lease was lost) the messages still held are not durable: they are given
     * back with `nak()` so the server delivers them again at once rather than after ack_wait. When
     * this source failed, the lease is revoked first, so nothing in flight commits them after the
     * nak; when the run failed downstream (`afterOthers`), what other stages have in flight
     * finishes first (kept alive meanwhile, up to the lease's deadline).
     */
    function close(giveBack?: Error, afterOthers = false) {
      if (closing) return;
      const lagging = lagTimer !== undefined;
      clearInterval(lagTimer);
      lagTimer = undefined;
      held?.close();
      pull?.stop();
      const connection = nc;
      const mine = new Set<Promise<void>>();
      const returned = giveBack && held && held.size > 0 ? returnHeld(connection, giveBack, afterOthers ? mine : undefined) : Promise.resolve();
      // The last acks are flushed first: closing drops whatever is still unsent. The lag is read
      // once more after them, so the last figure is the one after the last acks; not after a
      // failure, when the server may not answer (a request waits 5 s for nothing).
      const ended = returned
        .then(() => held?.sent())
        .then(() => (lagging && !giveBack ? readLag() : undefined))
        .then(() => connection?.close())
        .catch(() => {})
        .finally(stopKeepingAlive);
      closing = ended;
      mine.add(ended);
      flow.settling.add(ended);
      ended.finally(() => flow.settling.delete(ended));
      if (!giveBack) stopKeepingAlive();
    }

    /** Gives the held messages back (`nak`), after revoking the lease so none of them is committed later. */
    async function returnHeld(connection: NatsConnection | undefined, why: Error, waitFor: Set<Promise<void>> | undefined): Promise<void> {
      // Files being written and acknowledgements settle first, or the lease's deadline passes.
      if (waitFor) await settleFlow(flow, { skip: (work) => waitFor.has(work as Promise<void>), until: () => lease.deadline });
      const messages = [...(held?.values() ?? [])];
      if (messages.length === 0) return;
      lease.revoke(new Error(`fromJetStream: ${messages.length} messages were given back to the server (nak, ${where}) as the run did not end cleanly, so nothing holding them is committed: ${why.message}`));
      stopKeepingAlive();
      if (!connection || connection.isClosed()) return;
      // A pull request stays open on the server until it expires, even once this reader stopped
      // reading it: a message given back before then could be delivered to it again, and be lost
      // to everyone until ack_wait.
      const open = pullUntil + 100 - performance.now();
      if (open > 0) await Bun.sleep(open);
      for (const msg of messages) msg.nak();
      // While the server is unreachable the naks cannot go: the messages come back after ack_wait.
      await Promise.race([connection.flush(), Bun.sleep(2000)]);
    }

    function abort(error: Error) {
      if (finished) return;
      finished = true;
      flow.onStop.delete(onStop);
      close(error);
      subscriber.error(error);
    }
    // The client's own message may quote a server URL: credentials are scrubbed, and it is not kept as the cause.
    const fail = (what: string, error: unknown) =>
      abort(new Error(`fromJetStream: ${what} failed (${where}): ${scrub(error instanceof Error ? error.message : String(error), hide)}`));

    function emit(msg: JsMsg, readAt: number): void {
      const info = deliveryOf(msg);
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
      // Delivered again only ack_wait after its holder's last working() (a holder commits nothing
      // after its lease's deadline, a sixth of ack_wait before that: see Lease), or at once after a
      // holder nak'd it, which it does only once nothing more of it can commit there. Either way
      // every commit of it came before it arrived here: the ledgers are read as of its arrival.
      const redelivered = info.redelivered ? performance.now() : undefined;
      lease.taken(readAt);
      const position = held?.at(seq, msg, { line: seq, adjacent, redelivered, raw });
      // Redelivered, and its dead letter is committed already.
      if (!position) return;
      let record: unknown;
      try {
        record = options.decode ? options.decode(data) : JSON.parse(raw);
      } catch (error) {
        const why = options.decode ? "decode threw" : "payload is not JSON";
        sendToDeadLetter(flow, "parse", `JetStream stream "${stream}", sequence ${seq}: ${why}: ${(error as Error).message}`, undefined, position);
        return;
      }
      // A number a float cannot hold (1e400, 12345678901234567890) is refused, as the file sources do.
      const loss = options.decode ? undefined : messageLoss(raw, record);
      if (loss !== undefined) {
        sendToDeadLetter(flow, "parse", `JetStream stream "${stream}", sequence ${seq}: ${loss}`, undefined, position);
        return;
      }
      subscriber.next(stamp(record, position));
    }

    async function read(): Promise<void> {
      try {
        nats = await loadNats();
        // No reconnecting: a server that restarted may have forgotten what this reader holds and
        // handed it to another reader already, so the run ends and its messages come back.
        nc = await nats.transport.connect({ servers, name: `sluice ${stream}/${consumer}`, reconnect: false });
      } catch (error) {
        return fail("connecting", error);
      }
      // First deliveries are looked up in the ledgers as of the connection's start (see HeldMessagesOptions).
      const connectedAt = performance.now();
      if (done()) {
        nc.close().catch(() => {});
        return;
      }
      const connection = nc;
      connection.closed().then((error) => {
        if (!finished && !closing) fail("the connection", error ?? new Error("closed by the server"));
      });
      let source: Consumer;
      try {
        const jsm = await nats.js.jetstreamManager(connection);
        const made = (await jsm.streams.info(stream)).created;
        let info = await jsm.consumers.info(stream, consumer).catch((error: unknown) => {
          if (/consumer not found/i.test(String((error as Error).message))) return undefined;
          throw error;
        });
        if (info) {
          // An existing consumer keeps its own ack_wait: that is the lease held messages have.
          const wait = info.config.ack_wait;
          if (wait !== undefined && wait > 0) {
            lease.leaseMs = Math.max(1, Math.floor(wait / 1_000_000));
            lease.marginMs = lease.leaseMs / 6;
          }
        } else {
          info = await jsm.consumers.add(stream, {
            durable_name: consumer,
            ack_policy: nats.js.AckPolicy.Explicit,
            ack_wait: ackWaitMs * 1_000_000,
            max_ack_pending: maxAckPending,
            ...(options.subject ? { filter_subject: options.subject } : {}),
          });
        }
        const { filter_subject, filter_subjects } = info.config;
        const name = jetStreamInputName(stream, made, filter_subjects ?? (filter_subject ? [filter_subject] : []));
        held = new HeldMessages<number, JsMsg>(flow, name, (messages) => {
          // One explicit ack per message, written in bulk (see natsAcks.ts). Acks carry no reply;
          // a flush returns once the server has processed everything before it.
          sendAcks(connection, messages, "+ACK");
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
        }, {
          onAcked: () => {
            pacing.wake();
            if (finished && (held?.size ?? 0) === 0) close();
          },
          lineOf: (seq) => seq,
          firstDeliveriesAsOf: connectedAt,
          deadLetterTarget: deadLetterBelow(subscriber),
        });
        source = await nats.js.jetstream(connection).consumers.get(stream, consumer);
        manager = jsm;
      } catch (error) {
        if (stopped()) return complete();
        return fail("setting up the consumer", error);
      }
      try {
        readLedgers(flow);
      } catch (error) {
        return fail("reading the committed files (the ledgers)", error);
      }
      if (!finished) startKeepingAlive();
      if (lagIntervalMs > 0 && !finished) {
        readLag();
        lagTimer = setInterval(readLag, lagIntervalMs);
        lagTimer.unref();
      }
      // When the server last answered a pull (a message, or the pull's end).
      let answeredAt = performance.now();
      while (!done()) {
        if (!(await pacing.next())) break;
        const room = Math.min(batch, maxAckPending - (held?.size ?? 0));
        try {
          const readAt = performance.now();
          pullUntil = readAt + expiresMs;
          pull = await source.fetch({ max_messages: room, expires: expiresMs });
          for await (const msg of pull) {
            answeredAt = performance.now();
            emit(msg, readAt);
            if (done()) break;
          }
          answeredAt = performance.now();
          // Records skipped as committed already settle without a commit to announce them.
          announceDurable(flow);
        } catch (error) {
          if (stopped()) break;
          // A pull ends with "heartbeats missed" once the server has been silent for two of its
          // heartbeats (about expiresMs): a busy machine or a short pause of the server, not yet
          // a failure. The pull is sent again. While messages are held, the lease judges the
          // silence (from its own keep-alives) and fails the source naming what it lost; with
          // none held, the source fails once the silence outlasts ack_wait.
          if (error instanceof nats.js.JetStreamError && error.message === "heartbeats missed" && ((held?.size ?? 0) > 0 || performance.now() - answeredAt < lease.leaseMs)) continue;
          // Lost: the lease fails the source with its own message, naming what it held.
          lease.poll();
          if (finished) return;
          return fail(`pulling messages (no answer for ${Math.round(performance.now() - answeredAt)} ms)`, error);
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
        // flight are not acknowledged; once what is being written has landed, they are given back.
        finished = true;
        close(new Error("the run stopped before they were committed"), true);
      }
    };
  });
}

/**
 * The input name of a consumer's messages: `jetstream:<stream>@<when the stream was made>`, and
 * `/<subjects>` when the consumer filters them. A record's line is its stream sequence, so the
 * name must say which stream and which of its messages the lines count: a stream deleted and
 * made again under the same name numbers its messages from 1 again, and a consumer of some
 * subjects claims, in a file's line ranges, sequences of the others' subjects. Under one name,
 * the ledgers (src/sinks/ledger.ts) would take those for committed and skip them.
 *
 * @example
 * jetStreamInputName("EVENTS", "2024-03-01T08:00:00.123456789Z", ["events.web"]);
 * // "jetstream:EVENTS@2024-03-01T08:00:00.123456789Z/events.web"
 */
export function jetStreamInputName(stream: string, made: string, subjects: readonly string[]): string {
  return `jetstream:${stream}@${made}${subjects.length > 0 ? `/${subjects.join(",")}` : ""}`;
}

/**
 * Tells the server every held message is still being worked on, so it is not delivered again: a
 * keep-alive round of the lease, renewed once a flush (answered after everything sent before it)
 * comes back.
 */
function keepHeld(connection: NatsConnection | undefined, held: HeldMessages<number, JsMsg> | undefined, lease: Lease): void {
  if (!connection || !held || connection.isClosed()) return;
  const startedAt = lease.renewing();
  if (startedAt === undefined) return;
  sendAcks(connection, [...held.values()], "+WPI");
  connection.flush().then(
    () => lease.renewed(startedAt),
    () => lease.failed(startedAt),
  );
}

