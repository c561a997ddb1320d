/**
 * `bun run bench [--count N] [--runs R] [--engines a,b] [--compression zstd,snappy,lz4,none]`:
 * the clickstream job with sluice and, in the same session, with DuckDB and Polars: each as it
 * reads NDJSON by default, with the schema's type checks and rejects (the checked peers, which
 * must keep exactly the rows sluice keeps), and as a DuckDB user would write it (`duckdb-strict`,
 * the speed to beat; its counts are reported next to sluice's, not required to match). Each
 * engine runs in its own process, in turn, so memory is per engine and machine noise hits all
 * alike. Prints medians and ratios taken run by run.
 *
 * With `--compression`, it runs sluice and duckdb-strict once per codec instead and reports what
 * each codec costs (wall, CPU, bytes written) against zstd.
 */
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { writeClickstream } from "../../src/generate/clickstream.ts";
import { type Measured, printTable, runRounds } from "./harness.ts";

const ALL = ["sluice", "duckdb-checked", "duckdb-strict", "duckdb-default", "polars-checked", "polars-default"];
// Not run unless named: what one JavaScript thread needs at least for the job (floor-jobs.ts).
const FLOORS = ["floor-parse", "floor-operators"];
const CODECS = ["zstd", "snappy", "lz4", "none"];

const { values } = parseArgs({
  args: Bun.argv.slice(2),
  options: {
    count: { type: "string", default: "1000000" },
    runs: { type: "string", default: "3" },
    engines: { type: "string", default: ALL.join(",") },
    compression: { type: "string" },
  },
});
const count = Number(values.count);
const runs = Number(values.runs);
if (!Number.isSafeInteger(count) || count < 1) throw new Error(`--count must be a whole number of events, not ${values.count}`);
if (!Number.isSafeInteger(runs) || runs < 1) throw new Error(`--runs must be a whole number, not ${values.runs}`);
const codecs = values.compression?.split(",");
for (const c of codecs ?? []) if (!CODECS.includes(c)) throw new Error(`--compression takes ${CODECS.join(", ")} (comma-separated), not ${c}`);
const engines = codecs ? codecs.flatMap((c) => [`sluice-${c}`, `duckdb-strict-${c}`]) : (values.engines ?? "").split(",");
for (const e of engines) if (!codecs && !ALL.includes(e) && !FLOORS.includes(e)) throw new Error(`--engines takes ${[...ALL, ...FLOORS].join(", ")}, not ${e}`);

const dataDir = "bench-data";
const input = join(dataDir, `clickstream-${count}.ndjson`);
await mkdir(dataDir, { recursive: true });
if (!existsSync(input)) {
  console.log(`generating ${count.toLocaleString("en-US")} events into ${input} ...`);
  await writeClickstream(input, { count, seed: 7 });
}

// Engines that may fail: a finding to report, not a broken benchmark. Polars' NDJSON reader
// stops at the first malformed line, and the generated input has some.
const mayFail = new Set(["polars-default"]);
// Engines that must keep exactly the rows and rejects sluice keeps.
const checked = ["duckdb-checked", "polars-checked"];
const disagreements: string[] = [];
const strictCounts: string[] = [];

const job = join(import.meta.dir, "job.ts");
const command = (engine: string, out: string) => {
  if (!codecs) return ["bun", job, engine, input, out];
  const at = engine.lastIndexOf("-");
  return ["bun", job, engine.slice(0, at), input, out, engine.slice(at + 1)];
};
const rounds = await runRounds(engines, runs, command, dataDir, (r, results: Record<string, Measured>) => {
  for (const [engine, m] of Object.entries(results))
    if (m.error && !mayFail.has(engine)) throw new Error(`${engine} failed in run ${r + 1}: ${m.error}`);
  const sluice = results.sluice;
  if (!sluice) return;
  for (const engine of checked) {
    const other = results[engine];
    if (other && (other.rows !== sluice.rows || other.rejected !== sluice.rejected))
      disagreements.push(`run ${r + 1}: ${engine} kept ${other.rows} rows and ${other.rejected} rejects, sluice ${sluice.rows} and ${sluice.rejected}`);
  }
  const strict = results["duckdb-strict"];
  if (strict) {
    const unaccounted = count - strict.rows - (strict.rejected ?? 0);
    strictCounts.push(
      `run ${r + 1}: duckdb-strict ${strict.rows} rows + ${strict.rejected} rejects (${unaccounted} lines in neither); sluice ${sluice.rows} rows + ${sluice.rejected} dead letters`,
    );
  }
});

const what = codecs ? `compression: sluice and duckdb-strict per codec` : "clickstream job";
const baselines = codecs
  ? ["sluice-zstd", "duckdb-strict-zstd"].filter((b) => engines.includes(b))
  : ["duckdb-checked", "duckdb-strict", "polars-checked"].filter((b) => engines.includes(b));
printTable(`${what}, ${count.toLocaleString("en-US")} events (${input})`, count, rounds, baselines);
if (engines.includes("duckdb-default")) console.log("\nduckdb-default coerces wrong types and keeps rows sluice and the checked engines reject: it is not the same job.");
if (engines.includes("polars-default")) console.log("polars-default (scanJson with the schema and ignoreErrors) stops at the first malformed line.");
if (strictCounts.length > 0) console.log(`\nduckdb-strict against sluice (not required to match; see docs/benchmarks.md):\n${strictCounts.join("\n")}`);
if (disagreements.length > 0) {
  console.log(`\nDISAGREEMENT with sluice:\n${disagreements.join("\n")}`);
  process.exitCode = 1;
} else if (checked.some((e) => engines.includes(e)) && engines.includes("sluice")) {
  console.log(`\n${checked.filter((e) => engines.includes(e)).join(" and ")} kept the same rows and rejects as sluice in every run.`);
}
