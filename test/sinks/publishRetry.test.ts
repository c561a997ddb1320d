/**
 * The publishing sinks through a broker restart: each test runs its own broker (nats-server,
 * redis-server) on a free port with its data in a temporary folder, stops it (gracefully: its data
 * stays) while records are being published, and starts it again. The sink connects again and sends
 * again what was not acknowledged: JetStream stores every record exactly once (the `Nats-Msg-Id`
 * of a record's position drops a message stored whose PubAck was lost), Redis at least once.
 * When the broker does not come back, the run errors once `retry` runs out, naming it.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { RedisClient, type Subprocess } from "bun";
import { join } from "node:path";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { deadLetter } from "../../operators/index.ts";
import type { OperatorFunction } from "rxjs";
import { fromPush, type PushSource, type RunSummary, run, toJetStream, toRedisStream } from "../../src/index.ts";
import type { Published } from "../../src/sinks/publish.ts";
import { tempDir } from "../helpers/duckdb.ts";

let dir: { path: string; remove: () => Promise<void> };
beforeAll(async () => {
  dir = await tempDir("sluice-publish-retry-");
});
afterAll(() => dir.remove());

/** A port nothing listens on now. */
function freePort(): number {
  const server = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const { port } = server;
  server.stop(true);
  return port;
}

/** A broker process of this test's own, stopped (gracefully: its data stays) and started again at will. */
class Broker {
  #child: Subprocess | undefined;
  constructor(readonly command: string[]) {}
  start(): void {
    this.#child = Bun.spawn(this.command, { stdout: "ignore", stderr: "ignore" });
  }
  async stop(): Promise<void> {
    this.#child?.kill("SIGTERM");
    await this.#child?.exited;
  }
}

async function whenUp<T>(open: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      return await open();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await Bun.sleep(50);
    }
  }
}

/** Writes records `{ i }` for i = from..to into the push source (positions `orders:i`), waiting while its sink holds the gate. */
async function produce(source: PushSource<{ i: number }>, from: number, to: number): Promise<void> {
  for (let i = from; i <= to; i++) await source.write({ i });
}

const TOTAL = 12_000;

/**
 * Publishes TOTAL records through `sink`; stops the broker after the first third was handed to
 * the sink (batches are then queued or waiting for their acknowledgement), writes the rest while
 * it is down (the sink holds the gate once maxInFlight wait) and starts it again. Returns the run's
 * summary.
 */
async function publishAcrossRestart(broker: Broker, sink: () => OperatorFunction<{ i: number }, Published>): Promise<RunSummary> {
  const source = fromPush<{ i: number }>({ name: "orders", highWaterMark: 500 });
  const running = run(source.pipe(sink()));
  await produce(source, 1, TOTAL / 3);
  await broker.stop();
  const rest = produce(source, TOTAL / 3 + 1, TOTAL);
  broker.start();
  await rest;
  source.end();
  return await running;
}

describe("publishing across a broker restart", () => {
  test("JetStream: NATS stopped and started mid-publish: every record stored exactly once, in a run that completes", async () => {
    const port = freePort();
    const broker = new Broker(["nats-server", "-a", "127.0.0.1", "-p", String(port), "-js", "-sd", join(dir.path, "nats")]);
    broker.start();
    const servers = `nats://127.0.0.1:${port}`;
    let nc: NatsConnection = await whenUp(() => connect({ servers }));
    await (await jetstreamManager(nc)).streams.add({ name: "ORDERS", subjects: ["orders.>"] });
    await nc.close();
    try {
      const summary = await publishAcrossRestart(broker, () =>
        toJetStream({ servers, subject: "orders.eu", batchSize: 200, maxInFlight: 2000, retry: { timeoutMs: 90_000, maxBackoffMs: 500 } }),
      );
      expect(summary.written).toBe(TOTAL);
      nc = await whenUp(() => connect({ servers }));
      const jsm = await jetstreamManager(nc);
      const stored = (await jsm.streams.info("ORDERS")).state.messages;
      const seen: number[] = [];
      const consumer = await jetstream(nc).consumers.get("ORDERS");
      for await (const m of await consumer.fetch({ max_messages: stored, expires: 10_000 })) {
        seen.push((m.json() as { i: number }).i);
        if (seen.length === stored) break;
      }
      await nc.close();
      console.log(`JetStream across a restart: ${stored} messages stored for ${TOTAL} records`);
      expect(stored).toBe(TOTAL);
      expect(seen.length).toBe(TOTAL);
      expect(new Set(seen).size).toBe(TOTAL);
      expect(Math.min(...seen)).toBe(1);
      expect(Math.max(...seen)).toBe(TOTAL);
    } finally {
      await broker.stop();
    }
  }, 120_000);

  test("Redis: redis-server stopped and started mid-publish: every record appended at least once, in a run that completes", async () => {
    const port = freePort();
    const data = join(dir.path, "redis");
    await Bun.write(join(data, ".keep"), "");
    const broker = new Broker(["redis-server", "--bind", "127.0.0.1", "--port", String(port), "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", data]);
    broker.start();
    const url = `redis://127.0.0.1:${port}`;
    await whenUp(async () => {
      const probe = new RedisClient(url, { autoReconnect: false });
      await probe.connect();
      probe.close();
    });
    const summary = await publishAcrossRestart(broker, () =>
      toRedisStream({ url, stream: "orders", batchSize: 200, maxInFlight: 2000, retry: { timeoutMs: 90_000, maxBackoffMs: 500 } }),
    );
    try {
      expect(summary.written).toBe(TOTAL);
      const redis = await whenUp(async () => {
        const client = new RedisClient(url, { autoReconnect: false });
        await client.connect();
        return client;
      });
      const entries = (await redis.send("XRANGE", ["orders", "-", "+"])) as [string, string[]][];
      redis.close();
      const seen = entries.map(([, fields]) => (JSON.parse(fields[1] as string) as { i: number }).i);
      const distinct = new Set(seen);
      console.log(`Redis across a restart: ${seen.length} entries for ${TOTAL} records (${seen.length - distinct.size} appended twice)`);
      expect(distinct.size).toBe(TOTAL);
      expect(Math.min(...seen)).toBe(1);
      expect(Math.max(...seen)).toBe(TOTAL);
      // At least once: only entries sent when the connection dropped can be there twice.
      expect(seen.length - distinct.size).toBeLessThanOrEqual(2000);
    } finally {
      await broker.stop();
    }
  }, 120_000);

  test("a broker that does not come back errors the run once retry runs out, naming it and the subject; the dead letter's publish too", async () => {
    const port = freePort();
    const broker = new Broker(["nats-server", "-a", "127.0.0.1", "-p", String(port), "-js", "-sd", join(dir.path, "nats-gone")]);
    broker.start();
    const servers = `nats://127.0.0.1:${port}`;
    const nc = await whenUp(() => connect({ servers }));
    await (await jetstreamManager(nc)).streams.add({ name: "GONE", subjects: ["gone.>"] });
    await nc.close();
    const source = fromPush<{ i: number }>({ name: "orders" });
    const running = run(source.pipe(toJetStream({ servers, subject: "gone.x", retry: { timeoutMs: 1500, initialBackoffMs: 50, maxBackoffMs: 200 } }))).then(
      () => undefined,
      (error: Error) => error,
    );
    await produce(source, 1, 100);
    await broker.stop();
    const failed = produce(source, 101, 200).catch(() => {});
    const error = await running;
    await failed;
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toContain(`toJetStream: `);
    expect((error as Error).message).toContain(`(NATS nats://127.0.0.1:${port}, subject "gone.x"`);
    expect((error as Error).message).toMatch(/gave up after \d+ failed attempts over \d+\.\d s: retry\.timeoutMs 1500/);

    // The dead letter's publish shares the outbox: the same bound, the same naming.
    const lettered = fromPush<{ i: number }>({ name: "bad" });
    const letters = run(
      lettered.pipe(
        deadLetter(join(dir.path, "dead-letter"), { publish: { jetstream: { servers, subject: "gone.dead" }, retry: { timeoutMs: 800, initialBackoffMs: 50 } } }),
      ),
    ).then(
      () => undefined,
      (e: Error) => e,
    );
    lettered.end();
    // Nothing was rejected, but connecting is retried and runs out all the same.
    const letterError = await letters;
    expect((letterError as Error).message).toContain(`deadLetter: connecting failed (NATS nats://127.0.0.1:${port}, subject "gone.dead")`);
    expect((letterError as Error).message).toContain("gave up after");
  }, 60_000);
});
