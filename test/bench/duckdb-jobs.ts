/**
 * The clickstream job written for DuckDB, three ways: as DuckDB reads JSON by default; with the
 * type checks the valibot schema makes plus the rejects written out with their line, which is the
 * fair peer (`duckdb-checked`); and as a DuckDB user would write the checked job (`duckdb-strict`:
 * `read_ndjson` with every column declared JSON, the checks written with `json_type()`, rejects
 * into a table), which is the speed to beat, not the correctness to copy (docs/benchmarks.md).
 */
import { DuckDBInstance } from "@duckdb/node-api";

const sq = (s: string) => `'${s.replaceAll("'", "''")}'`;

/** sluice's `compression` names and DuckDB's for the same codec. */
export const DUCKDB_CODEC: Record<string, string> = { zstd: "zstd", snappy: "snappy", lz4: "lz4_raw", none: "uncompressed" };
const codec = (compression: string) => {
  const name = DUCKDB_CODEC[compression];
  if (!name) throw new Error(`compression ${compression} is not one of ${Object.keys(DUCKDB_CODEC).join(", ")}`);
  return name;
};

const EVENT_TYPES = "('page_view','click','scroll','search','add_to_cart','remove_from_cart','checkout','purchase')";

const DERIVED = `
  ts AS event_ts,
  (ts AT TIME ZONE 'UTC')::DATE AS event_date,
  CASE
    WHEN regexp_matches(user_agent, '(?i)bot|crawler|spider|slurp') THEN 'bot'
    WHEN regexp_matches(user_agent, '(?i)okhttp|ShopApp|Dalvik|CFNetwork') THEN 'app'
    WHEN regexp_matches(user_agent, '(?i)iPad|Tablet') THEN 'tablet'
    WHEN regexp_matches(user_agent, '(?i)Mobi|iPhone|Android') THEN 'mobile'
    ELSE 'desktop' END AS device_type,
  CASE
    WHEN event_type IN ('page_view','scroll') THEN 'view'
    WHEN event_type IN ('click','search') THEN 'interaction'
    WHEN event_type IN ('add_to_cart','remove_from_cart') THEN 'cart'
    ELSE 'conversion' END AS event_category`;

/** DuckDB's default typed read: coerces wrong types, skips what it cannot read. */
export async function duckdbDefault(input: string, out: string): Promise<number> {
  const c = await (await DuckDBInstance.create(":memory:")).connect();
  await c.run("SET TimeZone = 'UTC'");
  const reader = await c.runAndReadAll(`
    COPY (
      SELECT *, ${DERIVED} FROM (
        SELECT *, try_cast(timestamp AS TIMESTAMPTZ) AS ts FROM read_json(${sq(input)}, format = 'newline_delimited', ignore_errors = true)
      )
    ) TO ${sq(out)} (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (event_date), OVERWRITE_OR_IGNORE)`);
  return Number(reader.getRows()[0]?.[0] ?? 0);
}

/** DuckDB checking every field's JSON type as the schema does, writing rejects with their line. */
export async function duckdbChecked(input: string, out: string, rejects: string): Promise<number> {
  const c = await (await DuckDBInstance.create(":memory:")).connect();
  await c.run("SET TimeZone = 'UTC'");
  // One JSON parse a line: every field is extracted at once, then each one's JSON type checked.
  await c.run(`
    CREATE TEMP TABLE checked AS
    WITH lines AS (
      SELECT row_number() OVER () AS line_no, line
      FROM read_csv(${sq(input)}, columns = {'line': 'VARCHAR'}, header = false, delim = E'\\x1F',
                    quote = '', escape = '', auto_detect = false, strict_mode = false, max_line_size = 100000000, comment = '')
    ), parsed AS (
      SELECT line_no, line, CASE WHEN json_valid(line) AND json_type(line) = 'OBJECT' THEN json_extract(line,
        ['$.event_id', '$.user_id', '$.session_id', '$.timestamp', '$.event_type', '$.page_url',
         '$.user_agent', '$.duration_ms', '$.price', '$.country', '$.tags']) END AS f
      FROM lines
    )
    SELECT line_no, line, f, coalesce(
      f IS NOT NULL
      AND json_type(f[1]) = 'VARCHAR' AND length(f[1]->>'$') > 0
      AND json_type(f[2]) = 'VARCHAR' AND length(f[2]->>'$') > 0
      AND json_type(f[3]) = 'VARCHAR' AND length(f[3]->>'$') > 0
      AND json_type(f[4]) = 'VARCHAR' AND try_cast(f[4]->>'$' AS TIMESTAMPTZ) IS NOT NULL
      AND json_type(f[5]) = 'VARCHAR' AND (f[5]->>'$') IN ${EVENT_TYPES}
      AND json_type(f[6]) = 'VARCHAR'
      AND json_type(f[7]) = 'VARCHAR'
      AND json_type(f[8]) IN ('UBIGINT', 'BIGINT') AND try_cast(f[8]->>'$' AS BIGINT) >= 0
      AND coalesce(json_type(f[9]), 'NULL') IN ('NULL', 'DOUBLE', 'UBIGINT', 'BIGINT')
      AND json_type(f[10]) = 'VARCHAR' AND regexp_full_match(f[10]->>'$', '[A-Z]{2}')
      AND json_type(f[11]) = 'ARRAY'
      AND list_bool_and(list_transform(json_extract(f[11], '$[*]'), x -> json_type(x) = 'VARCHAR')) IS NOT FALSE,
      false) AS valid
    FROM parsed`);
  await c.run(`
    COPY (
      SELECT event_id, user_id, session_id, timestamp, event_type, page_url, user_agent, duration_ms, price, country, tags,
        ${DERIVED}
      FROM (
        SELECT f[1]->>'$' AS event_id, f[2]->>'$' AS user_id, f[3]->>'$' AS session_id,
          f[4]->>'$' AS timestamp, (f[4]->>'$')::TIMESTAMPTZ AS ts, f[5]->>'$' AS event_type,
          f[6]->>'$' AS page_url, f[7]->>'$' AS user_agent, (f[8]->>'$')::BIGINT AS duration_ms,
          (f[9]->>'$')::DOUBLE AS price, f[10]->>'$' AS country, f[11]::VARCHAR[] AS tags
        FROM checked WHERE valid
      )
    ) TO ${sq(out)} (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (event_date), OVERWRITE_OR_IGNORE)`);
  await c.run(`COPY (SELECT line_no, line FROM checked WHERE NOT valid) TO ${sq(rejects)} (FORMAT json)`);
  const reader = await c.runAndReadAll("SELECT count(*) FILTER (WHERE valid), count(*) FROM checked");
  return Number(reader.getRows()[0]?.[0] ?? 0);
}

const FIELDS = ["event_id", "user_id", "session_id", "timestamp", "event_type", "page_url", "user_agent", "duration_ms", "price", "country", "tags"];

/**
 * The checks of the valibot schema over columns that hold each field as JSON (SQL NULL when the
 * field is missing), as `json_type()` sees them.
 */
export const STRICT_CHECKS = `coalesce(
      json_type(event_id) = 'VARCHAR' AND length(event_id->>'$') > 0
      AND json_type(user_id) = 'VARCHAR' AND length(user_id->>'$') > 0
      AND json_type(session_id) = 'VARCHAR' AND length(session_id->>'$') > 0
      AND json_type(timestamp) = 'VARCHAR' AND try_cast(timestamp->>'$' AS TIMESTAMPTZ) IS NOT NULL
      AND json_type(event_type) = 'VARCHAR' AND (event_type->>'$') IN ${EVENT_TYPES}
      AND json_type(page_url) = 'VARCHAR'
      AND json_type(user_agent) = 'VARCHAR'
      AND json_type(duration_ms) IN ('UBIGINT', 'BIGINT') AND try_cast(duration_ms->>'$' AS BIGINT) >= 0
      AND coalesce(json_type(price), 'NULL') IN ('NULL', 'DOUBLE', 'UBIGINT', 'BIGINT')
      AND json_type(country) = 'VARCHAR' AND regexp_full_match(country->>'$', '[A-Z]{2}')
      AND json_type(tags) = 'ARRAY'
      AND list_bool_and(list_transform(json_extract(tags, '$[*]'), x -> json_type(x) = 'VARCHAR')) IS NOT FALSE,
      false)`;

/** The stored columns from the JSON-typed ones of rows that passed {@link STRICT_CHECKS}. */
export const STRICT_OUTPUT = `
      SELECT event_id, user_id, session_id, timestamp, event_type, page_url, user_agent, duration_ms, price, country, tags,
        ${DERIVED}
      FROM (
        SELECT event_id->>'$' AS event_id, user_id->>'$' AS user_id, session_id->>'$' AS session_id,
          timestamp->>'$' AS timestamp, (timestamp->>'$')::TIMESTAMPTZ AS ts, event_type->>'$' AS event_type,
          page_url->>'$' AS page_url, user_agent->>'$' AS user_agent, (duration_ms->>'$')::BIGINT AS duration_ms,
          (price->>'$')::DOUBLE AS price, country->>'$' AS country, tags::VARCHAR[] AS tags
        FROM checked WHERE valid
      )`;

/** `read_json` arguments declaring every field of an event as JSON. */
export const JSON_COLUMNS = `columns = {${FIELDS.map((f) => `${f}: 'JSON'`).join(", ")}}`;

/**
 * The job as a DuckDB user writes it: `read_ndjson` (or `read_json` of one document holding an
 * array, with `format` "array") with every column declared JSON and
 * `ignore_errors`, the schema's checks with `json_type()`, rejects into a table, the rest to
 * hive-partitioned Parquet. Returns rows written and rows in the rejects table; lines DuckDB
 * could not read are in neither (docs/benchmarks.md says which).
 */
export async function duckdbStrict(
  input: string,
  out: string,
  compression = "zstd",
  format: "newline_delimited" | "array" = "newline_delimited",
): Promise<{ rows: number; rejected: number }> {
  const c = await (await DuckDBInstance.create(":memory:")).connect();
  await c.run("SET TimeZone = 'UTC'");
  await c.run(`
    CREATE TEMP TABLE checked AS
    SELECT *, ${STRICT_CHECKS} AS valid
    FROM read_json(${sq(input)}, format = '${format}', ${JSON_COLUMNS}, ignore_errors = true, maximum_object_size = 100000000)`);
  await c.run("CREATE TEMP TABLE rejects AS SELECT * EXCLUDE (valid) FROM checked WHERE NOT valid");
  await c.run(`COPY (${STRICT_OUTPUT}) TO ${sq(out)} (FORMAT parquet, COMPRESSION ${codec(compression)}, PARTITION_BY (event_date), OVERWRITE_OR_IGNORE)`);
  const reader = await c.runAndReadAll("SELECT (SELECT count(*) FROM checked WHERE valid), (SELECT count(*) FROM rejects)");
  const [rows, rejected] = reader.getRows()[0] ?? [];
  return { rows: Number(rows), rejected: Number(rejected) };
}
