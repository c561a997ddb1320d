/**
 * `toParquet("s3://…")` against a real S3-compatible server (s3rver): the objects DuckDB reads
 * hold every row once, the manifest lists exactly the committed files, and a run interrupted
 * between upload and commit is settled by the next one without duplicates.
 */
import { Database } from "bun:sqlite";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { from } from "rxjs";
import * as v from "valibot";
import { openCheckpoint } from "../../src/checkpoint/checkpoint.ts";
import { type Commit, run, toParquet } from "../../src/index.ts";
import { getObject, listKeys, putObject, readManifest, type S3Options, uploadFile } from "../../src/io/s3.ts";
import { query, tempDir } from "../helpers/duckdb.ts";
import { S3RVER_KEY, S3RVER_SECRET, type S3rverHandle, startS3rver } from "../helpers/s3rver.ts";

const BUCKET = "lake";
const Row = v.object({ id: v.number(), day: v.string(), name: v.nullable(v.string()) });
type Row = v.InferOutput<typeof Row>;
const rows = (count: number, from = 0): Row[] =>
  Array.from({ length: count }, (_, i) => ({ id: from + i, day: `2024-03-0${1 + ((from + i) % 3)}`, name: (from + i) % 7 === 0 ? null : `n${from + i}` }));

describe("toParquet into a bucket", () => {
  let server: S3rverHandle;
  let s3: S3Options;
  let dir: { path: string; remove: () => Promise<void> };
  beforeAll(async () => {
    server = await startS3rver([BUCKET]);
    s3 = { endpoint: server.endpoint, accessKeyId: S3RVER_KEY, secretAccessKey: S3RVER_SECRET };
    dir = await tempDir();
  });
  afterAll(async () => {
    await server.stop();
    await dir.remove();
  });

  /** Downloads the dataset's manifest-listed objects and reads them with DuckDB. */
  async function readBack(url: string): Promise<Record<string, unknown>[]> {
    const local = join(dir.path, `copy-${Math.random().toString(36).slice(2)}`);
    const entries = (await readManifest(url, s3)) ?? [];
    for (const entry of entries) {
      const path = join(local, entry.path);
      mkdirSync(join(path, ".."), { recursive: true });
      await Bun.write(path, await getObject(`${url}/${entry.path}`, s3));
    }
    if (entries.length === 0) return [];
    return query(`SELECT id, day, name FROM read_parquet('${local}/**/*.parquet', hive_partitioning = true) ORDER BY id`);
  }

  test("writes the hive layout as objects, one PUT each, listed in the manifest; DuckDB reads every row once", async () => {
    const url = `s3://${BUCKET}/events`;
    const input = rows(5_000);
    const commits: Commit[] = [];
    const summary = await run(from(input).pipe(toParquet(url, { schema: Row, partitionBy: ["day"], s3, maxFileRows: 1_000 })), {
      onValue: (c) => commits.push(c as Commit),
    });
    expect(summary.written).toBe(input.length);
    expect(commits.every((c) => c.path.startsWith(`${url}/day=2024-03-0`))).toBe(true);
    const keys: string[] = [];
    for await (const object of listKeys(`${url}/`, s3)) keys.push(object.key);
    const parquet = keys.filter((k) => k.endsWith(".parquet")).sort();
    expect(parquet).toEqual(commits.map((c) => c.path.slice(`s3://${BUCKET}/`.length)).sort());
    const manifest = (await readManifest(url, s3)) ?? [];
    expect(manifest.map((e) => `events/${e.path}`).sort()).toEqual(parquet);
    expect(manifest.reduce((n, e) => n + e.rows, 0)).toBe(input.length);
    const back = await readBack(url);
    expect(back).toEqual(input.map((r) => ({ id: r.id, day: r.day, name: r.name })));
    // Nothing is left on the local disk.
    expect(keys.some((k) => k.includes(".tmp"))).toBe(false);
  });

  test("mode error refuses a prefix that holds Parquet objects; append adds files named with the run id; overwrite is refused", async () => {
    const url = `s3://${BUCKET}/modes`;
    await run(from(rows(10)).pipe(toParquet(url, { schema: Row, s3 })));
    await expect(run(from(rows(10)).pipe(toParquet(url, { schema: Row, s3 })))).rejects.toThrow(/already holds Parquet objects/);
    await expect(run(from(rows(10)).pipe(toParquet(url, { schema: Row, s3, mode: "overwrite" })))).rejects.toThrow(/"overwrite" is not available for a bucket/);
    await run(from(rows(10, 10)).pipe(toParquet(url, { schema: Row, s3, mode: "append" })));
    const back = await readBack(url);
    expect(back.map((r) => r.id)).toEqual(Array.from({ length: 20 }, (_, i) => i));
  });

  test("a run killed between an upload and its commit is settled by the next: a file in the manifest counts, one not in it is deleted and written again", async () => {
    const url = `s3://${BUCKET}/resumed`;
    const checkpointPath = join(dir.path, "resumed.sqlite");
    // What a killed run left: two files recorded as intents, neither marked committed. The first
    // was uploaded and put in the manifest; the second was uploaded only.
    const killed = openCheckpoint(checkpointPath, "20240301T000000Z-killed");
    const source = "memory";
    const kept = `${url}/day=2024-03-01/part-20240301T000000Z-killed-000000000000.parquet`;
    const orphan = `${url}/day=2024-03-02/part-20240301T000000Z-killed-000000000001.parquet`;
    killed.intent(kept, JSON.stringify(["2024-03-01"]), [{ source, firstLine: 1, lastLine: 1 }]);
    killed.intent(orphan, JSON.stringify(["2024-03-02"]), [{ source, firstLine: 2, lastLine: 2 }]);
    killed.close();
    const local = join(dir.path, "kept.parquet");
    await run(from([{ id: 0, day: "2024-03-01", name: "n0" }]).pipe(toParquet(join(dir.path, "kept"), { schema: Row })));
    const [file] = [...new Bun.Glob("**/*.parquet").scanSync(join(dir.path, "kept"))];
    await Bun.write(local, Bun.file(join(dir.path, "kept", file as string)));
    const object = await uploadFile(local, kept, s3);
    await putObject(
      `${url}/_manifest/${encodeURIComponent("day=2024-03-01/part-20240301T000000Z-killed-000000000000.parquet")}.json`,
      JSON.stringify({ path: "day=2024-03-01/part-20240301T000000Z-killed-000000000000.parquet", size: object.size, etag: object.etag, rows: 1, runId: "20240301T000000Z-killed", committedAt: new Date().toISOString() }),
      s3,
    );
    await uploadFile(local, orphan, s3);
    // The orphan's manifest entry was being written when the run was killed: a store that keeps a
    // cut-short PUT (s3rver does; S3 refuses it) holds half of it.
    const brokenEntry = `${url}/_manifest/${encodeURIComponent("day=2024-03-02/part-20240301T000000Z-killed-000000000001.parquet")}.json`;
    await putObject(brokenEntry, '{"path":"day=2024-03-02/part-2024', s3);
    await expect(readManifest(url, s3)).rejects.toThrow("is not JSON");

    const reopened = openCheckpoint(checkpointPath, "20240301T000001Z-check");
    expect(reopened.pendingObjects().map((p) => p.path).sort()).toEqual([kept, orphan].sort());
    reopened.close();

    // The next run settles them before reading.
    {
      const settled = openCheckpoint(checkpointPath, "20240301T000002Z-settle");
      const { settleObjects } = await import("../../src/sinks/bucket.ts");
      await settleObjects(settled, s3);
      expect(settled.pendingObjects()).toEqual([]);
      settled.close();
      // The file in the manifest is committed (its line is skipped on resume); the other's intent is gone.
      const db = new Database(checkpointPath, { readonly: true });
      expect(db.query("SELECT path, durable FROM commits ORDER BY path").all()).toEqual([{ path: kept, durable: 1 }]);
      db.close();
    }
    const keys: string[] = [];
    for await (const o of listKeys(`${url}/`, s3)) keys.push(`s3://${BUCKET}/${o.key}`);
    expect(keys).toContain(kept);
    expect(keys).not.toContain(orphan);
    // The cut-short entry committed nothing: it went with its file, and the manifest reads again.
    expect(keys).not.toContain(brokenEntry);
    expect((await readManifest(url, s3))?.map((e) => e.path)).toEqual(["day=2024-03-01/part-20240301T000000Z-killed-000000000000.parquet"]);
  });
});
