/**
 * `bun run bench:csv [--count N] [--runs R] [--engines sluice,duckdb]`: the CSV job
 * (test/bench/csv-jobs.ts) on N generated transactions (default 1,000,000, ~1% defects) with
 * sluice and with DuckDB's `read_csv` (declared types, rejects table), each in its own process,
 * in turn. Prints medians, ratios against DuckDB taken run by run, and both engines' counts
 * next to the number of defects the generator planted.
 */
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { generateTransactionCsv, writeTransactionCsv } from "../../src/generate/transactions.ts";
import { printTable, runRounds } from "./harness.ts";

const { values } = parseArgs({
  args: Bun.argv.slice(2),
  options: {
    count: { type: "string", default: "1000000" },
    runs: { type: "string", default: "3" },
    engines: { type: "string", default: "sluice,duckdb" },
  },
});
const count = Number(values.count);
const runs = Number(values.runs);
if (!Number.isSafeInteger(count) || count < 1) throw new Error(`--count must be a whole number of records, not ${values.count}`);
if (!Number.isSafeInteger(runs) || runs < 1) throw new Error(`--runs must be a whole number, not ${values.runs}`);
const engines = (values.engines ?? "").split(",");
for (const e of engines) if (e !== "sluice" && e !== "duckdb") throw new Error(`--engines takes sluice, duckdb; not ${e}`);

const dataDir = "bench-data";
const input = join(dataDir, `transactions-${count}.csv`);
const options = { count, seed: 7 };
await mkdir(dataDir, { recursive: true });
if (!existsSync(input)) {
  console.log(`generating ${count.toLocaleString("en-US")} transactions into ${input} ...`);
  await writeTransactionCsv(input, options);
}
// The generator is deterministic: walking it again says what it planted without reading the file.
const planted: Record<string, number> = {};
for (const { defect } of generateTransactionCsv(options)) if (defect) planted[defect] = (planted[defect] ?? 0) + 1;
const defects = Object.values(planted).reduce((a, b) => a + b, 0);

const job = join(import.meta.dir, "csv-jobs.ts");
const rounds = await runRounds(engines, runs, (engine, out) => ["bun", job, engine, input, out], dataDir, (r, results) => {
  for (const [engine, m] of Object.entries(results)) if (m.error) throw new Error(`${engine} failed in run ${r + 1}: ${m.error}`);
});
printTable(`CSV job, ${count.toLocaleString("en-US")} transactions (${input})`, count, rounds, ["duckdb"].filter((b) => engines.includes(b)));
console.log(`\nthe generator planted ${defects.toLocaleString("en-US")} defective records: ${JSON.stringify(planted)}`);
for (const engine of engines) {
  const m = rounds[engine]?.[0];
  if (m) console.log(`${engine}: ${m.rows} rows + ${m.rejected} rejects = ${m.rows + (m.rejected ?? 0)} of ${count} records`);
}
