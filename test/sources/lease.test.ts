/**
 * A worker that loses hold of its messages while alive: the broker may hand them to another
 * worker once its keep-alives have not reached the broker for the lease (JetStream's ack_wait,
 * Redis's claimIdleMs). Before the fence, the first worker kept writing what it held while the
 * second wrote it too (9,113 of 19,600 twice in the scale-out test once). Now the first stops
 * committing and fails its run, naming what it lost; the second writes each message once.
 *
 * JetStream: the server is frozen (SIGSTOP: connections stay open, nothing is answered) for
 * longer than ack_wait while a worker holds every message in open files. Redis: the worker is frozen (SIGSTOP) while another consumer takes its entries over,
 * then thawed with everything still in its open files. DuckDB reads back every message once.
 *
 * And the other side: a server paused for less than the lease (JetStream's open pull misses its
 * heartbeats meanwhile) is waited out, not taken for a failure.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { RedisClient, type Subprocess } from "bun";
import { join } from "node:path";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { tap } from "rxjs";
import * as v from "valibot";
import { deadLetter, validate } from "../../operators/index.ts";
import { fromJetStream, run, toParquet } from "../../src/index.ts";
import { BrokerProcess, connectWhenUp, freePort } from "../helpers/brokerProcess.ts";
import { REDIS, until } from "../helpers/brokers.ts";
import { dataset, query, tempDir } from "../helpers/duckdb.ts";

const FIXTURE = join(import.meta.dir, "..", "fixtures", "broker-scaleout.ts");
/** The lease: short, so the test is quick, and still far above a busy machine's stalls. */
const LEASE_MS = 2000;
const TOTAL = 3000;
const DAYS = ["2024-03-01", "2024-03-02", "2024-03-03"];

/** Message `i` (from 1): 1 in 50 is not JSON (a dead letter), the rest are good. */
function messageAt(i: number): { good: boolean; text: string } {
  if (i % 50 === 7) return { good: false, text: `{"id": ${i}, broken` };
  return { good: true, text: JSON.stringify({ id: i, day: DAYS[i % 3], n: i * 2 }) };
}
const GOOD = Array.from({ length: TOTAL }, (_, i) => i + 1).filter((i) => messageAt(i).good).length;

let dir: { path: string; remove: () => Promise<void> };
beforeAll(async () => {
  dir = await tempDir("sluice-lease-");
});
afterAll(() => dir.remove());

/**
 * A worker of the scale-out fixture. `holding`: its files never roll (no row or age limit within
 * the test), so it holds every message it reads, committing none of them, and once it holds all
 * of them it stops reading (no read in flight that the broker's silence could fail).
 */
function worker(args: string[], holding: boolean) {
  const limits = holding ? ["1000000", "600000", String(TOTAL)] : ["500", "200"];
  const child = Bun.spawn(["bun", FIXTURE, ...args, String(LEASE_MS), ...limits], { stdout: "pipe", stderr: "pipe" });
  const output = Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text()]);
  return { child, output };
}

/** What DuckDB reads back: rows, distinct ids, dead letters and distinct raws. */
async function readBack(out: string): Promise<{ rows: number; ids: number; wrong: number; letters: number; raws: number }> {
  const [data] = await query(
    `SELECT count(*)::INT AS rows, count(DISTINCT id)::INT AS ids, count(*) FILTER (WHERE n <> id * 2)::INT AS wrong FROM ${dataset(join(out, "events"))}`,
  );
  const letters = `read_json('${join(out, "dead-letter")}/*.ndjson', format = 'newline_delimited', columns = {raw: 'VARCHAR'})`;
  const [dead] = await query(`SELECT count(*)::INT AS letters, count(DISTINCT raw)::INT AS raws FROM ${letters}`);
  return { rows: Number(data?.rows), ids: Number(data?.ids), wrong: Number(data?.wrong), letters: Number(dead?.letters), raws: Number(dead?.raws) };
}

async function exited(child: Subprocess, what: string): Promise<number> {
  let code: number | undefined;
  child.exited.then((c) => {
    code = c;
  });
  await until(what, () => code !== undefined, 60_000);
  return code as number;
}

/** A nats-server of the test's own (so it can be frozen), with one stream taking `<subjects>.>`. */
async function privateJetStream(data: string, stream: string, subjects: string) {
  const port = freePort();
  const broker = new BrokerProcess(["nats-server", "-a", "127.0.0.1", "-p", String(port), "-js", "-sd", join(dir.path, data)]);
  broker.start();
  const servers = `nats://127.0.0.1:${port}`;
  const nc = await connectWhenUp(servers);
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: stream, subjects: [`${subjects}.>`] });
  return { broker, servers, nc, jsm };
}

describe("a worker that cannot keep its messages alive stops committing them", () => {
  test("JetStream: the server stops answering for longer than ack_wait while a worker holds every message: that worker fails naming what it lost, a restarted one writes each message once", async () => {
    const { broker, servers, nc, jsm } = await privateJetStream("nats-data", "EVENTS", "events");
    const stream = "EVENTS";
    await jsm.consumers.add(stream, { durable_name: "lake", ack_policy: "explicit" as never, ack_wait: LEASE_MS * 1_000_000, max_ack_pending: 20_000 });
    const js = jetstream(nc);
    await Promise.all(Array.from({ length: TOTAL }, (_, i) => js.publish(`events.${i % 3}`, messageAt(i + 1).text)));
    const out = join(dir.path, "nats-out");
    const args = (name: string) => ["jetstream", servers, stream, "lake", name, out];

    const first = worker(args("w0"), true);
    try {
      await until(
        "every message held by the first worker",
        async () => {
          const info = await jsm.consumers.info(stream, "lake");
          return info.num_pending === 0 && info.num_ack_pending === TOTAL;
        },
        60_000,
      );
      // The server stops answering (frozen: the connections stay open, so nothing fails) for longer
      // than ack_wait: the held messages are no longer surely the worker's.
      broker.signal("SIGSTOP");
      const code = await exited(first.child, "the first worker to give up its messages");
      const [, stderr] = await first.output;
      expect(code).not.toBe(0);
      expect(stderr).toContain("fromJetStream: lost hold of");
      expect(stderr).toContain(`stream "${stream}", consumer "lake"`);
    } catch (error) {
      // Failed before the server was thawed: it is not left running.
      broker.signal("SIGCONT");
      await nc.close().catch(() => {});
      await broker.stop();
      throw error;
    } finally {
      first.child.kill("SIGKILL");
      broker.signal("SIGCONT");
    }

    const second = worker(args("w1"), false);
    try {
      await until(
        "every message delivered again and acknowledged",
        async () => {
          const info = await jsm.consumers.info(stream, "lake");
          return info.num_pending === 0 && info.num_ack_pending === 0;
        },
        120_000,
      );
      second.child.kill("SIGTERM");
      expect(await second.child.exited).toBe(0);
    } finally {
      second.child.kill("SIGKILL");
      await nc.close();
      await broker.stop();
    }
    const found = await readBack(out);
    console.log(`jetstream lost lease: ${found.rows} rows, ${found.ids} distinct of ${GOOD}; ${found.letters} dead letters of ${TOTAL - GOOD}`);
    expect(found).toEqual({ rows: GOOD, ids: GOOD, wrong: 0, letters: TOTAL - GOOD, raws: TOTAL - GOOD });
  }, 180_000);

  test("JetStream: a server that pauses for less than ack_wait while a worker reads is waited out: the worker goes on and writes each message once", async () => {
    const { broker, servers, nc, jsm } = await privateJetStream("nats-pause-data", "PAUSED", "paused");
    const stream = "PAUSED";
    await jsm.consumers.add(stream, { durable_name: "lake", ack_policy: "explicit" as never, ack_wait: 30_000 * 1_000_000, max_ack_pending: 20_000 });
    const js = jetstream(nc);
    const publish = (from: number, to: number) => Promise.all(Array.from({ length: to - from }, (_, i) => js.publish(`paused.${(from + i) % 3}`, messageAt(from + i + 1).text)));
    const acknowledged = async () => {
      const info = await jsm.consumers.info(stream, "lake");
      return info.num_pending === 0 && info.num_ack_pending === 0;
    };
    await publish(0, TOTAL / 2);
    const out = join(dir.path, "nats-pause-out");
    // ack_wait 30 s: the pause below is far shorter, so nothing the worker holds is at risk.
    const only = Bun.spawn(["bun", FIXTURE, "jetstream", servers, stream, "lake", "w0", out, "30000", "500", "200"], { stdout: "pipe", stderr: "pipe" });
    const output = Promise.all([new Response(only.stdout).text(), new Response(only.stderr).text()]);
    try {
      await until("the first half acknowledged", acknowledged, 60_000);
      // Frozen for 3 s: the worker's open pull misses its heartbeats (two of 500 ms) meanwhile.
      broker.signal("SIGSTOP");
      await Bun.sleep(3000);
      broker.signal("SIGCONT");
      await publish(TOTAL / 2, TOTAL);
      await until(
        "the second half acknowledged",
        async () => {
          if (only.exitCode !== null) throw new Error(`the worker ended (${only.exitCode}): ${(await output)[1]}`);
          return acknowledged();
        },
        90_000,
      );
      only.kill("SIGTERM");
      const code = await only.exited;
      const [, stderr] = await output;
      expect({ code, stderr: code === 0 ? "" : stderr }).toEqual({ code: 0, stderr: "" });
    } finally {
      broker.signal("SIGCONT");
      only.kill("SIGKILL");
      await nc.close();
      await broker.stop();
    }
    const found = await readBack(out);
    expect(found).toEqual({ rows: GOOD, ids: GOOD, wrong: 0, letters: TOTAL - GOOD, raws: TOTAL - GOOD });
  }, 180_000);

  test("Redis: a worker frozen for longer than claimIdleMs has its entries taken over; thawed, it fails naming what it lost instead of committing them, and each entry is written once", async () => {
    const url = process.env["REDIS_URL"] ?? REDIS;
    const redis = new RedisClient(url);
    const stream = `sluice-lease-${process.pid}-${Date.now()}`;
    await redis.send("XGROUP", ["CREATE", stream, "lake", "0", "MKSTREAM"]);
    await Promise.all(Array.from({ length: TOTAL }, (_, i) => redis.send("XADD", [stream, "*", "data", messageAt(i + 1).text])));
    const out = join(dir.path, "redis-out");
    const args = (name: string) => ["redis", url, stream, "lake", name, out];
    const pendingOn = async () => {
      const consumers = (await redis.send("XINFO", ["CONSUMERS", stream, "lake"])) as { name: string; pending: number }[];
      return Object.fromEntries(consumers.map((c) => [c.name, Number(c.pending)]));
    };

    const first = worker(args("a"), true);
    const second = worker(args("b"), false);
    // The second starts frozen too, so the first reads everything.
    second.child.kill("SIGSTOP");
    try {
      await until("every entry held by the first worker", async () => (await pendingOn())["a"] === TOTAL, 60_000);
      first.child.kill("SIGSTOP");
      second.child.kill("SIGCONT");
      // After claimIdleMs the second takes the frozen worker's entries over, writes and acknowledges them.
      await until(
        "every entry taken over, written and acknowledged by the second worker",
        async () => {
          const [group] = (await redis.send("XINFO", ["GROUPS", stream])) as { lag: number; pending: number }[];
          return Number(group?.lag) === 0 && Number(group?.pending) === 0;
        },
        60_000,
      );
      // Thawed, the first still has every entry in its open files: it must not commit them.
      first.child.kill("SIGCONT");
      const code = await exited(first.child, "the thawed worker to give up its entries");
      const [, stderr] = await first.output;
      expect(code).not.toBe(0);
      expect(stderr).toContain("fromRedisStream: lost hold of");
      expect(stderr).toContain(`stream "${stream}", group "lake"`);
      second.child.kill("SIGTERM");
      expect(await second.child.exited).toBe(0);
    } finally {
      first.child.kill("SIGCONT");
      first.child.kill("SIGKILL");
      second.child.kill("SIGCONT");
      second.child.kill("SIGKILL");
      await redis.send("DEL", [stream]).catch(() => {});
      redis.close();
    }
    const found = await readBack(out);
    console.log(`redis lost lease: ${found.rows} rows, ${found.ids} distinct of ${GOOD}; ${found.letters} dead letters of ${TOTAL - GOOD}`);
    expect(found).toEqual({ rows: GOOD, ids: GOOD, wrong: 0, letters: TOTAL - GOOD, raws: TOTAL - GOOD });
  }, 180_000);
});

describe("a lost lease inside an app", () => {
  test("the run rejects with the lost-hold error and nothing else is thrown into the process (no uncaught exception from the fence's timer)", async () => {
    const { broker, servers, nc } = await privateJetStream("nats-embed-data", "EMBED", "embed");
    const stream = "EMBED";
    const js = jetstream(nc);
    await Promise.all(Array.from({ length: 300 }, (_, i) => js.publish(`embed.${i % 3}`, messageAt(i + 1).text)));
    const uncaught: unknown[] = [];
    const onUncaught = (error: unknown) => uncaught.push(error);
    process.on("uncaughtException", onUncaught);
    const Event = v.object({ id: v.number(), day: v.string(), n: v.number() });
    let seen = 0;
    try {
      // Files never roll within the test: every message stays held until the server goes silent.
      const running = run(
        fromJetStream({ servers, stream, consumer: "lake", ackWaitMs: LEASE_MS }).pipe(
          tap(() => seen++),
          validate(Event),
          deadLetter(join(dir.path, "embed-out", "dead-letter")),
          toParquet(join(dir.path, "embed-out", "events"), { schema: Event, maxFileRows: 1_000_000, maxFileAgeMs: 600_000 }),
        ),
        { handleSignals: false },
      );
      const failed = running.then(
        () => undefined,
        (error: Error) => error,
      );
      // Read by the pipeline, not only delivered by the server: a message the server counts as
      // delivered may still sit in its buffers when it is frozen. The ones not JSON are dead
      // letters of the source and never reach the pipeline.
      const good = Array.from({ length: 300 }, (_, i) => messageAt(i + 1)).filter((m) => m.good).length;
      await until("every message read", () => seen === good, 60_000);
      broker.signal("SIGSTOP");
      const error = await failed;
      broker.signal("SIGCONT");
      expect(error?.message).toContain("fromJetStream: lost hold of");
      // A timer's throw reaches the process a moment later, if at all.
      await Bun.sleep(200);
      expect(uncaught.map((e) => (e as Error).message)).toEqual([]);
    } finally {
      process.off("uncaughtException", onUncaught);
      broker.signal("SIGCONT");
      await nc.close();
      await broker.stop();
    }
  }, 120_000);
});
