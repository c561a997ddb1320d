/**
 * Counting rows by the value of one column: "events by type" in one line of a REPL.
 */
import type { RecordBatch, Table } from "apache-arrow";
import { columnNames, isArrowTabular, rowsOf, toJson } from "./values.ts";
import { withPreview } from "./view.ts";

/** One line of {@link countBy}'s result: the column's value under the column's name, and its count. */
export type CountRow<K extends string> = { readonly [key in K]: unknown } & { readonly count: number };

/**
 * Counts the rows of an Arrow table or batch, or of an array of objects, by the value of
 * `column`; for an array of plain values leave `column` out and the values themselves are
 * counted (under `value`).
 *
 * Returns one `{ [column]: value, count }` per distinct value, largest count first (ties in
 * order of first appearance). Values are compared as `formatTable` shows them (timestamps as ISO
 * text, lists and structs by their JSON); nulls and missing values are one `null` group. The
 * array prints in a REPL as a table (counts with thousands separators).
 *
 * Throws when `column` is not a column of the table, naming the columns it has.
 *
 * @example
 * countBy(await readDataset("out/events", { columns: ["event_type"] }), "event_type");
 * // event_type │  count
 * // page_view  │ 41,203 …
 */
export function countBy<K extends string = "value">(rows: Table | RecordBatch | readonly unknown[], column?: K): CountRow<K>[] {
  const key = (column ?? "value") as K;
  let values: Iterable<unknown>;
  if (isArrowTabular(rows)) {
    const names = columnNames(rows);
    if (column === undefined || !names.includes(column)) {
      throw new Error(`countBy: ${column === undefined ? "name the column to count by" : `no column "${column}"`}; the table has ${names.join(", ")}`);
    }
    values = rowsOf(rows.select([column])).map((row) => row[column]);
  } else if (column === undefined) {
    values = rows;
  } else {
    values = rows.map((row) => (typeof row === "object" && row !== null ? (row as Record<string, unknown>)[column] : undefined));
  }
  // A Map keeps first appearance order, which the stable sort below keeps for equal counts.
  const groups = new Map<unknown, { value: unknown; count: number }>();
  for (const raw of values) {
    const value = raw === undefined ? null : raw;
    const id = typeof value === "object" && value !== null ? `json:${value instanceof Date ? value.toISOString() : toJson(value)}` : value;
    const group = groups.get(id);
    if (group) group.count++;
    else groups.set(id, { value, count: 1 });
  }
  const result = [...groups.values()]
    .sort((a, b) => b.count - a.count)
    .map((g) => ({ [key]: g.value, count: g.count }) as CountRow<K>);
  return withPreview(result, { counts: ["count"], rows: 50 });
}
