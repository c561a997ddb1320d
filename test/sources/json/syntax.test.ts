import { describe, expect, test } from "bun:test";
import { seededRandom } from "../../../src/generate/random.ts";
import { NEED_MORE } from "../../../src/sources/json/scan.ts";
import { checkValue, INVALID, newCheck, startCheck } from "../../../src/sources/json/syntax.ts";

/** Runs the check over `bytes`, handing it `step` more bytes each time it asks for more. */
function checkInSteps(bytes: Uint8Array, step: number): { end: number; problem: string; at: number } {
  const check = newCheck();
  startCheck(check, 0);
  for (let end = Math.min(step, bytes.length); ; end = Math.min(end + step, bytes.length)) {
    const result = checkValue(bytes, end, check);
    if (result !== NEED_MORE || end === bytes.length) return { end: result, problem: check.problem, at: check.at };
  }
}

const encode = (text: string) => new TextEncoder().encode(text);

describe("checkValue", () => {
  test.each([
    ['{"a":[1,-2.5e+3,true,false,null,"x\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9"],"b":{}}', 0],
    ["[]", 0],
    ["[ ]", 0],
    ['"日本😀"', 0],
    ["0", 1],
    ["-0.0e-0", 1],
    ["true", 1],
  ])("finds where %s ends", (text, after) => {
    const bytes = encode(`${text}${" ".repeat(after)},`);
    expect(checkInSteps(bytes, bytes.length).end).toBe(encode(text).length);
  });

  test.each([
    ['{"a":1,,"b":2}', 7, "expected a key, found ','"],
    ["[1,]", 3, "expected a value, found ']'"],
    ['{"a" 1}', 5, "expected ':' after a key, found '1'"],
    ["[1}", 2, "expected ',' or ']', found '}'"],
    ["[01]", 2, "a number has a leading zero"],
    ["[1.]", 3, "expected a digit after '.', found ']'"],
    ["[-]", 2, "expected a digit after '-', found ']'"],
    ["[1e]", 3, "expected a digit in the exponent, found ']'"],
    ["[tru]", 4, "expected true, found ']'"],
    ['["a\tb"]', 3, "a string holds a control character (byte 0x09); it must be escaped"],
    ['["\\x"]', 3, "a string holds an escape that JSON does not have: \\x"],
    ['["\\u12G4"]', 6, "a string holds a \\u escape with 'G' where a hex digit belongs"],
    ["[NaN]", 1, "expected a value, found 'N'"],
    ["{'a':1}", 1, "expected a key or '}', found '''"],
  ])("refuses %s at byte %d: %s", (text, at, problem) => {
    expect(checkInSteps(encode(text), 100)).toEqual({ end: INVALID, at, problem });
  });

  test("agrees with JSON.parse on generated and damaged values, however the bytes are split", () => {
    const random = seededRandom(5);
    const value = (depth: number): unknown => {
      const kind = random.int(depth > 3 ? 4 : 6);
      if (kind === 0) return random.pick([0, -1, 1.5, 1e21, -2.5e-7, 123456]);
      if (kind === 1) return random.pick(["", "a", 'q"uote', "back\\slash", "日本", "😀", "\n\t", "\u0001", "]},"]);
      if (kind === 2) return random.pick([true, false, null]);
      if (kind === 3) return {};
      if (kind === 4) return Array.from({ length: random.int(4) }, () => value(depth + 1));
      return Object.fromEntries(Array.from({ length: random.int(4) }, (_, i) => [`k${i}${random.pick(["", '"', "\\"])}`, value(depth + 1)]));
    };
    const damage = ["", ",", "]", "}", "[", "{", '"', ":", "\\", "x", "0", "-", ".", "e", " ", "\t", "tru", "\u0002"];
    let refused = 0;
    for (let i = 0; i < 3000; i++) {
      let text = JSON.stringify(value(0), null, random.next() < 0.3 ? 1 : undefined);
      if (random.next() < 0.6) {
        const at = random.int(text.length + 1);
        const cut = random.next() < 0.5 ? 1 : 0;
        text = text.slice(0, at) + random.pick(damage) + text.slice(at + cut);
      }
      let valid = true;
      try {
        JSON.parse(text);
      } catch {
        valid = false;
      }
      // JSON.parse allows whitespace around a value; the check starts at the value.
      if (text.trim() !== text) continue;
      const bytes = encode(`${text} `);
      const whole = checkInSteps(bytes, bytes.length);
      const length = encode(text).length;
      if (valid) expect(whole.end).toBe(length);
      else {
        refused++;
        expect(whole.end).not.toBe(length);
      }
      for (const step of [1, 2, 3, 7]) expect(checkInSteps(bytes, step)).toEqual(whole);
    }
    expect(refused).toBeGreaterThan(500);
  });
});
