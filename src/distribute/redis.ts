/**
 * The work queue of a distributed job on Redis: a stream of splits read through a consumer group.
 *
 * Keys, for job `J` and source key `K` (prefix `sluice:job:J:K`):
 * - `…:splits`, a stream with one entry per split, id `<seq>-1`, and the group `workers`;
 * - `…:lister`, held (`SET NX PX lease`) by the worker that lists the job, renewed while it lists;
 * - `…:plan`, a hash whose field `total` is set once every split is in the stream.
 *
 * Listing is idempotent: split `seq` always has id `<seq>-1` and Redis refuses an id at or below
 * the stream's last, so a worker that takes over from a lister that died adds only what is
 * missing. A worker reads new splits with `XREADGROUP … >`, takes a dead worker's with `XAUTOCLAIM`
 * (idle for longer than the lease), keeps its own alive with `XCLAIM … JUSTID` every third of the
 * lease after checking in `XPENDING` that they are still its own (one script, so no other worker's
 * take-over falls between the check and the claim), and acknowledges with `XACK`.
 */
import { RedisClient } from "bun";
import { entriesOf, type StreamEntry } from "../io/redisStreams.ts";
import { decodeSplit, encodeSplit, type QueueSettings, safeUrl, type Split, type SplitQueue, type Taken } from "./queue.ts";

/**
 * The keep-alive (KEYS[1] the stream, ARGV the group, the worker, then the ids it holds): resets
 * the idle time of each split still pending on this worker, and returns the ids that are not.
 */
const KEEP_ALIVE = `
local lost = {}
for i = 3, #ARGV do
  local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if pending[1] ~= nil and pending[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return lost`;

/** Opens (creating when missing) the queue of one source of a job. `onLost` is told when this worker lost a split it holds. */
export async function openRedisQueue(settings: QueueSettings, onLost: (error: Error) => void): Promise<SplitQueue> {
  const queue = new RedisQueue(settings, onLost);
  await queue.open();
  return queue;
}

class RedisQueue implements SplitQueue {
  readonly where: string;
  readonly #client: RedisClient;
  readonly #prefix: string;
  readonly #splits: string;
  readonly #group = "workers";
  /** Splits held, by stream id. */
  readonly #held = new Map<string, Taken>();
  #listed = false;
  /** When the last keep-alive that succeeded was sent: the server reset the splits' idle time after it. */
  #lastAlive = performance.now();
  #lost: Error | undefined;
  /** Splits taken by `state()`, for the next round's `take()`. */
  readonly #ready: Taken[] = [];
  #timer: ReturnType<typeof setInterval> | undefined;
  #closed = false;

  constructor(
    readonly settings: QueueSettings,
    public onLost: (error: Error) => void,
  ) {
    this.#prefix = `sluice:job:${settings.job}:${settings.key}`;
    this.#splits = `${this.#prefix}:splits`;
    this.where = `Redis ${safeUrl(settings.url)}, stream "${this.#splits}"`;
    this.#client = new RedisClient(settings.url, { autoReconnect: true, enableOfflineQueue: true });
  }

  async open(): Promise<void> {
    // Reached once without retries first: an address that is wrong fails at once, not after the
    // reconnection attempts that carry a running worker over a short outage.
    const probe = new RedisClient(this.settings.url, { autoReconnect: false, connectionTimeout: 10_000 });
    try {
      await probe.connect();
    } catch (error) {
      throw this.#failure("cannot reach Redis", error);
    } finally {
      probe.close();
    }
    try {
      await this.#client.send("XGROUP", ["CREATE", this.#splits, this.#group, "0", "MKSTREAM"]);
    } catch (error) {
      if (!String((error as Error)?.message).includes("BUSYGROUP")) throw this.#failure("cannot create the work queue", error);
    }
    this.#timer = setInterval(() => void this.#keepAlive(), Math.max(100, this.settings.leaseMs / 3));
    // The run keeps the process alive while it reads; this timer alone must not.
    this.#timer.unref();
  }

  async take(list: () => AsyncIterable<Split>, stopped: () => boolean): Promise<Taken | undefined> {
    const { worker, leaseMs } = this.settings;
    try {
      for (let idle = 0; ; idle++) {
        if (stopped() || this.#closed) return undefined;
        const ready = this.#ready.shift();
        if (ready) return ready;
        if (!this.#listed) {
          this.#listed = (await this.#client.send("HGET", [`${this.#prefix}:plan`, "total"])) !== null;
          if (!this.#listed && (await this.#client.send("SET", [`${this.#prefix}:lister`, worker, "NX", "PX", String(leaseMs)])) !== null) {
            await this.#list(list, stopped);
          }
        }
        const found = await this.#look();
        if (found) return found;
        // Every split is given out: this round is over. While another worker lists, more may come.
        if (this.#listed) return undefined;
        await Bun.sleep(Math.min(1000, 50 * (idle + 1)));
      }
    } catch (error) {
      throw this.#failure("cannot take a split", error);
    }
  }

  /** A split to take now: one whose worker stopped keeping it alive (it died or lost its lease), or a new one. */
  async #look(): Promise<Taken | undefined> {
    const { worker, leaseMs } = this.settings;
    const claimed = (await this.#client.send("XAUTOCLAIM", [this.#splits, this.#group, worker, String(leaseMs), "0-0", "COUNT", "1"])) as [string, StreamEntry[]];
    const [old] = claimed[1] ?? [];
    if (old) return this.#hold(old, performance.now());
    const reply = await this.#client.send("XREADGROUP", ["GROUP", this.#group, worker, "COUNT", "1", "STREAMS", this.#splits, ">"]);
    const [fresh] = entriesOf(reply, this.#splits);
    return fresh ? this.#hold(fresh, undefined) : undefined;
  }

  async state(): Promise<"done" | "ready" | "held"> {
    if (this.#ready.length > 0) return "ready";
    try {
      if (!this.#listed) this.#listed = (await this.#client.send("HGET", [`${this.#prefix}:plan`, "total"])) !== null;
      // Not listed yet, and the lister may have died: the next round's take lists or waits.
      if (!this.#listed) return "ready";
      const found = await this.#look();
      if (found) {
        this.#ready.push(found);
        return "ready";
      }
      const [pending] = (await this.#client.send("XPENDING", [this.#splits, this.#group])) as [number];
      return pending === 0 ? "done" : "held";
    } catch (error) {
      throw this.#failure("cannot see where the job stands", error);
    }
  }

  /** Adds the splits `list` yields that the stream does not hold yet, then marks the job listed. */
  async #list(list: () => AsyncIterable<Split>, stopped: () => boolean): Promise<void> {
    const { worker, leaseMs } = this.settings;
    const lister = `${this.#prefix}:lister`;
    const last = (await this.#client.send("XREVRANGE", [this.#splits, "+", "-", "COUNT", "1"])) as StreamEntry[];
    const after = last[0] ? Number(last[0][0].split("-")[0]) : 0;
    let renewed = performance.now();
    let total = 0;
    for await (const split of list()) {
      if (stopped()) return;
      total = split.seq;
      if (split.seq <= after) continue;
      try {
        await this.#client.send("XADD", [this.#splits, `${split.seq}-1`, "split", encodeSplit(split)]);
      } catch (error) {
        // Another lister (this one's lease ran out while it cut a large input) added it first.
        if (!String((error as Error)?.message).includes("equal or smaller")) throw error;
      }
      if (performance.now() - renewed > leaseMs / 3) {
        renewed = performance.now();
        await this.#client.send("SET", [lister, worker, "XX", "PX", String(leaseMs)]);
      }
    }
    await this.#client.send("HSET", [`${this.#prefix}:plan`, "total", String(total), "listedAt", new Date().toISOString()]);
    await this.#client.send("DEL", [lister]);
    this.#listed = true;
  }

  #hold([id, fields]: StreamEntry, redelivered: number | undefined): Taken {
    const text = fields ? (fields[fields.indexOf("split") + 1] ?? "") : "";
    const taken: Taken = { split: decodeSplit(text, this.where), redelivered };
    if (this.#held.size === 0) this.#lastAlive = performance.now();
    this.#held.set(id, taken);
    return taken;
  }

  async release(taken: Taken): Promise<void> {
    const id = [...this.#held].find(([, t]) => t === taken)?.[0];
    if (id === undefined) return;
    this.#held.delete(id);
    // Idle for the lease already: the next XAUTOCLAIM of any worker takes it.
    await this.#client
      .send("XCLAIM", [this.#splits, this.#group, this.settings.worker, "0", id, "IDLE", String(this.settings.leaseMs + 1000), "JUSTID"])
      .catch(() => {});
  }

  async ack(taken: Taken): Promise<void> {
    const id = [...this.#held].find(([, t]) => t === taken)?.[0];
    if (id === undefined) return;
    try {
      await this.#client.send("XACK", [this.#splits, this.#group, id]);
    } catch (error) {
      throw this.#failure(`cannot acknowledge split ${taken.split.seq} (${taken.split.input}); it is read again and found in the committed files`, error);
    } finally {
      this.#held.delete(id);
    }
  }

  /**
   * Resets the idle time of the splits held, after checking they are still this worker's: one that
   * went to another worker (this one could not reach Redis for a lease) is lost, and the run must
   * not commit what it read of it.
   */
  async #keepAlive(): Promise<void> {
    if (this.#held.size === 0 || this.#closed) return;
    const { worker, leaseMs } = this.settings;
    try {
      const sent = performance.now();
      // Checked and renewed in one step: a split another worker took between a check and a
      // renewal sent apart would be claimed back from it, and both would write it.
      const gone = new Set((await this.#client.send("EVAL", [KEEP_ALIVE, "1", this.#splits, this.#group, worker, ...this.#held.keys()])) as string[]);
      const lost = [...this.#held].filter(([id]) => gone.has(id));
      if (lost.length > 0) {
        this.#lose(new Error(`distribute: this worker lost ${lost.length} split(s) (${lost.map(([, t]) => `${t.split.input} bytes ${t.split.start}-${t.split.end}`).join(", ")}) to another worker of ${this.where}: it could not keep them alive within the lease (${leaseMs} ms). What it read of them is not committed; the other worker writes them`));
        return;
      }
      this.#lastAlive = sent;
    } catch (error) {
      if (performance.now() - this.#lastAlive > (leaseMs * 2) / 3) {
        this.#lose(this.#failure(`cannot keep ${this.#held.size} split(s) alive for ${Math.round(performance.now() - this.#lastAlive)} ms of a ${leaseMs} ms lease`, error));
      }
    }
  }

  #lose(error: Error): void {
    if (this.#lost) return;
    this.#lost = error;
    this.onLost(error);
  }

  assertHeld(): void {
    if (this.#lost) throw this.#lost;
    const since = performance.now() - this.#lastAlive;
    // Another worker may take a split once it is idle for the lease: commit nothing that close to it.
    if (this.#held.size > 0 && since > (this.settings.leaseMs * 5) / 6) {
      this.#lose(new Error(`distribute: this worker has not kept its ${this.#held.size} split(s) alive for ${Math.round(since)} ms of a ${this.settings.leaseMs} ms lease (${this.where}): another worker may be reading them, so it commits nothing more of them and stops; a busy machine needs a longer lease (--lease)`));
      throw this.#lost;
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#client.close();
  }

  #failure(what: string, error: unknown): Error {
    const message = error instanceof Error ? error.message : String(error);
    return new Error(`distribute: ${what} (${this.where}): ${message.replaceAll(this.settings.url, safeUrl(this.settings.url))}`, { cause: error });
  }
}
