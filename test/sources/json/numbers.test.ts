import { describe, expect, test } from "bun:test";
import { seededRandom } from "../../../src/generate/random.ts";
import { numberLoss, parseJson, problemOf } from "../../../src/sources/json/numbers.ts";

/**
 * The reference: every number of the text with its source text, through `JSON.parse`'s source
 * access (TC39 "JSON.parse source text access", which Bun implements), each judged by
 * `problemOf`. Slow and obviously complete; `numberLoss` must agree with it while skipping nearly
 * every text cheaply.
 */
function lossesByReviver(text: string): string[] {
  const found: string[] = [];
  JSON.parse(text, function reviver(this: unknown, _key: string, value: unknown, context?: { source?: string }) {
    if (typeof value === "number" && context?.source !== undefined && problemOf(context.source) !== undefined) found.push(context.source);
    return value;
  } as (this: unknown, key: string, value: unknown) => unknown);
  return found;
}

describe("problemOf", () => {
  test.each([
    ["1e400", "is too large for a 64-bit float (it would become Infinity)"],
    ["-1e400", "is too large for a 64-bit float (it would become -Infinity)"],
    ["1.7976931348623159e308", "is too large for a 64-bit float (it would become Infinity)"],
    ["1e-400", "is too small for a 64-bit float (it would become 0)"],
    ["-0.1e-330", "is too small for a 64-bit float (it would become 0)"],
    [`0.${"0".repeat(400)}1`, "is too small for a 64-bit float (it would become 0)"],
    ["1.234567e-320", "is too small for a 64-bit float to keep its digits (it would become 1.2347e-320)"],
    ["12345678901234567890", "has more digits than a 64-bit float holds (it would become 12345678901234567000)"],
    ["9007199254740993", "has more digits than a 64-bit float holds (it would become 9007199254740992)"],
    ["-9007199254740993", "has more digits than a 64-bit float holds (it would become -9007199254740992)"],
    ["12345678901234567.0", "has more digits than a 64-bit float holds (it would become 12345678901234568)"],
    ["123456789012345678901234567890e-10", "has more digits than a 64-bit float holds (it would become 12345678901234567000)"],
  ])("refuses %s: it %s", (literal, problem) => {
    expect(problemOf(literal)).toBe(problem);
  });

  test.each([
    "0",
    "-0",
    "0.0e999",
    "0.1",
    "0.10000000000000001", // the 17-digit form of 0.1, as printf("%.17g") writes it
    "0.30000000000000004",
    "0.12345678901234567890", // a decimal below 2^53: rounded in its 17th digit, like 0.1
    "1.50000000000000000000",
    "9007199254740991",
    "9007199254740992",
    "12345678901234567000", // the float prints back as written
    "100000000000000000000000",
    "1e16",
    "1e308",
    "1.7976931348623157e308",
    "5e-324",
    "4.9406564584124654e-324",
    "2.2250738585072014e-308",
  ])("keeps %s", (literal) => {
    expect(problemOf(literal)).toBeUndefined();
  });
});

describe("numberLoss", () => {
  test("names the first changed number, where it is in the text and in the value", () => {
    const text = '{"a":{"b":[1,2,{"c\\"d":12345678901234567890}]},"e":1e400}';
    expect(numberLoss(text, JSON.parse(text))).toEqual({
      literal: "12345678901234567890",
      index: 23,
      path: 'a.b.2.c"d',
      problem: "has more digits than a 64-bit float holds (it would become 12345678901234567000)",
    });
  });

  test("finds a number that is the whole value", () => {
    expect(numberLoss("1e400", Number.POSITIVE_INFINITY)?.path).toBe("");
    expect(numberLoss("[0, -1e-400]", [0, -0])).toMatchObject({ literal: "-1e-400", index: 4, path: "1" });
  });

  test("cuts a very long number in the message", () => {
    const literal = `1${"0".repeat(400)}`;
    expect(numberLoss(`[${literal}]`, [Number(literal)])?.literal).toBe(`${"1".padEnd(40, "0")}…`);
  });

  test.each([
    '{"id":"12345678901234567890","ua":"Mozilla/5.0 (iPhone) Mobile/15E148","n":0}',
    '{"s":"1e400","t":"x 1e-400 y","k":[0,0.0,-0]}',
    '{"12345678901234567890":1}',
    '{"big":12345678901234567000,"tiny":5e-324,"zeros":[0,0,0]}',
    "[1e16,1e300,-1e-300,0.12345678901234567890]",
  ])("passes %s", (text) => {
    expect(numberLoss(text, JSON.parse(text))).toBeUndefined();
  });

  test("agrees with checking every number, on generated values with numbers in every position and in strings", () => {
    const { next: random, pick } = seededRandom(12);
    const digits = (n: number) => Array.from({ length: n }, (_, i) => (i === 0 ? 1 + Math.floor(random() * 9) : Math.floor(random() * 10))).join("");
    const numbers = () =>
      pick([
        () => String(Math.floor(random() * 1000)),
        () => "0",
        () => "-0.0",
        () => digits(1 + Math.floor(random() * 25)),
        () => `-${digits(15 + Math.floor(random() * 6))}`,
        () => `${digits(2)}.${digits(1 + Math.floor(random() * 22))}`,
        () => `0.${"0".repeat(Math.floor(random() * 20))}${digits(1 + Math.floor(random() * 20))}`,
        () => `${digits(1 + Math.floor(random() * 3))}e${pick(["", "+", "-"])}${digits(1 + Math.floor(random() * 3))}`,
        () => `${digits(1)}.${digits(3)}E-${pick(["307", "308", "320", "323", "324", "330", "400"])}`,
        () => `${digits(1)}e${pick(["15", "16", "21", "300", "308", "309"])}`,
        () => String(2 ** 53 + Math.floor(random() * 5) - 2),
        () => `0.${"0".repeat(330)}${digits(2)}`,
      ])();
    const value = (depth: number): string => {
      const kind = depth > 2 ? Math.floor(random() * 3) : Math.floor(random() * 5);
      if (kind === 0) return numbers();
      if (kind === 1) return JSON.stringify(pick(["x", "Mobile/15E148", `id ${numbers()}`, numbers(), ""]));
      if (kind === 2) return pick(["true", "null", "false"]);
      if (kind === 3) return `[${Array.from({ length: Math.floor(random() * 4) }, () => value(depth + 1)).join(pick([",", ", "]))}]`;
      return `{${Array.from({ length: Math.floor(random() * 4) }, (_, i) => `${JSON.stringify(`${pick(["k", numbers(), 'a"b'])}${i}`)}: ${value(depth + 1)}`).join(",")}}`;
    };
    let refused = 0;
    for (let i = 0; i < 5000; i++) {
      const text = value(0);
      const expected = lossesByReviver(text);
      const loss = numberLoss(text, JSON.parse(text));
      if (expected.length === 0) expect(loss).toBeUndefined();
      else {
        refused++;
        const literal = expected.find((e) => text.startsWith(e, loss?.index ?? -1));
        expect(literal).toBeDefined();
        expect(loss?.literal.replace("…", "")).toBe((literal as string).slice(0, 40));
      }
    }
    // The generator must exercise both outcomes.
    expect(refused).toBeGreaterThan(200);
    expect(refused).toBeLessThan(4000);
  });
});

describe("parseJson: one JSON text as an app gets it", () => {
  test("tells a value from a refusal by ok, by error === undefined and by 'error' in", () => {
    const cases: [string, unknown, string | undefined][] = [
      ['{"a":1}', { a: 1 }, undefined],
      ["", undefined, "blank line"],
      ["{oops", undefined, "malformed JSON"],
      ['{"n":1e400}', undefined, "1e400"],
      ['{"n":12345678901234567890}', undefined, "12345678901234567890"],
      ['{"s":"a\tb"}', undefined, "malformed JSON: a string holds the control character U+0009 unescaped (column 8)"],
    ];
    for (const [text, value, error] of cases) {
      const parsed = parseJson(text);
      expect(parsed.ok).toBe(error === undefined);
      if (parsed.ok) expect(parsed.value).toEqual(value);
      else expect(parsed.error).toContain(error as string);
      // The three ways a caller narrows it agree.
      expect(parsed.error === undefined).toBe(parsed.ok);
      expect("error" in parsed && parsed.error !== undefined).toBe(!parsed.ok);
    }
  });
});
