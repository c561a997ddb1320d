/**
 * The JetStream work queue of a distributed run, driven directly (no pipeline) against the local
 * NATS server: several queues of one job stand for several workers. What the file sources rely on:
 * one worker lists, each split goes to exactly one worker, a dead worker's split goes to another
 * after the lease marked redelivered, an acknowledged split leaves the queue, a worker is done only
 * once nothing is left that another could leave behind, and a lister that died is taken over
 * without a split added twice. The broker's state is read back with the NATS client itself.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type JetStreamManager, jetstreamManager, type StoredMsg } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { openJetStreamQueue } from "../../src/distribute/jetstream.ts";
import type { Split, SplitQueue, Taken } from "../../src/distribute/queue.ts";

const URL = "nats://127.0.0.1:4222";
/** Short, so takeovers happen within a test; every wait below is on state, never on this. */
const LEASE_MS = 1000;

let nc: NatsConnection;
let jsm: JetStreamManager;
const jobs: string[] = [];
const opened: SplitQueue[] = [];
let serial = 0;

beforeAll(async () => {
  nc = await connect({ servers: URL });
  jsm = await jetstreamManager(nc);
});

afterAll(async () => {
  for (const queue of opened) await queue.close();
  const names: string[] = [];
  for await (const name of jsm.streams.names()) names.push(name);
  for (const name of names.filter((n) => jobs.some((job) => n.includes(job)))) await jsm.streams.delete(name).catch(() => {});
  await nc.close();
});

/** A job name no other test or earlier run uses (its streams are deleted after the tests). */
function newJob(): string {
  const job = `jsq-${process.pid}-${Date.now()}-${++serial}`;
  jobs.push(job);
  return job;
}

/** Splits 1..n of made-up inputs, as a source's `list` yields them, counting how often listing began. */
function splitsOf(n: number, counter?: { lists: number }): () => AsyncIterable<Split> {
  return async function* list() {
    if (counter) counter.lists++;
    for (let seq = 1; seq <= n; seq++) yield splitAt(seq);
  };
}

function splitAt(seq: number): Split {
  return { seq, input: `/data/in-${Math.ceil(seq / 4)}.ndjson`, size: 4000, version: "1700000000000:4000", start: ((seq - 1) % 4) * 1000, end: ((seq - 1) % 4) * 1000 + 1000, line: ((seq - 1) % 4) * 10, whole: false };
}

async function open(job: string, worker: string, lost?: Error[], leaseMs = LEASE_MS): Promise<SplitQueue> {
  const queue = await openJetStreamQueue({ url: URL, job, key: "fromNdjson.k1", leaseMs, worker }, (error) => lost?.push(error));
  opened.push(queue);
  return queue;
}

/** The job's two streams, found by the job's name in theirs. */
async function streamsOf(job: string): Promise<{ splits: string; plan: string }> {
  const names: string[] = [];
  for await (const name of jsm.streams.names()) if (name.includes(job)) names.push(name);
  const splits = names.find((n) => n.startsWith("SLUICE_JOB_"));
  const plan = names.find((n) => n.startsWith("SLUICE_PLAN_"));
  if (!splits || !plan) throw new Error(`no streams for job ${job}: ${names.join(", ")}`);
  return { splits, plan };
}

/** Every split the splits stream holds (not yet acknowledged), in stream order. */
async function storedSplits(stream: string): Promise<{ seq: number; split: Split }[]> {
  const { state } = await jsm.streams.info(stream);
  const out: { seq: number; split: Split }[] = [];
  for (let seq = state.first_seq; seq <= state.last_seq && state.messages > 0; seq++) {
    const msg: StoredMsg | null = await jsm.streams.getMessage(stream, { seq }).catch(() => null);
    if (msg) out.push({ seq: msg.seq, split: msg.json<Split>() });
  }
  return out;
}

async function planTotal(job: string): Promise<number | undefined> {
  const { plan } = await streamsOf(job);
  const subjects = (await jsm.streams.info(plan, { subjects_filter: ">" })).state.subjects ?? {};
  const subject = Object.keys(subjects).find((s) => s.endsWith(".plan.total"));
  if (!subject) return undefined;
  return Number((await jsm.streams.getMessage(plan, { last_by_subj: subject }))?.string());
}

async function until(what: string, ok: () => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await ok())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(20);
  }
}

/** Takes and acknowledges splits on `lanes` lanes until the queue says the job is done; what each take returned. */
async function drain(queue: SplitQueue, list: () => AsyncIterable<Split>, lanes = 1): Promise<Taken[]> {
  const got: Taken[] = [];
  const lane = async () => {
    for (;;) {
      const taken = await queue.take(list, () => false);
      if (!taken) return;
      got.push(taken);
      await queue.ack(taken);
    }
  };
  await Promise.all(Array.from({ length: lanes }, lane));
  return got;
}

describe("JetStream work queue", () => {
  test("of three queues taking at once, exactly one lists the job, and each split goes to exactly one of them", async () => {
    const job = newJob();
    const counter = { lists: 0 };
    const lost: Error[] = [];
    const queues = await Promise.all(["w1", "w2", "w3"].map((w) => open(job, w, lost)));
    const got = await Promise.all(queues.map((queue) => drain(queue, splitsOf(57, counter), 2)));

    expect(counter.lists).toBe(1);
    expect(await planTotal(job)).toBe(57);
    const seqs = got.flat().map((t) => t.split.seq);
    expect(seqs.length).toBe(57);
    expect(new Set(seqs).size).toBe(57);
    expect([...seqs].sort((a, b) => a - b)).toEqual(Array.from({ length: 57 }, (_, i) => i + 1));
    // Each split arrives whole and as listed, first time round.
    for (const taken of got.flat()) {
      expect(taken.split).toEqual(splitAt(taken.split.seq));
      expect(taken.redelivered).toBeUndefined();
    }
    // Every one acknowledged: none is left in the stream.
    const { splits } = await streamsOf(job);
    expect((await jsm.streams.info(splits)).state.messages).toBe(0);
    expect(lost).toEqual([]);
  });

  test("an acknowledged split leaves the queue; one not acknowledged stays", async () => {
    const job = newJob();
    // A lease no stall of a busy machine reaches: the splits stay this worker's throughout.
    const queue = await open(job, "w1", undefined, 60_000);
    const first = await queue.take(splitsOf(3), () => false);
    const second = await queue.take(splitsOf(3), () => false);
    if (!first || !second) throw new Error("expected two splits");
    const { splits } = await streamsOf(job);
    expect((await storedSplits(splits)).map((s) => s.split.seq)).toEqual([1, 2, 3]);

    // Held and kept alive: its records may commit.
    expect(() => queue.assertHeld()).not.toThrow();
    await queue.ack(second);
    expect((await storedSplits(splits)).map((s) => s.split.seq)).toEqual([1, 3]);
    await queue.ack(first);
    expect((await storedSplits(splits)).map((s) => s.split.seq)).toEqual([3]);
  });

  test("a split held by a worker that died goes to another after the lease, marked redelivered", async () => {
    const job = newJob();
    const dead = await open(job, "w1");
    const held = await dead.take(splitsOf(1), () => false);
    expect(held?.split.seq).toBe(1);
    await dead.close();

    const lost: Error[] = [];
    const other = await open(job, "w2", lost);
    // Held by the dead worker until its lease passes; then ready to take.
    await until("the dead worker's split to come free", async () => (await other.state()) === "ready");
    const taken = await other.take(splitsOf(1), () => false);
    expect(taken?.split).toEqual(splitAt(1));
    // A moment in the past: the ledgers are read as of then.
    expect(typeof taken?.redelivered).toBe("number");
    expect(taken?.redelivered as number).toBeLessThan(performance.now());
    await other.ack(taken as Taken);
    expect(await other.take(splitsOf(1), () => false)).toBeUndefined();
    expect(await other.state()).toBe("done");
    expect(lost).toEqual([]);
  });

  test("a round ends when nothing is left to take; the job is held while another worker holds a split, and done once all are acknowledged", async () => {
    const job = newJob();
    const a = await open(job, "w1", undefined, 60_000);
    const b = await open(job, "w2", undefined, 60_000);
    const taken = await a.take(splitsOf(1), () => false);
    if (!taken) throw new Error("expected a split");

    // Nothing left to take for either: their rounds end. Each take ends on a look that finds
    // nothing (about a second): the two look at once.
    const [nextOfA, nextOfB] = await Promise.all([a.take(splitsOf(1), () => false), b.take(splitsOf(1), () => false)]);
    expect(nextOfA).toBeUndefined();
    expect(nextOfB).toBeUndefined();
    // `a` holds the only split: the job is not done (a may die and leave it to b).
    expect(await b.state()).toBe("held");
    await a.ack(taken);
    expect(await b.state()).toBe("done");

    // A worker started again under the same job name lists and reads nothing.
    const counter = { lists: 0 };
    const again = await open(job, "w3");
    expect(await again.take(splitsOf(1, counter), () => false)).toBeUndefined();
    expect(await again.state()).toBe("done");
    expect(counter.lists).toBe(0);
  });

  test("a take resolves undefined once the run stops", async () => {
    const job = newJob();
    const counter = { lists: 0 };
    const a = await open(job, "w1");
    expect(await a.take(splitsOf(1, counter), () => true)).toBeUndefined();
    expect(counter.lists).toBe(0);
    const held = await a.take(splitsOf(1, counter), () => false);
    expect(held?.split.seq).toBe(1);
    expect(counter.lists).toBe(1);
  });

  test("a lister that died part-way is taken over after the lease, and no split is added twice", async () => {
    const job = newJob();
    const dying = await open(job, "w1");
    let listed = 0;
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    // Lists 4 of 10 splits, then hangs in the middle of its input, and its process dies.
    const partial = async function* () {
      for (let seq = 1; seq <= 4; seq++) {
        yield splitAt(seq);
        listed = seq;
      }
      await gate;
    };
    const dyingTake = dying.take(partial, () => false);
    const { splits } = await streamsOf(job);
    await until("the lister to add 4 splits", async () => listed === 4 && (await jsm.streams.info(splits)).state.last_seq === 4);
    await dying.close();

    const counter = { lists: 0 };
    const lost: Error[] = [];
    const queues = await Promise.all(["w2", "w3"].map((w) => open(job, w, lost)));
    const got = await Promise.all(queues.map((queue) => drain(queue, splitsOf(10, counter))));
    release();
    expect(await dyingTake).toBeUndefined();

    expect(counter.lists).toBe(1);
    expect(await planTotal(job)).toBe(10);
    // Ten messages in all, split `seq` at stream sequence `seq`.
    const info = await jsm.streams.info(splits);
    expect(info.state.last_seq).toBe(10);
    expect(info.state.messages).toBe(0);
    const seqs = got.flat().map((t) => t.split.seq);
    expect([...seqs].sort((a, b) => a - b)).toEqual(Array.from({ length: 10 }, (_, i) => i + 1));
    expect(lost).toEqual([]);
  });

  test("a worker whose keep-alives stall past the lease is told it lost its splits, which another worker takes", async () => {
    const job = newJob();
    const lost: Error[] = [];
    const stalled = await open(job, "w1", lost);
    const taken = await stalled.take(splitsOf(1), () => false);
    expect(taken?.split.seq).toBe(1);
    // The whole process stalls (a long synchronous step): no keep-alive goes out for a lease.
    Bun.sleepSync(LEASE_MS * 1.2);
    await until("the stalled worker to be told", () => lost.length > 0);
    expect(lost.length).toBe(1);
    expect(lost[0]?.message).toContain("lost 1 split(s) (/data/in-1.ndjson bytes 0-1000)");
    expect(lost[0]?.message).toContain("SLUICE_JOB_");
    // Nothing of it may commit any more.
    expect(() => stalled.assertHeld()).toThrow(lost[0] as Error);

    const other = await open(job, "w2");
    await until("the stalled worker's split to come free", async () => (await other.state()) === "ready");
    const again = await other.take(splitsOf(1), () => false);
    expect(again?.split.seq).toBe(1);
    expect(again?.redelivered).toBeDefined();
  });

  test("a server that cannot be reached fails the open, naming it without its credentials", async () => {
    const error = await openJetStreamQueue({ url: "nats://alice:s3cret@127.0.0.1:1", job: newJob(), key: "k", leaseMs: LEASE_MS, worker: "w1" }, () => {}).catch((e: Error) => e);
    expect(error).toBeInstanceOf(Error);
    const message = (error as Error).message;
    expect(message).toContain("cannot open the work queue");
    expect(message).toContain("127.0.0.1:1");
    expect(message).not.toContain("s3cret");
    expect(message).not.toContain("alice");
  });
});
