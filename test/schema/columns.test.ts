import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import * as v from "valibot";
import { deadLetter, validate } from "../../operators/index.ts";
import { run } from "../../src/run/run.ts";
import { columnsOf, SchemaError, schemaFields } from "../../src/schema/columns.ts";
import { isoInstant } from "../../src/schema/instant.ts";
import { toParquet } from "../../src/sinks/toParquet.ts";
import { fromCsv } from "../../src/sources/csv.ts";
import { fieldsOf } from "../../src/sources/csv/convert.ts";
import { dataset, query } from "../helpers/duckdb.ts";
import { inputFolder } from "../helpers/inputs.ts";

const dir = inputFolder("sluice-columns-", ".csv");

// Every kind of field the walker knows, with the wrappers that make it nullable.
const entries = {
  id: v.string(),
  n: v.pipe(v.number(), v.integer()),
  amount: v.optional(v.number()),
  big: v.nullable(v.bigint()),
  ok: v.boolean(),
  at: isoInstant(),
  day: v.pipe(v.string(), v.isoDate()),
  when: v.nullish(v.date()),
  kind: v.picklist(["a", "b"]),
  tags: v.array(v.string()),
  place: v.object({ city: v.string() }),
  extra: v.looseObject({ k: v.string() }),
  anything: v.unknown(),
};

describe("columnsOf and the CSV source read a schema through one walker", () => {
  test("a looseObject root gives the columns of its named entries, as an object root does", () => {
    expect(columnsOf(v.looseObject(entries))).toEqual(columnsOf(v.object(entries)));
    expect(columnsOf(v.strictObject(entries))).toEqual(columnsOf(v.object(entries)));
  });

  test("the CSV source reads a looseObject root's fields as it reads an object root's", () => {
    expect(fieldsOf(v.looseObject(entries))).toEqual(fieldsOf(v.object(entries)));
  });

  test.each([
    ["object", v.object(entries)],
    ["strictObject", v.strictObject(entries)],
    ["looseObject", v.looseObject(entries)],
  ] as const)("the CSV fields of a(n) %s root are the sink's columns, in order, equally nullable", (_, schema) => {
    const columns = columnsOf(schema);
    const fields = fieldsOf(schema);
    expect(fields.map((f) => f.name)).toEqual(columns.map((c) => c.name));
    // A JSON column is always nullable (it stores null for any missing value); elsewhere the two agree.
    const typed = columns.filter((c) => c.kind !== "json").map((c) => c.name);
    expect(fields.filter((f) => typed.includes(f.name)).map((f) => f.nullable)).toEqual(
      columns.filter((c) => typed.includes(c.name)).map((c) => c.nullable),
    );
  });

  test("a nested looseObject is still one JSON column, which keeps the keys it does not name", () => {
    const [extra] = columnsOf(v.object({ extra: v.looseObject({ k: v.string() }) }));
    expect(extra).toEqual({ name: "extra", kind: "json", nullable: true });
  });

  test("a root that is not an object is refused by both, with the same error", () => {
    for (const schema of [v.string(), v.array(v.object({})), v.record(v.string(), v.string())] as v.GenericSchema[]) {
      expect(() => columnsOf(schema)).toThrow(SchemaError);
      expect(() => fieldsOf(schema)).toThrow(SchemaError);
      expect(() => columnsOf(schema)).toThrow(/schema field "\(root\)": expected an object schema/);
      expect(() => fieldsOf(schema)).toThrow(/schema field "\(root\)": expected an object schema/);
    }
  });

  test("a field with no column type is refused by the sink but read by the CSV source by the type it starts from", () => {
    const schema = v.looseObject({ cents: v.pipe(v.string(), v.transform((s) => Number(s) * 100)) });
    expect(() => columnsOf(schema)).toThrow(/schema field "cents": a transform changes the output type/);
    expect(fieldsOf(schema)).toEqual([{ name: "cents", conversion: "text", nullable: false, empty: undefined }]);
    const [field] = schemaFields(schema);
    expect(field?.column).toBeInstanceOf(SchemaError);
    expect(field?.type).toBe("string");
  });

  test("schemaFields tells null-admitting wrappers from those that admit only a missing value", () => {
    const fields = schemaFields(v.looseObject({ a: v.optional(v.string()), b: v.nullable(v.string()), c: v.nullish(v.string()), d: v.string() }));
    expect(fields.map((f) => [f.name, f.nullable, f.admitsNull])).toEqual([
      ["a", true, false],
      ["b", true, true],
      ["c", true, true],
      ["d", false, false],
    ]);
  });

  test("a CSV file read with a looseObject schema lands in Parquet with the schema's columns", async () => {
    const Row = v.looseObject({ id: v.string(), n: v.pipe(v.number(), v.integer()), note: v.nullable(v.string()) });
    const path = await dir.file("id,n,note,unnamed\na,1,hi,x\nb,2,,y\n");
    const out = join(dir.unique("out"), "rows");
    const summary = await run(fromCsv(path, { schema: Row }).pipe(validate(Row), deadLetter(() => {}), toParquet(out, { schema: Row })), {
      handleSignals: false,
    });
    expect(summary.written).toBe(2);
    // Read back by DuckDB: the named columns are stored; the column the schema lets through unnamed is not.
    const rows = await query(`SELECT * FROM ${dataset(out)} ORDER BY id`);
    expect(rows).toEqual([
      { id: "a", n: "1", note: "hi" },
      { id: "b", n: "2", note: null },
    ]);
  });
});
