/**
 * Numbers a 64-bit float cannot hold, in the records of the broker sources and of a dead-letter
 * replay: refused as parse dead letters naming the number, as the file sources refuse them, never
 * written as Infinity or with other digits.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { jetstream } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { join } from "node:path";
import type { Observable } from "rxjs";
import * as v from "valibot";
import { deadLetter, validate } from "../../operators/index.ts";
import { readDeadLettersSync } from "../../src/deadletter/read.ts";
import { replayDeadLetters } from "../../src/deadletter/replay.ts";
import type { Flow } from "../../src/flow/flow.ts";
import { fromJetStream, fromNdjson, fromRedisStream, run, toParquet } from "../../src/index.ts";
import { definePipeline, runPipeline } from "../../src/run/pipeline.ts";
import { jetStreams, NATS, REDIS, redisStreams, until } from "../helpers/brokers.ts";
import { dataset, query, tempDir } from "../helpers/duckdb.ts";

const Row = v.object({ id: v.string(), x: v.number() });
/** Payloads in order: two that keep their numbers, three that a float would change. */
const PAYLOADS = [
  '{"id":"fine","x":1.5}',
  '{"id":"inf","x":1e400}',
  '{"id":"zero","x":1e-400}',
  '{"id":"big","x":12345678901234567890}',
  '{"id":"exact","x":12345678901234567000}',
];
const REFUSED = [
  "number 1e400 at x (column 17) is too large for a 64-bit float (it would become Infinity)",
  "number 1e-400 at x (column 18)",
  "number 12345678901234567890 at x (column 17) has more digits than a 64-bit float holds",
];

let dir: { path: string; remove: () => Promise<void> };
beforeAll(async () => {
  dir = await tempDir("sluice-broker-numbers-");
});
afterAll(() => dir.remove());

/** Runs `source` into a dataset until it has read every payload; returns the rows DuckDB reads back and the dead letters. */
async function readAll(name: string, source: Observable<unknown>) {
  const out = join(dir.path, name);
  const stop = new AbortController();
  const summary = await run(
    source.pipe(validate(Row), deadLetter(join(out, "dead-letter")), toParquet(join(out, "data"), { schema: Row })),
    { signal: stop.signal, onStart: (flow: Flow) => void until("every payload read", () => flow.stats.in >= PAYLOADS.length).then(() => stop.abort()) },
  );
  const rows = await query(`SELECT id, x FROM ${dataset(join(out, "data"))} ORDER BY id`);
  const letters = [...readDeadLettersSync(join(out, "dead-letter"))].map((d) => d.entry);
  return { summary, rows, letters };
}

function expectRefused({ summary, rows, letters }: Awaited<ReturnType<typeof readAll>>, prefix: (line: number) => string) {
  expect(summary.written).toBe(2);
  expect(rows).toEqual([
    { id: "exact", x: 12345678901234567000 },
    { id: "fine", x: 1.5 },
  ]);
  expect(letters.map((l) => l.stage)).toEqual(["parse", "parse", "parse"]);
  expect(letters.map((l) => l.raw)).toEqual(PAYLOADS.slice(1, 4));
  letters.forEach((letter, i) => {
    expect(letter.error.startsWith(prefix(letter.line))).toBe(true);
    expect(letter.error).toContain(REFUSED[i] as string);
  });
}

describe("numbers a float cannot hold", () => {
  const redis = redisStreams("sluice-numbers");
  const streams = jetStreams("sluice-numbers");

  test("fromRedisStream refuses them as parse dead letters naming the entry and the number", async () => {
    const stream = redis.key();
    for (const payload of PAYLOADS) await redis.client.send("XADD", [stream, "*", "data", payload]);
    const ids = ((await redis.client.send("XRANGE", [stream, "-", "+"])) as [string, string[]][]).map(([id]) => id);
    const result = await readAll("redis", fromRedisStream({ url: REDIS, stream, group: "g", from: "start", blockMs: 100 }));
    expectRefused(result, () => "");
    result.letters.forEach((letter, i) => {
      expect(letter.error.startsWith(`Redis stream "${stream}", entry ${ids[i + 1]}: number `)).toBe(true);
    });
  });

  test("fromJetStream refuses them as parse dead letters naming the sequence and the number", async () => {
    const stream = await streams.create();
    const nc: NatsConnection = await connect({ servers: NATS });
    for (const payload of PAYLOADS) await jetstream(nc).publish(`${stream}.x`, payload);
    await nc.close();
    const result = await readAll("jetstream", fromJetStream({ servers: NATS, stream, consumer: "lake" }));
    expectRefused(result, (line) => `JetStream stream "${stream}", sequence ${line}: number `);
  });

  test("a replay refuses them again instead of writing Infinity or other digits", async () => {
    const input = join(dir.path, "replay", "in.ndjson");
    await Bun.write(input, `${PAYLOADS.join("\n")}\n`);
    const out = join(dir.path, "replay");
    const pipeline = definePipeline({
      description: "numbers",
      source: () => fromNdjson(input),
      process: (records, { replay }) =>
        records.pipe(
          validate(Row),
          deadLetter(join(out, "dead-letter"), { mode: replay ? "append" : "overwrite" }),
          toParquet(join(out, "data"), { schema: Row, mode: replay ? "append" : "overwrite" }),
        ),
    });
    const first = await runPipeline(pipeline);
    expect(first.deadLettered).toBe(3);
    const result = await replayDeadLetters(join(out, "dead-letter"), pipeline);
    expect(result.replayed).toBe(3);
    expect(result.summary?.written).toBe(0);
    expect(result.summary?.deadLetteredByStage).toEqual({ parse: 3 });
    const rows = await query(`SELECT id, x FROM ${dataset(join(out, "data"))} ORDER BY id`);
    expect(rows).toEqual([
      { id: "exact", x: 12345678901234567000 },
      { id: "fine", x: 1.5 },
    ]);
    const again = [...readDeadLettersSync(join(out, "dead-letter"))].map((d) => d.entry).filter((l) => l.runId === result.runId);
    expect(again.map((l) => [l.source, l.line, l.raw])).toEqual([
      [input, 2, PAYLOADS[1]],
      [input, 3, PAYLOADS[2]],
      [input, 4, PAYLOADS[3]],
    ]);
    again.forEach((letter, i) => {
      expect(letter.error).toContain(REFUSED[i] as string);
    });
  });
});
