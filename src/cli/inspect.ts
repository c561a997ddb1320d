/**
 * `sluice inspect <dataset folder or file> [--json] [--partitions] [--files]`: what a dataset
 * holds, from its Parquet footers alone.
 */
import { formatCount, formatTable } from "../notebook/table.ts";
import { type ColumnSummary, type DatasetSummary, inspectDataset } from "../parquet/metadata.ts";
import { formatBytes } from "../run/run.ts";
import { asRemote, isS3Url, localDataset } from "../io/s3.ts";
import { parseOptions } from "./args.ts";

const USAGE = `usage: sluice inspect <dataset folder, .parquet file or s3://bucket/prefix> [--json] [--partitions] [--files]
  --json        the full report as JSON (every partition's and file's numbers included)
  --partitions  column statistics for each partition, not only for the whole dataset
  --files       one line per file`;

const n = formatCount;
const plural = (count: number, word: string) => `${n(count)} ${word}${count === 1 ? "" : "s"}`;

function statText(value: ColumnSummary["min"], exact: boolean): string {
  if (value === null) return "—";
  // A truncated statistic is a prefix of the real value: the ellipsis says it goes on.
  return `${String(value)}${exact ? "" : "…"}`;
}

function columnRows(columns: readonly ColumnSummary[]) {
  return columns.map((c) => ({
    column: c.name,
    type: c.type,
    nulls: c.nullCount ?? "?",
    min: statText(c.min, c.minExact),
    max: statText(c.max, c.maxExact),
    size: formatBytes(c.compressedBytes),
  }));
}

/** The report as text for a terminal. */
export function formatInspection(info: DatasetSummary, options: { partitions?: boolean | undefined; files?: boolean | undefined } = {}): string {
  const out: string[] = [];
  out.push(`${(info.isFile ? "file" : "dataset").padEnd(10)} ${info.path}`);
  out.push(`rows       ${n(info.rows)}`);
  out.push(`files      ${n(info.files)} (${formatBytes(info.bytes)}), ${plural(info.rowGroups, "row group")}`);
  if (info.partitionKeys.length > 0) {
    out.push(`partitions ${plural(info.partitions.length, "partition")} by ${info.partitionKeys.join(", ")}`);
  }
  out.push("", "schema");
  const nameWidth = Math.max(...info.schema.map((f) => f.name.length));
  for (const field of info.schema) out.push(`  ${field.name.padEnd(nameWidth)}  ${field.type}${field.nullable ? "" : " not null"}`);
  const missing = info.partitionKeys.filter((k) => !info.schema.some((f) => f.name === k));
  for (const key of missing) out.push(`  ${key.padEnd(nameWidth)}  (partition folder only)`);
  if (info.schemaDiffers.length > 0) {
    out.push(`  ! ${plural(info.schemaDiffers.length, "file")} with a different schema: ${info.schemaDiffers.slice(0, 5).join(", ")}${info.schemaDiffers.length > 5 ? ", …" : ""}`);
  }
  out.push("", "columns (from footer statistics)");
  out.push(indent(formatTable(columnRows(info.columns), undefined, { maxWidth: 36, counts: ["nulls"] })));
  if (info.columns.some((c) => (c.min !== null && !c.minExact) || (c.max !== null && !c.maxExact))) {
    out.push("  … the writer stored a truncated prefix of the value (long strings)");
  }
  if (info.partitionKeys.length > 0) {
    out.push("", "partitions");
    const rows = info.partitions.map((p) => ({
      partition: p.path || "(root)",
      files: p.files,
      rows: p.rows,
      size: formatBytes(p.bytes),
      "row groups": p.rowGroups,
    }));
    out.push(indent(formatTable(rows, undefined, { maxWidth: 60, counts: ["files", "rows", "row groups"] })));
    if (options.partitions) {
      for (const p of info.partitions) {
        out.push("", `partition ${p.path || "(root)"}: ${plural(p.rows, "row")}`);
        out.push(indent(formatTable(columnRows(p.columns), undefined, { maxWidth: 36, counts: ["nulls"] })));
      }
    }
  }
  if (options.files) {
    out.push("", "files");
    const rows = info.fileList.map((f) => ({ file: f.path, rows: f.rows, size: formatBytes(f.bytes), "row groups": f.rowGroups, "created by": f.createdBy }));
    out.push(indent(formatTable(rows, undefined, { maxWidth: 80, counts: ["rows", "row groups"] })));
  }
  return out.join("\n");
}

function indent(text: string): string {
  return text
    .split("\n")
    .map((line) => `  ${line}`)
    .join("\n");
}

/**
 * Prints what a dataset folder (or one Parquet file) holds: partitions, files, rows, sizes, row
 * groups, schema and per-column min / max / null counts, read from the Parquet footers without
 * reading any data. `--json` prints the full {@link DatasetSummary}.
 *
 * Resolves to 0 on success, 1 when the input cannot be inspected (missing, no Parquet files, a
 * corrupt file; the message names it), 2 on wrong arguments.
 *
 * @example
 * process.exitCode = await command(["out/events", "--json"]);
 */
export async function command(args: string[]): Promise<number> {
  const parsed = parseOptions("inspect", USAGE, args, {
    json: { type: "boolean" },
    partitions: { type: "boolean" },
    files: { type: "boolean" },
  });
  if (typeof parsed === "number") return parsed;
  const { values, positionals } = parsed;
  if (positionals.length !== 1) {
    console.error(`sluice inspect: expected one dataset folder or file, got ${positionals.length}\n${USAGE}`);
    return 2;
  }
  const path = positionals[0] as string;
  let info: DatasetSummary;
  try {
    info = await inspectPath(path);
  } catch (error) {
    console.error(`sluice inspect: ${(error as Error).message}`);
    return 1;
  }
  console.log(values.json ? JSON.stringify(info, null, 2) : formatInspection(info, { partitions: values.partitions, files: values.files }));
  return 0;
}

/**
 * Inspects a local dataset, or one in a bucket (`s3://bucket/prefix`) through local stand-ins that
 * hold only each file's footer: two small ranged GETs a file, whatever the file's size.
 */
async function inspectPath(path: string): Promise<DatasetSummary> {
  if (!isS3Url(path)) return inspectDataset(path);
  const copy = await localDataset(path, { footersOnly: true });
  try {
    return { ...(await inspectDataset(copy.path)), path };
  } catch (error) {
    throw new Error(asRemote((error as Error).message, copy, path));
  } finally {
    copy.dispose();
  }
}
