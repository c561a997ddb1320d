/**
 * A platform of auto-discovered pipelines: every module in examples/platform/ is a pipeline
 * (adding a file adds one), found the way `sluice list` finds them. This script lists them with
 * their schedules and next runs, then backfills the daily job over a date range the way
 * `sluice run --backfill` does: one run per date (the date reaches the job as `context.date`),
 * stopping at a failed date, with progress in a state file so a re-run resumes.
 *
 *   bun examples/platform.ts [outdir] [--from 2024-03-01] [--days 3] [--per-day 2000] [--restart]
 *
 * writes <outdir>/events/event_date=YYYY-MM-DD/*.parquet, <outdir>/dead-letter/ (default
 * out/platform) and the backfill's state, <outdir>/.backfill/daily-FROM..TO.json. Running it again
 * skips the dates already done; --restart runs them all again, replacing each date's partition
 * instead of adding rows twice.
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import { backfillPipeline, type BackfillResult, civilFromDays, createLogger, formatBytes, parseIsoDays, upcomingRuns } from "sluice";
import { discoverPipelines } from "../src/run/discover.ts";

/** The pipelines folder of this example platform. */
export const PLATFORM_FOLDER = join(import.meta.dir, "platform");

/** One backfilled date and what its run did. */
export interface BackfilledDate {
  readonly date: string;
  readonly runId: string;
  readonly in: number;
  readonly written: number;
  readonly deadLettered: number;
}

/**
 * Backfills the pipeline `name` of `folder` over `from..to` with the extra arguments, keeping its
 * progress in `state`; `onDate` hears of each date run now. Rejects when there is no such
 * pipeline; a failed date is in the result (`failed`), and the dates after it are not run.
 */
export async function backfill(
  name: string,
  range: string,
  extraArgs: readonly string[],
  state: string,
  options: { readonly restart?: boolean; readonly folder?: string; readonly onDate?: (result: BackfilledDate) => void } = {},
): Promise<BackfillResult> {
  const folder = options.folder ?? PLATFORM_FOLDER;
  const found = (await discoverPipelines(folder)).find((p) => p.name === name);
  if (!found) throw new Error(`no pipeline named ${name} in ${folder}`);
  if (!found.ok) throw new Error(`pipeline ${name} cannot be used: ${found.error}`);
  return backfillPipeline(found.pipeline, range, {
    name,
    state,
    args: extraArgs,
    restart: options.restart ?? false,
    // This script prints its own lines per date; the backfill's log lines would repeat them.
    log: createLogger({ write: () => {} }),
    onDate: (date, s) => options.onDate?.({ date, runId: s.runId, in: s.in, written: s.written, deadLettered: s.deadLettered }),
  });
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Bun.argv.slice(2),
    options: {
      from: { type: "string", default: "2024-03-01" },
      days: { type: "string", default: "3" },
      "per-day": { type: "string", default: "2000" },
      restart: { type: "boolean", default: false },
    },
    allowPositionals: true,
  });
  const out = positionals[0] ?? join("out", "platform");
  const first = parseIsoDays(values.from);
  if (Number.isNaN(first)) throw new Error(`--from must be a date YYYY-MM-DD, not ${values.from}`);
  const range = `${values.from}..${civilFromDays(first + Number(values.days) - 1)}`;

  console.log(`pipelines in ${PLATFORM_FOLDER}:`);
  const found = await discoverPipelines(PLATFORM_FOLDER);
  for (const p of found) {
    console.log(`  ${p.name.padEnd(12)} ${p.ok ? p.description : `cannot be used: ${p.error}`}`);
    if (p.ok && p.schedule) {
      const next = upcomingRuns([{ name: p.name, schedule: p.schedule }], new Date(), 2).map((r) => r.at.toISOString());
      console.log(`  ${"".padEnd(12)} schedule ${p.schedule.cron} (${p.schedule.timezone}): next runs ${next.join(", ")}`);
    }
  }

  const state = join(out, ".backfill", `daily-${range}.json`);
  console.log(`\nbackfill of daily over ${range} into ${out}:`);
  const started = performance.now();
  const result = await backfill("daily", range, ["--out", out, "--per-day", values["per-day"]], state, {
    restart: values.restart,
    onDate: (r) =>
      console.log(
        `  ${r.date}  run ${r.runId}  in ${r.in.toLocaleString("en-US")}  written ${r.written.toLocaleString("en-US")}  dead-lettered ${r.deadLettered.toLocaleString("en-US")}`,
      ),
  });
  for (const date of result.alreadyDone) console.log(`  ${date}  already done (${state}; --restart runs it again)`);
  if (result.failed) {
    console.log(`  ${result.failed.date}  failed: ${result.failed.error}; run again to resume from it`);
    process.exitCode = 1;
  }
  const used = formatBytes(process.memoryUsage.rss());
  console.log(`done in ${((performance.now() - started) / 1000).toFixed(2)} s (rss ${used}); dataset: ${join(out, "events")}`);
}
