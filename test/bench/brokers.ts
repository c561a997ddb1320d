/**
 * `bun run bench:brokers [--count N] [--workers 1,2,3] [--brokers redis,jetstream] [--rounds R]`: how fast a
 * consumer group of 1, 2 and 3 worker processes moves a stream into one shared Parquet dataset
 * (test/fixtures/broker-scaleout.ts: validate, a shared dead-letter folder, a date-partitioned
 * dataset), from the first worker's start until the broker has every message acknowledged (so the
 * time includes process start, and ends only once every file is committed). The peer, measured in
 * the same session: one process of the same pipeline reading the same records from an NDJSON file,
 * run right before each broker measurement (paired); the ratio is the median over `--rounds` (3).
 * The workers use the sources' default read sizes.
 * Uses the local Redis (6379) and NATS (4222) with streams of its own, deleted afterwards.
 */
import { RedisClient } from "bun";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";

const { values } = parseArgs({
  args: Bun.argv.slice(2),
  options: {
    count: { type: "string", default: "200000" },
    workers: { type: "string", default: "1,2,3" },
    brokers: { type: "string", default: "redis,jetstream" },
    rounds: { type: "string", default: "3" },
  },
});
const count = Number(values.count);
if (!Number.isSafeInteger(count) || count < 1) throw new Error(`--count must be a whole number of messages, not ${values.count}`);
const workerCounts = (values.workers ?? "").split(",").map(Number);
for (const w of workerCounts) if (!Number.isSafeInteger(w) || w < 1) throw new Error(`--workers takes whole numbers, comma-separated, not ${values.workers}`);
const brokers = (values.brokers ?? "").split(",");
const rounds = Number(values.rounds);
if (!Number.isSafeInteger(rounds) || rounds < 1) throw new Error(`--rounds must be a whole number, not ${values.rounds}`);
for (const b of brokers) if (b !== "redis" && b !== "jetstream") throw new Error(`--brokers takes redis, jetstream, not ${b}`);

const FIXTURE = join(import.meta.dir, "..", "fixtures", "broker-scaleout.ts");
const REDIS = "redis://127.0.0.1:6379";
const NATS = "nats://127.0.0.1:4222";
const DAYS = ["2024-03-01", "2024-03-02", "2024-03-03"];
const tag = `sluice-bench-${process.pid}-${Date.now()}`;

/** Message `i`: 2 in 100 bad (not JSON, or failing validation), as in the scale-out test. */
function messageAt(i: number): string {
  if (i % 100 === 7) return `{"id": ${i}, broken`;
  if (i % 100 === 29) return JSON.stringify({ id: i, day: "someday", n: i });
  return JSON.stringify({ id: i, day: DAYS[i % 3], n: i * 2 });
}

const scratch = await mkdtemp(join(tmpdir(), "sluice-bench-brokers-"));
const spawn = (args: string[]) => Bun.spawn(["bun", FIXTURE, ...args], { stdout: "pipe", stderr: "pipe" });

async function until(ok: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 600_000;
  while (!(await ok())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(20);
  }
}

/** Seconds the NDJSON peer takes: one process, start to exit. */
const file = join(scratch, "input.ndjson");
await Bun.write(file, `${Array.from({ length: count }, (_, i) => messageAt(i + 1)).join("\n")}\n`);

async function ndjsonSeconds(): Promise<number> {
  await rm(join(scratch, "ndjson-out"), { recursive: true, force: true });
  const started = performance.now();
  const child = spawn(["ndjson", file, "-", "-", "-", join(scratch, "ndjson-out"), "30000", "20000"]);
  const [stderr, code] = await Promise.all([new Response(child.stderr).text(), child.exited]);
  if (code !== 0) throw new Error(`the NDJSON peer failed: ${stderr}`);
  return (performance.now() - started) / 1000;
}

/** Seconds `workers` processes take to move `count` messages of a fresh Redis stream. */
async function redisSeconds(workers: number): Promise<number> {
  const redis = new RedisClient(REDIS);
  const stream = `${tag}-${workers}`;
  try {
    await redis.send("XGROUP", ["CREATE", stream, "lake", "0", "MKSTREAM"]);
    for (let start = 1; start <= count; start += 5000) {
      const sent: Promise<unknown>[] = [];
      for (let i = start; i < start + 5000 && i <= count; i++) sent.push(redis.send("XADD", [stream, "*", "data", messageAt(i)]));
      await Promise.all(sent);
    }
    const out = join(scratch, `redis-${workers}`);
    const started = performance.now();
    const children = Array.from({ length: workers }, (_, w) => spawn(["redis", REDIS, stream, "lake", `w${w}`, out, "30000", "20000", "-", "-", "default"]));
    await until(async () => {
      const [group] = (await redis.send("XINFO", ["GROUPS", stream])) as { lag: number; pending: number }[];
      return Number(group?.lag) === 0 && Number(group?.pending) === 0;
    }, "every entry acknowledged");
    const seconds = (performance.now() - started) / 1000;
    for (const child of children) child.kill("SIGTERM");
    await Promise.all(children.map((c) => c.exited));
    return seconds;
  } finally {
    await redis.send("DEL", [stream]);
    redis.close();
  }
}

/** Seconds `workers` processes take to move `count` messages of a fresh JetStream stream. */
async function jetstreamSeconds(workers: number): Promise<number> {
  const nc = await connect({ servers: NATS });
  const jsm = await jetstreamManager(nc);
  const stream = `${tag}-${workers}`;
  try {
    await jsm.streams.add({ name: stream, subjects: [`${stream}.>`] });
    await jsm.consumers.add(stream, { durable_name: "lake", ack_policy: "explicit" as never, ack_wait: 30_000_000_000, max_ack_pending: 100_000 });
    const js = jetstream(nc);
    for (let start = 1; start <= count; start += 5000) {
      const sent: Promise<unknown>[] = [];
      for (let i = start; i < start + 5000 && i <= count; i++) sent.push(js.publish(`${stream}.${i % 3}`, messageAt(i)));
      await Promise.all(sent);
    }
    const out = join(scratch, `jetstream-${workers}`);
    const started = performance.now();
    const children = Array.from({ length: workers }, (_, w) => spawn(["jetstream", NATS, stream, "lake", `w${w}`, out, "30000", "20000", "-", "-", "default"]));
    await until(async () => {
      const info = await jsm.consumers.info(stream, "lake");
      return info.num_pending === 0 && info.num_ack_pending === 0;
    }, "every message acknowledged");
    const seconds = (performance.now() - started) / 1000;
    for (const child of children) child.kill("SIGTERM");
    await Promise.all(children.map((c) => c.exited));
    return seconds;
  } finally {
    await jsm.streams.delete(stream).catch(() => {});
    await nc.close();
  }
}

const rate = (seconds: number) => Math.round(count / seconds).toLocaleString("en-US");
try {
  console.log(`${count.toLocaleString("en-US")} messages (2% bad), ${navigatorCores()} cores, ${rounds} rounds`);
  const pairs = new Map<string, { peer: number; seconds: number }[]>();
  for (let round = 1; round <= rounds; round++) {
    for (const broker of brokers) {
      for (const workers of workerCounts) {
        const peer = await ndjsonSeconds();
        const seconds = broker === "redis" ? await redisSeconds(workers) : await jetstreamSeconds(workers);
        const key = `${broker} ${workers}`;
        pairs.set(key, [...(pairs.get(key) ?? []), { peer, seconds }]);
        console.log(`round ${round}: ${broker} x${workers} ${seconds.toFixed(2)} s, NDJSON ${peer.toFixed(2)} s: ${(peer / seconds).toFixed(2)}`);
      }
    }
  }
  console.log(`${"source".padEnd(12)} ${"workers".padStart(7)} ${"seconds".padStart(8)} ${"msg/s".padStart(9)}  vs NDJSON, paired: median (min-max)`);
  for (const [key, runs] of pairs) {
    const [broker, workers] = key.split(" ") as [string, string];
    const ratios = runs.map((r) => r.peer / r.seconds);
    const seconds = median(runs.map((r) => r.seconds));
    console.log(
      `${broker.padEnd(12)} ${workers.padStart(7)} ${seconds.toFixed(2).padStart(8)} ${rate(seconds).padStart(9)}  ${median(ratios).toFixed(2)} (${Math.min(...ratios).toFixed(2)}-${Math.max(...ratios).toFixed(2)})`,
    );
  }
  const peers = [...pairs.values()].flat().map((r) => r.peer);
  console.log(`${"ndjson file".padEnd(12)} ${"1".padStart(7)} ${median(peers).toFixed(2).padStart(8)} ${rate(median(peers)).padStart(9)}  1.00`);
} finally {
  await rm(scratch, { recursive: true, force: true });
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? (sorted[middle] as number) : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

function navigatorCores(): number {
  return navigator.hardwareConcurrency;
}
