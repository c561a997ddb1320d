/**
 * `sluice dead-letter replay <folder> <pipeline.ts> [args]`: sends dead letters through a
 * (fixed) pipeline module, exactly once each.
 */
import { splitCommandLine } from "./args.ts";
import { ReplayFailedError, type ReplayResult, replayDeadLetters } from "../deadletter/replay.ts";
import { formatBytes } from "../run/run.ts";
import { checkRunId } from "../flow/runId.ts";

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
  --run-id <id>        the replay's run id (default: time-based): letters, digits, '.', '_', '-'
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
  const line = splitCommandLine(args, { valueOptions: VALUE_OPTIONS, flags: FLAGS, positionals: 2 });
  const last = (name: string) => line.values.get(name)?.at(-1);
  const { help, positionals } = line;
  if (!help && positionals.length === 0) throw new Error("the dead-letter folder is missing");
  if (!help && positionals.length === 1) throw new Error("the pipeline module is missing");
  return {
    folder: positionals[0] ?? "",
    modulePath: positionals[1] ?? "",
    pipelineArgs: [...line.rest],
    stages: (line.values.get("--stage") ?? []).flatMap((value) => value.split(",").map((s) => s.trim()).filter(Boolean)),
    source: last("--source"),
    run: last("--run"),
    runId: line.values.has("--run-id") ? checkRunId(last("--run-id"), "--run-id") : undefined,
    dryRun: line.flags.has("--dry-run"),
    again: line.flags.has("--again"),
    json: line.flags.has("--json"),
    help,
  };
}

const FLAGS = new Set(["--dry-run", "--again", "--json"]);

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
