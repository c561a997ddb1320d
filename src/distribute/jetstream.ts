/**
 * The work queue of a distributed job on NATS JetStream: a work-queue stream of splits read
 * through one durable pull consumer, and a small stream holding the job's plan.
 *
 * Names, for job `J` and source key `K` (`N` is `J_K` with every character outside
 * `[A-Za-z0-9_-]` made `_`, cut to 48 characters and followed by a hash of `J` and `K` when that
 * changed anything):
 * - stream `SLUICE_JOB_N`, subject `sluice.job.N.splits`, retention work-queue: split `seq` is
 *   stream message `seq` (published with `Nats-Expected-Last-Sequence: seq - 1` and `Nats-Msg-Id:
 *   seq`), so listing is idempotent without any time window; an acknowledged split leaves it;
 * - its durable pull consumer `workers`: explicit acks, `ack_wait` = the lease, unlimited
 *   deliveries: a split a worker stops keeping alive (`working()`) is delivered to another after
 *   the lease, marked redelivered;
 * - stream `SLUICE_PLAN_N` (one message per subject): `sluice.job.N.plan.lister`, the lister's
 *   claim (`{ worker, at }`), taken with an expected last subject sequence of 0 and renewed every
 *   third of the lease by compare-and-swap on that sequence; `sluice.job.N.plan.total`, the number
 *   of splits, written once listing is done.
 *
 * A claim is stale once its sequence has not changed for a lease as this worker's own clock
 * measures it (clocks of other machines are never compared): the worker that swaps it first
 * continues the listing after the splits stream's last sequence.
 */
import { AckPolicy, type Consumer, type JetStreamClient, type JetStreamManager, type JsMsg, jetstream, jetstreamManager, RetentionPolicy, StorageType, type StreamConfig } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { NATS_CREDENTIALS, secretsOf } from "../io/credentials.ts";
import { decodeSplit, encodeSplit, type QueueSettings, safeUrl, shortHash, type Split, type SplitQueue, type Taken } from "./queue.ts";

/** The server's answer to a publish whose expected last (subject) sequence does not hold. */
const WRONG_LAST_SEQUENCE = 10071;
/** How long one look for a split waits on the server (the client's minimum). */
const LOOK_MS = 1000;

/**
 * Opens (creating when missing) the queue of one source of a job on JetStream. `onLost` is told,
 * once, when this worker may have lost splits it holds: its keep-alives did not reach the server
 * within the lease, or the connection closed.
 *
 * @example
 * const queue = await openJetStreamQueue({ url: "nats://127.0.0.1:4222", job: "events", key: "fromNdjson.x1", leaseMs: 60_000, worker: "w1" }, fail);
 * const taken = await queue.take(list, () => false, commitHeld);
 */
export async function openJetStreamQueue(settings: QueueSettings, onLost: (error: Error) => void): Promise<SplitQueue> {
  const queue = new JetStreamQueue(settings, onLost);
  try {
    await queue.open();
  } catch (error) {
    await queue.close();
    throw queue.failure("cannot open the work queue", error);
  }
  return queue;
}

/** A split this worker holds, with its latest delivery (the one to acknowledge and keep alive). */
interface Held {
  readonly taken: Taken;
  msg: JsMsg;
}

class JetStreamQueue implements SplitQueue {
  readonly where: string;
  readonly #servers: string[];
  readonly #secrets: string[];
  readonly #splitsStream: string;
  readonly #planStream: string;
  readonly #subject: string;
  readonly #planSubject: string;
  readonly #consumer = "workers";
  /** The lease: the consumer's `ack_wait` (an existing consumer keeps its own). */
  #leaseMs: number;
  #nc: NatsConnection | undefined;
  #js: JetStreamClient | undefined;
  #jsm: JetStreamManager | undefined;
  #source: Consumer | undefined;
  /** Splits held, by stream sequence (= split seq). */
  readonly #held = new Map<number, Held>();
  #listed = false;
  #listing: Promise<void> | undefined;
  /** The lister's claim as first seen here, to tell when it stopped changing. */
  #claimSeen: { seq: number; at: number } | undefined;
  /**
   * What proves the held splits are this worker's: the start of the last keep-alive round the
   * server answered, and the earliest arrival of a split taken since (its own keep-alive, sent on
   * arrival and answered, makes it this worker's until arrival + lease).
   */
  #provenAt = Number.POSITIVE_INFINITY;
  #oldest = Number.POSITIVE_INFINITY;
  #round: { startedAt: number; oldest: number } | undefined;
  #lost: Error | undefined;
  /** Splits taken by `state()`, for the next round's `take()`. */
  readonly #ready: Taken[] = [];
  #timers: ReturnType<typeof setInterval>[] = [];
  #closed = false;

  constructor(
    readonly settings: QueueSettings,
    public onLost: (error: Error) => void,
  ) {
    this.#servers = settings.url
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s.length > 0);
    this.#secrets = secretsOf(this.#servers, NATS_CREDENTIALS);
    const name = queueName(settings.job, settings.key);
    this.#splitsStream = `SLUICE_JOB_${name}`;
    this.#planStream = `SLUICE_PLAN_${name}`;
    this.#subject = `sluice.job.${name}.splits`;
    this.#planSubject = `sluice.job.${name}.plan`;
    this.#leaseMs = settings.leaseMs;
    this.where = `NATS ${this.#servers.map(safeUrl).join(",")}, stream "${this.#splitsStream}"`;
  }

  async open(): Promise<void> {
    const nc = await connect({ servers: this.#servers, name: `sluice ${this.settings.job} ${this.settings.worker}`, maxReconnectAttempts: -1 });
    this.#nc = nc;
    nc.closed().then((error) => {
      if (this.#closed || this.#held.size === 0) return;
      this.#lose(`the connection closed${error ? `: ${this.#scrub(error.message)}` : ""}`);
    });
    this.#js = jetstream(nc);
    const jsm = await jetstreamManager(nc);
    this.#jsm = jsm;
    const window = Math.max(120_000, 4 * this.#leaseMs);
    await this.#stream({
      name: this.#splitsStream,
      subjects: [this.#subject],
      retention: RetentionPolicy.Workqueue,
      storage: StorageType.File,
      // Belt and braces: the expected last sequence already refuses a split twice.
      duplicate_window: window * 1_000_000,
    });
    await this.#stream({ name: this.#planStream, subjects: [`${this.#planSubject}.>`], retention: RetentionPolicy.Limits, storage: StorageType.File, max_msgs_per_subject: 1 });
    const config = { durable_name: this.#consumer, ack_policy: AckPolicy.Explicit, ack_wait: this.#leaseMs * 1_000_000, max_deliver: -1, max_ack_pending: 100_000 };
    const existing = await this.#consumerInfo();
    const info =
      existing ??
      (await jsm.consumers.add(this.#splitsStream, config).catch(async (error: unknown) => {
        // Another worker added it first.
        const made = await this.#consumerInfo();
        if (!made) throw error;
        return made;
      }));
    // Workers started with another leaseMs: the consumer's ack_wait is the lease every worker has.
    if (info.config.ack_wait && info.config.ack_wait > 0) this.#leaseMs = Math.max(1, Math.round(info.config.ack_wait / 1_000_000));
    this.#source = await jetstream(nc).consumers.get(this.#splitsStream, this.#consumer);
    // Rounds every sixth of the lease: one late or failed round still leaves a third of it.
    const keepAlive = setInterval(() => this.#keepAlive(), Math.max(50, this.#leaseMs / 6));
    const check = setInterval(() => this.#check(), Math.max(10, this.#leaseMs / 12));
    // The run keeps the process alive while it reads; these timers alone must not.
    keepAlive.unref();
    check.unref();
    this.#timers = [keepAlive, check];
  }

  /** Creates the stream, or checks that the one there is a queue of this kind. */
  async #stream(config: Partial<StreamConfig> & { name: string }): Promise<void> {
    const jsm = this.#jsm as JetStreamManager;
    const find = () =>
      jsm.streams.info(config.name).catch((error: unknown) => {
        if (/stream not found/i.test(String((error as Error)?.message))) return undefined;
        throw error;
      });
    let info = await find();
    if (!info) {
      try {
        await jsm.streams.add(config);
        return;
      } catch (error) {
        // Another worker made it at the same time (the server then says "already in use" or
        // "subjects overlap"); any other failure, or an overlap with another stream, stands.
        info = await find();
        if (!info) throw error;
      }
    }
    const { retention, subjects } = info.config;
    if (retention !== config.retention || subjects?.join() !== config.subjects?.join()) {
      throw new Error(`stream "${config.name}" exists with retention ${retention} and subjects ${subjects?.join(", ")}, not what a sluice work queue makes; remove it or give the job another name`);
    }
  }

  async #consumerInfo() {
    return (this.#jsm as JetStreamManager).consumers.info(this.#splitsStream, this.#consumer).catch((error: unknown) => {
      if (/consumer not found/i.test(String((error as Error)?.message))) return undefined;
      throw error;
    });
  }

  async take(list: () => AsyncIterable<Split>, stopped: () => boolean): Promise<Taken | undefined> {
    try {
      for (;;) {
        if (stopped() || this.#closed) return undefined;
        const ready = this.#ready.shift();
        if (ready) return ready;
        if (!this.#listed) await this.#readPlan(list, stopped);
        const found = await this.#look(stopped);
        if (found) return found;
        // Every split is given out: this round is over. While another worker lists, more may come.
        if (this.#listed && (await this.#consumerInfo())?.num_pending === 0) return undefined;
      }
    } catch (error) {
      if (this.#closed) return undefined;
      throw this.failure("cannot take a split", error);
    }
  }

  async state(): Promise<"done" | "ready" | "held"> {
    if (this.#ready.length > 0) return "ready";
    try {
      if (!this.#listed) {
        const jsm = this.#jsm as JetStreamManager;
        this.#listed = (await jsm.streams.getMessage(this.#planStream, { last_by_subj: `${this.#planSubject}.total` })) !== null;
      }
      // Not listed yet, and the lister may have died: the next round's take lists or waits.
      if (!this.#listed) return "ready";
      const info = await this.#consumerInfo();
      if (info && info.num_pending === 0 && info.num_ack_pending === 0) return "done";
      // A split past its lease is delivered again by the server: taken here, kept for the next round.
      const found = await this.#look(() => false);
      if (found) {
        this.#ready.push(found);
        return "ready";
      }
      return "held";
    } catch (error) {
      throw this.failure("cannot see where the job stands", error);
    }
  }

  /** One look for a split: a new one, or one the server delivers again after its lease. */
  async #look(stopped: () => boolean): Promise<Taken | undefined> {
    const lookedAt = performance.now();
    const msg = await (this.#source as Consumer).next({ expires: LOOK_MS });
    if (!msg) return undefined;
    // The lease runs from the delivery, which a look that waited on the server does not date
    // (it may have come at the end of a look as long as the lease): a keep-alive sent on
    // arrival and answered in time does.
    const arrivedAt = performance.now();
    msg.working();
    await (this.#nc as NatsConnection).flush();
    const answeredAt = performance.now();
    if (this.#closed || stopped()) {
      // Taken as the run stops: given back at once rather than after the lease.
      if (!this.#closed) msg.nak();
      return undefined;
    }
    // Answered too late to know it is this worker's: left for a later look (after the lease).
    if (answeredAt >= lookedAt + this.#leaseMs || answeredAt >= arrivedAt + (this.#leaseMs * 2) / 3) return undefined;
    return this.#hold(msg, arrivedAt);
  }

  /** Reads the plan; lists the job when no worker has and no lister is alive. */
  async #readPlan(list: () => AsyncIterable<Split>, stopped: () => boolean): Promise<void> {
    // Another lane of this worker lists: the splits it adds are taken meanwhile.
    if (this.#listing) return;
    const jsm = this.#jsm as JetStreamManager;
    if (await jsm.streams.getMessage(this.#planStream, { last_by_subj: `${this.#planSubject}.total` })) {
      this.#listed = true;
      return;
    }
    const claim = await jsm.streams.getMessage(this.#planStream, { last_by_subj: `${this.#planSubject}.lister` });
    let expected: number | undefined;
    if (!claim) expected = 0;
    else if (claim.seq !== this.#claimSeen?.seq) this.#claimSeen = { seq: claim.seq, at: performance.now() };
    else if (performance.now() - this.#claimSeen.at > this.#leaseMs) expected = claim.seq;
    if (expected === undefined || this.#listing) return;
    const mine = await this.#claim(expected);
    if (mine === undefined || this.#listing) return;
    this.#listing = this.#list(list, stopped, mine).finally(() => {
      this.#listing = undefined;
    });
    await this.#listing;
  }

  /** Writes this worker's claim if the lister subject's last sequence is `expected`; its sequence, or undefined when another worker's claim is there. */
  async #claim(expected: number): Promise<number | undefined> {
    const claim = JSON.stringify({ worker: this.settings.worker, at: new Date().toISOString() });
    try {
      return (await (this.#js as JetStreamClient).publish(`${this.#planSubject}.lister`, claim, { expect: { lastSubjectSequence: expected } })).seq;
    } catch (error) {
      if (wrongLastSequence(error)) return undefined;
      throw error;
    }
  }

  /** Adds the splits `list` yields after the stream's last, then writes the total, while the claim stays this worker's. */
  async #list(list: () => AsyncIterable<Split>, stopped: () => boolean, claimSeq: number): Promise<void> {
    const js = this.#js as JetStreamClient;
    const jsm = this.#jsm as JetStreamManager;
    let claim: number | undefined = claimSeq;
    let renewing = false;
    // On a timer, not between splits: cutting one large input may take longer than a lease.
    const renew = setInterval(async () => {
      if (renewing || claim === undefined || this.#closed) return;
      renewing = true;
      try {
        claim = await this.#claim(claim);
      } catch {
        // Not reached this time: the next round tries again, and the claim goes stale after a lease.
      } finally {
        renewing = false;
      }
    }, Math.max(50, this.#leaseMs / 3));
    renew.unref();
    try {
      let last = (await jsm.streams.info(this.#splitsStream)).state.last_seq;
      let total = 0;
      for await (const split of list()) {
        // A worker that found the claim stale lists on: it continues after what is in the stream.
        if (stopped() || this.#closed || claim === undefined) return;
        total = split.seq;
        if (split.seq <= last) continue;
        try {
          await js.publish(this.#subject, encodeSplit(split), { msgID: String(split.seq), expect: { lastSequence: split.seq - 1 } });
          last = split.seq;
        } catch (error) {
          if (!wrongLastSequence(error)) throw error;
          // Added by another lister meanwhile (this one's claim went stale while it cut a large input).
          last = (await jsm.streams.info(this.#splitsStream)).state.last_seq;
          if (last < split.seq) throw new Error(`split ${split.seq} cannot follow message ${last} of the stream: it holds messages a lister did not add`, { cause: error });
        }
      }
      try {
        await js.publish(`${this.#planSubject}.total`, String(total), { expect: { lastSubjectSequence: 0 } });
      } catch (error) {
        if (!wrongLastSequence(error)) throw error;
      }
      this.#listed = true;
    } finally {
      clearInterval(renew);
    }
  }

  /** Holds a split, this worker's for a lease from `since` at least. */
  #hold(msg: JsMsg, since: number): Taken | undefined {
    const seq = msg.seq;
    const held = this.#held.get(seq);
    if (held) {
      // Delivered again while this worker holds it: its keep-alives came too late (the check has
      // told onLost). The new delivery is the one acknowledgements answer to.
      held.msg = msg;
      return undefined;
    }
    // Delivered again a lease after its holder's last keep-alive (it commits nothing after its
    // fence, which comes before that: see #check), or at once after it gave the split back (once
    // nothing more of it could commit): either way every commit of it came before this arrival.
    const taken: Taken = { split: decodeSplit(msg.string(), this.where), redelivered: msg.info.redelivered ? performance.now() : undefined };
    if (this.#held.size === 0) {
      // Nothing held until now: a round answered meanwhile proves nothing about this one.
      this.#provenAt = Number.POSITIVE_INFINITY;
      this.#oldest = Number.POSITIVE_INFINITY;
    }
    this.#held.set(seq, { taken, msg });
    this.#oldest = Math.min(this.#oldest, since);
    if (this.#round) this.#round.oldest = Math.min(this.#round.oldest, since);
    return taken;
  }

  async release(taken: Taken): Promise<void> {
    const entry = [...this.#held].find(([, h]) => h.taken === taken);
    if (!entry) return;
    const [seq, held] = entry;
    this.#held.delete(seq);
    // Delivered again at once, to whichever worker looks next.
    if (!this.#closed) held.msg.nak();
  }

  async ack(taken: Taken): Promise<void> {
    const entry = [...this.#held].find(([, h]) => h.taken === taken);
    if (!entry) return;
    const [seq, held] = entry;
    try {
      await held.msg.ackAck();
    } catch (error) {
      throw this.failure(`cannot acknowledge split ${taken.split.seq} (${taken.split.input}); it is read again and found in the committed files`, error);
    } finally {
      this.#held.delete(seq);
      if (this.#held.size === 0) {
        this.#provenAt = Number.POSITIVE_INFINITY;
        this.#oldest = Number.POSITIVE_INFINITY;
      }
    }
  }

  /** Tells the server every held split is still being read; the round counts once a flush comes back. */
  #keepAlive(): void {
    const nc = this.#nc;
    if (this.#closed || this.#lost || this.#round || !nc || nc.isClosed() || this.#held.size === 0) return;
    // Too late to renew what may be another worker's already.
    if (!this.#check()) return;
    const round = { startedAt: performance.now(), oldest: Number.POSITIVE_INFINITY };
    this.#round = round;
    for (const { msg } of this.#held.values()) msg.working();
    nc.flush().then(
      () => {
        this.#round = undefined;
        // Answered after the lease could have run out: the server may have handed them on first.
        if (performance.now() >= this.#expiry()) return;
        this.#provenAt = round.startedAt;
        this.#oldest = round.oldest;
      },
      () => {
        this.#round = undefined;
      },
    );
  }

  #expiry(): number {
    return Math.min(this.#provenAt, this.#oldest) + this.#leaseMs;
  }

  /**
   * False (and onLost told) once the held splits may be another worker's within a third of a
   * lease: a redelivered split's ledgers are read as of a third of a lease before its redelivery.
   */
  #check(): boolean {
    if (this.#lost) return false;
    if (this.#closed || this.#held.size === 0) return true;
    const deadline = this.#expiry() - this.#leaseMs / 3;
    if (performance.now() <= deadline) return true;
    this.#lose(`its keep-alives did not reach the server for ${Math.round(performance.now() - Math.min(this.#provenAt, this.#oldest))} ms of a ${this.#leaseMs} ms lease; a busy machine needs a longer lease (--lease)`);
    return false;
  }

  assertHeld(): void {
    if (!this.#check()) throw this.#lost;
  }

  #lose(why: string): void {
    if (this.#lost) return;
    const splits = [...this.#held.values()].map(({ taken: { split } }) => `${split.input} bytes ${split.start}-${split.end}`);
    this.#lost = new Error(
      `distribute: this worker may have lost ${splits.length} split(s) (${splits.join(", ")}) to another worker of ${this.where}: ${why}. It commits nothing more of them and stops; the other worker writes them`,
    );
    this.onLost(this.#lost);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const timer of this.#timers) clearInterval(timer);
    const nc = this.#nc;
    if (!nc || nc.isClosed()) return;
    // Draining sends what is queued (acks) before closing; a look in flight ends with it.
    await nc.drain().catch(() => nc.close());
  }

  /** An error naming the queue, with the client's message scrubbed of credentials (not kept as the cause: it may quote them). */
  failure(what: string, error: unknown): Error {
    const message = error instanceof Error ? error.message : String(error);
    return new Error(`distribute: ${what} (${this.where}): ${this.#scrub(message)}`);
  }

  #scrub(text: string): string {
    let out = text;
    for (const secret of this.#secrets) out = out.replaceAll(secret, "***");
    return out;
  }
}

/** `job_key` as stream names and subject tokens allow it, with a hash when that changed it. */
function queueName(job: string, key: string): string {
  const plain = `${job}_${key}`;
  const clean = plain.replace(/[^A-Za-z0-9_-]/g, "_");
  return clean === plain && clean.length <= 64 ? clean : `${clean.slice(0, 48)}_${shortHash(`${job}\n${key}`)}`;
}

function wrongLastSequence(error: unknown): boolean {
  const code = (error as { code?: unknown })?.code;
  return code === WRONG_LAST_SEQUENCE || /wrong last sequence/i.test(String((error as Error)?.message));
}

