import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { connect, from, map, merge, type Observable, tap } from "rxjs";
import * as v from "valibot";
import { createFlow } from "../../src/flow/flow.ts";
import { Input, MAX_IN_FLIGHT, positionOf } from "../../src/flow/position.ts";
import { fromNdjson, run, toParquet } from "../../src/index.ts";
import { dataset, query, tempDir } from "../helpers/duckdb.ts";

describe("Input", () => {
  test("follows lines in flight whatever order they settle in", () => {
    const input = new Input(createFlow(), "f");
    for (let line = 1; line <= 6; line++) input.at(line);
    input.settle(2);
    input.settle(1);
    expect(input.lowestUnsettled()).toBe(3);
    input.settle(5);
    expect(input.unsettledIn(1, 6)).toEqual([3, 4, 6]);
    input.settle(3);
    input.settle(4);
    expect(input.lowestUnsettled()).toBe(6);
    input.settle(6);
    expect(input.lowestUnsettled()).toBeUndefined();
    expect(input.flow.stats.in).toBe(6);
  });

  test("keeps memory bounded when records never settle: the oldest is taken to be gone past MAX_IN_FLIGHT", () => {
    const input = new Input(createFlow(), "f");
    // Every other record is removed by a filter and never settles.
    const total = MAX_IN_FLIGHT * 3;
    for (let line = 1; line <= total; line++) {
      input.at(line);
      if (line % 2 === 0) input.settle(line);
    }
    const lowest = input.lowestUnsettled() as number;
    expect(lowest).toBeGreaterThan(total - 2 * MAX_IN_FLIGHT - 2);
    expect(input.unsettledIn(1, total).length).toBeLessThanOrEqual(MAX_IN_FLIGHT);
  });

  test("forgets a line settled a second time (two sinks settle every record): what it follows stays bounded", () => {
    const input = new Input(createFlow(), "f");
    const total = 300_000;
    for (let line = 1; line <= total; line++) {
      input.at(line);
      input.settle(line);
      input.settle(line);
    }
    expect(input.lowestUnsettled()).toBeUndefined();
    expect(input.followed).toBe(0);
  });

  test("a line one sink settles ahead of its turn is followed until the line before it settles, then forgotten", () => {
    const input = new Input(createFlow(), "f");
    for (let first = 1; first <= 200_000; first += 100) {
      for (let line = first; line < first + 100; line++) input.at(line);
      // One sink settles the batch backwards, all but its first line; the other in order.
      for (let line = first + 99; line > first; line--) input.settle(line);
      expect(input.lowestUnsettled()).toBe(first);
      expect(input.unsettledIn(first, first + 99)).toEqual([first]);
      for (let line = first; line < first + 100; line++) input.settle(line);
      expect(input.lowestUnsettled()).toBeUndefined();
    }
    input.settle(1);
    expect(input.followed).toBe(0);
  });
});

describe("two sinks fed by one source through connect", () => {
  test("write every record to both and follow no more lines than are in flight", async () => {
    const dir = await tempDir("sluice-two-sinks-");
    try {
      const total = 30_000;
      const file = join(dir.path, "in.ndjson");
      await Bun.write(file, `${Array.from({ length: total }, (_, i) => JSON.stringify({ id: i + 1, name: `n${i % 7}` })).join("\n")}\n`);
      const Row = v.object({ id: v.number(), name: v.string() });
      let input: Input | undefined;
      await run(
        (fromNdjson(file) as Observable<v.InferOutput<typeof Row>>).pipe(
          tap((record) => {
            input ??= positionOf(record)?.input;
          }),
          connect((rows) => merge(rows.pipe(toParquet(join(dir.path, "a"), { schema: Row })), rows.pipe(toParquet(join(dir.path, "b"), { schema: Row })))),
        ),
      );
      for (const out of ["a", "b"]) {
        expect(await query(`SELECT count(*)::INT AS n, count(DISTINCT id)::INT AS ids FROM ${dataset(join(dir.path, out))}`)).toEqual([{ n: total, ids: total }]);
      }
      // Each record is settled once by each sink: the second settle must not be kept.
      expect(input?.followed).toBe(0);
    } finally {
      await dir.remove();
    }
  });
});


describe("a record that lost its position on the way", () => {
  const Row = v.object({ id: v.number() });

  /** Runs `pipeline` and collects the process warnings it raised. */
  async function warningsOf(pipeline: Observable<unknown>) {
    const seen: (Error & { code?: string })[] = [];
    const listen = (warning: Error) => seen.push(warning);
    process.on("warning", listen);
    try {
      const summary = await run(pipeline);
      // Warnings are delivered on a later tick.
      await Bun.sleep(10);
      return { summary, warnings: seen.filter((w) => w.code === "SLUICE_POSITION_LOST") };
    } finally {
      process.off("warning", listen);
    }
  }

  test("is written, counted again as unnamed input, and the run warns once, naming itself", async () => {
    const dir = await tempDir();
    try {
      const input = join(dir.path, "rows.ndjson");
      await Bun.write(input, `${Array.from({ length: 50 }, (_, i) => JSON.stringify({ id: i, extra: "x" })).join("\n")}\n`);
      const { summary, warnings } = await warningsOf(
        fromNdjson(input).pipe(
          // Rebuilt field by field: the position stays behind on the original object.
          map((r) => ({ id: (r as { id: number }).id })),
          toParquet(join(dir.path, "out"), { schema: Row }),
        ),
      );
      expect(summary).toMatchObject({ in: 100, written: 50, dropped: 50 });
      expect(warnings).toHaveLength(1);
      expect(warnings[0]?.message).toContain(`run ${summary.runId}`);
      expect(warnings[0]?.message).toContain("carry()");
      const [{ n }] = await query(`SELECT count(*) AS n FROM ${dataset(join(dir.path, "out"))}`);
      expect(Number(n)).toBe(50);
    } finally {
      await dir.remove();
    }
  });

  test("is not warned about when the run's source is RxJS's own (every record is unnamed) or the record is spread", async () => {
    const dir = await tempDir();
    try {
      const input = join(dir.path, "rows.ndjson");
      await Bun.write(input, `${Array.from({ length: 20 }, (_, i) => JSON.stringify({ id: i })).join("\n")}\n`);
      const fromRx = await warningsOf(from(Array.from({ length: 20 }, (_, id) => ({ id }))).pipe(toParquet(join(dir.path, "rx"), { schema: Row })));
      expect(fromRx.summary).toMatchObject({ in: 20, written: 20 });
      expect(fromRx.warnings).toHaveLength(0);
      const spread = await warningsOf(fromNdjson(input).pipe(map((r) => ({ ...(r as { id: number }), more: 1 })), toParquet(join(dir.path, "spread"), { schema: Row })));
      expect(spread.summary).toMatchObject({ in: 20, written: 20, dropped: 0 });
      expect(spread.warnings).toHaveLength(0);
    } finally {
      await dir.remove();
    }
  });
});
