/**
 * `fromRedisStream`: entries of a Redis stream, read as a consumer group member and acknowledged
 * only once what they became is durable.
 *
 * Redis keeps every entry a consumer has read and not acknowledged in the group's pending list;
 * nothing times it out. So an entry is acknowledged (XACK) only when its row is in a committed
 * Parquet file or its dead letter is committed (`watchDurable`), and until then it stays pending:
 * a consumer that dies leaves its entries there, where its own restart (reading ID 0 first) or
 * another member (XAUTOCLAIM after `claimIdleMs`) finds them. While this consumer holds an entry
 * it resets the entry's idle time (XCLAIM to itself, JUSTID) so no one takes it over.
 *
 * Two connections: a blocking XREADGROUP stalls every other command sent on its connection, so
 * reads block on one of their own and acknowledgements, claims and heartbeats use the other.
 */
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { RedisClient } from "bun";
import { Observable } from "rxjs";
import { announceDurable } from "../flow/durable.ts";
import { currentFlow, deadLetterBelow, type Flow, sendToDeadLetter } from "../flow/flow.ts";
import { stamp } from "../flow/position.ts";
import { safeUrl, scrub, secretsOf } from "../io/credentials.ts";
import { entriesOf, type StreamEntry } from "../io/redisStreams.ts";
import { setLag } from "../run/metrics.ts";
import { HeldMessages, Lease, Pace, readLedgers } from "./broker.ts";
import { messageLoss } from "./json/numbers.ts";

/** Options of {@link fromRedisStream}. */
export interface RedisStreamOptions {
  /** Where Redis is (`redis://user:password@host:port/db`). Default: `REDIS_URL`, else `redis://127.0.0.1:6379`. */
  readonly url?: string;
  /** The stream's key. */
  readonly stream: string;
  /** The consumer group; created (with the stream, if missing) when it does not exist. */
  readonly group: string;
  /**
   * This reader's name in the group (default `<hostname>-<pid>-<6 random hex digits>`, drawn when
   * `fromRedisStream` is called, so each source has its own and a resubscription keeps it). Give a
   * stable name to a process that restarts, so it reads its own pending entries first; a new name
   * leaves them to XAUTOCLAIM.
   */
  readonly consumer?: string;
  /** Where a group created here starts: `"new"` (default, `$`: entries added from now on) or `"start"` (`0`: the whole stream). */
  readonly from?: "new" | "start";
  /** Entries read at a time (default 1000). */
  readonly batchSize?: number;
  /**
   * How long one read waits for new entries (default 1000 ms, or a third of `claimIdleMs` minus
   * `keepAliveMs` when that is shorter; must stay below half of it). A stop request cuts it short.
   */
  readonly blockMs?: number;
  /** The entry field holding the record as JSON (default `"data"`). */
  readonly field?: string;
  /** Turns an entry's fields into the record instead of parsing `field`; a throw dead-letters the entry. */
  readonly decode?: (fields: Record<string, string>) => unknown;
  /**
   * Entries pending longer than this (default 60,000 ms) on another consumer are taken over with
   * XAUTOCLAIM: that consumer is taken to be dead. Must be longer than any pause of this process.
   */
  readonly claimIdleMs?: number;
  /**
   * How often held entries have their idle time reset (default `claimIdleMs / 6`, at most half of
   * it). Commits stop once no reset has been answered for `claimIdleMs - keepAliveMs`.
   */
  readonly keepAliveMs?: number;
  /** Reading pauses while this many entries are read and not acknowledged (default 10,000). */
  readonly maxUnacked?: number;
  /**
   * How often the group's lag is read (XINFO GROUPS, default 2,000 ms; 0: never) for the metrics
   * (`sluice_source_lag`) and the live progress. Redis 7 or later reports it.
   */
  readonly lagIntervalMs?: number;
}

/**
 * A read of new entries in flight: when it was sent, its entries, and (once the last new entry
 * positioned before them is known, see `lookAfter`) the id of the entry that follows that one.
 */
interface NewRead {
  readonly readAt: number;
  readonly entries: Promise<StreamEntry[]>;
  following?: Promise<string | undefined>;
}

/**
 * Reads of new entries in flight at once: while this process emits one batch, Redis serves the
 * next and the client takes in the one after. With one, a read waited for Redis's own work on it
 * (about 1.5 ms per 1,000 entries, most of it the pending-entries list) and then for the client to
 * decode it, each time; see docs/benchmarks.md.
 */
const READS_IN_FLIGHT = 3;

/**
 * Reads a Redis stream as a member of a consumer group and emits one record per entry: the JSON
 * in the entry's `field` (or what `decode` makes of its fields). Each record's position is the
 * input `redis:<stream>` and its entry id's line ({@link lineOfId}), the same for every reader; an
 * entry whose field is missing or not JSON goes to the dead letter at stage `parse`, naming the
 * stream and entry id.
 *
 * The group is created if missing (`from` says where it starts). After a restart with the same
 * `consumer`, the entries it had read and not acknowledged come first; then new entries, with
 * entries idle longer than `claimIdleMs` on other consumers taken over every `claimIdleMs / 2`.
 * Reading waits while the sink's memory budget is spent and while `maxUnacked` entries are held.
 *
 * An entry is acknowledged (XACK) only once every record up to it is durable: in a committed
 * Parquet file or a committed dead letter. Entries read when the run stops, errors or crashes
 * stay pending and are read again later, marked redelivered: those a committed file or dead letter
 * already holds are skipped (src/sinks/ledger.ts), so each is written once, also when several
 * workers share the group and one dataset (`shared: true` on the sink and the dead letter). Under
 * `run()`, the run resolves after the last acknowledgement is answered.
 *
 * Never completes on its own: a stop request (an AbortSignal, SIGINT/SIGTERM under `run`) ends
 * the blocking read at once and completes. Errors, naming the URL without its password and the
 * stream, when Redis cannot be reached, refuses a command or the connection drops. Unsubscribing
 * closes both connections.
 *
 * @example
 * const stop = new AbortController();
 * await run(
 *   fromRedisStream({ stream: "events", group: "lake" }).pipe(
 *     validate(Event),
 *     deadLetter("out/dead-letter"),
 *     toParquet("out/events", { schema: Event, partitionBy: ["day"], maxFileAgeMs: 10_000 }),
 *   ),
 *   { signal: stop.signal, handleSignals: true },
 * );
 */
export function fromRedisStream(options: RedisStreamOptions): Observable<unknown> {
  const { REDIS_URL } = process.env;
  const url = options.url ?? REDIS_URL ?? "redis://127.0.0.1:6379";
  const { stream, group } = options;
  if (!stream || !group) throw new Error("fromRedisStream: options.stream and options.group are required");
  // Host and pid alone are not unique: containers on the host network share a host name and
  // often run as pid 1, and two sources in one process share both. Two readers under one name
  // would share one pending-entries list, each taking the other's entries for its own.
  const consumer = options.consumer ?? `${hostname()}-${process.pid}-${randomBytes(3).toString("hex")}`;
  const batchSize = Math.max(1, Math.floor(options.batchSize ?? 1000));
  const field = options.field ?? "data";
  const claimIdleMs = Math.max(1, Math.floor(options.claimIdleMs ?? 60_000));
  const keepAliveMs = Math.max(1, Math.floor(options.keepAliveMs ?? claimIdleMs / 6));
  // Default 1000 ms, shorter under a short claimIdleMs (see the check below).
  const blockMs = Math.max(1, Math.floor(options.blockMs ?? Math.min(1000, (claimIdleMs - keepAliveMs) / READS_IN_FLIGHT)));
  if (keepAliveMs * 2 > claimIdleMs) {
    throw new Error(`fromRedisStream: keepAliveMs (${keepAliveMs}) must be at most half of claimIdleMs (${claimIdleMs}): held entries would be taken over between two keep-alives`);
  }
  // A read queued behind a blocking one answers up to (READS_IN_FLIGHT - 1) × blockMs after it
  // was sent, and its entries' lease counts from the send: it must not run out meanwhile.
  if (blockMs * (READS_IN_FLIGHT - 1) >= claimIdleMs - keepAliveMs) {
    throw new Error(`fromRedisStream: blockMs (${blockMs}) must be less than ${Math.floor((claimIdleMs - keepAliveMs) / (READS_IN_FLIGHT - 1))} ms with claimIdleMs ${claimIdleMs} and keepAliveMs ${keepAliveMs}: a read waits up to ${READS_IN_FLIGHT - 1} × blockMs behind the one before it, and what it brings would count as held that long`);
  }
  const maxUnacked = Math.max(batchSize, Math.floor(options.maxUnacked ?? 10_000));
  const lagIntervalMs = Math.max(0, Math.floor(options.lagIntervalMs ?? 2000));
  const where = `Redis ${safeUrl(url)}, stream "${stream}", group "${group}"`;
  const hide = secretsOf(url);

  return new Observable<unknown>((subscriber) => {
    const flow = currentFlow(subscriber);
    const startedAt = performance.now();
    const reader = new RedisClient(url, { autoReconnect: false });
    const commands = new RedisClient(url, { autoReconnect: false });
    const held = new HeldMessages<string, string>(
      flow,
      `redis:${stream}`,
      (ids) =>
        commands.send("XACK", [stream, group, ...ids]).then(
          () => {},
          (error: unknown) => {
            const failure = new Error(
              `fromRedisStream: acknowledging ${ids.length} committed entries (${ids[0]} ...) failed (${where}): ${scrub(error instanceof Error ? error.message : String(error), hide)}. They stay pending, are read again and found in the committed files (see the ledger in docs/brokers.md)`,
            );
            abort(failure);
            throw failure;
          },
        ),
      {
        maxBatch: 5000,
        onAcked: () => {
          pacing.wake();
          if (finished && held.size === 0) close();
        },
        lineOf: lineOfId,
        // Both connections are made after this, and never made again (autoReconnect: false).
        firstDeliveriesAsOf: startedAt,
        deadLetterTarget: deadLetterBelow(subscriber),
      },
    );
    let finished = false;
    const done = () => stopped() || subscriber.closed;
    const stopped = () => finished || flow.stopping;
    const pacing = new Pace(flow, done, () => held.size >= maxUnacked);
    // The last entry of the group's new entries this reader positioned (see `follows`).
    let lastNew: string | undefined;
    // Held entries are lent for claimIdleMs, renewed by each keep-alive that Redis answers.
    const lease: Lease = new Lease(
      claimIdleMs,
      keepAliveMs,
      () => held.size,
      (count, silentMs): Error =>
        new Error(
          `fromRedisStream: lost hold of ${count} entries (${where}, consumer "${consumer}"): no keep-alive (XCLAIM) has been answered for ${silentMs} ms, and after claimIdleMs (${claimIdleMs} ms) another consumer may take them over (XAUTOCLAIM) and write them too. This run stops without committing them; they are read again and written once (restart the worker). If Redis was not down, the process stalled: raise claimIdleMs`,
        ),
      (error) => {
        if (!finished) abort(error);
        else close();
      },
    );
    // Stays registered for the run: once lost, nothing more may commit.
    flow.leases.add(lease.check);
    const keepAlive = setInterval(() => keepHeld(commands, stream, group, consumer, held, lease), keepAliveMs);
    keepAlive.unref();
    const fence = setInterval(lease.poll, Math.max(10, Math.floor(keepAliveMs / 4)));
    fence.unref();
    // The group's lag, read from Redis every lagIntervalMs once the group exists, and once more after the last acks.
    let lagTimer: ReturnType<typeof setInterval> | undefined;
    let lagRead: Promise<void> | undefined;
    const readLag = () => {
      lagRead ??= reportLag(flow, commands, stream, group).finally(() => {
        lagRead = undefined;
      });
      return lagRead;
    };
    const onStop = () => {
      // Ends a read blocked in Redis now rather than after blockMs.
      reader.close();
      pacing.wake();
    };
    flow.onStop.add(onStop);

    function close() {
      clearInterval(keepAlive);
      clearInterval(fence);
      const lagging = lagTimer !== undefined;
      clearInterval(lagTimer);
      lagTimer = undefined;
      held.close();
      reader.close();
      // Closing cancels what is in flight: the last acknowledgements are answered first, then the
      // lag is read once more so the last figure is the one after them.
      held
        .sent()
        .then(() => (lagging ? readLag() : undefined))
        .then(() => (options.consumer === undefined ? leaveGroup() : undefined))
        .then(() => commands.close());
    }

    /**
     * Removes this reader's consumer from the group when it holds no pending entry: a default
     * name is never used again, and each would stay in the group (XINFO CONSUMERS) for good. One
     * with pending entries stays, so that XAUTOCLAIM can hand them over; a name given by the user
     * comes back, and stays too.
     *
     * The look and the removal are one script: a read of this consumer that Redis serves between
     * them (a blocked read the closing connection had not yet ended) would put entries in the
     * consumer's pending list that its removal then dropped, delivered and never read again.
     */
    async function leaveGroup(): Promise<void> {
      try {
        await commands.send("EVAL", [LEAVE_IF_IDLE, "1", stream, group, consumer]);
      } catch {
        // The group or the connection is gone: nothing to tidy, or nothing more to do.
      }
    }

    function abort(error: Error) {
      if (finished) return;
      finished = true;
      flow.onStop.delete(onStop);
      close();
      subscriber.error(error);
    }
    // The client's own message may quote the URL: credentials are scrubbed, and it is not kept as the cause.
    const fail = (what: string, error: unknown) =>
      abort(new Error(`fromRedisStream: ${what} failed (${where}): ${scrub(error instanceof Error ? error.message : String(error), hide)}`));

    /**
     * Emits entries as records. `redelivered`: read from a pending list (this consumer's own after
     * a restart, or claimed from another), with the moment by which their earlier readers had
     * committed them (see `Delivery.redelivered`). `adjacent`: the first entry directly follows
     * the last new entry this reader positioned in the stream (entries of one read of new entries
     * follow each other). `readAt`: when the read that returned them was sent (their lease's start).
     */
    function emit(entries: readonly StreamEntry[], redelivered: number | undefined, adjacent: boolean, readAt: number): void {
      if (entries.length > 0) lease.taken(readAt);
      let first = true;
      for (const [id, fields] of entries) {
        // Deleted (XDEL, trimmed) while pending: there is nothing to read, and nothing to keep it for.
        if (fields === null) {
          held.send([id]);
          continue;
        }
        // One field, the payload's (what toRedisStream and most producers write): no object per entry.
        const single = fields.length === 2 && fields[0] === field && !options.decode;
        const values: Record<string, string> = {};
        if (!single) for (let i = 0; i + 1 < fields.length; i += 2) values[fields[i] as string] = String(fields[i + 1]);
        const text = single ? String(fields[1]) : values[field];
        const raw = text ?? JSON.stringify(values);
        flow.stats.bytesRead += raw.length;
        const position = held.at(id, id, { line: lineOfId(id), adjacent: adjacent || !first, redelivered, raw });
        first = false;
        if (redelivered === undefined) lastNew = id;
        // Redelivered, and its dead letter is committed already.
        if (!position) continue;
        let record: unknown;
        try {
          if (options.decode) {
            record = options.decode(values);
          } else if (text === undefined) {
            const names = Object.keys(values).join(", ");
            sendToDeadLetter(flow, "parse", `Redis stream "${stream}", entry ${id}: no field "${field}" (fields: ${names || "none"})`, undefined, position);
            continue;
          } else {
            record = JSON.parse(text);
            // A number a float cannot hold (1e400, 12345678901234567890) is refused, as the file sources do.
            const loss = messageLoss(text, record);
            if (loss !== undefined) {
              sendToDeadLetter(flow, "parse", `Redis stream "${stream}", entry ${id}: ${loss}`, undefined, position);
              continue;
            }
          }
        } catch (error) {
          sendToDeadLetter(flow, "parse", `Redis stream "${stream}", entry ${id}: ${options.decode ? "decode threw" : `field "${field}" is not JSON`}: ${(error as Error).message}`, undefined, position);
          continue;
        }
        subscriber.next(stamp(record, position));
      }
    }

    async function read(): Promise<void> {
      try {
        await Promise.all([reader.connect(), commands.connect()]);
      } catch (error) {
        return fail("connecting", error);
      }
      try {
        await commands.send("XGROUP", ["CREATE", stream, group, options.from === "start" ? "0" : "$", "MKSTREAM"]);
      } catch (error) {
        if (!String((error as Error).message).startsWith("BUSYGROUP")) return fail("creating the consumer group", error);
      }
      try {
        readLedgers(flow);
      } catch (error) {
        return fail("reading the committed files (the ledgers)", error);
      }
      if (lagIntervalMs > 0 && !finished) {
        readLag();
        lagTimer = setInterval(readLag, lagIntervalMs);
        lagTimer.unref();
      }
      // Entries this consumer read before a restart and never acknowledged.
      let after = "0";
      while (!done()) {
        let entries: StreamEntry[];
        const readAt = performance.now();
        try {
          entries = entriesOf(await reader.send("XREADGROUP", ["GROUP", group, consumer, "COUNT", String(batchSize), "STREAMS", stream, after]), stream);
        } catch (error) {
          if (stopped()) break;
          return fail("reading pending entries", error);
        }
        if (entries.length === 0) break;
        after = (entries[entries.length - 1] as StreamEntry)[0];
        // Read before this process started: whoever read them (this consumer, earlier) has ended.
        emit(entries.filter(([id]) => !held.has(id)), startedAt, false, readAt);
        announceDurable(flow);
        if (!(await pacing.next())) break;
      }
      let claimCursor = "0-0";
      let claimAt = 0;
      // Reads of new entries sent and not yet emitted, oldest first.
      const inFlight: NewRead[] = [];
      while (!done()) {
        if (inFlight.length === 0 && Date.now() >= claimAt) {
          // Entries a dead consumer left idle: one page per turn, so new entries are not starved.
          try {
            const claimedAt = performance.now();
            const reply = (await commands.send("XAUTOCLAIM", [stream, group, consumer, String(claimIdleMs), claimCursor, "COUNT", String(batchSize)])) as [string, StreamEntry[], string[]];
            claimCursor = reply[0];
            // An entry this reader holds can look idle only if the keep-alive ran late: it is in flight here.
            // Idle claimIdleMs: their holder, dead or alive, committed nothing after keepAliveMs
            // before that (its lease's deadline, see Lease), so nothing later than keepAliveMs ago.
            emit(reply[1].filter(([id]) => !held.has(id)), performance.now() - keepAliveMs, false, claimedAt);
            announceDurable(flow);
          } catch (error) {
            if (stopped()) break;
            return fail("claiming idle entries (XAUTOCLAIM)", error);
          }
          if (claimCursor === "0-0") claimAt = Date.now() + Math.max(100, claimIdleMs / 2);
          if (!(await pacing.next())) break;
          if (claimCursor !== "0-0") continue;
        }
        if (inFlight.length === 0) {
          const read = readNew();
          lookAfter(read, lastNew);
          inFlight.push(read);
        }
        const current = inFlight.shift() as NewRead;
        let entries: StreamEntry[];
        let following: string | undefined;
        try {
          entries = await current.entries;
          following = await current.following;
        } catch (error) {
          if (stopped()) break;
          return fail("reading new entries (XREADGROUP, XRANGE)", error);
        }
        if (entries.length > 0) {
          const last = (entries[entries.length - 1] as StreamEntry)[0];
          // The read after this one went out before this one's last entry was known: its look
          // goes out now, on the same connection, ahead of any read sent below.
          if (inFlight[0]) lookAfter(inFlight[0], last);
          // More reads go out before this batch is emitted, so Redis prepares them while this
          // process emits. Only when the pace would let reading go on after this batch and the
          // reads in flight, and no claim is due: their entries are emitted as soon as they
          // arrive, whatever the pace says by then (an overshoot of a few batches, as a file
          // source's chunk), since entries read and not held have no keep-alive.
          while (inFlight.length < READS_IN_FLIGHT - 1 && !flow.gate && held.size + entries.length + inFlight.length * batchSize < maxUnacked && Date.now() < claimAt) {
            const read = readNew();
            if (inFlight.length === 0) lookAfter(read, last);
            inFlight.push(read);
          }
          emit(entries, undefined, following !== undefined && following === (entries[0] as StreamEntry)[0], current.readAt);
          announceDurable(flow);
          if (inFlight.length > 0) continue;
        } else if (inFlight[0]) {
          // Nothing came: the next read's look starts after the same entry as this one's. Its
          // entries are emitted as soon as they arrive, without waiting on the pace: until then
          // they are pending on this consumer with no keep-alive.
          lookAfter(inFlight[0], lastNew);
          continue;
        }
        if (!(await pacing.next())) break;
      }
      if (finished) return;
      finished = true;
      flow.onStop.delete(onStop);
      reader.close();
      subscriber.complete();
      // What was emitted commits after this (the sink flushes on completion); acks close the rest.
      if (held.size === 0) close();
    }

    /** Sends a read of new entries. */
    function readNew(): NewRead {
      const readAt = performance.now();
      const entries = reader.send("XREADGROUP", ["GROUP", group, consumer, "COUNT", String(batchSize), "BLOCK", String(blockMs), "STREAMS", stream, ">"]).then((r) => entriesOf(r, stream));
      // A read still in flight when reading ends is never awaited: closing the connection rejects it.
      entries.catch(() => {});
      return { readAt, entries };
    }

    /**
     * Sends, on the reads' connection, a look at the entry after `previous` (the last new entry
     * this reader positioned before `read`'s entries). When that entry is `read`'s first, no
     * entry lies between them, so none can be pending on another consumer, and the two may share
     * an input (see broker.ts). Stream ids only grow, so the answer does not depend on when the
     * look runs: an entry added later comes after `read`'s first, and one deleted in between was
     * nobody's to write (XAUTOCLAIM drops it). No round trip of its own: Redis answers it behind
     * the reads sent before it.
     */
    function lookAfter(read: NewRead, previous: string | undefined): void {
      if (previous === undefined) return;
      const following = reader.send("XRANGE", [stream, `(${previous}`, "+", "COUNT", "1"]).then((r) => (r as StreamEntry[] | null)?.[0]?.[0]);
      following.catch(() => {});
      read.following = following;
    }

    read().catch((error) => fail("reading", error));

    return function stopRedisStream() {
      flow.onStop.delete(onStop);
      pacing.wake();
      if (!finished) {
        // Unsubscribed before completing (the pipeline errored, the app let go): entries in flight
        // stay pending in Redis and are read again.
        finished = true;
        close();
      } else {
        reader.close();
      }
    };
  });
}

/** Removes consumer ARGV[2] from group ARGV[1] of stream KEYS[1] if it has no pending entry, in one step. */
const LEAVE_IF_IDLE = `if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) == 0 then
  return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
end
return -1`;

/** Lines per millisecond of a Redis id: `<ms>-<seq>` is line `ms × 2048 + seq`. */
const SEQS_PER_MS = 2048;

/**
 * The line of a stream entry id `<ms>-<seq>`: `ms × 2048 + seq`. It grows with the id and is
 * exact (below 2^53) for every id with `ms` below 2^42 (the year 2109) and `seq` below 2048 (ids
 * Redis makes hold the sequence within one millisecond: 2,048 entries per millisecond of one
 * stream). Undefined for any other id: such an entry is numbered within its run only.
 *
 * @example
 * lineOfId("1700000000000-3") // 3481600000000003
 */
export function lineOfId(id: string): number | undefined {
  // `<1-15 digits>-<1-4 digits>`, read digit by digit: once per entry, where a regular expression cost more than the rest.
  const dash = id.indexOf("-");
  if (dash < 1 || dash > 15 || id.length - dash - 1 < 1 || id.length - dash - 1 > 4) return undefined;
  let ms = 0;
  for (let i = 0; i < dash; i++) {
    const digit = id.charCodeAt(i) - 48;
    if (digit < 0 || digit > 9) return undefined;
    ms = ms * 10 + digit;
  }
  let seq = 0;
  for (let i = dash + 1; i < id.length; i++) {
    const digit = id.charCodeAt(i) - 48;
    if (digit < 0 || digit > 9) return undefined;
    seq = seq * 10 + digit;
  }
  if (ms >= 2 ** 42 || seq >= SEQS_PER_MS) return undefined;
  const line = ms * SEQS_PER_MS + seq;
  return line > 0 ? line : undefined;
}

/**
 * Reads the group's lag from XINFO GROUPS and records it: entries not yet delivered to the group
 * (`lag`, Redis 7+) plus entries delivered and not acknowledged (`pending`). Nothing is recorded
 * when Redis cannot say (`lag` is null after some deletions, or missing before Redis 7). Failures
 * are left to the reads and acknowledgements to report.
 */
async function reportLag(flow: Flow, client: RedisClient, stream: string, group: string): Promise<void> {
  let reply: unknown;
  try {
    reply = await client.send("XINFO", ["GROUPS", stream]);
  } catch {
    return;
  }
  for (const item of Array.isArray(reply) ? reply : []) {
    const info = fieldsOf(item) as { name?: unknown; lag?: unknown; pending?: unknown };
    if (String(info.name) !== group) continue;
    if (info.lag === null || info.lag === undefined) return;
    const undelivered = Number(info.lag);
    const pending = Number(info.pending);
    setLag(flow, { source: `redis:${stream}`, partition: "0", group }, { messages: undelivered + pending, pending });
    return;
  }
}

/** A reply's map as an object: RESP3 gives one, RESP2 a flat `[name, value, ...]` list. */
function fieldsOf(item: unknown): Record<string, unknown> {
  if (!Array.isArray(item)) return (item ?? {}) as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (let i = 0; i + 1 < item.length; i += 2) out[String(item[i])] = item[i + 1];
  return out;
}

/**
 * Resets the idle time of every held entry, so no other consumer's XAUTOCLAIM takes it over: a
 * keep-alive round of the lease, renewed once Redis has answered every XCLAIM of it.
 */
function keepHeld(client: RedisClient, stream: string, group: string, consumer: string, held: HeldMessages<string, string>, lease: Lease): void {
  const startedAt = lease.renewing();
  if (startedAt === undefined) return;
  const ids = [...held.values()];
  const sent: Promise<unknown>[] = [];
  // JUSTID: the delivery count stays as it is. Failures are left to the next XACK or read to report, and to the lease.
  for (let i = 0; i < ids.length; i += 1000) sent.push(client.send("XCLAIM", [stream, group, consumer, "0", ...ids.slice(i, i + 1000), "JUSTID"]));
  Promise.all(sent).then(
    () => lease.renewed(startedAt),
    () => lease.failed(startedAt),
  );
}
