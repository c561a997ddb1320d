/**
 * `sluice schedule <folder>`: runs the folder's pipelines on their cron schedules in this process,
 * one log file per run, until SIGTERM or SIGINT; `--dry-run` prints the upcoming runs.
 */
import { join } from "node:path";
import { discoverPipelines } from "../run/discover.ts";
import { createLogger, type LogFormat } from "../run/log.ts";
import type { Schedule } from "../run/pipeline.ts";
import { type ScheduledPipeline, Scheduler, upcomingRuns } from "../run/schedule.ts";
import { parseOptions } from "./args.ts";
import { startProgress } from "./progress.ts";

const USAGE = `usage: sluice schedule [options] <folder>

Runs each pipeline module in <folder> that declares a schedule (definePipeline({ schedule: "0 2 * * *", ... }))
at its cron times, until SIGTERM or SIGINT. A run due while the same pipeline's previous run is still going
is skipped and logged. Every run has its own run id and log file.

options:
  --logs <folder>              run logs, one per run: <folder>/<pipeline>/<runId>.log (default <folder>/.sluice/logs)
  --dry-run                    print the upcoming runs and exit
  --count <N>                  with --dry-run: how many upcoming runs (default 10)
  --at <instant>               with --dry-run: the runs after this ISO 8601 instant instead of now
  --log-format text|json       the scheduler's own lines: text on standard error, or JSON objects on standard output
  --progress-interval <seconds>  time between progress lines in a run's log (default 30)

On SIGTERM or SIGINT no run starts any more; running runs stop reading, commit what they buffered,
and the command exits once all have ended (a second signal exits at once, without committing).

exit codes: 0 --dry-run printed, 2 usage error or a module that cannot be used (bad schedule, import
error), 130 / 143 stopped by SIGINT / SIGTERM after the running runs committed.`;

/** A found pipeline with its schedule. */
interface Found {
  readonly name: string;
  readonly path: string;
  readonly pipeline: ScheduledPipeline["pipeline"];
  readonly schedule: Schedule | undefined;
}

/**
 * Runs `sluice schedule` and resolves to its exit code: after `--dry-run` has printed, or once a
 * signal has stopped the scheduler and every running run has committed.
 *
 * @example
 * process.exitCode = await command(["pipelines", "--dry-run", "--count", "5"]);
 */
export async function command(args: string[]): Promise<number> {
  const parsed = parseOptions("schedule", USAGE, args, {
    logs: { type: "string" },
    "dry-run": { type: "boolean" },
    count: { type: "string" },
    at: { type: "string" },
    "log-format": { type: "string" },
    "progress-interval": { type: "string" },
  });
  if (typeof parsed === "number") return parsed;
  const { values, positionals } = parsed;
  const usage = (message: string) => {
    console.error(`sluice schedule: ${message}\n\n${USAGE}`);
    return 2;
  };
  if (positionals.length !== 1) return usage(positionals.length === 0 ? "the pipelines folder is missing" : "one folder only");
  const folder = positionals[0] as string;
  const format = values["log-format"] ?? "text";
  if (format !== "text" && format !== "json") return usage(`--log-format must be text or json, not ${format}`);
  const count = Number(values.count ?? 10);
  if (!Number.isInteger(count) || count < 1 || count > 10_000) return usage(`--count must be a whole number from 1 to 10000, not ${values.count}`);
  const at = values.at === undefined ? new Date() : new Date(values.at);
  if (values.at !== undefined && (!/^\d{4}-\d{2}-\d{2}T/.test(values.at) || Number.isNaN(at.getTime()))) {
    return usage(`--at must be an ISO 8601 instant such as 2024-03-01T00:00:00Z, not ${values.at}`);
  }
  if ((values.at !== undefined || values.count !== undefined) && !values["dry-run"]) return usage("--at and --count go with --dry-run");
  const interval = Number(values["progress-interval"] ?? 30);
  if (!Number.isFinite(interval) || interval < 0.05) return usage(`--progress-interval must be a number of seconds of at least 0.05, not ${values["progress-interval"]}`);

  const json = format === "json";
  const log = createLogger({ format: format as LogFormat, write: json ? (line) => process.stdout.write(`${line}\n`) : (line) => process.stderr.write(`${line}\n`) });

  let found: Found[];
  try {
    const discovered = await discoverPipelines(folder);
    const broken = discovered.filter((p) => !p.ok);
    if (broken.length > 0) {
      for (const p of broken) log.error(`sluice schedule: ${p.ok ? "" : p.error}`, json ? { module: p.path } : undefined);
      log.error(`sluice schedule: ${broken.length} module(s) in ${folder} cannot be used; fix or remove them (sluice list ${folder} shows why)`);
      return 2;
    }
    found = discovered.flatMap((p) => (p.ok ? [{ name: p.name, path: p.path, pipeline: p.pipeline, schedule: p.schedule }] : []));
  } catch (error) {
    log.error(`sluice schedule: ${(error as Error).message.replace(/^discoverPipelines: /, "")}`);
    return 2;
  }
  const scheduled = found.flatMap((p) => (p.schedule ? [{ ...p, schedule: p.schedule }] : []));
  const unscheduled = found.filter((p) => !p.schedule).map((p) => p.name);
  if (scheduled.length === 0) {
    log.error(`sluice schedule: no pipeline in ${folder} has a schedule (add schedule: "0 2 * * *" to definePipeline)`);
    return 2;
  }

  if (values["dry-run"]) {
    printUpcoming(scheduled, unscheduled, at, count, json);
    return 0;
  }

  const logs = values.logs ?? join(folder, ".sluice", "logs");
  let scheduler: Scheduler;
  try {
    scheduler = new Scheduler(scheduled, {
      logs,
      log,
      watch: (flow, runLog) => startProgress(flow, { mode: "plain", log: runLog, intervalMs: interval * 1000 }).stop,
    });
  } catch (error) {
    log.error(`sluice schedule: ${(error as Error).message.replace(/^Scheduler: /, "")}`);
    return 2;
  }
  for (const p of scheduled) {
    const next = p.schedule.next(new Date());
    const { retries, retryDelayMs, timeoutMs } = p.schedule;
    log.info(
      json ? "scheduled" : `${p.name}: ${p.schedule.cron} (${p.schedule.timezone})${limitsOf(p.schedule)}, next run ${next?.toISOString() ?? "never"}`,
      json
        ? { pipeline: p.name, cron: p.schedule.cron, timezone: p.schedule.timezone, retries, retryDelaySeconds: retryDelayMs / 1000, timeoutSeconds: timeoutMs === undefined ? null : timeoutMs / 1000, next: next?.toISOString() ?? null }
        : undefined,
    );
  }
  if (unscheduled.length > 0) log.info(`not scheduled (no schedule): ${unscheduled.join(", ")}`);
  log.info(json ? "scheduler started" : `scheduler started: ${scheduled.length} pipeline(s), logs in ${logs}; SIGTERM or SIGINT stops it`, json ? { logs } : undefined);

  const stopped = new Promise<NodeJS.Signals>((resolve) => {
    let first: NodeJS.Signals | undefined;
    const onSignal = (signal: NodeJS.Signals) => {
      if (first) {
        log.error(`sluice schedule: second ${signal}, exiting without waiting for running runs to commit`);
        process.exit(signal === "SIGINT" ? 130 : 143);
      }
      first = signal;
      const running = [...scheduler.running].map(([name, runId]) => `${name} (run ${runId})`);
      log.warn(
        `${signal} received: no more runs start; ${running.length === 0 ? "no run is going" : `waiting for ${running.join(", ")} to commit what they buffered`} (send it again to exit at once)`,
      );
      resolve(signal);
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
  });
  scheduler.start();
  const signal = await stopped;
  await scheduler.stop();
  log.info("scheduler stopped: every run has ended");
  return signal === "SIGINT" ? 130 : 143;
}

function printUpcoming(scheduled: readonly (Found & { readonly schedule: Schedule })[], unscheduled: readonly string[], at: Date, count: number, json: boolean): void {
  const runs = upcomingRuns(scheduled, at, count);
  if (json) {
    const rows = {
      after: at.toISOString(),
      pipelines: scheduled.map((p) => ({ name: p.name, path: p.path, cron: p.schedule.cron, timezone: p.schedule.timezone })),
      unscheduled,
      runs: runs.map((r) => ({ pipeline: r.name, at: r.at.toISOString() })),
    };
    console.log(JSON.stringify(rows, null, 2));
    return;
  }
  const width = Math.max(...scheduled.map((p) => p.name.length));
  console.log(`${scheduled.length} scheduled pipeline${scheduled.length === 1 ? "" : "s"}:`);
  for (const p of scheduled) console.log(`  ${p.name.padEnd(width)}  ${p.schedule.cron} (${p.schedule.timezone})${limitsOf(p.schedule)}`);
  if (unscheduled.length > 0) console.log(`not scheduled: ${unscheduled.join(", ")}`);
  console.log(`\nthe next ${runs.length} run${runs.length === 1 ? "" : "s"} after ${at.toISOString()}:`);
  for (const r of runs) console.log(`  ${r.at.toISOString()}  ${r.name}`);
}

/** A schedule's retries and time limit, as `, 2 retries (first after 300 s), timeout 3600 s`; empty when it has neither. */
function limitsOf({ retries, retryDelayMs, timeoutMs }: Schedule): string {
  const retry = retries > 0 ? `, ${retries} retr${retries === 1 ? "y" : "ies"} (first after ${retryDelayMs / 1000} s)` : "";
  return `${retry}${timeoutMs !== undefined ? `, timeout ${timeoutMs / 1000} s` : ""}`;
}
