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
import { readDeadLetters } from "../../src/index.ts";
import { getObject, listKeys, readManifest, type S3Options } from "../../src/io/s3.ts";
import { query, tempDir } from "../helpers/duckdb.ts";
import { S3RVER_KEY, S3RVER_SECRET, type S3rverHandle, startS3rver } from "../helpers/s3rver.ts";

const DATABASE = "postgres://postgres@127.0.0.1:5432/test";
const EXAMPLE = join(import.meta.dir, "../../examples/transactions-bucket.ts");
const BUCKET = "lake";
const COUNT = 1000;

interface Outcome {
  code: number;
  stdout: string;
  stderr: string;
}

describe("the transactions example on a bucket and PostgreSQL", () => {
  let server: S3rverHandle;
  let s3: S3Options;
  let dir: { path: string; remove: () => Promise<void> };
  const table = `tx_bucket_${process.pid}_${Date.now()}`;
  const sql = new SQL(DATABASE);
  const checkpoint = () => join(dir.path, "checkpoint.sqlite");
  // What the example uploads, worked out here from the same seeded generator.
  const inputs = [0, 1, 2].map((f) => ({
    source: `s3://${BUCKET}/input/transactions-${f}.csv`,
    rows: generateTransactions(f, COUNT, 1, f === 2).rows,
  }));
  const all = () => inputs.flatMap((input) => input.rows.map((row) => ({ ...row, source: input.source })));
  const valid = () => all().filter((row): row is GeneratedRow & { source: string; values: NonNullable<GeneratedRow["values"]> } => row.values !== undefined);
  let first: Outcome;
  let second: Outcome;
  let refused: Outcome;
  const tableAfter: Record<string, unknown>[][] = [];
  const bucketAfter: string[][] = [];

  async function example(checkpointPath: string): Promise<Outcome> {
    const child = Bun.spawn(
      ["bun", EXAMPLE, "--bucket", `s3://${BUCKET}`, "--checkpoint", checkpointPath, "--table", table, "--count", String(COUNT)],
      { env: { ...process.env, ...server.env }, stdout: "pipe", stderr: "pipe" },
    );
    const [stdout, stderr, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
    return { code, stdout, stderr };
  }

  /** Every row of the table, every column, lineage included, in key order. */
  const tableRows = () =>
    sql.unsafe(`SELECT tx_id, account, amount, currency, merchant, description,
        (extract(epoch FROM "at") * 1000)::bigint::text AS at_ms, tx_date::text AS tx_date, class, score,
        _sluice_run_id, _sluice_input, _sluice_line::int AS _sluice_line
      FROM "${table}" ORDER BY tx_id`) as Promise<Record<string, unknown>[]>;

  /** Every key in the bucket with its ETag. */
  async function bucketKeys(): Promise<string[]> {
    const keys: string[] = [];
    for await (const object of listKeys(`s3://${BUCKET}/`, s3)) keys.push(`${object.key} ${object.etag}`);
    return keys.sort();
  }

  beforeAll(async () => {
    server = await startS3rver([BUCKET]);
    s3 = { endpoint: server.endpoint, accessKeyId: S3RVER_KEY, secretAccessKey: S3RVER_SECRET };
    dir = await tempDir("sluice-transactions-bucket-");
    first = await example(checkpoint());
    if (first.code !== 0) throw new Error(`the example exited with ${first.code}: ${first.stderr}`);
    tableAfter.push(await tableRows());
    bucketAfter.push(await bucketKeys());
    second = await example(checkpoint());
    tableAfter.push(await tableRows());
    bucketAfter.push(await bucketKeys());
    refused = await example(join(dir.path, "another-checkpoint.sqlite"));
    tableAfter.push(await tableRows());
    bucketAfter.push(await bucketKeys());
  });

  afterAll(async () => {
    await sql.unsafe(`DROP TABLE IF EXISTS "${table}"`);
    await sql.unsafe(`DELETE FROM _sluice_commits WHERE table_name = $1`, [table]).catch(() => {});
    await sql.close();
    await server?.stop();
    await dir?.remove();
  });

  /** Downloads the objects the dataset's manifest lists and reads them with DuckDB. */
  async function readDataset(): Promise<Record<string, unknown>[]> {
    const url = `s3://${BUCKET}/transactions`;
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

  test("the bucket dataset holds every valid input row once, day-partitioned, with the API's class and score", async () => {
    const rows = await readDataset();
    const expected = valid()
      .map(({ values }) => ({
        ...values,
        at: undefined,
        at_ms: String(Date.parse(values.at)),
        tx_date: values.at.slice(0, 10),
        ...predict(values),
      }))
      .map(({ at: _, ...row }) => row)
      .sort((a, b) => (a.tx_id < b.tx_id ? -1 : 1));
    expect(expected.length).toBeGreaterThan(2900);
    expect(rows).toEqual(expected);
    const manifest = (await readManifest(`s3://${BUCKET}/transactions`, s3)) ?? [];
    expect(manifest.every((entry) => /^tx_date=2024-05-0[1-5]\/[^/]+\.parquet$/.test(entry.path))).toBe(true);
    expect(manifest.reduce((n, entry) => n + entry.rows, 0)).toBe(expected.length);
    expect(first.stdout).toContain(`parquet rows   ${expected.length.toLocaleString("en-US")} in ${manifest.length} objects`);
  });

  test("PostgreSQL holds the same transactions as the bucket, with the same values and classes, and each row's input object and line", async () => {
    const dataset = await readDataset();
    const [rows] = tableAfter as [Record<string, unknown>[]];
    expect(rows.map(({ _sluice_run_id: _r, _sluice_input: _i, _sluice_line: _l, ...row }) => row)).toEqual(dataset);
    const runId = /^run\s+(\S+)$/m.exec(first.stdout)?.[1];
    expect(runId).toBeDefined();
    const lineOf = new Map(valid().map((row) => [row.tx_id, { _sluice_input: row.source, _sluice_line: row.line }]));
    for (const row of rows) {
      expect({ _sluice_run_id: row._sluice_run_id, _sluice_input: row._sluice_input, _sluice_line: row._sluice_line }).toEqual({
        _sluice_run_id: runId,
        ...lineOf.get(row.tx_id as string),
      } as never);
    }
    expect(first.stdout).toContain(`table rows     ${rows.length.toLocaleString("en-US")} upserted`);
  });

  test("every bad row is in the bucket's dead letter once, named by its object and line", async () => {
    const local = join(dir.path, "dead-letter");
    mkdirSync(local, { recursive: true });
    for await (const object of listKeys(`s3://${BUCKET}/dead-letter/`, s3)) {
      await Bun.write(join(local, object.key.slice("dead-letter/".length)), await getObject(object.url, s3));
    }
    const entries = [];
    for await (const entry of readDeadLetters(local)) entries.push(entry);
    const defects = all().filter((row) => row.defect);
    expect(defects.length).toBeGreaterThan(30);
    const key = (source: string, line: number) => `${source}:${line}`;
    expect(entries.map((e) => key(e.source, e.line)).sort()).toEqual(defects.map((d) => key(d.source, d.line)).sort());
    const kinds = new Map(defects.map((d) => [key(d.source, d.line), d.defect]));
    for (const entry of entries) {
      // A bad amount or a cut-off quote fails parsing; an impossible timestamp fails validation.
      expect(entry.stage).toBe(kinds.get(key(entry.source, entry.line)) === "bad_timestamp" ? "validate" : "parse");
    }
    // Nothing lost: every record read is in the dataset or in the dead letter.
    expect(first.stdout).toContain(`records in     ${all().length.toLocaleString("en-US")}`);
    expect(entries.length + valid().length).toBe(all().length);
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
    expect(refused.stderr).toContain(`s3://${BUCKET}/transactions holds a dataset already`);
        expect(tableAfter[2]).toEqual(tableAfter[0] as Record<string, unknown>[]);
    expect(bucketAfter[2]).toEqual(bucketAfter[0] as string[]);
  });
});
