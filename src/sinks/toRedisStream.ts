/**
 * `toRedisStream`: appends records to a Redis stream (XADD) and waits for Redis's reply (the new
 * entry's id) before the record counts as durable.
 *
 * Redis has no de-duplication of entries: a re-run publishes again, and delivery is at least once.
 * So is a retry: an XADD whose reply was lost when the connection dropped may have been applied,
 * and is sent again. A Redis without persistence (AOF or RDB) loses acknowledged entries when it
 * restarts.
 */
import { RedisClient } from "bun";
import type { OperatorFunction } from "rxjs";
import { safeUrl, secretsOf } from "../io/credentials.ts";
import { brokerError, type Outgoing, type Published, type Publisher, type PublishOptions, publishSink } from "./publish.ts";

/** How the Redis URL's credentials are read: the user name is hidden as well as the password. */
const REDIS_CREDENTIALS = { scheme: "redis", hideUser: true } as const;

/** Where {@link toRedisStream} (or a dead letter's `publish`) appends entries. */
export interface RedisStreamTarget {
  /** Where Redis is (`redis://user:password@host:port/db`). Default: `REDIS_URL`, else `redis://127.0.0.1:6379`. */
  readonly url?: string;
  /** The stream's key (created by the first XADD). */
  readonly stream: string;
  /** The entry field holding the payload (default `"data"`, which `fromRedisStream` reads). */
  readonly field?: string;
  /** Trims the stream to about this many entries on each XADD (`MAXLEN ~ n`); default: no trimming. */
  readonly maxLen?: number;
}

/** Options of {@link toRedisStream}. */
export interface ToRedisStreamOptions<T> extends RedisStreamTarget, PublishOptions<T> {}

/** Redis's default `proto-max-bulk-len`: the largest string a command takes. */
const MAX_BULK = 512 * 1024 * 1024;

/**
 * Appends each record to a Redis stream as one entry (`XADD <stream> [MAXLEN ~ n] * <field>
 * <payload>`; the payload is JSON by default, or what `encode` returns) and emits one
 * {@link Published} per batch once Redis replied to every XADD of it.
 *
 * A record is durable once its XADD is answered: until then it is held, so an upstream broker
 * source does not acknowledge it and a checkpoint does not pass it. At most `maxInFlight`
 * messages (`maxInFlightBytes`) wait for replies at a time; while that many do, the sink holds
 * the flow's gate and sources stop reading. A record `encode` throws on goes to the dead letter
 * at stage `write`.
 *
 * When Redis cannot be reached or the connection drops, it connects again and sends again the
 * entries without a reply, in order, with backoff, for as long as `retry` allows (default: an
 * outage of up to 60 s). An entry whose XADD was applied but whose reply was lost is appended
 * twice: delivery is at least once (a reader that must not see it twice de-duplicates by a key of
 * the record).
 *
 * Completes once every entry is answered and the connection is closed. Errors, naming the URL
 * without its credentials and the stream, when Redis refuses an XADD for good (the key holds
 * another type, refused credentials or permissions) or `retry` runs out. Unsubscribing drops what
 * is queued and closes the connection.
 *
 * @example
 * await run(fromNdjson("events.ndjson").pipe(toRedisStream({ stream: "events", maxLen: 1_000_000 })));
 */
export function toRedisStream<T>(options: ToRedisStreamOptions<T>): OperatorFunction<T, Published> {
  if (!options.stream) throw new Error("toRedisStream: options.stream is required");
  if (options.maxLen !== undefined && !(Number.isInteger(options.maxLen) && options.maxLen > 0)) {
    throw new Error(`toRedisStream: options.maxLen must be a positive integer, got ${options.maxLen}`);
  }
  return publishSink("toRedisStream", `redis:${options.stream}`, options, () => openRedisStreamPublisher("toRedisStream", options));
}

/**
 * Connects to Redis; the {@link Publisher} pipelines one XADD per message of a batch on one
 * connection (so entries keep their order) and resolves once every one is answered. Rejects,
 * naming the URL without credentials, when Redis cannot be reached.
 */
export async function openRedisStreamPublisher(who: string, target: RedisStreamTarget): Promise<Publisher> {
  const { REDIS_URL } = process.env;
  const url = target.url ?? REDIS_URL ?? "redis://127.0.0.1:6379";
  const secrets = secretsOf(url, REDIS_CREDENTIALS);
  const where = `Redis ${safeUrl(url, REDIS_CREDENTIALS)}, stream "${target.stream}"`;
  const field = target.field ?? "data";
  const trim = target.maxLen !== undefined ? ["MAXLEN", "~", String(target.maxLen)] : [];
  const client = new RedisClient(url, { autoReconnect: false });
  try {
    await client.connect();
  } catch (error) {
    client.close();
    throw brokerError(who, "connecting", where, error, secrets, !refused(error));
  }
  let closing = false;
  let lost: ((error: Error) => void) | undefined;
  client.onclose = (error) => {
    if (!closing) lost?.(brokerError(who, "the connection", where, error ?? new Error("closed"), secrets, true));
  };
  return {
    where,
    maxPayload: MAX_BULK,
    async send(batch: readonly Outgoing[]) {
      // Bun pipelines commands sent without awaiting each: one round trip for the batch, in order.
      const replies = await Promise.allSettled(
        batch.map((m) =>
          client.send("XADD", [target.stream, ...trim, "*", field, typeof m.payload === "string" ? m.payload : (Buffer.from(m.payload.buffer, m.payload.byteOffset, m.payload.byteLength) as unknown as string)]),
        ),
      );
      let failed: unknown;
      const unsent: Outgoing[] = [];
      replies.forEach((reply, i) => {
        if (reply.status === "fulfilled") return;
        failed ??= reply.reason;
        unsent.push(batch[i] as Outgoing);
      });
      // Sent again, only the entries without a reply (at least once: one may have been applied).
      if (failed !== undefined) throw brokerError(who, `appending ${batch.length} entries (XADD)`, where, failed, secrets, !refused(failed), unsent);
      return { duplicates: 0 };
    },
    async close() {
      closing = true;
      client.close();
    },
    onLost(listener) {
      lost = listener;
    },
  };
}

/**
 * True for a Redis error that trying again cannot change: the key holds another type, the
 * credentials or permissions are refused, the command is refused. A lost connection, a timeout,
 * `LOADING` after a restart or `OOM` may pass.
 */
function refused(error: unknown): boolean {
  const text = String((error as Error)?.message ?? error);
  return /WRONGTYPE|NOPERM|NOAUTH|WRONGPASS|invalid password|ERR (unknown|wrong|syntax|value|invalid|The ID)/i.test(text);
}
