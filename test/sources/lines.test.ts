import { describe, expect, test } from "bun:test";
import { latin1Text, utf8Text } from "../../src/sources/lines.ts";
import { seededRandom } from "../../src/generate/random.ts";

const fatal = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** What the splitter makes of a line that holds a byte above 0x7F: the one-byte path, else the decoder. */
function decodeLine(bytes: Buffer): string | undefined {
  const high = bytes.findIndex((b) => b > 0x7f);
  return latin1Text(bytes, 0, high < 0 ? bytes.length : high, bytes.length) ?? utf8Text(bytes, 0, bytes.length);
}

function reference(bytes: Uint8Array): string | undefined {
  try {
    return fatal.decode(bytes);
  } catch {
    return undefined;
  }
}

describe("latin1Text: one-byte text for lines whose characters are all U+00FF or below", () => {
  test("decodes every 1-, 2- and 3-byte sequence after an ASCII prefix exactly as the fatal decoder does", () => {
    let oneByte = 0;
    for (let a = 0x80; a < 0x100; a++) {
      expect(decodeLine(Buffer.from([0x61, a]))).toBe(reference(new Uint8Array([0x61, a])));
      for (let b = 0; b < 0x100; b++) {
        const pair = Buffer.from([0x7b, a, b]);
        const got = decodeLine(pair);
        expect(got).toBe(reference(pair));
        if (latin1Text(pair, 0, 1, 3) !== undefined) oneByte++;
        for (const c of [0x00, 0x41, 0x7f, 0x80, 0xa9, 0xbf, 0xc0, 0xc3, 0xff]) {
          const triple = Buffer.from([a, b, c]);
          expect(decodeLine(triple)).toBe(reference(triple));
        }
      }
    }
    // Exactly the 128 valid two-byte forms of U+0080-U+00FF took the one-byte path.
    expect(oneByte).toBe(128);
  });

  test("gives the same text as the fatal decoder for random lines of Latin-1, other, broken and cut-off characters", () => {
    const random = seededRandom(41).next;
    const pieces = ["a", "é", "ü", "ÿ", "\u0080", "\u00a0", "Ā", "日本", "😀", "\\", '"'].map((s) => Buffer.from(s));
    const broken = [[0xc3], [0xc2, 0x41], [0xc3, 0xc3, 0xa9], [0xc0, 0x80], [0xc1, 0xbf], [0x80], [0xff], [0xe2, 0x82]].map((b) => Buffer.from(b));
    for (let i = 0; i < 20_000; i++) {
      const parts: Buffer[] = [];
      const n = 1 + Math.floor(random() * 30);
      for (let k = 0; k < n; k++) {
        const from = random() < 0.05 ? broken : pieces;
        parts.push(from[Math.floor(random() * from.length)] as Buffer);
      }
      const line = Buffer.concat(parts);
      const got = decodeLine(line);
      expect(got).toBe(reference(line));
      // One byte a character exactly when every character is U+00FF or below.
      if (got !== undefined) expect(latin1Text(line, 0, 0, line.length) !== undefined).toBe(!/[^\u0000-\u00ff]/.test(got));
    }
  });

  test("leaves lines longer than 64 KiB to the decoder, which gives the same text", () => {
    const line = Buffer.from(`{"s":"${"é".repeat(40_000)}"}`);
    expect(latin1Text(line, 0, 6, line.length)).toBeUndefined();
    expect(decodeLine(line)).toBe(line.toString("utf8"));
  });
});
