/**
 * Which columns a sink writes without a dictionary, decided from its first rows.
 *
 * parquet-wasm gives every column a dictionary unless told otherwise. For ids, instants and
 * measures that is a dictionary of nearly every value plus an index per value: the 1M clickstream
 * was 39.5 MiB of Parquet with them and 29.7 MiB without (DuckDB's: 29.3). A column is written
 * plain when, among the sink's first {@link SAMPLE_ROWS} rows, its distinct values are more than
 * `plainAbove` of its values: 0.3 with a codec (which already squeezes out repeats, so a
 * dictionary pays only for few distinct values), 0.6 uncompressed.
 *
 * The choice rests on the rows alone, never on timing, so the same input gives the same column
 * chunks.
 * Only top-level columns can be chosen (parquet-wasm takes a one-part column path); nested ones
 * and booleans keep the default.
 */
import type { ColumnSpec } from "../schema/columns.ts";
import { fieldOf, inheritedName } from "../schema/fields.ts";
import type { EncodeOptions } from "./encode.ts";

/** Rows looked at before the choice is made. */
export const SAMPLE_ROWS = 4096;

const SAMPLED_KINDS = new Set<ColumnSpec["kind"]>(["utf8", "int64", "float64", "timestamp", "date"]);

export class DictionaryChoice {
  /** The columns to write plain, once decided; `undefined` before. */
  plain: readonly string[] | undefined;
  #rows = 0;
  readonly #sampled: { name: string; inherited: boolean; seen: Set<unknown>; values: number }[];
  readonly #plainAbove: number;

  constructor(columns: readonly ColumnSpec[], compression: EncodeOptions["compression"]) {
    this.#sampled = columns.filter((c) => SAMPLED_KINDS.has(c.kind)).map((c) => ({ name: c.name, inherited: inheritedName(c.name), seen: new Set(), values: 0 }));
    this.#plainAbove = compression === "none" ? 0.6 : 0.3;
    if (this.#sampled.length === 0) this.plain = [];
  }

  /** Looks at a row the sink buffered, until the choice is made. */
  add(row: Record<string, unknown>): void {
    if (this.plain !== undefined) return;
    for (const column of this.#sampled) {
      let value = fieldOf(row, column.name, column.inherited);
      if (value === null || value === undefined) continue;
      if (value instanceof Date) value = value.getTime();
      column.seen.add(value);
      column.values++;
    }
    if (++this.#rows < SAMPLE_ROWS) return;
    this.plain = this.#sampled.filter((c) => c.values > 0 && c.seen.size / c.values > this.#plainAbove).map((c) => c.name);
    this.#sampled.length = 0;
  }
}
