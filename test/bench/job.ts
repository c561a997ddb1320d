/**
 * Runs one engine on the clickstream job in its own process and prints one JSON line: rows
 * written and rows rejected (null when the engine has no notion of rejects). The caller
 * (harness.ts) measures the process from outside. An engine that throws prints `error`, exits 3.
 *
 *   bun test/bench/job.ts <engine> <input> <outdir> [compression]
 *
 * Engines: sluice, duckdb-checked, duckdb-strict, duckdb-default, polars-checked, polars-default.
 * `compression` (zstd, snappy, lz4, none) is for sluice and duckdb-strict; without it sluice runs
 * examples/clickstream.ts as it is.
 */
import { join } from "node:path";
import { run, toParquet } from "sluice";
import { deadLetter, enrich, validate } from "sluice/operators";
import { fromNdjson } from "sluice";
import { ClickEvent, clickstream, EnrichedEvent, enrichEvent } from "../../examples/clickstream.ts";
import { duckdbChecked, duckdbDefault, duckdbStrict } from "./duckdb-jobs.ts";
import { runJob } from "./harness.ts";
import { polarsChecked, polarsDefault } from "./polars-jobs.ts";

type Compression = "zstd" | "snappy" | "lz4" | "none";

// Lines in a rejects file, counted after the job is done.
async function countLines(path: string): Promise<number> {
  const bytes = await Bun.file(path).bytes();
  let lines = 0;
  for (const byte of bytes) if (byte === 10) lines++;
  return lines;
}

/** examples/clickstream.ts's pipeline with another `compression` for the sink. */
function clickstreamWith(input: string, out: string, compression: Compression) {
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
      const summary = compression ? await clickstreamWith(input, out, compression as Compression) : await clickstream(input, out);
      return { rows: summary.written, rejected: summary.deadLettered };
    },
    "duckdb-strict": (input, out, compression) => duckdbStrict(input, events(out), compression),
    async "duckdb-checked"(input, out) {
      const rows = await duckdbChecked(input, events(out), rejects(out));
      return { rows, rejected: await countLines(rejects(out)) };
    },
    async "duckdb-default"(input, out) {
      return { rows: await duckdbDefault(input, events(out)), rejected: null };
    },
    async "polars-checked"(input, out) {
      const rows = await polarsChecked(input, events(out), rejects(out));
      return { rows, rejected: await countLines(rejects(out)) };
    },
    async "polars-default"(input, out) {
      return { rows: await polarsDefault(input, events(out)), rejected: null };
    },
  },
  Bun.argv.slice(2),
);
