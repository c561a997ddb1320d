import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { SQL } from "bun";
import { lastValueFrom, take, toArray } from "rxjs";
import * as v from "valibot";
import { deadLetter, validate } from "../../operators/index.ts";
import type { DeadLetter } from "../../src/deadletter/entry.ts";
import { holdGate } from "../../src/flow/flow.ts";
import { run } from "../../src/run/run.ts";
import { isoInstant } from "../../src/schema/instant.ts";
import { toParquet } from "../../src/sinks/toParquet.ts";
import { fromPostgres, type PostgresOptions } from "../../src/sources/postgres.ts";
import { dataset, query, tempDir } from "../helpers/duckdb.ts";

const URL = "postgres://postgres@127.0.0.1:5432/test";
const TABLE = `sluice_pg_test_${process.pid}`;
const ROWS = 3000;
// Rows the table holds beyond the generated ones: extremes that must survive, and values with no faithful form.
const EXTREME_IDS = [100001, 100002, 100003];
const BAD_IDS = [200001, 200002, 200003, 200004];

let sql: SQL;
let dir: { path: string; remove: () => Promise<void> };

beforeAll(async () => {
  sql = new SQL({ url: URL, max: 2 });
  dir = await tempDir("sluice-pg-");
  await sql.unsafe(`DROP TABLE IF EXISTS ${TABLE}`);
  await sql.unsafe(`CREATE TABLE ${TABLE} (
    id int4 PRIMARY KEY, small int2, big int8, amount numeric, ratio float8, real4 float4, flag bool,
    label text, code varchar(20) NOT NULL, at timestamptz, local timestamp NOT NULL, day date,
    doc jsonb, tags text[], nums int8[] NOT NULL)`);
  await sql.unsafe(`INSERT INTO ${TABLE}
    SELECT i,
      CASE WHEN i % 7 = 0 THEN NULL ELSE (i * 37 % 65535 - 32767)::int2 END,
      CASE WHEN i % 11 = 0 THEN NULL WHEN i % 2 = 0 THEN -(9007199254740993 + i::int8 * 1000003) ELSE 9007199254740993 + i::int8 * 1000003 END,
      CASE WHEN i % 13 = 0 THEN NULL ELSE (i * 12345.678901)::numeric / 7 END,
      CASE WHEN i % 17 = 0 THEN NULL ELSE i / 7.0::float8 END,
      CASE WHEN i % 17 = 1 THEN NULL ELSE (i / 3.0)::float4 END,
      CASE i % 3 WHEN 0 THEN NULL WHEN 1 THEN true ELSE false END,
      CASE WHEN i % 19 = 0 THEN NULL WHEN i % 23 = 0 THEN '' ELSE 'lbl-' || i || ' ünïcode 日本 😀 "q" \\ , {x}' END,
      'c' || (i % 50),
      CASE WHEN i % 29 = 0 THEN NULL ELSE '2024-01-01 00:00:00+00'::timestamptz + i * interval '1 hour 1 minute 1.123457 second' END,
      '1969-12-31 23:00:00'::timestamp + i * interval '17.000001 seconds',
      CASE WHEN i % 37 = 0 THEN NULL ELSE date '2024-01-01' + (i % 400) END,
      CASE WHEN i % 41 = 0 THEN NULL ELSE jsonb_build_object('i', i, 'name', 'n' || i || 'é', 'arr', jsonb_build_array(i, NULL, true)) END,
      CASE WHEN i % 31 = 0 THEN NULL WHEN i % 2 = 0 THEN ARRAY['x', 'y,z', NULL, '"q"', 'NULL', 'a\\b', ''] ELSE '{}'::text[] END,
      ARRAY[i::int8, 9007199254740993 + i, NULL]
    FROM generate_series(1, ${ROWS}) AS i`);
  await sql.unsafe(`INSERT INTO ${TABLE} (id, big, amount, ratio, real4, label, code, at, local, day, nums) VALUES
    (100001, 9223372036854775807, '123456789012345678901234567890.123456789', '1e308', 'Infinity', '', 'x', '1700-01-01 00:00:00+00', '2250-12-31 23:59:59.999999', '0001-01-01', ARRAY[-9223372036854775808]::int8[]),
    (100002, -9223372036854775808, '-0.000000000000000000001', 'Infinity', '-Infinity', 'tab\there', 'x', '2024-06-30 23:59:59.999999+14', '2000-02-29 12:00:00', '9999-12-31', '{}'),
    (100003, 0, '0', '-Infinity', '1.17549435e-38', 'line\nbreak', 'x', '1969-12-31 23:59:59.000001+00', '1970-01-01 00:00:00', '2000-02-29', '{}'),
    (200001, 1, '1', 1, 1, 'bad', 'x', 'infinity', '2024-01-01 00:00:00', '2024-01-01', '{}'),
    (200002, 1, '1', 1, 1, 'bad', 'x', '2024-01-01 00:00:00+00', '2024-01-01 00:00:00', '0044-03-15 BC', '{}'),
    (200003, 1, '1', 1, 1, 'bad', 'x', '2024-01-01 00:00:00+00', '10000-01-01 00:00:00', '2024-01-01', '{}'),
    (200004, 1, '1', 'NaN', 1, 'bad', 'x', '2024-01-01 00:00:00+00', '2024-01-01 00:00:00', '2024-01-01', '{}')`);
});

afterAll(async () => {
  await sql.unsafe(`DROP TABLE IF EXISTS ${TABLE}`);
  await sql.close();
  await dir.remove();
});

const Row = v.object({
  id: v.pipe(v.number(), v.integer()),
  small: v.nullable(v.pipe(v.number(), v.integer())),
  big: v.nullable(v.bigint()),
  amount: v.nullable(v.string()),
  ratio: v.nullable(v.number()),
  real4: v.nullable(v.number()),
  flag: v.nullable(v.boolean()),
  label: v.nullable(v.string()),
  code: v.string(),
  at: v.nullable(isoInstant()),
  local: isoInstant(),
  day: v.nullable(v.pipe(v.string(), v.isoDate())),
  doc: v.unknown(),
  tags: v.nullable(v.array(v.nullable(v.string()))),
  nums: v.array(v.nullable(v.bigint())),
});

/** Collects what a query emits and dead-letters, checking the accounting on the way. */
async function collect(text: string, options: PostgresOptions = {}) {
  const values: Record<string, unknown>[] = [];
  const entries: DeadLetter[] = [];
  const summary = await run(fromPostgres(text, { url: URL, ...options }).pipe(deadLetter((e) => entries.push(e))), {
    handleSignals: false,
    onValue: (value) => values.push(value as Record<string, unknown>),
  });
  expect(summary.in).toBe(values.length + entries.length);
  return { values, entries, summary };
}

/** Connections to the test server that carry an application name. */
async function sessions(name: string): Promise<number> {
  const [{ n }] = await sql`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = ${name}`;
  return n;
}

async function waitFor(check: () => Promise<boolean>, ms = 3000): Promise<boolean> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await check()) return true;
    await Bun.sleep(20);
  }
  return check();
}

describe("fromPostgres", () => {
  test("streams every type through validate, dead letter and Parquet, and DuckDB reads back exactly what Postgres holds", async () => {
    const out = join(dir.path, "all-types");
    const entries: DeadLetter[] = [];
    const summary = await run(
      fromPostgres(`SELECT * FROM ${TABLE} ORDER BY id`, { url: URL, batchSize: 128 }).pipe(
        validate(Row),
        deadLetter((e) => entries.push(e)),
        toParquet(out, { schema: Row, mode: "overwrite", maxFileRows: 1000 }),
      ),
      { handleSignals: false },
    );
    const total = ROWS + EXTREME_IDS.length + BAD_IDS.length;
    expect(summary.in).toBe(total);
    expect(summary.written).toBe(total - BAD_IDS.length);
    expect(summary.dropped).toBe(0);

    // The values with no faithful form are dead letters at parse, naming the column, never coerced;
    // NaN arrives as NaN, which v.number() refuses.
    expect(entries.map((e) => [e.stage, String(JSON.parse(e.raw).id), e.error])).toEqual([
      ["parse", "200001", 'column "at": timestamp "infinity" has no ISO-8601 form (infinity, BC, or a year past 9999)'],
      ["parse", "200002", 'column "day": date "0044-03-15 BC" has no ISO-8601 form (infinity, BC, or a year past 9999)'],
      ["parse", "200003", 'column "local": timestamp "10000-01-01 00:00:00" has no ISO-8601 form (infinity, BC, or a year past 9999)'],
      ["validate", "200004", "1 issue: ratio: Invalid type: Expected number but received NaN"],
    ]);
    expect(entries.map((e) => e.line)).toEqual([ROWS + 4, ROWS + 5, ROWS + 6, ROWS + 7]);
    expect(entries[0].source).toBe(`postgres://127.0.0.1:5432/test: SELECT * FROM ${TABLE} ORDER BY id`);

    // What Postgres holds, printed by Postgres itself (no sluice code involved).
    const expected = await sql.unsafe(`SELECT id, small, big::text AS big, amount::text AS amount, ratio::text AS ratio,
        real4::float8::text AS real4, flag, label, code,
        (extract(epoch FROM at) * 1000000)::int8::text AS at_us, (extract(epoch FROM local) * 1000000)::int8::text AS local_us,
        day::text AS day, doc::text AS doc, to_json(tags)::text AS tags, nums::text[] AS nums
      FROM ${TABLE} WHERE id < 200000 ORDER BY id`);
    const actual = await query(`SELECT id, small, big::VARCHAR AS big, amount, ratio::VARCHAR AS ratio, real4::VARCHAR AS real4,
        flag, label, code, epoch_us("at")::VARCHAR AS at_us, epoch_us("local")::VARCHAR AS local_us, day::VARCHAR AS day,
        doc, tags, nums::VARCHAR[] AS nums, typeof(big) AS big_type, typeof("at") AS at_type, typeof(day) AS day_type
      FROM ${dataset(out)} ORDER BY id`);
    expect(actual).toHaveLength(expected.length);
    // Both sides as JavaScript prints the double; DuckDB spells infinity "inf".
    const float = (text: string | null) =>
      text === null ? null : String(text === "inf" ? Number.POSITIVE_INFINITY : text === "-inf" ? Number.NEGATIVE_INFINITY : Number(text));
    for (let i = 0; i < expected.length; i++) {
      const e = expected[i] as Record<string, string | null>;
      const a = actual[i];
      const read: Record<string, unknown> = { ...a, ratio: float(a.ratio as string), real4: float(a.real4 as string), doc: a.doc === null ? null : JSON.parse(a.doc as string) };
      expect(read).toEqual({
        // Integer schemas are int64 columns, which DuckDB hands back as text.
        id: String(e.id),
        small: e.small === null ? null : String(e.small),
        big: e.big,
        amount: e.amount,
        ratio: float(e.ratio),
        real4: float(e.real4),
        flag: e.flag,
        label: e.label,
        code: e.code,
        at_us: e.at_us,
        local_us: e.local_us,
        day: e.day,
        doc: e.doc === null ? null : JSON.parse(e.doc),
        tags: e.tags === null ? null : JSON.parse(e.tags),
        nums: e.nums,
        big_type: "BIGINT",
        at_type: "TIMESTAMP WITH TIME ZONE",
        day_type: "DATE",
      });
    }
    // Values beyond 2^53 really are in the data (so the comparison above covers them).
    expect(actual.some((r) => r.big === "9223372036854775807")).toBe(true);
    expect(actual.some((r) => r.label === "")).toBe(true);
  });

  test.each([1, 7, 100, 1000, 5000])("reads all rows in order with batchSize %p, numbering them from 1", async (batchSize) => {
    const { values, entries } = await collect("SELECT i, 'r' || i AS s FROM generate_series(1, 100) AS i ORDER BY i", { batchSize });
    expect(entries).toEqual([]);
    expect(values).toEqual(Array.from({ length: 100 }, (_, k) => ({ i: k + 1, s: `r${k + 1}` })));
  });

  test("completes with no records for a query with no rows", async () => {
    const { values, summary } = await collect(`SELECT * FROM ${TABLE} WHERE false`);
    expect(values).toEqual([]);
    expect(summary.in).toBe(0);
  });

  test("sends parameters separately from the query text", async () => {
    const { values } = await collect("SELECT $1::text AS t, $2::int8 AS n, $3::int4 + 1 AS m", { params: ["it's; DROP", "9007199254740993", 41] });
    expect(values).toEqual([{ t: "it's; DROP", n: 9007199254740993n, m: 42 }]);
  });

  test("maps enums, domains, their arrays, nested arrays, explicit bounds and other delimiters", async () => {
    await sql.unsafe("DROP TYPE IF EXISTS sluice_mood CASCADE; DROP DOMAIN IF EXISTS sluice_pos CASCADE").simple();
    await sql.unsafe("CREATE TYPE sluice_mood AS ENUM ('happy', 'sad'); CREATE DOMAIN sluice_pos AS int8 CHECK (VALUE > 0)").simple();
    try {
      const { values } = await collect(`SELECT 'happy'::sluice_mood AS mood, ARRAY['sad', NULL]::sluice_mood[] AS moods,
          9007199254740993::sluice_pos AS pos, ARRAY[5]::sluice_pos[] AS poss, ARRAY[ARRAY[1, 2], ARRAY[3, NULL]] AS grid,
          '[0:1]={7,8}'::int[] AS bounded, ARRAY['(1,2),(3,4)'::box] AS boxes, ARRAY['{"a": "}"}'::jsonb] AS docs,
          ARRAY['\\x00ff'::bytea] AS blobs, ARRAY['2024-03-01 12:00:00.5+02'::timestamptz] AS stamps, ARRAY[1.50]::numeric[] AS decimals,
          '1 day 02:03:04.5'::interval AS span, '12:30'::time AS clock, gen_random_uuid()::text ~ '^[0-9a-f-]{36}$' AS uuid_ok`);
      expect(values).toEqual([
        {
          mood: "happy",
          moods: ["sad", null],
          pos: 9007199254740993n,
          poss: [5n],
          grid: [
            [1, 2],
            [3, null],
          ],
          bounded: [7, 8],
          boxes: ["(3,4),(1,2)"],
          docs: [{ a: "}" }],
          blobs: [new Uint8Array([0, 255])],
          stamps: ["2024-03-01T10:00:00.500000Z"],
          decimals: ["1.50"],
          span: "P1DT2H3M4.5S",
          clock: "12:30:00",
          uuid_ok: true,
        },
      ]);
    } finally {
      await sql.unsafe("DROP TYPE IF EXISTS sluice_mood CASCADE; DROP DOMAIN IF EXISTS sluice_pos CASCADE").simple();
    }
  });

  test("converts int8 to a number only when exact, and keeps it as text on request", async () => {
    const q = "SELECT * FROM (VALUES (1, 9007199254740991::int8), (2, 9007199254740992::int8), (3, -42::int8)) AS t(k, n) ORDER BY k";
    const asNumber = await collect(q, { int8: "number" });
    expect(asNumber.values).toEqual([
      { k: 1, n: 9007199254740991 },
      { k: 3, n: -42 },
    ]);
    expect(asNumber.entries.map((e) => [e.line, e.error])).toEqual([
      [2, 'column "n": int8 9007199254740992 is beyond ±2^53, where a number is no longer exact: use int8: "bigint"'],
    ]);
    expect(JSON.parse(asNumber.entries[0].raw)).toEqual({ k: "2", n: "9007199254740992" });
    const asText = await collect(q, { int8: "string" });
    expect(asText.values.map((r) => r.n)).toEqual(["9007199254740991", "9007199254740992", "-42"]);
  });

  test("converts numeric to a number only when the number prints back as the same decimal", async () => {
    const { values, entries } = await collect(
      "SELECT k, n FROM (VALUES (1, 1.10), (2, 0.1), (3, 0.00000001), (4, 12345678901234567890), (5, 0.1000000000000000055511151231257827), (6, -2.5e20), (7, 'NaN')) AS t(k, n) ORDER BY k",
      { numeric: "number" },
    );
    expect(values.map((r) => [r.k, r.n])).toEqual([
      [1, 1.1],
      [2, 0.1],
      [3, 0.00000001],
      [6, -2.5e20],
      [7, Number.NaN],
    ]);
    expect(entries.map((e) => e.line)).toEqual([4, 5]);
    expect(entries[0].error).toBe('column "n": numeric 12345678901234567890 has no exact float64 form: use numeric: "string"');
  });

  test("gives timestamps as Dates on request, refusing to drop microseconds", async () => {
    const { values, entries } = await collect(
      "SELECT k, t FROM (VALUES (1, '2024-03-01 12:00:00.123+00'::timestamptz), (2, '2024-03-01 12:00:00.123456+00'), (3, NULL)) AS x(k, t) ORDER BY k",
      { timestamps: "date" },
    );
    expect(values).toEqual([
      { k: 1, t: new Date("2024-03-01T12:00:00.123Z") },
      { k: 3, t: null },
    ]);
    expect(entries.map((e) => [e.line, e.error])).toEqual([
      [2, 'column "t": timestamp "2024-03-01 12:00:00.123456+00" has microseconds a Date cannot hold: use timestamps: "string"'],
    ]);
  });

  test("reads timestamptz in UTC whatever the session time zone, including historic offsets with seconds", async () => {
    const { values } = await collect(
      "SELECT set_config('TimeZone', 'Europe/Amsterdam', true) IS NOT NULL AS z, '1900-01-01 12:00:00+00'::timestamptz AS old, '2024-07-01 12:00:00.000001+00'::timestamptz AS now",
    );
    expect(values).toEqual([{ z: true, old: "1900-01-01T12:00:00.000000Z", now: "2024-07-01T12:00:00.000001Z" }]);
  });

  test("rejects a value of the wrong type at validation, naming the field, and writes nothing for it", async () => {
    const entries: DeadLetter[] = [];
    const Wrong = v.object({ id: v.number(), amount: v.number() });
    const summary = await run(
      fromPostgres(`SELECT id, amount FROM ${TABLE} WHERE id <= 20 ORDER BY id`, { url: URL }).pipe(validate(Wrong), deadLetter((e) => entries.push(e))),
      { handleSignals: false },
    );
    // numeric arrives as exact text, so a number schema rejects it rather than seeing a rounded float.
    expect(summary.deadLettered).toBe(20);
    const withAmount = entries.filter((e) => JSON.parse(e.raw).amount !== null);
    for (const entry of withAmount) expect(entry.issues?.[0]).toMatchObject({ path: "amount", expected: "number" });
    expect(entries.map((e) => e.line)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
  });

  test("fetches no further batch while the sink holds the gate", async () => {
    let release = () => {};
    let seen = 0;
    const done = run(fromPostgres("SELECT i FROM generate_series(1, 2000) AS i", { url: URL, batchSize: 100 }), {
      handleSignals: false,
      onStart: (flow) => {
        release = holdGate(flow);
      },
      onValue: () => seen++,
    });
    await Bun.sleep(300);
    expect(seen).toBe(0);
    release();
    expect((await done).in).toBe(2000);
  });

  test("closes the cursor and its own connection when unsubscribed early", async () => {
    const name = `sluice_unsub_${process.pid}`;
    let flow: Parameters<typeof holdGate>[0] | undefined;
    let release = () => {};
    let seen = 0;
    const done = run(
      fromPostgres("SELECT i FROM generate_series(1, 1000000) AS i", { url: `${URL}?application_name=${name}`, batchSize: 100 }).pipe(take(250)),
      {
        handleSignals: false,
        onStart: (f) => {
          flow = f;
        },
        onValue: () => {
          // Pause mid-stream so the open connection can be seen from outside.
          if (++seen === 150 && flow) release = holdGate(flow);
        },
      },
    );
    expect(await waitFor(async () => seen >= 150)).toBe(true);
    expect(await sessions(name)).toBe(1);
    release();
    expect((await done).emitted).toBe(250);
    expect(await waitFor(async () => (await sessions(name)) === 0)).toBe(true);
  });

  test("gives an app's own client back with no cursor or transaction left open", async () => {
    const shared = new SQL({ url: URL, max: 1 });
    try {
      const rows = await lastValueFrom(fromPostgres("SELECT i FROM generate_series(1, 100000) AS i", { sql: shared, batchSize: 50 }).pipe(take(120), toArray()));
      expect(rows).toHaveLength(120);
      // The next query on the only connection runs (so the transaction ended) and finds no cursor,
      // and the server sees that connection idle rather than idle in a transaction.
      const [{ pid, cursors }] = await shared`SELECT pg_backend_pid() AS pid, (SELECT count(*)::int FROM pg_cursors WHERE name = 'sluice_cursor') AS cursors`;
      expect(cursors).toBe(0);
      expect(await waitFor(async () => (await sql`SELECT state FROM pg_stat_activity WHERE pid = ${pid}`)[0]?.state === "idle")).toBe(true);
    } finally {
      await shared.close();
    }
  });

  test("completes with the rows read so far when the run is stopped", async () => {
    const controller = new AbortController();
    let seen = 0;
    const summary = await run(fromPostgres("SELECT i FROM generate_series(1, 1000000) AS i", { url: URL, batchSize: 100 }), {
      handleSignals: false,
      signal: controller.signal,
      onValue: () => {
        if (++seen === 300) controller.abort();
      },
    });
    expect(summary.stopped).toBe(true);
    expect(summary.in).toBeGreaterThanOrEqual(300);
    expect(summary.in).toBeLessThanOrEqual(400);
  });

  test("errors naming the query and the server when the query is wrong", async () => {
    const failing = collect("SELECT * FROM sluice_no_such_table WHERE x > 1");
    await expect(failing).rejects.toThrow(
      'fromPostgres: the query failed (relation "sluice_no_such_table" does not exist; 42P01), postgres://127.0.0.1:5432/test, query "SELECT * FROM sluice_no_such_table WHERE x > 1": check the query and its parameters',
    );
  });

  test("errors when two columns share a name, since one would silently hide the other", async () => {
    await expect(collect("SELECT 1 AS a, 2 AS a")).rejects.toThrow('the query returns two columns named "a"');
  });

  test.each([
    ["nothing listens on the port", "postgres://postgres:hunter2@127.0.0.1:1/test", "postgres://127.0.0.1:1/test", /Failed to connect/],
    ["the role does not exist", "postgres://sluice_nobody:hunter2@127.0.0.1:5432/test", "postgres://127.0.0.1:5432/test", /sluice_nobody/],
    ["the database does not exist", "postgres://postgres:hunter2@127.0.0.1:5432/sluice_nodb", "postgres://127.0.0.1:5432/sluice_nodb", /sluice_nodb/],
    ["the password is percent-encoded", "postgres://sluice_nobody:hun%74er2@127.0.0.1:5432/test", "postgres://127.0.0.1:5432/test", /sluice_nobody/],
    ["the password is in the query string", "postgres://sluice_nobody@127.0.0.1:5432/test?password=hunter2", "postgres://127.0.0.1:5432/test", /sluice_nobody/],
  ])("errors naming the server, never the password, when %s", async (_case, url, target, reason) => {
    let message = "";
    try {
      await collect("SELECT 1", { url });
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toStartWith("fromPostgres: cannot connect to the server (");
    expect(message).toContain(target);
    expect(message).toMatch(reason);
    expect(message).not.toContain("hunter2");
    expect(message).toContain("check that the server is running");
  });

  test("a password that is not valid percent-encoding fails the stream saying what to fix, without the password", async () => {
    // Bun's client refuses the URL with a bare "URI error"; the old code also had no password to hide then.
    await expect(collect("SELECT 1", { url: "postgres://postgres:ab%zzcd@127.0.0.1:5432/test" })).rejects.toThrow(
      'fromPostgres: cannot use the connection settings (URI error): a "%" that does not start a percent-encoded byte (%3A, %40, ...) must be written %25',
    );
  });

  test("a driver error quoting the password of the app's own client does not carry it", async () => {
    // Bun's client never quoted a password in any failure tried (refused, unknown role or
    // database, TLS, bad URL): a stand-in client whose error does stands for a driver that would.
    // The password is only in the client's resolved options, as with PGPASSWORD or DATABASE_URL.
    const quoting = {
      options: { hostname: "db.example", port: 5432, database: "shop", password: "app-pw/42" },
      begin: () => Promise.reject(new Error("could not connect with password app-pw/42 (app-pw%2F42)")),
    } as unknown as SQL;
    let message = "";
    try {
      await collect("SELECT 1", { sql: quoting });
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toBe(
      'fromPostgres: cannot connect to the server (could not connect with password *** (***)), postgres://db.example:5432/shop, query "SELECT 1": check that the server is running and the URL, user and password',
    );
  });

  // Two moments a connection can drop: while the source waits on the sink between fetches, and
  // while a fetch is in flight. Each test makes its moment certain instead of racing for it.
  test("errors naming the last row emitted when the connection drops while the source waits on the sink", async () => {
    const name = `sluice_kill_wait_${process.pid}`;
    let flow: Parameters<typeof holdGate>[0] | undefined;
    let release = () => {};
    let seen = 0;
    const done = run(
      fromPostgres("SELECT i FROM generate_series(1, 100000) AS i", { url: `${URL}?application_name=${name}`, batchSize: 100 }),
      {
        handleSignals: false,
        onValue: () => {
          // The gate closes on the first batch's last row, so the source is waiting on it, not fetching.
          if (++seen === 100 && flow) release = holdGate(flow);
        },
        onStart: (f) => {
          flow = f;
        },
      },
    );
    // Caught from the start: the run may fail while the kill's own query is still answering.
    const failed = done.then(() => undefined, (error: Error) => error);
    try {
      expect(await waitFor(async () => seen === 100 && (await sessions(name)) === 1)).toBe(true);
      await sql`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = ${name}`;
      // The gate stays held until the run has failed: the drop is seen while the source waits.
      expect((await failed)?.message).toMatch(
        /^fromPostgres: reading rows after row 100 failed \(.+\), postgres:\/\/127\.0\.0\.1:5432\/test, query "SELECT i FROM generate_series/,
      );
      expect(seen).toBe(100);
    } finally {
      release();
    }
  });

  test("errors naming the last row emitted when the connection drops during a fetch", async () => {
    const name = `sluice_kill_fetch_${process.pid}`;
    let seen = 0;
    // Rows past the first batch take 50 ms each to produce, so the second FETCH runs for seconds.
    const done = run(
      fromPostgres("SELECT i, CASE WHEN i > 100 THEN pg_sleep(0.05)::text END AS pause FROM generate_series(1, 1000) AS i", {
        url: `${URL}?application_name=${name}`,
        batchSize: 100,
      }),
      { handleSignals: false, onValue: () => void seen++ },
    );
    const failed = done.then(() => undefined, (error: Error) => error);
    const fetching = async () =>
      (await sql`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = ${name} AND state = 'active' AND query LIKE 'FETCH%'`)[0].n === 1;
    expect(await waitFor(async () => seen === 100 && (await fetching()))).toBe(true);
    await sql`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = ${name}`;
    expect((await failed)?.message).toMatch(/^fromPostgres: reading rows after row 100 failed \(.+\), postgres:\/\/127\.0\.0\.1:5432\/test, query "SELECT i, CASE/);
    expect(seen).toBe(100);
  });
});
