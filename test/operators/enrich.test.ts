import { describe, expect, expectTypeOf, test } from "bun:test";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { concat, from, type Observable, Subject, take, throwError } from "rxjs";
import * as v from "valibot";
import { deadLetter, enrich, validate } from "../../operators/index.ts";
import type { DeadLetter } from "../../src/deadletter/entry.ts";
import { run, type RunSummary } from "../../src/run/run.ts";
import { fromNdjson } from "../../src/sources/ndjson.ts";
import { tempDir } from "../helpers/duckdb.ts";
import { plain } from "../helpers/plain.ts";

interface Order {
  id: string;
  qty: number;
}

const double = (order: Order) => ({ ...order, qty: order.qty * 2 });

/** Runs `source` through enrich and a collecting dead letter; resolves with what came out. */
async function enrichAll<T, R>(
  source: Observable<T>,
  fn: (record: T, index: number) => R,
  stage?: string,
): Promise<{ values: R[]; entries: DeadLetter[]; summary: RunSummary }> {
  const values: R[] = [];
  const entries: DeadLetter[] = [];
  const summary = await run(
    source.pipe(
      enrich(fn, stage === undefined ? {} : { stage }),
      deadLetter((entry) => entries.push(entry)),
    ),
    { handleSignals: false, onValue: (value) => values.push(value as R) },
  );
  return { values, entries, summary };
}

describe("enrich", () => {
  test("completes without calling the function when the source is empty", async () => {
    let calls = 0;
    const { values, entries } = await enrichAll(from([] as Order[]), (order) => {
      calls++;
      return order;
    });
    expect(values).toEqual([]);
    expect(entries).toEqual([]);
    expect(calls).toBe(0);
  });

  test("maps one record", async () => {
    const { values, entries } = await enrichAll(from([{ id: "a", qty: 2 }]), double);
    expect(values).toEqual([{ id: "a", qty: 4 }]);
    expect(entries).toEqual([]);
  });

  test("maps many records in order, passing each one's index", async () => {
    const orders = Array.from({ length: 1_000 }, (_, i) => ({ id: `o${i}`, qty: i }));
    const { values } = await enrichAll(from(orders), (order, index) => ({ ...order, index }));
    expect(values).toEqual(orders.map((order, index) => ({ ...order, index })));
  });

  test("dead-letters a record whose function throws, with stage enrich, and goes on", async () => {
    const orders = [
      { id: "a", qty: 1 },
      { id: "b", qty: -1 },
      { id: "c", qty: 3 },
      { id: "d", qty: -4 },
      { id: "e", qty: 5 },
    ];
    const { values, entries, summary } = await enrichAll(from(orders), (order) => {
      if (order.qty < 0) throw new RangeError(`negative quantity ${order.qty}`);
      return double(order);
    });
    expect(values).toEqual([
      { id: "a", qty: 2 },
      { id: "c", qty: 6 },
      { id: "e", qty: 10 },
    ]);
    expect(entries.map((e) => [e.stage, e.error, JSON.parse(e.raw)])).toEqual([
      ["enrich", "negative quantity -1", { id: "b", qty: -1 }],
      ["enrich", "negative quantity -4", { id: "d", qty: -4 }],
    ]);
    expect(entries[0].runId).toBe(summary.runId);
    expect(new Date(entries[0].at).toISOString()).toBe(entries[0].at);
    expect(summary.deadLetteredByStage).toEqual({ enrich: 2 });
  });

  test("keeps counting indexes across records that were dead-lettered", async () => {
    const { values } = await enrichAll(from([0, 1, 2, 3]), (n, index) => {
      if (n === 1) throw new Error("one");
      return index;
    });
    expect(values).toEqual([0, 2, 3]);
  });

  test.each([
    ["a string", "plain text", "plain text"],
    ["a number", 42, "42"],
    ["undefined", undefined, "undefined"],
    ["an object", { code: 7 }, "[object Object]"],
  ])("writes %s that was thrown as the error text", async (_name, thrown, error) => {
    const { entries } = await enrichAll(from([1]), () => {
      throw thrown;
    });
    expect(entries.map((e) => e.error)).toEqual([error]);
  });

  test("writes a record that cannot be JSON as text in raw", async () => {
    const { entries } = await enrichAll(from([{ n: 10n }]), () => {
      throw new Error("no");
    });
    expect(entries[0].raw).toBe('{"n":"10"}');
  });

  test("writes the stage it is given on dead letters", async () => {
    const { entries, summary } = await enrichAll(
      from([1]),
      () => {
        throw new Error("no geo");
      },
      "geoip",
    );
    expect(entries[0].stage).toBe("geoip");
    expect(summary.deadLetteredByStage).toEqual({ geoip: 1 });
  });

  test("gives a dead letter from a file the path, the line and the line's raw text", async () => {
    const dir = await tempDir();
    try {
      const path = join(dir.path, "orders.ndjson");
      await writeFile(path, '{"id":"a","qty":1}\n{"id":"b","qty":0}\n{"id":"c","qty":3}\n');
      const { values, entries, summary } = await enrichAll(fromNdjson(path) as Observable<Order>, (order) => {
        if (order.qty === 0) throw new Error("zero quantity");
        return order.id;
      });
      expect(values).toEqual(["a", "c"]);
      expect(entries).toHaveLength(1);
      expect(entries[0]).toMatchObject({ stage: "enrich", source: path, line: 2, raw: '{"id":"b","qty":0}', error: "zero quantity" });
      expect(summary.in).toBe(summary.emitted + summary.deadLettered);
    } finally {
      await dir.remove();
    }
  });

  test("works after validate, getting valibot's output", async () => {
    const Order = v.object({ id: v.string(), qty: v.number() });
    const values: unknown[] = [];
    const entries: DeadLetter[] = [];
    await run(
      from([{ id: "a", qty: 1, extra: true }, { id: "b", qty: "2" }, { id: "c", qty: 0 }]).pipe(
        validate(Order),
        enrich((order) => {
          if (order.qty === 0) throw new Error("zero");
          return { ...order, keys: Object.keys(order).length };
        }),
        deadLetter((entry) => entries.push(entry)),
      ),
      { handleSignals: false, onValue: (value) => values.push(value) },
    );
    expect(values).toEqual([{ id: "a", qty: 1, keys: 2 }]);
    expect(entries.map((e) => e.stage)).toEqual(["validate", "enrich"]);
  });

  test("passes a source error on", async () => {
    const values: unknown[] = [];
    const failing = concat(from([{ id: "a", qty: 1 }]), throwError(() => new Error("disk gone")));
    const result = run(failing.pipe(enrich(double), deadLetter(() => {})), {
      handleSignals: false,
      onValue: (value) => values.push(value),
    });
    await expect(result).rejects.toThrow("disk gone");
    expect(values).toEqual([{ id: "a", qty: 2 }]);
  });

  test("passes a source error on when it is subscribed directly", async () => {
    const error = await new Promise<unknown>((resolve) => {
      throwError(() => new Error("broker gone"))
        .pipe(enrich(double))
        .subscribe({ error: resolve });
    });
    expect((error as Error).message).toBe("broker gone");
  });

  test("stops listening to a never-ending source when unsubscribed early", () => {
    const source = new Subject<Order>();
    const values: unknown[] = [];
    let calls = 0;
    let completed = false;
    source
      .pipe(
        enrich((order) => {
          calls++;
          return double(order);
        }),
        deadLetter(() => {}),
        take(2),
      )
      .subscribe({ next: (value) => values.push(plain(value)), complete: () => (completed = true) });
    source.next({ id: "a", qty: 1 });
    source.next({ id: "b", qty: 2 });
    expect(completed).toBe(true);
    expect(source.observed).toBe(false);
    source.next({ id: "c", qty: 3 });
    expect(values).toEqual([
      { id: "a", qty: 2 },
      { id: "b", qty: 4 },
    ]);
    expect(calls).toBe(2);
  });

  test("unsubscribes from its source when its subscriber unsubscribes", () => {
    const source = new Subject<Order>();
    const subscription = source.pipe(enrich(double)).subscribe();
    expect(source.observed).toBe(true);
    subscription.unsubscribe();
    expect(source.observed).toBe(false);
  });

  test("errors with a message naming the stage when there is no dead-letter target", async () => {
    const values: unknown[] = [];
    const result = run(
      from([1, 2, 3]).pipe(
        enrich((n) => {
          if (n === 2) throw new Error("two is bad");
          return n;
        }),
      ),
      { handleSignals: false, onValue: (value) => values.push(value) },
    );
    await expect(result).rejects.toThrow(
      'a record from the source failed at stage "enrich" (two is bad) but this pipeline has no dead-letter target',
    );
    expect(values).toEqual([1]);
  });

  test("errors with a message naming the file and line when there is no dead-letter target", async () => {
    const dir = await tempDir();
    try {
      const path = join(dir.path, "orders.ndjson");
      await writeFile(path, '{"id":"a","qty":1}\n{"id":"b","qty":0}\n');
      const result = run(
        (fromNdjson(path) as Observable<Order>).pipe(
          enrich((order) => {
            if (order.qty === 0) throw new Error("zero quantity");
            return order;
          }),
        ),
        { handleSignals: false },
      );
      await expect(result).rejects.toThrow(`a record from ${path} line 2 failed at stage "enrich" (zero quantity)`);
    } finally {
      await dir.remove();
    }
  });

  test("errors when the dead-letter target itself throws", async () => {
    const result = run(
      from([1]).pipe(
        enrich(() => {
          throw new Error("bad record");
        }),
        deadLetter(() => {
          throw new Error("dead-letter disk full");
        }),
      ),
      { handleSignals: false },
    );
    await expect(result).rejects.toThrow("dead-letter disk full");
  });

  test("types its output as the function's result", () => {
    const out = from([{ id: "a", qty: 1 }]).pipe(enrich((order: Order, index: number) => ({ ...order, index })));
    expectTypeOf(out).toEqualTypeOf<Observable<{ index: number; id: string; qty: number }>>();
  });

  test("stops calling the function once the consumer has unsubscribed from a synchronous source", async () => {
    let calls = 0;
    const entries: DeadLetter[] = [];
    await run(
      from(Array.from({ length: 1_000 }, (_, i) => i)).pipe(
        enrich((n) => {
          calls++;
          if (n > 0) throw new Error("after the end");
          return n;
        }),
        take(1),
        deadLetter((entry) => entries.push(entry)),
      ),
      { handleSignals: false },
    );
    expect(calls).toBe(1);
    expect(entries).toEqual([]);
  });
});
