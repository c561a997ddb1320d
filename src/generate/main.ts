/**
 * `bun run gen <file> [--count N] [--seed S] [--defect-rate R]`: writes clickstream NDJSON.
 */
import { mkdir, rm } from "node:fs/promises";
import { dirname } from "node:path";
import { parseOptions } from "../cli/args.ts";
import { writeClickstream } from "./clickstream.ts";

const USAGE = `usage: bun run gen <file.ndjson> [--count N] [--seed S] [--defect-rate R]

Writes deterministic clickstream events, one JSON object a line, with a share of them defective
(wrong types, missing fields, unknown enum values, impossible timestamps, truncated JSON), as
tests, examples and the benchmark use them. The same seed gives the same file on every machine.

  <file.ndjson>       where to write (parent folders are made; an existing file is replaced)
  --count N           events to write (default 100000)
  --seed S            seed of the generator, an integer (default 42)
  --defect-rate R     share of defective events, from 0 to 1 (default 0.02)
  -h, --help          print this text`;

/** What the command line asks for, or the exit code when there is nothing to generate. */
function parse(args: string[]): { path: string; count: number; seed: number; defectRate: number } | number {
  const parsed = parseOptions("gen", USAGE, args, {
    count: { type: "string", default: "100000" },
    seed: { type: "string", default: "42" },
    "defect-rate": { type: "string", default: "0.02" },
  });
  if (typeof parsed === "number") return parsed;
  const { values, positionals } = parsed;
  const problem = (text: string) => {
    console.error(`sluice gen: ${text}\n${USAGE}`);
    return 2;
  };
  if (positionals.length === 0) return problem("no output file given");
  if (positionals.length > 1) return problem(`one output file expected, got ${positionals.length}: ${positionals.join(" ")}`);
  const count = Number(values.count);
  const seed = Number(values.seed);
  const defectRate = Number(values["defect-rate"]);
  if (!/^\d+$/.test(values.count ?? "") || !Number.isSafeInteger(count)) return problem(`--count must be a whole number of events, not ${values.count}`);
  if (!/^-?\d+$/.test(values.seed ?? "") || !Number.isSafeInteger(seed)) return problem(`--seed must be an integer, not ${values.seed}`);
  if (values["defect-rate"]?.trim() === "" || !(defectRate >= 0 && defectRate <= 1)) return problem(`--defect-rate must be between 0 and 1, not ${values["defect-rate"]}`);
  return { path: positionals[0] as string, count, seed, defectRate };
}

/** Runs the command; resolves with the process's exit code (0 done or help, 2 bad arguments). */
export async function main(args: string[]): Promise<number> {
  const job = parse(args);
  if (typeof job === "number") return job;
  const { path, count, seed, defectRate } = job;
  await mkdir(dirname(path), { recursive: true });
  await rm(path, { force: true });
  const started = performance.now();
  const defects = await writeClickstream(path, { count, seed, defectRate });
  const planted = Object.values(defects).reduce((a, b) => a + b, 0);
  console.log(
    `wrote ${count.toLocaleString("en-US")} events to ${path} in ${((performance.now() - started) / 1000).toFixed(1)} s (${planted} with defects: ${JSON.stringify(defects)})`,
  );
  return 0;
}

if (import.meta.main) process.exitCode = await main(Bun.argv.slice(2));
