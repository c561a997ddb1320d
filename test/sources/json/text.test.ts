import { describe, expect, test } from "bun:test";
import { seededRandom } from "../../../src/generate/random.ts";
import { elementText, firstHighByte, viewsOf } from "../../../src/sources/json/text.ts";

const fatal = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** What the fatal decoder makes of `bytes`: the text, or undefined when they are not UTF-8. */
function decoded(bytes: Uint8Array): string | undefined {
  try {
    return fatal.decode(bytes);
  } catch {
    return undefined;
  }
}

/** `piece` placed at `at` in a buffer of ASCII, decoded by elementText over `[from, to)` as fromJson calls it. */
function textAt(piece: Uint8Array, at: number): { got: string | undefined; want: string | undefined } {
  const buffer = new Uint8Array(at + piece.length + 9).fill(0x61);
  buffer.set(piece, at);
  const from = Math.max(0, at - 2);
  const to = at + piece.length + 1;
  const views = viewsOf(buffer);
  return { got: elementText(views, from, firstHighByte(views, from, to), to), want: decoded(buffer.subarray(from, to)) };
}

describe("elementText", () => {
  test("gives what the fatal decoder gives for every one- and two-byte sequence, at every alignment", () => {
    const piece = new Uint8Array(2);
    let differences = 0;
    for (let a = 0; a < 256; a++) {
      for (let b = 0; b < 256; b++) {
        piece[0] = a;
        piece[1] = b;
        for (const at of [0, 1, 2, 3, 4]) {
          const { got, want } = textAt(b === 0 ? piece.subarray(0, 1) : piece, at);
          if (got !== want) differences++;
        }
      }
    }
    expect(differences).toBe(0);
  });

  test("gives what the fatal decoder gives for 20,000 random texts of ASCII, Latin-1, other scripts, emoji and broken bytes", () => {
    const random = seededRandom(11);
    const pieces = ["a", '{"k":', "é", "ÿ", "\u0080", "日本", "😀", "\u2028", "\uFEFF", "\\", '"'].map((p) => Buffer.from(p));
    const broken = [[0x80], [0xff], [0xc3], [0xc2, 0x41], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xe2, 0x82], [0xf0, 0x9f, 0x98], [0xf4, 0x90, 0x80, 0x80]].map((b) => Buffer.from(b));
    const failures: string[] = [];
    for (let n = 0; n < 20_000; n++) {
      const parts = Array.from({ length: 1 + random.int(40) }, () => (random.next() < 0.03 ? random.pick(broken) : random.pick(pieces)));
      const piece = Buffer.concat(parts);
      const { got, want } = textAt(piece, random.int(8));
      if (got !== want && failures.length < 5) failures.push(piece.toString("hex"));
    }
    expect(failures).toEqual([]);
  });

  test("decodes texts longer than the one-byte path takes", () => {
    for (const text of ["é".repeat(40_000), `${"a".repeat(70_000)}ü`, `${"a".repeat(70_000)}日`]) {
      const bytes = Buffer.from(text);
      const views = viewsOf(bytes);
      expect(elementText(views, 0, firstHighByte(views, 0, bytes.length), bytes.length)).toBe(text);
    }
  });
});

describe("firstHighByte", () => {
  test("finds the first byte above 0x7F at every position and alignment, or the end", () => {
    const buffer = new Uint8Array(64).fill(0x7f);
    const views = viewsOf(buffer);
    for (let high = 0; high <= 40; high++) {
      for (let from = 0; from <= Math.min(high, 12); from++) {
        for (const to of [high, high + 1, 41]) {
          buffer.fill(0x7f);
          if (high < 40) buffer[high] = 0x80;
          // A high byte after `to` is not seen.
          buffer[45] = 0xff;
          const want = high < to && high < 40 ? high : to;
          expect([from, to, firstHighByte(views, from, to)]).toEqual([from, to, want]);
        }
      }
    }
  });

  test("never names a byte before `from`, when the range ends before a four-byte boundary", () => {
    for (let from = 0; from < 12; from++) {
      for (let to = from; to <= from + 5; to++) {
        const buffer = new Uint8Array(24).fill(0x41);
        // High bytes everywhere before `from`, none from it on.
        buffer.fill(0xc3, 0, from);
        expect([from, to, firstHighByte(viewsOf(buffer), from, to)]).toEqual([from, to, to]);
      }
    }
  });

  test("works over a view that does not start on a four-byte boundary", () => {
    const whole = new Uint8Array(40).fill(0x41);
    whole[21] = 0xc3;
    const views = viewsOf(whole.subarray(3));
    expect(firstHighByte(views, 0, 37)).toBe(18);
    expect(firstHighByte(views, 19, 37)).toBe(37);
  });
});
