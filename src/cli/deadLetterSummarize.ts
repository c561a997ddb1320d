/**
 * `sluice dead-letter summarize <folder> [--json] [--samples [N]]`: what is in a dead-letter
 * folder, counted by stage, error and field; with `--samples`, examples pointing at the input.
 */
import { formatDeadLetterSummary, summarizeDeadLetters } from "../deadletter/summarize.ts";
import { isS3Url, localFolder } from "../io/s3.ts";
import { parseOptions, wholeNumberOption } from "./args.ts";

const USAGE = `usage: sluice dead-letter summarize <folder or s3://bucket/prefix> [options]

options:
  --json              the summary as one JSON object on stdout
  --samples [N]       show N samples per group (N defaults to 3; without --samples, counts only)
  --raw-chars <N>     characters of each sample's raw record (default 200)
  --all               count entries already replayed too
  --by <sections>     text sections, comma-separated: stage,error,field,source,run (default stage,error,field)

exit codes: 0 summarized (dead letters or not), 1 the folder could not be read, 2 usage.`;

/**
 * Runs `sluice dead-letter summarize` and resolves to its exit code: 0 when the folder was read
 * (even when it holds no dead letters: a missing folder is reported as empty), 1 when a file
 * cannot be read or is not a dead-letter file, 2 for wrong arguments.
 *
 * @example
 * process.exitCode = await command(["out/dead-letter", "--samples", "1"]);
 */
export async function command(args: string[]): Promise<number> {
  const parsed = parseOptions("dead-letter summarize", USAGE, withSampleCount(args), {
    json: { type: "boolean" },
    samples: { type: "string" },
    "raw-chars": { type: "string" },
    all: { type: "boolean" },
    by: { type: "string" },
  });
  if (typeof parsed === "number") return parsed;
  const { values, positionals } = parsed;
  const usage = (message: string) => {
    console.error(`sluice dead-letter summarize: ${message}\n\n${USAGE}`);
    return 2;
  };
  if (positionals.length !== 1) return usage(positionals.length === 0 ? "the dead-letter folder is missing" : `one folder expected, got ${positionals.join(" ")}`);
  const samples = wholeNumberOption(values.samples, 0);
  const rawChars = wholeNumberOption(values["raw-chars"], 200);
  if (samples === undefined) return usage(`--samples must be a whole number, not ${values.samples}`);
  if (rawChars === undefined) return usage(`--raw-chars must be a whole number, not ${values["raw-chars"]}`);
  const known = ["stage", "error", "field", "source", "run"] as const;
  const sections = typeof values.by === "string" ? values.by.split(",").map((s) => s.trim()) : undefined;
  const unknown = sections?.filter((s) => !(known as readonly string[]).includes(s));
  if (unknown && unknown.length > 0) return usage(`--by takes ${known.join(",")}, not ${unknown.join(",")}`);

  const folder = positionals[0] as string;
  try {
    // A folder in a bucket is summarized from a local copy of its objects, named by its URL.
    const copy = isS3Url(folder) ? await localFolder(folder) : undefined;
    let summary: Awaited<ReturnType<typeof summarizeDeadLetters>>;
    try {
      summary = await summarizeDeadLetters(copy?.path ?? folder, { samples, rawChars, includeReplayed: values.all === true });
    } finally {
      copy?.dispose();
    }
    if (copy) summary = { ...summary, folder };
    if (values.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
    else process.stdout.write(`${formatDeadLetterSummary(summary, { sections: sections as (typeof known)[number][] | undefined })}\n`);
    return 0;
  } catch (error) {
    console.error(`sluice dead-letter summarize: ${(error as Error).message}`);
    return 1;
  }
}

// `--samples` may stand last or before another option (meaning 3); parseArgs wants a value, so one is put in.
function withSampleCount(args: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    if (arg === "--") {
      out.push(...args.slice(i));
      break;
    }
    out.push(arg);
    const next = args[i + 1];
    if (arg === "--samples" && (next === undefined || next.startsWith("-"))) out.push("3");
  }
  return out;
}
