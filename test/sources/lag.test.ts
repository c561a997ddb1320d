/**
 * Consumer lag of the broker sources, as the metrics and the live progress show it, checked
 * against what the local Redis and NATS servers themselves report: the figures must match while
 * reading is held back, and fall to 0 once everything is acknowledged.
 */
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { concatMap, type Observable, type OperatorFunction } from "rxjs";
import * as v from "valibot";
import { lagSummary, progressFields, progressRates, renderProgressBlock, renderProgressLine } from "../../src/cli/progress.ts";
import { createFlow, type Flow, type SourceLag } from "../../src/flow/flow.ts";
import { deleteLag, formatPrometheus, fromJetStream, fromKafka, fromRedisStream, run, setLag, snapshotMetrics, toParquet } from "../../src/index.ts";
import { jetStreams, NATS, REDIS, redisStreams, until } from "../helpers/brokers.ts";
import { dataset, query, tempDir } from "../helpers/duckdb.ts";
import { connect } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Consumer, Producer } from "@platformatic/kafka";
import { startKafkaMock } from "../support/kafka-mock/mock.ts";

const Entry = v.object({ id: v.number() });
const COUNT = 300;
const HELD = 100;

const redis = redisStreams("sluice-lag");
const nats = jetStreams("sluice-lag");

/** Holds every record until `open()`: nothing downstream commits, so nothing is acknowledged. */
function valve<T>(): { operator: OperatorFunction<unknown, T>; open: () => void } {
  let open = () => {};
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { operator: concatMap((record: unknown) => opened.then(() => record as T)), open };
}

/** The lag the flow holds for one source, or undefined. */
function lagOf(flow: Flow | undefined, source: string): SourceLag | undefined {
  return flow ? snapshotMetrics(flow).lag.find((l) => l.source === source) : undefined;
}

/** The value of a Prometheus sample with exactly these labels, or undefined. */
function sample(text: string, name: string, labels: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${name}${labels} `));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(" ") + 1));
}

describe("consumer lag", () => {
  test("fromRedisStream reports the group's lag as Redis does, and 0 once every entry is acknowledged", async () => {
    const stream = redis.key();
    const group = 'lake "one"\\';
    for (let i = 1; i <= COUNT; i++) await redis.client.send("XADD", [stream, "*", "data", JSON.stringify({ id: i })]);
    const brokerSays = async () => {
      const groups = (await redis.client.send("XINFO", ["GROUPS", stream])) as Record<string, unknown>[];
      const info = groups.find((g) => g.name === group) as { lag: number; pending: number };
      return { undelivered: Number(info.lag), pending: Number(info.pending) };
    };
    const dir = await tempDir("sluice-lag-redis-");
    const gate = valve<v.InferOutput<typeof Entry>>();
    const stop = new AbortController();
    let flow: Flow | undefined;
    try {
      const running = run(
        fromRedisStream({ url: REDIS, stream, group, from: "start", batchSize: HELD, maxUnacked: HELD, blockMs: 50, lagIntervalMs: 20 }).pipe(
          gate.operator,
          toParquet(join(dir.path, "events"), { schema: Entry, maxFileAgeMs: 50 }),
        ),
        { signal: stop.signal, onStart: (f) => (flow = f) },
      );
      // Reading pauses with HELD entries delivered and none acknowledged: a still state to compare.
      await until("a batch held and its lag reported", async () => {
        const lag = lagOf(flow, `redis:${stream}`);
        return lag?.pending === HELD && lag.messages === COUNT;
      });
      const broker = await brokerSays();
      expect(broker).toEqual({ undelivered: COUNT - HELD, pending: HELD });
      const held = lagOf(flow, `redis:${stream}`);
      expect(held).toMatchObject({ source: `redis:${stream}`, partition: "0", group, messages: broker.undelivered + broker.pending, pending: broker.pending });

      // Labels escaped (the group name holds a quote and a backslash), no URL in them.
      const text = formatPrometheus(snapshotMetrics(flow as Flow));
      const labels = `{source="redis:${stream}",partition="0",group="lake \\"one\\"\\\\"}`;
      expect(text).toContain("# TYPE sluice_source_lag gauge");
      expect(sample(text, "sluice_source_lag", labels)).toBe(COUNT);
      expect(sample(text, "sluice_source_pending", labels)).toBe(HELD);
      expect(text).not.toContain("6379");

      gate.open();
      await until("everything acknowledged and a lag of 0 reported", async () => lagOf(flow, `redis:${stream}`)?.messages === 0 && (flow?.stats.written ?? 0) === COUNT);
      expect(await brokerSays()).toEqual({ undelivered: 0, pending: 0 });
      expect(lagOf(flow, `redis:${stream}`)?.pending).toBe(0);
      stop.abort();
      const summary = await running;
      expect(summary.written).toBe(COUNT);
      const [row] = await query(`SELECT count(*) AS n, count(DISTINCT id) AS d FROM ${dataset(join(dir.path, "events"))}`);
      expect(row).toEqual({ n: String(COUNT), d: String(COUNT) });
    } finally {
      gate.open();
      stop.abort();
      await dir.remove();
    }
  });

  test("fromJetStream reports num_pending + num_ack_pending as the server does, and 0 once every message is acknowledged", async () => {
    const stream = await nats.create();
    const consumer = "lake";
    const nc = await connect({ servers: NATS });
    const dir = await tempDir("sluice-lag-js-");
    const gate = valve<v.InferOutput<typeof Entry>>();
    const stop = new AbortController();
    let flow: Flow | undefined;
    try {
      const js = jetstream(nc);
      for (let i = 1; i <= COUNT; i++) await js.publish(`${stream}.e`, JSON.stringify({ id: i }));
      const jsm = await jetstreamManager(nc);
      const brokerSays = async () => {
        const info = await jsm.consumers.info(stream, consumer);
        return { undelivered: info.num_pending, pending: info.num_ack_pending };
      };
      const running = run(
        fromJetStream({ servers: NATS, stream, consumer, batch: HELD, maxAckPending: HELD, lagIntervalMs: 20 }).pipe(
          gate.operator,
          toParquet(join(dir.path, "events"), { schema: Entry, maxFileAgeMs: 50 }),
        ),
        { signal: stop.signal, onStart: (f) => (flow = f) },
      );
      await until("a batch held and its lag reported", async () => {
        const lag = lagOf(flow, `jetstream:${stream}`);
        return lag?.pending === HELD && lag.messages === COUNT;
      });
      const broker = await brokerSays();
      expect(broker).toEqual({ undelivered: COUNT - HELD, pending: HELD });
      expect(lagOf(flow, `jetstream:${stream}`)).toMatchObject({ partition: "0", group: consumer, messages: broker.undelivered + broker.pending, pending: broker.pending });

      // The live progress: total lag in the plain line and the JSON fields.
      const snapshot = snapshotMetrics(flow as Flow);
      const rates = progressRates(snapshot, snapshot, snapshot.at);
      expect(lagSummary(snapshot)?.total).toBe(COUNT);
      expect(renderProgressLine(snapshot, rates)).toContain(`lag ${COUNT}`);
      expect(progressFields(snapshot, rates)).toMatchObject({ lag: COUNT, lagWorst: { source: `jetstream:${stream}`, partition: "0", group: consumer, messages: COUNT } });
      const text = formatPrometheus(snapshot);
      expect(sample(text, "sluice_source_lag", `{source="jetstream:${stream}",partition="0",group="lake"}`)).toBe(COUNT);

      gate.open();
      await until("everything acknowledged and a lag of 0 reported", async () => lagOf(flow, `jetstream:${stream}`)?.messages === 0 && (flow?.stats.written ?? 0) === COUNT);
      expect(await brokerSays()).toEqual({ undelivered: 0, pending: 0 });
      stop.abort();
      expect((await running).written).toBe(COUNT);
    } finally {
      gate.open();
      stop.abort();
      await nc.close();
      await dir.remove();
    }
  });

  test("fromKafka reports the high watermark minus the group's committed offset, and 0 once every offset is committed", async () => {
    const mock = await startKafkaMock(["lag"]);
    const producer = new Producer({ clientId: "test-producer", bootstrapBrokers: [mock.brokers] });
    const reader = new Consumer({ clientId: "test-reader", groupId: "lag-lake", bootstrapBrokers: [mock.brokers] });
    const dir = await tempDir("sluice-lag-kafka-");
    const gate = valve<v.InferOutput<typeof Entry>>();
    const stop = new AbortController();
    let flow: Flow | undefined;
    try {
      const messages = Array.from({ length: COUNT }, (_, i) => ({ topic: "lag", partition: 0, value: Buffer.from(JSON.stringify({ id: i + 1 })) }));
      await producer.send({ messages, acks: -1 });
      const brokerSays = async () => {
        const [high, committed] = await Promise.all([
          reader.listOffsets({ topics: ["lag"], partitions: { lag: [0] } }),
          reader.listCommittedOffsets({ topics: [{ topic: "lag", partitions: [0] }] }),
        ]);
        return { high: Number(high.get("lag")?.[0]), committed: Number(committed.get("lag")?.[0] ?? -1n) };
      };
      const running = run(
        fromKafka({ brokers: mock.brokers, topic: "lag", group: "lag-lake", from: "start", maxUncommitted: HELD, lagIntervalMs: 20 }).pipe(
          gate.operator,
          toParquet(join(dir.path, "events"), { schema: Entry, maxFileAgeMs: 50 }),
        ),
        { signal: stop.signal, onStart: (f) => (flow = f) },
      );
      // Nothing is committed while the valve holds the records: the lag is the whole log.
      await until("the partition's lag reported", async () => lagOf(flow, "kafka:lag")?.messages === COUNT);
      expect(await brokerSays()).toEqual({ high: COUNT, committed: -1 });
      expect(lagOf(flow, "kafka:lag")).toMatchObject({ partition: "0", group: "lag-lake", pending: undefined });
      expect(sample(formatPrometheus(snapshotMetrics(flow as Flow)), "sluice_source_lag", '{source="kafka:lag",partition="0",group="lag-lake"}')).toBe(COUNT);

      gate.open();
      await until("every offset committed and a lag of 0 reported", async () => lagOf(flow, "kafka:lag")?.messages === 0 && (flow?.stats.written ?? 0) === COUNT);
      expect(await brokerSays()).toEqual({ high: COUNT, committed: COUNT });
      stop.abort();
      expect((await running).written).toBe(COUNT);
    } finally {
      gate.open();
      stop.abort();
      await reader.close(true);
      await producer.close(true);
      await mock.stop();
      await dir.remove();
    }
  });

  test("fromJetStream reads the lag once more after the last acks, so the figure after the run is the broker's final one", async () => {
    const stream = await nats.create();
    const nc = await connect({ servers: NATS });
    const dir = await tempDir("sluice-lag-last-");
    const stop = new AbortController();
    let flow: Flow | undefined;
    try {
      const js = jetstream(nc);
      for (let i = 1; i <= COUNT; i++) await js.publish(`${stream}.e`, JSON.stringify({ id: i }));
      // No periodic reading during the run: only the first one, and the one after the last acks.
      const running = run(
        (fromJetStream({ servers: NATS, stream, consumer: "last", lagIntervalMs: 600_000 }) as Observable<v.InferOutput<typeof Entry>>).pipe(toParquet(join(dir.path, "events"), { schema: Entry, maxFileAgeMs: 50 })),
        { signal: stop.signal, onStart: (f) => (flow = f) },
      );
      await until("the first lag read", () => lagOf(flow, `jetstream:${stream}`) !== undefined);
      expect(lagOf(flow, `jetstream:${stream}`)?.messages).toBe(COUNT);
      await until("every message written", () => (flow?.stats.written ?? 0) === COUNT);
      expect(lagOf(flow, `jetstream:${stream}`)?.messages).toBe(COUNT);
      stop.abort();
      await running;
      expect(lagOf(flow, `jetstream:${stream}`)).toMatchObject({ messages: 0, pending: 0 });
      const info = await (await jetstreamManager(nc)).consumers.info(stream, "last");
      expect(info.num_pending + info.num_ack_pending).toBe(0);
    } finally {
      stop.abort();
      await nc.close();
      await dir.remove();
    }
  });

  test("several partitions: the progress shows the total and the worst, Prometheus one escaped series each, a revoked one disappears", () => {
    const flow = createFlow();
    const odd = 'ev"ents\\\n2';
    setLag(flow, { source: "kafka:events", partition: "10", group: "lake" }, { messages: 5 });
    setLag(flow, { source: "kafka:events", partition: "2", group: "lake" }, { messages: 20_000 });
    setLag(flow, { source: `redis:${odd}`, partition: "0", group: "g" }, { messages: 7, pending: 3 });
    // Not a number of messages: ignored, the last figure stays.
    setLag(flow, { source: "kafka:events", partition: "10", group: "lake" }, { messages: Number.NaN });
    const snapshot = snapshotMetrics(flow);
    expect(snapshot.lag.map((l) => `${l.source}/${l.partition}`)).toEqual(["kafka:events/2", "kafka:events/10", `redis:${odd}/0`]);
    const rates = progressRates(snapshot, snapshot, snapshot.at);
    expect(renderProgressBlock(snapshot, rates, 200).at(-1)).toStartWith("lag 20,012, worst kafka:events/2 20,000");
    expect(renderProgressLine(snapshot, rates)).toContain("lag 20,012, worst kafka:events/2 20,000");
    const text = formatPrometheus(snapshot);
    expect(text).toContain('sluice_source_lag{source="kafka:events",partition="10",group="lake"} 5\n');
    expect(text).toContain('sluice_source_lag{source="redis:ev\\"ents\\\\\\n2",partition="0",group="g"} 7\n');
    expect(text).toContain('sluice_source_pending{source="redis:ev\\"ents\\\\\\n2",partition="0",group="g"} 3\n');
    // Only Redis and JetStream say how many are pending.
    expect(text).not.toContain('sluice_source_pending{source="kafka');
    // Every sample line is one line: the newline in the name is escaped.
    for (const line of text.split("\n").filter((l) => l.startsWith("sluice_source_"))) expect(line).toMatch(/ \d+$/);
    deleteLag(flow, { source: "kafka:events", partition: "2", group: "lake" });
    expect(lagSummary(snapshotMetrics(flow))).toMatchObject({ total: 12, worst: { source: `redis:${odd}`, messages: 7 } });
  });

  test("a run without broker sources has no lag figures, and the progress shows none", () => {
    const snapshot = snapshotMetrics(createFlow());
    expect(formatPrometheus(snapshot)).not.toContain("sluice_source_lag");
    expect(renderProgressLine(snapshot, progressRates(snapshot, snapshot, snapshot.at))).not.toContain("lag");
    expect(progressFields(snapshot, progressRates(snapshot, snapshot, snapshot.at))).not.toHaveProperty("lag");
  });
});
