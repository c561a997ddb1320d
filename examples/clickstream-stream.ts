/**
 * The streaming clickstream system on NATS JetStream: a generator produces click events to a
 * stream with `toJetStream`; a pipeline reads them with `fromJetStream` → validate → enrich →
 * dead letters (a folder, and published to a dead-letter stream) → date-partitioned Parquet.
 *
 *   bun examples/clickstream-stream.ts [outdir] [--events 10000] [--rate 5000] [--seed 42]
 *       [--stream sluice-clicks] [--servers nats://127.0.0.1:4222] [--start ISO-instant]
 *       [--mode both|produce|consume] [--json]
 *
 * `--mode both` (default) produces `--events` events and consumes until as many are read, then
 * stops. `produce` only publishes them; `consume` reads until `--events` are read, or, with
 * `--events 0`, until SIGTERM/SIGINT. SIGTERM or Ctrl-C stops either half cleanly: the producer
 * stops generating, the consumer commits what it holds and acknowledges it before exiting.
 *
 * Streams (created when missing): `<stream>` takes `<stream>.events`; `<stream>-dead` takes
 * `<stream>-dead.entries`, one JSON dead letter per message. The consumer is the durable
 * `lake`: a second run goes on where the first stopped. Output (appended to):
 * `<outdir>/events/event_date=YYYY-MM-DD/*.parquet` and `<outdir>/dead-letter/*.ndjson`
 * (default outdir: out/clickstream-stream).
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import {
  clickstreamProducer,
  type Flow,
  formatSummary,
  fromGenerator,
  fromJetStream,
  type Published,
  run,
  type RunSummary,
  toJetStream,
  toParquet,
} from "sluice";
import { deadLetter, enrich, validate } from "sluice/operators";
import { ClickEvent, EnrichedEvent, enrichEvent } from "./clickstream.ts";

/** How the example is set up; see the module comment. */
export interface StreamOptions {
  readonly servers: string;
  readonly stream: string;
  readonly events: number;
  readonly rate: number;
  readonly seed: number;
  readonly startTime?: number;
}

/** The two JetStream streams of the example, created when missing; resolves with their subjects. */
export async function ensureStreams(servers: string, stream: string): Promise<{ events: string; dead: string }> {
  const nc = await connect({ servers });
  try {
    const jsm = await jetstreamManager(nc);
    for (const [name, subject] of [
      [stream, `${stream}.events`],
      [`${stream}-dead`, `${stream}-dead.entries`],
    ] as const) {
      const exists = await jsm.streams.info(name).then(
        () => true,
        () => false,
      );
      if (!exists) await jsm.streams.add({ name, subjects: [subject] });
    }
  } finally {
    await nc.close();
  }
  return { events: `${stream}.events`, dead: `${stream}-dead.entries` };
}

/**
 * Publishes `events` click events (web and app producers, with planted defects) to the events
 * subject. A malformed event is published as its broken text, the rest as JSON. Resolves with the
 * run's summary and how many messages the stream already had (none unless re-run inside its
 * duplicate window with the same seed and start).
 */
export async function produce(options: StreamOptions, signal?: AbortSignal): Promise<{ summary: RunSummary; duplicates: number }> {
  const { events } = await ensureStreams(options.servers, options.stream);
  let duplicates = 0;
  const summary = await run(
    fromGenerator({
      producers: [
        clickstreamProducer({ name: "web", rate: { events: options.rate * 0.7, perMs: 1000 }, defectRate: 0.03 }),
        clickstreamProducer({ name: "app", rate: { events: options.rate * 0.3, perMs: 1000 }, defectRate: 0.02 }),
      ],
      seed: options.seed,
      count: options.events,
      startTime: options.startTime,
    }).pipe(
      toJetStream({
        servers: options.servers,
        subject: events,
        // Truncated JSON arrives from the producer as text: sent as it is, for the consumer to reject.
        encode: (event) => (typeof event === "string" ? event : JSON.stringify(event)),
      }),
    ),
    { handleSignals: true, ...(signal ? { signal } : {}), onValue: (p) => void (duplicates += (p as Published).duplicates) },
  );
  return { summary, duplicates };
}

/**
 * Reads the events stream through the durable consumer `lake` into `outDir` until `events`
 * messages are read (0: until stopped), then stops cleanly.
 */
export async function consume(options: StreamOptions, outDir: string, signal?: AbortSignal): Promise<RunSummary> {
  const { dead } = await ensureStreams(options.servers, options.stream);
  const enough = new AbortController();
  signal?.addEventListener("abort", () => enough.abort(), { once: true });
  let flow: Flow | undefined;
  let watch: ReturnType<typeof setInterval> | undefined;
  try {
    return await run(
      // Messages are held until their file commits: max ack pending must cover maxFileAgeMs of
      // traffic (50,000 in 2 s: up to 25,000 events/s), or reading waits for the age limit.
      fromJetStream({ servers: options.servers, stream: options.stream, consumer: "lake", ackWaitMs: 30_000, maxAckPending: 50_000 }).pipe(
        validate(ClickEvent),
        enrich(enrichEvent),
        deadLetter(join(outDir, "dead-letter"), { maxFileAgeMs: 2000, publish: { jetstream: { servers: options.servers, subject: dead } } }),
        toParquet(join(outDir, "events"), { schema: EnrichedEvent, partitionBy: ["event_date"], mode: "append", maxFileAgeMs: 2000 }),
      ),
      {
        handleSignals: true,
        signal: enough.signal,
        onStart(f) {
          flow = f;
          if (options.events > 0) {
            watch = setInterval(() => {
              if ((flow?.stats.in ?? 0) >= options.events) enough.abort();
            }, 20);
          }
        },
      },
    );
  } finally {
    clearInterval(watch);
  }
}

if (import.meta.main) {
  const { NATS_URL } = process.env;
  const { values, positionals } = parseArgs({
    args: Bun.argv.slice(2),
    options: {
      events: { type: "string", default: "10000" },
      rate: { type: "string", default: "5000" },
      seed: { type: "string", default: "42" },
      stream: { type: "string", default: "sluice-clicks" },
      servers: { type: "string", default: NATS_URL ?? "nats://127.0.0.1:4222" },
      start: { type: "string" },
      mode: { type: "string", default: "both" },
      json: { type: "boolean", default: false },
    },
    allowPositionals: true,
  });
  const outDir = positionals[0] ?? join("out", "clickstream-stream");
  const options: StreamOptions = {
    servers: values.servers,
    stream: values.stream,
    events: Number(values.events),
    rate: Number(values.rate),
    seed: Number(values.seed),
    ...(values.start !== undefined ? { startTime: Date.parse(values.start) } : {}),
  };
  const mode = values.mode;
  if (
    !(Number.isInteger(options.events) && options.events >= 0) ||
    !(options.rate > 0) ||
    Number.isNaN(options.startTime) ||
    !["both", "produce", "consume"].includes(mode) ||
    (mode !== "consume" && options.events === 0)
  ) {
    console.error(
      "usage: bun examples/clickstream-stream.ts [outdir] [--events N] [--rate R] [--seed S] [--stream NAME] [--servers URL] [--start ISO-instant] [--mode both|produce|consume] [--json]",
    );
    process.exit(2);
  }
  const [produced, consumed] = await Promise.all([
    mode === "consume" ? undefined : produce(options),
    mode === "produce" ? undefined : consume(options, outDir),
  ]);
  if (values.json) {
    console.log(JSON.stringify({ produced: produced?.summary, duplicates: produced?.duplicates, consumed }));
  } else {
    if (produced) console.log(`produced\n${formatSummary(produced.summary)}\n(${produced.duplicates} already in the stream)\n`);
    if (consumed) console.log(`consumed\n${formatSummary(consumed)}`);
    if (consumed) console.log(`dataset: ${join(outDir, "events")}   dead letters: ${join(outDir, "dead-letter")} and stream ${options.stream}-dead`);
  }
}
