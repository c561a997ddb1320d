/**
 * Columns named like Object.prototype's members are columns like any other when a dataset is
 * shown or counted: `__proto__` once became the row object's prototype (so the column vanished
 * from `rowsOf`, `formatTable` and `sluice head`, and `countBy` put every row in one group).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { from } from "rxjs";
import * as v from "valibot";
import { readDataset } from "../../src/dataset/read.ts";
import { run, toParquet } from "../../src/index.ts";
import { countBy } from "../../src/notebook/countBy.ts";
import { formatTable } from "../../src/notebook/table.ts";
import { rowsOf } from "../../src/notebook/values.ts";
import { dataset, query, tempDir } from "../helpers/duckdb.ts";

// Computed keys: a literal `__proto__:` would set the entries' prototype instead.
const PROTO = "__proto__";
const Row = v.object({
  id: v.number(),
  [PROTO]: v.string(),
  constructor: v.nullable(v.string()),
  inner: v.object({ [PROTO]: v.string() }),
});

/** A record with an own field for each name (a literal `__proto__:` would set the prototype). */
function rowAt(id: number): Record<string, unknown> {
  const inner = {};
  Object.defineProperty(inner, "__proto__", { value: `in${id % 2}`, enumerable: true, writable: true, configurable: true });
  const row: Record<string, unknown> = { id };
  Object.defineProperty(row, "__proto__", { value: `p${id % 3}`, enumerable: true, writable: true, configurable: true });
  // A name that is not a literal: TypeScript takes \`row.constructor\` for Object's own.
  const ctor: string = "constructor";
  row[ctor] = id % 2 ? "c" : null;
  row.inner = inner;
  return row;
}

describe("columns named __proto__ and constructor, read back", async () => {
  const dir = await tempDir();
  afterAll(() => dir.remove());
  const out = join(dir.path, "data");
  await run(from(Array.from({ length: 9 }, (_, i) => rowAt(i) as never)).pipe(toParquet(out, { schema: Row })));

  test("rowsOf gives each as an own field with the value DuckDB reads", async () => {
    const rows = rowsOf(await readDataset(out)).sort((a, b) => (a.id as number) - (b.id as number));
    const duck = await query(`SELECT id, "__proto__" AS p, "constructor" AS c, struct_extract("inner", '__proto__') AS ip FROM ${dataset(out)} ORDER BY id`);
    expect(rows.map((r) => [Object.hasOwn(r, "__proto__"), r.__proto__, r.constructor, Object.hasOwn(r.inner as object, "__proto__") ? (r.inner as Record<string, unknown>).__proto__ : "missing"])).toEqual(
      duck.map((d) => [true, d.p, d.c, d.ip]),
    );
    expect(Object.getPrototypeOf(rows[0])).toBe(Object.prototype);
  });

  test("countBy counts __proto__'s values, and formatTable shows the column", async () => {
    const table = await readDataset(out);
    const counts = countBy(table, "__proto__").map((c) => [c.__proto__, c.count]);
    expect(counts.sort()).toEqual([["p0", 3], ["p1", 3], ["p2", 3]]);
    const text = formatTable(table, ["id", "__proto__"]);
    expect(text).toContain("__proto__");
    for (const value of ["p0", "p1", "p2"]) expect(text).toContain(value);
  });
});
