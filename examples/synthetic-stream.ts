/**
 * Synthetic clickstream from three producers at different rates (web 2,000/s, app 800/s, a
 * crawler 50/s, each planting defects) → validation → enrichment → date-partitioned Parquet, for
 * a number of seconds, then a summary per producer.
 *
 *   bun examples/synthetic-stream.ts [outdir] [--seconds 10] [--seed 42] [--start 2024-05-01T00:00:00Z] [--json]
 *
 * writes <outdir>/events/event_date=YYYY-MM-DD/*.parquet and <outdir>/dead-letter/*.ndjson
 * (default outdir: out/synthetic). The same seed and start give the same dataset; without
 * --start, events are stamped from now. Ctrl-C stops early and commits what was generated.
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import { clickstreamProducer, formatSummary, fromGenerator, type Producer, readDeadLetters, run, type RunSummary, toParquet } from "sluice";
import { deadLetter, enrich, validate } from "sluice/operators";
import { ClickEvent, EnrichedEvent, enrichEvent } from "./clickstream.ts";

/** The demo's producers: names, rates and defect rates. */
export const PRODUCERS: readonly Producer<unknown>[] = [
  clickstreamProducer({ name: "web", rate: { events: 2000, perMs: 1000 }, defectRate: 0.02 }),
  clickstreamProducer({ name: "app", rate: { events: 800, perMs: 1000 }, defectRate: 0.01 }),
  clickstreamProducer({ name: "crawler", rate: { events: 50, perMs: 1000 }, defectRate: 0.1 }),
];

/** What each producer made and how much of it was rejected. */
export interface ProducerTally {
  readonly made: number;
  readonly deadLettered: number;
}

/**
 * Runs the demo for `seconds` of schedule time into `outDir`; resolves with the run summary and a
 * tally per producer.
 */
export async function syntheticStream(
  outDir: string,
  options: { seconds: number; seed: number; startTime?: number },
): Promise<{ summary: RunSummary; producers: Record<string, ProducerTally> }> {
  const made: Record<string, number> = {};
  // Counting inside each maker: the source emits exactly what the makers made.
  const producers = PRODUCERS.map(
    (p): Producer<unknown> => ({
      ...p,
      make(random, index, time) {
        made[p.name] = index + 1;
        return p.make(random, index, time);
      },
    }),
  );
  const summary = await run(
    fromGenerator({ producers, seed: options.seed, durationMs: options.seconds * 1000, startTime: options.startTime }).pipe(
      validate(ClickEvent),
      enrich(enrichEvent),
      deadLetter(join(outDir, "dead-letter"), { mode: "overwrite" }),
      toParquet(join(outDir, "events"), { schema: EnrichedEvent, partitionBy: ["event_date"], mode: "overwrite" }),
    ),
    { handleSignals: true },
  );
  const rejected: Record<string, number> = {};
  for await (const entry of readDeadLetters(join(outDir, "dead-letter"))) rejected[entry.source] = (rejected[entry.source] ?? 0) + 1;
  const tally: Record<string, ProducerTally> = {};
  for (const p of PRODUCERS) tally[p.name] = { made: made[p.name] ?? 0, deadLettered: rejected[p.name] ?? 0 };
  return { summary, producers: tally };
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Bun.argv.slice(2),
    options: {
      seconds: { type: "string", default: "10" },
      seed: { type: "string", default: "42" },
      start: { type: "string" },
      json: { type: "boolean", default: false },
    },
    allowPositionals: true,
  });
  const outDir = positionals[0] ?? join("out", "synthetic");
  const startTime = values.start === undefined ? undefined : Date.parse(values.start);
  if (Number.isNaN(startTime) || !(Number(values.seconds) > 0)) {
    console.error("usage: bun examples/synthetic-stream.ts [outdir] [--seconds N] [--seed S] [--start ISO-instant] [--json]");
    process.exit(2);
  }
  const result = await syntheticStream(outDir, { seconds: Number(values.seconds), seed: Number(values.seed), startTime });
  if (values.json) {
    console.log(JSON.stringify(result));
  } else {
    console.log(formatSummary(result.summary));
    for (const [name, t] of Object.entries(result.producers)) {
      console.log(`${name.padEnd(14)} ${t.made.toLocaleString("en-US")} made, ${t.deadLettered.toLocaleString("en-US")} dead-lettered`);
    }
    console.log(`dataset: ${join(outDir, "events")}   dead letters: ${join(outDir, "dead-letter")}`);
  }
}
