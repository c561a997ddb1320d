/**
 * The clickstream job as one worker of a distributed run: start the same command on every machine
 * (or several times on one), and the workers share the input through a work queue on Redis.
 *
 *   sluice run --distribute redis://127.0.0.1:6379 --job clicks-2024-03 examples/distributed-clickstream.ts --input 'data/*.ndjson' --out out/distributed
 *
 * Large NDJSON files are cut into splits at line boundaries (--split-bytes, default 64 MiB); a
 * split is acknowledged once its rows and dead letters are committed, and a killed worker's
 * splits go to another after the lease (--lease). Together the workers write what one process
 * writes: <out>/events/event_date=YYYY-MM-DD/*.parquet and <out>/dead-letter/*.ndjson, added to
 * the folders (a distributed run appends). See docs/distributed.md.
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import { definePipeline, fromNdjson, toParquet } from "sluice";
import { deadLetter, enrich, validate } from "sluice/operators";
import { ClickEvent, EnrichedEvent, enrichEvent } from "./clickstream.ts";

function options(args: readonly string[]): { input: string[]; out: string } {
  const { values } = parseArgs({
    args: [...args],
    options: { input: { type: "string", multiple: true }, out: { type: "string" } },
    strict: true,
  });
  return { input: values.input ?? [], out: values.out ?? "" };
}

export default definePipeline({
  description: "clickstream NDJSON → validated, enriched events by event_date, shared by the workers of a distributed run (--input <glob> --out <folder>)",
  source({ args }) {
    const { input } = options(args);
    if (input.length === 0) throw new Error("--input <file or glob> is required");
    return fromNdjson(input);
  },
  process(records, { args }) {
    const { out } = options(args);
    if (!out) throw new Error("--out <folder> is required");
    return records.pipe(
      validate(ClickEvent),
      enrich(enrichEvent),
      deadLetter(join(out, "dead-letter")),
      toParquet(join(out, "events"), { schema: EnrichedEvent, partitionBy: ["event_date"], mode: "append" }),
    );
  },
});
