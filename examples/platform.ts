/**
 * A platform of auto-discovered pipelines: every module in examples/platform/ is a pipeline
 * (adding a file adds one), found the way `sluice list` finds them. This script lists them, then
 * does what a scheduler does for a backfill: one run of the daily job per date.
 *
 *   bun examples/platform.ts [outdir] [--from 2024-03-01] [--days 3] [--per-day 2000]
 *
 * writes <outdir>/events/event_date=YYYY-MM-DD/*.parquet and <outdir>/dead-letter/ (default out/platform).
 * Running it again replaces the same dates' partitions instead of adding rows twice.
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import { civilFromDays, formatBytes, parseIsoDays, runPipeline } from "sluice";
import { discoverPipelines } from "../src/run/discover.ts";

/** The pipelines folder of this example platform. */
export const PLATFORM_FOLDER = join(import.meta.dir, "platform");

/** One backfilled date and what its run did. */
export interface BackfillResult {
  readonly date: string;
  readonly runId: string;
  readonly in: number;
  readonly written: number;
  readonly deadLettered: number;
}

/**
 * Runs `pipeline` once per date, in order, with `--date <date>` and the extra arguments, and
 * stops at the first failed run (the dates after it are not run). Bad records never fail a run.
 */
export async function backfill(
  name: string,
  dates: readonly string[],
  extraArgs: readonly string[],
  folder = PLATFORM_FOLDER,
): Promise<BackfillResult[]> {
  const found = (await discoverPipelines(folder)).find((p) => p.name === name);
  if (!found) throw new Error(`no pipeline named ${name} in ${folder}`);
  if (!found.ok) throw new Error(`pipeline ${name} cannot be used: ${found.error}`);
  const results: BackfillResult[] = [];
  for (const date of dates) {
    const summary = await runPipeline(found.pipeline, { args: ["--date", date, ...extraArgs] });
    results.push({ date, runId: summary.runId, in: summary.in, written: summary.written, deadLettered: summary.deadLettered });
  }
  return results;
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Bun.argv.slice(2),
    options: { from: { type: "string", default: "2024-03-01" }, days: { type: "string", default: "3" }, "per-day": { type: "string", default: "2000" } },
    allowPositionals: true,
  });
  const out = positionals[0] ?? join("out", "platform");
  const first = parseIsoDays(values.from);
  if (Number.isNaN(first)) throw new Error(`--from must be a date YYYY-MM-DD, not ${values.from}`);
  const dates = Array.from({ length: Number(values.days) }, (_, i) => civilFromDays(first + i));

  console.log(`pipelines in ${PLATFORM_FOLDER}:`);
  for (const found of await discoverPipelines(PLATFORM_FOLDER)) {
    console.log(`  ${found.name.padEnd(12)} ${found.ok ? found.description : `cannot be used: ${found.error}`}`);
  }

  console.log(`\nbackfill of daily over ${dates[0]} .. ${dates.at(-1)} into ${out}:`);
  const started = performance.now();
  for (const result of await backfill("daily", dates, ["--out", out, "--per-day", values["per-day"]])) {
    console.log(
      `  ${result.date}  run ${result.runId}  in ${result.in.toLocaleString("en-US")}  written ${result.written.toLocaleString("en-US")}  dead-lettered ${result.deadLettered.toLocaleString("en-US")}`,
    );
  }
  const used = formatBytes(process.memoryUsage.rss());
  console.log(`done in ${((performance.now() - started) / 1000).toFixed(2)} s (rss ${used}); dataset: ${join(out, "events")}`);
}
