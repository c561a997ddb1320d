/**
 * `sluice dead-letter <list|summarize|replay> ...`: dispatches to the subcommand's module.
 */

const USAGE = `usage: sluice dead-letter <subcommand> ...
  sluice dead-letter list <folder> [--stage S] [--json]            the open dead letters, one a line
  sluice dead-letter summarize <folder> [--samples [N]] [--json]   counts by stage, error and field
  sluice dead-letter replay <folder> <pipeline.ts> [args]          run the dead letters through a pipeline again

sluice dead-letter <subcommand> --help shows the subcommand's options.`;

/**
 * Runs a `dead-letter` subcommand. `--help` alone prints the subcommands and resolves to 0; a
 * missing or unknown subcommand prints them to stderr and resolves to 2.
 *
 * @example
 * process.exitCode = await command(["summarize", "out/dead-letter"]);
 */
export async function command(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === "list") return (await import("./deadLetterList.ts")).command(rest);
  if (sub === "summarize") return (await import("./deadLetterSummarize.ts")).command(rest);
  if (sub === "replay") return (await import("./deadLetterReplay.ts")).command(rest);
  if (sub === "--help" || sub === "-h" || sub === "help") {
    console.log(USAGE);
    return 0;
  }
  console.error(sub === undefined ? USAGE : `sluice dead-letter: unknown subcommand "${sub}"\n\n${USAGE}`);
  return 2;
}
