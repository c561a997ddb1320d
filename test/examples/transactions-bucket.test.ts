/**
 * examples/transactions-bucket.ts end to end against a real S3-compatible server (s3rver) and the
 * local PostgreSQL: the example runs as a subprocess with the standard variables pointing at the
 * server; the dataset it leaves in the bucket is read back with DuckDB (from local copies of the
 * objects its manifest lists) and compared with the generated input and with the table.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { SQL } from "bun";
import { type GeneratedRow, generateTransactions, predict } from "../../examples/transactions.ts";
import { type DeadLetter, readDeadLetters } from "../../src/index.ts";
import { getObject, listKeys, readManifest, type S3Options } from "../../src/io/s3.ts";
import { query, tempDir } from "../helpers/duckdb.ts";
import { S3RVER_KEY, S3RVER_SECRET, type S3rverHandle, startS3rver } from "../helpers/s3rver.ts";

const DATABASE = "postgres://postgres@127.0.0.1:5432/test";
const EXAMPLE = join(import.meta.dir, "../../examples/transactions-bucket.ts");
const LAKE = "lake";
// A prefix and a table name that need quoting and escaping everywhere they go.
const CRASH = "crash/runs/2024 Q2 ü&co";
const COUNT = 1000;

interface Outcome {
  code: number;
  stdout: string;
  stderr: string;
}

type Row = GeneratedRow & { source: string };
type ValidRow = Row & { values: NonNullable<GeneratedRow["values"]> };

/** What the example uploads to `bucket`, worked out here from the same seeded generator. */
function inputRows(bucket: string): Row[] {
  return [0, 1, 2].flatMap((f) =>
    generateTransactions(f, COUNT, 1, f === 2).rows.map((row) => ({ ...row, source: `s3://${bucket}/input/transactions-${f}.csv` })),
  );
}
const validRows = (bucket: string) => inputRows(bucket).filter((row): row is ValidRow => row.values !== undefined);

/** The rows the dataset and the table must hold: each valid input row with its day and the API's answer, by tx_id. */
function expectedRows(bucket: string) {
  return validRows(bucket)
    .map(({ values: { at, ...values } }) => ({ ...values, at_ms: String(Date.parse(at)), tx_date: at.slice(0, 10), ...predict(values) }))
    .sort((a, b) => (a.tx_id < b.tx_id ? -1 : 1));
}

describe("the transactions example on a bucket and PostgreSQL", () => {
  let server: S3rverHandle;
  let s3: S3Options;
  let dir: { path: string; remove: () => Promise<void> };
  const table = `tx_bucket_${process.pid}_${Date.now()}`;
  const crashTable = `${table} Crash Ä`;
  const sql = new SQL(DATABASE);
  let first: Outcome;
  let second: Outcome;
  let refused: Outcome;
  const tableAfter: Record<string, unknown>[][] = [];
  const bucketAfter: string[][] = [];

  function start(bucket: string, tableName: string, checkpoint: string, extra: string[] = []) {
    return Bun.spawn(
      ["bun", EXAMPLE, "--bucket", `s3://${bucket}`, "--checkpoint", checkpoint, "--table", tableName, "--count", String(COUNT), ...extra],
      { env: { ...process.env, ...server.env }, stdout: "pipe", stderr: "pipe" },
    );
  }

  async function example(bucket: string, tableName: string, checkpoint: string, extra: string[] = []): Promise<Outcome> {
    const child = start(bucket, tableName, checkpoint, extra);
    const [stdout, stderr, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
    return { code, stdout, stderr };
  }

  /** Every row of a table, every column, lineage included, in key order. */
  const tableRows = (name: string) =>
    sql.unsafe(`SELECT tx_id, account, amount, currency, merchant, description,
        (extract(epoch FROM "at") * 1000)::bigint::text AS at_ms, tx_date::text AS tx_date, class, score,
        _sluice_run_id, _sluice_input, _sluice_line::int AS _sluice_line
      FROM "${name}" ORDER BY tx_id`) as Promise<Record<string, unknown>[]>;
  const withoutLineage = (rows: Record<string, unknown>[]) => rows.map(({ _sluice_run_id: _r, _sluice_input: _i, _sluice_line: _l, ...row }) => row);

  /** Every key in a bucket with its ETag. */
  async function bucketKeys(bucket: string): Promise<string[]> {
    const keys: string[] = [];
    for await (const object of listKeys(`s3://${bucket}/`, s3)) keys.push(`${object.key} ${object.etag}`);
    return keys.sort();
  }

  /** Downloads the objects the dataset's manifest lists and reads them with DuckDB. */
  async function readDataset(bucket: string): Promise<Record<string, unknown>[]> {
    const url = `s3://${bucket}/transactions`;
    const local = join(dir.path, `copy-${Math.random().toString(36).slice(2)}`);
    const entries = (await readManifest(url, s3)) ?? [];
    expect(entries.length).toBeGreaterThan(0);
    for (const entry of entries) {
      const path = join(local, entry.path);
      mkdirSync(join(path, ".."), { recursive: true });
      await Bun.write(path, await getObject(`${url}/${entry.path}`, s3));
    }
    return query(`
      SELECT tx_id, account, amount, currency, merchant, description, epoch_ms("at")::VARCHAR AS at_ms,
        tx_date::VARCHAR AS tx_date, class, score
      FROM read_parquet('${local}/**/*.parquet', hive_partitioning = true) ORDER BY tx_id`);
  }

  /** Downloads the bucket's dead-letter objects and reads them. */
  async function deadLetters(bucket: string): Promise<DeadLetter[]> {
    const local = join(dir.path, `dead-letter-${Math.random().toString(36).slice(2)}`);
    mkdirSync(local, { recursive: true });
    for await (const object of listKeys(`s3://${bucket}/dead-letter/`, s3)) {
      await Bun.write(join(local, object.key.slice(object.key.lastIndexOf("/") + 1)), await getObject(object.url, s3));
    }
    const entries: DeadLetter[] = [];
    for await (const entry of readDeadLetters(local)) entries.push(entry);
    return entries;
  }
  const key = (source: string, line: number) => `${source}:${line}`;

  beforeAll(async () => {
    server = await startS3rver([LAKE, "crash"]);
    s3 = { endpoint: server.endpoint, accessKeyId: S3RVER_KEY, secretAccessKey: S3RVER_SECRET };
    dir = await tempDir("sluice-transactions-bucket-");
    const checkpoint = join(dir.path, "checkpoint.sqlite");
    first = await example(LAKE, table, checkpoint);
    if (first.code !== 0) throw new Error(`the example exited with ${first.code}: ${first.stderr}`);
    tableAfter.push(await tableRows(table));
    bucketAfter.push(await bucketKeys(LAKE));
    second = await example(LAKE, table, checkpoint);
    tableAfter.push(await tableRows(table));
    bucketAfter.push(await bucketKeys(LAKE));
    refused = await example(LAKE, table, join(dir.path, "another-checkpoint.sqlite"));
    tableAfter.push(await tableRows(table));
    bucketAfter.push(await bucketKeys(LAKE));
  });

  afterAll(async () => {
    for (const name of [table, crashTable]) {
      await sql.unsafe(`DROP TABLE IF EXISTS "${name}"`);
      await sql.unsafe(`DELETE FROM _sluice_commits WHERE table_name = $1`, [name]).catch(() => {});
    }
    await sql.close();
    await server?.stop();
    await dir?.remove();
  });

  test("the bucket dataset holds every valid input row once, day-partitioned, with the API's class and score", async () => {
    const rows = await readDataset(LAKE);
    const expected = expectedRows(LAKE);
    expect(expected.length).toBeGreaterThan(2900);
    expect(rows).toEqual(expected);
    const manifest = (await readManifest(`s3://${LAKE}/transactions`, s3)) ?? [];
    expect(manifest.every((entry) => /^tx_date=2024-05-0[1-5]\/[^/]+\.parquet$/.test(entry.path))).toBe(true);
    expect(manifest.reduce((n, entry) => n + entry.rows, 0)).toBe(expected.length);
    expect(first.stdout).toContain(`parquet rows   ${expected.length.toLocaleString("en-US")} in ${manifest.length} objects`);
  });

  test("PostgreSQL holds the same transactions as the bucket, with the same values and classes, and each row's input object and line", async () => {
    const dataset = await readDataset(LAKE);
    const [rows] = tableAfter as [Record<string, unknown>[]];
    expect(withoutLineage(rows)).toEqual(dataset);
    const runId = /^run\s+(\S+)$/m.exec(first.stdout)?.[1];
    expect(runId).toBeDefined();
    const lineOf = new Map(validRows(LAKE).map((row) => [row.tx_id, { _sluice_input: row.source, _sluice_line: row.line }]));
    for (const row of rows) {
      expect({ _sluice_run_id: row._sluice_run_id, _sluice_input: row._sluice_input, _sluice_line: row._sluice_line }).toEqual({
        _sluice_run_id: runId,
        ...lineOf.get(row.tx_id as string),
      } as never);
    }
    expect(first.stdout).toContain(`table rows     ${rows.length.toLocaleString("en-US")} upserted`);
  });

  test("every bad row is in the bucket's dead letter once, named by its object and line", async () => {
    const entries = await deadLetters(LAKE);
    const all = inputRows(LAKE);
    const defects = all.filter((row) => row.defect);
    expect(defects.length).toBeGreaterThan(30);
    expect(entries.map((e) => key(e.source, e.line)).sort()).toEqual(defects.map((d) => key(d.source, d.line)).sort());
    const kinds = new Map(defects.map((d) => [key(d.source, d.line), d.defect]));
    for (const entry of entries) {
      // A bad amount or a cut-off quote fails parsing; an impossible timestamp fails validation.
      expect(entry.stage).toBe(kinds.get(key(entry.source, entry.line)) === "bad_timestamp" ? "validate" : "parse");
    }
    // Nothing lost: every record read is in the dataset or in the dead letter.
    expect(first.stdout).toContain(`records in     ${all.length.toLocaleString("en-US")}`);
    expect(entries.length + validRows(LAKE).length).toBe(all.length);
  });

  test("a second run with the same checkpoint reads nothing and leaves the table, the dataset and the dead letters as they were", () => {
    expect(second.code).toBe(0);
    expect(second.stdout).toContain("uploaded 0 input object(s)");
    expect(second.stdout).toContain("records in     0");
    expect(tableAfter[1]).toEqual(tableAfter[0] as Record<string, unknown>[]);
    expect(bucketAfter[1]).toEqual(bucketAfter[0] as string[]);
  });

  test("a run under another checkpoint is refused before it reads, naming the dataset, and changes nothing", () => {
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain(`s3://${LAKE}/transactions holds a dataset already`);
    expect(tableAfter[2]).toEqual(tableAfter[0] as Record<string, unknown>[]);
    expect(bucketAfter[2]).toEqual(bucketAfter[0] as string[]);
  });

  test("a run killed (SIGKILL) once both sinks have committed part of the input, run again with its checkpoint, leaves every valid row once in the bucket and in the table (a prefix and a table name with spaces, ü and &)", async () => {
    const checkpoint = join(dir.path, "crash.sqlite");
    // Small batches and files, so both sinks commit while the input is still being read.
    const small = ["--batch-rows", "200", "--max-file-rows", "150"];
    const killed = start(CRASH, crashTable, checkpoint, small);
    let exited = false;
    killed.exited.then(() => (exited = true));
    let atKill = { tableRows: 0, objects: 0 };
    // Waits for a state, not for a time: the table and the dataset each hold a committed part.
    while (!exited) {
      const [found] = await sql.unsafe(`SELECT to_regclass($1) IS NOT NULL AS found`, [`"${crashTable}"`]);
      if (found.found) {
        const [{ n }] = await sql.unsafe(`SELECT count(*)::int AS n FROM "${crashTable}"`);
        const objects = (await readManifest(`s3://${CRASH}/transactions`, s3))?.length ?? 0;
        if (n > 0 && objects > 0) {
          killed.kill("SIGKILL");
          atKill = { tableRows: n, objects };
          break;
        }
      }
      await Bun.sleep(5);
    }
    await killed.exited;
    expect(exited && atKill.objects === 0 ? "the run ended before both sinks committed" : "killed").toBe("killed");

    const resumed = await example(CRASH, crashTable, checkpoint, small);
    expect({ code: resumed.code, stderr: resumed.code === 0 ? "" : resumed.stderr }).toEqual({ code: 0, stderr: "" });
    // The resumed run had work left: the kill came before the end.
    expect(Number(/^records in\s+([\d,]+)/m.exec(resumed.stdout)?.[1]?.replaceAll(",", ""))).toBeGreaterThan(0);

    const expected = expectedRows(CRASH);
    const dataset = await readDataset(CRASH);
    expect(dataset).toEqual(expected);
    const rows = await tableRows(crashTable);
    expect(withoutLineage(rows)).toEqual(expected);
    // Each row names its own input object and line (an upsert by the resumed run may re-stamp a
    // row the killed run wrote, so which run id a row carries depends on when the kill landed).
    const lineOf = new Map(validRows(CRASH).map((row) => [row.tx_id, key(row.source, row.line)]));
    expect(rows.every((row) => key(row._sluice_input as string, row._sluice_line as number) === lineOf.get(row.tx_id as string))).toBe(true);
    // (The table may hold every row by the kill when its batches outran the bucket's first file:
    // the resumed run still had input to read, checked above, and its upserts change nothing.)
    expect(atKill.tableRows).toBeLessThanOrEqual(rows.length);
    // Every bad row is dead-lettered, once.
    const defects = inputRows(CRASH).filter((row) => row.defect);
    const entries = await deadLetters(CRASH);
    expect(entries.map((e) => key(e.source, e.line)).sort()).toEqual(defects.map((d) => key(d.source, d.line)).sort());
  }, 60_000);
});
