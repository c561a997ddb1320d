import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { concat, filter, from, throwError } from "rxjs";
import * as v from "valibot";
import { deadLetter, validate } from "../../operators/index.ts";
import type { DeadLetter } from "../../src/deadletter/entry.ts";
import { collect, collectTable } from "../../src/notebook/collect.ts";
import { rowsOf } from "../../src/notebook/values.ts";
import { isoInstant } from "../../src/schema/instant.ts";
import { fromNdjson } from "../../src/sources/ndjson.ts";
import { tempDir } from "../helpers/duckdb.ts";

const Event = v.object({
  id: v.pipe(v.number(), v.integer()),
  at: isoInstant(),
  price: v.nullable(v.number()),
  tags: v.array(v.string()),
});

describe("collect", () => {
  test("resolves with every value the pipeline emits, in order, and dead-letters rejects as run does", async () => {
    const dir = await tempDir();
    try {
      const input = join(dir.path, "events.ndjson");
      await Bun.write(
        input,
        '{"id":1,"at":"2024-03-01T00:00:00.000001Z","price":2.5,"tags":["a"]}\nnot json\n{"id":"2","at":"2024-03-01T00:00:00Z","price":null,"tags":[]}\n{"id":3,"at":"2024-03-02T10:00:00Z","price":null,"tags":[]}\n',
      );
      const rejected: DeadLetter[] = [];
      const values = await collect(fromNdjson(input).pipe(validate(Event), deadLetter((e) => rejected.push(e))));
      expect(values.map((e) => e.id)).toEqual([1, 3]);
      expect(rejected.map((e) => [e.stage, e.line])).toEqual([
        ["parse", 2],
        ["validate", 3],
      ]);
    } finally {
      await dir.remove();
    }
  });

  test("rejects with the pipeline's error", async () => {
    await expect(collect(concat(from([1]), throwError(() => new Error("disk gone"))))).rejects.toThrow("disk gone");
  });

  test("rejects when a record is rejected and the pipeline has no dead letter", async () => {
    await expect(collect(from([{ id: "x" }]).pipe(validate(Event)))).rejects.toThrow("no dead-letter target");
  });
});

describe("collectTable", () => {
  const events = [
    { id: 1, at: "2024-03-01T00:00:00.000001Z", price: 2.5, tags: ["a", "b"] },
    { id: 2, at: "1969-12-31T23:59:59.999999Z", price: null, tags: [] },
  ];

  test("builds an Arrow table whose column types come from the schema", async () => {
    const table = await collectTable(from(events), Event);
    expect(table.schema.fields.map((f) => `${f.name}: ${f.type}${f.nullable ? "?" : ""}`)).toEqual([
      "id: Int64",
      "at: Timestamp<MICROSECOND, UTC>",
      "price: Float64?",
      "tags: List<Utf8>",
    ]);
    expect(rowsOf(table)).toEqual(events);
  });

  test("dead-letters a record that does not fit its column at stage write, without converting it", async () => {
    const rejected: DeadLetter[] = [];
    // A wrong type that got past the types (no validate step): the table must not coerce it.
    const bad = { id: 3, at: "2024-03-01T00:00:00Z", price: "9.99", tags: [] } as unknown as (typeof events)[number];
    const table = await collectTable(from([events[0], bad, events[1]]).pipe(deadLetter((e) => rejected.push(e))), Event);
    expect(table.numRows).toBe(2);
    expect(rejected.map((e) => [e.stage, JSON.parse(e.raw).id])).toEqual([["write", 3]]);
    expect(rejected[0].error).toContain('column "price" expects a number');
  });

  test("rejects when a record does not fit and there is no dead letter", async () => {
    await expect(collectTable(from([{ id: 1.5, at: "2024-03-01T00:00:00Z", price: null, tags: [] }]), Event)).rejects.toThrow("no dead-letter target");
  });

  test("gives an empty table with the schema's columns for an empty pipeline, after RxJS operators", async () => {
    const table = await collectTable(from(events).pipe(filter(() => false)), Event);
    expect(table.numRows).toBe(0);
    expect(table.schema.fields.map((f) => f.name)).toEqual(["id", "at", "price", "tags"]);
  });
});
