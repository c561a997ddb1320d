/**
 * The clickstream job as a pipeline module: NDJSON events → validation → enrichment →
 * date-partitioned Parquet, every rejected line in the dead letter.
 *
 *   sluice run examples/platform/clickstream.ts --input 'data/*.ndjson' --out out/clickstream
 *
 * writes <out>/events/event_date=YYYY-MM-DD/*.parquet (replacing an earlier run's dataset) and
 * <out>/dead-letter/*.ndjson. Under `sluice dead-letter replay` it appends instead.
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import { definePipeline, fromNdjson, toParquet } from "sluice";
import { deadLetter, enrich, validate } from "sluice/operators";
import { ClickEvent, EnrichedEvent, enrichEvent } from "../clickstream.ts";

/** `--input <file or glob>` (repeatable; the source needs it) and `--out <folder>` (the sink needs it). */
function options(args: readonly string[]): { input: string[]; out: string } {
  const { values } = parseArgs({
    args: [...args],
    options: { input: { type: "string", multiple: true }, out: { type: "string" } },
    strict: true,
  });
  return { input: values.input ?? [], out: values.out ?? "" };
}

export default definePipeline({
  description: "clickstream NDJSON → validated, enriched events partitioned by event_date (--input <glob> --out <folder>)",
  source({ args }) {
    const { input } = options(args);
    if (input.length === 0) throw new Error("--input <file or glob> is required");
    return fromNdjson(input);
  },
  process(records, { args, replay }) {
    const { out } = options(args);
    if (!out) throw new Error("--out <folder> is required");
    const mode = replay ? "append" : "overwrite";
    return records.pipe(
      validate(ClickEvent),
      enrich(enrichEvent),
      deadLetter(join(out, "dead-letter"), { mode }),
      toParquet(join(out, "events"), { schema: EnrichedEvent, partitionBy: ["event_date"], mode }),
    );
  },
});
