import { describe, expect, expectTypeOf, test } from "bun:test";
import { join } from "node:path";
import { EMPTY, from, NEVER, Observable, of, throwError } from "rxjs";
import * as v from "valibot";
import { deadLetter, validate } from "../../operators/index.ts";
import type { DeadLetter } from "../../src/deadletter/entry.ts";
import type { Flow } from "../../src/flow/flow.ts";
import { fromJetStream, fromNdjson, type Published, run, toJetStream, toParquet } from "../../src/index.ts";
import { expectAckedAfterReply, expectHeldAtGate, jetStreams, NATS as SERVERS, redisStreams, until } from "../helpers/brokers.ts";
import { dataset, query } from "../helpers/duckdb.ts";
import { inputFolder } from "../helpers/inputs.ts";
import { pausableProxy } from "../helpers/pausableProxy.ts";

const js = jetStreams("sluice-pub");
const redis = redisStreams("sluice-chain-js");
const dir = inputFolder("sluice-tojetstream-", ".ndjson");

/** Records with the values a JSON message must carry unchanged. */
function edgeRecord(i: number): Record<string, unknown> {
  return {
    i,
    text: ["", "plain", "ünïcödé ✓ 𝄞", "quote \" and \\ and \n newline", "\u0000nul"][i % 5],
    n: [0, -1.5, 2 ** 53 - 1, -(2 ** 53) + 1, 1e-300][i % 5],
    none: null,
    list: Array.from({ length: i % 4 }, (_, k) => k),
    nested: { deep: { deeper: [i, { x: `v${i}` }] } },
  };
}

describe("toJetStream", () => {
  test.each([0, 1, 499, 500, 501, 1234])("publishes %i records in order with their values unchanged, one Published per acknowledged batch", async (count) => {
    const stream = await js.create();
    const records = Array.from({ length: count }, (_, i) => edgeRecord(i));
    const batches: Published[] = [];
    const summary = await run(from(records).pipe(toJetStream({ servers: SERVERS, subject: `${stream}.edge`, batchSize: 500 })), {
      onValue: (p) => batches.push(p as Published),
    });
    expect(summary.written).toBe(count);
    expect(summary.in).toBe(count);
    expect(batches.reduce((n, b) => n + b.messages, 0)).toBe(count);
    expect(batches.every((b) => b.target === `jetstream:${stream}.edge` && b.messages <= 500 && b.duplicates === 0)).toBe(true);
    expect((await js.payloads(stream)).map((p) => JSON.parse(p))).toEqual(records);
  });

  test("writes a bigint within 2^53 as a number and dead-letters what JSON would change, naming the field and the record's line", async () => {
    const stream = await js.create();
    const deep: Record<string, unknown> = {};
    let cursor = deep;
    for (let i = 0; i < 60_000; i++) cursor = cursor.a = {};
    const cyclic: Record<string, unknown> = { id: 6 };
    cyclic.self = cyclic;
    const records: unknown[] = [
      { id: 1, big: 9007199254740991n },
      { id: 2, price: Number.NaN },
      { id: 3, price: Number.POSITIVE_INFINITY },
      { id: 4, big: 12345678901234567890n },
      { id: 5, deep },
      cyclic,
      { id: 7, ok: "last" },
    ];
    const letters: DeadLetter[] = [];
    const summary = await run(from(records).pipe(deadLetter((d) => letters.push(d)), toJetStream({ servers: SERVERS, subject: `${stream}.x` })));
    expect(summary.written).toBe(2);
    expect(summary.deadLetteredByStage).toEqual({ write: 5 });
    expect((await js.payloads(stream)).map((p) => JSON.parse(p))).toEqual([{ id: 1, big: 9007199254740991 }, { id: 7, ok: "last" }]);
    expect(letters.map((d) => d.line)).toEqual([2, 3, 4, 5, 6]);
    expect(letters[0]?.error).toContain(`field "price" holds NaN`);
    expect(letters[1]?.error).toContain(`field "price" holds Infinity`);
    expect(letters[2]?.error).toContain(`field "big" holds 12345678901234567890, beyond 2^53`);
    expect(letters.every((d) => d.stage === "write" && d.error.startsWith(`toJetStream: cannot encode the record for jetstream:${stream}.x`))).toBe(true);
  });

  test("dead-letters a message larger than the server's max_payload and an encode that throws or returns a non-string, and publishes the rest", async () => {
    const stream = await js.create();
    const records = [{ id: 1, s: "x".repeat(2 * 1024 * 1024) }, { id: 2, s: "ok" }, { id: 3, s: "throw" }, { id: 4, s: "number" }, { id: 5, s: "ok" }];
    const letters: DeadLetter[] = [];
    const summary = await run(
      from(records).pipe(
        deadLetter((d) => letters.push(d)),
        toJetStream({
          servers: SERVERS,
          subject: `${stream}.x`,
          encode: (r) => {
            if (r.s === "throw") throw new Error("no encoding for you");
            if (r.s === "number") return 42 as unknown as string;
            return JSON.stringify(r);
          },
        }),
      ),
    );
    expect(summary.written).toBe(2);
    expect(summary.in).toBe(5);
    expect(summary.dropped).toBe(0);
    expect((await js.payloads(stream)).map((p) => JSON.parse(p).id)).toEqual([2, 5]);
    expect(letters.map((d) => [d.line, d.stage])).toEqual([
      [3, "write"],
      [4, "write"],
      [1, "write"],
    ]);
    expect(letters[0]?.error).toContain("no encoding for you");
    expect(letters[1]?.error).toContain("encode returned number");
    expect(letters[2]?.error).toMatch(/the message is 2097\d{3} bytes; NATS nats:\/\/127\.0\.0\.1:4222, subject "[^"]+" \(stream "[^"]+"\) takes at most \d+/);
  });

  test("msgId from a key of the record de-duplicates by that key; a msgId that throws dead-letters the record", async () => {
    const stream = await js.create();
    const letters: DeadLetter[] = [];
    const batches: Published[] = [];
    const records = [{ id: "a", v: 1 }, { id: "b", v: 2 }, { id: "a", v: 3 }, { id: "", v: 4 }];
    const summary = await run(
      from(records).pipe(
        deadLetter((d) => letters.push(d)),
        toJetStream({
          servers: SERVERS,
          subject: `${stream}.x`,
          msgId: (r) => {
            if (!r.id) throw new Error("no id");
            return r.id;
          },
        }),
      ),
      { onValue: (p) => batches.push(p as Published) },
    );
    expect(summary.written).toBe(3);
    expect(batches.reduce((n, b) => n + b.duplicates, 0)).toBe(1);
    expect((await js.payloads(stream)).map((p) => JSON.parse(p).v)).toEqual([1, 2]);
    expect(letters.map((d) => [d.stage, d.line, d.error])).toEqual([["write", 4, `toJetStream: msgId threw for jetstream:${stream}.x: no id`]]);
  });

  test("a re-run of the same input inside the duplicate window stores nothing twice; msgId false stores again", async () => {
    const stream = await js.create();
    const file = join(dir.path, "rerun.ndjson");
    await Bun.write(file, `${Array.from({ length: 1200 }, (_, i) => JSON.stringify({ id: i })).join("\n")}\n`);
    const publish = (options: { msgId?: false }) => {
      const batches: Published[] = [];
      return run(fromNdjson(file).pipe(toJetStream({ servers: SERVERS, subject: `${stream}.x`, ...options })), {
        onValue: (p) => batches.push(p as Published),
      }).then(() => batches.reduce((n, b) => n + b.duplicates, 0));
    };
    expect(await publish({})).toBe(0);
    expect(await publish({})).toBe(1200);
    expect(await js.count(stream)).toBe(1200);
    // Another payload at the same place is another message.
    await Bun.write(file, `${Array.from({ length: 1200 }, (_, i) => JSON.stringify({ id: i, v: 2 })).join("\n")}\n`);
    expect(await publish({})).toBe(0);
    expect(await publish({ msgId: false })).toBe(0);
    expect(await js.count(stream)).toBe(3600);
  });

  test("holds the gate while maxInFlight messages wait for acknowledgements: a slow broker stops the source", async () => {
    const stream = await js.create();
    const TOTAL = 3000;
    await expectHeldAtGate(
      4222,
      300,
      TOTAL,
      (port) => toJetStream({ servers: `nats://127.0.0.1:${port}`, subject: `${stream}.x`, batchSize: 100, maxInFlight: 300 }),
      // The broker stored what was sent: only its answers are late.
      async (acked) => expect(await js.count(stream)).toBeGreaterThan(acked),
    );
    expect((await js.payloads(stream)).map((p) => JSON.parse(p).i)).toEqual(Array.from({ length: TOTAL }, (_, i) => i));
  });

  test("sends at most maxInFlight messages ahead of the acknowledgements even from a source that ignores the gate", async () => {
    const stream = await js.create();
    const proxy = pausableProxy(4222);
    const MAX = 400;
    let acked = 0;
    let paused = false;
    try {
      const records = Array.from({ length: 3000 }, (_, i) => ({ i }));
      const running = run(from(records).pipe(toJetStream({ servers: `nats://127.0.0.1:${proxy.port}`, subject: `${stream}.x`, batchSize: 100, maxInFlight: MAX })), {
        onValue: (p) => {
          acked += (p as Published).messages;
          if (!paused) {
            paused = true;
            proxy.pause();
          }
        },
      });
      await until("the first acknowledgement", () => paused);
      // The server stores what reaches it: while its answers are held back, that is what was sent.
      const stored = () => js.count(stream);
      await until("the window sent", async () => (await stored()) >= acked + MAX - 100);
      await Bun.sleep(200);
      expect(await stored()).toBeLessThanOrEqual(acked + MAX);
      proxy.resume();
      expect((await running).written).toBe(3000);
    } finally {
      proxy.resume();
      proxy.close();
    }
  });

  test("the record type flows from the pipeline into encode and msgId; the sink emits Published", () => {
    const Order = v.object({ id: v.string(), amount: v.number() });
    const out = of({ id: "o1", amount: 2 }).pipe(
      validate(Order),
      toJetStream({
        subject: "orders.x",
        encode: (order) => {
          expectTypeOf(order).toEqualTypeOf<{ id: string; amount: number }>();
          return `${order.id}:${order.amount}`;
        },
        msgId: (order) => order.id,
      }),
    );
    expectTypeOf(out).toEqualTypeOf<Observable<Published>>();
  });

  test("an unreachable server errors the run once retry runs out, naming it without its credentials", async () => {
    const sink = toJetStream({ servers: "nats://alice:s3cretpw@127.0.0.1:1", subject: "x.y", retry: { timeoutMs: 300, initialBackoffMs: 20 } });
    const error = await run(from([{ a: 1 }]).pipe(sink)).catch((e: Error) => e);
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toMatch(/^toJetStream: connecting failed \(NATS nats:\/\/\*\*\*:\*\*\*@127\.0\.0\.1:1, subject "x\.y"\)/);
    expect((error as Error).message).toContain("gave up after");
    expect((error as Error).message).not.toContain("s3cretpw");
    expect((error as Error).message).not.toContain("alice");
  });

  test.each([
    ["", "is required"],
    ["orders.>", 'holds a wildcard ("*" or ">")'],
    ["orders.*.eu", 'holds a wildcard ("*" or ">")'],
    ["orders. eu", "holds white space"],
    ["orders..eu", "has an empty token"],
    ["orders.eu.", "has an empty token"],
  ])("refuses the subject %j at once: it %s", (subject, problem) => {
    expect(() => toJetStream({ subject })).toThrow(`toJetStream: options.subject ${subject === "" ? "" : `${JSON.stringify(subject)} `}${problem}`);
  });

  test("publishes to a subject with non-ASCII tokens", async () => {
    const stream = await js.create();
    const summary = await run(from([{ a: "✓" }]).pipe(toJetStream({ servers: SERVERS, subject: `${stream}.bestellungen.ünï` })));
    expect(summary.written).toBe(1);
    expect(await js.payloads(stream)).toEqual([`{"a":"✓"}`]);
  });

  test("a subject no stream takes errors the run at the start, saying so", async () => {
    const error = await run(from([{ a: 1 }]).pipe(toJetStream({ servers: SERVERS, subject: `no-stream-${process.pid}.x` }))).catch((e: Error) => e);
    expect((error as Error).message).toContain(`toJetStream: finding the stream failed (NATS nats://127.0.0.1:4222, subject "no-stream-${process.pid}.x")`);
    expect((error as Error).message).toContain("no JetStream stream takes this subject");
  });

  test("completes on an empty source, passes a source error on, and an unsubscribe leaves no message half-held", async () => {
    const stream = await js.create();
    expect((await run(EMPTY.pipe(toJetStream({ servers: SERVERS, subject: `${stream}.x` })))).written).toBe(0);
    const failure = await run(throwError(() => new Error("source broke")).pipe(toJetStream({ servers: SERVERS, subject: `${stream}.x` }))).catch((e: Error) => e);
    expect((failure as Error).message).toBe("source broke");
    const published: Published[] = [];
    const subscription = new Observable<{ n: number }>((s) => {
      s.next({ n: 1 });
      return NEVER.subscribe();
    })
      .pipe(toJetStream({ servers: SERVERS, subject: `${stream}.x` }))
      .subscribe((p) => published.push(p));
    await until("the record published", () => published.length === 1);
    subscription.unsubscribe();
    expect((await js.payloads(stream)).map((p) => JSON.parse(p))).toEqual([{ n: 1 }]);
  });

  test("chain: fromRedisStream acknowledges an entry only after toJetStream's PubAck for it", async () => {
    const stream = await js.create();
    const summary = await expectAckedAfterReply(redis.client, redis.key(), (i) => ({ id: i }), 4222, (port) =>
      toJetStream({ servers: `nats://127.0.0.1:${port}`, subject: `${stream}.x`, batchSize: 100, maxInFlight: 2000 }),
    );
    expect(summary.written).toBe(1000);
    expect((await js.payloads(stream)).map((p) => JSON.parse(p).id)).toEqual(Array.from({ length: 1000 }, (_, i) => i + 1));
  });

  test("round trip: NDJSON → toJetStream → fromJetStream → Parquet, read back with DuckDB", async () => {
    const stream = await js.create();
    const file = join(dir.path, "trip.ndjson");
    const rows = Array.from({ length: 2500 }, (_, i) => ({ id: i, name: `n${i % 7}-✓`, amount: i / 4, tags: i % 3 === 0 ? [] : ["a", `t${i}`] }));
    await Bun.write(file, `${rows.map((r) => JSON.stringify(r)).join("\n")}\n`);
    expect((await run(fromNdjson(file).pipe(toJetStream({ servers: SERVERS, subject: `${stream}.trip` })))).written).toBe(2500);
    const Row = v.object({ id: v.number(), name: v.string(), amount: v.number(), tags: v.array(v.string()) });
    const stop = new AbortController();
    let flow: Flow | undefined;
    const out = join(dir.path, "trip");
    const running = run(fromJetStream({ servers: SERVERS, stream, consumer: "trip" }).pipe(validate(Row), deadLetter(join(out, "dead")), toParquet(join(out, "rows"), { schema: Row })), {
      signal: stop.signal,
      onStart: (f) => (flow = f),
    });
    await until("every message read", () => (flow?.stats.in ?? 0) >= 2500);
    stop.abort();
    expect((await running).written).toBe(2500);
    const back = await query(`SELECT id::INT AS id, name, amount, tags FROM ${dataset(join(out, "rows"))} ORDER BY id`);
    expect(back).toEqual(rows);
  });
});
