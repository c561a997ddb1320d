import { describe, expect, test } from "bun:test";
import { tableFromIPC } from "apache-arrow";
import * as v from "valibot";
import { columnsToIPC, RowBuffer } from "../../src/arrow/rows.ts";
import { columnsOf } from "../../src/schema/columns.ts";
import { isoInstant } from "../../src/schema/instant.ts";

// Every column kind, nullable and not, nested in lists and structs.
const Row = v.object({
  text: v.nullable(v.string()),
  required: v.string(),
  n: v.nullish(v.pipe(v.number(), v.integer())),
  big: v.nullable(v.bigint()),
  x: v.optional(v.number()),
  ok: v.nullable(v.boolean()),
  at: v.nullable(isoInstant()),
  day: v.optional(v.pipe(v.string(), v.isoDate())),
  tags: v.array(v.nullable(v.string())),
  place: v.nullable(v.object({ city: v.string(), zip: v.optional(v.string()) })),
  anything: v.unknown(),
});

const TEXTS = ["", "a", "é", "日本語", "🙂 emoji", "quote \" and \\ backslash", "x".repeat(5000)];

function rowAt(i: number): Record<string, unknown> {
  const text = TEXTS[i % TEXTS.length] as string;
  return {
    text: i % 4 === 0 ? null : text,
    required: text,
    n: i % 5 === 0 ? undefined : i % 3 === 0 ? null : i * 1_000_003 - 7,
    big: i % 6 === 0 ? null : (BigInt(i) * 9_007_199_254_740_993n - 5n) % 2n ** 62n,
    x: i % 7 === 0 ? undefined : i % 2 ? Number.NaN : -i / 3,
    ok: i % 3 === 0 ? null : i % 2 === 0,
    at: i % 8 === 0 ? null : `2026-0${1 + (i % 9)}-1${i % 10}T0${i % 10}:00:00.${String(i % 1_000_000).padStart(6, "0")}Z`,
    day: i % 9 === 0 ? undefined : `2026-12-${String(1 + (i % 28)).padStart(2, "0")}`,
    tags: i % 10 === 0 ? [] : [text, null, `t${i}`].slice(0, 1 + (i % 3)),
    place: i % 11 === 0 ? null : { city: text, ...(i % 2 ? { zip: `${i}` } : {}) },
    anything: i % 12 === 0 ? null : { i, list: [text] },
  };
}

describe("RowBuffer.toColumns: the form rows take to an encoder worker", () => {
  // 0 and 1 rows, and lengths around the builders' first growth (1,024 values, 16 KiB of text).
  for (const count of [0, 1, 7, 1023, 1024, 1025, 4099]) {
    test(`${count} rows sent as column buffers give the same Arrow IPC bytes as the buffer itself`, () => {
      const columns = columnsOf(Row as never);
      const direct = new RowBuffer(columns);
      const sent = new RowBuffer(columns);
      for (let i = 0; i < count; i++) {
        expect(direct.append(rowAt(i))).toBeUndefined();
        expect(sent.append(rowAt(i))).toBeUndefined();
      }
      const expected = direct.toIPC();
      const { columns: rows, transfer, bytes } = sent.toColumns();
      // As a worker receives them: moved, not shared.
      const received = structuredClone(rows, { transfer });
      for (const buffer of transfer) expect(buffer.byteLength).toBe(0);
      expect(bytes).toBeGreaterThanOrEqual(0);
      const ipc = columnsToIPC(received);
      expect(Buffer.from(ipc).equals(Buffer.from(expected))).toBe(true);
      // Written into memory that is larger than needed and holds an earlier job's bytes, as an
      // encoder worker's pool gives it: the same bytes, and only as many.
      const dirty = (n: number) => new Uint8Array(n + 100).fill(0xaa).buffer;
      const pooled = columnsToIPC(received, dirty);
      expect(pooled.byteLength).toBe(expected.byteLength);
      expect(Buffer.from(pooled).equals(Buffer.from(expected))).toBe(true);
      const table = tableFromIPC(ipc);
      expect(table.numRows).toBe(count);
      if (count > 0) expect(table.get(count - 1)?.toJSON().required).toBe(rowAt(count - 1).required);
    });
  }

  test("a row taken back (a wrong type in a later column) is not sent", () => {
    const columns = columnsOf(Row as never);
    const buffer = new RowBuffer(columns);
    buffer.append(rowAt(1));
    expect(buffer.append({ ...rowAt(2), tags: "not a list" })).toContain('column "tags"');
    buffer.append(rowAt(3));
    const { columns: rows, transfer } = buffer.toColumns();
    const table = tableFromIPC(columnsToIPC(structuredClone(rows, { transfer })));
    expect(table.numRows).toBe(2);
    expect(table.getChild("required")?.toArray()).toEqual([rowAt(1).required, rowAt(3).required]);
  });
});

describe("RowBuffer: null bits, made at a column's first null", () => {
  const Cells = v.object({
    text: v.nullable(v.string()),
    n: v.nullish(v.number()),
    tags: v.nullable(v.array(v.nullable(v.string()))),
    place: v.nullable(v.object({ city: v.nullable(v.string()) })),
  });
  const cell = (i: number, isNull: boolean) => ({
    text: isNull ? null : `t${i}`,
    n: isNull ? undefined : i / 2,
    tags: isNull ? null : [`a${i}`, i % 3 === 0 ? null : `b${i}`],
    place: isNull ? null : { city: i % 5 === 0 ? null : `c${i}` },
  });
  const valuesOf = (rows: Record<string, unknown>[]) =>
    rows.map((r) => ({ text: r.text ?? null, n: r.n ?? null, tags: r.tags ?? null, place: r.place ?? null }));

  // The first null at the first row, inside the first byte, at a byte boundary, past the first
  // 128-byte bitmap; none; every row; every other row.
  const patterns: [string, (i: number) => boolean][] = [
    ["no nulls", () => false],
    ...[0, 1, 7, 8, 9, 1000, 1030].map((k): [string, (i: number) => boolean] => [`first null at row ${k}, then every 13th`, (i) => i === k || (i > k && i % 13 === 0)]),
    ["every row null", () => true],
    ["every other row null", (i) => i % 2 === 1],
  ];
  for (const [name, isNull] of patterns) {
    test(`${name}: Arrow reads back each value and each null`, () => {
      const buffer = new RowBuffer(columnsOf(Cells as never));
      const rows = Array.from({ length: 1100 }, (_, i) => cell(i, isNull(i)));
      for (const row of rows) expect(buffer.append(row)).toBeUndefined();
      const { columns: sent, transfer } = buffer.toColumns();
      const table = tableFromIPC(columnsToIPC(structuredClone(sent, { transfer })));
      const read = rows.map((_, i) => {
        const tags = table.getChild("tags")?.get(i);
        const place = table.getChild("place")?.get(i);
        return { text: table.getChild("text")?.get(i), n: table.getChild("n")?.get(i), tags: tags ? [...tags] : null, place: place ? { city: place.city } : null };
      });
      expect(read as unknown[]).toEqual(valuesOf(rows));
      expect(table.getChild("text")?.nullCount).toBe(rows.filter((r) => r.text === null).length);
    });
  }

  test("a row taken back at its column's first null leaves no null behind", () => {
    const buffer = new RowBuffer(columnsOf(Cells as never));
    for (let i = 0; i < 20; i++) buffer.append(cell(i, false));
    // Null text, then a wrong type in a later column: the row goes back whole.
    expect(buffer.append({ ...cell(20, true), place: "not an object" })).toContain('column "place"');
    buffer.append(cell(21, false));
    const table = tableFromIPC(buffer.toIPC());
    expect(table.numRows).toBe(21);
    expect(table.getChild("text")?.nullCount).toBe(0);
    expect(table.getChild("text")?.toArray()).toEqual([...Array.from({ length: 20 }, (_, i) => `t${i}`), "t21"]);
  });
});

describe("RowBuffer: column names that are not plain identifiers", () => {
  // Each buffer's appender is generated code with the names as string literals: a name must
  // stay a name, whatever characters it holds.
  // biome-ignore lint/suspicious/noTemplateCurlyInString: a column name that looks like a template
  const names = ['a"b', "back\\slash", "new\nline", "sep\u2028arator", "${x}", "'); throw new Error('x'); ('", "é 日本", "constructor", "toString", "__proto__", "1st"];

  test("reads each field by its exact name, inherited names as own fields only", () => {
    const entries = Object.fromEntries(names.map((name) => [name, v.nullable(v.string())]));
    const columns = columnsOf(v.object(entries) as never);
    const buffer = new RowBuffer(columns);
    const full: Record<string, unknown> = {};
    for (const [i, name] of names.entries()) Object.defineProperty(full, name, { value: `v${i}`, enumerable: true });
    expect(buffer.append(full)).toBeUndefined();
    // Without fields of its own, a record gives nulls, not what it inherits.
    expect(buffer.append({})).toBeUndefined();
    const table = tableFromIPC(buffer.toIPC());
    expect(table.schema.fields.map((f) => f.name)).toEqual(names);
    for (const i of names.keys()) expect([...(table.getChildAt(i)?.toArray() ?? [])]).toEqual([`v${i}`, null]);
    // A wrong type is named by its column.
    expect(buffer.append({ ...full, [names[0] as string]: 5 })).toContain('column "a"b" expects a string');
  });
});
