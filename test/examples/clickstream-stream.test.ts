import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { type JetStreamManager, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import * as v from "valibot";
import { ClickEvent, enrichEvent } from "../../examples/clickstream.ts";
import type { DeadLetter } from "../../src/deadletter/entry.ts";
import { readDeadLetters } from "../../src/index.ts";
import type { RunSummary } from "../../src/run/run.ts";
import { dataset, query, tempDir } from "../helpers/duckdb.ts";

const EXAMPLE = join(import.meta.dir, "..", "..", "examples", "clickstream-stream.ts");
const SERVERS = "nats://127.0.0.1:4222";

let nc: NatsConnection;
let jsm: JetStreamManager;
let dir: { path: string; remove: () => Promise<void> };
const streams: string[] = [];

/** A stream name no other run uses; the example creates `<name>` and `<name>-dead`, deleted after the tests. */
function newStream(tag: string): string {
  const name = `sluice-cs-${tag}-${process.pid}-${Date.now()}`;
  streams.push(name, `${name}-dead`);
  return name;
}

/** Every message's payload in a stream, read with the NATS client (not sluice). */
async function payloads(stream: string): Promise<string[]> {
  const { state } = await jsm.streams.info(stream);
  const out: string[] = [];
  if (state.messages === 0) return out;
  const messages = await (await jetstream(nc).consumers.get(stream)).fetch({ max_messages: state.messages, expires: 5000 });
  for await (const m of messages) {
    out.push(m.string());
    if (out.length === state.messages) break;
  }
  return out;
}

/** Whether the pipeline should keep an event, decided here with valibot and the enrichment, not with sluice's operators. */
function isGood(payload: string): string | undefined {
  let value: unknown;
  try {
    value = JSON.parse(payload);
  } catch {
    return undefined;
  }
  const parsed = v.safeParse(ClickEvent, value);
  if (!parsed.success) return undefined;
  try {
    enrichEvent(parsed.output);
  } catch {
    return undefined;
  }
  return parsed.output.event_id;
}

const sorted = (values: readonly string[]) => [...values].sort();

interface Output {
  produced: RunSummary;
  duplicates: number;
  consumed: RunSummary;
}

beforeAll(async () => {
  nc = await connect({ servers: SERVERS });
  jsm = await jetstreamManager(nc);
  dir = await tempDir("sluice-clickstream-stream-");
});

afterAll(async () => {
  for (const stream of streams) await jsm.streams.delete(stream).catch(() => {});
  await nc.close();
  await dir.remove();
});

describe("the streaming clickstream example", () => {
  test("every produced good event lands in Parquet once, every bad one once in the dead-letter folder and once on the dead-letter stream", async () => {
    const stream = newStream("all");
    const out = join(dir.path, "all");
    const child = Bun.spawn(
      ["bun", EXAMPLE, out, "--events", "3000", "--rate", "3000", "--stream", stream, "--start", "2024-05-01T23:59:59.500Z", "--json"],
      { stdout: "pipe", stderr: "pipe" },
    );
    const [stdout, stderr, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
    expect(stderr).toBe("");
    expect(code).toBe(0);
    const result = JSON.parse(stdout) as Output;
    expect(result.produced.written).toBe(3000);
    expect(result.duplicates).toBe(0);
    expect(result.consumed.in).toBe(3000);

    const produced = await payloads(stream);
    expect(produced.length).toBe(3000);
    const good = produced.map(isGood).filter((id): id is string => id !== undefined);
    const bad = produced.filter((p) => isGood(p) === undefined);
    expect(bad.length).toBeGreaterThan(0);
    expect(good.length + bad.length).toBe(3000);

    const events = dataset(join(out, "events"));
    const [counts] = await query(`SELECT count(*)::INT AS n, count(DISTINCT event_id)::INT AS d FROM ${events}`);
    expect(counts).toEqual({ n: good.length, d: good.length });
    const ids = (await query(`SELECT event_id FROM ${events}`)).map((r) => r.event_id as string);
    expect(sorted(ids)).toEqual(sorted(good));
    // Half a second before midnight, at 3,000 events/s: both days.
    const days = (await query(`SELECT DISTINCT event_date::VARCHAR AS d FROM ${events} ORDER BY d`)).map((r) => r.d);
    expect(days).toEqual(["2024-05-01", "2024-05-02"]);

    const folder: DeadLetter[] = [];
    for await (const entry of readDeadLetters(join(out, "dead-letter"))) folder.push(entry);
    expect(sorted(folder.map((d) => d.raw))).toEqual(sorted(bad));
    expect(new Set(folder.map((d) => d.stage))).toEqual(new Set(["parse", "validate"]));
    const published = (await payloads(`${stream}-dead`)).map((p) => JSON.parse(p) as DeadLetter);
    expect(sorted(published.map((d) => JSON.stringify(d)))).toEqual(sorted(folder.map((d) => JSON.stringify(d))));

    const lake = await jsm.consumers.info(stream, "lake");
    expect(lake.num_ack_pending).toBe(0);
    expect(lake.num_pending).toBe(0);
  });

  test("SIGTERM stops both halves cleanly: what was read is written once and acknowledged", async () => {
    const stream = newStream("term");
    const out = join(dir.path, "term");
    const child = Bun.spawn(["bun", EXAMPLE, out, "--events", "10000000", "--rate", "2000", "--stream", stream, "--json"], { stdout: "pipe", stderr: "pipe" });
    const deadline = Date.now() + 30_000;
    // Until the producer has published a good part and the consumer has written and acknowledged
    // some of it (delivered alone is not enough: on a busy machine a stop can come before a
    // delivered batch is read, and then nothing is written).
    for (;;) {
      const messages = await jsm.streams.info(stream).then(
        (i) => i.state.messages,
        () => 0,
      );
      const acked = messages > 0 ? await jsm.consumers.info(stream, "lake").then((c) => c.ack_floor.stream_seq, () => 0) : 0;
      if (messages >= 1000 && acked >= 500) break;
      if (Date.now() > deadline) throw new Error("the example did not get going");
      await Bun.sleep(20);
    }
    child.kill("SIGTERM");
    const [stdout, stderr, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
    expect(stderr).toBe("");
    expect(code).toBe(0);
    const result = JSON.parse(stdout) as Output;
    expect(result.produced.stopped).toBe(true);
    expect(result.consumed.stopped).toBe(true);
    expect(result.produced.written).toBe((await jsm.streams.info(stream)).state.messages);
    const { consumed } = result;
    expect(consumed.written + consumed.deadLettered).toBe(consumed.in);
    const [counts] = await query(`SELECT count(*)::INT AS n, count(DISTINCT event_id)::INT AS d FROM ${dataset(join(out, "events"))}`);
    expect(counts).toEqual({ n: consumed.written, d: consumed.written });
    // Every message read is acknowledged. Messages a pull had delivered when the stop came were
    // never read: fromJetStream leaves them to come back after ack_wait (not acknowledged, not lost).
    const lake = await jsm.consumers.info(stream, "lake");
    expect(lake.ack_floor.stream_seq).toBe(consumed.in);
    expect(lake.num_ack_pending).toBe(lake.delivered.stream_seq - consumed.in);
    expect((await jsm.streams.info(`${stream}-dead`)).state.messages).toBe(consumed.deadLettered);
  });
});
