/**
 * Runs one engine on the clickstream job in its own process and prints one JSON line: rows
 * written and rows rejected (null when the engine has no notion of rejects). The caller
 * (harness.ts) measures the process from outside. An engine that throws prints `error`, exits 3.
 *
 *   bun test/bench/job.ts <engine> <input> <outdir> [compression]
 *
 * Engines: sluice, duckdb-checked, duckdb-strict, duckdb-default, polars-checked, polars-default,
 * and the single-thread floors floor-parse and floor-operators (floor-jobs.ts).
 * `compression` (zstd, snappy, lz4, none) is for sluice and duckdb-strict; without it sluice runs
 * examples/clickstream.ts as it is.
 */
import { join } from "node:path";
import { runJob } from "./harness.ts";

// Each engine loads only its own modules: DuckDB's and Polars's native libraries loaded in
// sluice's process (and sluice in theirs) would be charged to the engine measured.
const sluice = () => Promise.all([import("sluice"), import("sluice/operators"), import("../../examples/clickstream.ts")]);
const duckdb = () => import("./duckdb-jobs.ts");
const polars = () => import("./polars-jobs.ts");
const floor = () => import("./floor-jobs.ts");

type Compression = "zstd" | "snappy" | "lz4" | "none";

// Lines in a rejects file, counted after the job is done.
async function countLines(path: string): Promise<number> {
  const bytes = await Bun.file(path).bytes();
  let lines = 0;
  for (const byte of bytes) if (byte === 10) lines++;
  return lines;
}

/** examples/clickstream.ts's pipeline with another `compression` for the sink. */
async function clickstreamWith(input: string, out: string, compression: Compression) {
  const [{ fromNdjson, run, toParquet }, { deadLetter, enrich, validate }, { ClickEvent, EnrichedEvent, enrichEvent }] = await sluice();
  return run(
    fromNdjson(input).pipe(
      validate(ClickEvent),
      enrich(enrichEvent),
      deadLetter(join(out, "dead-letter"), { mode: "overwrite" }),
      toParquet(join(out, "events"), { schema: EnrichedEvent, partitionBy: ["event_date"], mode: "overwrite", compression }),
    ),
  );
}

const events = (out: string) => join(out, "events");
const rejects = (out: string) => join(out, "rejects.ndjson");

await runJob(
  {
    async sluice(input, out, compression) {
      const summary = compression
        ? await clickstreamWith(input, out, compression as Compression)
        : await (await import("../../examples/clickstream.ts")).clickstream(input, out);
      return { rows: summary.written, rejected: summary.deadLettered };
    },
    "duckdb-strict": async (input, out, compression) => (await duckdb()).duckdbStrict(input, events(out), compression),
    async "duckdb-checked"(input, out) {
      const rows = await (await duckdb()).duckdbChecked(input, events(out), rejects(out));
      return { rows, rejected: await countLines(rejects(out)) };
    },
    async "duckdb-default"(input, out) {
      return { rows: await (await duckdb()).duckdbDefault(input, events(out)), rejected: null };
    },
    async "polars-checked"(input, out) {
      const rows = await (await polars()).polarsChecked(input, events(out), rejects(out));
      return { rows, rejected: await countLines(rejects(out)) };
    },
    "floor-parse": async (input) => (await floor()).floorParse(input),
    "floor-operators": async (input) => (await floor()).floorOperators(input),
    async "polars-default"(input, out) {
      return { rows: await (await polars()).polarsDefault(input, events(out)), rejected: null };
    },
  },
  Bun.argv.slice(2),
);
