/**
 * One file per partition, joined from row groups encoded one at a time: the footer codec keeps
 * every field, and readers sluice did not write (DuckDB, Polars) read every value back.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, readdirSync, readFileSync, statSync } from "node:fs";
import { basename, join } from "node:path";
import { tableFromArrays, tableToIPC } from "apache-arrow";
import pl from "nodejs-polars";
import { from, Observable } from "rxjs";
import * as v from "valibot";
import { type Commit, run, toParquet } from "../../src/index.ts";
import { encodeParquet } from "../../src/parquet/encodeParquet.ts";
import { PartFile, splitParquet } from "../../src/parquet/partFile.ts";
import { ThriftReader, ThriftWriter } from "../../src/parquet/thrift.ts";
import { seededRandom } from "../../src/generate/random.ts";
import { dataset, query, tempDir } from "../helpers/duckdb.ts";

const Row = v.object({
  id: v.number(),
  day: v.string(),
  name: v.nullable(v.string()),
  amount: v.nullable(v.number()),
  at: v.pipe(v.string(), v.isoTimestamp()),
  tags: v.array(v.string()),
});
type Row = v.InferOutput<typeof Row>;

function rows(count: number): Row[] {
  const random = seededRandom(3);
  return Array.from({ length: count }, (_, id) => ({
    id,
    day: `2024-03-0${1 + (id % 3)}`,
    name: id % 11 === 0 ? null : `name-${random.int(50)}-${"é".repeat(id % 4)}`,
    amount: id % 13 === 0 ? null : Math.round(random.next() * 1e6) / 100,
    at: new Date(Date.UTC(2024, 2, 1 + (id % 3), 0, 0, id % 60, id % 1000)).toISOString(),
    tags: Array.from({ length: id % 4 }, (_, i) => `t${i}`),
  }));
}

describe("one Parquet file per partition, row group by row group", () => {
  let dir: { path: string; remove: () => Promise<void> };
  beforeAll(async () => {
    dir = await tempDir();
  });
  afterAll(() => dir.remove());

  test("the footer codec writes back exactly the bytes it read", () => {
    const table = tableFromArrays({ id: Int32Array.from([1, 2, 3]), name: ["a", null, "c"], x: Float64Array.from([0.5, -1e300, 3]) });
    const file = encodeParquet(tableToIPC(table, "stream"), { compression: "zstd", rowGroupSize: 2, metadata: { k: "v" } });
    const length = new DataView(file.buffer, file.byteOffset + file.length - 8, 4).getUint32(0, true);
    const start = file.length - 8 - length;
    const footer = file.subarray(start, file.length - 8);
    const writer = new ThriftWriter();
    writer.writeStruct(new ThriftReader(file, start, file.length - 8).readStruct());
    expect(Buffer.from(writer.bytes()).equals(Buffer.from(footer))).toBe(true);
  });

  test("a broken encoded piece is refused with a message, not written", () => {
    const table = tableFromArrays({ id: Int32Array.from([1, 2, 3]) });
    const file = encodeParquet(tableToIPC(table, "stream"), { compression: "none", rowGroupSize: 10 });
    expect(() => splitParquet(file.subarray(0, file.length - 1))).toThrow(/not a Parquet file/);
    const cut = file.slice();
    // A footer length pointing before the start of the file.
    new DataView(cut.buffer).setUint32(cut.length - 8, cut.length, true);
    expect(() => splitParquet(cut)).toThrow(/footer is longer than the file/);
    const garbled = file.slice();
    garbled.fill(0xff, garbled.length - 8 - 20, garbled.length - 8);
    expect(() => splitParquet(garbled)).toThrow();
  });

  test("a discarded PartFile never lands, even when commit is asked for after the discard", async () => {
    const path = join(dir.path, "discarded.parquet");
    const part = new PartFile(Promise.resolve({ path, tempPath: join(dir.path, ".discarded.tmp") }));
    const piece = encodeParquet(tableToIPC(tableFromArrays({ id: Int32Array.from([1, 2]) }), "stream"), { compression: "none", rowGroupSize: 10 });
    await part.append(Promise.resolve(piece));
    const discarded = part.discard();
    const committed = part.commit({}).catch((e: Error) => e);
    await discarded;
    expect(String(await committed)).toContain("a discarded Parquet file cannot be committed");
    expect(readdirSync(dir.path).filter((f) => f.includes("discarded"))).toEqual([]);
  });

  test("a PartFile joins pieces of any size in the order they were appended, whatever order their encodes finish in", async () => {
    const path = join(dir.path, "joined.parquet");
    const part = new PartFile(Promise.resolve({ path, tempPath: join(dir.path, ".joined.tmp") }));
    const resolvers: ((bytes: Uint8Array) => void)[] = [];
    const sizes = [1, 500, 3];
    const appended = sizes.map(() => part.append(new Promise<Uint8Array>((resolve) => resolvers.push(resolve))));
    let base = 0;
    const pieces = sizes.map((n) => {
      const ids = Int32Array.from({ length: n }, (_, i) => base + i);
      base += n;
      return encodeParquet(tableToIPC(tableFromArrays({ id: ids, label: Array.from(ids, (i) => `row ${i}`) }), "stream"), { compression: "snappy", rowGroupSize: 200 });
    });
    // The last encode finishes first.
    for (const i of [2, 0, 1]) resolvers[i]?.(pieces[i] as Uint8Array);
    await Promise.all(appended);
    const bytes = await part.commit({ "sluice.test": "yes" });
    expect(readFileSync(path).length).toBe(bytes);
    expect(readdirSync(dir.path).filter((f) => f.startsWith(".joined"))).toEqual([]);
    const back = await query(`SELECT id, label FROM read_parquet('${path}')`);
    expect(back.map((r) => r.id)).toEqual(Array.from({ length: 504 }, (_, i) => i));
    expect(back.every((r) => r.label === `row ${r.id}`)).toBe(true);
    const groups = await query(`SELECT row_group_id, row_group_num_rows FROM parquet_metadata('${path}') WHERE path_in_schema = 'id' ORDER BY row_group_id`);
    // 1, then 500 as 200 + 200 + 100, then 3.
    expect(groups.map((g) => Number(g.row_group_num_rows))).toEqual([1, 200, 200, 100, 3]);
    const kv = await query(`SELECT decode(key) AS key, decode(value) AS value FROM parquet_kv_metadata('${path}')`);
    expect(kv.find((e) => e.key === "sluice.test")?.value).toBe("yes");
    expect(kv.some((e) => e.key === "ARROW:schema")).toBe(true);
  });

  test("toParquet writes one file per partition with many row groups; DuckDB and Polars read every value and the statistics", async () => {
    const input = rows(20_000);
    const out = join(dir.path, "events");
    const commits: Commit[] = [];
    const summary = await run(
      from(input).pipe(toParquet(out, { schema: Row, partitionBy: ["day"], rowGroupSize: 1_000, compression: "zstd" })),
      { onValue: (c) => commits.push(c as Commit) },
    );
    expect(summary.written).toBe(input.length);
    expect(commits.length).toBe(3);
    const files = readdirSync(out, { recursive: true }).map(String).filter((f) => f.endsWith(".parquet"));
    expect(files.length).toBe(3);
    expect(readdirSync(out, { recursive: true }).map(String).filter((f) => f.includes(".tmp"))).toEqual([]);

    const back = await query(
      `SELECT id, day, name, amount, strftime("at", '%Y-%m-%dT%H:%M:%S.%g') || 'Z' AS at_text, tags FROM ${dataset(out)} ORDER BY id`,
    );
    expect(back.length).toBe(input.length);
    for (const [i, row] of back.entries()) {
      const want = input[i] as Row;
      expect(row).toEqual({ id: want.id, day: want.day, name: want.name, amount: want.amount, at_text: want.at, tags: want.tags });
    }
    // Statistics per row group agree with the rows DuckDB reads from each group.
    const stats = await query(
      `SELECT file_name, row_group_id, row_group_num_rows AS n, stats_min_value AS lo, stats_max_value AS hi, stats_null_count AS nulls
       FROM parquet_metadata('${out}/**/*.parquet') WHERE path_in_schema = 'id' ORDER BY file_name, row_group_id`,
    );
    expect(stats.length).toBeGreaterThanOrEqual(3 * 6);
    expect(stats.reduce((sum, s) => sum + Number(s.n), 0)).toBe(input.length);
    for (const group of stats) {
      const [check] = await query(`SELECT min(id) AS lo, max(id) AS hi, count(*) AS n FROM read_parquet('${group.file_name}') WHERE id BETWEEN ${group.lo} AND ${group.hi}`);
      expect(Number(check?.lo)).toBe(Number(group.lo));
      expect(Number(check?.hi)).toBe(Number(group.hi));
    }

    // Polars reads the same values.
    const first = join(out, files.sort()[0] as string);
    const frame = pl.readParquet(first);
    const duck = await query(`SELECT count(*) AS n, sum(amount) AS total, count(name) AS names FROM read_parquet('${first}')`);
    expect(frame.height).toBe(Number(duck[0]?.n));
    expect(frame.getColumn("name").nullCount()).toBe(frame.height - Number(duck[0]?.names));
    expect(Math.abs((frame.getColumn("amount").sum() as number) - Number(duck[0]?.total))).toBeLessThan(1e-6);
  });

  test("a file rolls at maxFileBytes of Parquet on disk, every row in exactly one file", async () => {
    const input = rows(30_000);
    const out = join(dir.path, "rolled");
    mkdirSync(out, { recursive: true });
    const commits: Commit[] = [];
    // A source that, after each row group's worth of rows, waits until that row group is on disk
    // (the bytes under the folder grew), as a file source is held while the sink catches up.
    const sizeOf = (f: string) => {
      try {
        const info = statSync(join(out, f));
        return info.isFile() ? info.size : 0;
      } catch {
        return 0; // renamed away between the listing and the stat
      }
    };
    const onDisk = () => readdirSync(out, { recursive: true }).map(String).reduce((sum, f) => sum + sizeOf(f), 0);
    const paced = new Observable<Row>((subscriber) => {
      (async () => {
        for (const [i, row] of input.entries()) {
          if (i % 2_000 === 0 && i > 0) {
            const before = onDisk();
            for (let waited = 0; onDisk() === before && waited < 10_000; waited += 5) await Bun.sleep(5);
          }
          subscriber.next(row);
        }
        subscriber.complete();
      })();
    });
    await run(paced.pipe(toParquet(out, { schema: Row, rowGroupSize: 2_000, maxFileBytes: 64 * 1024 })), {
      onValue: (c) => commits.push(c as Commit),
    });
    expect(commits.length).toBeGreaterThan(2);
    for (const commit of commits.slice(0, -1)) expect(commit.bytes).toBeGreaterThanOrEqual(64 * 1024);
    const [counts] = await query(`SELECT count(*) AS n, count(DISTINCT id) AS d FROM ${dataset(out)}`);
    expect(Number(counts?.n)).toBe(input.length);
    expect(Number(counts?.d)).toBe(input.length);
  });

  test("the metadata kept for an open file does not keep the encoded piece's bytes alive", () => {
    const table = tableFromArrays({ id: Int32Array.from({ length: 50_000 }, (_, i) => i), name: Array.from({ length: 50_000 }, (_, i) => `name ${i}`) });
    const file = encodeParquet(tableToIPC(table, "stream"), { compression: "none", rowGroupSize: 100_000 });
    const piece = splitParquet(file);
    const buffers = new Set<ArrayBufferLike>();
    const visit = (value: unknown): void => {
      if (value instanceof Uint8Array) buffers.add(value.buffer);
      else if (value instanceof Map) for (const field of value.values()) visit((field as { value: unknown }).value);
      else if (value && typeof value === "object" && "items" in value) for (const item of (value as { items: unknown[] }).items) visit(item);
    };
    visit(piece.meta);
    expect(buffers.size).toBeGreaterThan(0);
    for (const buffer of buffers) {
      expect(buffer).not.toBe(file.buffer);
      expect(buffer.byteLength).toBeLessThan(file.length / 10);
    }
  });

  test("a piece whose encode fails after an earlier write failed is not an unhandled rejection", async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on("unhandledRejection", onUnhandled);
    try {
      // The folder cannot be made: a regular file stands where it goes.
      const blocked = join(dir.path, "blocked-file");
      await Bun.write(blocked, "x");
      const part = new PartFile(Promise.resolve({ path: join(blocked, "a.parquet"), tempPath: join(blocked, ".a.tmp") }));
      const piece = encodeParquet(tableToIPC(tableFromArrays({ id: Int32Array.from([1]) }), "stream"), { compression: "none", rowGroupSize: 10 });
      const first = part.append(Promise.resolve(piece));
      // Still encoding when the first write fails; then its encoder is closed under it.
      const second = part.append(Bun.sleep(50).then(() => Promise.reject(new Error("parquet encoders were closed"))));
      expect(((await first.catch((e) => e)) as NodeJS.ErrnoException).code).toBe("EEXIST");
      // The failure every later step reports is the first one.
      expect(((await second.catch((e) => e)) as NodeJS.ErrnoException).code).toBe("EEXIST");
      await part.discard();
      await Bun.sleep(100);
      expect(unhandled).toEqual([]);
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
  });

  test("a run removes the temporary files killed runs left in the folder, and never reads them", async () => {
    const out = join(dir.path, "leftovers");
    mkdirSync(join(out, "day=2024-03-01"), { recursive: true });
    const left = join(out, "day=2024-03-01", ".part-20240301T000000Z-dead00-000000000000.parquet.4242.tmp");
    await Bun.write(left, "PAR1 half a file");
    await run(from(rows(10)).pipe(toParquet(out, { schema: Row, partitionBy: ["day"], mode: "append" })));
    expect(readdirSync(join(out, "day=2024-03-01"))).not.toContain(basename(left));
    const [counts] = await query(`SELECT count(*) AS n FROM ${dataset(out)}`);
    expect(Number(counts?.n)).toBe(10);
  });
});
