/**
 * Publishing throughput: `toJetStream` and `toRedisStream` against the bare client doing the same
 * work (JSON, batches of 500 sent together, up to 5,000 messages awaiting acknowledgements, a
 * `Nats-Msg-Id` on every JetStream message) in the same run, on the local NATS and Redis. Each is
 * run twice, alternating; the better run counts. Prints records/s and the ratio to the peer.
 *
 *   bun test/bench/publish.ts [records=100000]
 */
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { RedisClient } from "bun";
import { from } from "rxjs";
import { run, toJetStream, toRedisStream } from "../../src/index.ts";

const count = Number(Bun.argv[2] ?? 100_000);
const records = Array.from({ length: count }, (_, i) => ({
  event_id: `e${i}`,
  user_id: `u${i % 977}`,
  timestamp: new Date(1_700_000_000_000 + i).toISOString(),
  page_url: `/p/${i % 101}`,
  duration_ms: i % 5000,
  tags: ["a", "b"],
}));
const name = `sluice-bench-${process.pid}`;

const nc = await connect({ servers: "nats://127.0.0.1:4222" });
const jsm = await jetstreamManager(nc);
const redis = new RedisClient("redis://127.0.0.1:6379");
await redis.connect();

/** Seconds of the better of two runs of each, alternating (`reset` before every run). */
async function pair(reset: () => Promise<unknown>, a: [string, () => Promise<unknown>], b: [string, () => Promise<unknown>]): Promise<[number, number]> {
  const best = [Number.POSITIVE_INFINITY, Number.POSITIVE_INFINITY];
  for (let round = 0; round < 2; round++) {
    for (const [i, [, work]] of [a, b].entries()) {
      await reset();
      const start = performance.now();
      await work();
      best[i] = Math.min(best[i] as number, (performance.now() - start) / 1000);
    }
  }
  for (const [i, [what]] of [a, b].entries()) {
    console.log(`${what.padEnd(34)} ${Math.round(count / (best[i] as number)).toLocaleString("en-US").padStart(9)} records/s`);
  }
  return best as [number, number];
}

/** Sends batches of 500 with at most 5,000 messages unanswered, as the sinks do by default. */
async function bare(send: (r: (typeof records)[number], i: number) => Promise<unknown>): Promise<void> {
  const inflight = new Set<Promise<unknown>>();
  for (let i = 0; i < count; i += 500) {
    if (inflight.size >= 10) await Promise.race(inflight);
    const batch: Promise<unknown> = Promise.all(records.slice(i, i + 500).map((r, k) => send(r, i + k)));
    inflight.add(batch);
    batch.then(() => inflight.delete(batch));
  }
  await Promise.all(inflight);
}

async function freshStream() {
  await jsm.streams.delete(name).catch(() => {});
  await jsm.streams.add({ name, subjects: [`${name}.>`] });
}

try {
  const js = jetstream(nc);
  const [sinkJs, bareJs] = await pair(
    freshStream,
    ["toJetStream", () => run(from(records).pipe(toJetStream({ subject: `${name}.x` })))],
    ["bare JetStream publish", () => bare((r, i) => js.publish(`${name}.x`, JSON.stringify(r), { msgID: `bench:${i}` }))],
  );
  console.log(`toJetStream / bare: ${(bareJs / sinkJs).toFixed(2)}x the throughput\n`);

  const [sinkRedis, bareRedis] = await pair(
    () => redis.send("DEL", [name]),
    ["toRedisStream", () => run(from(records).pipe(toRedisStream({ stream: name })))],
    ["bare XADD", () => bare((r) => redis.send("XADD", [name, "*", "data", JSON.stringify(r)]))],
  );
  console.log(`toRedisStream / bare: ${(bareRedis / sinkRedis).toFixed(2)}x the throughput`);
} finally {
  await jsm.streams.delete(name).catch(() => {});
  await redis.send("DEL", [name]);
  redis.close();
  await nc.close();
}
