/**
 * A Kafka-protocol broker for tests: librdkafka's mock cluster, started by `launcher.c` (built
 * here with gcc when missing, cached under node_modules/.cache, which git ignores).
 *
 * Each call starts its own one-broker cluster on a free loopback port, with the topics given. What
 * the mock serves (see docs/limits.md): produce, fetch, one member per group, offset commits and
 * ListOffsets on one-partition topics.
 */
import { existsSync, mkdirSync, renameSync, statSync } from "node:fs";
import { join } from "node:path";

const source = join(import.meta.dir, "launcher.c");
const binary = join(import.meta.dir, "../../../node_modules/.cache/sluice-kafka-mock/launcher");

/** Builds the launcher when it is missing or older than its source. Throws with gcc's output. */
export function buildLauncher(): string {
  if (existsSync(binary) && statSync(binary).mtimeMs >= statSync(source).mtimeMs) return binary;
  if (!existsSync("/usr/include/librdkafka/rdkafka_mock.h")) {
    throw new Error("the Kafka mock needs librdkafka's headers: apt-get install -y librdkafka-dev gcc");
  }
  mkdirSync(join(binary, ".."), { recursive: true });
  // Built under a name of its own and renamed, so test files starting at once never run half a binary.
  const temporary = `${binary}.${process.pid}.tmp`;
  const built = Bun.spawnSync(["gcc", "-O2", "-o", temporary, source, "-lrdkafka"], { stderr: "pipe" });
  if (built.exitCode !== 0) throw new Error(`building the Kafka mock failed: ${built.stderr.toString()}`);
  renameSync(temporary, binary);
  return binary;
}

/** A running mock cluster. */
export interface KafkaMock {
  /** The bootstrap address, `127.0.0.1:<port>`. */
  readonly brokers: string;
  /** Kills the cluster (and with it every topic and committed offset). */
  stop(): Promise<void>;
}

/** Starts a mock cluster with `topics` (`name` or `name:partitions`); `rttMs` delays every response. */
export async function startKafkaMock(topics: readonly string[], options: { rttMs?: number } = {}): Promise<KafkaMock> {
  const launcher = buildLauncher();
  const rtt = options.rttMs ? [`--rtt=${options.rttMs}`] : [];
  // stdin stays open: the launcher exits when it closes, so a test process that dies takes it along.
  const child = Bun.spawn([launcher, ...rtt, ...topics], { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
  const reader = child.stdout.getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) {
      const why = await new Response(child.stderr).text();
      throw new Error(`the Kafka mock exited before printing its address: ${why}`);
    }
    text += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  const brokers = text.trim().split(",")[0] as string;
  return {
    brokers,
    async stop() {
      child.kill();
      await child.exited;
    },
  };
}
