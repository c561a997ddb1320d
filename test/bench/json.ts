/**
 * `bun run bench:json [--mb M] [--runs R] [--engines sluice,duckdb-strict]`: the JSON-document
 * job (test/bench/json-jobs.ts) on one generated document holding an array of about M MiB of
 * clickstream events (default 1024), with sluice's `fromJson` and DuckDB's `read_json`, each in
 * its own process, in turn. Prints medians, ratios against DuckDB taken run by run, and both
 * engines' counts next to the number of defects the generator planted.
 */
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { generateClickstream } from "../../src/generate/clickstream.ts";
import { eventsForBytes, writeClickstreamDocument } from "../../src/generate/document.ts";
import { printTable, runRounds } from "./harness.ts";

const ENGINES = ["sluice", "duckdb-strict"];
const { values } = parseArgs({
  args: Bun.argv.slice(2),
  options: {
    mb: { type: "string", default: "1024" },
    runs: { type: "string", default: "3" },
    engines: { type: "string", default: ENGINES.join(",") },
  },
});
const mb = Number(values.mb);
const runs = Number(values.runs);
if (!(mb > 0)) throw new Error(`--mb must be a positive number of MiB, not ${values.mb}`);
if (!Number.isSafeInteger(runs) || runs < 1) throw new Error(`--runs must be a whole number, not ${values.runs}`);
const engines = (values.engines ?? "").split(",");
for (const e of engines) if (!ENGINES.includes(e)) throw new Error(`--engines takes ${ENGINES.join(", ")}; not ${e}`);

const dataDir = "bench-data";
const options = { count: eventsForBytes(mb * 2 ** 20), seed: 7 };
const input = join(dataDir, `clickstream-${mb}mb.json`);
await mkdir(dataDir, { recursive: true });
if (!existsSync(input)) {
  console.log(`generating a document of ~${mb} MiB (${options.count.toLocaleString("en-US")} events before truncated ones are left out) into ${input} ...`);
  await writeClickstreamDocument(input, options);
}
// The generator is deterministic: walking it again says what the document holds.
let elements = 0;
let defects = 0;
for (const { defect } of generateClickstream(options)) {
  if (defect === "malformed_json") continue;
  elements++;
  if (defect) defects++;
}

const job = join(import.meta.dir, "json-jobs.ts");
const rounds = await runRounds(engines, runs, (engine, out) => ["bun", job, engine, input, out], dataDir, (r, results) => {
  for (const [engine, m] of Object.entries(results)) if (m.error) throw new Error(`${engine} failed in run ${r + 1}: ${m.error}`);
});
const size = (Bun.file(input).size / 2 ** 20).toFixed(0);
printTable(`JSON document job, one array of ${elements.toLocaleString("en-US")} events, ${size} MiB (${input})`, elements, rounds, ["duckdb-strict"].filter((b) => engines.includes(b)));
console.log(`\nthe document holds ${elements.toLocaleString("en-US")} elements, ${defects.toLocaleString("en-US")} of them with a defect a schema catches`);
for (const engine of engines) {
  const m = rounds[engine]?.[0];
  if (m) console.log(`${engine}: ${m.rows} rows + ${m.rejected} rejects = ${m.rows + (m.rejected ?? 0)} of ${elements} elements`);
}
