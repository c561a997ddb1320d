/**
 * Clickstream events piped in on standard input → validation → enrichment → date-partitioned
 * Parquet, every rejected line in the dead letter (source "stdin", with its line number).
 *
 *   cat events.ndjson | bun examples/stdin.ts out/stdin
 *
 * writes <outdir>/events/event_date=YYYY-MM-DD/*.parquet and <outdir>/dead-letter/*.ndjson, then
 * prints the run summary (with --json, as one JSON line).
 */
import { join } from "node:path";
import { formatSummary, fromStdin, run, toParquet } from "sluice";
import { deadLetter, enrich, validate } from "sluice/operators";
import { ClickEvent, EnrichedEvent, enrichEvent } from "./clickstream.ts";

if (import.meta.main) {
  const args = Bun.argv.slice(2);
  const json = args.includes("--json");
  const outDir = args.find((a) => !a.startsWith("--"));
  if (!outDir) {
    console.error("usage: cat events.ndjson | bun examples/stdin.ts <outdir> [--json]");
    process.exit(2);
  }
  const summary = await run(
    fromStdin().pipe(
      validate(ClickEvent),
      enrich(enrichEvent),
      deadLetter(join(outDir, "dead-letter"), { mode: "overwrite" }),
      toParquet(join(outDir, "events"), { schema: EnrichedEvent, partitionBy: ["event_date"], mode: "overwrite" }),
    ),
    { handleSignals: true },
  );
  console.log(json ? JSON.stringify(summary) : formatSummary(summary));
}
