import { describe, expect, test } from "bun:test";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { escapePartitionText, NULL_PARTITION, partitionSegment } from "../../src/parquet/partition.ts";
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
  ])("escapes %j as %j", (value, expected) => {
    expect(partitionSegment("country", value)).toBe(expected);
  });

  test("names the null partition the way Hive, Spark and DuckDB do", () => {
    expect(partitionSegment("country", null)).toBe("country=__HIVE_DEFAULT_PARTITION__");
    expect(NULL_PARTITION).toBe("__HIVE_DEFAULT_PARTITION__");
  });

  test("escapes the key as well as the value", () => {
    expect(partitionSegment("a/b=c", "x")).toBe("a%2Fb%3Dc=x");
    expect(partitionSegment("../k", "x")).toBe("..%2Fk=x");
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

  test("is read back as the original values by DuckDB's hive partitioning", async () => {
    const values = ["a/b", "../x", "*", "k=v", "héllo 😀", "a%b", " spaced ", "~.-_", "=", "!'()"];
    const dir = await tempDir();
    try {
      for (const [i, value] of values.entries()) {
        const folder = join(dir.path, partitionSegment("country", value));
        await mkdir(folder, { recursive: true });
        await query(`COPY (SELECT ${i} AS i) TO '${join(folder, "part.parquet")}' (FORMAT parquet)`);
      }
      const nullFolder = join(dir.path, partitionSegment("country", null));
      await mkdir(nullFolder, { recursive: true });
      await query(`COPY (SELECT ${values.length} AS i) TO '${join(nullFolder, "part.parquet")}' (FORMAT parquet)`);

      const rows = await query(`SELECT i, country FROM ${dataset(dir.path)} ORDER BY i`);
      expect(rows).toEqual([...values.map((country, i) => ({ i, country })), { i: values.length, country: null }]);
    } finally {
      await dir.remove();
    }
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
