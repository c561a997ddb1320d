import { describe, expect, test } from "bun:test";
import { latin1Text, splitLines, utf8Text } from "../../src/sources/lines.ts";
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
      if (got !== undefined) expect(latin1Text(line, 0, 0, line.length) !== undefined).toBe(![...got].some((ch) => (ch.codePointAt(0) as number) > 0xff));
    }
  });

  test("gives the text of [from, to) alone when told a first high byte before from", () => {
    const bytes = Buffer.from("aé\nbü\nc");
    expect(latin1Text(bytes, 4, 1, 7)).toBe("bü");
    expect(latin1Text(bytes, 8, 1, 8)).toBe("");
    expect(latin1Text(bytes, 8, 5, 9)).toBe("c");
  });

  test("leaves lines longer than 64 KiB to the decoder, which gives the same text", () => {
    const line = Buffer.from(`{"s":"${"é".repeat(40_000)}"}`);
    expect(latin1Text(line, 0, 6, line.length)).toBeUndefined();
    expect(decodeLine(line)).toBe(line.toString("utf8"));
  });
});

/** The lines `splitLines` reports for `input`, read `chunkBytes` at a time (bad lines as `undefined`). */
async function split(input: Uint8Array, chunkBytes?: number, reads: (max: number) => number = (max) => max): Promise<(string | undefined)[]> {
  const lines: (string | undefined)[] = [];
  let at = 0;
  await splitLines(
    async (buffer, offset, length) => {
      const n = Math.min(reads(length), input.length - at);
      buffer.set(input.subarray(at, at + n), offset);
      at += n;
      return n;
    },
    { line: (text) => lines.push(text), bad: () => lines.push(undefined), chunkDone: () => true },
    chunkBytes === undefined ? {} : { chunkBytes },
  );
  return lines;
}

/** The same split done the plain way: on every LF, a CR before it dropped, each line through the fatal decoder. */
function referenceLines(input: Uint8Array): (string | undefined)[] {
  let body = input;
  if (body[0] === 0xef && body[1] === 0xbb && body[2] === 0xbf) body = body.subarray(3);
  if (body.length === 0) return [];
  const lines: (string | undefined)[] = [];
  let from = 0;
  while (from < body.length) {
    const newline = body.indexOf(10, from);
    const stop = newline < 0 ? body.length : newline;
    lines.push(reference(body.subarray(from, stop > from && body[stop - 1] === 13 ? stop - 1 : stop)));
    from = stop + 1;
  }
  return lines;
}

describe("splitLines: the text of each line", () => {
  test("reports an empty line after a line that ends in a character from U+0080 to U+00FF", async () => {
    // "é" at bytes 8-9 and the empty line at byte 11, the last word of the chunk: the scan for
    // bytes above 0x7F must not report the "é" of the line before as the empty line's.
    for (const prefix of ["", "a", "ab", "abc", "abcd", "abcdefgh"]) {
      const input = Buffer.from(`${prefix}é\n\n`);
      expect(await split(input)).toEqual([`${prefix}é`, ""]);
      expect(await split(Buffer.from(`${prefix}é\r\n\r\nx\n`))).toEqual([`${prefix}é`, "", "x"]);
    }
  });

  test("gives the lines of a plain split and the fatal decoder for random bytes, at any chunk size", async () => {
    const random = seededRandom(7);
    const pieces = ["a", "é", "ÿ", "\u0080", "Ā", "日", "😀", "\r", "\r\n", "\n", "\n\n", "\uFEFF", "\uFFFD"].map((s) => Buffer.from(s));
    const broken = [[0xc3], [0xc2, 0x41], [0xc0, 0x80], [0x80], [0xff], [0xe2, 0x82], [0xed, 0xa0, 0x80]].map((b) => Buffer.from(b));
    for (let i = 0; i < 1_500; i++) {
      const parts: Buffer[] = [];
      if (random.next() < 0.05) parts.push(Buffer.from([0xef, 0xbb, 0xbf]));
      const n = random.int(120);
      for (let k = 0; k < n; k++) parts.push(random.pick(random.next() < 0.03 ? broken : pieces));
      const input = Buffer.concat(parts);
      const chunkBytes = 4 + random.int(60);
      expect(await split(input, chunkBytes, (max) => Math.min(max, 1 + random.int(90)))).toEqual(referenceLines(input));
    }
  });

  test("decodes a line of exactly 64 KiB, and one a byte longer, of Latin-1 text longer than the chunk", async () => {
    for (const bytes of [64 * 1024, 64 * 1024 + 1]) {
      const text = `${"é".repeat((bytes - (bytes % 2)) / 2)}${bytes % 2 ? "a" : ""}`;
      expect(Buffer.byteLength(text)).toBe(bytes);
      expect(await split(Buffer.from(`${text}\r\n${text}`), 4096)).toEqual([text, text]);
    }
  });
});
