/**
 * `sluice dead-letter list <folder> [options]`: the dead letters themselves, one a line, with
 * where each came from and why it failed; `--json` gives them whole, for jq or a script.
 */
import { type ListedDeadLetter, listDeadLetters } from "../deadletter/list.ts";
import { isS3Url, localFolder } from "../io/s3.ts";
import { escapeControls } from "../notebook/table.ts";
import { parseOptions, wholeNumberOption } from "./args.ts";

const USAGE = `usage: sluice dead-letter list <folder or s3://bucket/prefix> [options]

Prints the open dead letters (those no finished replay has sent), oldest first, one a line:
  <entry id>  <source>:<line>  <stage>  <error>  <raw record, cut to --raw-chars>

options:
  --stage <stage>     only entries of this stage (comma-separated: parse,validate)
  --source <glob>     only entries whose source matches (Bun.Glob)
  --run <runId>       only entries dead-lettered by this run
  --all               also entries already replayed (marked "replayed")
  --limit <N>         at most N entries
  --raw-chars <N>     characters of each raw record in text output (default 80, 0 for none)
  --json              each entry as one JSON object a line: { id, file, line, replayed, entry }

exit codes: 0 listed (none or some), 1 the folder could not be read, 2 usage.`;

/**
 * Runs `sluice dead-letter list` and resolves to its exit code: 0 when the folder was read (a
 * missing folder lists nothing), 1 when a file cannot be read or is not a dead-letter file, 2 for
 * wrong arguments.
 *
 * @example
 * process.exitCode = await command(["out/dead-letter", "--stage", "validate", "--limit", "20"]);
 */
export async function command(args: string[]): Promise<number> {
  const parsed = parseOptions("dead-letter list", USAGE, args, {
    stage: { type: "string", multiple: true },
    source: { type: "string" },
    run: { type: "string" },
    all: { type: "boolean" },
    limit: { type: "string" },
    "raw-chars": { type: "string" },
    json: { type: "boolean" },
  });
  if (typeof parsed === "number") return parsed;
  const { values, positionals } = parsed;
  const usage = (message: string) => {
    console.error(`sluice dead-letter list: ${message}\n\n${USAGE}`);
    return 2;
  };
  if (positionals.length !== 1) return usage(positionals.length === 0 ? "the dead-letter folder is missing" : `one folder expected, got ${positionals.join(" ")}`);
  const limit = wholeNumberOption(values.limit, Number.POSITIVE_INFINITY);
  const rawChars = wholeNumberOption(values["raw-chars"], 80);
  if (limit === undefined) return usage(`--limit must be a whole number, not ${values.limit}`);
  if (rawChars === undefined) return usage(`--raw-chars must be a whole number, not ${values["raw-chars"]}`);
  const stages = ((values.stage as string[] | undefined) ?? []).flatMap((s) => s.split(",").map((t) => t.trim()).filter(Boolean));

  const folder = positionals[0] as string;
  try {
    const copy = isS3Url(folder) ? await localFolder(folder) : undefined;
    try {
      let listed = 0;
      const options = { stages, source: values.source as string | undefined, run: values.run as string | undefined, all: values.all === true };
      for await (const found of listDeadLetters(copy?.path ?? folder, options)) {
        if (listed >= limit) break;
        listed++;
        process.stdout.write(`${values.json ? asJson(found) : asText(found, rawChars)}\n`);
      }
    } finally {
      copy?.dispose();
    }
    return 0;
  } catch (error) {
    console.error(`sluice dead-letter list: ${(error as Error).message}`);
    return 1;
  }
}

function asJson({ id, file, index, replayed, entry }: ListedDeadLetter): string {
  return JSON.stringify({ id, file, line: index, replayed, entry });
}

function asText({ id, replayed, entry }: ListedDeadLetter, rawChars: number): string {
  // One entry, one line: line breaks, other controls and bidirectional marks in the error or the
  // raw text (a hostile record's) are shown escaped, so they cannot break or turn the terminal's lines.
  const chars = Array.from(entry.raw);
  const cut = chars.length > rawChars ? `${chars.slice(0, rawChars).join("")}…` : entry.raw;
  const raw = rawChars > 0 ? `  ${escapeControls(cut)}` : "";
  return `${escapeControls(id)}  ${escapeControls(entry.source)}:${entry.line}  ${escapeControls(entry.stage)}${replayed ? " (replayed)" : ""}  ${escapeControls(entry.error)}${raw}`;
}
