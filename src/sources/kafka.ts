/**
 * `fromKafka`: records of Kafka topics, read as a consumer group member, whose offsets are
 * committed only once what the records became is durable.
 *
 * Kafka keeps no per-message acknowledgement: a group remembers one committed offset per
 * partition, and whoever reads the partition next starts there. So a partition's offset is
 * committed only up to its durable prefix (`watchDurable`: every record of the partition up to it
 * is in a committed Parquet file or a committed dead letter), and a reader that dies leaves the
 * rest to be read again. Auto-commit is off.
 *
 * Each (topic, partition) is its own input, `kafka:<topic>@<id>/<partition>` (see
 * {@link kafkaInputName}), and a record's line is
 * its Kafka offset + 1: positions are the broker's own, the same on every delivery, and the
 * committed offset of a partition is exactly its highest durable line. Offsets may have gaps
 * (compacted topics, transaction markers): lines only have to grow, and the durable prefix of an
 * input is counted over the lines it emitted, so a gap is simply never waited for.
 *
 * The client (`@platformatic/kafka`) has no awaited "partitions revoked" hook. On a rebalance the
 * revoked partitions stop being committed here (their held records are dropped from the count, and
 * the new owner skips what this reader committed before it read the ledgers). After
 * every rejoin the client fetches its partitions again from their committed offsets; records this
 * reader already emitted are skipped, so lines never go back.
 */
import type { ConsumerGroupJoinPayload, Consumer, Message, MessagesStream, SASLMechanismValue } from "@platformatic/kafka";
import type { ConnectionOptions as TlsOptions } from "node:tls";
import { Observable } from "rxjs";
import { announceDurable, watchDurable } from "../flow/durable.ts";
import { currentFlow, deadLetterBelow, sendToDeadLetter } from "../flow/flow.ts";
import { scrub, secretsOf } from "../io/credentials.ts";
import { deleteLag, type LagWhere, setLag } from "../run/metrics.ts";
import { Input, stamp } from "../flow/position.ts";
import { alreadyDeadLettered } from "../sinks/ledger.ts";
import { Pace } from "./broker.ts";
import { messageLoss } from "./json/numbers.ts";

/** How sluice reaches a Kafka cluster: shared by {@link fromKafka} and `toKafka`. */
export interface KafkaConnectionOptions {
  /**
   * Bootstrap brokers as `host:port` (a comma-separated string or an array). Default:
   * `KAFKA_BROKERS`, else `127.0.0.1:9092`.
   */
  readonly brokers?: string | readonly string[];
  /**
   * SASL authentication. Default: from the environment when `KAFKA_SASL_USERNAME` is set
   * (`KAFKA_SASL_MECHANISM`, default `PLAIN`; `KAFKA_SASL_PASSWORD`). Never logged.
   */
  readonly sasl?: { readonly mechanism: "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512"; readonly username: string; readonly password: string };
  /** TLS: `true`, or `node:tls` connection options. Default: on when `KAFKA_TLS` is `1` or `true`. */
  readonly tls?: boolean | TlsOptions;
  /** The client id the brokers see (default `sluice`). */
  readonly clientId?: string;
  /** How long connecting to a broker may take (default 5,000 ms). */
  readonly connectTimeoutMs?: number;
}

/** What a user decoder gets besides the value's bytes. */
export interface KafkaMessageInfo {
  readonly topic: string;
  readonly partition: number;
  readonly offset: bigint;
  readonly timestamp: bigint;
  /** The message key's bytes, or null. */
  readonly key: Uint8Array | null;
  readonly headers: ReadonlyMap<string, string>;
}

/** A record of {@link fromKafka} with `decode: "bytes"`. */
export interface KafkaBytesRecord {
  readonly topic: string;
  readonly partition: number;
  /** The Kafka offset (a number: offsets stay far below 2^53). */
  readonly offset: number;
  /** Epoch milliseconds. */
  readonly timestamp: number;
  /** The key as UTF-8 text, or null when the message has none. */
  readonly key: string | null;
  /** The value's bytes, or null for a tombstone. */
  readonly value: Uint8Array | null;
}

/** Options of {@link fromKafka}. */
export interface KafkaSourceOptions extends KafkaConnectionOptions {
  /** The topic, or several; every partition of each is read. */
  readonly topic: string | readonly string[];
  /** The consumer group whose committed offsets are where reading starts and what is committed. */
  readonly group: string;
  /** Where a partition without a committed offset starts: `"new"` (default, the log's end) or `"start"` (its beginning). */
  readonly from?: "new" | "start";
  /**
   * How a message's value becomes a record: `"json"` (default: `JSON.parse` of its UTF-8 text),
   * `"bytes"` (a {@link KafkaBytesRecord}), or a function (a throw dead-letters the message).
   */
  readonly decode?: "json" | "bytes" | ((value: Uint8Array, message: KafkaMessageInfo) => unknown);
  /** Reading pauses while this many records are emitted and not durable (default 10,000). */
  readonly maxUncommitted?: number;
  /** How long one fetch waits for new messages (default 1,000 ms). */
  readonly maxWaitMs?: number;
  /** Bytes one fetch may return, over all partitions (default 8 MiB): the client holds at most about this much ahead. */
  readonly maxFetchBytes?: number;
  /** The group's session timeout (default 30,000 ms): how long a reader that stopped heartbeating keeps its partitions. */
  readonly sessionTimeoutMs?: number;
  /**
   * How often the lag of this reader's partitions is read (default 2,000 ms; 0: never) for the
   * metrics (`sluice_source_lag`) and the live progress: the high watermark (ListOffsets) minus the
   * group's committed offset (OffsetFetch), per assigned partition.
   */
  readonly lagIntervalMs?: number;
}

/** The connection settings a client takes, with what may be shown of them and the secrets to scrub. */
export interface KafkaConnection {
  readonly brokers: string[];
  readonly client: {
    readonly clientId: string;
    readonly bootstrapBrokers: string[];
    readonly connectTimeout: number;
    readonly retries: number;
    readonly retryDelay: number;
    readonly sasl?: { mechanism: SASLMechanismValue; username: string; password: string };
    readonly tls?: TlsOptions;
  };
  /** `Kafka <brokers>`, safe to show. */
  readonly where: string;
  /** Texts to remove from any message a client produces (the SASL username and password). */
  readonly secrets: readonly string[];
}

/**
 * Resolves brokers, SASL and TLS from `options` and the environment. `who` names the caller in
 * errors. Throws on a broker written with credentials in it, without repeating them.
 */
export function kafkaConnection(who: string, options: KafkaConnectionOptions): KafkaConnection {
  const { KAFKA_BROKERS, KAFKA_SASL_USERNAME, KAFKA_SASL_MECHANISM, KAFKA_SASL_PASSWORD, KAFKA_TLS } = process.env;
  const given = options.brokers ?? KAFKA_BROKERS ?? "127.0.0.1:9092";
  const listed = (typeof given === "string" ? given.split(",") : [...given]).map((s) => s.trim()).filter((s) => s.length > 0);
  if (listed.length === 0) throw new Error(`${who}: no Kafka broker given (options.brokers or KAFKA_BROKERS)`);
  const brokers = listed.map((broker, i) => {
    const bare = broker.replace(/^[a-z][a-z0-9+.-]*:\/\//i, "").replace(/\/+$/, "");
    if (bare.includes("@")) {
      throw new Error(`${who}: broker ${i + 1} is written with credentials in it; give them as options.sasl or KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD`);
    }
    if (!/^(\[[0-9a-f:.]+\]|[^:\s/]+):\d{1,5}$/i.test(bare)) throw new Error(`${who}: broker ${i + 1} "${bare}" is not host:port`);
    return bare;
  });
  let sasl = options.sasl;
  const username = KAFKA_SASL_USERNAME;
  if (!sasl && username) {
    const mechanism = (KAFKA_SASL_MECHANISM ?? "PLAIN").toUpperCase();
    if (mechanism !== "PLAIN" && mechanism !== "SCRAM-SHA-256" && mechanism !== "SCRAM-SHA-512") {
      throw new Error(`${who}: KAFKA_SASL_MECHANISM "${mechanism}" is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512`);
    }
    sasl = { mechanism, username, password: KAFKA_SASL_PASSWORD ?? "" };
  }
  const tlsFlag = options.tls ?? /^(1|true)$/i.test(KAFKA_TLS ?? "");
  const tls = tlsFlag === true ? {} : tlsFlag === false ? undefined : tlsFlag;
  const secrets = sasl ? secretsOf(sasl, { hideUser: true }) : [];
  return {
    brokers,
    client: {
      clientId: options.clientId ?? "sluice",
      bootstrapBrokers: brokers,
      connectTimeout: Math.max(1, Math.floor(options.connectTimeoutMs ?? 5000)),
      // A broker that cannot be reached fails the run after a few quick tries, not after minutes.
      retries: 3,
      retryDelay: 250,
      ...(sasl ? { sasl: { mechanism: sasl.mechanism, username: sasl.username, password: sasl.password } } : {}),
      ...(tls ? { tls } : {}),
    },
    where: `Kafka ${brokers.join(",")}`,
    secrets,
  };
}

/**
 * The input name of a topic's partitions (followed by `/<partition>`): `kafka:<topic>@<id>`, `id`
 * being the topic's id (a UUID Kafka gives each topic it makes, since 2.8), or the cluster's id
 * when the broker gives none. A partition's lines are its offsets, and the ledgers of committed
 * files know records by input name and line: a topic deleted and made again, or a topic of the
 * same name on another cluster, numbers its messages from 0 again, and under the topic's name
 * alone its records would be taken for the earlier topic's, skipped as committed.
 */
export function kafkaInputName(topic: string, topicId: string | undefined, clusterId: string | undefined): string {
  const realTopicId = topicId !== undefined && topicId !== topic && !/^[0-]*$|^A{22}$/.test(topicId);
  const id = realTopicId ? topicId : clusterId;
  return id ? `kafka:${topic}@${id}` : `kafka:${topic}`;
}

/**
 * The reason a Kafka client error gives, down to its innermost causes ("metadata failed 3 times"
 * says little; "connect ECONNREFUSED 127.0.0.1:9092" says what to fix), with `secrets` removed.
 */
export function kafkaReason(error: unknown, secrets: readonly string[]): string {
  const seen = new Set<string>();
  const walk = (e: unknown, depth: number): void => {
    if (depth > 6 || !(e instanceof Error)) {
      if (e !== undefined && !(e instanceof Error)) seen.add(String(e));
      return;
    }
    const inner = [...((e as { errors?: unknown[] }).errors ?? []), ...(e.cause !== undefined ? [e.cause] : [])];
    seen.add(e.message);
    for (const next of inner) walk(next, depth + 1);
  };
  walk(error, 0);
  const text = scrub([...seen].filter((s) => s.length > 0).join("; "), secrets);
  return text.length > 600 ? `${text.slice(0, 600)}…` : text;
}

/** One partition this reader has emitted records of. */
interface PartitionState {
  readonly topic: string;
  readonly partition: number;
  readonly input: Input;
  /** False once a rebalance gave the partition to another reader: nothing of it is committed here then. */
  owned: boolean;
  /** The offset this reader last asked to commit (its highest durable line). */
  committed: number;
  /**
   * When this reader was given the partition (`performance.now()`): every record read since is
   * marked redelivered as of then, so the ledgers of what is committed are read once after it.
   */
  since: number;
  /** Set when a partition comes back after a revoke, until a message shows where the group's offset is. */
  floorUnknown: boolean;
  /** The leader epoch of the last message read, which a commit carries. */
  epoch: number;
  /** Lines emitted and not durable yet, oldest first, from `head`. */
  readonly held: number[];
  head: number;
}

/**
 * Reads Kafka topics as a member of consumer group `group` and emits one record per message: the
 * JSON in its value (or bytes, or what `decode` makes of it). Each record's position is the input
 * `kafka:<topic>@<id>/<partition>` and the line `offset + 1`; a message that does not decode (not
 * UTF-8, not JSON, a number a 64-bit float cannot hold, a tombstone, `decode` throws) goes to the
 * dead letter at stage `parse`, naming topic, partition and offset, with its raw bytes.
 *
 * Reading starts at the group's committed offsets (`from` decides where partitions without one
 * start) and waits while the sink's memory budget is spent and while `maxUncommitted` records are
 * emitted and not durable. A partition's offset is committed only up to its durable prefix: every
 * record of it up to there is in a committed Parquet file or a committed dead letter. Records read
 * when the run stops, errors or crashes are read again by the group's next reader; every record is
 * marked redelivered as of its partition's assignment, so one already in a committed file or dead
 * letter (the ledgers, src/sinks/ledger.ts) is skipped, not written twice. Under `run()`, the run
 * resolves after the last commit is answered.
 *
 * Never completes on its own: a stop request (an AbortSignal, SIGINT/SIGTERM under `run`) pauses
 * reading at once and completes; the consumer leaves the group once everything emitted is durable
 * and committed. Errors, naming the brokers (never the credentials), the topics and the group, when
 * the cluster cannot be reached, the group cannot be joined, a fetch fails or a commit is refused
 * for another reason than a rebalance. Unsubscribing before completion closes the consumer without
 * committing.
 *
 * @example
 * const stop = new AbortController();
 * await run(
 *   fromKafka({ topic: "events", group: "lake", from: "start" }).pipe(
 *     validate(Event),
 *     deadLetter("out/dead-letter"),
 *     toParquet("out/events", { schema: Event, partitionBy: ["day"], maxFileAgeMs: 10_000 }),
 *   ),
 *   { signal: stop.signal, handleSignals: true },
 * );
 */
export function fromKafka(options: KafkaSourceOptions): Observable<unknown> {
  const topics = (typeof options.topic === "string" ? [options.topic] : [...(options.topic ?? [])]).filter((t) => t.length > 0);
  const { group } = options;
  if (topics.length === 0 || !group) throw new Error("fromKafka: options.topic and options.group are required");
  const connection = kafkaConnection("fromKafka", options);
  const decode = options.decode ?? "json";
  const maxUncommitted = Math.max(1, Math.floor(options.maxUncommitted ?? 10_000));
  const maxWaitMs = Math.max(1, Math.floor(options.maxWaitMs ?? 1000));
  const maxFetchBytes = Math.max(1024, Math.floor(options.maxFetchBytes ?? 8 * 1024 * 1024));
  const sessionTimeoutMs = Math.max(6000, Math.floor(options.sessionTimeoutMs ?? 30_000));
  const lagIntervalMs = Math.max(0, Math.floor(options.lagIntervalMs ?? 2000));
  const where = `${connection.where}, topic${topics.length > 1 ? "s" : ""} ${topics.map((t) => `"${t}"`).join(",")}, group "${group}"`;
  const utf8 = new TextDecoder("utf-8", { fatal: true });

  return new Observable<unknown>((subscriber) => {
    const flow = currentFlow(subscriber);
    // The folder below this source takes its parse errors, whichever `deadLetter` subscribed last.
    const deadLetterTarget = deadLetterBelow(subscriber);
    const partitions = new Map<string, PartitionState>();
    const stopWatching: (() => void)[] = [];
    const pendingCommits = new Map<string, { topic: string; partition: number; offset: bigint; leaderEpoch: number }>();
    let consumer: Consumer | undefined;
    let stream: MessagesStream<Buffer, Buffer, Buffer, Buffer> | undefined;
    /** Each topic's input name as the cluster answered before the group was joined (see {@link kafkaInputName}). */
    let inputNames = new Map<string, string>();
    let heldCount = 0;
    let finished = false;
    let closing: Promise<void> | undefined;
    let commitChain: Promise<void> = Promise.resolve();
    let commitScheduled = false;
    const stopped = () => finished || flow.stopping;
    const done = () => stopped() || subscriber.closed;
    const pacing = new Pace(flow, done, () => heldCount >= maxUncommitted);
    let resuming = false;
    // When the group last gave this reader its partitions.
    let joinedAt = performance.now();
    let announceSoon = false;

    const onStop = () => {
      // Nothing more is emitted: what is buffered in the client is read again by the next reader.
      stream?.pause();
      pacing.wake();
      complete();
    };
    flow.onStop.add(onStop);

    function abort(error: Error) {
      if (finished) return;
      finished = true;
      flow.onStop.delete(onStop);
      close(true);
      subscriber.error(error);
    }
    // The client's messages are not kept as the cause: they may quote what was configured.
    const fail = (what: string, error: unknown) => abort(new Error(`fromKafka: ${what} failed (${where}): ${kafkaReason(error, connection.secrets)}`));

    /**
     * Records skipped as durable already (here, or by the sink from its ledger) settle without any
     * file committing: nothing would announce them, and their offsets would never be committed.
     */
    function announceLater() {
      if (announceSoon) return;
      announceSoon = true;
      queueMicrotask(() => {
        announceSoon = false;
        announceDurable(flow);
      });
    }
    const announcer = setInterval(() => {
      if (heldCount > 0) announceDurable(flow);
    }, 500);
    announcer.unref();

    // The lag of the partitions assigned here, read every lagIntervalMs once the group is joined,
    // and once more after the last commit.
    let lagTimer: ReturnType<typeof setInterval> | undefined;
    let lagRead: Promise<void> | undefined;
    const lagShown = new Map<string, LagWhere>();
    const readLag = () => {
      const c = consumer;
      if (!c) return Promise.resolve();
      lagRead ??= reportLag(c)
        // Failures (a rebalance under way, a broker away) are left to the fetches and commits to report.
        .catch(() => {})
        .finally(() => {
          lagRead = undefined;
        });
      return lagRead;
    };

    /** High watermark minus committed offset for each assigned partition (from the log start when none is committed and `from` is "start"). */
    async function reportLag(c: Consumer): Promise<void> {
      const assigned = (c.assignments ?? []).filter((a) => a.partitions.length > 0);
      const owned = new Set(assigned.flatMap((a) => a.partitions.map((p) => keyOf(a.topic, p))));
      // Partitions gone to another reader: their lag is that reader's to report.
      for (const [key, where] of lagShown) {
        if (owned.has(key)) continue;
        deleteLag(flow, where);
        lagShown.delete(key);
      }
      if (assigned.length > 0) {
        const topicsOf = assigned.map((a) => a.topic);
        const partitionsOf = Object.fromEntries(assigned.map((a) => [a.topic, a.partitions]));
        const [latest, committed] = await Promise.all([
          c.listOffsets({ topics: topicsOf, partitions: partitionsOf }),
          c.listCommittedOffsets({ topics: assigned }),
        ]);
        let earliest: Map<string, bigint[]> | undefined;
        for (const { topic, partitions: list } of assigned) {
          for (const partition of list) {
            const high = latest.get(topic)?.[partition];
            let base = committed.get(topic)?.[partition];
            if (high === undefined) continue;
            if (base === undefined || base < 0n) {
              // Nothing committed yet: a group reading from the start lags by the whole log; one reading new records is not reported until its first commit.
              if (options.from !== "start") continue;
              earliest ??= await c.listOffsets({ topics: topicsOf, partitions: partitionsOf, timestamp: -2n });
              base = earliest.get(topic)?.[partition];
              if (base === undefined) continue;
            }
            const where = { source: `kafka:${topic}`, partition: String(partition), group };
            lagShown.set(keyOf(topic, partition), where);
            setLag(flow, where, { messages: Number(high - base) });
          }
        }
      }
    }

    function complete() {
      if (finished) return;
      finished = true;
      flow.onStop.delete(onStop);
      stream?.pause();
      // Records the sink skipped from its ledger are committed now, inside the run.
      announceDurable(flow);
      subscriber.complete();
      // What was emitted commits after this (the sink flushes on completion); commits close the rest.
      closeWhenSettled();
    }

    function closeWhenSettled() {
      // Called inside the durable announcement that settles the last record, right after its commit
      // was chained: closing waits for that commit, and run() for the closing.
      if (finished && heldCount === 0) close(false);
    }

    /** Closes the stream and leaves the group, after the commits sent so far are answered (unless `now`). */
    function close(now: boolean) {
      if (closing) return;
      clearInterval(announcer);
      const lagging = lagTimer !== undefined && !now;
      clearInterval(lagTimer);
      lagTimer = undefined;
      for (const stop of stopWatching) stop();
      pacing.wake();
      const c = consumer;
      const s = stream;
      closing = (now ? Promise.resolve() : commitChain)
        .then(() => (lagging ? readLag() : undefined))
        .then(() => s?.close())
        .catch(() => {})
        .then(() => c?.close(true))
        .catch(() => {});
      flow.settling.add(closing);
      closing.finally(() => flow.settling.delete(closing as Promise<void>));
    }

    function keyOf(topic: string, partition: number): string {
      return `${topic}:${partition}`;
    }

    function stateOf(topic: string, partition: number): PartitionState {
      const key = keyOf(topic, partition);
      let state = partitions.get(key);
      if (!state) {
        const created: PartitionState = {
          topic,
          partition,
          input: new Input(flow, `${inputNames.get(topic) ?? `kafka:${topic}`}/${partition}`),
          owned: true,
          committed: 0,
          since: joinedAt,
          floorUnknown: false,
          epoch: -1,
          held: [],
          head: 0,
        };
        created.input.deadLetterTarget = deadLetterTarget;
        partitions.set(key, created);
        stopWatching.push(watchDurable(created.input, (upTo) => onDurable(created, upTo)));
        state = created;
      }
      return state;
    }

    /** More of a partition is durable: forget its held lines up to `upTo` and commit `upTo` (= offset + 1 of the last). */
    function onDurable(state: PartitionState, upTo: number) {
      const held = state.held;
      while (state.head < held.length && (held[state.head] as number) <= upTo) {
        state.head++;
        heldCount--;
      }
      if (state.head > 1024 && state.head * 2 > held.length) {
        held.splice(0, state.head);
        state.head = 0;
      }
      if (state.owned && !state.floorUnknown && upTo > state.committed) {
        state.committed = upTo;
        queueCommit(state);
      }
      pacing.wake();
      closeWhenSettled();
    }

    function queueCommit(state: PartitionState) {
      pendingCommits.set(keyOf(state.topic, state.partition), {
        topic: state.topic,
        partition: state.partition,
        offset: BigInt(state.committed),
        leaderEpoch: state.epoch,
      });
      sendCommits();
    }

    /**
     * Sends the pending offsets in one request, after the one in flight: two requests in flight
     * could land in either order and move an offset back. Tracked in `flow.settling` (added now,
     * inside the durable announcement), so `run()` resolves only once the broker answered.
     */
    function sendCommits() {
      if (commitScheduled || !consumer || pendingCommits.size === 0) return;
      commitScheduled = true;
      const c = consumer;
      const sent = commitChain.then(async () => {
        commitScheduled = false;
        const offsets = [...pendingCommits.values()].filter((o) => partitions.get(keyOf(o.topic, o.partition))?.owned);
        pendingCommits.clear();
        if (offsets.length === 0) return;
        try {
          await c.commit({ offsets });
        } catch (error) {
          const { findErrorBy } = await import("@platformatic/kafka");
          if (findErrorBy(error as Error, "needsRejoin", true)) {
            // A rebalance is under way: sent again after the rejoin, for the partitions still owned.
            for (const o of offsets) if (!pendingCommits.has(keyOf(o.topic, o.partition))) pendingCommits.set(keyOf(o.topic, o.partition), o);
            return;
          }
          const failure = new Error(
            `fromKafka: committing offsets ${offsets.map((o) => `${o.topic}/${o.partition}@${o.offset}`).join(", ")} failed (${where}): ${kafkaReason(error, connection.secrets)}. Those records are read again by the group's next reader: their rows will be written twice`,
          );
          abort(failure);
          throw failure;
        }
      });
      commitChain = sent.catch(() => {});
      // run() waits for every commit, and rejects when one failed.
      flow.settling.add(sent);
      sent
        .finally(() => {
          flow.settling.delete(sent);
          closeWhenSettled();
        })
        .catch(() => {});
    }

    function onJoin(payload: ConsumerGroupJoinPayload) {
      joinedAt = performance.now();
      const assigned = new Set<string>();
      for (const a of payload.assignments ?? []) for (const p of a.partitions) assigned.add(keyOf(a.topic, p));
      for (const [key, state] of partitions) {
        const owned = assigned.has(key);
        if (state.owned && !owned) {
          // Revoked: its records in flight are no longer this reader's to commit; the new owner reads them again.
          heldCount -= state.held.length - state.head;
          state.held.length = 0;
          state.head = 0;
          pendingCommits.delete(key);
        } else if (!state.owned && owned) {
          // Given back: another reader may have committed further meanwhile. Nothing is committed
          // until the first message read again shows where the group's offset is.
          state.floorUnknown = true;
          state.since = joinedAt;
        }
        state.owned = owned;
      }
      pacing.wake();
      sendCommits();
      closeWhenSettled();
    }

    function decodeMessage(message: Message<Buffer, Buffer, Buffer, Buffer>, line: number): void {
      const { topic, partition, offset } = message;
      const state = stateOf(topic, partition);
      const bytes: Buffer | undefined = message.value ?? undefined;
      flow.stats.bytesRead += bytes?.length ?? 0;
      const at = `Kafka topic "${topic}", partition ${partition}, offset ${offset}`;
      let text: string | undefined;
      let notUtf8 = false;
      if (bytes && decode !== "bytes") {
        try {
          text = utf8.decode(bytes);
        } catch {
          notUtf8 = true;
          text = new TextDecoder().decode(bytes);
        }
      }
      // Kafka has no redelivery flag: a record read after a crash may be in a file the crashed reader
      // committed. Every record is marked redelivered as of the assignment, so the sink and the dead
      // letter look it up in the ledgers of what is committed, which they read once after it.
      const position = state.input.at(line, text, undefined, state.since);
      state.held.push(line);
      heldCount++;
      if (message.leaderEpoch >= 0) state.epoch = message.leaderEpoch;
      if (alreadyDeadLettered(flow, state.input.name, line, state.since)) {
        // Its dead letter is committed already: skipped, settled, and committed with the rest.
        flow.stats.skipped++;
        state.input.settle(line);
        announceLater();
        return;
      }
      const reject = (why: string) =>
        sendToDeadLetter(flow, "parse", `${at}: ${why}`, undefined, position, bytes && (notUtf8 || decode !== "json") ? { rawBase64: bytes.toString("base64") } : {});
      let record: unknown;
      if (decode === "bytes") {
        record = {
          topic,
          partition,
          offset: Number(offset),
          timestamp: Number(message.timestamp),
          key: message.key && message.key.length > 0 ? message.key.toString("utf8") : null,
          value: bytes ? new Uint8Array(bytes) : null,
        } satisfies KafkaBytesRecord;
      } else if (typeof decode === "function") {
        try {
          record = decode(bytes ? new Uint8Array(bytes) : new Uint8Array(0), infoOf(message));
        } catch (error) {
          reject(`decode threw: ${error instanceof Error ? error.message : String(error)}`);
          return;
        }
      } else {
        const problem = parseJson(bytes, notUtf8, text);
        if (typeof problem === "string") {
          reject(problem);
          return;
        }
        record = problem.record;
      }
      subscriber.next(stamp(record, position));
    }

    function onData(message: Message<Buffer, Buffer, Buffer, Buffer>) {
      if (done()) return;
      const state = partitions.get(keyOf(message.topic, message.partition));
      // Fetched before a rebalance took the partition away: its new owner reads it.
      if (state && !state.owned) return;
      const line = Number(message.offset) + 1;
      if (state?.floorUnknown) {
        // The client fetches from the group's committed offset: nothing below it is to be committed again.
        state.floorUnknown = false;
        state.committed = Math.max(state.committed, line - 1);
      }
      // Fetched again after a rejoin (the client restarts at the committed offset): already emitted here.
      if (state && line <= state.input.lastLine) return;
      try {
        decodeMessage(message, line);
      } catch (error) {
        // No dead-letter target, or a downstream operator threw synchronously.
        abort(error instanceof Error ? error : new Error(String(error)));
        return;
      }
      if (!done() && (flow.gate || heldCount >= maxUncommitted)) pause();
    }

    /** Stops the stream's events while the gate is held or too much is uncommitted; resumes after. */
    function pause() {
      if (resuming || !stream) return;
      resuming = true;
      stream.pause();
      pacing.next().then((go) => {
        resuming = false;
        if (go && !done()) stream?.resume();
        else if (!finished && flow.stopping) complete();
      });
    }

    async function read(): Promise<void> {
      try {
        // Loaded on first use: importing the client costs about 60 MB that a process without Kafka should not pay.
        const { Consumer } = await import("@platformatic/kafka");
        // Closed while the client was loading: no consumer to close, so none is made.
        if (closing) return;
        consumer = new Consumer({
          ...connection.client,
          groupId: group,
          sessionTimeout: sessionTimeoutMs,
          heartbeatInterval: Math.max(1000, Math.floor(sessionTimeoutMs / 10)),
          rebalanceTimeout: sessionTimeoutMs * 2,
        });
        // Named before the first record: a partition's lines are its offsets, which a topic made
        // again, or another cluster's topic of the same name, numbers from 0 again.
        const metadata = await consumer.metadata({ topics, autocreateTopics: false });
        inputNames = new Map(topics.map((topic) => [topic, kafkaInputName(topic, metadata.topics.get(topic)?.id, metadata.id)]));
        if (closing) return;
        consumer.on("consumer:group:join", onJoin);
        stream = await consumer.consume({
          topics,
          autocommit: false,
          mode: "committed",
          fallbackMode: options.from === "start" ? "earliest" : "latest",
          maxWaitTime: maxWaitMs,
          maxBytes: maxFetchBytes,
          // The client's buffer ahead of the pipeline, in messages.
          highWaterMark: 256,
        });
      } catch (error) {
        if (stopped() || subscriber.closed) return;
        return fail("joining the group", error);
      }
      if (done()) {
        stream.pause();
        if (!finished) complete();
        // Closed while the group was being joined: the stream started after the close is closed too.
        if (closing) await stream.close().catch(() => {});
        return;
      }
      if (lagIntervalMs > 0 && !closing) {
        readLag();
        lagTimer = setInterval(readLag, lagIntervalMs);
        lagTimer.unref();
      }
      stream.on("data", onData);
      stream.on("error", (error: Error) => {
        if (!finished) fail("reading", error);
      });
      stream.on("close", () => {
        if (!finished && !closing) fail("reading", new Error("the client closed the stream"));
      });
      if (flow.gate) pause();
    }

    read().catch((error) => fail("reading", error));

    return function stopKafka() {
      flow.onStop.delete(onStop);
      pacing.wake();
      if (!finished) {
        // Unsubscribed before completing (the pipeline errored, the app let go): nothing more is
        // committed; the group's next reader reads what was not.
        finished = true;
        close(true);
      }
    };
  });
}

/** The record in a JSON value, or why there is none. */
function parseJson(bytes: Buffer | undefined, notUtf8: boolean, text: string | undefined): { record: unknown } | string {
  if (!bytes) return "the value is null (a tombstone), not JSON";
  if (notUtf8 || text === undefined) return "the value is not valid UTF-8";
  let record: unknown;
  try {
    record = JSON.parse(text);
  } catch (error) {
    return `the value is not JSON: ${error instanceof Error ? error.message : String(error)}`;
  }
  return messageLoss(text, record) ?? { record };
}

function infoOf(message: Message<Buffer, Buffer, Buffer, Buffer>): KafkaMessageInfo {
  const headers = new Map<string, string>();
  for (const [k, v] of message.headerEntries ?? []) headers.set(k.toString("utf8"), v.toString("utf8"));
  return {
    topic: message.topic,
    partition: message.partition,
    offset: message.offset,
    timestamp: message.timestamp,
    key: message.key && message.key.length > 0 ? new Uint8Array(message.key) : null,
    headers,
  };
}
