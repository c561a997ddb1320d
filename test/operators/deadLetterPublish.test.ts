import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { from } from "rxjs";
import * as v from "valibot";
import { deadLetter, validate } from "../../operators/index.ts";
import type { DeadLetter } from "../../src/deadletter/entry.ts";
import type { Flow } from "../../src/flow/flow.ts";
import { fromNdjson, fromRedisStream, readDeadLetters, run, toParquet } from "../../src/index.ts";
import { jetStreams, NATS as SERVERS, REDIS, redisStreams, until } from "../helpers/brokers.ts";
import { dataset, query } from "../helpers/duckdb.ts";
import { inputFolder } from "../helpers/inputs.ts";
import { pausableProxy } from "../helpers/pausableProxy.ts";

const Row = v.object({ id: v.number(), day: v.pipe(v.string(), v.isoDate()) });

const js = jetStreams("sluice-dlpub");
const redis = redisStreams("sluice-dlpub");
const dir = inputFolder("sluice-dlpub-", ".ndjson");

/** The dead letters published to a JetStream stream, in stream order. */
async function streamEntries(stream: string): Promise<DeadLetter[]> {
  return (await js.payloads(stream)).map((text) => JSON.parse(text) as DeadLetter);
}

/** The dead letters published to a Redis stream, in stream order. */
async function redisEntries(key: string): Promise<DeadLetter[]> {
  return (await redis.entries(key)).map((fields) => JSON.parse(fields[1] as string) as DeadLetter);
}

async function folderEntries(folder: string): Promise<DeadLetter[]> {
  const out: DeadLetter[] = [];
  for await (const entry of readDeadLetters(folder)) out.push(entry);
  return out;
}

/** NDJSON lines: every 7th fails validation, every 11th is not JSON, line 50 holds a huge raw text. */
async function input(name: string, count: number): Promise<{ file: string; bad: number }> {
  const lines: string[] = [];
  let bad = 0;
  for (let i = 1; i <= count; i++) {
    if (i === 50) {
      lines.push(JSON.stringify({ id: i, day: "x".repeat(200_000) }));
      bad++;
    } else if (i % 11 === 0) {
      lines.push(`{"id": ${i}, "day": "2024-01-0`);
      bad++;
    } else if (i % 7 === 0) {
      lines.push(JSON.stringify({ id: i, day: "2024-13-40", "ünï": "✓" }));
      bad++;
    } else lines.push(JSON.stringify({ id: i, day: `2024-01-0${(i % 3) + 1}` }));
  }
  const file = join(dir.path, `${name}.ndjson`);
  await Bun.write(file, `${lines.join("\n")}\n`);
  return { file, bad };
}

describe("deadLetter(target, { publish })", () => {
  test("publishes every dead letter to a JetStream subject as the same entry the folder holds, once each", async () => {
    const stream = await js.create();
    const { file, bad } = await input("js", 600);
    const out = join(dir.path, "js");
    const summary = await run(
      fromNdjson(file).pipe(
        validate(Row),
        deadLetter(join(out, "dead"), { publish: { jetstream: { servers: SERVERS, subject: `${stream}.dead` }, batchSize: 20 } }),
        toParquet(join(out, "rows"), { schema: Row, partitionBy: ["day"] }),
      ),
    );
    expect(summary.deadLettered).toBe(bad);
    const folder = await folderEntries(join(out, "dead"));
    expect(folder.length).toBe(bad);
    expect(await streamEntries(stream)).toEqual(folder);
    expect(folder.find((d) => d.line === 50)?.raw.length).toBeLessThan(70_000);
    const [row] = await query(`SELECT count(*)::INT AS n FROM ${dataset(join(out, "rows"))}`);
    expect(row?.n).toBe(600 - bad);
  });

  test("publishes every dead letter to a Redis stream, with a function target as well", async () => {
    const key = redis.key();
    const { file, bad } = await input("redis", 300);
    const handed: DeadLetter[] = [];
    const summary = await run(fromNdjson(file).pipe(validate(Row), deadLetter((d) => handed.push(d), { publish: { redis: { url: REDIS, stream: key } } })));
    expect(summary.deadLettered).toBe(bad);
    expect(await redisEntries(key)).toEqual(JSON.parse(JSON.stringify(handed)));
  });

  test("a dead letter is durable only once published: a broker source does not acknowledge it while the broker's ack is late", async () => {
    const stream = await js.create();
    const source = redis.key();
    const proxy = pausableProxy(4222);
    const out = join(dir.path, "durable");
    try {
      await redis.client.send("XGROUP", ["CREATE", source, "g", "0", "MKSTREAM"]);
      const stop = new AbortController();
      let flow: Flow | undefined;
      const running = run(
        fromRedisStream({ url: REDIS, stream: source, group: "g", blockMs: 20 }).pipe(
          validate(Row),
          deadLetter(join(out, "dead"), { maxFileAgeMs: 20, publish: { jetstream: { servers: `nats://127.0.0.1:${proxy.port}`, subject: `${stream}.dead` } } }),
          toParquet(join(out, "rows"), { schema: Row, maxFileAgeMs: 20 }),
        ),
        { signal: stop.signal, onStart: (f) => (flow = f) },
      );
      await until("the publisher connected", () => proxy.received > 0);
      await Bun.sleep(50);
      proxy.pause();
      for (let i = 1; i <= 100; i++) {
        const data = i === 40 ? JSON.stringify({ id: i, day: "never" }) : JSON.stringify({ id: i, day: "2024-02-01" });
        await redis.client.send("XADD", [source, "*", "data", data]);
      }
      const pending = async () => ((await redis.client.send("XPENDING", [source, "g"])) as [number])[0];
      await until("every entry read", () => (flow?.stats.in ?? 0) >= 100);
      // The rows before line 40 commit and are acknowledged; line 40's dead letter is in its file but not on the stream.
      await until("the rows before the dead letter acknowledged", async () => (await pending()) === 61);
      await until("the dead letter's file committed", async () => (await folderEntries(join(out, "dead"))).length === 1);
      for (let i = 0; i < 10; i++) {
        expect(await pending()).toBe(61);
        await Bun.sleep(10);
      }
      proxy.resume();
      await until("everything acknowledged", async () => (await pending()) === 0);
      stop.abort();
      const summary = await running;
      expect(summary.written).toBe(99);
      expect((await streamEntries(stream)).map((d) => [d.stage, JSON.parse(d.raw).id])).toEqual([["validate", 40]]);
    } finally {
      proxy.resume();
      proxy.close();
    }
  });

  test("an entry too large for the broker (a huge issue list) is published without its issues; the folder keeps them", async () => {
    const stream = await js.create();
    const Tags = v.object({ tags: v.array(v.string()) });
    const out = join(dir.path, "huge");
    const summary = await run(
      from([{ tags: Array.from({ length: 30_000 }, (_, i) => i) }, { tags: ["ok"] }]).pipe(
        validate(Tags),
        deadLetter(join(out, "dead"), { publish: { jetstream: { servers: SERVERS, subject: `${stream}.dead` } } }),
      ),
    );
    expect(summary.deadLettered).toBe(1);
    const [kept] = await folderEntries(join(out, "dead"));
    expect(kept?.issues?.length).toBe(30_000);
    const [published] = await streamEntries(stream);
    expect(published?.issues).toBeUndefined();
    expect(published?.error).toBe(`${kept?.error} (30000 issues left out of the published entry: the dead-letter folder has them)`);
    expect(published?.raw).toBe(kept?.raw);
  });

  test("a publish target that cannot be reached errors the run once retry runs out, naming it without credentials", async () => {
    const out = join(dir.path, "unreachable");
    const error = await run(
      from([{ id: "not a number", day: "2024-01-01" }]).pipe(
        validate(Row),
        deadLetter(join(out, "dead"), { publish: { redis: { url: "redis://ops:topsecret99@127.0.0.1:1", stream: "dead" }, retry: { timeoutMs: 300, initialBackoffMs: 20 } } }),
      ),
    ).catch((e: Error) => e);
    expect((error as Error).message).toMatch(/^deadLetter: connecting failed \(Redis redis:\/\/\*\*\*:\*\*\*@127\.0\.0\.1:1, stream "dead"\)/);
    expect((error as Error).message).toContain("gave up after");
    expect((error as Error).message).not.toContain("topsecret99");
    // The folder is still the record of what was rejected.
    expect((await folderEntries(join(out, "dead"))).length).toBe(1);
  });

  test("a subject no stream takes errors the run at the start", async () => {
    const error = await run(from([{ id: 1, day: "2024-01-01" }]).pipe(validate(Row), deadLetter(() => {}, { publish: { jetstream: { servers: SERVERS, subject: `nowhere-${process.pid}` } } }))).catch(
      (e: Error) => e,
    );
    expect((error as Error).message).toContain("deadLetter: finding the stream failed");
  });
});
