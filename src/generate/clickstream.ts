/**
 * Deterministic clickstream events, with a controlled share of defects, for tests, examples and
 * the benchmark. The defects are the ones real exports have: wrong types, missing fields, unknown
 * enum values, impossible timestamps and truncated JSON lines.
 */
import { seededRandom } from "./random.ts";

export const EVENT_TYPES = [
  "page_view",
  "click",
  "scroll",
  "search",
  "add_to_cart",
  "remove_from_cart",
  "checkout",
  "purchase",
] as const;

const USER_AGENTS = [
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
  "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
  "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
  "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36",
  "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
  "ShopApp/4.2 (Android 14; okhttp/4.12)",
  "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
];
const COUNTRIES = ["US", "DE", "FR", "GB", "JP", "BR", "IN", "NL", "SE", "ES"];
const PAGES = ["/", "/search", "/product/", "/cart", "/checkout", "/account", "/category/shoes", "/category/été"];
const TAGS = ["new", "sale", "promo", "returning", "mobile-first", "ünïcode", "a/b"];

/** The kinds of defect the generator plants, in the proportions it plants them. */
export const DEFECTS = [
  "string_for_number",
  "number_for_string",
  "missing_field",
  "unknown_event_type",
  "impossible_timestamp",
  "lowercase_country",
  "malformed_json",
] as const;

export interface ClickstreamOptions {
  /** Number of lines (default 1000). */
  readonly count?: number;
  readonly seed?: number;
  /** Share of lines with a defect (default 0.02). */
  readonly defectRate?: number | undefined;
  /** First instant; events spread over `days` days from it (defaults 2024-03-01, 7). */
  readonly start?: string;
  readonly days?: number;
}

/** An event being generated: the fields a defect changes are named, so they can be set with a dot. */
interface EventFields {
  [field: string]: unknown;
  price?: unknown;
  duration_ms?: unknown;
  user_id?: unknown;
  event_type?: unknown;
  timestamp?: unknown;
  country?: unknown;
}

/** One generated line and what the generator did to it. */
export interface GeneratedLine {
  readonly text: string;
  readonly defect: (typeof DEFECTS)[number] | undefined;
}

/**
 * Generates clickstream NDJSON lines (without newlines). The same options give the same lines.
 *
 * @example
 * for (const { text } of generateClickstream({ count: 10, seed: 1 })) console.log(text);
 */
export function* generateClickstream(options: ClickstreamOptions = {}): Generator<GeneratedLine> {
  const count = options.count ?? 1000;
  const random = seededRandom(options.seed ?? 42);
  const defectRate = options.defectRate ?? 0.02;
  const start = Date.parse(options.start ?? "2024-03-01T00:00:00Z");
  const span = (options.days ?? 7) * 86_400_000;
  const step = span / Math.max(count, 1);

  for (let i = 0; i < count; i++) {
    const ms = Math.floor(start + i * step + random.next() * step);
    const micros = random.int(1000);
    const timestamp =
      random.int(4) === 0
        ? new Date(ms).toISOString()
        : `${new Date(ms).toISOString().slice(0, 23)}${String(micros).padStart(3, "0")}Z`;
    const eventType = random.pick(EVENT_TYPES);
    const event: EventFields = {
      event_id: `evt-${i.toString(36)}-${random.int(1e9).toString(36)}`,
      user_id: `u${random.int(50_000)}`,
      session_id: `s${random.int(200_000).toString(36)}`,
      timestamp,
      event_type: eventType,
      page_url: `https://shop.example${random.pick(PAGES)}${random.int(100)}`,
      user_agent: random.pick(USER_AGENTS),
      duration_ms: random.int(120_000),
      country: random.pick(COUNTRIES),
      tags: Array.from({ length: random.int(4) }, () => random.pick(TAGS)),
    };
    const priced = eventType === "add_to_cart" || eventType === "purchase" || eventType === "checkout";
    const priceChoice = random.int(3);
    if (priced) event.price = Math.round(random.next() * 50_000) / 100;
    else if (priceChoice === 0) event.price = null;

    let defect: GeneratedLine["defect"];
    if (random.next() < defectRate) {
      defect = random.pick(DEFECTS);
      switch (defect) {
        case "string_for_number":
          event.duration_ms = String(event.duration_ms);
          break;
        case "number_for_string":
          event.user_id = random.int(50_000);
          break;
        case "missing_field":
          delete event[random.pick(["event_id", "session_id", "timestamp", "tags"])];
          break;
        case "unknown_event_type":
          event.event_type = "hover";
          break;
        case "impossible_timestamp":
          event.timestamp = "2024-02-30T12:00:00Z";
          break;
        case "lowercase_country":
          event.country = String(event.country).toLowerCase();
          break;
        case "malformed_json": {
          const text = JSON.stringify(event);
          yield { text: text.slice(0, Math.max(1, random.int(text.length - 1))), defect };
          continue;
        }
      }
    }
    yield { text: JSON.stringify(event), defect };
  }
}

/**
 * Writes generated lines to a file; returns how many lines carry each defect.
 *
 * @example
 * await writeClickstream("data/events.ndjson", { count: 100_000 });
 */
export async function writeClickstream(path: string, options: ClickstreamOptions = {}): Promise<Record<string, number>> {
  const writer = Bun.file(path).writer({ highWaterMark: 1 << 20 });
  const defects: Record<string, number> = {};
  let pending: string[] = [];
  let size = 0;
  for (const { text, defect } of generateClickstream(options)) {
    if (defect) defects[defect] = (defects[defect] ?? 0) + 1;
    pending.push(text);
    size += text.length;
    if (size > 1 << 20) {
      writer.write(`${pending.join("\n")}\n`);
      pending = [];
      size = 0;
    }
  }
  if (pending.length > 0) writer.write(`${pending.join("\n")}\n`);
  await writer.end();
  return defects;
}
