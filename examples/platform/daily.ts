/**
 * A daily job, the kind a scheduler runs once a day and again for backfills: it processes the
 * events of the given dates (generated here, deterministic per date; a real job would read the
 * day's export) and replaces those dates' partitions, so re-running a date never duplicates rows.
 *
 *   sluice run examples/platform/daily.ts --date 2024-03-01 --out out/daily
 *   sluice run examples/platform/daily.ts --from 2024-03-01 --to 2024-03-07 --out out/daily
 *   sluice run examples/platform/daily.ts --backfill 2024-03-01..2024-03-07 --out out/daily
 *   sluice schedule examples/platform      (at 02:00 UTC every day: yesterday, into out/platform)
 *
 * Which dates: the backfill's date (`context.date`, one run per date), else the day before the
 * scheduled time (`context.scheduledAt`) when `sluice schedule` runs it, else --date or --from/--to.
 *
 * writes <out>/events/event_date=YYYY-MM-DD/part-<run id>-*.parquet and appends rejects to
 * <out>/dead-letter. Options: --per-day N events per date (default 2000).
 */
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Observable } from "rxjs";
import { civilFromDays, definePipeline, type PipelineContext, parseIsoDays, partitionSegment, toParquet } from "sluice";
import { deadLetter, enrich, validate } from "sluice/operators";
import { currentFlow, sendToDeadLetter, waitForGate } from "../../src/flow/flow.ts";
import { Input, stamp } from "../../src/flow/position.ts";
import { type GeneratedLine, generateClickstream } from "../../src/generate/clickstream.ts";
import { addInputTotal } from "../../src/run/metrics.ts";
import { ClickEvent, EnrichedEvent, enrichEvent } from "../clickstream.ts";

/** The longest range one run accepts; longer backfills are split by the scheduler. */
const MAX_DAYS = 366;

interface DailyOptions {
  readonly dates: string[];
  readonly out: string;
  readonly perDay: number;
}

/**
 * The dates of a run: `--date D`, or `--from D --to D` (inclusive). Throws with a clear message
 * for a missing, malformed or impossible date, or a reversed or too long range.
 */
export function datesOf(args: readonly string[]): string[] {
  const values = parse(args);
  const day = (name: string, text: string | undefined) => {
    const days = text === undefined ? Number.NaN : parseIsoDays(text);
    if (text === undefined || !/^\d{4}-\d{2}-\d{2}$/.test(text) || Number.isNaN(days)) {
      throw new Error(`--${name} must be a date YYYY-MM-DD, not ${text ?? "missing"}`);
    }
    return days;
  };
  if (values.date !== undefined) {
    if (values.from !== undefined || values.to !== undefined) throw new Error("give --date, or --from and --to, not both");
    return [civilFromDays(day("date", values.date))];
  }
  if (values.from === undefined && values.to === undefined) throw new Error("give --date YYYY-MM-DD, or --from and --to for a backfill");
  const from = day("from", values.from);
  const to = day("to", values.to);
  if (to < from) throw new Error(`--to ${values.to} is before --from ${values.from}`);
  if (to - from + 1 > MAX_DAYS) throw new Error(`a run covers at most ${MAX_DAYS} days; split the backfill`);
  return Array.from({ length: to - from + 1 }, (_, i) => civilFromDays(from + i));
}

function parse(args: readonly string[]) {
  return parseArgs({
    args: [...args],
    options: { date: { type: "string" }, from: { type: "string" }, to: { type: "string" }, out: { type: "string" }, "per-day": { type: "string" } },
    strict: true,
  }).values;
}

function optionsOf(args: readonly string[]): DailyOptions {
  const values = parse(args);
  if (!values.out) throw new Error("--out <folder> is required");
  const perDay = Number(values["per-day"] ?? 2000);
  if (!Number.isInteger(perDay) || perDay < 1) throw new Error(`--per-day must be a positive integer, not ${values["per-day"]}`);
  return { dates: [], out: values.out, perDay };
}

/** The seed of a date's events: the same date always gives the same events. */
function seedOf(date: string): number {
  return parseIsoDays(date) + 1;
}

/** The events of one date, as the day's export would hold them (about 2% defective). */
export function eventsFor(date: string, perDay: number): Generator<GeneratedLine> {
  return generateClickstream({ count: perDay, seed: seedOf(date), start: `${date}T00:00:00Z`, days: 1 });
}

/**
 * The source: each date's events in turn. Before a date's first event it removes that date's
 * partition, so the run replaces the day rather than adding to it.
 */
function days(options: DailyOptions): Observable<unknown> {
  return new Observable<unknown>((subscriber) => {
    const flow = currentFlow();
    let stopped = false;
    addInputTotal(flow, { records: options.dates.length * options.perDay });

    (async () => {
      for (const date of options.dates) {
        if (stopped || flow.stopping) return;
        await rm(join(options.out, "events", partitionSegment("event_date", date)), { recursive: true, force: true });
        const source = `generated/${date}.ndjson`;
        const input = new Input(flow, source);
        let line = 0;
        for (const { text } of eventsFor(date, options.perDay)) {
          if (stopped || subscriber.closed) return;
          line++;
          const position = input.at(line, text);
          flow.stats.bytesRead += Buffer.byteLength(text) + 1;
          let value: unknown;
          try {
            value = JSON.parse(text);
          } catch (error) {
            sendToDeadLetter(flow, "parse", `malformed JSON: ${(error as Error).message}`, undefined, position);
            continue;
          }
          subscriber.next(stamp(value, position));
          if (line % 1000 === 0) {
            if (flow.gate) await waitForGate(flow);
            if (flow.stopping) return;
            // Let timers (progress, metrics, the sink's age check) run between chunks.
            await new Promise((resolve) => setImmediate(resolve));
          }
        }
      }
    })().then(
      () => subscriber.complete(),
      (error) => subscriber.error(error),
    );

    return () => {
      stopped = true;
    };
  });
}

/**
 * The dates of a run from its context: the backfill's date, or the day before a scheduled run's
 * time (a run at 02:00 processes the day that has just ended), or the arguments' dates.
 */
export function runDates(context: Pick<PipelineContext, "args" | "date" | "scheduledAt">): string[] {
  const given = context.date ?? (context.scheduledAt ? civilFromDays(Math.floor(context.scheduledAt.getTime() / 86_400_000) - 1) : undefined);
  if (given === undefined) return datesOf(context.args);
  const values = parse(context.args);
  if (values.date !== undefined || values.from !== undefined || values.to !== undefined) {
    throw new Error(`this run is for ${given} (${context.date ? "--backfill" : "its schedule"}); --date, --from and --to cannot be given too`);
  }
  return [given];
}

export default definePipeline({
  description: "daily events job: --date YYYY-MM-DD or --from/--to backfill, replaces those dates' partitions (--out <folder>)",
  schedule: { cron: "0 2 * * *", args: ["--out", join("out", "platform")] },
  source(context) {
    return days({ ...optionsOf(context.args), dates: runDates(context) });
  },
  process(records, context) {
    const { args, replay } = context;
    const { out } = optionsOf(args);
    // Replayed dead letters may come without dates; only a scheduled run checks them.
    const dates = replay ? undefined : new Set(runDates(context));
    return records.pipe(
      validate(ClickEvent),
      enrich((event) => {
        const enriched = enrichEvent(event);
        if (dates && !dates.has(enriched.event_date)) {
          throw new Error(`event dated ${enriched.event_date} is outside this run's dates; it would land in a partition the run does not own`);
        }
        return enriched;
      }),
      deadLetter(join(out, "dead-letter"), { mode: "append" }),
      // Append: the source has already removed the partitions of this run's dates.
      toParquet(join(out, "events"), { schema: EnrichedEvent, partitionBy: ["event_date"], mode: "append" }),
    );
  },
});
