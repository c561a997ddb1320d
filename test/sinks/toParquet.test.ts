import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import { concatMap, from, map, Subject, tap } from "rxjs";
import * as v from "valibot";
import { type Commit, type DeadLetter, fromNdjson, run, toParquet } from "../../src/index.ts";
import { deadLetter } from "../../operators/index.ts";
import { dataset, query, tempDir } from "../helpers/duckdb.ts";

const Row = v.object({
  id: v.pipe(v.number(), v.integer()),
  key: v.nullable(v.string()),
  score: v.nullish(v.number()),
  at: v.pipe(v.string(), v.isoTimestamp()),
});
type Row = v.InferOutput<typeof Row>;

const rows = (n: number, key = (i: number): string | null => `k${i % 3}`): Row[] =>
  Array.from({ length: n }, (_, i) => ({ id: i, key: key(i), score: i % 5 ? i / 4 : null, at: "2024-05-01T10:00:00.000001Z" }));

describe("toParquet", () => {
  let dir: { path: string; remove: () => Promise<void> };
  beforeAll(async () => {
    dir = await tempDir();
  });
  afterAll(() => dir.remove());
  const folder = (name: string) => join(dir.path, name);

  test("refuses bounds that cannot work, naming the option, before anything runs", () => {
    const schema = v.object({ id: v.string() });
    // memoryBudget 0 held a push source's writes forever; maxFileRows 0 wrote one file per row.
    for (const [option, value] of [
      ["memoryBudget", 0],
      ["memoryBudget", -5],
      ["maxFileRows", 0],
      ["rowGroupSize", Number.NaN],
      ["maxFileBytes", -1],
      ["maxFileAgeMs", -1],
    ] as const) {
      expect(() => toParquet("out/x", { schema, [option]: value })).toThrow(`toParquet("out/x"): options.${option} must be a number >= `);
    }
    expect(() => toParquet("out/x", { schema, maxFileAgeMs: 0, maxFileRows: 1, memoryBudget: 1 })).not.toThrow();
  });

  test("writes nothing and completes for an empty source", async () => {
    const summary = await run(from([] as Row[]).pipe(toParquet(folder("empty"), { schema: Row })));
    expect(summary.files).toBe(0);
    expect(await readdir(folder("empty"))).toEqual([]);
  });

  test("writes timestamps centuries away from 1970 to the microsecond", async () => {
    const At = v.object({ id: v.number(), at: v.pipe(v.string(), v.isoTimestamp()), when: v.date() });
    const instants = [
      "0001-01-01T00:00:00.000001Z",
      "1600-02-29T12:34:56.789012Z",
      "1969-12-31T23:59:59.999999Z",
      "2300-01-01T00:00:00.5Z",
      "9999-12-31T23:59:59.999999Z",
    ];
    // Dates hold milliseconds: the instant cut to them.
    const records = instants.map((at, id) => ({ id, at, when: new Date(at.replace(/(\.\d{3})\d*Z$/, "$1Z")) }));
    await run(from(records).pipe(toParquet(folder("far"), { schema: At })));
    await query("SET TimeZone = 'UTC'");
    const back = await query(
      `SELECT id, strftime("at", '%Y-%m-%dT%H:%M:%S.%fZ') AS "at", strftime("when", '%Y-%m-%dT%H:%M:%S.%fZ') AS "when" FROM ${dataset(folder("far"))} ORDER BY id`,
    );
    const sixDigits = (text: string) => text.replace(/\.(\d+)Z$/, (_m, f: string) => `.${f.padEnd(6, "0")}Z`);
    expect(back.map((r) => r.at)).toEqual(instants.map(sixDigits));
    expect(back.map((r) => r.when)).toEqual(records.map((r) => sixDigits(r.when.toISOString())));
  });

  test("rolls files over at maxFileRows and DuckDB reads every row back", async () => {
    const commits: Commit[] = [];
    const summary = await run(from(rows(2500)).pipe(toParquet(folder("rollover"), { schema: Row, maxFileRows: 1000 })), {
      onValue: (c) => commits.push(c as Commit),
    });
    expect(summary.files).toBe(3);
    expect(commits.map((c) => c.rows).sort()).toEqual([1000, 1000, 500]);
    const [r] = await query(`SELECT count(*) AS n, sum(id) AS s, count(score) AS scored FROM ${dataset(folder("rollover"))}`);
    expect(r).toEqual({ n: "2500", s: String((2499 * 2500) / 2), scored: "2000" });
  });

  test("escapes partition values so none leaves the dataset folder, and DuckDB reads them back unchanged", async () => {
    const keys = ["../x", "a/b", "", null, "ü ñ", "*", "k=v", "%41", ".."];
    const parent = folder("escape");
    const out = join(parent, "dataset");
    await run(from(rows(keys.length, (i) => keys[i])).pipe(toParquet(out, { schema: Row, partitionBy: ["key"] })));
    const files = (await readdir(parent, { recursive: true })).filter((p) => p.endsWith(".parquet"));
    expect(files.length).toBe(keys.length);
    expect(files.every((p) => resolve(parent, p).startsWith(`${resolve(out)}/`))).toBe(true);
    const back = await query(`SELECT id, key FROM ${dataset(out)} ORDER BY id`);
    expect(back.map((r) => r.key)).toEqual(keys);
  });

  test("refuses to write into a dataset that has files unless told to overwrite or append", async () => {
    const out = folder("modes");
    await run(from(rows(10)).pipe(toParquet(out, { schema: Row })));
    await expect(run(from(rows(10)).pipe(toParquet(out, { schema: Row })))).rejects.toThrow(/already holds 1 Parquet file/);
    await run(from(rows(10)).pipe(toParquet(out, { schema: Row, mode: "append" })));
    expect((await query(`SELECT count(*) AS n FROM ${dataset(out)}`))[0].n).toBe("20");
    await run(from(rows(7)).pipe(toParquet(out, { schema: Row, mode: "overwrite" })));
    expect((await query(`SELECT count(*) AS n FROM ${dataset(out)}`))[0].n).toBe("7");
  });

  test("dead-letters a record whose value does not fit its column, at stage write, and writes the rest", async () => {
    const out = folder("write-stage");
    const dead: DeadLetter[] = [];
    const bad = [{ id: "7", key: "a", at: "2024-05-01T10:00:00Z" }, { id: 1.5, key: "a", at: "2024-05-01T10:00:00Z" }, { id: 2, key: "a", at: "2024-02-30T10:00:00Z" }];
    const summary = await run(
      from([...rows(3), ...bad] as Row[]).pipe(deadLetter((e) => dead.push(e)), toParquet(out, { schema: Row })),
    );
    expect(summary.written).toBe(3);
    expect(dead.map((d) => d.stage)).toEqual(["write", "write", "write"]);
    expect(dead[0].error).toMatch(/column "id" expects a safe integer or a bigint within 64 bits, got string "7"/);
    expect(dead[2].error).toMatch(/column "at"/);
    expect((await query(`SELECT count(*) AS n FROM ${dataset(out)}`))[0].n).toBe("3");
  });

  test("names the 64-bit range when a bigint does not fit an int64 column, and keeps the ends of the range", async () => {
    const out = folder("int64-range");
    const Big = v.object({ id: v.string(), big: v.bigint() });
    const dead: DeadLetter[] = [];
    const summary = await run(
      from([
        { id: "max", big: 2n ** 63n - 1n },
        { id: "min", big: -(2n ** 63n) },
        { id: "over", big: 2n ** 63n },
      ]).pipe(deadLetter((e) => dead.push(e)), toParquet(out, { schema: Big })),
    );
    expect(summary.written).toBe(2);
    expect(dead.map((d) => d.error)).toEqual(['column "big" expects a safe integer or a bigint within 64 bits, got bigint 9223372036854775808n']);
    const back = await query(`SELECT id, big FROM ${dataset(out)} ORDER BY id`);
    expect(back).toEqual([
      { id: "max", big: "9223372036854775807" },
      { id: "min", big: "-9223372036854775808" },
    ]);
  });

  test("commits a partition after maxFileAgeMs even when no new record arrives", async () => {
    const out = folder("age");
    const source = new Subject<Row>();
    const commits: Commit[] = [];
    const done = run(source.pipe(toParquet(out, { schema: Row, maxFileAgeMs: 50 })), { onValue: (c) => commits.push(c as Commit) });
    for (const row of rows(3)) source.next(row);
    const deadline = Date.now() + 5000;
    while (commits.length === 0 && Date.now() < deadline) await Bun.sleep(10);
    expect(commits.length).toBe(1);
    expect((await query(`SELECT count(*) AS n FROM ${dataset(out)}`))[0].n).toBe("3");
    source.complete();
    await done;
  });

  test("keeps buffered bytes within the memory budget by pausing the source", async () => {
    const input = join(dir.path, "budget.ndjson");
    const lines = rows(60_000).map((r) => JSON.stringify({ ...r, key: `${r.key}-${"x".repeat(100)}` }));
    await Bun.write(input, `${lines.join("\n")}\n`);
    const budget = 1 << 20;
    let peak = 0;
    let flowStats: { bufferedBytes: number } | undefined;
    const summary = await run(
      fromNdjson(input, { chunkBytes: 64 * 1024 }).pipe(
        tap(() => {
          if (flowStats) peak = Math.max(peak, flowStats.bufferedBytes);
        }),
        map((r) => r as Row),
        deadLetter(() => {}),
        toParquet(join(dir.path, "budget"), { schema: Row, memoryBudget: budget }),
      ),
      { onStart: (flow) => (flowStats = flow.stats) },
    );
    expect(summary.written).toBe(60_000);
    // The budget is far below the rows' size: they leave memory as row groups of one file.
    const groups = await query(`SELECT count(DISTINCT (file_name, row_group_id)) AS n FROM parquet_metadata('${join(dir.path, "budget")}/*.parquet')`);
    expect(Number(groups[0].n)).toBeGreaterThan(4);
    // One chunk of input may land after the budget is reached, before the source sees the gate.
    expect(peak).toBeLessThan(budget * 2);
  });

  test("concurrent runs reusing each other's column memory write only their own values", async () => {
    // Column buffers go back to a pool once encoded and are filled again without being cleared:
    // a value, a null bit or an offset left over from another run's rows would show here.
    const Item = v.object({
      id: v.pipe(v.number(), v.integer()),
      name: v.nullable(v.string()),
      tags: v.array(v.string()),
      flag: v.nullable(v.boolean()),
      score: v.nullable(v.number()),
    });
    type Item = v.InferOutput<typeof Item>;
    const long = (i: number): Item => ({ id: i, name: `${"long-name-".repeat(20)}${i}é`, tags: ["a", "bb", "ccc", `t${i}`], flag: true, score: i * 1.5 });
    const short = (i: number): Item => ({ id: i, name: i % 3 === 0 ? null : `s${i}`, tags: i % 2 ? [] : [`x${i}`], flag: i % 4 === 0 ? null : false, score: i % 5 ? null : i });
    // Row groups past 32,768 rows grow null bitmaps into the size class new offsets start in.
    const count = 40_000;
    const write = (name: string, make: (i: number) => Item) =>
      run(
        from(Array.from({ length: count }, (_, i) => make(i))).pipe(
          concatMap(async (item) => (item.id % 2_000 === 0 ? new Promise<Item>((r) => setTimeout(() => r(item), 1)) : item)),
          toParquet(folder(name), { schema: Item, rowGroupSize: 35_000, memoryBudget: 256 * 1024 * 1024 }),
        ),
      );
    await Promise.all([write("pool-long", long), write("pool-short", short)]);
    for (const [name, make] of [["pool-long", long], ["pool-short", short]] as const) {
      const got = await query(`SELECT id, name, tags, flag, score FROM ${dataset(folder(name))} ORDER BY id`);
      const want = Array.from({ length: count }, (_, i) => make(i));
      expect(got.length).toBe(want.length);
      for (let i = 0; i < want.length; i++) {
        const row = got[i] as Record<string, unknown>;
        const item = want[i] as Item;
        if (row.name !== item.name || JSON.stringify(row.tags) !== JSON.stringify(item.tags) || row.flag !== item.flag || row.score !== item.score) {
          expect({ name, row }).toEqual({ name, row: item as unknown as Record<string, unknown> });
        }
      }
    }
  });

  test("writes columns whose values hardly repeat without a dictionary, decided on the first 4,096 rows, and keeps every value", async () => {
    const Event = v.object({ id: v.string(), kind: v.string(), amount: v.number(), note: v.nullable(v.string()), at: v.date() });
    const kinds = ["view", "click", "buy"];
    const events = Array.from({ length: 12_000 }, (_, i) => ({
      id: `evt-${i}`,
      kind: kinds[i % 3] as string,
      amount: i * 0.25,
      note: i % 7 ? null : `n${i % 5}`,
      at: new Date(Date.UTC(2024, 0, 1) + i * 1000),
    }));
    // Row groups of 1,000 rows: the first four are written before the choice is made.
    const write = (name: string) =>
      run(from(events).pipe(concatMap(async (e) => e), toParquet(folder(name), { schema: Event, rowGroupSize: 1_000, memoryBudget: 256 * 1024 * 1024 })));
    await write("plain");
    const chunks = await query(`SELECT path_in_schema AS col, row_group_id AS rg, encodings FROM parquet_metadata('${folder("plain")}/*.parquet')`);
    const dictionary = (col: string, rg: number) => String(chunks.find((c) => c.col === col && Number(c.rg) === rg)?.encodings).includes("DICTIONARY");
    const columns = ["id", "kind", "amount", "note", "at"];
    expect(Math.max(...chunks.map((c) => Number(c.rg)))).toBe(11);
    for (let rg = 0; rg < 12; rg++) {
      expect({ rg, dictionary: columns.map((c) => dictionary(c, rg)) }).toEqual({ rg, dictionary: rg < 4 ? [true, true, true, true, true] : [false, true, false, true, false] });
    }
    const got = await query(`SELECT id, kind, amount, note, epoch_ms("at") AS "at" FROM '${folder("plain")}/*.parquet' ORDER BY amount`);
    expect(got).toEqual(events.map((e) => ({ ...e, at: String(e.at.getTime()) })));
    // The choice rests on the rows, not on timing: the same input gives the same column chunks.
    await write("plain-again");
    const layout = (name: string) =>
      query(`SELECT row_group_id AS rg, path_in_schema AS col, encodings, total_compressed_size AS size FROM parquet_metadata('${folder(name)}/*.parquet') ORDER BY rg, col`);
    expect(await layout("plain-again")).toEqual(await layout("plain"));
  });

  test("a process exits when its runs are done: the encoder worker kept for the next run does not hold it open", async () => {
    // Kept workers end after 30 s unused; the process must not wait for that.
    const script = join(dir.path, "exits.ts");
    await Bun.write(
      script,
      `import { from } from "rxjs";
import * as v from "valibot";
import { run, toParquet } from ${JSON.stringify(resolve("src/index.ts"))};
const Row = v.object({ id: v.number() });
for (const name of ["a", "b"]) await run(from([{ id: 1 }, { id: 2 }]).pipe(toParquet(${JSON.stringify(dir.path)} + "/exits-" + name, { schema: Row })));
console.log("done");
`,
    );
    const started = performance.now();
    const child = Bun.spawn(["bun", script], { stdout: "pipe", stderr: "pipe" });
    const exited = await Promise.race([child.exited, Bun.sleep(25_000).then(() => "still running")]);
    child.kill();
    expect({ exited, out: (await new Response(child.stdout).text()).trim() }).toEqual({ exited: 0, out: "done" });
    expect(performance.now() - started).toBeLessThan(25_000);
    expect(await query(`SELECT count(*) AS n FROM '${dir.path}/exits-*/*.parquet'`)).toEqual([{ n: "4" }]);
  });

  test("rejects a schema field it cannot store, naming it, when the sink is created", () => {
    const Bad = v.object({ id: v.pipe(v.string(), v.transform((s) => s.length)) });
    expect(() => toParquet(folder("bad"), { schema: Bad })).toThrow(/schema field "id": a transform/);
    expect(() => toParquet(folder("bad"), { schema: Row, partitionBy: ["nope" as "id"] })).toThrow(/"nope"/);
  });
});
