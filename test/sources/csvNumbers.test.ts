import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import * as v from "valibot";
import { deadLetter } from "../../operators/index.ts";
import type { DeadLetter } from "../../src/deadletter/entry.ts";
import { fromCsv, run } from "../../src/index.ts";
import { tempDir } from "../helpers/duckdb.ts";

describe("fromCsv: numbers a 64-bit float cannot hold", () => {
  let dir: { path: string; remove: () => Promise<void> };
  beforeAll(async () => {
    dir = await tempDir();
  });
  afterAll(() => dir.remove());

  test("dead-letters overflow, underflow and too many digits with the reason, and keeps the numbers that survive", async () => {
    const path = join(dir.path, "numbers.csv");
    const cells = ["1e400", "-1e400", "1e-400", "12345678901234567890", "12345678901234567000", "1e300", "0.1", "-0", "9007199254740993"];
    await Bun.write(path, `a\n${cells.join("\n")}\n`);
    const entries: DeadLetter[] = [];
    const values: unknown[] = [];
    await run(fromCsv(path, { schema: v.object({ a: v.number() }) }).pipe(deadLetter((e) => entries.push(e))), {
      onValue: (value) => values.push((value as { a: number }).a),
    });
    expect(entries.map((e) => [e.line, e.error])).toEqual([
      [2, 'column "a": "1e400" is too large for a 64-bit float (it would become Infinity)'],
      [3, 'column "a": "-1e400" is too large for a 64-bit float (it would become -Infinity)'],
      [4, 'column "a": "1e-400" is too small for a 64-bit float (it would become 0)'],
      [5, 'column "a": "12345678901234567890" has more digits than a 64-bit float holds (it would become 12345678901234567000)'],
      [10, 'column "a": "9007199254740993" has more digits than a 64-bit float holds (it would become 9007199254740992)'],
    ]);
    expect(values).toEqual([12345678901234567000, 1e300, 0.1, -0]);
  });
});
