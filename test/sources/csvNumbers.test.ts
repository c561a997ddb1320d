import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import * as v from "valibot";
import { deadLetter, validate } from "../../operators/index.ts";
import type { DeadLetter } from "../../src/deadletter/entry.ts";
import { fromCsv, run, toParquet } from "../../src/index.ts";
import { dataset, query, tempDir } from "../helpers/duckdb.ts";

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

  test("dead-letters a list, object or JSON cell holding such a number, or nested too deep, and writes the rest exactly", async () => {
    // JSON.parse reads every number in a cell as a float64 and nests without bound, as it does for
    // an NDJSON line: [1e400] would be written as [inf], [9007199254740993] as [9007199254740992].
    const Row = v.object({ id: v.string(), xs: v.array(v.number()), o: v.nullable(v.object({ n: v.number() })) });
    const deep = `${"[".repeat(10_001)}${"]".repeat(10_001)}`;
    const rows: [string, string, string][] = [
      ["ok", "[1.5, -0, 1e300, 12345678901234567000]", '{"n": 0.1}'],
      ["inf", "[1e400]", ""],
      ["digits", "[1, 9007199254740993]", ""],
      ["zero", "[]", '{"n": 1e-400}'],
      ["deep", `[${deep}]`, ""],
      ["also ok", "[]", ""],
    ];
    const path = join(dir.path, "json-cells.csv");
    const cell = (text: string) => (text === "" ? "" : `"${text.replaceAll('"', '""')}"`);
    await Bun.write(path, `id,xs,o\n${rows.map((r) => r.map(cell).join(",")).join("\n")}\n`);
    const entries: DeadLetter[] = [];
    const out = join(dir.path, "json-cells");
    const summary = await run(
      fromCsv(path, { schema: Row }).pipe(validate(Row), deadLetter((e) => entries.push(e)), toParquet(out, { schema: Row })),
      { handleSignals: false },
    );
    expect([summary.in, summary.written, summary.deadLettered]).toEqual([6, 2, 4]);
    expect(entries.map((e) => [e.stage, e.line, e.error])).toEqual([
      ["parse", 3, expect.stringContaining('column "xs": "[1e400]" is refused: number 1e400 at 0 (character 2 of the cell) is too large for a 64-bit float')],
      ["parse", 4, expect.stringContaining('column "xs": "[1, 9007199254740993]" is refused: number 9007199254740993 at 1 (character 5 of the cell) has more digits')],
      ["parse", 5, expect.stringContaining('column "o": "{\\"n\\": 1e-400}" is refused: number 1e-400 at n (character 7 of the cell) is too small')],
      ["parse", 6, expect.stringContaining('is refused: value nested more than 10,000 levels deep (character 10001 of the cell)')],
    ]);
    const back = await query(`SELECT id, xs::VARCHAR AS xs, o.n AS n FROM ${dataset(out)} ORDER BY id`);
    expect(back).toEqual([
      { id: "also ok", xs: "[]", n: null },
      { id: "ok", xs: "[1.5, -0.0, 1e+300, 1.2345678901234567e+19]", n: 0.1 },
    ]);
  });
});
