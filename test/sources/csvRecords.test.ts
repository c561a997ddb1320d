import { describe, expect, test } from "bun:test";
import { seededRandom } from "../../src/generate/random.ts";
import { splitRecords } from "../../src/sources/csv/records.ts";

/**
 * The splitter finds records on bytes and decodes each alone: ASCII records sliced as Latin-1,
 * records of characters up to U+00FF kept one byte a character, the rest through the UTF-8
 * decoder; records with a quote walked character by character. These tests hold it to a slow
 * reference that knows none of that: it walks the grammar on bytes and decodes every record
 * whole with the fatal decoder.
 */

const fatal = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const lenient = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });
const LF = 10;
const CR = 13;
const Q = 34;
const D = 44;

type Event =
  | { kind: "record"; line: number; fields: string[]; quoted: boolean[]; raw: string }
  | { kind: "bad"; line: number; error: string; raw: string; bytes: number[] | undefined };

interface Parsed {
  events: Event[];
  /** For each record: the offset after it and the last line it used. */
  ends: Map<number, number>;
}

/** The grammar of src/sources/csv/records.ts, on bytes, one record at a time; `fatal` decides what is UTF-8. */
function reference(input: Uint8Array): Parsed {
  const n = input.length;
  const events: Event[] = [];
  const ends = new Map<number, number>();
  const text = (from: number, to: number) => fatal.decode(input.subarray(from, to));
  const newlines = (from: number, to: number) => input.subarray(from, to).filter((b) => b === LF).length;
  let pos = input[0] === 0xef && input[1] === 0xbb && input[2] === 0xbf ? 3 : 0;
  let line = 0;
  ends.set(pos, line);
  while (pos < n) {
    const begin = pos;
    let lineEnd = input.indexOf(LF, begin);
    if (lineEnd < 0) lineEnd = n;
    let end: number;
    let stop: number;
    let fields: { from: number; to: number; quoted: boolean }[] = [];
    let problem: string | undefined;
    if (!input.subarray(begin, lineEnd).includes(Q)) {
      // A line without a quote is the record, cut at every delimiter (a CR before its end is dropped).
      stop = lineEnd > begin && input[lineEnd - 1] === CR ? lineEnd - 1 : lineEnd;
      end = lineEnd + 1;
      let from = begin;
      for (let i = begin; i <= stop; i++) {
        if (i === stop || input[i] === D) {
          fields.push({ from, to: i, quoted: false });
          from = i + 1;
        }
      }
    } else {
      fields = [];
      let i = begin;
      for (;;) {
        if (i < n && input[i] === Q) {
          let j = i + 1;
          while (j < n && !(input[j] === Q && input[j + 1] !== Q)) j += input[j] === Q ? 2 : 1;
          if (j >= n) {
            stop = input[n - 1] === LF && n - 1 > begin ? (input[n - 2] === CR && n - 2 > begin ? n - 2 : n - 1) : n;
            const lines = newlines(begin, stop) + 1;
            problem = `unterminated quoted field ${fields.length + 1}: the record beginning on line ${line + 1} runs to the end of the input${lines > 1 ? ` (${lines} lines)` : ""}; the input looks truncated`;
            end = n;
            break;
          }
          fields.push({ from: i + 1, to: j, quoted: true });
          i = j + 1;
          let c = i < n ? (input[i] as number) : -1;
          if (c === CR && input[i + 1] === LF) c = input[++i] as number;
          if (c !== D && c !== LF && c !== -1) {
            problem ??= `text after the closing quote of field ${fields.length}`;
            while (i < n && input[i] !== D && input[i] !== LF) i++;
          }
        } else {
          let j = i;
          while (j < n && input[j] !== D && input[j] !== LF) j++;
          fields.push({ from: i, to: j < n && input[j] === LF && j > i && input[j - 1] === CR ? j - 1 : j, quoted: false });
          i = j;
        }
        if (i >= n) {
          stop = n;
          end = n;
          break;
        }
        if (input[i] === D) {
          i++;
          continue;
        }
        stop = i > begin && input[i - 1] === CR ? i - 1 : i;
        end = i + 1;
        break;
      }
    }
    const first = line + 1;
    try {
      text(begin, Math.min(end, n));
      const raw = text(begin, stop);
      if (problem !== undefined) events.push({ kind: "bad", line: first, error: problem, raw, bytes: undefined });
      else {
        const values = fields.map((f) => (f.quoted ? text(f.from, f.to).replaceAll('""', '"') : text(f.from, f.to)));
        events.push({ kind: "record", line: first, fields: values, quoted: fields.map((f) => f.quoted), raw });
      }
      line += newlines(begin, stop) + 1;
    } catch {
      // Not UTF-8: the record as bytes, without its line ending.
      const last = input[Math.min(end, n) - 1] === LF ? (input[Math.min(end, n) - 2] === CR ? Math.min(end, n) - 2 : Math.min(end, n) - 1) : Math.min(end, n);
      const body = input.subarray(begin, Math.max(last, begin));
      events.push({ kind: "bad", line: first, error: "record is not valid UTF-8", raw: lenient.decode(body), bytes: [...body] });
      line += newlines(begin, Math.max(last, begin)) + 1;
    }
    pos = Math.min(end, n);
    ends.set(pos, line);
  }
  return { events, ends };
}

/** What splitRecords reports, with `quoted` spelt out and the resume points it gives. */
async function split(input: Uint8Array, chunkBytes: number): Promise<{ events: Event[]; marks: [number, number][] }> {
  let at = 0;
  const events: Event[] = [];
  const marks: [number, number][] = [];
  await splitRecords(
    async (buffer, offset, length) => {
      const n = Math.min(length, input.length - at);
      buffer.set(input.subarray(at, at + n), offset);
      at += n;
      return n;
    },
    { delimiter: ",", quote: '"' },
    {
      record(fields, quoted, line, raw) {
        events.push({ kind: "record", line, fields, quoted: quoted ?? fields.map(() => false), raw });
        return true;
      },
      bad(line, error, raw, bytes) {
        events.push({ kind: "bad", line, error, raw, bytes: bytes ? [...bytes] : undefined });
        return true;
      },
      chunkDone(line, offset) {
        marks.push([line, offset]);
        return true;
      },
    },
    { chunkBytes },
  );
  return { events, marks };
}

const bytesOf = (...parts: (string | number[])[]) => Buffer.concat(parts.map((p) => (typeof p === "string" ? Buffer.from(p) : Buffer.from(p))));

// Cells as bytes: ASCII, Latin-1 letters (two UTF-8 bytes that become one character), other
// characters of two, three and four bytes, U+FFFD itself, and byte sequences that are not
// UTF-8 (a lone lead byte, a lead byte before ASCII or before another lead, overlong forms,
// surrogates, beyond U+10FFFF), some next to Latin-1 letters.
const PLAIN = ["", "a", "plain text", "5.25", "true", "T1", "Café Zürich", "Ünïcödé", "ß", "ÿ", "\u0080", "\u00a0x", "ā", "Ω", "€", "日本", "\uFFFD", "¡olé! 😀", "a'b", 'x"y', "\r", "x\ry"];
const BAD = [[0xff], [0xc3], [0xc3, 0x28], [0xc2], [0xc3, 0xc3, 0xa9], [0xc0, 0x80], [0xe0, 0x80, 0x80], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xe2, 0x82]];
const QUOTED_ONLY = [",", "x,y", 'say "hi"', '"', "line\nbreak", "crlf\r\nbreak", "é\nü", '😀"\n"'];

function hostileCsv(seed: number): Uint8Array {
  const random = seededRandom(seed);
  const parts: (string | number[])[] = [];
  if (random.next() < 0.3) parts.push([0xef, 0xbb, 0xbf]);
  const records = 20 + random.int(60);
  for (let r = 0; r < records; r++) {
    const width = 1 + random.int(5);
    for (let c = 0; c < width; c++) {
      if (c > 0) parts.push(",");
      const roll = random.next();
      if (roll < 0.08) {
        // Bad bytes, inside quotes or not, between text.
        const inQuotes = random.next() < 0.5;
        parts.push(inQuotes ? '"' : "", random.pick(["", "é", "a"]), random.pick(BAD), random.pick(["", "ü", "b"]), inQuotes ? '"' : "");
      } else if (roll < 0.12) {
        parts.push(`"${random.pick(PLAIN)}"`, random.pick(["x", "é", " ", '"x']));
      } else if (roll < 0.45) {
        parts.push(`"${random.pick([...PLAIN, ...QUOTED_ONLY]).replaceAll('"', '""')}"`);
      } else {
        parts.push(random.pick(PLAIN));
      }
    }
    if (r < records - 1 || random.next() < 0.5) parts.push(random.next() < 0.3 ? "\r\n" : "\n");
  }
  if (random.next() < 0.2) parts.push('\nz,"open ', random.pick(["é", "😀", "x\n", "\r\n"]));
  return bytesOf(...parts);
}

describe("splitRecords: each record decoded alone, against a reference that decodes on bytes", () => {
  test.each(Array.from({ length: 40 }, (_, i) => i + 1))(
    "reports the same records, dead letters, lines and raw text for hostile input, at every chunk size (seed %p)",
    async (seed) => {
      const input = hostileCsv(seed);
      const want = reference(input);
      for (const chunkBytes of [4, 7, 13, 64, 1024 * 1024]) {
        const got = await split(input, chunkBytes);
        expect(got.events).toEqual(want.events);
        // Every resume point but the last (the end of the input) is the end of a record, and its line is that record's last.
        for (const [line, offset] of got.marks.slice(0, -1)) expect([offset, line]).toEqual([offset, want.ends.get(offset) ?? -1]);
      }
    },
  );

  test("reads a short record after one ending in é at every alignment of the chunk's last word", async () => {
    for (let pad = 0; pad < 8; pad++) {
      for (const tail of ["\n\n", "\n,\n", '\n""\n', "\nx\n", "\r\n\r\n"]) {
        const input = bytesOf(`${"a".repeat(pad)}é`, tail);
        const want = reference(input);
        for (const chunkBytes of [4, 5, 6, 7, 64]) expect((await split(input, chunkBytes)).events).toEqual(want.events);
      }
    }
  });

  test("dead-letters records that end in half a character, with or without quotes, line ending or a record after", async () => {
    const input = bytesOf("a,", [0xc3], "\nb,", [0xc2], '\r\n"c",é', [0xc3], "\nd,ok\n", [0xe2, 0x82], "\nü,", [0xc3]);
    const want = reference(input);
    expect(want.events.map((e) => (e.kind === "bad" ? [e.line, e.error] : [e.line, e.fields]))).toEqual([
      [1, "record is not valid UTF-8"],
      [2, "record is not valid UTF-8"],
      [3, "record is not valid UTF-8"],
      [4, ["d", "ok"]],
      [5, "record is not valid UTF-8"],
      [6, "record is not valid UTF-8"],
    ]);
    for (const chunkBytes of [4, 1024 * 1024]) expect((await split(input, chunkBytes)).events).toEqual(want.events);
  });

  test("reads a record of Latin-1 letters longer than 64 KiB (past the one-byte path's limit) like any other", async () => {
    const long = "é".repeat(40_000);
    const input = bytesOf(`a,"${long}",${long}\nb,ü,`, [0xc3], `\nc,"${long}`, [0xff], '"\n');
    const want = reference(input);
    expect(want.events.map((e) => [e.kind, e.line])).toEqual([
      ["record", 1],
      ["bad", 2],
      ["bad", 3],
    ]);
    for (const chunkBytes of [4096, 1024 * 1024]) expect((await split(input, chunkBytes)).events).toEqual(want.events);
  });
});
