/**
 * `bun run bench [--count N] [--runs R]`: the clickstream job with sluice and, in the same run,
 * with DuckDB and Polars: each as it reads NDJSON by default, and with the schema's type checks
 * and rejects (the fair peers, which must keep exactly the rows sluice keeps). Each engine runs
 * in its own process, in turn, so memory is per engine and machine noise hits all alike.
 * Prints medians and the ratios against duckdb-checked and against polars-checked.
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

const engines = ["sluice", "duckdb-checked", "duckdb-default", "polars-checked", "polars-default"] as const;
// Engines whose failure is a finding to report, not a broken benchmark: Polars' NDJSON reader
// stops at the first malformed line, and the generated input has some.
const mayFail = new Set<string>(["polars-default"]);
// Engines that must keep exactly the rows and rejects sluice keeps.
const checked = ["duckdb-checked", "polars-checked"];
const baselines = ["duckdb-checked", "polars-checked"] as const;

type Result = { engine: string; rows: number; rejected: number | null; seconds: number; peakRssMB: number; cpuSeconds: number };
type Failure = { engine: string; error: string; seconds: number; peakRssMB: number };
const results: Record<string, Result[]> = {};
const failures: Record<string, Failure[]> = {};
const disagreements: string[] = [];
for (let r = 0; r < runs; r++) {
  for (const engine of engines) {
    const out = join(dataDir, `out-${engine}`);
    const child = Bun.spawnSync(["bun", join(import.meta.dir, "job.ts"), engine, input, out], { stderr: "inherit" });
    const line = JSON.parse(child.stdout.toString().trim().split("\n").at(-1) ?? "{}");
    await rm(out, { recursive: true, force: true });
    if (child.exitCode === 3 && mayFail.has(engine)) {
      const failure = line as Failure;
      (failures[engine] ??= []).push(failure);
      console.log(`run ${r + 1}/${runs} ${engine.padEnd(15)} FAILED after ${failure.seconds.toFixed(2)} s: ${failure.error}`);
      continue;
    }
    if (child.exitCode !== 0) throw new Error(`${engine} failed with exit code ${child.exitCode}: ${line.error ?? ""}`);
    // CPU time of the whole engine process (user + system), as the operating system counted it.
    const cpu = child.resourceUsage?.cpuTime;
    const result = { ...(line as Result), cpuSeconds: cpu ? Number(cpu.user + cpu.system) / 1e6 : Number.NaN };
    (results[engine] ??= []).push(result);
    const rejects = result.rejected === null ? "" : `  ${result.rejected} rejects`;
    console.log(`run ${r + 1}/${runs} ${engine.padEnd(15)} ${result.seconds.toFixed(2)} s  ${result.peakRssMB.toFixed(0)} MB  ${result.rows} rows${rejects}`);
  }
  const sluice = results.sluice[r];
  for (const engine of checked) {
    const other = results[engine][r];
    if (other.rows !== sluice.rows || other.rejected !== sluice.rejected)
      disagreements.push(`run ${r + 1}: ${engine} kept ${other.rows} rows and ${other.rejected} rejects, sluice ${sluice.rows} and ${sluice.rejected}`);
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
// Ratios are taken run by run (the engines of one round ran back to back) and the median kept.
const ratio = (engine: string, base: string, key: "seconds" | "peakRssMB" | "cpuSeconds") =>
  median(results[engine].map((x, i) => x[key] / results[base][i][key]));

console.log(`\nclickstream job, ${count.toLocaleString("en-US")} events, median of ${runs} run(s)`);
console.log(
  `engine           wall s    CPU s      rows/s   peak RSS MB   ${baselines.map((b) => `wall vs ${b}   CPU vs ${b}   RSS vs ${b}`).join("   ")}`,
);
for (const engine of engines) {
  const rs = results[engine];
  if (!rs) {
    const fs = failures[engine] ?? [];
    console.log(`${engine.padEnd(16)} failed in ${fs.length}/${runs} run(s) after ${median(fs.map((f) => f.seconds)).toFixed(2)} s: ${fs[0]?.error}`);
    continue;
  }
  const seconds = median(rs.map((x) => x.seconds));
  const ratios = baselines.map(
    (b) =>
      `${ratio(engine, b, "seconds").toFixed(2).padStart(8 + b.length)}   ${ratio(engine, b, "cpuSeconds").toFixed(2).padStart(7 + b.length)}   ${ratio(engine, b, "peakRssMB").toFixed(2).padStart(7 + b.length)}`,
  );
  console.log(
    `${engine.padEnd(16)} ${seconds.toFixed(2).padStart(6)}   ${median(rs.map((x) => x.cpuSeconds)).toFixed(2).padStart(6)}   ${Math.round(count / seconds).toLocaleString("en-US").padStart(9)}   ${median(rs.map((x) => x.peakRssMB)).toFixed(0).padStart(11)}   ${ratios.join("   ")}`,
  );
}
console.log("\nduckdb-default coerces wrong types and keeps rows sluice and the checked engines reject: it is not the same job.");
console.log("polars-default (scanJson with the schema and ignoreErrors) stops at the first malformed line; on well-formed input it would null or coerce wrong types, not reject them.");
if (disagreements.length > 0) {
  console.log(`\nDISAGREEMENT with sluice:\n${disagreements.join("\n")}`);
  process.exitCode = 1;
} else {
  console.log(`\n${checked.join(" and ")} kept the same rows and rejects as sluice in every run.`);
}
