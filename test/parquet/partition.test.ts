import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import pl from "nodejs-polars";
import { from } from "rxjs";
import * as v from "valibot";
import { deadLetter } from "../../operators/index.ts";
import { listDataset } from "../../src/dataset/files.ts";
import { readDataset } from "../../src/dataset/read.ts";
import type { DeadLetter } from "../../src/deadletter/entry.ts";
import { run } from "../../src/run/run.ts";
import { inspectDataset } from "../../src/parquet/metadata.ts";
import { escapePartitionText, NULL_PARTITION, partitionKeyProblem, partitionSegment } from "../../src/parquet/partition.ts";
import { SchemaError } from "../../src/schema/columns.ts";
import { toParquet } from "../../src/sinks/toParquet.ts";
import { dataset, query, tempDir } from "../helpers/duckdb.ts";

// Values a partition column can hold that must never become a path or a glob.
const HOSTILE: readonly string[] = [
  "../x",
  "..",
  ".",
  "a/b",
  "/etc/passwd",
  "a\\b",
  "",
  " ",
  "*",
  "?",
  "[a-z]",
  "{a,b}",
  "=",
  "k=v",
  "a%2Fb",
  "%",
  "#",
  "!'()",
  "new\nline",
  "tab\there",
  "nul\u0000byte",
  "héllo",
  "日本語",
  "😀",
  "Ω≈ç√",
  "e\u0301",
  NULL_PARTITION.toLowerCase(),
];

describe("partitionSegment", () => {
  test.each([
    ["../x", "country=..%2Fx"],
    ["a/b", "country=a%2Fb"],
    ["", "country="],
    ["*", "country=%2A"],
    ["=", "country=%3D"],
    ["k=v", "country=k%3Dv"],
    ["héllo", "country=h%C3%A9llo"],
    ["😀", "country=%F0%9F%98%80"],
    ["a b", "country=a%20b"],
    ["%", "country=%25"],
    ["!'()", "country=%21%27%28%29"],
    ["AZaz09-_.~", "country=AZaz09-_.~"],
    // DuckDB reads a raw null, in any case, as SQL NULL.
    ["null", "country=%6Eull"],
    ["NULL", "country=%4EULL"],
    ["nUlL", "country=%6EUlL"],
    ["nullx", "country=nullx"],
  ])("escapes %j as %j", (value, expected) => {
    expect(partitionSegment("country", value)).toBe(expected);
  });

  test("names the null partition the way Hive, Spark and DuckDB do", () => {
    expect(partitionSegment("country", null)).toBe("country=__HIVE_DEFAULT_PARTITION__");
    expect(NULL_PARTITION).toBe("__HIVE_DEFAULT_PARTITION__");
  });

  test("writes the key as it is, since readers do not decode keys", () => {
    expect(partitionSegment("MPAA Rating", "PG-13")).toBe("MPAA Rating=PG-13");
    expect(partitionSegment("_source", "x")).toBe("_source=x");
    expect(partitionSegment("100%", "x")).toBe("100%=x");
  });

  test.each([
    ["a/b", "it holds '/'"],
    ["a=b", "it holds '='"],
    ["a\\b", "it holds '\\'"],
    ["new\nline", "it holds the control character U+000A"],
    ["", "it is empty"],
    ["k\ud800", "it is not well-formed Unicode"],
    ["k".repeat(300), "it is longer than 223 bytes"],
  ])("refuses the key %j: %s", (key, problem) => {
    expect(partitionKeyProblem(key)).toContain(problem);
    expect(() => partitionSegment(key, "x")).toThrow(problem);
  });

  test("refuses the text __HIVE_DEFAULT_PARTITION__, which every reader takes for null", () => {
    expect(() => partitionSegment("country", NULL_PARTITION)).toThrow('partition value of "country" is the text __HIVE_DEFAULT_PARTITION__');
  });

  test.each(HOSTILE.map((value) => [value]))("never puts a separator, glob or control character in the segment for %j", (value) => {
    const segment = partitionSegment("k", value);
    expect(segment).not.toContain("/");
    expect(segment).not.toContain("\\");
    expect(segment).not.toMatch(/[*?[\]{}]/);
    for (const char of segment) expect(char.charCodeAt(0) > 0x20 && char !== "\u007f").toBe(true);
    // Exactly one "=": the one between key and value.
    expect(segment.split("=")).toHaveLength(2);
    expect(segment.startsWith("k=")).toBe(true);
    // A segment is never "." or "..": it always starts with the key.
    expect(segment).not.toBe(".");
    expect(segment).not.toBe("..");
    // Only unreserved characters and percent escapes remain.
    expect(segment.slice(2)).toMatch(/^(?:[A-Za-z0-9\-_.~]|%[0-9A-F]{2})*$/);
  });

  test("decodes back to the value it escapes", () => {
    for (const value of HOSTILE) {
      expect(decodeURIComponent(escapePartitionText(value))).toBe(value);
    }
  });

  test("gives different values different segments", () => {
    const segments = new Set(HOSTILE.map((value) => partitionSegment("k", value)));
    expect(segments.size).toBe(new Set(HOSTILE).size);
  });

  test("escapes or clearly rejects a value holding a lone surrogate", () => {
    let segment: string | undefined;
    let message = "";
    try {
      segment = partitionSegment("country", "a\ud800b");
    } catch (error) {
      message = (error as Error).message;
    }
    if (segment !== undefined) {
      expect(segment).not.toContain("/");
      expect(segment).not.toBe(partitionSegment("country", "a\ufffdb"));
    } else {
      expect(message).toContain("country");
    }
  });
});

describe("partition folders, read back by DuckDB, Polars and sluice", () => {
  let dir: { path: string; remove: () => Promise<void> };
  beforeAll(async () => {
    dir = await tempDir();
  });
  afterAll(() => dir.remove());

  // Values that readers misread unless escaped right: null-like text (DuckDB's NULL), escapes,
  // separators, the null marker's look-alikes, text that looks like another type.
  const VALUES: readonly (string | null)[] = [
    "null",
    "NULL",
    "Null",
    "nUlL",
    " null",
    "null ",
    "",
    "/",
    "a/b",
    "=",
    "k=v",
    "%",
    "%41",
    "a%2Fb",
    "+",
    "a b",
    "héllo",
    "日本",
    "😀",
    "e\u0301",
    "__hive_default_partition__",
    "__HIVE_DEFAULT_PARTITION__x",
    "x__HIVE_DEFAULT_PARTITION__",
    "../x",
    ".",
    "..",
    "*",
    "'",
    '"x"',
    "new\nline",
    "007",
    "2024-03-01",
    "true",
    null,
  ];
  const Row = v.object({ id: v.number(), key: v.nullable(v.string()) });

  test("writes hostile partition values that DuckDB, Polars and readDataset each read back as written", async () => {
    const out = join(dir.path, "values");
    const records = [...VALUES.map((key, id) => ({ id, key })), { id: 1000, key: NULL_PARTITION }];
    const entries: DeadLetter[] = [];
    const summary = await run(from(records).pipe(deadLetter((e) => entries.push(e)), toParquet(out, { schema: Row, partitionBy: ["key"] })));
    expect(summary.written).toBe(VALUES.length);
    // The null marker as text cannot be written so that any reader reads it back: refused.
    expect(entries).toHaveLength(1);
    expect(entries[0]).toMatchObject({ stage: "write" });
    expect(entries[0]?.error).toContain("is the text __HIVE_DEFAULT_PARTITION__");

    const expected = VALUES.map((key, id) => ({ id, key }));
    // DuckDB and Polars take the value from the folder name, not from the column in the file.
    const duck = await query(`SELECT id::INT AS id, key::VARCHAR AS key FROM ${dataset(out)} ORDER BY id`);
    expect(duck).toEqual(expected);
    const polars = pl.scanParquet(`${out}/**/*.parquet`, { hivePartitioning: true } as never).collectSync().sort("id");
    expect(polars.toRecords().map((r) => ({ id: Number(r.id), key: r.key }))).toEqual(expected);
    // sluice reads the values from the folder names for its listing and its partition filter.
    const listing = await listDataset(out);
    expect(listing.files.map((f) => f.partition.key ?? null).sort()).toEqual([...VALUES].sort());
    for (const [id, key] of VALUES.entries()) {
      const table = await readDataset(out, { where: { key }, columns: ["id", "key"] });
      expect(table.toArray().map((r) => ({ id: Number(r.id), key: r.key }))).toEqual([{ id, key }]);
    }
  });

  test("refuses, when the sink is created, a partition key that readers cannot name", () => {
    for (const key of ["a/b", "a=b", "a\\b", "new\nline"]) {
      const Keyed = v.object({ id: v.number(), [key]: v.string() });
      let error: unknown;
      try {
        toParquet(join(dir.path, "never"), { schema: Keyed, partitionBy: [key] as never });
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(SchemaError);
      expect((error as Error).message).toStartWith(`schema field "${key}": cannot name a partition folder`);
    }
  });

  test("writes keys with spaces, non-ASCII, % and a leading _ or . as they are, and every reader names them so", async () => {
    const keys = ["MPAA Rating", "prénom", "100%", "_source", ".hidden"] as const;
    const Keyed = v.object({ id: v.number(), "MPAA Rating": v.string(), prénom: v.string(), "100%": v.string(), _source: v.string(), ".hidden": v.string() });
    const records = [0, 1, 2].map((id) => ({ id, "MPAA Rating": `PG-${id}`, prénom: "é", "100%": "x", _source: id % 2 ? "web" : "app", ".hidden": "h" }));
    const out = join(dir.path, "keys");
    await run(from(records).pipe(toParquet(out, { schema: Keyed, partitionBy: [...keys] })));

    const quoted = keys.map((k) => `"${k}"`).join(", ");
    const duck = await query(`SELECT id::INT AS id, ${quoted} FROM ${dataset(out)} ORDER BY id`);
    expect(duck).toEqual(records);
    const polars = pl.scanParquet(`${out}/**/*.parquet`, { hivePartitioning: true } as never).collectSync().sort("id");
    expect(polars.columns).toEqual(expect.arrayContaining([...keys]));
    expect(polars.toRecords().map((r) => ({ ...r, id: Number(r.id) }))).toEqual(records);
    // sluice's readers (readDataset, and through it head; inspect) show every key.
    expect((await listDataset(out)).partitionKeys).toEqual([...keys]);
    const table = await readDataset(out, { where: { _source: "web", ".hidden": "h" } });
    expect(table.toArray().map((r) => Number(r.id))).toEqual([1]);
    const info = await inspectDataset(out);
    expect(info.partitionKeys).toEqual([...keys]);
    expect(info.rows).toBe(3);
  });
});
