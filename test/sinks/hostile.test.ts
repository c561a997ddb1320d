import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { map } from "rxjs";
import * as v from "valibot";
import { deadLetter, validate } from "../../operators/index.ts";
import type { DeadLetter } from "../../src/deadletter/entry.ts";
import { carry, fromNdjson, fromPush, run, toParquet } from "../../src/index.ts";
import { dataset, query, tempDir } from "../helpers/duckdb.ts";

const Row = v.object({ id: v.number(), key: v.string(), payload: v.unknown() });

describe("toParquet under hostile records", () => {
  let dir: { path: string; remove: () => Promise<void> };
  beforeAll(async () => {
    dir = await tempDir();
  });
  afterAll(() => dir.remove());

  test("dead-letters a record nested too deep to serialise and writes every other record", async () => {
    // Built in code: a JSON source refuses such a line at stage parse already (see ndjson.test.ts).
    let deep: unknown = [];
    for (let i = 0; i < 100_000; i++) deep = [deep];
    const lines = Array.from({ length: 300 }, (_, i) => JSON.stringify({ id: i, key: "a", payload: { n: i } }));
    const input = join(dir.path, "deep.ndjson");
    await Bun.write(input, `${lines.join("\n")}\n`);
    const entries: DeadLetter[] = [];
    const out = join(dir.path, "deep-out");
    const deepen = map(carry((r: unknown) => ((r as { id: number }).id === 150 ? { ...(r as object), payload: deep } : r)));
    const summary = await run(fromNdjson(input).pipe(deepen, validate(Row), deadLetter((e) => entries.push(e)), toParquet(out, { schema: Row })));
    expect(summary.written).toBe(299);
    expect(summary.deadLettered).toBe(1);
    expect(entries).toHaveLength(1);
    expect(entries[0]).toMatchObject({ stage: "write", source: input, line: 151 });
    expect(entries[0]?.error).toContain('column "payload"');
    const ids = await query(`SELECT id FROM ${dataset(out)} ORDER BY id`);
    expect(ids.map((r) => Number(r.id))).toEqual(Array.from({ length: 300 }, (_, i) => i).filter((i) => i !== 150));
  });

  test("dead-letters text holding a lone surrogate, saying so, and writes the rest unchanged", async () => {
    const out = join(dir.path, "surrogate-out");
    const Text = v.object({ id: v.number(), key: v.string(), payload: v.unknown() });
    const records = [
      { id: 1, key: "a\uD800b", payload: null },
      { id: 2, key: "pair \uD83C\uDF89", payload: null },
      { id: 3, key: "\uDFFF", payload: null },
    ];
    const entries: DeadLetter[] = [];
    const source = fromPush<(typeof records)[number]>({ name: "texts" });
    const done = run(source.pipe(deadLetter((e) => entries.push(e)), toParquet(out, { schema: Text })));
    for (const r of records) source.push({ ...r });
    source.end();
    const summary = await done;
    expect(summary.written).toBe(1);
    expect(entries.map((e) => `${e.stage} ${e.line} ${e.error}`)).toEqual([
      'write 1 column "key" is not well-formed Unicode (it holds a lone surrogate, which has no UTF-8 form): "a\\ud800b"',
      'write 3 column "key" is not well-formed Unicode (it holds a lone surrogate, which has no UTF-8 form): "\\udfff"',
    ]);
    expect(await query(`SELECT key FROM ${dataset(out)}`)).toEqual([{ key: "pair \uD83C\uDF89" }]);
  });

  test("names the element or field of a list or struct that does not fit, and why, and writes the rest", async () => {
    const Nested = v.object({ id: v.number(), tags: v.array(v.string()), box: v.object({ n: v.number(), deep: v.array(v.object({ t: v.string() })) }) });
    const ok = { tags: ["a"], box: { n: 1, deep: [{ t: "x" }] } };
    // Built in code with the wrong types on purpose, as a map or an enrichment might.
    const records: Record<string, unknown>[] = [
      { id: 1, ...ok, tags: ["fine", "a\uD800b"] },
      { id: 2, ...ok, box: { n: "1", deep: [] } },
      { id: 3, ...ok, box: { n: 1, deep: [{ t: "x" }, { t: 7 }] } },
      { id: 4, ...ok, box: { n: 1, deep: [{ t: "x" }, null] } },
      { id: 5, ...ok },
    ];
    const entries: DeadLetter[] = [];
    const out = join(dir.path, "nested-out");
    const source = fromPush<v.InferOutput<typeof Nested>>({ name: "nested" });
    const done = run(source.pipe(deadLetter((e) => entries.push(e)), toParquet(out, { schema: Nested })));
    for (const r of records) source.push(r as v.InferOutput<typeof Nested>);
    source.end();
    expect((await done).written).toBe(1);
    expect(entries.map((e) => `${e.stage} ${e.line} ${e.error.replace(/, got .*?: column/, ", got …: column")}`)).toEqual([
      'write 1 column "tags" expects an array of the declared types, got …: column "tags.1" is not well-formed Unicode (it holds a lone surrogate, which has no UTF-8 form): "a\\ud800b"',
      'write 2 column "box" expects an object of the declared types, got …: column "box.n" expects a number, got string "1"',
      'write 3 column "box" expects an object of the declared types, got …: column "box.deep.1.t" expects a string, got number 7',
      'write 4 column "box" expects an object of the declared types, got …: column "box.deep.1" is required but the value is null',
    ]);
    expect(await query(`SELECT id::INT AS id, tags, box.n AS n FROM ${dataset(out)}`)).toEqual([{ id: 5, tags: ["a"], n: 1 }]);
  });

  test("writes 1,500 partitions in a process allowed 200 open files: files are open only while written", async () => {
    const out = join(dir.path, "many-partitions");
    const input = join(dir.path, "many-partitions.ndjson");
    // Each key's rows come far apart, so every partition's file stays open until the end.
    await Bun.write(input, `${Array.from({ length: 3000 }, (_, i) => JSON.stringify({ id: i, key: `k${i % 1500}`, payload: null })).join("\n")}\n`);
    const script = join(dir.path, "many-partitions.ts");
    await Bun.write(
      script,
      `import * as v from "valibot";
import { fromNdjson, run, toParquet } from ${JSON.stringify(join(import.meta.dir, "../../src/index.ts"))};
const Row = v.object({ id: v.number(), key: v.string(), payload: v.unknown() });
const s = await run(fromNdjson(${JSON.stringify(input)}).pipe(toParquet(${JSON.stringify(out)}, { schema: Row, partitionBy: ["key"] })));
console.log(JSON.stringify({ written: s.written, files: s.files }));`,
    );
    const child = Bun.spawn(["bash", "-c", `ulimit -n 200 && exec bun ${JSON.stringify(script)}`], { stdout: "pipe", stderr: "pipe", cwd: join(import.meta.dir, "../..") });
    const [stdout, stderr, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
    expect({ code, stderr: stderr.includes("EMFILE") ? stderr.slice(0, 300) : "" }).toEqual({ code: 0, stderr: "" });
    expect(JSON.parse(stdout)).toEqual({ written: 3000, files: 1500 });
    const [r] = await query(`SELECT count(*) AS n, count(DISTINCT id) AS ids, count(DISTINCT key) AS keys FROM ${dataset(out)}`);
    expect(r).toEqual({ n: "3000", ids: "3000", keys: "1500" });
  });

  test("dead-letters a partition value too long for a folder name at stage write and writes the rest", async () => {
    const long = "x".repeat(300);
    const lines = Array.from({ length: 50 }, (_, i) => JSON.stringify({ id: i, key: i === 7 ? long : `k${i % 3}`, payload: null }));
    const input = join(dir.path, "long.ndjson");
    await Bun.write(input, `${lines.join("\n")}\n`);
    const entries: DeadLetter[] = [];
    const out = join(dir.path, "long-out");
    const summary = await run(
      fromNdjson(input).pipe(validate(Row), deadLetter((e) => entries.push(e)), toParquet(out, { schema: Row, partitionBy: ["key"] })),
    );
    expect(summary.written).toBe(49);
    expect(entries).toHaveLength(1);
    expect(entries[0]).toMatchObject({ stage: "write", line: 8 });
    expect(entries[0]?.error).toContain("too long for a folder name");
    const rows = await query(`SELECT count(*) AS n, count(DISTINCT key) AS k FROM ${dataset(out)}`);
    expect(Number(rows[0]?.n)).toBe(49);
    expect(Number(rows[0]?.k)).toBe(3);
  });

  test("keeps a null partition value and the text \"null\" in separate partitions, with one or two partition columns", async () => {
    const Keyed = v.object({ id: v.number(), key: v.nullable(v.string()), other: v.nullable(v.string()) });
    const records = [
      { id: 1, key: null, other: "a" },
      { id: 2, key: "null", other: "a" },
      { id: 3, key: null, other: "null" },
      { id: 4, key: "null", other: null },
      { id: 5, key: "", other: "" },
    ];
    const input = join(dir.path, "nulls.ndjson");
    await Bun.write(input, `${records.map((r) => JSON.stringify(r)).join("\n")}\n`);
    for (const partitionBy of [["key"], ["key", "other"]] as const) {
      const commits: { partition: Readonly<Record<string, string | null>>; rows: number }[] = [];
      await run(
        fromNdjson(input).pipe(
          validate(Keyed),
          deadLetter(() => {}),
          toParquet(join(dir.path, `nulls-${partitionBy.length}`), { schema: Keyed, partitionBy: [...partitionBy] }),
        ),
        { onValue: (commit) => commits.push(commit as (typeof commits)[number]) },
      );
      const seen = commits.map((c) => JSON.stringify(partitionBy.map((k) => c.partition[k] ?? null))).sort();
      const expected = [...new Set(records.map((r) => JSON.stringify(partitionBy.map((k) => r[k]))))].sort();
      expect(seen).toEqual(expected);
    }
  });
});
