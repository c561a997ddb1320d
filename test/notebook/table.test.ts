import { describe, expect, test } from "bun:test";
import { makeData, RecordBatch, Schema, Field, Struct, Table, TimestampMicrosecond, tableFromArrays } from "apache-arrow";
import { formatCell, formatTable, truncateCells } from "../../src/notebook/table.ts";
import { rowsOf, toJsonLine } from "../../src/notebook/values.ts";

describe("formatTable", () => {
  test("prints rows wider than `width` as one column │ value block per row, values cut to fit", () => {
    const rows = [
      { id: 1, text: "x".repeat(50) },
      { id: 22, text: null },
    ];
    expect(formatTable(rows, undefined, { width: 30 }).split("\n")).toEqual([
      "─[ row 1 ]────────────────────",
      "id   │ 1",
      `text │ ${"x".repeat(22)}…`,
      "─[ row 2 ]────────────────────",
      "id   │ 22",
      "text │ null",
    ]);
    expect(formatTable(rows, undefined, { width: 200 })).toBe(formatTable(rows));
    expect(formatTable([], ["id"], { width: 1 })).toBe(formatTable([], ["id"]));
  });

  test("gives counts thousands separators and leaves data values as stored", () => {
    expect(formatTable([{ rows: 1234567, nulls: "?", value: 1234567 }], undefined, { counts: ["rows", "nulls"] }).split("\n")).toEqual([
      "rows      │ nulls │ value",
      "──────────┼───────┼────────",
      "1,234,567 │     ? │ 1234567",
    ]);
    expect(formatTable([1, 2, 3], undefined, { limit: 1 }).split("\n").at(-1)).toBe("… 2 more rows");
  });

  test("aligns columns, right-aligns numbers and shows missing values as null", () => {
    const text = formatTable([
      { id: "a", n: 1, ok: true },
      { id: "bbb", n: null },
      { id: "c", n: 12345, ok: false },
    ]);
    expect(text.split("\n")).toEqual([
      "id  │ n     │ ok",
      "────┼───────┼──────",
      "a   │     1 │ true",
      "bbb │  null │ null",
      "c   │ 12345 │ false",
    ]);
  });

  test("shows dates as ISO, nested values and bigints as JSON, binary as hex, and escapes newlines", () => {
    const text = formatTable([{ at: new Date("2024-03-01T00:00:00Z"), tags: ["x", 2n ** 60n], b: new Uint8Array([0, 255]), s: "two\nlines" }]);
    expect(text.split("\n")[2]).toBe('2024-03-01T00:00:00.000Z │ ["x",1152921504606846976] │ 0x00ff │ two\\nlines');
  });

  test("escapes what would break or reorder the table's lines: line and paragraph separators, C1 controls, bidirectional overrides", () => {
    // U+2028 ends a line in some terminals and editors; U+202E turns the rest of a line around (a name that reads as another).
    const values = ["a\u2028b", "a\u2029b", "a\u0085b", "a\u009bb", "user\u202Egnp.exe", "x\u2066y\u2069", "\u200Fz"];
    expect(values.map((v) => formatCell(v))).toEqual(["a\\u2028b", "a\\u2029b", "a\\u0085b", "a\\u009bb", "user\\u202egnp.exe", "x\\u2066y\\u2069", "\\u200fz"]);
    const text = formatTable([{ s: "one\u2028two", t: ["\u202E"] }]);
    expect(text.split("\n")[2]).toBe('one\\u2028two │ ["\\u202e"]');
    // Letters of every script stay as they are.
    expect(formatCell("日本語 عربي ñ")).toBe("日本語 عربي ñ");
  });

  test("cuts long values to the width in terminal cells, ending in …, and keeps wide characters whole", () => {
    expect(truncateCells("abcdefghij", 5)).toBe("abcd…");
    expect(truncateCells("日本語テキスト", 5)).toBe("日本…");
    expect(truncateCells("😀😀😀", 4)).toBe("😀…");
    expect(truncateCells("short", 5)).toBe("short");
    const text = formatTable([{ v: "x".repeat(100) }], undefined, { maxWidth: 10 });
    expect(text.split("\n")[2]).toBe(`${"x".repeat(9)}…`);
  });

  test("shows the columns asked for, in that order, and plain values in one column", () => {
    expect(formatTable([{ a: 1, b: 2 }], ["b", "missing"]).split("\n")[2]).toBe("2 │ null");
    expect(formatTable([1, "two", null]).split("\n")).toEqual(["value", "─────", "1", "two", "null"]);
  });

  test("says how many rows were left out past the limit", () => {
    const text = formatTable(Array.from({ length: 5 }, (_, i) => ({ i })), undefined, { limit: 2 });
    expect(text.split("\n").slice(2)).toEqual(["0", "1", "… 3 more rows"]);
  });

  test("renders an Arrow table with microsecond timestamps at full precision", () => {
    const micros = new BigInt64Array([1_709_251_275_850_002n, -1n]);
    const ts = makeData({ type: new TimestampMicrosecond("UTC"), length: 2, nullCount: 0, data: micros });
    const schema = new Schema([new Field("at", new TimestampMicrosecond("UTC"), false)]);
    const table = new Table([new RecordBatch(schema, makeData({ type: new Struct(schema.fields), length: 2, nullCount: 0, children: [ts] }))]);
    expect(formatTable(table).split("\n").slice(2)).toEqual(["2024-03-01T00:01:15.850002Z", "1969-12-31T23:59:59.999999Z"]);
  });

  test("prints an empty array as a header rule only", () => {
    expect(formatTable([], ["a", "b"])).toBe("a │ b\n──┼──");
  });
});

describe("rowsOf and toJsonLine", () => {
  test("turn Arrow values into plain values and NDJSON with exact 64-bit integers", () => {
    const table = tableFromArrays({ n: new BigInt64Array([2n ** 60n, 5n]), s: ["a", "b"] });
    const rows = rowsOf(table);
    expect(rows).toEqual([{ n: 2n ** 60n, s: "a" }, { n: 5, s: "b" }]);
    expect(rows.map(toJsonLine)).toEqual(['{"n":1152921504606846976,"s":"a"}', '{"n":5,"s":"b"}']);
    expect(formatCell(rows[0].n)).toBe("1152921504606846976");
  });
});
