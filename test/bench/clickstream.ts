/**
 * `bun run bench [--count N] [--runs R]`: the clickstream job with sluice and, in the same run,
 * with DuckDB (its default JSON read, and with the schema's type checks and rejects). Each engine
 * runs in its own process, in turn, so memory is per engine and machine noise hits all alike.
 * Prints medians and the ratios against DuckDB-with-checks.
 */
import { existsSync } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { writeClickstream } from "../../src/generate/clickstream.ts";

const { values } = parseArgs({
  args: Bun.argv.slice(2),
  options: { count: { type: "string", default: "1000000" }, runs: { type: "string", default: "3" } },
});
const count = Number(values.count);
const runs = Number(values.runs);
const dataDir = "bench-data";
const input = join(dataDir, `clickstream-${count}.ndjson`);
await mkdir(dataDir, { recursive: true });
if (!existsSync(input)) {
  console.log(`generating ${count.toLocaleString("en-US")} events into ${input} ...`);
  await writeClickstream(input, { count, seed: 7 });
}

const engines = ["sluice", "duckdb-checked", "duckdb-default"] as const;
type Result = { engine: string; rows: number; seconds: number; peakRssMB: number };
const results: Record<string, Result[]> = {};
for (let r = 0; r < runs; r++) {
  for (const engine of engines) {
    const out = join(dataDir, `out-${engine}`);
    const child = Bun.spawnSync(["bun", join(import.meta.dir, "job.ts"), engine, input, out], { stderr: "inherit" });
    if (child.exitCode !== 0) throw new Error(`${engine} failed with exit code ${child.exitCode}`);
    const result = JSON.parse(child.stdout.toString().trim().split("\n").at(-1) ?? "{}") as Result;
    (results[engine] ??= []).push(result);
    console.log(`run ${r + 1}/${runs} ${engine.padEnd(15)} ${result.seconds.toFixed(2)} s  ${result.peakRssMB.toFixed(0)} MB  ${result.rows} rows`);
    await rm(out, { recursive: true, force: true });
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
// Ratios are taken run by run (the engines of one round ran back to back) and the median kept.
const ratio = (engine: string, key: "seconds" | "peakRssMB") =>
  median(results[engine].map((x, i) => x[key] / results["duckdb-checked"][i][key]));

console.log(`\nclickstream job, ${count.toLocaleString("en-US")} events, median of ${runs} run(s)`);
console.log("engine           wall s   rows/s      peak RSS MB   wall vs duckdb-checked   RSS vs duckdb-checked");
for (const engine of engines) {
  const rs = results[engine];
  const seconds = median(rs.map((x) => x.seconds));
  console.log(
    `${engine.padEnd(16)} ${seconds.toFixed(2).padStart(6)}   ${Math.round(count / seconds).toLocaleString("en-US").padStart(9)}   ${median(rs.map((x) => x.peakRssMB)).toFixed(0).padStart(11)}   ${ratio(engine, "seconds").toFixed(2).padStart(22)}   ${ratio(engine, "peakRssMB").toFixed(2).padStart(21)}`,
  );
}
console.log("\nduckdb-default coerces wrong types and keeps rows sluice and duckdb-checked reject: it is not the same job.");
