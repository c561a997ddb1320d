/**
 * Runs one engine on the clickstream job in its own process and prints one JSON line:
 * rows written, wall seconds and the peak resident memory of this process.
 *
 *   bun test/bench/job.ts <sluice|duckdb-default|duckdb-checked> <input> <outdir>
 */
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { clickstream } from "../../examples/clickstream.ts";
import { duckdbChecked, duckdbDefault } from "./duckdb-jobs.ts";

const [engine, input, out] = Bun.argv.slice(2);
if (!engine || !input || !out) {
  console.error("usage: bun test/bench/job.ts <sluice|duckdb-default|duckdb-checked> <input> <outdir>");
  process.exit(2);
}
await rm(out, { recursive: true, force: true });
await mkdir(out, { recursive: true });
const started = performance.now();
let rows: number;
if (engine === "sluice") rows = (await clickstream(input, out)).written;
else if (engine === "duckdb-default") rows = await duckdbDefault(input, join(out, "events"));
else if (engine === "duckdb-checked") rows = await duckdbChecked(input, join(out, "events"), join(out, "rejects.ndjson"));
else throw new Error(`unknown engine ${engine}`);
const seconds = (performance.now() - started) / 1000;
// maxRSS is in kilobytes on Linux.
console.log(JSON.stringify({ engine, rows, seconds, peakRssMB: process.resourceUsage().maxRSS / 1024 }));
process.exit(0);
