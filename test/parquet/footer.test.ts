import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { decodeFileMetaData, ParquetFooterError, readCompactStruct, readFooter, type SchemaElement } from "../../src/parquet/footer.ts";
import { decodeStatistic, inspectDataset } from "../../src/parquet/metadata.ts";
import { query, tempDir } from "../helpers/duckdb.ts";

const bytes = (...values: number[]) => new Uint8Array(values);

describe("Thrift compact reader", () => {
  // field 1 i32 -3; field 3 binary "hi"; field 20 (long form) i64 2^40; field 21 true;
  // field 22 list of 16 i32 (long list header); field 23 struct { 1: i32 1 }; stop.
  const sixteen = Array.from({ length: 16 }, (_, i) => i * 2); // zigzag of 0..15
  const encoded = bytes(
    0x15, 0x05,
    0x28, 0x02, 0x68, 0x69,
    0x06, 0x28, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40,
    0x11,
    0x19, 0xf5, 0x10, ...sixteen,
    0x1c, 0x15, 0x02, 0x00,
    0x00,
  );

  test("decodes short and long field headers, zigzag integers, binary, booleans, long lists and nested structs", () => {
    const { fields, length } = readCompactStruct(encoded);
    expect(length).toBe(encoded.length);
    expect(fields.get(1)).toBe(-3);
    expect(new TextDecoder().decode(fields.get(3) as Uint8Array)).toBe("hi");
    expect(fields.get(20)).toBe(2n ** 40n);
    expect(fields.get(21)).toBe(true);
    expect(fields.get(22)).toEqual(Array.from({ length: 16 }, (_, i) => i));
    expect((fields.get(23) as Map<number, unknown>).get(1)).toBe(1);
  });

  test("refuses truncated bytes with a clear error instead of reading past the end", () => {
    for (const cut of [1, 3, 9, 20, encoded.length - 1]) {
      expect(() => readCompactStruct(encoded.subarray(0, cut))).toThrow(ParquetFooterError);
    }
    expect(() => readCompactStruct(encoded.subarray(0, 9))).toThrow(/truncated or corrupt/);
  });

  test("refuses a list that claims more elements than there are bytes, without allocating it", () => {
    // field 1: list of i32 with 2^28 elements, then nothing.
    expect(() => readCompactStruct(bytes(0x19, 0xf5, 0x80, 0x80, 0x80, 0x80, 0x01))).toThrow(/declares a list of 268435456 elements/);
  });

  test("refuses an unknown type id", () => {
    expect(() => readCompactStruct(bytes(0x1d, 0x00))).toThrow(/unknown Thrift type 13/);
  });

  test("reports a missing required field of FileMetaData", () => {
    // Only field 1 (version) present.
    expect(() => decodeFileMetaData(bytes(0x15, 0x02, 0x00))).toThrow(/missing a required field \(id 2\)/);
  });
});

describe("statistics decoding", () => {
  const le32 = (n: number) => new Uint8Array(new Int32Array([n]).buffer);
  const le64 = (n: bigint) => new Uint8Array(new BigInt64Array([n]).buffer);
  const f32 = (n: number) => new Uint8Array(new Float32Array([n]).buffer);
  const text = (s: string) => new TextEncoder().encode(s);
  const el = (e: Omit<SchemaElement, "name">): SchemaElement => ({ name: "c", ...e });

  test.each([
    ["a date", le32(19_783), el({ type: "INT32", logicalType: { type: "DATE" } }), "2024-03-01"],
    ["a date before 1970", le32(-1), el({ type: "INT32", convertedType: "DATE" }), "1969-12-31"],
    ["a negative int32", le32(-7), el({ type: "INT32" }), -7],
    ["an unsigned int32 above 2^31", le32(-1), el({ type: "INT32", logicalType: { type: "INTEGER", bitWidth: 32, isSigned: false } }), 4_294_967_295],
    ["an int64 beyond 2^53 as text", le64(2n ** 60n), el({ type: "INT64" }), "1152921504606846976"],
    ["an unsigned int64 above 2^63 as text", le64(-1n), el({ type: "INT64", convertedType: "UINT_64" }), "18446744073709551615"],
    [
      "a microsecond timestamp before 1970",
      le64(-1n),
      el({ type: "INT64", logicalType: { type: "TIMESTAMP", unit: "MICROS", isAdjustedToUTC: true } }),
      "1969-12-31T23:59:59.999999Z",
    ],
    [
      "a nanosecond timestamp without time zone",
      le64(1_709_251_275_850_002_123n),
      el({ type: "INT64", logicalType: { type: "TIMESTAMP", unit: "NANOS", isAdjustedToUTC: false } }),
      "2024-03-01T00:01:15.850002123",
    ],
    ["a legacy millisecond timestamp", le64(1_709_251_275_850n), el({ type: "INT64", convertedType: "TIMESTAMP_MILLIS" }), "2024-03-01T00:01:15.850Z"],
    ["a time of day", le32(3_723_004), el({ type: "INT32", logicalType: { type: "TIME", unit: "MILLIS", isAdjustedToUTC: true } }), "01:02:03.004"],
    ["an int64 decimal", le64(-12_345n), el({ type: "INT64", logicalType: { type: "DECIMAL", scale: 3, precision: 18 } }), "-12.345"],
    ["a small decimal", le32(5), el({ type: "INT32", convertedType: "DECIMAL", scale: 2, precision: 4 }), "0.05"],
    ["a fixed-length decimal", bytes(0xff, 0xfe), el({ type: "FIXED_LEN_BYTE_ARRAY", typeLength: 2, logicalType: { type: "DECIMAL", scale: 1, precision: 4 } }), "-0.2"],
    ["a float", f32(1.5), el({ type: "FLOAT" }), 1.5],
    ["a half float", bytes(0x00, 0x3e), el({ type: "FIXED_LEN_BYTE_ARRAY", typeLength: 2, logicalType: { type: "FLOAT16" } }), 1.5],
    ["a boolean", bytes(1), el({ type: "BOOLEAN" }), true],
    ["a UTF-8 string", text("ünï😀"), el({ type: "BYTE_ARRAY", logicalType: { type: "STRING" } }), "ünï😀"],
    ["a legacy UTF8 string", text("abc"), el({ type: "BYTE_ARRAY", convertedType: "UTF8" }), "abc"],
    ["unannotated binary as hex", bytes(0, 255), el({ type: "BYTE_ARRAY" }), "0x00ff"],
    ["an INT96 timestamp", new Uint8Array([...le64(1_000n), ...le32(2_440_589)]), el({ type: "INT96" }), "1970-01-02T00:00:00.000001000"],
  ] as const)("decodes %s", (_name, encoded, element, expected) => {
    expect(decodeStatistic(encoded, element)?.value).toEqual(expected);
  });

  test("ignores a statistic whose size does not fit its type", () => {
    expect(decodeStatistic(bytes(1, 2, 3), el({ type: "INT32" }))).toBeUndefined();
  });
});

describe("footer of real files", () => {
  let dir: { path: string; remove: () => Promise<void> };
  beforeAll(async () => {
    dir = await tempDir();
  });
  afterAll(() => dir.remove());

  test("combines string maxima across files in byte order, not JavaScript's UTF-16 order", async () => {
    const folder = join(dir.path, "order");
    await mkdir(folder);
    await query(`COPY (SELECT '～' AS name) TO '${folder}/a.parquet' (FORMAT parquet)`);
    await query(`COPY (SELECT '😀' AS name) TO '${folder}/b.parquet' (FORMAT parquet)`);
    expect("～" > "😀").toBe(true); // what a string comparison would conclude
    const info = await inspectDataset(folder);
    const name = info.columns.find((c) => c.name === "name");
    const [m] = await query(`SELECT min(name) AS lo, max(name) AS hi FROM read_parquet('${folder}/*.parquet')`);
    expect([name?.min, name?.max]).toEqual([m.lo as string, m.hi as string]);
    expect(name?.max).toBe("😀");
  });

  test("reads the footer DuckDB wrote, with the deprecated min/max fields as well", async () => {
    const path = join(dir.path, "duck.parquet");
    await query(`COPY (SELECT i AS n, CASE WHEN i % 2 = 0 THEN NULL ELSE 'v' || i END AS s FROM range(-5, 5) t(i)) TO '${path}' (FORMAT parquet)`);
    const meta = await readFooter(path);
    expect(meta.numRows).toBe(10);
    expect(meta.createdBy).toContain("DuckDB");
    const info = await inspectDataset(path);
    expect(info.columns.map((c) => [c.name, c.min, c.max, c.nullCount])).toEqual([
      ["n", -5, 4, 0],
      ["s", "v-1", "v3", 5],
    ]);
  });
});
