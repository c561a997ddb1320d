/**
 * Removes what distributed test jobs left on the brokers: their Redis keys (`sluice:job:<job>:*`)
 * and their JetStream streams (whose names begin with the job's).
 */
import { RedisClient } from "bun";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";

export async function forgetJobs(
  jobs: readonly string[],
  redisUrl = process.env["REDIS_URL"] ?? "redis://127.0.0.1:6379",
  natsUrl = process.env["NATS_URL"] ?? "nats://127.0.0.1:4222",
): Promise<void> {
  const redis = new RedisClient(redisUrl);
  for (const job of jobs) {
    const keys = (await redis.send("KEYS", [`sluice:job:${job}:*`])) as string[];
    if (keys.length > 0) await redis.send("DEL", keys);
  }
  redis.close();
  const nc = await connect({ servers: natsUrl });
  const jsm = await jetstreamManager(nc);
  const names: string[] = [];
  for await (const info of jsm.streams.list()) names.push(info.config.name);
  for (const name of names.filter((n) => jobs.some((job) => n.includes(job)))) await jsm.streams.delete(name).catch(() => {});
  await nc.close();
}
