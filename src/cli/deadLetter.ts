/**
 * `sluice dead-letter <summarize|replay> ...`: dispatches to the subcommand's module.
 */

/** Runs a `dead-letter` subcommand. */
export async function command(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === "summarize") return (await import("./deadLetterSummarize.ts")).command(rest);
  if (sub === "replay") return (await import("./deadLetterReplay.ts")).command(rest);
  console.error("usage: sluice dead-letter summarize <folder> | replay <folder> <pipeline.ts>");
  return 2;
}
