import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { concat, from, map, Subject, take, throwError } from "rxjs";
import * as v from "valibot";
import { deadLetter, validate } from "../../operators/index.ts";
import { preview } from "../../operators/preview.ts";
import type { DeadLetter } from "../../src/deadletter/entry.ts";
import { run } from "../../src/run/run.ts";
import { fromNdjson } from "../../src/sources/ndjson.ts";
import { tempDir } from "../helpers/duckdb.ts";

/** Subscribes and records what came out and what was printed. */
function watch<T>(source: import("rxjs").Observable<T>, n: number, label?: string) {
  const printed: string[] = [];
  const values: T[] = [];
  const state = { completed: false, error: undefined as unknown };
  const subscription = source.pipe(preview<T>(n, { label, write: (text) => printed.push(text) })).subscribe({
    next: (value) => values.push(value),
    error: (error) => (state.error = error),
    complete: () => (state.completed = true),
  });
  return { printed, values, state, subscription };
}

describe("preview", () => {
  test("prints 'no values' and completes for an empty source", () => {
    const { printed, values, state } = watch(from([]), 3, "empty");
    expect(printed).toEqual(["empty: no values"]);
    expect(values).toEqual([]);
    expect(state.completed).toBe(true);
  });

  test("prints one value on complete when fewer than n came", () => {
    const { printed, values } = watch(from([{ id: 1 }]), 3);
    expect(values).toEqual([{ id: 1 }]);
    expect(printed).toEqual(["first 1 value\nid\n──\n 1"]);
  });

  test("passes many values through unchanged and prints the first n once", () => {
    const input = Array.from({ length: 50 }, (_, i) => ({ id: i, name: `n${i}` }));
    const { printed, values, state } = watch(from(input), 3, "rows");
    expect(values).toEqual(input);
    expect(values[0]).toBe(input[0]); // passed on as the same objects
    expect(printed).toEqual(["rows: first 3 values\nid │ name\n───┼─────\n 0 │ n0\n 1 │ n1\n 2 │ n2"]);
    expect(state.completed).toBe(true);
  });

  test("prints the values as they passed, even when later steps mutate them", () => {
    const printed: string[] = [];
    from([{ id: 1 }, { id: 2 }])
      .pipe(
        preview(2, { write: (t) => printed.push(t) }),
        map((row) => {
          row.id = -1; // a later step mutating what it gets
          return row;
        }),
      )
      .subscribe();
    expect(printed).toEqual(["first 2 values\nid\n──\n 1\n 2"]);
  });

  test("prints what it has, then passes a source error on", () => {
    const { printed, values, state } = watch(concat(from([{ a: 1 }]), throwError(() => new Error("broker gone"))), 5);
    expect(values).toEqual([{ a: 1 }]);
    expect(printed).toEqual(["first 1 value\na\n─\n1"]);
    expect((state.error as Error).message).toBe("broker gone");
  });

  test("prints as soon as n values arrived from a never-ending source", () => {
    const source = new Subject<number>();
    const { printed, values, subscription } = watch(source, 2);
    source.next(1);
    expect(printed).toEqual([]);
    source.next(2);
    expect(printed).toEqual(["first 2 values\nvalue\n─────\n    1\n    2"]);
    source.next(3);
    expect(values).toEqual([1, 2, 3]);
    subscription.unsubscribe();
    expect(source.observed).toBe(false);
  });

  test("prints nothing and lets go of the source when unsubscribed early", () => {
    const source = new Subject<number>();
    const printed: string[] = [];
    const values: number[] = [];
    source
      .pipe(
        preview(10, { write: (t) => printed.push(t) }),
        take(2),
      )
      .subscribe((value) => values.push(value));
    source.next(1);
    source.next(2);
    expect(values).toEqual([1, 2]);
    expect(printed).toEqual([]);
    expect(source.observed).toBe(false);
  });

  test("errors the stream when write throws, as a throwing tap does", () => {
    const source = new Subject<number>();
    let error: unknown;
    const values: number[] = [];
    source
      .pipe(
        preview(1, {
          write: () => {
            throw new Error("terminal gone");
          },
        }),
      )
      .subscribe({ next: (value) => values.push(value), error: (e) => (error = e) });
    source.next(1);
    expect((error as Error).message).toBe("terminal gone");
    expect(values).toEqual([]);
    expect(source.observed).toBe(false);
  });

  test("refuses a negative or fractional n, and prints nothing for 0", () => {
    expect(() => preview(-1)).toThrow(RangeError);
    expect(() => preview(1.5)).toThrow(RangeError);
    const { printed, values } = watch(from([1, 2]), 0);
    expect([printed, values]).toEqual([[], [1, 2]]);
  });

  test("keeps dead letters' positions exact inside a sluice pipeline", async () => {
    const dir = await tempDir();
    try {
      const input = join(dir.path, "in.ndjson");
      await Bun.write(input, '{"n":1}\n{"n":"x"}\n{"n":3}\n');
      const printed: string[] = [];
      const rejected: DeadLetter[] = [];
      const out: unknown[] = [];
      await run(
        fromNdjson(input).pipe(
          preview(2, { label: "raw", write: (t) => printed.push(t) }),
          validate(v.object({ n: v.number() })),
          deadLetter((e) => rejected.push(e)),
        ),
        { handleSignals: false, onValue: (value) => out.push(value) },
      );
      expect(out).toEqual([{ n: 1 }, { n: 3 }]);
      expect(rejected.map((e) => [e.source, e.line, e.raw])).toEqual([[input, 2, '{"n":"x"}']]);
      expect(printed).toEqual(['raw: first 2 values\nn\n─\n1\nx']);
    } finally {
      await dir.remove();
    }
  });
});
