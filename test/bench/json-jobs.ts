/**
 * The JSON-document job, one engine per process (run by test/bench/json.ts through harness.ts):
 * one document holding a large array of clickstream events → the clickstream checks and
 * enrichment → Parquet partitioned by day, with rejects kept.
 *
 *   bun test/bench/json-jobs.ts <sluice|duckdb-strict> <input.json> <outdir>
 *
 * - sluice: examples/clickstream.ts's pipeline with `fromJson` in place of `fromNdjson`.
 * - duckdb-strict: `read_json(format = 'array')` with every column declared JSON and the same
 *   `json_type()` checks as the NDJSON job's duckdb-strict (test/bench/duckdb-jobs.ts).
 */
import { join } from "node:path";
import { fromJson, run, toParquet } from "sluice";
import { deadLetter, enrich, validate } from "sluice/operators";
import { ClickEvent, EnrichedEvent, enrichEvent } from "../../examples/clickstream.ts";
import { runJob } from "./harness.ts";

if (import.meta.main) {
  await runJob(
    {
      async sluice(input, out) {
        const summary = await run(
          fromJson(input).pipe(
            validate(ClickEvent),
            enrich(enrichEvent),
            deadLetter(join(out, "dead-letter"), { mode: "overwrite" }),
            toParquet(join(out, "events"), { schema: EnrichedEvent, partitionBy: ["event_date"], mode: "overwrite" }),
          ),
        );
        return { rows: summary.written, rejected: summary.deadLettered };
      },
      // Loaded on use: sluice's process must not pay for DuckDB's native library.
      "duckdb-strict": async (input, out) => (await import("./duckdb-jobs.ts")).duckdbStrict(input, join(out, "events"), "zstd", "array"),
    },
    Bun.argv.slice(2),
  );
}
