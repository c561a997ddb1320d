/**
 * One record into several rows (an order into its line items): the summary still accounts for
 * every record. `in + fannedOut = written + deadLettered + skipped + discarded + dropped`, so an
 * order that became no row is seen as dropped, whatever order the rows arrive in and whichever
 * sink they reach. Rows are read back with DuckDB (Parquet) and SQLite (toSql).
 */
import { Database } from "bun:sqlite";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { delay, from, mergeMap, of, type OperatorFunction } from "rxjs";
import * as v from "valibot";
import { deadLetter, validate } from "../../operators/index.ts";
import { formatSummary, fromNdjson, run, type RunSummary, toParquet, toSql } from "../../src/index.ts";
import { dataset, query, tempDir } from "../helpers/duckdb.ts";

const Order = v.object({ order: v.string(), items: v.array(v.object({ sku: v.string(), qty: v.number() })) });
type Order = v.InferOutput<typeof Order>;
const Item = v.object({ order: v.string(), sku: v.string(), qty: v.pipe(v.number(), v.minValue(0)) });

// A: three items; B: not an order; C: no items (becomes nothing); D: one item, invalid.
const LINES = [
  { order: "A", items: [{ sku: "x", qty: 1 }, { sku: "y", qty: 2 }, { sku: "z", qty: 3 }] },
  { order: "B", items: "not a list" },
  { order: "C", items: [] },
  { order: "D", items: [{ sku: "x", qty: -1 }] },
];

let dir: Awaited<ReturnType<typeof tempDir>>;
let input: string;
beforeAll(async () => {
  dir = await tempDir("sluice-fanout-");
  input = join(dir.path, "orders.ndjson");
  await Bun.write(input, `${LINES.map((l) => JSON.stringify(l)).join("\n")}\n`);
});
afterAll(() => dir.remove());

/** Each item spread from its order, so it keeps the order's position. */
const itemsOf = (order: Order) => order.items.map((item) => ({ ...order, ...item }));

function expectAccounted(summary: RunSummary) {
  expect(summary).toMatchObject({ in: 4, written: 3, deadLettered: 2, fannedOut: 2, dropped: 1 });
  expect(summary.in + summary.fannedOut).toBe(summary.written + summary.deadLettered + summary.skipped + summary.discarded + summary.dropped);
  expect(formatSummary(summary)).toContain("fanned out     2 (rows and dead letters beyond a record's first");
}

describe("a record turned into several rows", () => {
  test.each<[string, () => OperatorFunction<Order, unknown>]>([
    ["at once", () => mergeMap((order) => from(itemsOf(order)))],
    // Items of different orders interleave: each is held a different time.
    ["interleaved", () => mergeMap((order) => from(itemsOf(order)).pipe(mergeMap((item) => of(item).pipe(delay(item.qty * 7 + (item.order === "A" ? 0 : 3))))))],
  ])("into Parquet (%s): counted as fanned out, and the order with no items as dropped", async (name, split) => {
    const out = join(dir.path, `parquet-${name}`);
    const summary = await run(
      fromNdjson(input).pipe(validate(Order), split(), validate(Item), deadLetter(join(out, "dead-letter")), toParquet(join(out, "items"), { schema: Item })),
    );
    expectAccounted(summary);
    const rows = await query(`SELECT "order", sku, qty FROM ${dataset(join(out, "items"))} ORDER BY sku`);
    expect(rows).toEqual([
      { order: "A", sku: "x", qty: 1 },
      { order: "A", sku: "y", qty: 2 },
      { order: "A", sku: "z", qty: 3 },
    ]);
  });

  test("into a SQLite table through toSql", async () => {
    const db = join(dir.path, "items.db");
    const summary = await run(
      fromNdjson(input).pipe(
        validate(Order),
        mergeMap((order) => from(itemsOf(order))),
        validate(Item),
        deadLetter(join(dir.path, "sql-dead-letter")),
        toSql(`sqlite:${db}`, "items", { schema: Item, mode: "upsert", key: ["order", "sku"], create: true }),
      ),
    );
    expectAccounted(summary);
    expect(new Database(db).query(`SELECT "order", sku, qty FROM items ORDER BY sku`).all()).toEqual([
      { order: "A", sku: "x", qty: 1 },
      { order: "A", sku: "y", qty: 2 },
      { order: "A", sku: "z", qty: 3 },
    ]);
  });

  test("one row a record is not fanned out, and a record filtered away is dropped, as before", async () => {
    const out = join(dir.path, "one-each");
    const summary = await run(
      fromNdjson(input).pipe(
        validate(Order),
        mergeMap((order) => (order.items.length > 0 ? of({ ...order, ...(order.items[0] as { sku: string; qty: number }) }) : of())),
        validate(Item),
        deadLetter(join(out, "dead-letter")),
        toParquet(join(out, "items"), { schema: Item }),
      ),
    );
    expect(summary).toMatchObject({ in: 4, written: 1, deadLettered: 2, fannedOut: 0, dropped: 1 });
    expect(formatSummary(summary)).not.toContain("fanned out");
  });
});
