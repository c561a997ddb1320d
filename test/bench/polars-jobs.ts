/**
 * The clickstream job written for Polars (nodejs-polars), twice: as Polars reads NDJSON with an
 * explicit schema, and with the checks the valibot schema makes plus the rejects written out,
 * which is the fair peer (it must keep exactly the rows sluice keeps).
 *
 * What nodejs-polars 0.26.1 offers and lacks, which shapes both jobs:
 * - `scanJson` with a schema stops the whole read at the first value of the wrong type
 *   ("cannot parse '33388' (string) as Int64"); with `ignoreErrors` it reads a mismatched value as
 *   null, but it still stops at the first malformed line ("error parsing line: Syntax ..."). There
 *   is no option to skip or report bad lines, and the error names no line.
 * - A String column takes any JSON value (numbers, booleans, even objects become text), so a read
 *   alone cannot tell `"user_id": 42` from `"user_id": "42"`. There is no per-value JSON type
 *   function (DuckDB has `json_type`), and `str.jsonDecode` fails the whole column on one mismatch.
 * - `str.jsonPathMatch` is lenient (null for a line that is not JSON), but renders every value as
 *   text, so it cannot type values either.
 * - No partitioned Parquet sink: one file per `event_date` is written with `writeParquet`.
 * - `readJSON(path, { format: "lines" })` throws in 0.26.1 (the native `readJsonLines` is
 *   missing), `readCSV` takes a path ending in ".ndjson" for inline CSV text, and `writeCSV`
 *   ignores `quoteStyle`: `scanJson`, `scanCSV` and `sinkCSV` are used instead.
 * - A lazy horizontal concat of two `scanJson` of the same file with different schemas returned
 *   the first schema's columns twice (the scans were merged): the typed reads are collected one
 *   by one and stacked eagerly.
 */
import { mkdir, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import pl from "nodejs-polars";
import { EVENT_TYPES } from "../../src/generate/clickstream.ts";

type Expr = ReturnType<typeof pl.col>;
type DataFrame = ReturnType<typeof pl.DataFrame>;

const TEXT = ["event_id", "user_id", "session_id", "page_url", "user_agent"] as const;
const NON_EMPTY = new Set(["event_id", "user_id", "session_id"]);
const OUTPUT = [
  "event_id",
  "user_id",
  "session_id",
  "timestamp",
  "event_type",
  "page_url",
  "user_agent",
  "duration_ms",
  "price",
  "country",
  "tags",
  "event_ts",
  "event_date",
  "device_type",
  "event_category",
];

/** Derives device_type and event_category, as examples/clickstream.ts and the DuckDB jobs do. */
function enrichments(): Expr[] {
  // (?i-u): ASCII-only case folding, as JavaScript's /i without the u flag ("ſ" is not "s").
  const ua = (pattern: string) => pl.col("user_agent").str.contains(`(?i-u)${pattern}`);
  const type = (...types: string[]) => pl.col("event_type").isIn(types);
  return [
    pl
      .when(ua("bot|crawler|spider|slurp"))
      .then(pl.lit("bot"))
      .when(ua("okhttp|ShopApp|Dalvik|CFNetwork"))
      .then(pl.lit("app"))
      .when(ua("iPad|Tablet"))
      .then(pl.lit("tablet"))
      .when(ua("Mobi|iPhone|Android"))
      .then(pl.lit("mobile"))
      .otherwise(pl.lit("desktop"))
      .alias("device_type"),
    pl
      .when(type("page_view", "scroll"))
      .then(pl.lit("view"))
      .when(type("click", "search"))
      .then(pl.lit("interaction"))
      .when(type("add_to_cart", "remove_from_cart"))
      .then(pl.lit("cart"))
      .otherwise(pl.lit("conversion"))
      .alias("event_category"),
  ];
}

/**
 * Writes `out/event_date=YYYY-MM-DD/data_0.parquet` (zstd) per date, without the partition
 * column in the files, as DuckDB's `PARTITION_BY` does.
 */
async function writePartitioned(df: DataFrame, out: string): Promise<void> {
  for (const part of df.partitionBy("event_date", true, true)) {
    const day = part.getColumn("event_date").head(1).cast(pl.String).toArray()[0] ?? "__HIVE_DEFAULT_PARTITION__";
    const folder = join(out, `event_date=${day}`);
    await mkdir(folder, { recursive: true });
    part.drop("event_date").writeParquet(join(folder, "data_0.parquet"), { compression: "zstd" });
  }
}

const READ_SCHEMA = {
  event_id: pl.String,
  user_id: pl.String,
  session_id: pl.String,
  timestamp: pl.String,
  event_type: pl.String,
  page_url: pl.String,
  user_agent: pl.String,
  duration_ms: pl.Int64,
  price: pl.Float64,
  country: pl.String,
  tags: pl.List(pl.String),
};

/**
 * Polars' own NDJSON read with the schema declared, as a Polars user would write it. Without
 * `ignoreErrors` the read stops at the first string in `duration_ms`; with it (used here), a
 * mismatched number becomes null and a number in a text field becomes text, but the read still
 * stops at the first malformed line. On the generated input (which has truncated lines) this job
 * therefore throws; the benchmark reports it as failed.
 */
export async function polarsDefault(input: string, out: string): Promise<number> {
  const df = pl
    .scanJson(input, { schema: READ_SCHEMA, ignoreErrors: true })
    .withColumns(pl.col("timestamp").str.strptime(pl.Datetime("ms"), "%+").alias("event_ts"))
    .withColumns(pl.col("event_ts").cast(pl.Date).alias("event_date"), ...enrichments())
    .select(...OUTPUT)
    .collectSync();
  await writePartitioned(df, out);
  return df.height;
}

// Strict ISO-8601 instant: valibot's isoTimestamp() with ASCII digits (Rust's \d is Unicode),
// and fraction digits after the sixth all zero (src/schema/instant.ts refuses sub-microsecond
// precision rather than round it).
const ISO_INSTANT =
  "^[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])[T ](?:[01][0-9]|2[0-3])(?::[0-5][0-9]){2}" +
  "(?:\\.[0-9]{1,6}0{0,3})?(?:Z| ?[+-](?:[01][0-9]|2[0-3])(?::?[0-5][0-9])?)$";
const MICROS_PER_DAY = 86_400_000_000;

/** Microseconds since the epoch of `timestamp`, or null when it is not a real instant. */
function instantMicros(): Expr {
  const ts = pl.col("timestamp");
  const int = (e: Expr) => e.cast(pl.Int64);
  // strptime is null for an impossible calendar date (2024-02-30); the regex fixed the layout.
  const days = int(ts.str.slice(0, 10).str.strptime(pl.Date, "%Y-%m-%d").cast(pl.Int32));
  const zone = ts.str.extract("(Z|[+-][0-9]{2}(?::?[0-9]{2})?)$", 1).str.replace(":", "");
  const offsetMinutes = pl
    .when(zone.eq(pl.lit("Z")))
    .then(pl.lit(0))
    .otherwise(
      int(zone.str.slice(1, 2))
        .mul(60)
        .plus(int(zone.str.slice(3, 2)).fillNull(0))
        .mul(pl.when(zone.str.startsWith("-")).then(pl.lit(-1)).otherwise(pl.lit(1))),
    );
  const fractionMicros = int(ts.str.extract("^.{19}\\.([0-9]+)", 1).str.padEnd(9, "0").str.slice(0, 6)).fillNull(0);
  const minutes = int(ts.str.slice(11, 2)).mul(60).plus(int(ts.str.slice(14, 2))).minus(offsetMinutes);
  const micros = days
    .mul(MICROS_PER_DAY)
    .plus(minutes.mul(60).plus(int(ts.str.slice(17, 2))).mul(1_000_000))
    .plus(fractionMicros);
  return pl.when(ts.str.contains(ISO_INSTANT)).then(int(micros)).otherwise(pl.lit(null));
}

/** Every field's check from examples/clickstream.ts (ClickEvent), as one boolean expression. */
function validity(boolProbe: boolean): Expr {
  // A JSON string: read as Categorical (which takes strings, numbers and booleans, not objects
  // or arrays), but not readable as a number nor (when probed) as a boolean.
  const isString = (f: string) => {
    let e = pl.col(f).isNotNull().and(pl.col(`${f}__num`).isNull());
    if (boolProbe) e = e.and(pl.col(`${f}__bool`).isNull());
    return e;
  };
  const checks: Expr[] = TEXT.map((f) => (NON_EMPTY.has(f) ? isString(f).and(pl.col(f).neq(pl.lit(""))) : isString(f)));
  // A non-string value can never render as one of these, so the String read suffices.
  checks.push(
    pl.col("micros").isNotNull(),
    pl.col("event_type").isIn([...EVENT_TYPES]),
    pl.col("country").str.contains("^[A-Z]{2}$"),
  );
  // Float64 reads only JSON numbers (booleans and strings are null).
  const d = pl.col("duration_ms");
  checks.push(d.isNotNull().and(d.floor().eq(d)).and(d.gtEq(0)));
  // nullish(number): a number, null or missing; `price__text` is null only for null or missing.
  checks.push(pl.col("price").isNotNull().or(pl.col("price__text").isNull()));
  // An array (List(Categorical) is null for anything else) whose elements are all strings:
  // objects, arrays and nulls are null elements there; numbers are not null in List(Float64),
  // booleans (and numbers) not in List(Bool), where strings are null.
  const nulls = (f: string) => pl.col(f).lst.eval(pl.element().nullCount()).lst.first();
  const allNull = (f: string) => nulls(f).eq(pl.col("tags").lst.lengths());
  let tags = pl.col("tags").isNotNull().and(nulls("tags").eq(0)).and(allNull("tags__num"));
  if (boolProbe) tags = tags.and(allNull("tags__bool"));
  checks.push(tags);
  return checks.reduce((a, b) => a.and(b)).fillNull(false);
}

/**
 * Polars checking every field as the valibot schema does, writing rejects with their line.
 *
 * 1. The input is read as one text column of lines (`scanCSV` with a separator and no quote).
 * 2. Each line is parsed leniently with `jsonPathMatch("$")`, which gives back the object as
 *    canonical JSON (duplicate keys resolved to the last, as `JSON.parse` does) or null; lines
 *    that are not a JSON object become `{}`, so their row fails every required field. This
 *    column is written to a temporary NDJSON file, one line per input line.
 * 3. That file is read by `scanJson` with `ignoreErrors` under two schemas (three when some text
 *    value reads as "true" or "false"): the values, then probes that show which values were JSON
 *    numbers, null, or booleans. Row i of every read is input line i.
 *
 * Limits: the whole input is held in memory (several columns of it); a line holding a raw 0x1F
 * byte (never valid JSON) makes the line read fail loudly instead of rejecting that line.
 */
export async function polarsChecked(input: string, out: string, rejects: string): Promise<number> {
  const canonical = join(dirname(rejects), ".polars-canonical.ndjson");
  try {
    const lines = pl
      .scanCSV(input, {
        hasHeader: false,
        sep: "\x1f",
        quoteChar: undefined,
        schema: { line: pl.String },
        rowIndexName: "line_no",
        rowIndexOffset: 1,
      } as Parameters<typeof pl.scanCSV>[1])
      .collectSync();
    const json = pl.col("line").str.jsonPathMatch("$");
    lines
      .lazy()
      .select(pl.when(json.str.startsWith("{")).then(json).otherwise(pl.lit("{}")).alias("json"))
      .sinkCSV(canonical, { includeHeader: false, quoteStyle: "never", maintainOrder: true })
      .collectSync();

    const values = pl
      .scanJson(canonical, {
        schema: {
          ...Object.fromEntries(TEXT.map((f) => [f, pl.Categorical])),
          timestamp: pl.String,
          event_type: pl.String,
          country: pl.String,
          duration_ms: pl.Float64,
          price: pl.Float64,
          tags: pl.List(pl.Categorical),
        },
        ignoreErrors: true,
      })
      .withColumns(...TEXT.map((f) => pl.col(f).cast(pl.String)), pl.col("tags").cast(pl.List(pl.String)))
      .collectSync();
    const numbers = pl
      .scanJson(canonical, {
        schema: { ...Object.fromEntries(TEXT.map((f) => [f, pl.Float64])), price: pl.String, tags: pl.List(pl.Float64) },
        ignoreErrors: true,
      })
      .select(
        ...TEXT.map((f) => pl.col(f).alias(`${f}__num`)),
        pl.col("price").alias("price__text"),
        pl.col("tags").alias("tags__num"),
      )
      .collectSync();
    let frame: DataFrame = pl.concat([lines, values, numbers], { how: "horizontal" });
    // A boolean reads as "true"/"false" in a text column or tag; only then is a third read needed.
    const maybeBool = (e: Expr) => e.isIn(["true", "false"]);
    const boolProbe = frame
      .select(
        TEXT.map((f) => maybeBool(pl.col(f)))
          .reduce((a, b) => a.or(b))
          .or(pl.col("tags").lst.eval(maybeBool(pl.element()).any()).lst.first())
          .any()
          .alias("x"),
      )
      .getColumn("x")
      .toArray()[0] as boolean | null;
    if (boolProbe) {
      const booleans = pl
        .scanJson(canonical, {
          schema: { ...Object.fromEntries(TEXT.map((f) => [f, pl.Bool])), tags: pl.List(pl.Bool) },
          ignoreErrors: true,
        })
        .select(...TEXT.map((f) => pl.col(f).alias(`${f}__bool`)), pl.col("tags").alias("tags__bool"))
        .collectSync();
      frame = pl.concat([frame, booleans], { how: "horizontal" });
    }
    frame = frame.withColumns(instantMicros().alias("micros")).withColumns(validity(boolProbe === true).alias("valid"));

    const valid = frame
      .filter(pl.col("valid"))
      .withColumns(
        pl.col("duration_ms").cast(pl.Int64),
        pl.col("micros").cast(pl.Datetime("us", "UTC")).alias("event_ts"),
      )
      .withColumns(pl.col("event_ts").cast(pl.Date).alias("event_date"), ...enrichments())
      .select(...OUTPUT);
    await writePartitioned(valid, out);
    frame.filter(pl.col("valid").not()).select("line_no", "line").writeJSON(rejects, { format: "lines" });
    return valid.height;
  } finally {
    await rm(canonical, { force: true });
  }
}
