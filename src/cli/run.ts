/**
 * `sluice run <pipeline.ts> [args]`: runs a pipeline module with live progress, optional
 * Prometheus metrics, and a summary; the exit code says whether the run finished.
 */
import { splitCommandLine } from "./args.ts";
import type { Observable } from "rxjs";
import type { Flow } from "../flow/flow.ts";
import { loadPipeline } from "../run/discover.ts";
import { createLogger, type LogFormat, type Logger } from "../run/log.ts";
import { type MetricsServer, serveMetrics } from "../run/metrics.ts";
import { redactArgs } from "../run/redact.ts";
import { formatBytes, type RunSummary, run } from "../run/run.ts";
import { checkRunId, newRunId } from "../flow/runId.ts";
import type { PipelineContext } from "../run/pipeline.ts";
import { formatRunTable, type ProgressDisplay, type ProgressMode, startProgress } from "./progress.ts";
import { BackfillError, defaultBackfillState, parseDateRange, runBackfill } from "../run/backfill.ts";
import { basename, extname } from "node:path";
import { checkJobName, checkQueueUrl } from "../distribute/distribution.ts";
import { safeUrl } from "../distribute/queue.ts";

/** Exit codes of `sluice run`. */
export const EXIT = {
  /** The run read its whole input. Bad records are counted in the summary, never fatal. */
  ok: 0,
  /** Infrastructure failure during the run: unreadable input, unwritable output, disk full. */
  failed: 1,
  /** Wrong arguments, a missing module, a module that is not a pipeline or cannot be built, a busy metrics port. */
  usage: 2,
  /** Stopped by SIGINT after committing what was buffered (128 + 2, the shell's convention). */
  interrupted: 130,
  /** Stopped by SIGTERM after committing what was buffered (128 + 15). */
  terminated: 143,
} as const;

const USAGE = `usage: sluice run [options] <pipeline.ts> [pipeline args] [-- more pipeline args]

options (before or after the module path; everything after -- goes to the pipeline):
  --progress auto|tty|plain|none   live display on a terminal, a line every interval otherwise (default auto)
  --no-progress                    same as --progress none
  --progress-interval <seconds>    time between plain progress lines (default 5)
  --log-format text|json           json: one JSON object per line on stdout, each with the run id
  --metrics [host:]port            serve Prometheus /metrics and /health (host default 127.0.0.1; port 0 = any free port;
                                   no authentication: a host other than loopback is warned about)
  --metrics-linger <seconds>       keep serving metrics this long after the run, for a last scrape (default 0)
  --run-id <id>                    the run's id (default: time-based): letters, digits, '.', '_', '-'
  --checkpoint <file.sqlite>       record what is durable; a re-run with the same file resumes (see run()'s checkpoint)
  --backfill FROM..TO              one run per date, in order (dates YYYY-MM-DD, both included; the date reaches the
                                   pipeline as context.date); stops at the first failed date, and resumes there when run again
  --backfill-state <file.json>     where the backfill records finished dates
                                   (default .sluice/backfill/<pipeline>/FROM..TO.json beside the module)
  --backfill-restart               forget the recorded dates and run every date again
  --distribute <url>               be one worker of a distributed run: file inputs are cut into splits shared through a
                                   work queue on redis://host:port (or nats://host:port); start the same command on
                                   every machine. Needs --job. Not with --checkpoint: the queue records what is done
  --job <name>                     the distributed job's name, the same for every worker; a finished job stays
                                   finished: give a new name (clicks-2024-03-01, ...) to run it again
  --split-bytes <size>             about how much of a large NDJSON/CSV file one split holds (default 64MiB; 512KiB, 1GiB, ...)
  --lease <seconds>                how long a dead worker's splits wait before another worker takes them (default 60)

exit codes: 0 finished (bad records are in the dead letter), 1 run failed (input/output/disk),
2 usage or module error, 130 stopped by SIGINT, 143 stopped by SIGTERM (both after committing).`;

/** What the command line asked for. */
export interface RunCommandOptions {
  readonly modulePath: string;
  readonly pipelineArgs: string[];
  readonly progress: ProgressMode | "auto";
  readonly progressIntervalMs: number;
  readonly logFormat: LogFormat;
  readonly metrics: { readonly hostname: string; readonly port: number } | undefined;
  readonly metricsLingerMs: number;
  readonly runId: string | undefined;
  readonly checkpoint: string | undefined;
  readonly help: boolean;
  /** The dates of `--backfill`, in order; undefined without it. */
  readonly backfill?: readonly string[];
  readonly backfillState?: string;
  readonly backfillRestart?: boolean;
  /** `--distribute` and its settings; undefined without it. */
  readonly distribute?: { readonly url: string; readonly job: string; readonly splitBytes?: number; readonly leaseMs?: number };
}

const VALUE_OPTIONS = new Set([
  "--checkpoint",
  "--progress",
  "--progress-interval",
  "--log-format",
  "--metrics",
  "--metrics-linger",
  "--run-id",
  "--backfill",
  "--backfill-state",
  "--distribute",
  "--job",
  "--split-bytes",
  "--lease",
]);

/**
 * Splits `sluice run`'s arguments into its own options, the module path and the pipeline's
 * arguments. sluice's options are recognised before and after the module path; after `--`
 * every argument is the pipeline's. Throws with a message for wrong values.
 */
export function parseRunArgs(args: readonly string[]): RunCommandOptions {
  const line = splitCommandLine(args, { valueOptions: VALUE_OPTIONS, flags: new Set(["--no-progress", "--backfill-restart"]), positionals: 1 });
  const own = new Map<string, string>();
  for (const [name, given] of line.values) own.set(name, given.at(-1) as string);
  if (line.flags.has("--no-progress")) own.set("--progress", "none");
  const { help } = line;
  const pipelineArgs = [...line.rest];
  const modulePath = line.positionals[0];
  const progress = own.get("--progress") ?? "auto";
  if (!["auto", "tty", "plain", "none"].includes(progress)) throw new Error(`--progress must be auto, tty, plain or none, not ${progress}`);
  const logFormat = own.get("--log-format") ?? "text";
  if (logFormat !== "text" && logFormat !== "json") throw new Error(`--log-format must be text or json, not ${logFormat}`);
  const interval = seconds(own.get("--progress-interval") ?? "5", "--progress-interval", 0.05);
  const linger = seconds(own.get("--metrics-linger") ?? "0", "--metrics-linger", 0);
  const metricsValue = own.get("--metrics");
  if (!help && modulePath === undefined) throw new Error("the pipeline module is missing");
  return {
    modulePath: modulePath ?? "",
    pipelineArgs,
    progress: progress as RunCommandOptions["progress"],
    progressIntervalMs: interval * 1000,
    logFormat,
    metrics: metricsValue === undefined ? undefined : parseListen(metricsValue),
    metricsLingerMs: linger * 1000,
    runId: own.has("--run-id") ? checkRunId(own.get("--run-id"), "--run-id") : undefined,
    checkpoint: own.get("--checkpoint"),
    help,
    ...backfillOptions(own, line.flags.has("--backfill-restart")),
    ...distributeOptions(own),
  };
}

function distributeOptions(own: ReadonlyMap<string, string>): Pick<RunCommandOptions, "distribute"> {
  const url = own.get("--distribute");
  if (url === undefined) {
    const stray = ["--job", "--split-bytes", "--lease"].find((name) => own.has(name));
    if (stray) throw new Error(`${stray} goes with --distribute <url>`);
    return {};
  }
  if (own.has("--checkpoint")) throw new Error("--distribute and --checkpoint do not go together: the work queue records what is done");
  if (own.has("--backfill")) throw new Error("--distribute and --backfill do not go together: run one distributed job per date with --job");
  const job = own.get("--job");
  if (job === undefined) throw new Error("--distribute needs --job <name>: every worker of one job gives the same name, and a finished job stays finished (name each run of it: clicks-2024-03-01)");
  checkQueueUrl(url, "--distribute");
  const split = own.get("--split-bytes");
  const lease = own.get("--lease");
  return {
    distribute: {
      url,
      job: checkJobName(job, "--job"),
      ...(split !== undefined ? { splitBytes: parseSize(split, "--split-bytes") } : {}),
      ...(lease !== undefined ? { leaseMs: seconds(lease, "--lease", 0.3) * 1000 } : {}),
    },
  };
}

/** `67108864`, `64MiB`, `512KiB`, `1GiB` (also KB/MB/GB, as powers of 1024) → bytes. */
function parseSize(text: string, name: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*(|B|KiB|KB|K|MiB|MB|M|GiB|GB|G)$/i.exec(text.trim());
  const units: Record<string, number> = { "": 1, b: 1, kib: 1024, kb: 1024, k: 1024, mib: 1024 ** 2, mb: 1024 ** 2, m: 1024 ** 2, gib: 1024 ** 3, gb: 1024 ** 3, g: 1024 ** 3 };
  const bytes = match ? Math.floor(Number(match[1]) * (units[(match[2] ?? "").toLowerCase()] ?? Number.NaN)) : Number.NaN;
  if (!(bytes >= 4096)) throw new Error(`${name} takes a size of at least 4KiB, such as 64MiB or 1048576, not ${text}`);
  return bytes;
}

function backfillOptions(own: ReadonlyMap<string, string>, restart: boolean): Pick<RunCommandOptions, "backfill" | "backfillState" | "backfillRestart"> {
  const range = own.get("--backfill");
  if (range === undefined) {
    if (own.has("--backfill-state") || restart) throw new Error("--backfill-state and --backfill-restart go with --backfill FROM..TO");
    return {};
  }
  const state = own.get("--backfill-state");
  // Each date's run id is <run id>-<date>: it must still be a valid run id.
  const runId = own.get("--run-id");
  if (runId !== undefined) checkRunId(`${runId}-2000-01-01`, "--run-id with --backfill (each date's run id is <run id>-<date>)");
  return { backfill: parseDateRange(range, "--backfill"), ...(state ? { backfillState: state } : {}), backfillRestart: restart };
}

function seconds(text: string, name: string, min: number): number {
  const value = Number(text);
  if (!Number.isFinite(value) || value < min) throw new Error(`${name} must be a number of seconds${min > 0 ? ` of at least ${min}` : " (0 or more)"}, not ${text}`);
  return value;
}

/**
 * True when `hostname` is a loopback address (127.0.0.0/8, ::1, localhost), reachable only from
 * this machine. Metrics are served without authentication, so any other host is warned about.
 */
export function isLoopback(hostname: string): boolean {
  const host = hostname.toLowerCase().replace(/^\[|\]$/g, "");
  if (host === "localhost" || host.endsWith(".localhost") || host === "::1" || host === "0:0:0:0:0:0:0:1") return true;
  const v4 = host.startsWith("::ffff:") ? host.slice(7) : host;
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(v4);
}

/** `9464`, `:9464`, `0.0.0.0:9464`, `[::1]:9464` → hostname and port (hostname default 127.0.0.1). */
export function parseListen(text: string): { hostname: string; port: number } {
  const match = /^(?:(\[[^\]]+\]|[^:]*):)?(\d+)$/.exec(text);
  const port = Number(match?.[2]);
  if (!match || !Number.isInteger(port) || port > 65_535) {
    throw new Error(`--metrics takes [host:]port, such as 9464 or 0.0.0.0:9464, not ${text}`);
  }
  const host = match[1] ? match[1].replace(/^\[|\]$/g, "") : "127.0.0.1";
  return { hostname: host, port };
}

/**
 * Runs `sluice run` and resolves to its exit code (see {@link EXIT}).
 *
 * Progress and log lines go to standard error and the summary table to standard output; with
 * `--log-format json` every line (progress, summary, errors) is a JSON object on standard output.
 * On SIGINT/SIGTERM the sources stop reading, what is buffered is committed, the summary is
 * printed and the code is 130/143; a second signal exits at once.
 *
 * @example
 * process.exitCode = await command(["pipelines/clickstream.ts", "--input", "data/*.ndjson", "--out", "out"]);
 */
export async function command(args: string[]): Promise<number> {
  let options: RunCommandOptions;
  try {
    options = parseRunArgs(args);
  } catch (error) {
    console.error(`sluice run: ${(error as Error).message}\n\n${USAGE}`);
    return EXIT.usage;
  }
  if (options.help) {
    console.log(USAGE);
    return EXIT.ok;
  }
  if (options.metrics && !isLoopback(options.metrics.hostname)) {
    // On standard error in both log formats: a JSON log collector may not show it to anyone.
    console.error(
      `sluice run: warning: --metrics ${options.metrics.hostname}:${options.metrics.port} serves /metrics and /health without authentication to anyone who can reach this host on that address; use 127.0.0.1 (the default) or put the port behind a firewall or an authenticating proxy`,
    );
  }
  const runId = options.runId ?? newRunId();
  const json = options.logFormat === "json";
  const logFor = (id: string | undefined) =>
    createLogger({
      format: options.logFormat,
      ...(id ? { runId: id } : {}),
      write: json ? (line) => process.stdout.write(`${line}\n`) : (line) => process.stderr.write(`${line}\n`),
    });
  if (options.backfill) return backfillModule(options, options.backfill, logFor);
  return runModule(options, runId, logFor(runId));
}

/**
 * `--backfill`: one {@link runModule} per date, each with its own run id (`--run-id R` gives
 * `R-<date>`) and, with `--checkpoint x.sqlite`, its own checkpoint `x.<date>.sqlite`. Resolves
 * to 0 when every date is done, else the exit code of the date that failed or was stopped.
 */
async function backfillModule(options: RunCommandOptions, dates: readonly string[], logFor: (runId: string | undefined) => Logger): Promise<number> {
  const log = logFor(undefined);
  try {
    await loadPipeline(options.modulePath);
  } catch (error) {
    log.error(`sluice run: ${(error as Error).message}`);
    return EXIT.usage;
  }
  const state = options.backfillState ?? defaultBackfillState(options.modulePath, dates);
  let code: number = EXIT.ok;
  try {
    await runBackfill({
      dates,
      state,
      pipeline: basename(options.modulePath, extname(options.modulePath)),
      args: options.pipelineArgs,
      restart: options.backfillRestart ?? false,
      log,
      async runDate(date) {
        const runId = options.runId ? checkRunId(`${options.runId}-${date}`, "--run-id") : newRunId();
        const checkpoint = options.checkpoint?.replace(/(\.[^./\\]*)?$/, (ext) => `.${date}${ext}`);
        let summary: RunSummary | undefined;
        let failure = "";
        code = await runModule({ ...options, checkpoint }, runId, logFor(runId), {
          date,
          onEnd: (end) => {
            summary = end.summary;
            failure = end.error ?? "";
          },
        });
        if (code === EXIT.ok && summary) return { ok: true, runId, summary };
        const why = code === EXIT.interrupted || code === EXIT.terminated ? `stopped by a signal (exit ${code})` : failure || `exit ${code}`;
        return { ok: false, runId, error: why };
      },
    });
  } catch (error) {
    log.error(`sluice run: ${(error as Error).message}${error instanceof BackfillError ? " (--backfill-restart starts over)" : ""}`);
    return EXIT.usage;
  }
  return code;
}

/** What a backfill asks of one {@link runModule}: the date for the context, and how the run ended. */
interface DateRun {
  readonly date: string;
  readonly onEnd: (end: { readonly summary?: RunSummary; readonly error?: string }) => void;
}

async function runModule(options: RunCommandOptions, runId: string, log: Logger, backfill?: DateRun): Promise<number> {
  const { modulePath } = options;
  const json = log.format === "json";
  let pipeline: Awaited<ReturnType<typeof loadPipeline>>;
  try {
    pipeline = await loadPipeline(modulePath);
  } catch (error) {
    log.error(`sluice run: ${(error as Error).message}`, json ? { module: modulePath } : undefined);
    return EXIT.usage;
  }

  const context: PipelineContext = { args: options.pipelineArgs, runId, replay: false, ...(backfill ? { date: backfill.date } : {}) };
  let observable: Observable<unknown>;
  try {
    observable = pipeline.process(pipeline.source(context), context);
  } catch (error) {
    log.error(`sluice run: ${modulePath} could not be set up: ${(error as Error).message}`, json ? { module: modulePath } : undefined);
    backfill?.onEnd({ error: `could not be set up: ${(error as Error).message}` });
    return EXIT.usage;
  }

  let flow: Flow | undefined;
  let server: MetricsServer | undefined;
  if (options.metrics) {
    try {
      server = serveMetrics(() => flow, options.metrics);
    } catch (error) {
      log.error(`sluice run: cannot serve metrics on ${options.metrics.hostname}:${options.metrics.port}: ${(error as Error).message}`);
      return EXIT.usage;
    }
  }

  const mode: ProgressMode =
    options.progress !== "auto" ? options.progress : !json && process.stderr.isTTY ? "tty" : "plain";
  log.info(
    json ? "run started" : `run ${runId}: ${modulePath} (${pipeline.description})`,
    json ? { module: modulePath, description: pipeline.description, args: redactArgs(options.pipelineArgs) } : undefined,
  );
  if (server) log.info(json ? "metrics served" : `metrics on ${server.url}`, json ? { url: server.url } : undefined);
  const distributed = options.distribute;
  if (distributed) {
    const queue = safeUrl(distributed.url);
    log.info(json ? "distributed run" : `worker of job "${distributed.job}" on the work queue ${queue}`, json ? { job: distributed.job, queue } : undefined);
  }

  const controller = new AbortController();
  let stoppedBy: NodeJS.Signals | undefined;
  let display: ProgressDisplay | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stoppedBy) {
      display?.stop();
      log.error(`sluice run: second ${signal}, exiting without committing buffered rows`);
      process.exit(signal === "SIGINT" ? EXIT.interrupted : EXIT.terminated);
    }
    stoppedBy = signal;
    // The terminal display shows "stopping…" itself; a line here would break its redraw.
    if (mode !== "tty") log.warn(`${signal} received: stopping reading, committing what is buffered (send it again to exit at once)`);
    controller.abort();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  let summary: RunSummary;
  try {
    summary = await run(observable, {
      handleSignals: false,
      signal: controller.signal,
      runId,
      ...(options.checkpoint ? { checkpoint: options.checkpoint } : {}),
      ...(options.distribute ? { distribute: options.distribute } : {}),
      onStart(started) {
        flow = started;
        // Started even with no display: it tracks the peak memory shown in the summary.
        display = startProgress(started, { mode, log, intervalMs: options.progressIntervalMs });
      },
    });
  } catch (error) {
    display?.stop();
    const stats = flow?.stats;
    const dead = stats ? Object.values(stats.deadLettered).reduce((a, b) => a + b, 0) : 0;
    const fields = stats
      ? {
          in: stats.in,
          written: stats.written,
          deadLettered: dead,
          deadLetteredDurable: stats.deadLetteredDurable,
          files: stats.files,
          bytesWritten: stats.bytes,
          error: (error as Error)?.message,
        }
      : { error: String(error) };
    log.error(`sluice run: run failed: ${describeFailure(error)}`, json ? fields : undefined);
    backfill?.onEnd({ error: describeFailure(error) });
    if (!json && stats) {
      log.error(
        `before the failure: ${stats.in.toLocaleString("en-US")} records read, ${stats.written.toLocaleString("en-US")} rows committed in ${stats.files} file(s) (${formatBytes(stats.bytes)}), ${stats.deadLetteredDurable.toLocaleString("en-US")} dead letters in committed files${dead > stats.deadLetteredDurable ? ` (${(dead - stats.deadLetteredDurable).toLocaleString("en-US")} more were not committed and are lost with the run)` : ""}; committed files are whole and stay`,
      );
    }
    server?.finish({
      status: "failed",
      exitCode: EXIT.failed,
      in: stats?.in ?? 0,
      written: stats?.written ?? 0,
      deadLettered: dead,
      files: stats?.files ?? 0,
      bytes: stats?.bytes ?? 0,
      error: describeFailure(error),
    });
    await finish(server, options.metricsLingerMs, log);
    return EXIT.failed;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }

  display?.stop();
  backfill?.onEnd({ summary });
  const code = stoppedBy === "SIGINT" ? EXIT.interrupted : stoppedBy ? EXIT.terminated : EXIT.ok;
  const status = stoppedBy
    ? `stopped by ${stoppedBy} (exit ${code}); ${distributed ? "the splits it did not finish go to the other workers" : "the rest of the input was not read"}`
    : "finished";
  if (distributed && !stoppedBy && summary.in === 0) {
    log.warn(
      `this worker read nothing: the other workers took every split of job "${distributed.job}", or the job finished earlier (a finished job stays finished: give a new --job to read its inputs again)`,
    );
  }
  const peakRssBytes = display?.peakRss() ?? process.memoryUsage.rss();
  if (json) {
    const { runId: _runId, ...figures } = summary;
    log.info("run finished", { ...figures, peakRssBytes, status: stoppedBy ? "stopped" : "finished", exitCode: code });
  } else {
    process.stdout.write(`${formatRunTable(summary, { peakRssBytes, status })}\n`);
  }
  server?.finish({
    status: stoppedBy ? "stopped" : "finished",
    exitCode: code,
    in: summary.in,
    written: summary.written,
    deadLettered: summary.deadLettered,
    files: summary.files,
    bytes: summary.bytes,
    durationMs: summary.durationMs,
  });
  await finish(server, options.metricsLingerMs, log);
  return code;
}

async function finish(server: MetricsServer | undefined, lingerMs: number, log: Logger): Promise<void> {
  if (!server) return;
  if (lingerMs > 0) {
    log.debug(`serving final metrics for ${lingerMs / 1000} s`);
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, lingerMs);
      // A signal during the linger ends it: nothing is left to commit.
      function done() {
        clearTimeout(timer);
        process.off("SIGINT", done);
        process.off("SIGTERM", done);
        resolve();
      }
      process.on("SIGINT", done);
      process.on("SIGTERM", done);
    });
  }
  await server.stop();
}

/** The error's message, with what to do for the usual system errors. */
export function describeFailure(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const code = findCode(error);
  const hint: Record<string, string> = {
    ENOSPC: "the disk is full: free space or write the output elsewhere",
    EDQUOT: "the disk quota is exceeded: free space or write the output elsewhere",
    EACCES: "permission denied: check the owner and mode of the folder",
    EPERM: "operation not permitted: check the owner and mode of the folder",
    EROFS: "the file system is read-only: write the output elsewhere",
    ENOTDIR: "a part of the path is a file, not a folder: choose another output folder",
    EMFILE: "too many open files: raise the limit (ulimit -n) or open fewer partitions",
  };
  return code && hint[code] && !message.includes(hint[code] as string) ? `${message} (${hint[code]})` : message;
}

function findCode(error: unknown): string | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && current; depth++) {
    const code = (current as NodeJS.ErrnoException).code;
    if (typeof code === "string") return code;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}
