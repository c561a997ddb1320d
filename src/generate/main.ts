/**
 * `bun run gen <file> [--count N] [--seed S] [--defect-rate R]`: writes clickstream NDJSON.
 */
import { mkdir, rm } from "node:fs/promises";
import { dirname } from "node:path";
import { parseArgs } from "node:util";
import { writeClickstream } from "./clickstream.ts";

const { values, positionals } = parseArgs({
  args: Bun.argv.slice(2),
  options: {
    count: { type: "string", default: "100000" },
    seed: { type: "string", default: "42" },
    "defect-rate": { type: "string", default: "0.02" },
  },
  allowPositionals: true,
});
const path = positionals[0];
if (!path) {
  console.error("usage: bun run gen <file.ndjson> [--count N] [--seed S] [--defect-rate R]");
  process.exit(2);
}
const count = Number(values.count);
await mkdir(dirname(path), { recursive: true });
await rm(path, { force: true });
const started = performance.now();
const defects = await writeClickstream(path, {
  count,
  seed: Number(values.seed),
  defectRate: Number(values["defect-rate"]),
});
const planted = Object.values(defects).reduce((a, b) => a + b, 0);
console.log(
  `wrote ${count.toLocaleString("en-US")} events to ${path} in ${((performance.now() - started) / 1000).toFixed(1)} s (${planted} with defects: ${JSON.stringify(defects)})`,
);
