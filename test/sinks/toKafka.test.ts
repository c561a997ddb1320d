import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { Consumer } from "@platformatic/kafka";
import { from, map, tap } from "rxjs";
import * as v from "valibot";
import { deadLetter, validate } from "../../operators/index.ts";
import type { DeadLetter } from "../../src/deadletter/entry.ts";
import type { Flow } from "../../src/flow/flow.ts";
import { fromNdjson, run, toKafka } from "../../src/index.ts";
import type { KafkaPublished } from "../../src/sinks/toKafka.ts";
import { tempDir } from "../helpers/duckdb.ts";
import { type KafkaMock, startKafkaMock } from "../support/kafka-mock/mock.ts";

let mock: KafkaMock;
let dir: { path: string; remove: () => Promise<void> };

// Every response of this broker takes 20 ms: acknowledgements lag behind a fast source.
beforeAll(async () => {
  mock = await startKafkaMock(["round", "keys", "slow", "empty"], { rttMs: 20 });
  dir = await tempDir("sluice-to-kafka-");
});

afterAll(async () => {
  await mock?.stop();
  await dir?.remove();
});

/** One message as the broker stores it. */
interface Stored {
  readonly offset: number;
  readonly key: Buffer | undefined;
  readonly value: Buffer;
}

/**
 * The topic's first `count` messages (partition 0), fetched straight from the partition's leader
 * with the client's Fetch request: no consumer group, so no seconds spent forming one.
 */
async function readBack(topic: string, count: number): Promise<Stored[]> {
  const consumer = new Consumer({ clientId: "test-reader", groupId: "unused", bootstrapBrokers: [mock.brokers] });
  try {
    const metadata = await consumer.metadata({ topics: [topic] });
    const info = metadata.topics.get(topic);
    if (!info) throw new Error(`no topic ${topic}`);
    const node = info.partitions[0]?.leader ?? 1;
    const stored: Stored[] = [];
    while (stored.length < count) {
      const partition = { partition: 0, currentLeaderEpoch: -1, fetchOffset: BigInt(stored.length), lastFetchedEpoch: -1, partitionMaxBytes: 1 << 20 };
      const response = await consumer.fetch({ node, topics: [{ topicId: info.id, partitions: [partition] }], maxWaitTime: 100 });
      const batches = response.responses[0]?.partitions[0]?.records ?? [];
      if (batches.length === 0) throw new Error(`${topic} holds ${stored.length} messages, expected ${count}`);
      for (const batch of batches) {
        for (const record of batch.records) {
          const offset = Number(batch.firstOffset + BigInt(record.offsetDelta));
          if (offset === stored.length) stored.push({ offset, key: record.key ?? undefined, value: record.value ?? Buffer.alloc(0) });
        }
      }
    }
    return stored;
  } finally {
    await consumer.close(true);
  }
}

/** The topic's end offset (partition 0): how many messages it holds. */
async function endOffset(topic: string): Promise<number> {
  const consumer = new Consumer({ clientId: "test-reader", groupId: "offsets", bootstrapBrokers: [mock.brokers] });
  try {
    const offsets = await consumer.listOffsets({ topics: [topic] });
    return Number(offsets.get(topic)?.[0] ?? -1n);
  } finally {
    await consumer.close(true);
  }
}

describe("toKafka", () => {
  test("publishes every record as JSON, keyed by a field, and the client reads back the same values", async () => {
    const records = Array.from({ length: 1200 }, (_, i) => ({
      id: i,
      user: i % 7 === 0 ? null : `user-${i % 13}`,
      name: ["", "é😀", "tab\there", "quote\"s", "x".repeat(300)][i % 5] as string,
      score: i % 11 === 0 ? Number.MAX_SAFE_INTEGER : i / 4,
      big: 12345678901234567890n + BigInt(i),
      tags: i % 3 === 0 ? [] : ["a", `t${i}`],
    }));
    const batches: KafkaPublished[] = [];
    const summary = await run(from(records).pipe(toKafka({ brokers: mock.brokers, topic: "round", key: "user", batchSize: 100 })), {
      onValue: (b) => batches.push(b as KafkaPublished),
    });
    expect(summary.written).toBe(1200);
    expect(summary.in).toBe(1200);
    expect(batches.reduce((n, b) => n + b.messages, 0)).toBe(1200);
    expect(batches.every((b) => b.messages <= 100 && b.target === "kafka:round")).toBe(true);
    // Each batch's first offset, in order: the broker stored them one after another.
    const firsts = batches.map((b) => b.offsets[0]?.offset);
    let expected = 0;
    for (const [i, b] of batches.entries()) {
      expect(firsts[i]).toBe(expected);
      expected += b.messages;
    }

    const messages = await readBack("round", 1200);
    expect(messages.map((m) => JSON.parse(m.value.toString("utf8")))).toEqual(
      records.map((r) => ({ ...r, big: r.big.toString() })),
    );
    expect(messages.map((m) => (m.key && m.key.length > 0 ? m.key.toString() : null))).toEqual(records.map((r) => r.user));
    expect(messages.map((m) => m.offset)).toEqual(records.map((_, i) => i));
  });

  test("dead-letters records it cannot publish (a cycle, a value too large, a bad key) and publishes the rest", async () => {
    const cyclic: { id: number; self?: unknown } = { id: 2 };
    cyclic.self = cyclic;
    let nested: unknown = 0;
    for (let i = 0; i < 200_000; i++) nested = [nested];
    const records: unknown[] = [
      { id: 1, k: "a" },
      cyclic,
      { id: 3, k: "b", blob: "x".repeat(5000) },
      { id: 4, k: { not: "text" } },
      { id: 5, k: 17 },
      { id: 6, deep: nested },
    ];
    const letters: DeadLetter[] = [];
    const summary = await run(
      from(records).pipe(
        deadLetter((d) => letters.push(d)),
        toKafka({ brokers: mock.brokers, topic: "keys", key: "k", maxMessageBytes: 4096 }),
      ),
    );
    expect(summary.written).toBe(2);
    expect(letters.map((d) => [d.line, d.stage])).toEqual([
      [2, "write"],
      [3, "write"],
      [4, "write"],
      [6, "write"],
    ]);
    expect(letters[0]?.error).toContain('topic "keys"');
    expect(letters[1]?.error).toContain("over maxMessageBytes (4096)");
    expect(letters[2]?.error).toContain('the key field "k" holds object');
    const messages = await readBack("keys", 2);
    expect(messages.map((m) => [m.key?.toString(), JSON.parse(m.value.toString()).id])).toEqual([
      ["a", 1],
      ["17", 5],
    ]);
  });

  test("holds the gate while maxInFlight records wait for acknowledgement, so the source never runs ahead", async () => {
    const COUNT = 10_000;
    const line = (i: number) => JSON.stringify({ id: i, pad: "p".repeat(1000) });
    const input = join(dir.path, "slow.ndjson");
    await Bun.write(input, `${Array.from({ length: COUNT }, (_, i) => line(i)).join("\n")}\n`);
    const Row = v.object({ id: v.number(), pad: v.string() });
    let flow: Flow | undefined;
    let mostHeld = 0;
    let mostAhead = 0;
    let gateSeen = false;
    const summary = await run(
      fromNdjson(input).pipe(
        validate(Row),
        deadLetter(join(dir.path, "dead")),
        tap(() => {
          const f = flow as Flow;
          // Records the sink holds unacknowledged, and records read that are not yet published.
          mostHeld = Math.max(mostHeld, f.stats.buffered);
          mostAhead = Math.max(mostAhead, f.stats.in - f.stats.written);
          if (f.gate) gateSeen = true;
        }),
        toKafka({ brokers: mock.brokers, topic: "slow", batchSize: 100, maxInFlight: 500 }),
      ),
      { onStart: (f) => (flow = f) },
    );
    expect(summary.written).toBe(COUNT);
    expect(await endOffset("slow")).toBe(COUNT);
    expect(gateSeen).toBe(true);
    // At most maxInFlight held, plus the rest of the source's chunk (1 MiB: about 1,000 of these lines) read before it checks the gate.
    expect(mostHeld).toBeLessThanOrEqual(500 + 1100);
    expect(mostAhead).toBeLessThanOrEqual(500 + 1100);
    expect(mostAhead).toBeLessThan(COUNT / 3);
  });

  test("an empty source publishes nothing and completes", async () => {
    const summary = await run(from([] as { id: number }[]).pipe(toKafka({ brokers: mock.brokers, topic: "empty" })));
    expect(summary.written).toBe(0);
    expect(summary.emitted).toBe(0);
  });

  test("a source error fails the run with that error", async () => {
    const published: KafkaPublished[] = [];
    const failing = from([1, 2, 3]).pipe(
      map((n) => {
        if (n === 3) throw new Error("source broke at 3");
        return { n };
      }),
    );
    const error = await run(
      failing.pipe(toKafka({ brokers: mock.brokers, topic: "empty", encode: (r) => `n=${r.n}`, key: (r) => new Uint8Array([r.n]) })),
      { onValue: (b) => published.push(b as KafkaPublished) },
    ).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(error?.message).toBe("source broke at 3");
  });

  test("an unreachable broker errors the run once retry runs out, naming it and the topic, never the credentials", async () => {
    const error = await run(
      from([{ id: 1 }]).pipe(
        toKafka({
          brokers: "127.0.0.1:1",
          topic: "t",
          sasl: { mechanism: "SCRAM-SHA-256", username: "svc-user", password: "s3cret-pw" },
          connectTimeoutMs: 1000,
          retry: { timeoutMs: 500, initialBackoffMs: 50 },
        }),
      ),
    ).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(error?.message).toContain("toKafka: publishing 1 records failed");
    expect(error?.message).toContain('Kafka 127.0.0.1:1, topic "t"');
    expect(error?.message).toMatch(/gave up after [2-9]\d* failed attempts over \d+\.\d s: retry\.timeoutMs 500/);
    expect(error?.message).not.toContain("s3cret-pw");
    expect(error?.message).not.toContain("svc-user");
  });
});
