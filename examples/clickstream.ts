/**
 * The clickstream pipeline: NDJSON events → validation → enrichment → date-partitioned Parquet,
 * with every rejected line in the dead letter.
 *
 *   bun examples/clickstream.ts <input.ndjson or glob> <outdir>
 *
 * writes <outdir>/events/event_date=YYYY-MM-DD/*.parquet and <outdir>/dead-letter/*.ndjson.
 * With no arguments it generates 100,000 events into ./out/clickstream.ndjson first.
 */
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import * as v from "valibot";
import { civilFromDays, formatSummary, fromNdjson, isoInstant, parseIsoMicros, run, toParquet } from "sluice";
import { deadLetter, enrich, validate } from "sluice/operators";
import { EVENT_TYPES, writeClickstream } from "../src/generate/clickstream.ts";

const nonEmpty = v.pipe(v.string(), v.minLength(1));

/** One input event. Nothing is coerced: "123" is not a duration, 42 is not a user id. */
export const ClickEvent = v.object({
  event_id: nonEmpty,
  user_id: nonEmpty,
  session_id: nonEmpty,
  timestamp: isoInstant(),
  event_type: v.picklist(EVENT_TYPES),
  page_url: v.string(),
  user_agent: v.string(),
  duration_ms: v.pipe(v.number(), v.integer(), v.minValue(0)),
  price: v.nullish(v.number()),
  country: v.pipe(v.string(), v.regex(/^[A-Z]{2}$/, "country must be two upper-case letters")),
  tags: v.array(v.string()),
});
export type ClickEvent = v.InferOutput<typeof ClickEvent>;

/** A stored event: the input fields plus what enrichment derives. */
export const EnrichedEvent = v.object({
  ...ClickEvent.entries,
  timestamp: v.string(),
  event_ts: isoInstant(),
  event_date: v.pipe(v.string(), v.isoDate()),
  device_type: v.picklist(["bot", "app", "tablet", "mobile", "desktop"]),
  event_category: v.picklist(["view", "interaction", "cart", "conversion"]),
});
export type EnrichedEvent = v.InferOutput<typeof EnrichedEvent>;

const CATEGORY: Record<ClickEvent["event_type"], EnrichedEvent["event_category"]> = {
  page_view: "view",
  scroll: "view",
  click: "interaction",
  search: "interaction",
  add_to_cart: "cart",
  remove_from_cart: "cart",
  checkout: "conversion",
  purchase: "conversion",
};

const deviceTypes = new Map<string, EnrichedEvent["device_type"]>();

/** Device class from a user agent; bots first, since crawlers also claim to be browsers. */
export function deviceType(userAgent: string): EnrichedEvent["device_type"] {
  let type = deviceTypes.get(userAgent);
  if (type === undefined) {
    type = classify(userAgent);
    // User agents repeat heavily; a bounded cache saves five regex tests per event.
    if (deviceTypes.size < 10_000) deviceTypes.set(userAgent, type);
  }
  return type;
}

function classify(userAgent: string): EnrichedEvent["device_type"] {
  if (/bot|crawler|spider|slurp/i.test(userAgent)) return "bot";
  if (/okhttp|ShopApp|Dalvik|CFNetwork/i.test(userAgent)) return "app";
  if (/iPad|Tablet/i.test(userAgent)) return "tablet";
  if (/Mobi|iPhone|Android/i.test(userAgent)) return "mobile";
  return "desktop";
}

/** Adds event_ts, event_date (the UTC day), device_type and event_category. */
export function enrichEvent(event: ClickEvent): EnrichedEvent {
  const micros = parseIsoMicros(event.timestamp);
  if (Number.isNaN(micros)) throw new Error(`timestamp ${event.timestamp} is not a real instant`);
  return {
    ...event,
    event_ts: event.timestamp,
    event_date: civilFromDays(Math.floor(micros / 86_400_000_000)),
    device_type: deviceType(event.user_agent),
    event_category: CATEGORY[event.event_type],
  };
}

/** Runs the clickstream job from `input` into `outDir`, replacing an earlier run's output. */
export function clickstream(input: string | string[], outDir: string, options: { encoders?: number } = {}) {
  return run(
    fromNdjson(input).pipe(
      validate(ClickEvent),
      enrich(enrichEvent),
      deadLetter(join(outDir, "dead-letter"), { mode: "overwrite" }),
      toParquet(join(outDir, "events"), {
        schema: EnrichedEvent,
        partitionBy: ["event_date"],
        mode: "overwrite",
        encoders: options.encoders,
      }),
    ),
    // A script owns its process: Ctrl-C stops reading and commits what is buffered.
    { handleSignals: true },
  );
}

if (import.meta.main) {
  let [input, outDir] = Bun.argv.slice(2);
  if (!input) {
    outDir = "out";
    input = join(outDir, "clickstream.ndjson");
    await mkdir(outDir, { recursive: true });
    await Bun.write(input, "");
    await writeClickstream(input, { count: 100_000, seed: 42 });
    console.log(`generated 100,000 events into ${input}`);
  }
  if (!outDir) {
    console.error("usage: bun examples/clickstream.ts <input.ndjson or glob> <outdir>");
    process.exit(2);
  }
  const summary = await clickstream(input, outDir);
  console.log(formatSummary(summary));
  console.log(`dataset: ${join(outDir, "events")}   dead letters: ${join(outDir, "dead-letter")}`);
}
