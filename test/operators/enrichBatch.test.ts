import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { concat, from, NEVER, type Observable, take, throwError } from "rxjs";
import { deadLetter, enrichBatch } from "../../operators/index.ts";
import type { DeadLetter } from "../../src/deadletter/entry.ts";
import type { Flow } from "../../src/flow/flow.ts";
import { run, type RunSummary } from "../../src/run/run.ts";
import { fromNdjson } from "../../src/sources/ndjson.ts";
import { tempDir } from "../helpers/duckdb.ts";

let dir: { path: string; remove: () => Promise<void> };
beforeAll(async () => {
  dir = await tempDir("sluice-enrich-batch-");
});
afterAll(async () => {
  await dir.remove();
});

const later = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Runs `source` through enrichBatch and a collecting dead letter. */
async function batchAll<T, R>(
  source: Observable<T>,
  fn: (records: T[]) => Promise<readonly (R | Error)[]>,
  options: Parameters<typeof enrichBatch>[1] = {},
  onStart?: (flow: Flow) => void,
): Promise<{ values: R[]; entries: DeadLetter[]; summary: RunSummary }> {
  const values: R[] = [];
  const entries: DeadLetter[] = [];
  const summary = await run(source.pipe(enrichBatch(fn, options), deadLetter((entry) => entries.push(entry))), {
    handleSignals: false,
    onValue: (value) => values.push(value as R),
    onStart,
  });
  return { values, entries, summary };
}

describe("enrichBatch", () => {
  test("completes without calling the function when the source is empty", async () => {
    let calls = 0;
    const { values } = await batchAll(from([] as number[]), async (xs) => {
      calls++;
      return xs;
    });
    expect(values).toEqual([]);
    expect(calls).toBe(0);
  });

  test("sends one record as a partial batch when the source completes", async () => {
    const sizes: number[] = [];
    const { values } = await batchAll(from([5]), async (xs) => {
      sizes.push(xs.length);
      return xs.map((x) => x * 2);
    });
    expect(values).toEqual([10]);
    expect(sizes).toEqual([1]);
  });

  test("calls in batches of `size`, one call at a time, and keeps the input order", async () => {
    let inside = 0;
    let most = 0;
    const sizes: number[] = [];
    const input = Array.from({ length: 1050 }, (_, i) => i);
    const { values } = await batchAll(
      from(input),
      async (xs) => {
        inside++;
        most = Math.max(most, inside);
        sizes.push(xs.length);
        await later(Math.random() * 3);
        inside--;
        return xs.map((x) => x + 1);
      },
      { size: 100 },
    );
    expect(values).toEqual(input.map((x) => x + 1));
    expect(sizes).toEqual([...Array(10).fill(100), 50]);
    expect(most).toBe(1);
  });

  test("dead-letters a record whose result is an Error with that record's own file and line", async () => {
    const path = join(dir.path, "orders.ndjson");
    await writeFile(path, Array.from({ length: 25 }, (_, i) => JSON.stringify({ n: i + 1 })).join("\n"));
    const { values, entries, summary } = await batchAll(
      fromNdjson(path),
      async (records: unknown[]) => records.map((r) => ((r as { n: number }).n % 7 === 0 ? new Error(`no price for ${(r as { n: number }).n}`) : r)),
      { size: 10 },
    );
    expect(entries.map((e) => [e.stage, e.line, e.error, e.raw])).toEqual([
      ["enrich", 7, "no price for 7", '{"n":7}'],
      ["enrich", 14, "no price for 14", '{"n":14}'],
      ["enrich", 21, "no price for 21", '{"n":21}'],
    ]);
    expect(entries.every((e) => e.source === path)).toBe(true);
    expect(values).toHaveLength(22);
    expect(summary.in).toBe(25);
    expect(summary.emitted + summary.deadLettered).toBe(25);
  });

  test("sends a partial batch after maxWaitMs when the source is slow", async () => {
    const sizes: number[] = [];
    const values: number[] = [];
    const slow = concat(from([1, 2, 3]), NEVER);
    const subscription = slow
      .pipe(
        enrichBatch(
          async (xs: number[]) => {
            sizes.push(xs.length);
            return xs;
          },
          { size: 100, maxWaitMs: 20 },
        ),
      )
      .subscribe((x) => values.push(x));
    await later(200);
    subscription.unsubscribe();
    expect(values).toEqual([1, 2, 3]);
    expect(sizes).toEqual([3]);
  });

  test("errors the stream, naming the positions, when a call fails", async () => {
    const path = join(dir.path, "fail.ndjson");
    await writeFile(path, Array.from({ length: 30 }, (_, i) => JSON.stringify({ n: i + 1 })).join("\n"));
    const outcome = batchAll(
      fromNdjson(path),
      async (xs: unknown[]) => {
        if ((xs[0] as { n: number }).n === 11) throw new Error("503 from the model server");
        return xs;
      },
      { size: 10 },
    );
    await expect(outcome).rejects.toThrow(`enrichBatch: the call for records ${path} 11–20 failed: 503 from the model server`);
  });

  test("errors the stream when a call returns the wrong number of results", async () => {
    await expect(batchAll(from([1, 2, 3]), async (xs) => xs.slice(1), { size: 3 })).rejects.toThrow(
      "returned 2 result(s) for 3 records",
    );
  });

  test("passes on a source error", async () => {
    await expect(batchAll(throwError(() => new Error("disk gone")), async (xs) => xs)).rejects.toThrow("disk gone");
  });

  test("stops calling once the consumer has unsubscribed", async () => {
    let calls = 0;
    const values: number[] = [];
    await run(
      from(Array.from({ length: 1000 }, (_, i) => i)).pipe(
        enrichBatch(
          async (xs: number[]) => {
            calls++;
            return xs;
          },
          { size: 10 },
        ),
        take(15),
      ),
      { handleSignals: false, onValue: (x) => values.push(x as number) },
    );
    await later(20);
    expect(values).toEqual(Array.from({ length: 15 }, (_, i) => i));
    // The two batches that gave the 15 values; the 98 queued after them are never called.
    expect(calls).toBe(2);
  });

  test("pauses the source while more than maxPending batches wait", async () => {
    const path = join(dir.path, "many.ndjson");
    await writeFile(path, Array.from({ length: 4000 }, (_, i) => JSON.stringify({ n: i })).join("\n"));
    let flow: Flow | undefined;
    let heldDuringCalls = 0;
    const { values } = await batchAll(
      fromNdjson(path, { chunkBytes: 512 }),
      async (xs: unknown[]) => {
        await later(2);
        if (flow?.gate) heldDuringCalls++;
        return xs;
      },
      { size: 10, maxPending: 2 },
      (f) => {
        flow = f;
      },
    );
    expect(values).toHaveLength(4000);
    expect(heldDuringCalls).toBeGreaterThan(0);
  });
});
