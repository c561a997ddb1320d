/**
 * toSql against the real PostgreSQL and MariaDB on this machine and a SQLite file: what the
 * database returns is compared with what went in.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { join } from "node:path";
import { SQL } from "bun";
import { map, mergeMap, Observable, of, tap } from "rxjs";
import * as v from "valibot";
import { deadLetter } from "../../operators/index.ts";
import type { DeadLetter } from "../../src/deadletter/entry.ts";
import { watchDurable } from "../../src/flow/durable.ts";
import { currentFlow, type Flow, waitForGate } from "../../src/flow/flow.ts";
import { Input, stamp } from "../../src/flow/position.ts";
import { run } from "../../src/run/run.ts";
import { isoInstant } from "../../src/schema/instant.ts";
import { type SqlCommit, SqlWriteError, toClickHouse, toSql } from "../../src/sinks/toSql.ts";
import { fromNdjson } from "../../src/sources/ndjson.ts";
import { fromPush } from "../../src/sources/push.ts";
import { fromStdin } from "../../src/sources/stdin.ts";
import { readDeadLetters } from "../../src/deadletter/read.ts";
import { tempDir } from "../helpers/duckdb.ts";

const PG = "postgres://postgres@127.0.0.1:5432/test";
const MY = "mysql://root@127.0.0.1:3306/test";

let dir: { path: string; remove: () => Promise<void> };
let pg: SQL;
let my: SQL;
let sqliteFile: string;
const created: { db: "pg" | "my" | "sqlite"; table: string }[] = [];
let counter = 0;

/** A table name no other test (or engineer) uses; dropped after the tests. */
function tableName(db: "pg" | "my" | "sqlite", stem = "t"): string {
  const table = `sluice_${stem}_${process.pid}_${++counter}`;
  created.push({ db, table });
  return table;
}

beforeAll(async () => {
  dir = await tempDir("sluice-sql-");
  pg = new SQL({ url: PG, max: 2 });
  my = new SQL({ url: MY, max: 2 });
  sqliteFile = join(dir.path, "test.db");
});

afterAll(async () => {
  for (const { db, table } of created) {
    if (db === "pg") {
      await pg.unsafe(`DROP TABLE IF EXISTS "${table.replaceAll('"', '""')}"`);
      await pg.unsafe(`DELETE FROM _sluice_commits WHERE table_name = $1`, [table]).catch(() => {});
    } else if (db === "my") {
      await my.unsafe(`DROP TABLE IF EXISTS \`${table.replaceAll("`", "``")}\``);
      await my.unsafe("DELETE FROM _sluice_commits WHERE table_name = ?", [table]).catch(() => {});
    }
  }
  await pg.close();
  await my.close();
  await dir.remove();
});

/** Writes records as an NDJSON file (one record per line) and returns its path. */
async function ndjson(name: string, records: readonly unknown[]): Promise<string> {
  const path = join(dir.path, name);
  await Bun.write(path, `${records.map((r) => JSON.stringify(r)).join("\n")}\n`);
  return path;
}

/** Runs `file` → deadLetter(collected) → toSql, returning the summary, commits and dead letters. */
async function load<T>(file: string, sink: ReturnType<typeof toSql<T>>, options: { checkpoint?: string; onStart?: (flow: Flow) => void } = {}) {
  const deadLetters: DeadLetter[] = [];
  const commits: SqlCommit[] = [];
  const summary = await run(
    fromNdjson(file).pipe(
      deadLetter((entry) => deadLetters.push(entry)),
      sink as never,
    ),
    { onValue: (c) => commits.push(c as SqlCommit), ...options },
  );
  return { summary, commits, deadLetters };
}

type Dialect = "pg" | "my" | "sqlite";
const DIALECTS: readonly Dialect[] = ["pg", "my", "sqlite"];
const urlOf = (db: Dialect) => (db === "pg" ? PG : db === "my" ? MY : `sqlite:${sqliteFile}`);

/** Runs a query on the test's own connection to `db` and returns its rows. */
async function select(db: Dialect, text: string): Promise<Record<string, unknown>[]> {
  if (db === "pg") return [...(await pg.unsafe(text))];
  if (db === "my") return [...(await my.unsafe(text))];
  const sqlite = new Database(sqliteFile, { readonly: true, safeIntegers: true });
  try {
    return sqlite.query(text).all() as Record<string, unknown>[];
  } finally {
    sqlite.close();
  }
}

async function exec(db: Dialect, text: string): Promise<void> {
  if (db === "pg") await pg.unsafe(text);
  else if (db === "my") await my.unsafe(text);
  else {
    const sqlite = new Database(sqliteFile, { create: true });
    sqlite.run("PRAGMA busy_timeout = 5000");
    sqlite.run(text);
    sqlite.close();
  }
}

const Row = v.object({
  id: v.pipe(v.number(), v.integer()),
  name: v.string(),
  big: v.nullable(v.bigint()),
  ratio: v.nullable(v.number()),
  flag: v.nullable(v.boolean()),
  at: v.nullable(isoInstant()),
  day: v.nullable(v.pipe(v.string(), v.isoDate())),
  tags: v.nullable(v.array(v.string())),
  doc: v.nullable(v.object({ a: v.number(), b: v.array(v.nullable(v.string())) })),
  extra: v.unknown(),
});

/** Rows with edge cases in every column; `big` travels as a JSON string and is parsed by fromNdjson's bigint handling below. */
function edgeRows(count: number) {
  const names = ["", "plain", "tab\there", "line\nbreak\r\n", "back\\slash \\N", `quote ' and " and \``, "ünïcode 日本 😀", "x".repeat(5000)];
  const ats = ["1970-01-01T00:00:00Z", "1969-12-31T23:59:59.999999Z", "2024-02-29T12:34:56.123456Z", "2024-03-01T10:00:00+02:00", "1999-12-31T23:59:59.5Z"];
  const ratios = [0, -0.5, 0.1, 1e300, -1.7976931348623157e308, 5e-324, 123456.789];
  return Array.from({ length: count }, (_, i) => ({
    id: i + 1,
    name: names[i % names.length] as string,
    big: i % 5 === 0 ? null : String(i % 2 === 0 ? 9_223_372_036_854_775_807n - BigInt(i) : -9_223_372_036_854_775_808n + BigInt(i)),
    ratio: i % 6 === 0 ? null : (ratios[i % ratios.length] as number),
    flag: i % 3 === 0 ? null : i % 3 === 1,
    at: i % 7 === 0 ? null : (ats[i % ats.length] as string),
    day: i % 4 === 0 ? null : ["2024-02-29", "1900-01-01", "2038-01-19"][i % 3],
    tags: i % 9 === 0 ? null : i % 2 ? [] : ["a", "b,c", 'q"', "ü"],
    doc: i % 8 === 0 ? null : { a: i / 4, b: ["x", null] },
    extra: i % 2 ? { deep: { er: [1, { s: "t" }] } } : [i, "two", null],
  }));
}

/** The canonical text each column should read back as. */
function expectedOf(row: ReturnType<typeof edgeRows>[number]) {
  const micros = (text: string) => {
    const d = new Date(text);
    const frac = /\.(\d+)/.exec(text)?.[1] ?? "";
    const us = frac.padEnd(6, "0").slice(3, 6);
    return `${d.toISOString().slice(0, 23)}${us}Z`;
  };
  return {
    id: String(row.id),
    name: row.name,
    big: row.big,
    ratio: row.ratio,
    flag: row.flag,
    at: row.at === null ? null : micros(row.at),
    day: row.day,
    tags: row.tags,
    doc: row.doc,
    extra: row.extra,
  };
}

/** Reads the table back as canonical text per column. */
async function readBack(db: Dialect, table: string): Promise<ReturnType<typeof expectedOf>[]> {
  const t = db === "my" ? `\`${table}\`` : `"${table}"`;
  let rows: Record<string, unknown>[];
  if (db === "pg") {
    rows = await select(db, `SELECT id::text AS id, name, big::text AS big, ratio, flag,
      to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at, day::text AS day, tags::text AS tags, doc::text AS doc, extra::text AS extra
      FROM ${t} AS src ORDER BY src.id`);
  } else if (db === "my") {
    rows = await select(db, `SELECT CAST(id AS CHAR) AS id, name, CAST(big AS CHAR) AS big, ratio, flag,
      DATE_FORMAT(at, '%Y-%m-%dT%H:%i:%s.%fZ') AS at, CAST(day AS CHAR) AS day, CAST(tags AS CHAR) AS tags, CAST(doc AS CHAR) AS doc, CAST(extra AS CHAR) AS extra
      FROM ${t} AS src ORDER BY src.id`);
  } else {
    rows = await select(db, `SELECT CAST(id AS TEXT) AS id, name, CAST(big AS TEXT) AS big, ratio, flag, at, day, tags, doc, extra FROM ${t} AS src ORDER BY src.id`);
  }
  const json = (x: unknown) => (x === null ? null : JSON.parse(String(x)));
  return rows.map((r) => ({
    id: String(r.id),
    name: String(r.name),
    big: r.big === null ? null : String(r.big),
    ratio: r.ratio === null ? null : Number(r.ratio),
    flag: r.flag === null ? null : r.flag === true || r.flag === 1 || r.flag === 1n,
    at: r.at === null ? null : String(r.at),
    day: r.day === null ? null : String(r.day),
    tags: json(r.tags),
    doc: json(r.doc),
    extra: json(r.extra),
  }));
}

/**
 * fromNdjson parses numbers as floats: the bigint column travels as a string and becomes a bigint
 * here, typed as the schema's record so the sink accepts it.
 */
function withBigints(): import("rxjs").OperatorFunction<unknown, v.InferOutput<typeof Row>> {
  return map((r) => {
    const row = r as { big: string | bigint | null };
    if (typeof row.big === "string") row.big = BigInt(row.big);
    return row as v.InferOutput<typeof Row>;
  });
}

describe.each(DIALECTS)("toSql into %s", (db) => {
  test("values of every column type come back from the database as they went in, with lineage", async () => {
    const table = tableName(db, "types");
    const rows = edgeRows(120);
    const file = await ndjson(`types-${db}.ndjson`, rows);
    const commits: SqlCommit[] = [];
    const deadLetters: DeadLetter[] = [];
    const summary = await run(
      fromNdjson(file).pipe(
        withBigints(),
        deadLetter((e) => deadLetters.push(e)),
        toSql(urlOf(db), table, { schema: Row, mode: "insert", create: true, batchRows: 50, lineage: true }),
      ),
      { onValue: (c) => commits.push(c as SqlCommit) },
    );
    expect(deadLetters).toEqual([]);
    expect(summary.written).toBe(120);
    // Insert batches are written two at a time: they may commit in either order.
    commits.sort((a, b) => (a.sources[0]?.firstLine ?? 0) - (b.sources[0]?.firstLine ?? 0));
    expect(commits.map((c) => c.rows)).toEqual([50, 50, 20]);
    expect(commits.flatMap((c) => c.sources)).toEqual([
      { source: file, firstLine: 1, lastLine: 50 },
      { source: file, firstLine: 51, lastLine: 100 },
      { source: file, firstLine: 101, lastLine: 120 },
    ]);
    expect(await readBack(db, table)).toEqual(rows.map(expectedOf));
    const q = db === "my" ? "`" : '"';
    const lineage = await select(db, `SELECT _sluice_run_id AS r, _sluice_input AS i, CAST(_sluice_line AS ${db === "my" ? "CHAR" : "TEXT"}) AS l FROM ${q}${table}${q} AS src ORDER BY src.id`);
    expect(lineage.map((x) => `${x.r}|${x.i}|${x.l}`)).toEqual(rows.map((_, i) => `${summary.runId}|${file}|${i + 1}`));
    const ledger = await select(db, `SELECT source, CAST(first_line AS ${db === "my" ? "CHAR" : "TEXT"}) AS f, CAST(last_line AS ${db === "my" ? "CHAR" : "TEXT"}) AS l, run_id FROM _sluice_commits WHERE table_name = '${table}' ORDER BY first_line`);
    expect(ledger.map((x) => `${x.source}:${x.f}-${x.l}:${x.run_id}`)).toEqual([
      `${file}:1-50:${summary.runId}`,
      `${file}:51-100:${summary.runId}`,
      `${file}:101-120:${summary.runId}`,
    ]);
  });

  test("upserting the same input twice leaves the same table; the last row of a key wins, also inside one batch", async () => {
    const table = tableName(db, "upsert");
    const Item = v.object({ sku: v.string(), region: v.string(), qty: v.pipe(v.number(), v.integer()), note: v.nullable(v.string()) });
    // 300 rows over 100 keys: every key three times, in the same batch and across batches.
    const rows = Array.from({ length: 300 }, (_, i) => ({ sku: `s${i % 50}`, region: i % 100 < 50 ? "eu" : "EU", qty: i, note: i % 7 ? `n${i}` : null }));
    const file = await ndjson(`upsert-${db}.ndjson`, rows);
    const sink = () => toSql(urlOf(db), table, { schema: Item, mode: "upsert", key: ["sku", "region"], create: true, batchRows: 120 });
    const first = await load(file, sink());
    const q = db === "my" ? "`" : '"';
    const read = () => select(db, `SELECT sku, region, CAST(qty AS ${db === "my" ? "CHAR" : "TEXT"}) AS qty, note FROM ${q}${table}${q} ORDER BY sku, region`);
    const once = await read();
    const second = await load(file, sink());
    expect(await read()).toEqual(once);
    expect(first.summary.written).toBe(300);
    expect(second.summary.written).toBe(300);
    // "eu" and "EU" are different keys (MariaDB's default collation would merge them).
    const last = new Map<string, (typeof rows)[number]>();
    for (const r of rows) last.set(`${r.sku}|${r.region}`, r);
    const expected = [...last.values()]
      .map((r) => ({ sku: r.sku, region: r.region, qty: String(r.qty), note: r.note }))
      .sort((a, b) => (a.sku < b.sku ? -1 : a.sku > b.sku ? 1 : a.region < b.region ? -1 : a.region > b.region ? 1 : 0));
    expect(once).toEqual(expected);
  });

  test("an upsert into a table of yours without a unique index on the key fails the run and adds no row", async () => {
    const table = tableName(db, "nokey");
    const q = db === "my" ? "`" : '"';
    await exec(db, `CREATE TABLE ${q}${table}${q} (id ${db === "my" ? "varchar(20)" : "TEXT"}, note TEXT)`);
    const Item = v.object({ id: v.string(), note: v.string() });
    const file = await ndjson(`nokey-${db}.ndjson`, [{ id: "a", note: "1" }]);
    // MariaDB's ON DUPLICATE KEY UPDATE never fires without one: each run appended the rows again.
    for (let i = 0; i < 2; i++) {
      const failed = await load(file, toSql(urlOf(db), table, { schema: Item, mode: "upsert", key: ["id"] })).catch((e: unknown) => e);
      expect(failed).toBeInstanceOf(SqlWriteError);
      // Every database says why and what to do, not only its own words ("no unique or exclusion constraint matching").
      expect((failed as Error).message).toContain(`upsert needs a primary key or unique index on (${q}id${q}), and the table has none`);
      expect((failed as Error).message).toContain("or let create: true make the table");
    }
    expect(await select(db, `SELECT id FROM ${q}${table}${q}`)).toEqual([]);
  });

  test("keys that differ only by trailing spaces are different keys: an upsert of one never replaces the other", async () => {
    const table = tableName(db, "pad");
    const Item = v.object({ id: v.string(), note: v.string() });
    // MariaDB's utf8mb4_bin pads with spaces when comparing: "a" and "a " were one key there.
    const rows = [
      { id: "a", note: "1" },
      { id: "a ", note: "2" },
      { id: "a  ", note: "3" },
      { id: "", note: "4" },
      { id: " ", note: "5" },
    ];
    const file = await ndjson(`pad-${db}.ndjson`, rows);
    const { summary, deadLetters } = await load(file, toSql(urlOf(db), table, { schema: Item, mode: "upsert", key: ["id"], create: true }));
    expect(deadLetters).toEqual([]);
    expect(summary.written).toBe(5);
    const q = db === "my" ? "`" : '"';
    const back = await select(db, `SELECT id, note FROM ${q}${table}${q}`);
    expect(back.map((r) => `${JSON.stringify(r.id)}=${r.note}`).sort()).toEqual(rows.map((r) => `${JSON.stringify(r.id)}=${r.note}`).sort());
  });

  test("rows the database refuses (CHECK, NOT NULL) are dead letters with its message and the rest of the batch lands", async () => {
    const table = tableName(db, "refuse");
    const q = db === "my" ? "`" : '"';
    const type = db === "my" ? "BIGINT" : "INTEGER";
    await exec(db, `CREATE TABLE ${q}${table}${q} (id ${type} PRIMARY KEY, n ${type} CHECK (n >= 0), label TEXT NOT NULL)`);
    const Item = v.object({ id: v.pipe(v.number(), v.integer()), n: v.pipe(v.number(), v.integer()), label: v.nullable(v.string()) });
    const rows = Array.from({ length: 1000 }, (_, i) => ({ id: i + 1, n: i + 1 === 137 || i + 1 === 777 ? -5 : i, label: i + 1 === 500 ? null : `l${i}` }));
    // A duplicate primary key in insert mode is refused too.
    rows.push({ id: 10, n: 1, label: "again" });
    const file = await ndjson(`refuse-${db}.ndjson`, rows);
    const { summary, commits, deadLetters } = await load(file, toSql(urlOf(db), table, { schema: Item, mode: "insert", batchRows: 2000 }));
    expect(summary.written).toBe(997);
    expect(summary.deadLetteredByStage).toEqual({ write: 4 });
    expect(commits.map((c) => [c.rows, c.refused])).toEqual([[997, 4]]);
    expect(deadLetters.map((d) => d.line)).toEqual([137, 500, 777, 1001]);
    for (const d of deadLetters) {
      expect(d.stage).toBe("write");
      expect(d.source).toBe(file);
      expect(d.error).toContain(`table "${table}" refused the row`);
      expect(JSON.parse(d.raw)).toEqual(rows[d.line - 1]);
    }
    expect(deadLetters[0]?.error).toMatch(/check|CONSTRAINT/i);
    expect(deadLetters[1]?.error).toMatch(/null/i);
    expect(deadLetters[3]?.error).toMatch(/duplicate|unique/i);
    const ids = (await select(db, `SELECT CAST(id AS ${db === "my" ? "CHAR" : "TEXT"}) AS id FROM ${q}${table}${q} AS src ORDER BY src.id`)).map((r) => Number(r.id));
    expect(ids).toEqual(rows.slice(0, 1000).map((r) => r.id).filter((id) => id !== 137 && id !== 500 && id !== 777));
    // The ledger claims no refused line.
    const ledger = await select(db, `SELECT CAST(first_line AS ${db === "my" ? "CHAR" : "TEXT"}) AS f, CAST(last_line AS ${db === "my" ? "CHAR" : "TEXT"}) AS l FROM _sluice_commits WHERE table_name = '${table}' ORDER BY first_line`);
    expect(ledger.map((r) => `${r.f}-${r.l}`)).toEqual(["1-136", "138-499", "501-776", "778-1000"]);
  });

  test("rows the database refuses in the last batches reach a dead-letter folder above the sink, which the run commits", async () => {
    // The folder's source side completes before the sink writes its last batch: the refusals of
    // that batch come later and used to fail the run ("dead-letter store ... is closed") after the
    // rest had committed, leaving the refused rows nowhere.
    const table = tableName(db, "late");
    const q = db === "my" ? "`" : '"';
    const type = db === "my" ? "BIGINT" : "INTEGER";
    await exec(db, `CREATE TABLE ${q}${table}${q} (id ${type} PRIMARY KEY, n ${type} CHECK (n >= 0))`);
    const Item = v.object({ id: v.pipe(v.number(), v.integer()), n: v.pipe(v.number(), v.integer()) });
    const rows = Array.from({ length: 25 }, (_, i) => ({ id: i + 1, n: i + 1 === 4 || i + 1 === 24 ? -1 : i }));
    const file = await ndjson(`late-${db}.ndjson`, rows);
    for (const mode of ["append", "overwrite"] as const) {
      const folder = join(dir.path, `late-dead-letter-${db}-${mode}`);
      await exec(db, `DELETE FROM ${q}${table}${q}`);
      const summary = await run(
        fromNdjson(file).pipe(deadLetter(folder, { mode }), toSql(urlOf(db), table, { schema: Item, mode: "insert", batchRows: 10 }) as never),
      );
      expect([mode, summary.written, summary.deadLetteredByStage]).toEqual([mode, 23, { write: 2 }]);
      const letters: DeadLetter[] = [];
      for await (const letter of readDeadLetters(folder)) letters.push(letter);
      // Insert mode writes two batches at once (PostgreSQL, MariaDB): their refusals come in either order.
      letters.sort((a, b) => a.line - b.line);
      expect(letters.map((l) => [l.stage, l.source, l.line, JSON.parse(l.raw)])).toEqual([
        ["write", file, 4, rows[3]],
        ["write", file, 24, rows[23]],
      ]);
      const ids = (await select(db, `SELECT CAST(id AS ${db === "my" ? "CHAR" : "TEXT"}) AS id FROM ${q}${table}${q} AS src ORDER BY src.id`)).map((r) => Number(r.id));
      expect(ids).toEqual(rows.map((r) => r.id).filter((id) => id !== 4 && id !== 24));
    }
  });

  test("a stopped run of pushed records with an asynchronous operator keeps each one in the table or the dead-letter folder", async () => {
    const table = tableName(db, "stopped");
    const q = db === "my" ? "`" : '"';
    const type = db === "my" ? "BIGINT" : "INTEGER";
    await exec(db, `CREATE TABLE ${q}${table}${q} (id ${type} PRIMARY KEY, n ${type} CHECK (n >= 0))`);
    const Item = v.object({ id: v.pipe(v.number(), v.integer()), n: v.pipe(v.number(), v.integer()) });
    const folder = join(dir.path, `stopped-dead-letter-${db}`);
    const source = fromPush<unknown>({ name: "app" });
    const stop = new AbortController();
    const done = run(
      source.pipe(
        mergeMap(async (r) => {
          await Bun.sleep(1);
          return r;
        }, 4),
        deadLetter(folder),
        toSql(urlOf(db), table, { schema: Item, mode: "insert", batchRows: 7 }) as never,
      ),
      { signal: stop.signal },
    );
    // Every fifth row breaks the CHECK; the run is stopped with rows still inside the mergeMap.
    const taken: number[] = [];
    for (let id = 1; id <= 60; id++) if (source.push({ id, n: id % 5 === 0 ? -1 : id })) taken.push(id);
    stop.abort();
    const summary = await done;
    expect(summary.stopped).toBe(true);
    const ids = (await select(db, `SELECT CAST(id AS ${db === "my" ? "CHAR" : "TEXT"}) AS id FROM ${q}${table}${q} AS src ORDER BY src.id`)).map((r) => Number(r.id));
    const letters: DeadLetter[] = [];
    for await (const letter of readDeadLetters(folder)) letters.push(letter);
    expect(ids).toEqual(taken.filter((id) => id % 5 !== 0));
    expect(letters.map((l) => [l.stage, l.source, l.line]).sort((a, b) => (a[2] as number) - (b[2] as number))).toEqual(
      taken.filter((id) => id % 5 === 0).map((id) => ["write", "app", id]),
    );
    expect([summary.in, summary.written, summary.deadLettered]).toEqual([taken.length, ids.length, letters.length]);
  });

  test("a value of the wrong type is a write dead letter before anything is sent; nothing is coerced", async () => {
    const table = tableName(db, "types2");
    const Item = v.object({ id: v.pipe(v.number(), v.integer()), at: isoInstant(), ratio: v.number() });
    const rows: unknown[] = [
      { id: 1, at: "2024-01-01T00:00:00Z", ratio: 1 },
      { id: "2", at: "2024-01-01T00:00:00Z", ratio: 1 },
      { id: 3, at: "2024-02-30T00:00:00Z", ratio: 1 },
      { id: 4.5, at: "2024-01-01T00:00:00Z", ratio: 1 },
      { id: 5, at: "2024-01-01T00:00:00.1234567Z", ratio: 1 },
      { id: 6, ratio: 1 },
      { id: 7, at: "2024-01-01T00:00:00Z", ratio: 2 },
    ];
    const file = await ndjson(`wrong-${db}.ndjson`, rows);
    const { summary, deadLetters } = await load(file, toSql(urlOf(db), table, { schema: Item, mode: "insert", create: true }));
    expect(summary.written).toBe(2);
    expect(deadLetters.map((d) => [d.line, d.stage])).toEqual([[2, "write"], [3, "write"], [4, "write"], [5, "write"], [6, "write"]]);
    expect(deadLetters[0]?.error).toBe('column "id" expects a safe integer or a bigint within 64 bits, got string "2"');
    expect(deadLetters[4]?.error).toBe('column "at" is required but the value is missing');
  });

  test("hostile values (nesting too deep for JSON, integers beyond 64 bits or 2^53, a NUL in text) are dead letters naming the column", async () => {
    const table = tableName(db, "hostile");
    const Item = v.object({ id: v.pipe(v.number(), v.integer()), big: v.nullable(v.bigint()), doc: v.unknown(), text: v.string() });
    // Too deep for JSON.stringify (it overflows the stack at about 50,000 levels, slowly): checked
    // once, the refusal happens before any database is involved.
    let deep: unknown = [1];
    if (db === "sqlite") for (let i = 0; i < 50_000; i++) deep = [deep];
    const records = [
      { id: 1, big: 1n, doc: { ok: true }, text: "fine" },
      { id: 2, big: 2n ** 63n, doc: null, text: "x" },
      { id: 2 ** 53 + 2, big: null, doc: null, text: "x" },
      { id: 4, big: null, doc: deep, text: "x" },
      { id: 5, big: -(2n ** 63n), doc: [1, "two"], text: "also fine" },
      { id: 6, big: null, doc: null, text: "nul \u0000 inside" },
    ];
    const deadLetters: DeadLetter[] = [];
    const summary = await run(
      of(...records).pipe(
        deadLetter((e) => deadLetters.push(e)),
        toSql(urlOf(db), table, { schema: Item, mode: "insert", create: true }),
      ),
    );
    // PostgreSQL's text cannot hold a NUL: its refusal is a dead letter; the others store it as it is.
    const nulRefused = db === "pg";
    const deepRefused = db === "sqlite";
    expect(summary.written).toBe(2 + (nulRefused ? 0 : 1) + (deepRefused ? 0 : 1));
    expect(deadLetters.map((d) => d.line)).toEqual([2, 3, ...(deepRefused ? [4] : []), ...(nulRefused ? [6] : [])]);
    expect(deadLetters.every((d) => d.stage === "write")).toBe(true);
    if (nulRefused) expect(deadLetters.at(-1)?.error).toContain("0x00");
    if (deepRefused) expect(deadLetters[2]?.error).toMatch(/^column "doc" cannot be written as JSON: /);
    expect(deadLetters[0]?.error).toBe('column "big" expects a safe integer or a bigint within 64 bits, got bigint 9223372036854775808n');
    expect(deadLetters[1]?.error).toContain('column "id" expects a safe integer');
    const q = db === "my" ? "`" : '"';
    const back = await select(db, `SELECT CAST(big AS ${db === "my" ? "CHAR" : "TEXT"}) AS big, text FROM ${q}${table}${q} AS src ORDER BY src.id`);
    expect(back).toEqual([
      { big: "1", text: "fine" },
      ...(deepRefused ? [] : [{ big: null, text: "x" }]),
      { big: "-9223372036854775808", text: "also fine" },
      ...(nulRefused ? [] : [{ big: null, text: "nul \u0000 inside" }]),
    ]);
  });

  test("text holding a lone surrogate is a write dead letter naming the column, not stored as U+FFFD", async () => {
    const table = tableName(db, "surrogate");
    const Item = v.object({ id: v.pipe(v.number(), v.integer()), text: v.string() });
    const records = [
      { id: 1, text: "a\uD800b" },
      { id: 2, text: "\uDFFF" },
      { id: 3, text: "pair \uD83C\uDF89 fine" },
    ];
    const deadLetters: DeadLetter[] = [];
    const summary = await run(
      of(...records).pipe(
        deadLetter((e) => deadLetters.push(e)),
        toSql(urlOf(db), table, { schema: Item, mode: "insert", create: true }),
      ),
    );
    expect(summary.written).toBe(1);
    expect(deadLetters.map((d) => `${d.line} ${d.stage} ${d.error}`)).toEqual([
      '1 write column "text" is not well-formed Unicode (it holds a lone surrogate, which has no UTF-8 form): "a\\ud800b"',
      '2 write column "text" is not well-formed Unicode (it holds a lone surrogate, which has no UTF-8 form): "\\udfff"',
    ]);
    const q = db === "my" ? "`" : '"';
    expect(await select(db, `SELECT text FROM ${q}${table}${q}`)).toEqual([{ text: "pair \uD83C\uDF89 fine" }]);
  });

  test("a table and columns named with quotes, spaces and SQL are quoted, never run", async () => {
    const table = tableName(db, `we"ird \`tab'le; DROP TABLE sentinel --`);
    const sentinel = tableName(db, "sentinel");
    const q = db === "my" ? "`" : '"';
    await exec(db, `CREATE TABLE ${q}${sentinel}${q} (x INTEGER)`);
    const Odd = v.object({
      'a "b"': v.string(),
      "c d": v.pipe(v.number(), v.integer()),
      "e`); DROP TABLE sentinel; --": v.nullable(v.string()),
      "ü 日本": v.boolean(),
    });
    const rows = [
      { 'a "b"': "x'); DROP TABLE sentinel; --", "c d": 1, "e`); DROP TABLE sentinel; --": null, "ü 日本": true },
      { 'a "b"': "y", "c d": 2, "e`); DROP TABLE sentinel; --": "$1 ? :x", "ü 日本": false },
    ];
    const file = await ndjson(`odd-${db}.ndjson`, rows);
    const { summary } = await load(file, toSql(urlOf(db), table, { schema: Odd, mode: "upsert", key: ["c d"], create: true }));
    expect(summary.written).toBe(2);
    const esc = (n: string) => (db === "my" ? `\`${n.replaceAll("`", "``")}\`` : `"${n.replaceAll('"', '""')}"`);
    const back = await select(db, `SELECT ${esc('a "b"')} AS a, ${esc("e`); DROP TABLE sentinel; --")} AS e FROM ${esc(table)} ORDER BY ${esc("c d")}`);
    expect(back).toEqual([
      { a: rows[0]?.['a "b"'], e: null },
      { a: "y", e: "$1 ? :x" },
    ]);
    expect(await select(db, `SELECT count(*) AS n FROM ${q}${sentinel}${q}`)).toHaveLength(1);
  });

  test("replace-partition empties each partition once, the first time the run meets it, and leaves the others", async () => {
    const table = tableName(db, "replace");
    const Sale = v.object({ day: v.pipe(v.string(), v.isoDate()), shop: v.string(), amount: v.pipe(v.number(), v.integer()) });
    const sink = () => toSql(urlOf(db), table, { schema: Sale, mode: "replace-partition", partitionBy: ["day"], create: true, batchRows: 40 });
    const old = [
      ...Array.from({ length: 30 }, (_, i) => ({ day: "2024-03-01", shop: `old${i}`, amount: i })),
      ...Array.from({ length: 30 }, (_, i) => ({ day: "2024-03-02", shop: `keep${i}`, amount: i })),
    ];
    await load(await ndjson(`replace-old-${db}.ndjson`, old), sink());
    // The new day-1 rows span three batches: only the first may delete.
    const fresh = Array.from({ length: 100 }, (_, i) => ({ day: "2024-03-01", shop: `new${i}`, amount: 1000 + i }));
    const { summary, commits } = await load(await ndjson(`replace-new-${db}.ndjson`, fresh), sink());
    expect(commits.length).toBe(3);
    expect(summary.written).toBe(100);
    const q = db === "my" ? "`" : '"';
    const byDay = await select(db, `SELECT CAST(day AS CHAR(10)) AS day, count(*) AS n, min(shop) AS first FROM ${q}${table}${q} GROUP BY day ORDER BY day`);
    expect(byDay.map((r) => `${r.day} ${Number(r.n)} ${r.first}`)).toEqual(["2024-03-01 100 new0", "2024-03-02 30 keep0"]);
  });

  test("insert and upsert with partitionBy only index it: a second load empties no partition", async () => {
    const Sale = v.object({ day: v.pipe(v.string(), v.isoDate()), shop: v.string(), amount: v.pipe(v.number(), v.integer()) });
    const q = db === "my" ? "`" : '"';
    for (const mode of ["insert", "upsert"] as const) {
      const table = tableName(db, `indexed_${mode}`);
      const sink = () => toSql(urlOf(db), table, { schema: Sale, mode, key: ["shop"], partitionBy: ["day"], create: true, batchRows: 40 });
      const first = Array.from({ length: 30 }, (_, i) => ({ day: "2024-03-01", shop: `first${i}`, amount: i }));
      const second = Array.from({ length: 50 }, (_, i) => ({ day: "2024-03-01", shop: `second${i}`, amount: i }));
      await load(await ndjson(`indexed-${mode}-1-${db}.ndjson`, first), sink());
      await load(await ndjson(`indexed-${mode}-2-${db}.ndjson`, second), sink());
      const [row] = await select(db, `SELECT count(*) AS n FROM ${q}${table}${q}`);
      expect([mode, Number(row?.n)]).toEqual([mode, 80]);
    }
  });

  test("an unreachable database fails the run with an error naming the target, never the password", async () => {
    const url = db === "pg" ? "postgres://sluice:s3cr%3At@127.0.0.1:1/warehouse" : db === "my" ? "mysql://sluice:s3cr%3At@127.0.0.1:1/warehouse" : join(dir.path, "not-a-folder.txt", "x.db");
    if (db === "sqlite") await Bun.write(join(dir.path, "not-a-folder.txt"), "a file in the way");
    const file = await ndjson(`unreachable-${db}.ndjson`, [{ id: 1 }]);
    const error = await load(file, toSql(url, "orders", { schema: v.object({ id: v.number() }), mode: "insert", create: true })).catch((e: Error) => e);
    expect(error).toBeInstanceOf(SqlWriteError);
    const message = (error as Error).message;
    if (db === "sqlite") expect(message).toContain(`sqlite:${url}`);
    else {
      expect(message).toContain(`${db === "pg" ? "postgres" : "mysql"}://127.0.0.1:1/warehouse table "orders": cannot connect`);
      expect(message).not.toContain("s3cr");
      expect(JSON.stringify(error, Object.getOwnPropertyNames(error))).not.toContain("s3cr");
    }
  });
});

describe("toSql into pg keeps what a double holds", () => {
  test("-0 is stored as -0, not 0 (its sign is part of the value PostgreSQL keeps)", async () => {
    const table = tableName("pg", "negzero");
    const Item = v.object({ id: v.pipe(v.number(), v.integer()), x: v.number() });
    const path = join(dir.path, "negzero.ndjson");
    await Bun.write(path, '{"id":1,"x":-0}\n{"id":2,"x":0}\n{"id":3,"x":-0.0}\n');
    const { summary, deadLetters } = await load(path, toSql(PG, table, { schema: Item, mode: "insert", create: true }));
    expect([summary.written, deadLetters]).toEqual([3, []]);
    const rows = await select("pg", `SELECT id::text AS id, x::text AS x FROM "${table}" ORDER BY id`);
    expect(rows).toEqual([
      { id: "1", x: "-0" },
      { id: "2", x: "0" },
      { id: "3", x: "-0" },
    ]);
  });
});

describe("toSql keeps passwords out of its errors", () => {
  // A login the server refuses, with the password written three ways: Bun's clients quoted none
  // of them in these messages; the test holds the sink to that whatever the driver says.
  test.each([
    ["MariaDB, a wrong password for root", "mysql://root:hunter2%2fpw@127.0.0.1:3306/test", "mysql://127.0.0.1:3306/test", /Access denied for user 'root'/],
    ["PostgreSQL, an unknown role, the password in the query string", "postgres://sluice_nobody@127.0.0.1:5432/test?password=hunter2pw", "postgres://127.0.0.1:5432/test", /sluice_nobody/],
    ["PostgreSQL, an unknown role, the password percent-encoded", "postgres://sluice_nobody:hun%74er2pw@127.0.0.1:5432/test", "postgres://127.0.0.1:5432/test", /sluice_nobody/],
  ])("%s", async (name, url, target, reason) => {
    const file = await ndjson(`login-${name.replace(/\W+/g, "-")}.ndjson`, [{ id: 1 }]);
    const error = await load(file, toSql(url, "orders", { schema: v.object({ id: v.number() }), mode: "insert", create: true })).catch((e: Error) => e);
    expect(error).toBeInstanceOf(SqlWriteError);
    const message = (error as Error).message;
    expect(message).toContain(`${target} table "orders": cannot connect`);
    expect(message).toMatch(reason);
    expect(JSON.stringify(error, Object.getOwnPropertyNames(error))).not.toMatch(/hunter|hun%74er|hunter2%2f/i);
  });

  test("a URL whose password is not valid percent-encoding fails naming the target and what to fix, not the password", async () => {
    const file = await ndjson("login-undecodable.ndjson", [{ id: 1 }]);
    for (const [url, target] of [
      ["postgres://postgres:ab%zzcd@127.0.0.1:5432/test", "postgres://127.0.0.1:5432/test"],
      ["mariadb://root:ab%zzcd@127.0.0.1:3306/test", "mariadb://127.0.0.1:3306/test"],
      ["clickhouse://default:ab%zzcd@127.0.0.1:8123/default", "clickhouse://127.0.0.1:8123/default"],
    ] as const) {
      const error = await load(file, toSql(url, "orders", { schema: v.object({ id: v.number() }), mode: "insert" })).catch((e: Error) => e);
      expect(error).toBeInstanceOf(SqlWriteError);
      expect((error as Error).message).toBe(
        `toSql ${target} table "orders": cannot use the URL (URI error): a "%" that does not start a percent-encoded byte (%3A, %40, ...) must be written %25`,
      );
    }
  });
});

describe("toSql bounds and resumes", () => {
  test("MariaDB: a batch of long texts bigger than max_allowed_packet lands, in statements the server takes", async () => {
    const table = tableName("my", "packet");
    const Doc = v.object({ id: v.string(), body: v.string() });
    const [{ packet }] = (await my.unsafe("SELECT @@max_allowed_packet AS packet")) as { packet: number }[];
    // Four rows each over a third of the packet: one statement of them all closed the connection.
    const size = Math.ceil(Number(packet) / 3);
    const rows = ["a", "b", "c", "d"].map((id) => ({ id, body: id.repeat(size) }));
    const file = await ndjson("packet.ndjson", rows);
    const { summary, deadLetters } = await load(file, toSql(MY, table, { schema: Doc, mode: "upsert", key: ["id"], create: true }));
    expect(deadLetters).toEqual([]);
    expect(summary.written).toBe(4);
    const back = await select("my", `SELECT id, LENGTH(body) AS n, LEFT(body, 1) AS c FROM \`${table}\` ORDER BY id`);
    expect(back.map((r) => `${r.id}:${r.n}:${r.c}`)).toEqual(rows.map((r) => `${r.id}:${size}:${r.id}`));
  });

  test("holds the source while a batch is in flight and the next is full: at most about two batches are buffered", async () => {
    const table = tableName("pg", "bounded");
    const Item = v.object({ id: v.pipe(v.number(), v.integer()), pad: v.string() });
    // Wide rows, so the source's 1 MiB chunks hold about 2,500 of them.
    const file = await ndjson("bounded.ndjson", Array.from({ length: 20_000 }, (_, i) => ({ id: i, pad: "p".repeat(400) })));
    let flow: Flow | undefined;
    let most = 0;
    const deadLetters: DeadLetter[] = [];
    const summary = await run(
      fromNdjson(file).pipe(
        tap(() => {
          most = Math.max(most, flow?.stats.buffered ?? 0);
        }),
        map((r) => r as v.InferOutput<typeof Item>),
        deadLetter((e) => deadLetters.push(e)),
        toSql(PG, table, { schema: Item, mode: "insert", create: true, batchRows: 1000 }),
      ),
      { onStart: (f) => (flow = f) },
    );
    expect(summary.written).toBe(20_000);
    // Two batches plus what a source reads between two looks at the gate (one chunk of lines).
    expect(most).toBeGreaterThanOrEqual(1000);
    expect(most).toBeLessThan(2 * 1000 + 2 * 2600);
    const [{ n, d }] = (await pg.unsafe(`SELECT count(*)::int AS n, count(DISTINCT id)::int AS d FROM "${table}"`)) as { n: number; d: number }[];
    expect([n, d]).toEqual([20_000, 20_000]);
  });

  test("a source error fails the run with that error; batches committed before it stay, the one filling is dropped", async () => {
    const table = tableName("sqlite", "error");
    const Item = v.object({ id: v.pipe(v.number(), v.integer()) });
    const file = await ndjson("error.ndjson", Array.from({ length: 250 }, (_, i) => ({ id: i + 1 })));
    const pipeline = fromNdjson(file).pipe(
      map((r, i) => {
        if (i === 220) throw new Error("upstream broke at record 221");
        return r as v.InferOutput<typeof Item>;
      }),
      deadLetter(() => {}),
      toSql(urlOf("sqlite"), table, { schema: Item, mode: "insert", create: true, batchRows: 100 }),
    );
    const error = await run(pipeline).catch((e: Error) => e);
    expect(String(error)).toContain("upstream broke at record 221");
    const [{ n }] = await select("sqlite", `SELECT count(*) AS n FROM "${table}"`);
    // The first two batches were full before the error; whether their write finished first is a race, never a third batch.
    expect([0n, 100n, 200n]).toContain(n as bigint);
  });

  test("an aborted run stops reading, commits what it holds and resolves stopped, with the table matching its summary", async () => {
    const table = tableName("sqlite", "abort");
    const Item = v.object({ id: v.pipe(v.number(), v.integer()) });
    const file = await ndjson("abort.ndjson", Array.from({ length: 200_000 }, (_, i) => ({ id: i + 1 })));
    const abort = new AbortController();
    const summary = await run(
      fromNdjson(file).pipe(
        map((r) => r as v.InferOutput<typeof Item>),
        deadLetter(() => {}),
        toSql(urlOf("sqlite"), table, { schema: Item, mode: "insert", create: true, batchRows: 1000 }),
      ),
      { signal: abort.signal, onValue: () => abort.abort() },
    );
    expect(summary.stopped).toBe(true);
    expect(summary.written).toBeLessThan(200_000);
    expect(summary.in).toBe(summary.written);
    const [{ n, d }] = await select("sqlite", `SELECT count(*) AS n, count(DISTINCT id) AS d FROM "${table}"`);
    expect([Number(n), Number(d)]).toEqual([summary.written, summary.written]);
  });

  test("a source watching durability hears of each line only once its batch has committed", async () => {
    const table = tableName("sqlite", "durable");
    const Item = v.object({ id: v.pipe(v.number(), v.integer()) });
    const heard: { upTo: number; inTable: number }[] = [];
    const countNow = () => {
      const sqlite = new Database(sqliteFile, { readonly: true });
      try {
        return Number((sqlite.query(`SELECT count(*) AS n FROM "${table}"`).get() as { n: number }).n);
      } catch {
        return 0;
      } finally {
        sqlite.close();
      }
    };
    // A source like a broker's: it acknowledges what watchDurable says is durable, and keeps
    // listening after it completes (the sink commits its last batches after that).
    let stop = () => {};
    const source = new Observable<v.InferOutput<typeof Item>>((subscriber) => {
      const flow = currentFlow();
      const input = new Input(flow, "broker");
      stop = watchDurable(input, (upTo) => heard.push({ upTo, inTable: countNow() }));

      (async () => {
        for (let i = 1; i <= 2500; i++) {
          if (i % 500 === 1) await waitForGate(flow);
          subscriber.next(stamp({ id: i }, input.at(i)));
        }
        subscriber.complete();
      })();
    });
    const summary = await run(
      source.pipe(deadLetter(() => {}), toSql(urlOf("sqlite"), table, { schema: Item, mode: "insert", create: true, batchRows: 1000 })),
    );
    stop();
    expect(summary.written).toBe(2500);
    expect(heard.length).toBeGreaterThanOrEqual(2);
    expect(heard.at(-1)?.upTo).toBe(2500);
    for (const { upTo, inTable } of heard) expect(inTable).toBeGreaterThanOrEqual(upTo);
    expect(heard.map((h) => h.upTo)).toEqual([...heard.map((h) => h.upTo)].sort((a, b) => a - b));
  });

  test("replace-partition resumed under its checkpoint does not empty again a partition the stopped run began", async () => {
    const table = tableName("sqlite", "replaceResume");
    const Sale = v.object({ day: v.pipe(v.string(), v.isoDate()), n: v.pipe(v.number(), v.integer()) });
    const q = '"';
    await exec("sqlite", `CREATE TABLE ${q}${table}${q} (day TEXT NOT NULL, n INTEGER NOT NULL) STRICT`);
    await exec("sqlite", `INSERT INTO ${q}${table}${q} VALUES ('2024-03-01', -1), ('2024-03-01', -2), ('2024-03-09', -3)`);
    // Wide lines, so the source reads several chunks and a stop after the first batch leaves most unread.
    const rows = Array.from({ length: 20_000 }, (_, i) => ({ day: "2024-03-01", n: i, pad: "x".repeat(200) }));
    const file = await ndjson("replace-resume.ndjson", rows);
    const checkpoint = join(dir.path, "replace-resume", "checkpoint.sqlite");
    const sink = () => toSql(urlOf("sqlite"), table, { schema: Sale, mode: "replace-partition", partitionBy: ["day"], batchRows: 1000 });
    const pipeline = () => fromNdjson(file).pipe(map((r) => r as v.InferOutput<typeof Sale>), deadLetter(() => {}), sink());
    const abort = new AbortController();
    const first = await run(pipeline(), { checkpoint, signal: abort.signal, onValue: () => abort.abort() });
    expect(first.stopped).toBe(true);
    expect(first.written).toBeLessThan(20_000);
    const second = await run(pipeline(), { checkpoint });
    expect(first.written + second.written).toBe(20_000);
    const counts = await select("sqlite", `SELECT day, count(*) AS n, count(DISTINCT n) AS d, min(n) AS lo FROM ${q}${table}${q} GROUP BY day ORDER BY day`);
    expect(counts.map((r) => `${r.day} ${r.n} ${r.d} ${r.lo}`)).toEqual(["2024-03-01 20000 20000 0", "2024-03-09 1 1 -3"]);
  });

  for (const db of ["pg", "my", "sqlite"] as const) {
    test(`a run killed with SIGKILL mid-load and resumed under its checkpoint writes every row once (${db}, insert mode)`, async () => {
      const table = tableName(db, "resume");
      const total = 40_000;
      const file = await ndjson(`resume-${db}.ndjson`, Array.from({ length: total }, (_, i) => ({ id: i + 1, v: i % 17 === 0 ? "bad" : `v${i}` })));
      const checkpoint = join(dir.path, `resume-${db}`, "checkpoint.sqlite");
      const script = join(dir.path, `resume-${db}.ts`);
      const root = join(import.meta.dir, "..", "..");
      await Bun.write(
        script,
        `import * as v from "valibot";
import { run } from "${root}/src/run/run.ts";
import { fromNdjson } from "${root}/src/sources/ndjson.ts";
import { toSql } from "${root}/src/sinks/toSql.ts";
import { deadLetter, validate } from "${root}/operators/index.ts";
const Item = v.object({ id: v.pipe(v.number(), v.integer()), v: v.pipe(v.string(), v.regex(/^v/)) });
const summary = await run(fromNdjson(${JSON.stringify(file)}).pipe(validate(Item), deadLetter(${JSON.stringify(join(dir.path, `resume-${db}`, "dead-letter"))}),
  toSql(${JSON.stringify(urlOf(db))}, ${JSON.stringify(table)}, { schema: Item, mode: "insert", create: true, batchRows: 700 })), { checkpoint: ${JSON.stringify(checkpoint)} });
console.log(JSON.stringify(summary));
`,
      );
      const q = db === "my" ? "`" : '"';
      const count = async (): Promise<{ n: number; d: number }> => {
        try {
          const [row] = await select(db, `SELECT count(*) AS n, count(DISTINCT id) AS d FROM ${q}${table}${q}`);
          return { n: Number(row?.n), d: Number(row?.d) };
        } catch {
          return { n: 0, d: 0 };
        }
      };
      // Killed twice at different points, then left to finish.
      for (const atLeast of [3000, 15_000]) {
        const child = Bun.spawn(["bun", script], { stdout: "pipe", stderr: "pipe" });
        let rows = 0;
        while (child.exitCode === null && (rows = (await count()).n) < atLeast) await Bun.sleep(5);
        child.kill("SIGKILL");
        await child.exited;
        expect(rows).toBeLessThan(total);
      }
      const last = Bun.spawn(["bun", script], { stdout: "pipe", stderr: "pipe" });
      const [out, code] = await Promise.all([new Response(last.stdout).text(), last.exited]);
      if (code !== 0) console.error(await new Response(last.stderr).text());
      expect(code).toBe(0);
      const valid = Array.from({ length: total }, (_, i) => i).filter((i) => i % 17 !== 0).length;
      expect(await count()).toEqual({ n: valid, d: valid });
      const summary = JSON.parse(out.trim().split("\n").pop() as string);
      expect(summary.skipped).toBeGreaterThanOrEqual(0);
    });
  }

  test("a key or partitionBy naming no field of the schema is refused naming the table, the option and the fields", () => {
    const Item = v.object({ id: v.string(), n: v.number() });
    expect(() => toSql(urlOf("sqlite"), "orders", { schema: Item, mode: "upsert", key: ["order_id"] as never })).toThrow(
      'schema field "order_id": toSql orders: key names it, but the schema has no such field (its fields: id, n)',
    );
    expect(() => toSql(urlOf("sqlite"), "orders", { schema: Item, mode: "replace-partition", partitionBy: ["day"] as never })).toThrow("toSql orders: partitionBy names it");
  });

  for (const db of ["pg", "sqlite"] as const) {
    test(`a missing table fails the run even when every record was rejected before a batch (${db})`, async () => {
      const table = tableName(db, "neverMade");
      const Item = v.object({ id: v.string(), n: v.number() });
      const feed = fromStdin({ name: "feed", stream: new Blob(['{"id":"a","n":"x"}\n{"id":"b"}\n']).stream() }).pipe(
        map((r) => r as v.InferOutput<typeof Item>),
        deadLetter(() => {}),
        toSql(urlOf(db), table, { schema: Item, mode: "insert" }),
      );
      const error = await run(feed).catch((e) => e);
      expect(error).toBeInstanceOf(Error);
      expect(String(error.message)).toContain(`table "${table}"`);
      expect(String(error.message)).toContain("missing");
    });
  }

  for (const db of ["pg", "sqlite"] as const) {
    test(`a source that does not resume writes every record again on a later run of its checkpoint, none skipped by line (${db})`, async () => {
      // fromStdin (like fromHttp, fromPostgres, fromPush) reads everything again under a checkpoint,
      // and its records on a later run are other records: line 1 today is not line 1 yesterday.
      const table = tableName(db, "notResumed");
      const Item = v.object({ id: v.string() });
      const checkpoint = join(dir.path, `not-resumed-${db}`, "checkpoint.sqlite");
      const feed = (ids: string[]) =>
        fromStdin({ name: "feed", stream: new Blob([ids.map((id) => `{"id":"${id}"}\n`).join("")]).stream() }).pipe(
          map((r) => r as v.InferOutput<typeof Item>),
          deadLetter(() => {}),
          toSql(urlOf(db), table, { schema: Item, mode: "insert", create: true }),
        );
      const first = await run(feed(["a1", "a2", "a3"]), { checkpoint });
      const second = await run(feed(["b1", "b2", "b3"]), { checkpoint });
      expect([first.written, second.written, second.skipped]).toEqual([3, 3, 0]);
      const rows = await select(db, `SELECT id FROM "${table}" ORDER BY id`);
      expect(rows.map((r) => r.id)).toEqual(["a1", "a2", "a3", "b1", "b2", "b3"]);
    });
  }
});

describe("toClickHouse (ClickHouse 18.16 over HTTP on 127.0.0.1:8123)", () => {
  const CH = "clickhouse://default@127.0.0.1:8123/default";
  const chTables: string[] = [];
  async function ch(query: string): Promise<string> {
    const response = await fetch(`http://127.0.0.1:8123/?database=default`, { method: "POST", body: query });
    const text = await response.text();
    if (!response.ok) throw new Error(text);
    return text;
  }
  const rowsOf = (text: string) => text.split("\n").filter(Boolean).map((line) => JSON.parse(line) as Record<string, unknown>);
  const quoteCh = (name: string) => `\`${name.replaceAll("\\", "\\\\").replaceAll("`", "\\`")}\``;
  afterAll(async () => {
    for (const table of chTables) await ch(`DROP TABLE IF EXISTS ${quoteCh(table)}`).catch(() => {});
    await ch(`ALTER TABLE _sluice_commits DELETE WHERE table_name LIKE 'sluice_ch_%_${process.pid}_%'`).catch(() => {});
  });
  function chTable(stem: string): string {
    const table = `sluice_ch_${stem}_${process.pid}_${++counter}`;
    chTables.push(table);
    return table;
  }

  test("values of every column type come back as they went in, with lineage and ledger", async () => {
    const table = chTable("types");
    // 5e-324, which ClickHouse 18.16 reads as 0, is refused; the other rows come back whole.
    const all = edgeRows(90);
    const subnormal = all.filter((r) => r.ratio === 5e-324).map((r) => r.id);
    const rows = all.filter((r) => r.ratio !== 5e-324);
    const file = await ndjson("ch-types.ndjson", all);
    const deadLetters: DeadLetter[] = [];
    const commits: SqlCommit[] = [];
    const summary = await run(
      fromNdjson(file).pipe(
        withBigints(),
        deadLetter((e) => deadLetters.push(e)),
        toClickHouse(CH, table, { schema: Row, key: ["id"], create: true, batchRows: 40, lineage: true }),
      ),
      { onValue: (c) => commits.push(c as SqlCommit) },
    );
    expect(subnormal.length).toBeGreaterThan(5);
    expect(deadLetters.map((d) => d.line)).toEqual(subnormal);
    expect(deadLetters[0]?.error).toBe('column "ratio": 5e-324 is a subnormal float, which ClickHouse 18.16 may read as 0');
    expect(summary.written).toBe(rows.length);
    expect(commits.map((c) => c.rows)).toEqual([40, rows.length - 40]);
    const back = rowsOf(await ch(`SELECT id, name, big, ratio, flag, at, day, tags, doc, extra, _sluice_run_id, _sluice_line FROM ${quoteCh(table)} ORDER BY id FORMAT JSONEachRow`));
    const json = (x: unknown) => (x === null ? null : JSON.parse(String(x)));
    expect(
      back.map((r) => ({
        id: r.id,
        name: r.name,
        big: r.big,
        ratio: r.ratio,
        flag: r.flag === null ? null : r.flag === 1,
        at: r.at,
        day: r.day,
        tags: json(r.tags),
        doc: json(r.doc),
        extra: json(r.extra),
      })),
    ).toEqual(rows.map(expectedOf));
    expect(back.map((r) => `${r._sluice_run_id}:${r._sluice_line}`)).toEqual(rows.map((r) => `${summary.runId}:${r.id}`));
    const ledger = rowsOf(await ch(`SELECT first_line, last_line FROM _sluice_commits WHERE table_name = '${table}' ORDER BY first_line FORMAT JSONEachRow`));
    // Refused lines are not claimed: each range ends before one.
    const claimed = ledger.flatMap((r) => Array.from({ length: Number(r.last_line) - Number(r.first_line) + 1 }, (_, i) => Number(r.first_line) + i));
    expect(claimed).toEqual(rows.map((r) => r.id));
  });

  test("a row ClickHouse refuses (a date it cannot parse, a negative unsigned) is a dead letter; the rest lands", async () => {
    const table = chTable("refuse");
    await ch(`CREATE TABLE ${quoteCh(table)} (id Int64, day Date, n UInt8) ENGINE = MergeTree() ORDER BY id`);
    const Item = v.object({ id: v.pipe(v.number(), v.integer()), day: v.string(), n: v.pipe(v.number(), v.integer()) });
    const rows = Array.from({ length: 300 }, (_, i) => ({ id: i + 1, day: i + 1 === 77 ? "abc" : "2024-03-01", n: i + 1 === 200 ? -1 : i % 100 }));
    const file = await ndjson("ch-refuse.ndjson", rows);
    const { summary, deadLetters } = await load(file, toClickHouse(CH, table, { schema: Item }));
    expect(summary.written).toBe(298);
    expect(deadLetters.map((d) => [d.line, d.stage])).toEqual([[77, "write"], [200, "write"]]);
    expect(deadLetters[0]?.error).toContain("(while read the value of key day): (at row 1)");
    expect(deadLetters[1]?.error).toContain("Unsigned type must not contain '-' symbol");
    expect(rowsOf(await ch(`SELECT count() AS n FROM ${quoteCh(table)} FORMAT JSONEachRow`))).toEqual([{ n: "298" }]);
  });

  test("hostile names are quoted; modes ClickHouse cannot keep and unreachable servers fail with the target named, no password", async () => {
    const table = chTable("we`ird \\ 'tab\"le");
    const Odd = v.object({ "a `b` \\ c": v.string(), "d'e": v.nullable(v.number()) });
    const file = await ndjson("ch-odd.ndjson", [{ "a `b` \\ c": "x`); DROP TABLE t; --", "d'e": null }]);
    const { summary } = await load(file, toClickHouse(CH, table, { schema: Odd, create: true }));
    expect(summary.written).toBe(1);
    expect(rowsOf(await ch(`SELECT * FROM ${quoteCh(table)} FORMAT JSONEachRow`))).toEqual([{ "a `b` \\ c": "x`); DROP TABLE t; --", "d'e": null }]);
    const upsert = await load(file, toSql(CH, table, { schema: Odd, mode: "upsert", key: ["d'e"] })).catch((e: Error) => e);
    expect(String(upsert)).toContain('mode "upsert" is not supported by ClickHouse');
    const down = await load(file, toClickHouse("clickhouse://admin:s3cr3t@127.0.0.1:1/warehouse", "events", { schema: Odd })).catch((e: Error) => e);
    expect(down).toBeInstanceOf(SqlWriteError);
    expect((down as Error).message).toContain('clickhouse://127.0.0.1:1/warehouse table "events": cannot connect');
    expect((down as Error).message).not.toContain("s3cr3t");
  });

  test("a password outside Latin-1 reaches the server (UTF-8 Basic auth) and stays out of the error", async () => {
    // btoa() threw InvalidCharacterError on "€" before any request: the sink failed without
    // naming the table, and a ClickHouse user with such a password could not be used at all.
    const file = await ndjson("ch-euro.ndjson", [{ id: 1 }]);
    const wrong = await load(file, toClickHouse("clickhouse://default:pr%C3%BCfe%E2%82%AC@127.0.0.1:8123/default", chTable("euro"), { schema: v.object({ id: v.number() }) })).catch((e: Error) => e);
    expect(wrong).toBeInstanceOf(SqlWriteError);
    expect((wrong as Error).message).toContain('clickhouse://127.0.0.1:8123/default table "');
    expect((wrong as Error).message).toMatch(/[Pp]assword|[Aa]uthenticat/);
    expect((wrong as Error).message).not.toContain("prüfe€");
    expect((wrong as Error).message).not.toContain("pr%C3%BCfe%E2%82%AC");
  });
});
