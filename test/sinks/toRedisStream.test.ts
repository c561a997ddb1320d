import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { from } from "rxjs";
import * as v from "valibot";
import { deadLetter, validate } from "../../operators/index.ts";
import type { DeadLetter } from "../../src/deadletter/entry.ts";
import type { Flow } from "../../src/flow/flow.ts";
import { fromNdjson, fromRedisStream, type Published, run, toParquet, toRedisStream } from "../../src/index.ts";
import { expectAckedAfterReply, expectHeldAtGate, REDIS, redisStreams, until } from "../helpers/brokers.ts";
import { dataset, query } from "../helpers/duckdb.ts";
import { inputFolder } from "../helpers/inputs.ts";

const redis = redisStreams("sluice-toredis");
const dir = inputFolder("sluice-toredis-", ".ndjson");

describe("toRedisStream", () => {
  test.each([0, 1, 499, 500, 501, 1234])("appends %i records in order, values unchanged, under the field fromRedisStream reads", async (count) => {
    const key = redis.key();
    const records = Array.from({ length: count }, (_, i) => ({ i, s: ["", "ünï ✓ 𝄞", "a\nb\"c\\", "\u0000"][i % 4], n: i % 2 ? null : -(i + 1) / 3, nested: { l: [i] } }));
    const batches: Published[] = [];
    const summary = await run(from(records).pipe(toRedisStream({ url: REDIS, stream: key, batchSize: 500 })), { onValue: (p) => batches.push(p as Published) });
    expect(summary.written).toBe(count);
    expect(batches.reduce((n, b) => n + b.messages, 0)).toBe(count);
    expect(batches.every((b) => b.target === `redis:${key}` && b.messages <= 500)).toBe(true);
    const got = await redis.entries(key);
    expect(got.map((f) => f[0])).toEqual(records.map(() => "data"));
    expect(got.map((f) => JSON.parse(f[1] as string))).toEqual(records);
  });

  test("a custom field, an encoder and MAXLEN ~ trimming", async () => {
    const key = redis.key();
    const records = Array.from({ length: 5000 }, (_, i) => ({ id: i }));
    const summary = await run(from(records).pipe(toRedisStream({ url: REDIS, stream: key, field: "payload", maxLen: 1000, encode: (r) => `id=${r.id}` })));
    expect(summary.written).toBe(5000);
    const got = await redis.entries(key);
    // "~": Redis trims whole nodes, so it keeps at least 1000 and fewer than all.
    expect(got.length).toBeGreaterThanOrEqual(1000);
    expect(got.length).toBeLessThan(5000);
    expect(got.at(-1)).toEqual(["payload", "id=4999"]);
    expect(() => toRedisStream({ stream: key, maxLen: 0 })).toThrow("options.maxLen must be a positive integer, got 0");
  });

  test("dead-letters records JSON would change and an encoder's throw, and appends the rest", async () => {
    const key = redis.key();
    const letters: DeadLetter[] = [];
    const summary = await run(
      from([{ id: 1 }, { id: 2, x: Number.NaN }, { id: 3, big: 2n ** 64n }, { id: 4 }]).pipe(deadLetter((d) => letters.push(d)), toRedisStream({ url: REDIS, stream: key })),
    );
    expect(summary.written).toBe(2);
    expect(letters.map((d) => [d.stage, d.line])).toEqual([
      ["write", 2],
      ["write", 3],
    ]);
    expect(letters[1]?.error).toContain(`toRedisStream: cannot encode the record for redis:${key}: field "big" holds 18446744073709551616, beyond 2^53`);
    expect((await redis.entries(key)).map((f) => JSON.parse(f[1] as string).id)).toEqual([1, 4]);
  });

  test("appends to a key with spaces, a newline and non-ASCII characters", async () => {
    const key = redis.track(`${redis.key()} odd\nkey ✓`);
    expect((await run(from([{ a: 1 }]).pipe(toRedisStream({ url: REDIS, stream: key })))).written).toBe(1);
    expect(await redis.entries(key)).toEqual([["data", `{"a":1}`]]);
  });

  test("a key holding another type errors the run, naming the stream", async () => {
    const key = redis.key();
    await redis.client.send("SET", [key, "a string"]);
    const error = await run(from([{ id: 1 }]).pipe(toRedisStream({ url: REDIS, stream: key }))).catch((e: Error) => e);
    expect((error as Error).message).toContain(`toRedisStream: appending 1 entries (XADD) failed (Redis redis://127.0.0.1:6379, stream "${key}"): WRONGTYPE`);
  });

  test("an unreachable Redis errors the run once retry runs out, naming it without the password", async () => {
    const sink = toRedisStream({ url: "redis://app:hunter22secret@127.0.0.1:1/0", stream: "s", retry: { timeoutMs: 300, initialBackoffMs: 20 } });
    const error = await run(from([{ id: 1 }]).pipe(sink)).catch((e: Error) => e);
    expect((error as Error).message).toMatch(/^toRedisStream: connecting failed \(Redis redis:\/\/\*\*\*:\*\*\*@127\.0\.0\.1:1\/0, stream "s"\)/);
    expect((error as Error).message).toContain("gave up after");
    expect((error as Error).message).not.toContain("hunter22secret");
  });

  test("holds the gate while maxInFlight entries wait for replies: a slow Redis stops the source", async () => {
    const key = redis.key();
    const TOTAL = 2000;
    await expectHeldAtGate(6379, 200, TOTAL, (port) => toRedisStream({ url: `redis://127.0.0.1:${port}`, stream: key, batchSize: 50, maxInFlight: 200 }));
    expect((await redis.entries(key)).map((f) => JSON.parse(f[1] as string).i)).toEqual(Array.from({ length: TOTAL }, (_, i) => i));
  });

  test("chain: fromRedisStream acknowledges an entry only after toRedisStream's reply for it, then Parquet from the second stream", async () => {
    const target = redis.key();
    const summary = await expectAckedAfterReply(redis.client, redis.key(), (i) => ({ id: i, day: `2024-03-0${(i % 3) + 1}` }), 6379, (port) =>
      toRedisStream({ url: `redis://127.0.0.1:${port}`, stream: target, batchSize: 100, maxInFlight: 2000 }),
    );
    expect(summary.written).toBe(1000);

    // The second stream, read by sluice again, holds each record once.
    const Row = v.object({ id: v.number(), day: v.string() });
    const out = join(dir.path, "chain");
    const again = new AbortController();
    let second: Flow | undefined;
    const reading = run(
      fromRedisStream({ url: REDIS, stream: target, group: "lake", from: "start", blockMs: 50 }).pipe(
        validate(Row),
        deadLetter(join(out, "dead")),
        toParquet(join(out, "rows"), { schema: Row, partitionBy: ["day"] }),
      ),
      { signal: again.signal, onStart: (f) => (second = f) },
    );
    await until("the second stream read", () => (second?.stats.in ?? 0) >= 1000);
    again.abort();
    expect((await reading).written).toBe(1000);
    const [row] = await query(`SELECT count(*)::INT AS n, count(DISTINCT id)::INT AS d, min(id)::INT AS lo, max(id)::INT AS hi FROM ${dataset(join(out, "rows"))}`);
    expect(row).toEqual({ n: 1000, d: 1000, lo: 1, hi: 1000 });
  });

  test("under a checkpoint, a stopped run resumed with it appends every line of the file once", async () => {
    const key = redis.key();
    const file = join(dir.path, "resume.ndjson");
    // About 5 MB: many read chunks, so the stop lands in the middle.
    await Bun.write(file, `${Array.from({ length: 20_000 }, (_, i) => JSON.stringify({ id: i + 1, pad: "x".repeat(250) })).join("\n")}\n`);
    const checkpoint = join(dir.path, "resume.sqlite");
    const stop = new AbortController();
    let flow: Flow | undefined;
    const first = await run(fromNdjson(file).pipe(toRedisStream({ url: REDIS, stream: key, batchSize: 200, maxInFlight: 1000 })), {
      checkpoint,
      signal: stop.signal,
      onStart: (f) => (flow = f),
      onValue: () => {
        if ((flow?.stats.written ?? 0) >= 3000) stop.abort();
      },
    });
    expect(first.stopped).toBe(true);
    expect(first.written).toBeLessThan(20_000);
    const second = await run(fromNdjson(file).pipe(toRedisStream({ url: REDIS, stream: key })), { checkpoint });
    expect(first.written + second.written).toBe(20_000);
    const ids = (await redis.entries(key)).map((f) => JSON.parse(f[1] as string).id as number);
    expect(ids).toEqual(Array.from({ length: 20_000 }, (_, i) => i + 1));
  });

  test("round trip from a file keeps line positions on the write dead letters", async () => {
    const key = redis.key();
    const file = join(dir.path, "lines.ndjson");
    await Bun.write(file, `{"id":1}\n{"id":2}\n{"id":3}\n`);
    const letters: DeadLetter[] = [];
    const summary = await run(
      fromNdjson(file).pipe(
        deadLetter((d) => letters.push(d)),
        toRedisStream({ url: REDIS, stream: key, encode: (r) => ((r as { id: number }).id === 2 ? (null as unknown as string) : JSON.stringify(r)) }),
      ),
    );
    expect(summary.written).toBe(2);
    expect(letters.map((d) => `${d.source}:${d.line}:${d.raw}`)).toEqual([`${file}:2:{"id":2}`]);
  });
});
