#!/usr/bin/env bun
/**
 * The `sluice` command. Each command lives in its own module, loaded only when used, and
 * exports `command(args)`, which resolves to the process exit code.
 */

type Command = (args: string[]) => Promise<number>;

const commands: Record<string, { summary: string; load: () => Promise<{ command: Command }> }> = {
  run: { summary: "run <pipeline.ts> [args]    run a pipeline module with live progress", load: () => import("./run.ts") },
  list: { summary: "list [folder]               list the pipeline modules in a folder (default pipelines/)", load: () => import("./list.ts") },
  schedule: { summary: "schedule <folder>           run the folder's pipelines on their cron schedules (--dry-run: upcoming runs)", load: () => import("./schedule.ts") },
  inspect: { summary: "inspect <dataset|file>      partitions, files, rows, schema and column statistics", load: () => import("./inspect.ts") },
  head: { summary: "head <dataset|file> [-n N] [--json]   the first rows", load: () => import("./head.ts") },
  "dead-letter": {
    summary: "dead-letter list <folder> | summarize <folder> | replay <folder> <pipeline.ts>",
    load: () => import("./deadLetter.ts"),
  },
};

function usage(): string {
  return [
    "usage: sluice <command> [options]",
    "",
    ...Object.values(commands).map((c) => `  sluice ${c.summary}`),
    "",
    "sluice <command> --help shows a command's options; sluice --version prints the version.",
  ].join("\n");
}

/** The command names, for tests that go over every command. */
export const COMMANDS: readonly string[] = Object.keys(commands);

/** Runs the command named by `argv[0]` and resolves to the exit code. */
export async function main(argv: string[]): Promise<number> {
  const [name, ...args] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    console.log(usage());
    return name === undefined ? 2 : 0;
  }
  if (name === "--version" || name === "-v" || name === "version") {
    // Read at run time, so a linked clone reports the version of the checkout it runs.
    const pkg = (await Bun.file(new URL("../../package.json", import.meta.url)).json()) as { version: string };
    console.log(pkg.version);
    return 0;
  }
  const entry = commands[name];
  if (!entry) {
    console.error(`sluice: unknown command "${name}"\n\n${usage()}`);
    return 2;
  }
  const { command } = await entry.load();
  return command(args);
}

/**
 * Ends the process with `code` once what was written to standard output has gone out. Into a pipe
 * whose reader is slow (`sluice dead-letter list --json | jq`), writes wait in the process, and
 * `process.exit` cut them off: the process ends by itself instead, once nothing is left to do. A
 * handle a command left open keeps it no more than two seconds.
 */
function exitAfterOutput(code: number): void {
  process.exitCode = code;
  setTimeout(() => process.exit(code), 2_000).unref();
}

if (import.meta.main) {
  main(process.argv.slice(2)).then(exitAfterOutput, (error) => {
    console.error(`sluice: ${error instanceof Error ? error.message : String(error)}`);
    exitAfterOutput(1);
  });
}
