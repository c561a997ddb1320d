import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { type JetStreamClient, type JetStreamManager, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { lastValueFrom, map, take, toArray } from "rxjs";
import * as v from "valibot";
import { deadLetter, validate } from "../../operators/index.ts";
import { readDeadLettersSync } from "../../src/deadletter/read.ts";
import type { Flow } from "../../src/flow/flow.ts";
import { fromJetStream, run, toParquet } from "../../src/index.ts";
import { dataset, query, tempDir } from "../helpers/duckdb.ts";

const SERVERS = "nats://127.0.0.1:4222";
const Entry = v.object({ id: v.number(), zone: v.picklist(["a", "b", "c"]), n: v.number() });
const ZONES = ["a", "b", "c"];

/** What message `i` (from 1) holds: a valid record, text that is not JSON, or a record validation rejects. */
function messageAt(i: number): { kind: "valid" | "notJson" | "invalid"; text: string } {
  if (i % 500 === 7) return { kind: "notJson", text: `{"id": ${i}, oops` };
  if (i % 500 === 29) return { kind: "invalid", text: JSON.stringify({ id: i, zone: "z", n: i }) };
  return { kind: "valid", text: JSON.stringify({ id: i, zone: ZONES[i % 3], n: i * 2 }) };
}

const valid = (from: number, to: number) => {
  let n = 0;
  for (let i = from; i <= to; i++) if (messageAt(i).kind === "valid") n++;
  return n;
};

let nc: NatsConnection;
let js: JetStreamClient;
let jsm: JetStreamManager;
let dir: { path: string; remove: () => Promise<void> };
const streams: string[] = [];
let serial = 0;

/** A new stream (subjects `<stream>.>`) no other test or earlier run uses; deleted after the tests. */
async function newStream(): Promise<string> {
  const stream = `sluice-test-${process.pid}-${Date.now()}-${++serial}`;
  streams.push(stream);
  await jsm.streams.add({ name: stream, subjects: [`${stream}.>`] });
  return stream;
}

/** Publishes messages `from..to` to the stream, waiting for the server to store each. */
async function produce(stream: string, from: number, to: number): Promise<void> {
  for (let start = from; start <= to; start += 500) {
    const sent: Promise<unknown>[] = [];
    for (let i = start; i <= Math.min(to, start + 499); i++) sent.push(js.publish(`${stream}.${ZONES[i % 3]}`, messageAt(i).text));
    await Promise.all(sent);
  }
}

/** The consumer's messages delivered and not acknowledged, and not yet delivered. */
async function consumerState(stream: string, consumer: string): Promise<{ ackPending: number; undelivered: number }> {
  const info = await jsm.consumers.info(stream, consumer);
  return { ackPending: info.num_ack_pending, undelivered: info.num_pending };
}

async function until(what: string, ok: () => boolean | Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await ok())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(10);
  }
}

/**
 * Runs stream → validate → dead letters and Parquet under `out` (appending, by zone unless
 * `partitioned` is false) until `count` messages are read, then stops it.
 */
async function readUntil(out: string, stream: string, consumer: string, count: number, subject?: string, partitioned = true, started?: (flow: Flow) => void) {
  const stop = new AbortController();
  let flow: Flow | undefined;
  const running = run(
    fromJetStream({ servers: SERVERS, stream, consumer, batch: 700, ...(subject ? { subject } : {}) }).pipe(
      validate(Entry),
      deadLetter(join(out, "dead"), { maxFileAgeMs: 100 }),
      toParquet(join(out, "events"), { schema: Entry, partitionBy: partitioned ? ["zone"] : [], maxFileRows: 400, mode: "append" }),
    ),
    {
      signal: stop.signal,
      onStart: (f) => {
        flow = f;
        started?.(f);
      },
    },
  );
  await until(`${count} messages read`, () => (flow?.stats.in ?? 0) >= count);
  stop.abort();
  return running;
}

const parquetFiles = (folder: string) =>
  existsSync(folder) ? readdirSync(folder, { recursive: true }).map(String).filter((f) => f.endsWith(".parquet")).length : 0;

beforeAll(async () => {
  nc = await connect({ servers: SERVERS });
  js = jetstream(nc);
  jsm = await jetstreamManager(nc);
  dir = await tempDir("sluice-jetstream-");
});

afterAll(async () => {
  for (const stream of streams) await jsm.streams.delete(stream).catch(() => {});
  await nc.close();
  await dir.remove();
});

describe("fromJetStream", () => {
  test("writes every valid message exactly once, dead-letters every bad one, and leaves nothing pending", async () => {
    const stream = await newStream();
    const COUNT = 5000;
    await produce(stream, 1, COUNT);
    const out = join(dir.path, "all");
    const stop = new AbortController();
    let flow: Flow | undefined;
    const running = run(
      fromJetStream({ servers: SERVERS, stream, consumer: "lake", batch: 700 }).pipe(
        validate(Entry),
        deadLetter(join(out, "dead"), { maxFileAgeMs: 100 }),
        toParquet(join(out, "events"), { schema: Entry, partitionBy: ["zone"], maxFileRows: 400 }),
      ),
      { signal: stop.signal, onStart: (f) => (flow = f) },
    );
    await until("every message read", () => (flow?.stats.in ?? 0) >= COUNT);
    stop.abort();
    const summary = await running;
    expect(summary.in).toBe(COUNT);
    const [row] = await query(`SELECT count(*) AS n, count(DISTINCT id) AS d, min(n = id * 2) AS ok FROM ${dataset(join(out, "events"))}`);
    expect(row).toEqual({ n: String(valid(1, COUNT)), d: String(valid(1, COUNT)), ok: true });
    const bad = [...readDeadLettersSync(join(out, "dead"))].map((d) => d.entry);
    const expected = Array.from({ length: COUNT }, (_, i) => i + 1).filter((i) => messageAt(i).kind !== "valid");
    expect(bad.length).toBe(expected.length);
    const parse = bad.filter((d) => d.stage === "parse");
    expect(parse.length).toBe(expected.filter((i) => messageAt(i).kind === "notJson").length);
    for (const d of parse) {
      // The stream, when it was made, as the server says it: its sequences number this stream's messages only.
      expect(d.source).toBe(`jetstream:${stream}@${(await jsm.streams.info(stream)).created}`);
      expect(d.error).toContain(stream);
      expect(d.error).toMatch(/sequence \d+: payload is not JSON/);
      expect(d.raw).toMatch(/^\{"id": \d+, oops$/);
      // Published in order, so a message's stream sequence is its number here.
      expect(d.error).toContain(`sequence ${JSON.parse(`${d.raw?.replace(", oops", "}")}`).id}:`);
    }
    expect(await consumerState(stream, "lake")).toEqual({ ackPending: 0, undelivered: 0 });
    const info = await jsm.consumers.info(stream, "lake");
    expect(info.config.ack_policy).toBe("explicit");
  });

  test("acknowledges nothing before the files holding the messages are committed", async () => {
    const stream = await newStream();
    await produce(stream, 1, 300);
    const out = join(dir.path, "late");
    const stop = new AbortController();
    let flow: Flow | undefined;
    const running = run(
      fromJetStream({ servers: SERVERS, stream, consumer: "lake", batch: 50 }).pipe(
        validate(Entry),
        deadLetter(join(out, "dead"), { maxFileAgeMs: 600_000 }),
        toParquet(join(out, "events"), { schema: Entry, partitionBy: ["zone"], maxFileRows: 1_000_000, maxFileAgeMs: 600_000 }),
      ),
      { signal: stop.signal, onStart: (f) => (flow = f) },
    );
    await until("every message read", () => (flow?.stats.in ?? 0) >= 300);
    await Bun.sleep(300);
    expect(parquetFiles(join(out, "events"))).toBe(0);
    expect(await consumerState(stream, "lake")).toEqual({ ackPending: 300, undelivered: 0 });
    stop.abort();
    const summary = await running;
    expect(summary.files).toBe(3);
    expect((await consumerState(stream, "lake")).ackPending).toBe(0);
  });

  test("stops pulling while maxAckPending messages wait for their files, and goes on once they are acknowledged", async () => {
    const stream = await newStream();
    await produce(stream, 1, 600);
    const out = join(dir.path, "bounded");
    const stop = new AbortController();
    let flow: Flow | undefined;
    const running = run(
      fromJetStream({ servers: SERVERS, stream, consumer: "lake", batch: 50, maxAckPending: 200 }).pipe(
        validate(Entry),
        deadLetter(join(out, "dead"), { maxFileAgeMs: 50 }),
        toParquet(join(out, "events"), { schema: Entry, partitionBy: ["zone"], maxFileRows: 1_000_000, maxFileAgeMs: 700 }),
      ),
      { signal: stop.signal, onStart: (f) => (flow = f) },
    );
    await until("the first messages read", () => (flow?.stats.in ?? 0) >= 200);
    await Bun.sleep(300);
    expect(flow?.stats.in).toBe(200);
    expect((await consumerState(stream, "lake")).ackPending).toBe(200);
    await until("every message read", () => (flow?.stats.in ?? 0) >= 600);
    stop.abort();
    await running;
    expect((await consumerState(stream, "lake")).ackPending).toBe(0);
    const [row] = await query(`SELECT count(*) AS n, count(DISTINCT id) AS d FROM ${dataset(join(out, "events"))}`);
    expect(row).toEqual({ n: String(valid(1, 600)), d: String(valid(1, 600)) });
  });

  test("keeps held messages from being delivered again past ack_wait while their files are open", async () => {
    const stream = await newStream();
    await produce(stream, 1, 100);
    const out = join(dir.path, "held");
    const stop = new AbortController();
    let flow: Flow | undefined;
    const running = run(
      fromJetStream({ servers: SERVERS, stream, consumer: "lake", ackWaitMs: 1500 }).pipe(
        validate(Entry),
        deadLetter(join(out, "dead"), { maxFileAgeMs: 600_000 }),
        toParquet(join(out, "events"), { schema: Entry, partitionBy: ["zone"], maxFileAgeMs: 600_000 }),
      ),
      { signal: stop.signal, onStart: (f) => (flow = f) },
    );
    await until("every message read", () => (flow?.stats.in ?? 0) >= 100);
    await Bun.sleep(5000);
    // More than three ack_waits later, nothing was delivered a second time.
    expect(flow?.stats.in).toBe(100);
    const info = await jsm.consumers.info(stream, "lake");
    expect(info.num_redelivered).toBe(0);
    expect(info.num_ack_pending).toBe(100);
    stop.abort();
    await running;
    expect((await consumerState(stream, "lake")).ackPending).toBe(0);
  });

  test("gives back what it held when the run fails downstream: another reader gets those messages at once, not after ack_wait, and writes each once", async () => {
    const stream = await newStream();
    await produce(stream, 1, 300);
    const out = join(dir.path, "nak");
    // Every message is read and held (the files never roll), then a step after them fails the run.
    const failing = run(
      fromJetStream({ servers: SERVERS, stream, consumer: "lake", ackWaitMs: 120_000 }).pipe(
        validate(Entry),
        deadLetter(join(out, "dead"), { maxFileAgeMs: 100 }),
        map((record) => {
          if (record.id === 300) throw new Error("a step failed");
          return record;
        }),
        toParquet(join(out, "events"), { schema: Entry, partitionBy: ["zone"], mode: "append", maxFileRows: 1_000_000, maxFileAgeMs: 600_000 }),
      ),
    );
    expect(failing).rejects.toThrow("a step failed");
    await failing.catch(() => {});
    // The dead-letter folder commits what it gathered after the run rejected, then lets go of its lock.
    await until("the failed run let go of its folders", () => !existsSync(join(out, ".dead.lock")) && !existsSync(join(out, ".events.lock")));
    // Given back (nak): the next reader gets all 300 well inside the 120 s ack wait.
    const stop = new AbortController();
    const again = run(
      fromJetStream({ servers: SERVERS, stream, consumer: "lake" }).pipe(
        validate(Entry),
        deadLetter(join(out, "dead"), { maxFileAgeMs: 100 }),
        toParquet(join(out, "events"), { schema: Entry, partitionBy: ["zone"], mode: "append", maxFileAgeMs: 100 }),
      ),
      { signal: stop.signal },
    );
    await until("every message delivered again and acknowledged", async () => {
      const state = await consumerState(stream, "lake");
      return state.undelivered === 0 && state.ackPending === 0;
    }, 30_000);
    stop.abort();
    await again;
    const [row] = await query(`SELECT count(*) AS n, count(DISTINCT id) AS d FROM ${dataset(join(out, "events"))}`);
    expect(Number(row?.d)).toBe(valid(1, 300));
    expect(Number(row?.n)).toBe(valid(1, 300));
    const letters = [...readDeadLettersSync(join(out, "dead"))].map((d) => d.entry.line);
    expect(letters.sort((a, b) => a - b)).toEqual([7, 29]);
  });

  test("a server that forgot what it delivered (its consumer made again) hands every message out again as new: each is skipped, none written twice", async () => {
    const stream = await newStream();
    const COUNT = 3000;
    await produce(stream, 1, COUNT);
    const out = join(dir.path, "forgotten");
    const first = await readUntil(out, stream, "lake", COUNT);
    expect(first.written + first.deadLettered).toBe(COUNT);
    // What a server that lost its consumer's state does: the next reader gets every message as a
    // first delivery, with nothing to say it was delivered before.
    await jsm.consumers.delete(stream, "lake");
    await jsm.consumers.add(stream, { durable_name: "lake", ack_policy: "explicit" as never, max_ack_pending: 10_000 });
    const again = await readUntil(out, stream, "lake", COUNT);
    expect(again).toMatchObject({ in: COUNT, written: 0, deadLettered: 0, skipped: COUNT });
    const [row] = await query(`SELECT count(*) AS n, count(DISTINCT id) AS d FROM ${dataset(join(out, "events"))}`);
    expect(row).toEqual({ n: String(valid(1, COUNT)), d: String(valid(1, COUNT)) });
    expect([...readDeadLettersSync(join(out, "dead"))].length).toBe(COUNT - valid(1, COUNT));
    expect(await consumerState(stream, "lake")).toEqual({ ackPending: 0, undelivered: 0 });
  });

  test("reads the committed files once connected, before it holds a message: the first record's lookup reads no footer", async () => {
    const stream = await newStream();
    await produce(stream, 1, 1000);
    const out = join(dir.path, "ledger-first");
    await readUntil(out, stream, "lake", 1000);
    await produce(stream, 1001, 2000);
    const looks: number[] = [];
    const second = await readUntil(out, stream, "lake", 1000, undefined, true, (flow) => {
      flow.ledgers.add({ refresh: () => void looks.push(flow.stats.in) });
    });
    // One look, with nothing read yet; the sink's and the dead letters' ledgers looked then too.
    expect(looks).toEqual([0]);
    expect(second).toMatchObject({ in: 1000, skipped: 0 });
  });

  test("a stream deleted and made again under the same name numbers its messages from 1 again: the new ones are all written, none taken for the old", async () => {
    const stream = await newStream();
    await produce(stream, 1, 1000);
    const out = join(dir.path, "made-again");
    const first = await readUntil(out, stream, "lake", 1000);
    expect(first.written + first.deadLettered).toBe(1000);
    await jsm.streams.delete(stream);
    await jsm.streams.add({ name: stream, subjects: [`${stream}.>`] });
    // Messages 1001-2000 get the sequences 1-1000 the old files claim.
    await produce(stream, 1001, 2000);
    const second = await readUntil(out, stream, "lake", 1000);
    expect(second).toMatchObject({ in: 1000, skipped: 0 });
    const [row] = await query(`SELECT count(*) AS n, count(DISTINCT id) AS d FROM ${dataset(join(out, "events"))}`);
    expect(row).toEqual({ n: String(valid(1, 2000)), d: String(valid(1, 2000)) });
  });

  test("two consumers of one stream filtering other subjects write one folder: a file of one claims none of the other's messages", async () => {
    const stream = await newStream();
    // Subjects a, b and c take turns (see produce), so each consumer's deliveries skip the others' sequences.
    await produce(stream, 1, 1500);
    const out = join(dir.path, "filtered");
    // One partition for both, so a file of one holds lines between the other's.
    const a = await readUntil(out, stream, "only-a", 500, `${stream}.a`, false);
    const b = await readUntil(out, stream, "only-b", 500, `${stream}.b`, false);
    expect([a.in, a.skipped, b.in, b.skipped]).toEqual([500, 0, 500, 0]);
    const [row] = await query(`SELECT count(*) AS n, count(DISTINCT id) AS d, count(*) FILTER (WHERE zone = 'c') AS c FROM read_parquet('${join(out, "events")}/*.parquet')`);
    const ofAB = Array.from({ length: 1500 }, (_, i) => i + 1).filter((i) => i % 3 !== 2 && messageAt(i).kind === "valid").length;
    expect(row).toEqual({ n: String(ofAB), d: String(ofAB), c: "0" });
  });

  test("decodes payloads with a custom decoder, and dead-letters the messages it throws on", async () => {
    const stream = await newStream();
    // The bad one first: the source stops at the first record (take(1)), after its dead letter.
    await js.publish(`${stream}.x`, "u2;lots");
    await js.publish(`${stream}.x`, "u1;12.5");
    await js.publish(`${stream}.y`, "not;for-this-consumer");
    const letters: { stage: string; error: string; line: number }[] = [];
    const records: unknown[] = await lastValueFrom(
      fromJetStream({
        servers: SERVERS,
        stream,
        consumer: "lake",
        subject: `${stream}.x`,
        decode: (data) => {
          const [user, text] = new TextDecoder().decode(data).split(";");
          const amount = Number(text);
          if (Number.isNaN(amount)) throw new Error(`amount "${text}" is not a number`);
          return { user, amount };
        },
      }).pipe(
        deadLetter((entry) => letters.push(entry)),
        take(1),
        toArray(),
      ),
    );
    expect(JSON.parse(JSON.stringify(records))).toEqual([{ user: "u1", amount: 12.5 }]);
    expect(letters[0]?.stage).toBe("parse");
    expect(letters.length).toBe(1);
    expect(letters[0]?.line).toBe(1);
    expect(letters[0]?.error).toContain('sequence 1: decode threw: amount "lots" is not a number');
    expect((await jsm.consumers.info(stream, "lake")).config.filter_subject).toBe(`${stream}.x`);
  });

  test("a server that cannot be reached fails the run, naming it without credentials", async () => {
    const error = await run(fromJetStream({ servers: "nats://app:s3cr3t-pw@127.0.0.1:1", stream: "nowhere", consumer: "lake" }).pipe(toArray())).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(error?.message).toContain("nats://***:***@127.0.0.1:1");
    expect(error?.message).toContain('stream "nowhere"');
    expect(JSON.stringify({ message: error?.message, stack: error?.stack, cause: String(error?.cause) })).not.toContain("s3cr3t");
  });

  test("a missing stream fails the run, naming it", async () => {
    const error = await run(fromJetStream({ servers: SERVERS, stream: `sluice-missing-${process.pid}`, consumer: "lake" }).pipe(toArray())).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(error?.message).toContain(`stream "sluice-missing-${process.pid}"`);
    expect(error?.message).toMatch(/stream not found/i);
  });

  test("survives being killed mid-stream: a restarted worker gets the unacknowledged messages again, nothing is lost and nothing written twice", async () => {
    const stream = await newStream();
    const TOTAL = 6000;
    const out = join(dir.path, "crash");
    const events = join(out, "events");
    const fixture = join(import.meta.dir, "../fixtures/jetstream-to-parquet.ts");
    // An ack wait a busy machine's stalls (the first ledger look reads every footer) stay well
    // inside: a live worker that cannot keep its messages alive for most of it fails its run.
    const start = () => Bun.spawn(["bun", fixture, stream, "lake", out, "6000"], { stdout: "pipe", stderr: "pipe" });
    // Messages keep arriving while the workers run and die.
    const producing = (async () => {
      for (let from = 1; from <= TOTAL; from += 300) {
        await produce(stream, from, from + 299);
        await Bun.sleep(40);
      }
    })();

    const first = start();
    await until("a first file", () => parquetFiles(events) >= 3);
    first.kill("SIGKILL");
    await first.exited;
    const leftByFirst = (await consumerState(stream, "lake")).ackPending;
    const afterFirst = parquetFiles(events);

    const second = start();
    // On a busy machine the first worker may have read and acknowledged nearly everything before
    // its kill landed: then there is nothing left for three more files, and the third run below
    // still proves nothing was lost or written twice.
    let produced = false;
    producing.then(() => {
      produced = true;
    });
    await until("more files after the restart, or nothing left to read", async () => {
      if (parquetFiles(events) >= afterFirst + 3) return true;
      // A worker that failed (it could not keep its messages alive on a stalled machine) says why.
      if (second.exitCode !== null) throw new Error(`the restarted worker exited with ${second.exitCode}: ${await new Response(second.stderr).text()}`);
      if (!produced) return false;
      const state = await consumerState(stream, "lake");
      return state.undelivered === 0 && state.ackPending === 0;
    });
    second.kill("SIGKILL");
    await second.exited;
    const leftBySecond = (await consumerState(stream, "lake")).ackPending;

    await producing;
    const third = start();
    await until("every message delivered and acknowledged", async () => {
      const state = await consumerState(stream, "lake");
      return state.undelivered === 0 && state.ackPending === 0;
    }, 60_000);
    third.kill("SIGTERM");
    expect(await third.exited).toBe(0);
    const summary = JSON.parse((await new Response(third.stdout).text()).trim().split("\n").at(-1) as string);
    expect(summary.stopped).toBe(true);

    expect((await consumerState(stream, "lake")).ackPending).toBe(0);
    const [row] = await query(`SELECT count(*) AS n, count(DISTINCT id) AS d FROM ${dataset(events)}`);
    // Nothing lost, nothing twice: messages committed before a kill and not yet acknowledged come back
    // redelivered, and the ledger (the committed files' footers) skips them.
    expect(Number(row?.d)).toBe(valid(1, TOTAL));
    expect(Number(row?.n)).toBe(Number(row?.d));
    const [bad] = await query(`SELECT count(*) AS n FROM ${dataset(events)} WHERE n <> id * 2`);
    expect(bad?.n).toBe("0");
    const letters = [...readDeadLettersSync(join(out, "dead-letter"))].map((d) => d.entry.raw);
    expect(new Set(letters).size).toBe(TOTAL - valid(1, TOTAL));
    expect(letters.length).toBe(TOTAL - valid(1, TOTAL));
    console.log(
      `jetstream crash test: ${Number(row?.n) - Number(row?.d)} duplicate rows of ${row?.d} (${leftByFirst} and ${leftBySecond} messages unacknowledged at the kills)`,
    );
  }, 180_000);
});
