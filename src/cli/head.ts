/**
 * `sluice head <dataset folder or file> [-n N] [--json] [--width W]`: the first rows of a dataset,
 * as a table that fits the terminal (or one block per row when it does not).
 */
import type { Schema } from "apache-arrow";
import { readDatasetBatches } from "../dataset/read.ts";
import { formatTable } from "../notebook/table.ts";
import { rowsOf, toJsonLine } from "../notebook/values.ts";
import { parseOptions } from "./args.ts";

const USAGE = `usage: sluice head <dataset folder, .parquet file or s3://bucket/prefix> [-n N] [--json] [--columns a,b] [--width W]
  -n N          rows to print (default 10)
  --json        one JSON object per line (NDJSON) instead of a table
  --columns     comma-separated columns to print (default: all)
  --width W     terminal cells to fit in (default: the terminal's width, 100 when not a terminal);
                rows too wide for it are printed as one "column │ value" block per row`;

// Table cells are cut here so one long value does not push the other columns off screen.
const CELL_WIDTH = 40;

/**
 * Prints the first rows of a dataset folder (files in path order, partition columns added from
 * folder names when the files lack them) or of one Parquet file: as an aligned table (nulls as
 * `null`, timestamps as ISO text, lists and structs as JSON, long values cut with `…`; one
 * `column │ value` block per row when the table is wider than `--width`) or, with `--json`, as NDJSON. Reads only the batches it needs and stops after N rows: later files are
 * never opened.
 *
 * A dataset in a bucket (`s3://bucket/prefix`, credentials from the AWS_* variables) is read
 * through a local copy of only the files the first N rows are in.
 *
 * Resolves to 0 on success, 1 when the input cannot be read (the message names it), 2 on wrong
 * arguments.
 *
 * @example
 * process.exitCode = await command(["out/events", "-n", "5"]);
 */
export async function command(args: string[]): Promise<number> {
  const parsed = parseOptions("head", USAGE, args, {
    n: { type: "string", short: "n" },
    json: { type: "boolean" },
    columns: { type: "string" },
    width: { type: "string" },
  });
  if (typeof parsed === "number") return parsed;
  const { values, positionals } = parsed;
  if (positionals.length !== 1) {
    console.error(`sluice head: expected one dataset folder or file, got ${positionals.length}\n${USAGE}`);
    return 2;
  }
  const count = values.n === undefined ? 10 : Number(values.n);
  if (!Number.isSafeInteger(count) || count < 0) {
    console.error(`sluice head: -n must be a whole number of rows, got "${values.n}"`);
    return 2;
  }
  const width = values.width === undefined ? (process.stdout.isTTY ? process.stdout.columns : undefined) || 100 : Number(values.width);
  if (!Number.isSafeInteger(width) || width < 1) {
    console.error(`sluice head: --width must be a positive whole number, got "${values.width}"`);
    return 2;
  }
  const columns = values.columns
    ?.split(",")
    .map((c) => c.trim())
    .filter((c) => c.length > 0);
  const path = positionals[0] as string;

  const rows: Record<string, unknown>[] = [];
  let schema: Schema | undefined;
  try {
    // -n 0 still opens the first file, so a wrong path or column is reported and the header printed.
    for await (const batch of readDatasetBatches(path, { columns, limit: Math.max(count, 1), batchSize: Math.min(Math.max(count, 1), 8192) })) {
      schema ??= batch.schema;
      for (const row of rowsOf(batch, count - rows.length)) {
        if (values.json) console.log(toJsonLine(row));
        rows.push(row);
      }
      if (rows.length >= count) break;
    }
  } catch (error) {
    console.error(`sluice head: ${(error as Error).message.replace(/^readDataset: /, "")}`);
    return 1;
  }
  if (!values.json) {
    const names = schema?.fields.map((f) => f.name) ?? columns;
    console.log(formatTable(rows, names, { maxWidth: CELL_WIDTH, width }));
  }
  return 0;
}
