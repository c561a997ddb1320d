import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { Consumer, Producer } from "@platformatic/kafka";
import { merge, tap } from "rxjs";
import * as v from "valibot";
import { deadLetter, validate } from "../../operators/index.ts";
import { readDeadLettersSync } from "../../src/deadletter/read.ts";
import type { Flow } from "../../src/flow/flow.ts";
import { fromKafka, run, toParquet } from "../../src/index.ts";
import { kafkaConnection, kafkaInputName, kafkaReason } from "../../src/sources/kafka.ts";
import { dataset, query, tempDir } from "../helpers/duckdb.ts";
import { type KafkaMock, startKafkaMock } from "../support/kafka-mock/mock.ts";

const Entry = v.object({ id: v.number(), zone: v.picklist(["a", "b", "c"]), n: v.number(), name: v.string() });
const ZONES = ["a", "b", "c"] as const;
const TOPICS = ["all", "durable", "resume", "gated", "crash", "decoders", "empty", "branch-0", "branch-1"];

type Kind = "valid" | "notJson" | "notUtf8" | "hugeNumber" | "deep" | "tombstone" | "invalid";

/** What the message at offset `i` holds; every 97 messages, one of each bad kind. */
function kindAt(i: number): Kind {
  const kinds: Record<number, Kind> = { 5: "notJson", 11: "notUtf8", 23: "hugeNumber", 41: "deep", 59: "tombstone", 71: "invalid" };
  return kinds[i % 97] ?? "valid";
}

function valueAt(i: number, bad = true): Buffer | undefined {
  const kind = bad ? kindAt(i) : "valid";
  switch (kind) {
    case "notJson":
      return Buffer.from(`{"id": ${i}, oops`);
    case "notUtf8":
      return Buffer.from([0x7b, 0x22, 0x69, 0x22, 0x3a, 0xff, 0xfe, 0x7d]);
    case "hugeNumber":
      return Buffer.from(`{"id": ${i}, "zone": "a", "n": 12345678901234567890, "name": "x"}`);
    case "deep":
      return Buffer.from(`${"[".repeat(50_000)}${"]".repeat(50_000)}`);
    case "tombstone":
      return undefined;
    case "invalid":
      return Buffer.from(JSON.stringify({ id: i, zone: "z", n: i, name: "x" }));
    default:
      return Buffer.from(JSON.stringify({ id: i, zone: ZONES[i % 3], n: i * 2, name: `é😀 ${i}` }));
  }
}

let mock: KafkaMock;
let clusterId: string;
let producer: Producer;
let dir: { path: string; remove: () => Promise<void> };

/** Produces offsets `from..to` (one partition, in order, so message `i` is at offset `i`). */
async function produce(topic: string, from: number, to: number, bad = true): Promise<void> {
  for (let start = from; start <= to; start += 500) {
    const messages = [];
    for (let i = start; i <= Math.min(to, start + 499); i++) {
      const value = valueAt(i, bad);
      messages.push({ topic, partition: 0, key: Buffer.from(`k${i}`), ...(value ? { value } : {}) });
    }
    await producer.send({ messages, acks: -1 });
  }
}

/** The group's committed offset of partition 0 (-1 when none), read by a client that does not join the group. */
async function committed(topic: string, group: string): Promise<number> {
  const reader = new Consumer({ clientId: "test-reader", groupId: group, bootstrapBrokers: [mock.brokers] });
  try {
    const offsets = await reader.listCommittedOffsets({ topics: [{ topic, partitions: [0] }] });
    return Number(offsets.get(topic)?.[0] ?? -1n);
  } finally {
    await reader.close(true);
  }
}

async function until(what: string, ok: () => boolean | Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await ok())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(10);
  }
}

const parquetIn = (folder: string) => existsSync(folder) && readdirSync(folder, { recursive: true }).some((f) => String(f).endsWith(".parquet"));

beforeAll(async () => {
  mock = await startKafkaMock(TOPICS);
  producer = new Producer({ clientId: "test-producer", bootstrapBrokers: [mock.brokers] });
  // The mock gives topics no id of their own: inputs are named by the cluster's.
  clusterId = (await producer.metadata({ topics: [] })).id;
  dir = await tempDir("sluice-kafka-");
});

afterAll(async () => {
  await producer?.close(true);
  await mock?.stop();
  await dir?.remove();
});

// Forming a group takes the mock about 3 s: the tests (each with its own topic and group) run at once.
describe("fromKafka", () => {
  test.concurrent("writes every good message once with its values and dead-letters every bad one with topic, partition and offset", async () => {
    const COUNT = 1000;
    await produce("all", 0, COUNT - 1);
    const out = join(dir.path, "all");
    const stop = new AbortController();
    let flow: Flow | undefined;
    const running = run(
      fromKafka({ brokers: mock.brokers, topic: "all", group: "all-lake", from: "start" }).pipe(
        validate(Entry),
        deadLetter(join(out, "dead"), { maxFileAgeMs: 100 }),
        toParquet(join(out, "events"), { schema: Entry, partitionBy: ["zone"], maxFileRows: 150 }),
      ),
      { signal: stop.signal, onStart: (f) => (flow = f) },
    );
    await until("every message read", () => (flow?.stats.in ?? 0) >= COUNT);
    stop.abort();
    const summary = await running;
    expect(summary.in).toBe(COUNT);
    const ids = Array.from({ length: COUNT }, (_, i) => i);
    const good = ids.filter((i) => kindAt(i) === "valid");
    const rows = await query(`SELECT id, zone, n, name FROM ${dataset(join(out, "events"))} ORDER BY id`);
    expect(rows).toEqual(good.map((i) => ({ id: i, zone: ZONES[i % 3], n: i * 2, name: `é😀 ${i}` })));

    const letters = [...readDeadLettersSync(join(out, "dead"))].map((d) => d.entry);
    const bad = ids.filter((i) => kindAt(i) !== "valid");
    expect(letters.map((d) => d.line - 1).sort((a, b) => a - b)).toEqual(bad);
    for (const d of letters) {
      const offset = d.line - 1;
      const kind = kindAt(offset);
      expect(d.source).toBe(`kafka:all@${clusterId}/0`);
      expect(d.stage).toBe(kind === "invalid" ? "validate" : "parse");
      if (d.stage === "parse") expect(d.error).toContain(`Kafka topic "all", partition 0, offset ${offset}:`);
      if (kind === "notJson") expect(d.raw).toBe(`{"id": ${offset}, oops`);
      if (kind === "notUtf8") {
        expect(d.error).toContain("not valid UTF-8");
        expect([...Buffer.from(d.rawBase64 ?? "", "base64")]).toEqual([...(valueAt(offset) ?? [])]);
      }
      if (kind === "hugeNumber") expect(d.error).toContain("12345678901234567890");
      if (kind === "tombstone") expect(d.error).toContain("tombstone");
      if (kind === "deep") expect(d.error).toContain("nested more than 10,000 levels deep (column 10001)");
    }
    // Everything read was durable when the run resolved, and committed: the next reader starts after it.
    expect(await committed("all", "all-lake")).toBe(COUNT);
  }, 120_000);

  test.concurrent("commits an offset only once every record below it is in a committed file", async () => {
    const COUNT = 3000;
    await produce("durable", 0, COUNT - 1, false);
    const out = join(dir.path, "durable", "events");
    const stop = new AbortController();
    let flow: Flow | undefined;
    const samples: Promise<{ committed: number; missing: number[] }>[] = [];
    let commits = 0;
    // Each sample reads the committed offset first, then the files: files only get added, so every
    // id below an offset committed earlier must be on disk by then.
    const sample = async () => {
      const offset = await committed("durable", "durable-lake");
      if (offset <= 0 || !parquetIn(out)) return { committed: offset, missing: [] };
      const rows = await query(`SELECT id FROM ${dataset(out)} WHERE id < ${offset}`);
      const have = new Set(rows.map((r) => Number(r.id)));
      return { committed: offset, missing: Array.from({ length: offset }, (_, i) => i).filter((i) => !have.has(i)) };
    };
    const running = run(
      fromKafka({ brokers: mock.brokers, topic: "durable", group: "durable-lake", from: "start", maxUncommitted: 400 }).pipe(
        validate(Entry),
        deadLetter(join(dir.path, "durable", "dead")),
        toParquet(out, { schema: Entry, partitionBy: ["zone"], maxFileRows: 60 }),
      ),
      {
        signal: stop.signal,
        onStart: (f) => (flow = f),
        onValue: () => {
          if (++commits % 8 === 0 && samples.length < 12) samples.push(sample());
        },
      },
    );
    await until("half the messages read", () => (flow?.stats.in ?? 0) >= COUNT / 2);
    stop.abort();
    const summary = await running;
    const results = await Promise.all(samples);
    expect(results.length).toBeGreaterThan(0);
    for (const r of results) expect(r.missing).toEqual([]);
    // Some samples saw commits while the run went on.
    expect(results.some((r) => r.committed > 0)).toBe(true);
    // A clean stop commits exactly what it read and wrote.
    expect(await committed("durable", "durable-lake")).toBe(summary.in);
    expect(summary.written).toBe(summary.in);
    expect(summary.in).toBeLessThan(COUNT);
  }, 120_000);

  test.concurrent("pauses at maxUncommitted records until they are durable; a second run resumes from the committed offsets and writes nothing twice", async () => {
    const COUNT = 2000;
    await produce("resume", 0, COUNT - 1, false);
    const out = join(dir.path, "resume", "events");
    // The mock keeps a member that left until its session timeout: the second run joins after it.
    const source = () => fromKafka({ brokers: mock.brokers, topic: "resume", group: "resume-lake", from: "start", maxUncommitted: 120, sessionTimeoutMs: 6000 });

    // First run: files never roll while it reads, so nothing is durable and reading stops at 120.
    const stop = new AbortController();
    let flow: Flow | undefined;
    const first = run(
      source().pipe(
        validate(Entry),
        deadLetter(join(dir.path, "resume", "dead")),
        toParquet(out, { schema: Entry, partitionBy: ["zone"], maxFileRows: 1_000_000, maxFileAgeMs: 600_000 }),
      ),
      { signal: stop.signal, onStart: (f) => (flow = f) },
    );
    await until("the first records read", () => (flow?.stats.in ?? 0) >= 120);
    await Bun.sleep(300);
    expect(flow?.stats.in).toBe(120);
    expect(await committed("resume", "resume-lake")).toBe(-1);
    stop.abort();
    expect((await first).written).toBe(120);
    expect(await committed("resume", "resume-lake")).toBe(120);

    // Second run: files of 30 rows (below 120 / 3 zones), so records become durable and reading goes on to the end.
    const again = new AbortController();
    let second: Flow | undefined;
    const running = run(
      source().pipe(
        validate(Entry),
        deadLetter(join(dir.path, "resume", "dead")),
        toParquet(out, { schema: Entry, partitionBy: ["zone"], maxFileRows: 30, mode: "append" }),
      ),
      { signal: again.signal, onStart: (f) => (second = f) },
    );
    await until("the rest read", () => (second?.stats.in ?? 0) >= COUNT - 120);
    again.abort();
    const summary = await running;
    expect(summary.in).toBe(COUNT - 120);
    const [row] = await query(`SELECT count(*) AS n, count(DISTINCT id) AS d, min(id) AS lo, max(id) AS hi, min(n = id * 2) AS ok FROM ${dataset(out)}`);
    expect(row).toEqual({ n: String(COUNT), d: String(COUNT), lo: 0, hi: COUNT - 1, ok: true });
    expect(await committed("resume", "resume-lake")).toBe(COUNT);
  }, 120_000);

  test.concurrent("emits nothing while the sink holds the gate, and reads on once it opens", async () => {
    // One partition folder: the sink measures a buffer every 1,024 rows.
    const COUNT = 2500;
    const pad = "p".repeat(400);
    const messages = Array.from({ length: COUNT }, (_, i) => ({
      topic: "gated",
      partition: 0,
      value: Buffer.from(JSON.stringify({ id: i, zone: "a", n: i * 2, name: pad })),
    }));
    for (let i = 0; i < COUNT; i += 500) await producer.send({ messages: messages.slice(i, i + 500), acks: -1 });
    const out = join(dir.path, "gated");
    const stop = new AbortController();
    let flow: Flow | undefined;
    let whileGated = 0;
    let gateSeen = false;
    const running = run(
      fromKafka({ brokers: mock.brokers, topic: "gated", group: "gated-lake", from: "start" }).pipe(
        tap(() => {
          if (flow?.gate) whileGated++;
        }),
        validate(Entry),
        deadLetter(join(out, "dead")),
        toParquet(join(out, "events"), { schema: Entry, partitionBy: ["zone"], memoryBudget: 64 * 1024 }),
      ),
      { signal: stop.signal, onStart: (f) => (flow = f) },
    );
    const watch = setInterval(() => {
      if (flow?.gate && flow.stats.in < COUNT) gateSeen = true;
    }, 1);
    try {
      // Waits on state: with a 64 KiB budget the sink commits many small row groups, slow on a busy machine.
      await until("every message read", () => (flow?.stats.in ?? 0) >= COUNT, 120_000);
    } catch (error) {
      // The run must not outlive the test (its broker goes away with the file's mock).
      stop.abort();
      await running.catch(() => {});
      throw error;
    } finally {
      clearInterval(watch);
    }
    stop.abort();
    const summary = await running;
    expect(summary.written).toBe(COUNT);
    expect(whileGated).toBe(0);
    // The gate was closed while reading (the sink over its budget), so the check above had something to check.
    expect(gateSeen).toBe(true);
    const [row] = await query(`SELECT count(*) AS n, count(DISTINCT id) AS d FROM ${dataset(join(out, "events"))}`);
    expect(row).toEqual({ n: String(COUNT), d: String(COUNT) });
  }, 180_000);

  test.concurrent("a worker killed mid-stream and started again loses nothing and writes nothing twice", async () => {
    const COUNT = 3000;
    // Every 50 messages: one that is not JSON and one that validation rejects.
    const textAt = (i: number) =>
      i % 50 === 7 ? `{"id": ${i}, oops` : JSON.stringify({ id: i, zone: i % 50 === 19 ? "z" : ZONES[i % 3], n: i * 2 });
    for (let i = 0; i < COUNT; i += 500) {
      const messages = Array.from({ length: 500 }, (_, k) => ({ topic: "crash", partition: 0, value: Buffer.from(textAt(i + k)) }));
      await producer.send({ messages, acks: -1 });
    }
    const out = join(dir.path, "crash");
    const worker = join(import.meta.dir, "../support/kafka-mock/worker.ts");
    const start = () =>
      Bun.spawn(["bun", worker], { env: { ...process.env, BROKERS: mock.brokers, TOPIC: "crash", GROUP: "crash-lake", OUT: out }, stdout: "pipe", stderr: "pipe" });
    const files = () => (existsSync(join(out, "events")) ? readdirSync(join(out, "events"), { recursive: true }).filter((f) => String(f).endsWith(".parquet")).length : 0);

    const first = start();
    await until("the first worker's files", () => files() >= 12, 40_000);
    first.kill("SIGKILL");
    await first.exited;
    const committedAtCrash = await committed("crash", "crash-lake");
    // The crash left work behind: the next worker has something to read again.
    expect(committedAtCrash).toBeLessThan(COUNT);

    // The killed member stays in the mock's group for its session timeout: the second joins after it.
    const second = start();
    await until("every offset committed", async () => (await committed("crash", "crash-lake")) >= COUNT, 40_000);
    second.kill("SIGTERM");
    expect(await second.exited).toBe(0);
    const summary = JSON.parse((await new Response(second.stdout).text()).trim().split("\n").pop() as string);

    const valid = Array.from({ length: COUNT }, (_, i) => i).filter((i) => i % 50 !== 7 && i % 50 !== 19);
    const [row] = await query(`SELECT count(*) AS n, count(DISTINCT id) AS d, min(n = id * 2) AS ok FROM ${dataset(join(out, "events"))}`);
    expect(row).toEqual({ n: String(valid.length), d: String(valid.length), ok: true });
    const letters = [...readDeadLettersSync(join(out, "dead"))].map((d) => d.entry);
    const bad = Array.from({ length: COUNT }, (_, i) => i).filter((i) => i % 50 === 7 || i % 50 === 19);
    expect(letters.map((d) => d.line - 1).sort((a, b) => a - b)).toEqual(bad);
    // What the second worker read again and found committed already was skipped, not written.
    console.log("measured", { committedAtCrash, skipped: summary.skipped, in: summary.in, written: summary.written });
    expect(summary.skipped).toBeGreaterThanOrEqual(0);
    // -1 when the kill landed after the first files but before the first offset commit: all is read again.
    expect(summary.in).toBe(COUNT - Math.max(committedAtCrash, 0));
  }, 180_000);

  test.concurrent("a topic of the same name on another cluster (or made again) numbers from 0 again: its messages are written into the same folder, not taken for the first topic's", async () => {
    const out = join(dir.path, "again");
    const pipe = (brokers: string) =>
      fromKafka({ brokers, topic: "again", group: "again-lake", from: "start" }).pipe(
        validate(Entry),
        deadLetter(join(out, "dead"), { maxFileAgeMs: 100 }),
        toParquet(join(out, "events"), { schema: Entry, partitionBy: ["zone"], maxFileRows: 100, mode: "append" }),
      );
    const readAll = async (brokers: string, count: number) => {
      const stop = new AbortController();
      let flow: Flow | undefined;
      const running = run(pipe(brokers), { signal: stop.signal, onStart: (f) => (flow = f) });
      // A stop commits what was read.
      await until("every message read", () => (flow?.stats.in ?? 0) >= count);
      stop.abort();
      return running;
    };
    const sendTo = async (brokers: string, ids: number[]) => {
      const client = new Producer({ clientId: "again-producer", bootstrapBrokers: [brokers] });
      const messages = ids.map((i) => ({ topic: "again", partition: 0, value: Buffer.from(JSON.stringify({ id: i, zone: ZONES[i % 3], n: i, name: `x${i}` })) }));
      await client.send({ messages, acks: -1 });
      await client.close(true);
    };
    const first = await startKafkaMock(["again"]);
    const second = await startKafkaMock(["again"]);
    try {
      // Offsets 0-299 on each cluster: ids 0-299 on the first, 1000-1299 on the second.
      await sendTo(first.brokers, Array.from({ length: 300 }, (_, i) => i));
      expect((await readAll(first.brokers, 300)).written).toBe(300);
      await sendTo(second.brokers, Array.from({ length: 300 }, (_, i) => 1000 + i));
      const summary = await readAll(second.brokers, 300);
      expect([summary.written, summary.skipped]).toEqual([300, 0]);
      const rows = await query(`SELECT count(*)::INT AS n, count(DISTINCT id)::INT AS ids, count(*) FILTER (WHERE id >= 1000)::INT AS second FROM ${dataset(join(out, "events"))}`);
      expect(rows).toEqual([{ n: 600, ids: 600, second: 300 }]);
    } finally {
      await first.stop();
      await second.stop();
    }
  }, 120_000);

  test.concurrent("each branch of a merge of two topics sends its parse errors to its own dead-letter folder, not to the one subscribed last", async () => {
    const COUNT = 300;
    for (const topic of ["branch-0", "branch-1"]) await produce(topic, 0, COUNT - 1);
    const out = join(dir.path, "branches");
    const stop = new AbortController();
    let flow: Flow | undefined;
    const running = run(
      merge(
        ...[0, 1].map((i) =>
          fromKafka({ brokers: mock.brokers, topic: `branch-${i}`, group: `branch-lake-${i}`, from: "start" }).pipe(
            validate(Entry),
            deadLetter(join(out, `dead-${i}`), { maxFileAgeMs: 100 }),
          ),
        ),
      ).pipe(toParquet(join(out, "events"), { schema: Entry })),
      { signal: stop.signal, onStart: (f) => (flow = f) },
    );
    await until("both topics read", () => (flow?.stats.in ?? 0) >= 2 * COUNT);
    stop.abort();
    await running;
    const bad = Array.from({ length: COUNT }, (_, i) => i).filter((i) => kindAt(i) !== "valid");
    for (const i of [0, 1]) {
      const letters = [...readDeadLettersSync(join(out, `dead-${i}`))].map((d) => d.entry);
      expect(new Set(letters.map((d) => d.source))).toEqual(new Set([`kafka:branch-${i}@${clusterId}/0`]));
      expect(letters.map((d) => d.line - 1).sort((a, b) => a - b)).toEqual(bad);
    }
  }, 120_000);

  test.concurrent("names a topic's inputs by its id, or by the cluster's when the broker gives topics none", () => {
    expect(kafkaInputName("events", "8Zt0zP0TSOuRsUe0yF1F0w", "c1")).toBe("kafka:events@8Zt0zP0TSOuRsUe0yF1F0w");
    // What clients report for a broker without topic ids: the name itself, or the zero UUID.
    expect(kafkaInputName("events", "events", "c1")).toBe("kafka:events@c1");
    expect(kafkaInputName("events", "AAAAAAAAAAAAAAAAAAAAAA", "c1")).toBe("kafka:events@c1");
    expect(kafkaInputName("events", "00000000-0000-0000-0000-000000000000", "c1")).toBe("kafka:events@c1");
    expect(kafkaInputName("events", undefined, undefined)).toBe("kafka:events");
  });

  test.concurrent("decodes raw bytes and through a user decoder, whose throw is a parse dead letter", async () => {
    await produce("decoders", 0, 9, false);
    await producer.send({
      messages: [{ topic: "decoders", partition: 0, value: Buffer.from([0, 1, 2, 255]), headers: new Map([[Buffer.from("kind"), Buffer.from("bin")]]) }],
      acks: -1,
    });
    // Two groups read the same topic at once, each with its decoder (joining a group takes the mock seconds).
    const sides = {
      bytes: { records: [] as unknown[], letters: [] as { line: number; error: string }[] },
      custom: { records: [] as unknown[], letters: [] as { line: number; error: string }[] },
    };
    const collectWith = async (decode: Parameters<typeof fromKafka>[0]["decode"], group: "bytes" | "custom") => {
      const side = sides[group];
      const stop = new AbortController();
      let flow: Flow | undefined;
      const running = run(
        fromKafka({ brokers: mock.brokers, topic: "decoders", group, from: "start", decode }).pipe(
          deadLetter((d) => side.letters.push({ line: d.line, error: d.error })),
        ),
        { signal: stop.signal, onStart: (f) => (flow = f), onValue: (r) => side.records.push(r) },
      );
      await until("every message read", () => (flow?.stats.in ?? 0) >= 11);
      stop.abort();
      await running;
    };
    await Promise.all([
      collectWith("bytes", "bytes"),
      collectWith((value, message) => {
        if (message.headers.get("kind") === "bin") throw new Error("binary payload");
        return { id: JSON.parse(new TextDecoder().decode(value)).id, offset: Number(message.offset) };
      }, "custom"),
    ]);
    const { bytes, custom } = sides;
    expect(bytes.letters).toEqual([]);
    expect(bytes.records.length).toBe(11);
    expect(bytes.records[10]).toMatchObject({ topic: "decoders", partition: 0, offset: 10, key: null, value: new Uint8Array([0, 1, 2, 255]) });
    expect(bytes.records[3]).toMatchObject({ offset: 3, key: "k3" });
    expect(JSON.parse(new TextDecoder().decode((bytes.records[3] as { value: Uint8Array }).value))).toMatchObject({ id: 3 });
    expect(custom.records).toEqual(Array.from({ length: 10 }, (_, i) => ({ id: i, offset: i })));
    expect(custom.letters).toEqual([{ line: 11, error: 'Kafka topic "decoders", partition 0, offset 10: decode threw: binary payload' }]);
  });

  test.concurrent("an unreachable broker errors the run naming it, never the credentials", async () => {
    const error = await run(
      fromKafka({
        brokers: "127.0.0.1:1",
        topic: "t",
        group: "g",
        sasl: { mechanism: "PLAIN", username: "svc-user", password: "s3cret-pw" },
        connectTimeoutMs: 1000,
      }).pipe(deadLetter(() => {})),
    ).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(error?.message).toContain("fromKafka");
    expect(error?.message).toContain("127.0.0.1:1");
    expect(error?.message).toContain('group "g"');
    expect(error?.message).not.toContain("s3cret-pw");
    expect(error?.message).not.toContain("svc-user");
  });

  test.concurrent("a client error quoting the SASL login, as given or percent-encoded, is shown without it", () => {
    const { secrets } = kafkaConnection("fromKafka", { brokers: "127.0.0.1:1", sasl: { mechanism: "PLAIN", username: "svc user", password: "p@ss wörd" } });
    const error = new Error("metadata failed", { cause: new Error("SASL PLAIN refused for svc%20user:p%40ss%20w%C3%B6rd (svc user / p@ss wörd)") });
    expect(kafkaReason(error, secrets)).toBe("metadata failed; SASL PLAIN refused for ***:*** (*** / ***)");
  });

  test.concurrent("refuses a broker written with credentials, without repeating them", () => {
    expect(() => fromKafka({ brokers: "kafka://bob:pa55@host:9092", topic: "t", group: "g" })).toThrow(/broker 1 is written with credentials/);
    expect(() => fromKafka({ brokers: "kafka://bob:pa55@host:9092", topic: "t", group: "g" })).not.toThrow(/pa55/);
    expect(() => fromKafka({ brokers: "no-port", topic: "t", group: "g" })).toThrow(/broker 1 "no-port" is not host:port/);
    expect(() => fromKafka({ brokers: "h:1", topic: "", group: "g" })).toThrow(/topic and options.group are required/);
  });

  test.concurrent("a stop while the group is being joined ends the run with nothing read and nothing committed", async () => {
    const stop = new AbortController();
    const running = run(
      fromKafka({ brokers: mock.brokers, topic: "empty", group: "empty-lake", from: "start", maxWaitMs: 100 }).pipe(
        validate(Entry),
        deadLetter(() => {}),
        toParquet(join(dir.path, "empty"), { schema: Entry }),
      ),
      { signal: stop.signal },
    );
    setTimeout(() => stop.abort(), 100);
    const summary = await running;
    expect(summary.in).toBe(0);
    expect(summary.stopped).toBe(true);
    expect(await committed("empty", "empty-lake")).toBe(-1);
  });
});
