/**
 * `sluice dead-letter replay <folder> <pipeline.ts> [args]`: sends dead letters through a
 * (fixed) pipeline module, exactly once each.
 */
import { ReplayFailedError, type ReplayResult, replayDeadLetters } from "../deadletter/replay.ts";
import { formatBytes } from "../run/run.ts";

const USAGE = `usage: sluice dead-letter replay [options] <folder> <pipeline.ts> [pipeline args] [-- more pipeline args]

Sends the dead letters of <folder> through the module's process() with context.replay = true
(its sink must then append). Records that now pass land in its dataset; those that fail again
go to its dead letter with the new error. A ledger in <folder> marks the replayed entries, so
no entry is replayed twice. Options (anywhere before --; everything after -- goes to the pipeline):
  --stage <stage>      only entries of this stage (repeatable or comma-separated: parse,validate)
  --source <glob>      only entries whose source matches (Bun.Glob)
  --run <runId>        only entries dead-lettered by this run
  --again              also replay dead letters earlier replays wrote (records that failed again)
  --dry-run            count what would be replayed; run and write nothing
  --run-id <id>        the replay's run id (default: time-based)
  --json               the result as one JSON object on stdout

exit codes: 0 replayed (some may have failed again), 1 the replay failed (rolled back by the next
replay), 2 usage or module error, or another replay is running, 130 stopped by a signal.`;

const VALUE_OPTIONS = new Set(["--stage", "--source", "--run", "--run-id"]);

/** What the command line asked for. */
export interface ReplayCommandOptions {
  readonly folder: string;
  readonly modulePath: string;
  readonly pipelineArgs: string[];
  readonly stages: string[];
  readonly source: string | undefined;
  readonly run: string | undefined;
  readonly runId: string | undefined;
  readonly dryRun: boolean;
  readonly again: boolean;
  readonly json: boolean;
  readonly help: boolean;
}

/**
 * Splits the arguments into the replay's options, the folder, the module and the pipeline's
 * arguments. The replay's options are recognised anywhere before `--`; a pipeline option of the
 * same name must come after `--`. Throws with a message for wrong arguments.
 */
export function parseReplayArgs(args: readonly string[]): ReplayCommandOptions {
  const stages: string[] = [];
  const own = new Map<string, string>();
  const positionals: string[] = [];
  const pipelineArgs: string[] = [];
  let dryRun = false;
  let again = false;
  let json = false;
  let help = false;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    if (arg === "--") {
      pipelineArgs.push(...args.slice(i + 1));
      break;
    }
    const eq = arg.indexOf("=");
    const name = arg.startsWith("--") && eq > 0 ? arg.slice(0, eq) : arg;
    if (VALUE_OPTIONS.has(name)) {
      const value = eq > 0 && name !== arg ? arg.slice(eq + 1) : args[++i];
      if (value === undefined || value === "") throw new Error(`${name} needs a value`);
      if (name === "--stage") stages.push(...value.split(",").map((s) => s.trim()).filter(Boolean));
      else own.set(name, value);
    } else if (arg === "--dry-run") dryRun = true;
    else if (arg === "--again") again = true;
    else if (arg === "--json") json = true;
    else if (positionals.length < 2 && (arg === "--help" || arg === "-h")) help = true;
    else if (positionals.length < 2 && arg.startsWith("-")) {
      throw new Error(`unknown option ${arg} before the pipeline module (pipeline options go after its path)`);
    } else if (positionals.length < 2) positionals.push(arg);
    else pipelineArgs.push(arg);
  }
  if (!help && positionals.length === 0) throw new Error("the dead-letter folder is missing");
  if (!help && positionals.length === 1) throw new Error("the pipeline module is missing");
  return {
    folder: positionals[0] ?? "",
    modulePath: positionals[1] ?? "",
    pipelineArgs,
    stages,
    source: own.get("--source"),
    run: own.get("--run"),
    runId: own.get("--run-id"),
    dryRun,
    again,
    json,
    help,
  };
}

/**
 * Runs `sluice dead-letter replay` and resolves to its exit code. The result goes to standard
 * output (a table, or one JSON object with `--json`), errors to standard error.
 *
 * @example
 * process.exitCode = await command(["out/dead-letter", "pipelines/fixed.ts", "--out", "out", "--stage", "validate"]);
 */
export async function command(args: string[]): Promise<number> {
  let options: ReplayCommandOptions;
  try {
    options = parseReplayArgs(args);
  } catch (error) {
    console.error(`sluice dead-letter replay: ${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (options.help) {
    console.log(USAGE);
    return 0;
  }
  let result: ReplayResult;
  try {
    result = await replayDeadLetters(options.folder, options.modulePath, {
      args: options.pipelineArgs,
      stages: options.stages,
      source: options.source,
      run: options.run,
      runId: options.runId,
      dryRun: options.dryRun,
      again: options.again,
    });
  } catch (error) {
    console.error(`sluice dead-letter replay: ${(error as Error)?.message ?? String(error)}`);
    // A failure before the pipeline ran (module, arguments, lock) is the caller's to fix.
    return error instanceof ReplayFailedError ? 1 : 2;
  }
  if (options.json) {
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } else {
    process.stdout.write(`${formatReplay(result, options.dryRun)}\n`);
  }
  return result.summary?.stopped ? 130 : 0;
}

/** The result as aligned lines for a terminal. */
export function formatReplay(result: ReplayResult, dryRun = false): string {
  const n = (x: number) => x.toLocaleString("en-US");
  const rows: [string, string][] = [];
  const undone = result.rolledBack;
  if (undone && undone.runId !== "(unknown)") {
    rows.push([
      "recovered",
      undone.finished
        ? `replay ${undone.runId} had finished; cleaned up after it`
        : `replay ${undone.runId} had not finished: removed ${undone.datasetFiles.length} dataset file(s) and ${undone.deadLetterFiles.length} dead-letter file(s) it wrote; its entries are replayed now`,
    ]);
  }
  rows.push(["replay", `${result.runId}${dryRun ? " (dry run: nothing was run or written)" : ""}`]);
  rows.push(["dead letters", `${n(result.considered)} read, ${n(result.alreadyReplayed)} already replayed, ${n(result.filteredOut)} not matching the filters, ${n(result.fromEarlierReplays)} failed an earlier replay${result.fromEarlierReplays > 0 ? " (--again replays them)" : ""}`]);
  rows.push([dryRun ? "would replay" : "replayed", n(result.replayed)]);
  const s = result.summary;
  if (s) {
    const stages = Object.entries(s.deadLetteredByStage).map(([stage, c]) => `${stage} ${n(c)}`).join(", ");
    rows.push(["now written", n(s.written)]);
    rows.push(["failed again", `${n(s.deadLettered)}${stages ? ` (${stages})` : ""}`]);
    if (s.dropped !== 0) rows.push(["dropped", n(s.dropped)]);
    rows.push(["files", `${n(s.files)} (${formatBytes(s.bytes)})`]);
    if (s.stopped) rows.push(["stopped", "by a signal: only the entries sent are marked replayed"]);
  }
  if (result.ledger) rows.push(["ledger", result.ledger]);
  if (result.restored.length > 0) {
    rows.push(["warning", `the pipeline removed ${result.restored.length} dead-letter file(s) (its deadLetter must append when context.replay); they were put back`]);
  }
  return rows.map(([k, v]) => `${k.padEnd(13)} ${v}`).join("\n");
}
