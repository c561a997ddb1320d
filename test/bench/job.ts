/**
 * Runs one engine on the clickstream job in its own process and prints one JSON line:
 * rows written, rows rejected (when the engine reports rejects), wall seconds and the peak
 * resident memory of this process. An engine that throws prints `error` instead and exits 3.
 *
 *   bun test/bench/job.ts <engine> <input> <outdir>
 *
 * Engines: sluice, duckdb-checked, duckdb-default, polars-checked, polars-default.
 */
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { clickstream } from "../../examples/clickstream.ts";
import { duckdbChecked, duckdbDefault } from "./duckdb-jobs.ts";
import { polarsChecked, polarsDefault } from "./polars-jobs.ts";

const [engine, input, out] = Bun.argv.slice(2);
if (!engine || !input || !out) {
  console.error("usage: bun test/bench/job.ts <sluice|duckdb-checked|duckdb-default|polars-checked|polars-default> <input> <outdir>");
  process.exit(2);
}
await rm(out, { recursive: true, force: true });
await mkdir(out, { recursive: true });
const events = join(out, "events");
const rejectsFile = join(out, "rejects.ndjson");

// Lines in a rejects file, counted after the clock stops.
async function countLines(path: string): Promise<number> {
  const bytes = await Bun.file(path).bytes();
  let lines = 0;
  for (const byte of bytes) if (byte === 10) lines++;
  return lines;
}

const started = performance.now();
let rows: number;
let rejected: number | null = null;
try {
  if (engine === "sluice") {
    const summary = await clickstream(input, out);
    rows = summary.written;
    rejected = summary.deadLettered;
  } else if (engine === "duckdb-default") rows = await duckdbDefault(input, events);
  else if (engine === "duckdb-checked") rows = await duckdbChecked(input, events, rejectsFile);
  else if (engine === "polars-default") rows = await polarsDefault(input, events);
  else if (engine === "polars-checked") rows = await polarsChecked(input, events, rejectsFile);
  else throw new Error(`unknown engine ${engine}`);
} catch (error) {
  const seconds = (performance.now() - started) / 1000;
  const message = (error as Error).message ?? String(error);
  console.log(JSON.stringify({ engine, error: message, seconds, peakRssMB: process.resourceUsage().maxRSS / 1024 }));
  process.exit(3);
}
const seconds = (performance.now() - started) / 1000;
if (engine === "duckdb-checked" || engine === "polars-checked") rejected = await countLines(rejectsFile);
// maxRSS is in kilobytes on Linux.
console.log(JSON.stringify({ engine, rows, rejected, seconds, peakRssMB: process.resourceUsage().maxRSS / 1024 }));
process.exit(0);
