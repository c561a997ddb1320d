/**
 * A terminal histogram of one column: equal-width bins between the column's minimum and
 * maximum, each drawn as a bar of Unicode eighth blocks. Two passes over batches (the range, then
 * the counts), or one when the dataset's footer statistics already give the exact range; memory
 * stays one counter per bin.
 */
import { type Data, type DataType, type Timestamp, TimeUnit, Type } from "apache-arrow";
import { inspectDataset } from "../parquet/metadata.ts";
import { isoDate, isoTimestamp, parseIsoDays, parseIsoMicrosExact, type Unit } from "../schema/instant.ts";
import { batchesOf, type ReadOptions, type Tabular } from "./input.ts";
import { formatCount, formatTable } from "./table.ts";

function roundEdge(edge: number | string): number | string {
  return typeof edge === "number" ? Number(edge.toPrecision(6)) : edge;
}

/** Options of {@link histogram}. */
export interface HistogramOptions extends ReadOptions {
  /** Number of equal-width bins (default 10). */
  readonly bins?: number;
  /** Terminal cells of the longest bar (default 40). */
  readonly width?: number;
}

/** One bin: values `from <= v < to` (the last bin includes `to`), their count and a bar. */
export interface HistogramBin {
  /** Bin edges: numbers, or ISO text for timestamps and dates. */
  readonly from: number | string;
  readonly to: number | string;
  readonly count: number;
  readonly bar: string;
}

/** The bins, with the values they leave out. */
export type Histogram = HistogramBin[] & {
  /** Null values (not in any bin). */
  readonly nulls: number;
  /** NaN values (not in any bin). */
  readonly nans: number;
};

type Kind = "number" | "timestamp" | "date";

const UNITS: Record<TimeUnit, Unit> = { [TimeUnit.SECOND]: "s", [TimeUnit.MILLISECOND]: "ms", [TimeUnit.MICROSECOND]: "us", [TimeUnit.NANOSECOND]: "ns" };
const MICROS_PER: Record<Unit, number> = { s: 1e6, ms: 1e3, us: 1, ns: 1e-3 };

function kindOf(type: DataType): Kind | undefined {
  if (type.typeId === Type.Int || type.typeId === Type.Float) return "number";
  if (type.typeId === Type.Timestamp) return "timestamp";
  if (type.typeId === Type.Date && (type as unknown as { unit: number }).unit === 0) return "date";
  return undefined;
}

/** Calls `each` with every non-null value of a column chunk as a number (timestamps in their unit, dates in days). */
function forEachValue(data: Data, each: (value: number) => void): number {
  const values = data.values as Float64Array | BigInt64Array | Int32Array;
  for (let i = 0; i < data.length; i++) if (data.nullCount === 0 || data.getValid(i)) each(Number(values[i]));
  return data.nullCount;
}

const EIGHTHS = ["", "▏", "▎", "▍", "▌", "▋", "▊", "▉"];

function bar(count: number, most: number, width: number): string {
  if (count === 0 || most === 0) return "";
  const eighths = Math.max(1, Math.round((count / most) * width * 8));
  return "█".repeat(Math.floor(eighths / 8)) + (EIGHTHS[eighths % 8] as string);
}

/** The exact range from the footers' statistics, when they give one for every file. */
async function rangeFromStatistics(path: string, column: string, kind: Kind, unit: Unit): Promise<[number, number] | undefined> {
  const summary = await inspectDataset(path);
  const stats = summary.columns.find((c) => c.name === column);
  if (!stats || stats.min === null || stats.max === null || !stats.minExact || !stats.maxExact) return undefined;
  const value = (v: string | number | boolean): number => {
    if (kind === "number") return typeof v === "number" ? v : Number(v);
    if (kind === "date") return parseIsoDays(String(v));
    // ISO text at the column's precision; statistics of a nanosecond column lose nothing at µs here only when whole.
    return Number(parseIsoMicrosExact(String(v))) / MICROS_PER[unit];
  };
  const range: [number, number] = [value(stats.min), value(stats.max)];
  return range.every(Number.isFinite) ? range : undefined;
}

/**
 * Draws the distribution of a number, timestamp or date column of a table, a record batch or a
 * dataset as `bins` equal-width bins from its minimum to its maximum (the last bin includes the
 * maximum), each with its count and a bar scaled to the fullest bin. Nulls and NaN are left out
 * and counted (`nulls`, `nans` on the result). For a dataset without a row filter the range
 * comes from the footers' statistics when they are exact, so the data is read once; otherwise
 * twice (the range, then the counts), one batch at a time. Prints as a table in a REPL.
 *
 * Rejects naming the column when it is missing or not a number, timestamp or date.
 *
 * @example
 * await histogram("out/events", "price", { bins: 5 });
 * // from   │ to     │  count │ bar
 * // 0.5    │ 100.4  │ 14,102 │ ████████████████████████████████████████
 */
export async function histogram(input: Tabular, column: string, options: HistogramOptions = {}): Promise<Histogram> {
  const { bins: binCount = 10, width = 40, ...read } = options;
  if (!Number.isInteger(binCount) || binCount < 1) throw new Error(`histogram: bins must be a whole number of at least 1 (got ${binCount})`);
  let kind: Kind | undefined;
  let type: DataType | undefined;
  const check = (t: DataType) => {
    if (type) return;
    type = t.typeId === Type.Dictionary ? (t as unknown as { dictionary: DataType }).dictionary : t;
    kind = kindOf(type);
    if (!kind) throw new Error(`histogram: column "${column}" is ${String(t)}; a histogram needs numbers, timestamps or dates`);
  };
  const unitOf = () => (kind === "timestamp" ? UNITS[(type as Timestamp).unit] : "us");

  let nulls = 0;
  let nans = 0;
  // A pass over the column for its range, unless exact footer statistics give it.
  async function scanRange(): Promise<[number, number] | undefined> {
    let lo = Number.POSITIVE_INFINITY;
    let hi = Number.NEGATIVE_INFINITY;
    for await (const batch of batchesOf("histogram", input, [column], read)) {
      check(batch.schema.fields[0]?.type as DataType);
      forEachValue(batch.data.children[0] as Data, (v) => {
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      });
    }
    return lo <= hi ? [lo, hi] : undefined;
  }
  let range: [number, number] | undefined;
  if (typeof input === "string" && read.where === undefined) {
    // One row tells the column's type; the footers may then tell its range.
    for await (const batch of batchesOf("histogram", input, [column], { ...read, limit: 1 })) check(batch.schema.fields[0]?.type as DataType);
    if (kind) range = await rangeFromStatistics(input, column, kind, unitOf());
  }
  range ??= await scanRange();

  const counts = new Float64Array(binCount);
  const [lo, hi] = range ?? [0, 0];
  const step = (hi - lo) / binCount;
  for await (const batch of batchesOf("histogram", input, [column], read)) {
    check(batch.schema.fields[0]?.type as DataType);
    nulls += forEachValue(batch.data.children[0] as Data, (v) => {
      if (Number.isNaN(v)) {
        nans++;
        return;
      }
      // The same arithmetic as SQL's least(floor((v - lo) / step), bins - 1); one bin when all values are equal.
      const bin = step > 0 ? Math.min(binCount - 1, Math.floor((v - lo) / step)) : 0;
      counts[bin] = (counts[bin] as number) + 1;
    });
  }
  const edge = (i: number): number | string => {
    const v = i === binCount ? hi : lo + i * step;
    if (kind === "timestamp") return isoTimestamp(BigInt(Math.round(v)), unitOf(), (type as Timestamp).timezone != null);
    if (kind === "date") return Number.isInteger(v) ? isoDate(v) : isoTimestamp(BigInt(Math.round(v * 86_400_000)), "ms", true);
    return v;
  };
  const most = Math.max(0, ...counts);
  const rows = range
    ? Array.from(counts, (c, i) => ({ from: edge(i), to: edge(i + 1), count: c, bar: bar(c, most, width) }))
    : [];
  // Printed, edges show 6 significant digits (the values keep every digit); left-out values follow.
  const shown = rows.map((r) => ({ ...r, from: roundEdge(r.from), to: roundEdge(r.to) }));
  const left = [nulls > 0 ? `${formatCount(nulls)} null${nulls === 1 ? "" : "s"}` : "", nans > 0 ? `${formatCount(nans)} NaN` : ""].filter(Boolean);
  Object.defineProperties(rows, {
    nulls: { value: nulls },
    nans: { value: nans },
    [Symbol.for("nodejs.util.inspect.custom")]: {
      value: function inspectHistogram() {
        const table = formatTable(shown, undefined, { counts: ["count"], maxWidth: Math.max(40, width) });
        const values = rows.reduce((total, r) => total + r.count, 0);
        const size = `${formatCount(rows.length)} bin${rows.length === 1 ? "" : "s"}, ${formatCount(values)} value${values === 1 ? "" : "s"}`;
        return `${table}\n${size}${left.length > 0 ? ` (not counted: ${left.join(", ")})` : ""}`;
      },
    },
  });
  return rows as Histogram;
}
