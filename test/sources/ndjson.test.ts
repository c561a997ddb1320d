import { describe, expect, test } from "bun:test";
import { appendFile, mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { take } from "rxjs";
import { deadLetter } from "../../operators/index.ts";
import type { DeadLetter } from "../../src/deadletter/entry.ts";
import { run, type RunSummary } from "../../src/run/run.ts";
import { fromNdjson, type NdjsonOptions } from "../../src/sources/ndjson.ts";
import { bytes, inputFolder } from "../helpers/inputs.ts";
import { seededRandom } from "../../src/generate/random.ts";

const dir = inputFolder("sluice-ndjson-", ".ndjson");
const file = dir.file.bind(dir);


interface Read {
  values: unknown[];
  entries: DeadLetter[];
  summary: RunSummary;
}

/**
 * Reads `input` into a collecting dead letter and checks the accounting every test relies on:
 * each record read is either emitted or dead-lettered, never both, never neither.
 */
async function read(input: string | readonly string[], options: NdjsonOptions = {}, checkpoint?: string): Promise<Read> {
  const values: unknown[] = [];
  const entries: DeadLetter[] = [];
  const summary = await run(
    fromNdjson(input, options).pipe(deadLetter((entry) => entries.push(entry))),
    { handleSignals: false, onValue: (value) => values.push(value), checkpoint },
  );
  expect(summary.in).toBe(values.length + entries.length);
  expect(summary.emitted).toBe(values.length);
  expect(summary.deadLettered).toBe(entries.length);
  expect(summary.deadLetteredByStage).toEqual(entries.length ? { parse: entries.length } : {});
  for (const entry of entries) expect(entry.stage).toBe("parse");
  return { values, entries, summary };
}

const brief = (entries: readonly DeadLetter[]) => entries.map((e) => [e.line, e.error]);

/** The parts of a dead letter that the input alone decides. */
interface Reject {
  line: number;
  error: string;
  raw: string;
  rawBase64?: string;
}

const rejects = (entries: readonly DeadLetter[]): Reject[] =>
  entries.map(({ line, error, raw, rawBase64 }) => ({ line, error, raw, rawBase64 }));

/** What reading `content` must give, worked out independently of the splitter. */
function expected(content: Uint8Array): { values: unknown[]; entries: Reject[]; lines: number } {
  const fatal = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
  const lenient = new TextDecoder("utf-8", { ignoreBOM: true });
  const start = content[0] === 0xef && content[1] === 0xbb && content[2] === 0xbf ? 3 : 0;
  const lines: Uint8Array[] = [];
  let from = start;
  for (let i = start; i < content.length; i++) {
    if (content[i] === 10) {
      lines.push(content.subarray(from, i));
      from = i + 1;
    }
  }
  if (from < content.length) lines.push(content.subarray(from));
  const values: unknown[] = [];
  const entries: Reject[] = [];
  lines.forEach((raw, index) => {
    const line = index + 1;
    const bytes = raw.length > 0 && raw[raw.length - 1] === 13 ? raw.subarray(0, raw.length - 1) : raw;
    let text: string;
    try {
      text = fatal.decode(bytes);
    } catch {
      entries.push({
        line,
        error: "line is not valid UTF-8",
        raw: lenient.decode(bytes),
        rawBase64: Buffer.from(bytes).toString("base64"),
      });
      return;
    }
    try {
      values.push(JSON.parse(text));
    } catch (error) {
      const reason = text.trim() === "" ? "blank line" : `malformed JSON: ${(error as Error).message}`;
      entries.push({ line, error: reason, raw: text });
    }
  });
  return { values, entries, lines: lines.length };
}

/** The project's seeded generator (mulberry32), so a failure can be replayed. */
const random = (seed: number): (() => number) => seededRandom(seed).next;

/** An NDJSON file with every kind of line, in random lengths, so lines cross chunk boundaries. */
function messyFile(seed: number): Uint8Array {
  const next = random(seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)];
  const text = () => Array.from({ length: Math.floor(next() * 40) }, () => pick(["a", "é", "日本", "😀", " ", "\\n", '\\"', "z"])).join("");
  const parts: (string | number[])[] = [];
  if (next() < 0.5) parts.push([0xef, 0xbb, 0xbf]);
  const count = 20 + Math.floor(next() * 60);
  for (let i = 0; i < count; i++) {
    const kind = next();
    if (kind < 0.55) parts.push(JSON.stringify({ i, s: JSON.parse(`"${text()}"`), n: next() * 1e6, a: [null, true, i] }));
    else if (kind < 0.62) parts.push("");
    else if (kind < 0.67) parts.push(pick([" ", "\t", "   \t "]));
    else if (kind < 0.75) parts.push(pick(["{", "nope", `{"i": ${i},}`, "'single'", `[${text()}`]));
    else if (kind < 0.85) parts.push(`{"i":${i},"s":"`, pick([[0xff], [0x80], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xe2, 0x82], [0xf0, 0x9f, 0x98]]), `${text()}"}`);
    else parts.push(pick(["1", "-2.5e3", '"str"', "null", "true", "[]", "{}"]));
    const last = i === count - 1;
    if (!last || next() < 0.5) parts.push(next() < 0.3 ? "\r\n" : "\n");
  }
  return bytes(...parts);
}

describe("fromNdjson", () => {
  test("completes with no records on an empty file", async () => {
    const { values, entries, summary } = await read(await file(""));
    expect(values).toEqual([]);
    expect(entries).toEqual([]);
    expect(summary.in).toBe(0);
    expect(summary.bytesRead).toBe(0);
  });

  test.each([undefined, 7, 64])("reads a last line that has no newline (chunkBytes %p)", async (chunkBytes) => {
    const path = await file('{"a":1}\n{"a":2}\n{"a":3}');
    const { values, entries, summary } = await read(path, { chunkBytes });
    expect(values).toEqual([{ a: 1 }, { a: 2 }, { a: 3 }]);
    expect(entries).toEqual([]);
    expect(summary.in).toBe(3);
  });

  test("does not count a final newline as one more line", async () => {
    const { values, entries } = await read(await file('{"a":1}\n{"a":2}\n'));
    expect(values).toEqual([{ a: 1 }, { a: 2 }]);
    expect(entries).toEqual([]);
  });

  test.each([undefined, 7, 64])("reads CRLF line endings and keeps the CR out of raw text (chunkBytes %p)", async (chunkBytes) => {
    const path = await file('{"a":1}\r\nnot json\r\n\r\n{"a":"\\r"}\r\n{"a":4}');
    const { values, entries } = await read(path, { chunkBytes });
    expect(values).toEqual([{ a: 1 }, { a: "\r" }, { a: 4 }]);
    expect(brief(entries)).toEqual([
      [2, expect.stringMatching(/^malformed JSON: /)],
      [3, "blank line"],
    ]);
    expect(entries.map((e) => e.raw)).toEqual(["not json", ""]);
  });

  test.each([undefined, 3, 7, 64])("skips a byte order mark at the start of the file (chunkBytes %p)", async (chunkBytes) => {
    const path = await file(bytes([0xef, 0xbb, 0xbf], '{"a":1}\n{"a":2}\n'));
    const { values, entries } = await read(path, { chunkBytes });
    expect(values).toEqual([{ a: 1 }, { a: 2 }]);
    expect(entries).toEqual([]);
  });

  test("skips a byte order mark only at the start of the file", async () => {
    const path = await file(bytes([0xef, 0xbb, 0xbf], '{"a":1}\n', [0xef, 0xbb, 0xbf], '{"a":2}\n'));
    const { values, entries } = await read(path);
    expect(values).toEqual([{ a: 1 }]);
    expect(brief(entries)).toEqual([[2, expect.stringMatching(/^malformed JSON: /)]]);
    expect(entries[0].raw).toBe('\ufeff{"a":2}');
  });

  test("reads a file holding only a byte order mark as empty", async () => {
    const { values, entries } = await read(await file(bytes([0xef, 0xbb, 0xbf])));
    expect(values).toEqual([]);
    expect(entries).toEqual([]);
  });

  test.each([undefined, 7])("dead-letters blank and whitespace-only lines with their line numbers (chunkBytes %p)", async (chunkBytes) => {
    const path = await file('\n{"a":1}\n\n   \n\t\n{"a":2}\n\n');
    const { values, entries, summary } = await read(path, { chunkBytes });
    expect(values).toEqual([{ a: 1 }, { a: 2 }]);
    expect(brief(entries)).toEqual([
      [1, "blank line"],
      [3, "blank line"],
      [4, "blank line"],
      [5, "blank line"],
      [7, "blank line"],
    ]);
    expect(entries.map((e) => e.raw)).toEqual(["", "", "   ", "\t", ""]);
    expect(summary.in).toBe(7);
  });

  test("dead-letters malformed JSON with the raw line and the parser's reason", async () => {
    const path = await file('{"a":1}\n{"a":\n[1,2\n{"a":1}}\nundefined\nNaN\n{"a":2}\n');
    const { values, entries } = await read(path);
    expect(values).toEqual([{ a: 1 }, { a: 2 }]);
    expect(entries.map((e) => [e.line, e.raw])).toEqual([
      [2, '{"a":'],
      [3, "[1,2"],
      [4, '{"a":1}}'],
      [5, "undefined"],
      [6, "NaN"],
    ]);
    for (const entry of entries) expect(entry.error).toStartWith("malformed JSON: ");
  });

  test("names a control character a string holds unescaped, which the parser calls an unterminated string", async () => {
    // A producer that writes a tab or a NUL into a string without escaping it: "Unterminated
    // string" sent the reader looking for a missing quote.
    const path = await file('{"a":"x\ty"}\n{"a":"\\"ok\\"\u0001"}\n{"a":"cut\n{"a":1}\n');
    const { values, entries } = await read(path);
    expect(values).toEqual([{ a: 1 }]);
    expect(entries.map((e) => [e.line, e.error])).toEqual([
      [1, "malformed JSON: a string holds the control character U+0009 unescaped (line 1, column 8), which JSON does not allow: write it as \\t"],
      [2, "malformed JSON: a string holds the control character U+0001 unescaped (line 2, column 13), which JSON does not allow: write it as \\u0001"],
      [3, "malformed JSON: JSON Parse error: Unterminated string"],
    ]);
  });

  test("says where a line's value ends when more follows it, and names a bare CR, instead of 'Unable to parse JSON string'", async () => {
    const path = await file('{"a":1}{"b":2}\n[1] x\n{"a":1}\r{"a":2}\r{"a":3}\n{"a":4}\n');
    const { values, entries } = await read(path);
    expect(values).toEqual([{ a: 4 }]);
    expect(entries.map((e) => [e.line, e.error])).toEqual([
      [1, 'malformed JSON: a value ends at line 1, column 7 and more follows it ("{\\"b\\":2}"); one JSON value is expected'],
      [2, 'malformed JSON: a value ends at line 2, column 3 and more follows it ("x"); one JSON value is expected'],
      [
        3,
        'malformed JSON: a value ends at line 3, column 7 and more follows it ("\\r{\\"a\\":2}\\r{\\"a\\":3}"); one JSON value is expected. A bare CR follows it: lines that end with CR alone (classic Mac OS) are one line here; convert them (tr \'\\r\' \'\\n\')',
      ],
    ]);
  });

  test("emits any JSON value a line holds, including null", async () => {
    const { values } = await read(await file('1\n"text"\nnull\ntrue\n[1,{"b":[]}]\n{"ü":"😀"}\n-0.5e-3\n'));
    expect(values).toEqual([1, "text", null, true, [1, { b: [] }], { ü: "😀" }, -0.0005]);
  });

  test("dead-letters a number a 64-bit float cannot hold, naming the number, its field, line and column", async () => {
    const path = await file(
      [
        '{"id":1,"n":12345678901234567890}',
        '{"n":1e400}',
        '{"a":[0,{"b":-1e-400}]}',
        '{"n":"12345678901234567890","m":12345678901234567000,"f":0.12345678901234567890,"z":0,"ua":"Mobile/15E148"}',
        "9007199254740993",
      ].join("\n"),
    );
    const { values, entries } = await read(path);
    expect(values).toEqual([{ n: "12345678901234567890", m: 12345678901234567000, f: 0.12345678901234568, z: 0, ua: "Mobile/15E148" }]);
    const tail = "; the record is not read (write such numbers as strings to keep them exact)";
    expect(brief(entries)).toEqual([
      [1, `number 12345678901234567890 at n (line 1, column 13) has more digits than a 64-bit float holds (it would become 12345678901234567000)${tail}`],
      [2, `number 1e400 at n (line 2, column 6) is too large for a 64-bit float (it would become Infinity)${tail}`],
      [3, `number -1e-400 at a.1.b (line 3, column 14) is too small for a 64-bit float (it would become 0)${tail}`],
      [5, `number 9007199254740993 (line 5, column 1) has more digits than a 64-bit float holds (it would become 9007199254740992)${tail}`],
    ]);
    expect(entries[1]?.raw).toBe('{"n":1e400}');
  });

  test("dead-letters a value nested deeper than 10,000 levels at stage parse, naming the line and column, and reads the rest", async () => {
    const arrays = (depth: number) => `${"[".repeat(depth)}1${"]".repeat(depth)}`;
    const objects = (depth: number) => `${'{"a":'.repeat(depth)}1${"}".repeat(depth)}`;
    // Brackets inside strings are text, not nesting.
    const quoted = `{"s":"${"[{".repeat(20_000)}","v":${arrays(9_999)}}`;
    // The object around "v" is a level too: 10,000 in all.
    const path = await file([`{"n":1}`, `{"v":${arrays(9_999)}}`, `{"v":${arrays(100_000)}}`, objects(10_001), quoted, `{"n":2}`].join("\n"));
    const { values, entries } = await read(path);
    expect(values).toHaveLength(4);
    expect(values[0]).toEqual({ n: 1 });
    expect(JSON.stringify(values[1])).toBe(`{"v":${arrays(9_999)}}`);
    expect(JSON.stringify(values[2])).toBe(quoted);
    expect(values[3]).toEqual({ n: 2 });
    expect(brief(entries)).toEqual([
      [3, "value nested more than 10,000 levels deep (line 3, column 10005); the record is not read (raw cut to its first 65536 of 200007 bytes)"],
      [4, "value nested more than 10,000 levels deep (line 4, column 50001); the record is not read"],
    ]);
    expect(entries.map((e) => e.stage)).toEqual(["parse", "parse"]);
    expect(entries[0]?.raw).toBe(`${`{"v":${arrays(100_000)}}`.slice(0, 65_536)}…`);
  });

  test.each([undefined, 64])("reads a 10 MB line and the lines around it (chunkBytes %p)", async (chunkBytes) => {
    const blob = "x".repeat(10 * 1024 * 1024);
    const path = await file(`{"n":1}\n{"blob":"${blob}","n":2}\n{"n":3}\n`);
    const { values, entries, summary } = await read(path, { chunkBytes });
    expect(entries).toEqual([]);
    expect(values).toHaveLength(3);
    expect(values[0]).toEqual({ n: 1 });
    expect((values[1] as { blob: string }).blob.length).toBe(blob.length);
    expect((values[1] as { n: number }).n).toBe(2);
    expect(values[2]).toEqual({ n: 3 });
    expect(summary.in).toBe(3);
  });

  test.each([
    ["a stray continuation byte", [0x80]],
    ["0xFF", [0xff]],
    ["an overlong encoding of /", [0xc0, 0xaf]],
    ["an encoded surrogate", [0xed, 0xa0, 0x80]],
    ["a cut three-byte sequence", [0xe2, 0x82]],
    ["a cut four-byte sequence", [0xf0, 0x9f, 0x98]],
    ["a code point above U+10FFFF", [0xf4, 0x90, 0x80, 0x80]],
  ])("dead-letters a line with %s, keeping its exact bytes, and reads the lines around it", async (_name, bad) => {
    const line = bytes('{"s":"', bad, '"}');
    for (const chunkBytes of [undefined, 7, 64]) {
      const path = await file(bytes('{"n":1}\n{"s":"日本😀"}\n', [...line], '\n{"n":4}\n'));
      const { values, entries } = await read(path, { chunkBytes });
      expect(values).toEqual([{ n: 1 }, { s: "日本😀" }, { n: 4 }]);
      expect(brief(entries)).toEqual([[3, "line is not valid UTF-8"]]);
      expect(Buffer.from(entries[0].rawBase64!, "base64")).toEqual(Buffer.from(line));
      expect(entries[0].raw).toBe(new TextDecoder().decode(line));
    }
  });

  test("reads a valid line holding U+FFFD itself as that character, not as a decoding error", async () => {
    const path = await file(bytes('{"s":"a', [0xef, 0xbf, 0xbd], 'b"}\n{"s":"', [0xef, 0xbf, 0xbd], '", "t":"é"}\n'));
    const { values, entries } = await read(path);
    expect(values).toEqual([{ s: "a\uFFFDb" }, { s: "\uFFFD", t: "é" }]);
    expect(entries).toEqual([]);
  });

  test("keeps the CR out of the bytes of a CRLF line that is not UTF-8", async () => {
    const path = await file(bytes('{"n":1}\r\n', [0xff, 0xfe], "\r\n", '{"n":3}\r\n'));
    const { values, entries } = await read(path, { chunkBytes: 7 });
    expect(values).toEqual([{ n: 1 }, { n: 3 }]);
    expect(Buffer.from(entries[0].rawBase64!, "base64")).toEqual(Buffer.from([0xff, 0xfe]));
  });

  test("dead-letters a last line that is cut inside a character", async () => {
    const path = await file(bytes('{"n":1}\n{"s":"', [0xe2, 0x82]));
    const { values, entries } = await read(path);
    expect(values).toEqual([{ n: 1 }]);
    expect(brief(entries)).toEqual([[2, "line is not valid UTF-8"]]);
    expect(Buffer.from(entries[0].rawBase64!, "base64")).toEqual(Buffer.from(bytes('{"s":"', [0xe2, 0x82])));
  });

  test("accounts for every line of binary garbage", async () => {
    const next = random(42);
    const garbage = new Uint8Array(64 * 1024);
    for (let i = 0; i < garbage.length; i++) garbage[i] = next() < 0.02 ? 10 : Math.floor(next() * 256);
    garbage[0] = 0;
    const path = await file(garbage);
    const want = expected(garbage);
    for (const chunkBytes of [undefined, 7, 64, 1000]) {
      const { values, entries, summary } = await read(path, { chunkBytes });
      expect(summary.in).toBe(want.lines);
      expect(values).toEqual(want.values);
      expect(rejects(entries)).toEqual(want.entries);
    }
    expect(want.entries.filter((e) => e.rawBase64).length).toBeGreaterThan(100);
  });

  test("reads generated files with every kind of line the same way at every chunk size", async () => {
    for (let seed = 1; seed <= 12; seed++) {
      const content = messyFile(seed);
      const path = await file(content);
      const want = expected(content);
      for (const chunkBytes of [3, 4, 5, 7, 8, 13, 64, 4096, undefined]) {
        const { values, entries, summary } = await read(path, { chunkBytes });
        expect(summary.in).toBe(want.lines);
        expect(values).toEqual(want.values);
        expect(rejects(entries)).toEqual(want.entries);
        for (const entry of entries) expect(entry.source).toBe(path);
      }
    }
  });

  test("reads a file of several megabytes with every kind of line and lines longer than the 64 KiB pieces a chunk is decoded in", async () => {
    // Chunks of whole lines are decoded 64 KiB at a time, cut at line ends: lines on both sides of
    // every cut, lines longer than a piece (and than a chunk), CRLF and bad UTF-8 next to a cut.
    const next = random(99);
    const parts: Uint8Array[] = [];
    for (let i = 0; i < 400; i++) {
      const messy = messyFile(1000 + i);
      // Without a byte order mark (it counts only at the start), and ending with a newline.
      const body = messy[0] === 0xef && messy[1] === 0xbb && messy[2] === 0xbf ? messy.subarray(3) : messy;
      parts.push(body, body[body.length - 1] === 10 ? new Uint8Array() : bytes("\n"));
      if (next() < 0.05) parts.push(bytes(JSON.stringify({ long: "é".repeat(20_000 + Math.floor(next() * 600_000)) }), next() < 0.5 ? "\r\n" : "\n"));
    }
    const content = Buffer.concat(parts);
    expect(content.length).toBeGreaterThan(2 * 1024 * 1024);
    const path = await file(content);
    const want = expected(content);
    for (const chunkBytes of [undefined, 256 * 1024, 100_003]) {
      const { values, entries, summary } = await read(path, { chunkBytes });
      expect(summary.in).toBe(want.lines);
      expect(values).toEqual(want.values);
      expect(rejects(entries)).toEqual(want.entries);
    }
  });

  test.each([
    [16, 64],
    [7, 64],
    [64, 64],
  ])("dead-letters a line longer than maxLineBytes and reads the lines after it (chunkBytes %d, maxLineBytes %d)", async (chunkBytes, maxLineBytes) => {
    const long = `{"s":"${"y".repeat(300)}"}`;
    const path = await file(`{"n":1}\n${long}\n{"n":3}\n${long}\n${long}\n{"n":6}\n${long}`);
    const { values, entries } = await read(path, { chunkBytes, maxLineBytes });
    expect(values).toEqual([{ n: 1 }, { n: 3 }, { n: 6 }]);
    expect(brief(entries)).toEqual([2, 4, 5, 7].map((line) => [line, `line is longer than ${maxLineBytes} bytes`]));
    for (const entry of entries) {
      expect(entry.raw).toStartWith('{"s":"yyy');
      expect(entry.raw).toEndWith("…");
      expect(entry.raw.length).toBeLessThanOrEqual(1025);
      expect(entry.rawBase64).toBeUndefined();
    }
  });

  test("reads a line just under maxLineBytes", async () => {
    const line = `{"s":"${"z".repeat(54)}"}`;
    expect(line.length).toBe(62);
    const { values, entries } = await read(await file(`${line}\n{"n":2}\n`), { chunkBytes: 8, maxLineBytes: 64 });
    expect(entries).toEqual([]);
    expect(values).toEqual([{ s: "z".repeat(54) }, { n: 2 }]);
  });

  test("reads files matched by a glob in name order, numbering lines per file", async () => {
    const folder = join(dir.path, "glob");
    await mkdir(folder);
    await writeFile(join(folder, "c.ndjson"), '{"f":"c","n":1}\n\n');
    await writeFile(join(folder, "a.ndjson"), '{"f":"a","n":1}\n{"f":"a","n":2}\nbad\n');
    await writeFile(join(folder, "b10.ndjson"), '{"f":"b10","n":1}\n');
    await writeFile(join(folder, "b2.ndjson"), '{"f":"b2","n":1}\n');
    await writeFile(join(folder, "skip.txt"), '{"f":"txt"}\n');
    const { values, entries, summary } = await read(join(folder, "*.ndjson"));
    expect(values).toEqual([
      { f: "a", n: 1 },
      { f: "a", n: 2 },
      { f: "b10", n: 1 },
      { f: "b2", n: 1 },
      { f: "c", n: 1 },
    ]);
    expect(entries.map((e) => [e.source, e.line])).toEqual([
      [join(folder, "a.ndjson"), 3],
      [join(folder, "c.ndjson"), 2],
    ]);
    expect(summary.in).toBe(7);
  });

  test("reads a list of paths and globs in the order given", async () => {
    const folder = join(dir.path, "list");
    await mkdir(folder);
    await writeFile(join(folder, "x.ndjson"), '{"f":"x"}\n');
    await writeFile(join(folder, "a1.ndjson"), '{"f":"a1"}\n');
    await writeFile(join(folder, "a2.ndjson"), '{"f":"a2"}\n');
    const { values } = await read([join(folder, "x.ndjson"), join(folder, "a?.ndjson")]);
    expect(values).toEqual([{ f: "x" }, { f: "a1" }, { f: "a2" }]);
  });

  test("reads a file whose name holds glob characters when the pattern matches no other, as a shell does", async () => {
    // "export[1].ndjson" as a glob matches only "export1.ndjson": the file itself was "not found".
    const folder = join(dir.path, "literal");
    await mkdir(folder);
    await writeFile(join(folder, "export[1].ndjson"), '{"f":"brackets"}\n');
    await writeFile(join(folder, "{x}.ndjson"), '{"f":"braces"}\n');
    await writeFile(join(folder, "b[12].ndjson"), '{"f":"literal"}\n');
    await writeFile(join(folder, "b1.ndjson"), '{"f":"b1"}\n');
    const { values } = await read([join(folder, "export[1].ndjson"), join(folder, "{x}.ndjson")]);
    expect(values).toEqual([{ f: "brackets" }, { f: "braces" }]);
    // A pattern that matches files is a glob, as in a shell.
    expect((await read(join(folder, "b[12].ndjson"))).values).toEqual([{ f: "b1" }]);
  });

  test("errors naming the path when a file does not exist, before reading anything", async () => {
    const present = await file('{"n":1}\n');
    const missing = join(dir.path, "missing.ndjson");
    const values: unknown[] = [];
    const result = run(fromNdjson([present, missing]).pipe(deadLetter(() => {})), {
      handleSignals: false,
      onValue: (value) => values.push(value),
    });
    await expect(result).rejects.toThrow(`fromNdjson: input ${missing} does not exist`);
    expect(values).toEqual([]);
  });

  test("errors naming the pattern when a glob matches nothing", async () => {
    const pattern = join(dir.path, "nothing-here-*.ndjson");
    await expect(run(fromNdjson(pattern).pipe(deadLetter(() => {})), { handleSignals: false })).rejects.toThrow(
      `fromNdjson: no file matches ${pattern}`,
    );
  });

  test("errors naming a folder given as a file", async () => {
    await expect(run(fromNdjson(dir.path).pipe(deadLetter(() => {})), { handleSignals: false })).rejects.toThrow(
      `fromNdjson: ${dir.path} is a folder`,
    );
  });

  test("errors naming the file and line of a bad line when there is no dead-letter target", async () => {
    const path = await file('{"n":1}\n{"n":2}\n{"n":\n');
    await expect(run(fromNdjson(path), { handleSignals: false })).rejects.toThrow(
      `a record from ${path} line 3 failed at stage "parse" (malformed JSON: `,
    );
  });

  test("stops reading when the consumer unsubscribes", async () => {
    const lines = Array.from({ length: 20_000 }, (_, n) => JSON.stringify({ n })).join("\n");
    const path = await file(lines);
    const values: unknown[] = [];
    const summary = await run(fromNdjson(path, { chunkBytes: 1024 }).pipe(take(3)), {
      handleSignals: false,
      onValue: (value) => values.push(value),
    });
    expect(values).toEqual([{ n: 0 }, { n: 1 }, { n: 2 }]);
    expect(summary.in).toBe(3);
    expect(summary.bytesRead).toBeLessThan(lines.length);
  });

  test("counts the bytes it reads when no line is longer than a chunk", async () => {
    const content = '{"n":1}\n{"n":2}\n\nnope\n{"n":5}';
    const { summary } = await read(await file(content), { chunkBytes: 16 });
    expect(summary.bytesRead).toBe(content.length);
    const big = Array.from({ length: 5_000 }, (_, n) => JSON.stringify({ n })).join("\n");
    expect((await read(await file(big))).summary.bytesRead).toBe(big.length);
  });

  test("counts every byte it reads, also of lines longer than a chunk", async () => {
    const blob = "x".repeat(10 * 1024 * 1024);
    const content = `{"n":1}\n{"blob":"${blob}"}\n{"n":3}\n`;
    expect((await read(await file(content))).summary.bytesRead).toBe(content.length);
    const small = '{"a":1}\n{"a":2}\n{"a":3}';
    expect((await read(await file(small), { chunkBytes: 7 })).summary.bytesRead).toBe(small.length);
    const long = `{"n":1}\n{"s":"${"y".repeat(300)}"}\n{"n":3}\n`;
    expect((await read(await file(long), { chunkBytes: 16, maxLineBytes: 64 })).summary.bytesRead).toBe(long.length);
    expect((await read(await file("7"))).summary.bytesRead).toBe(1);
  });

  test("reads a one- or two-byte file that ends in a newline without an extra line", async () => {
    const one = await read(await file("1\n"));
    expect(one.values).toEqual([1]);
    expect(one.entries).toEqual([]);
    const blank = await read(await file("\n"));
    expect(brief(blank.entries)).toEqual([[1, "blank line"]]);
  });

  test("reads the whole file with a chunk of one or two bytes", async () => {
    for (const chunkBytes of [1, 2]) {
      const path = await file('{"n":1}\n{"n":2}\n');
      const { values } = await read(path, { chunkBytes });
      expect(values).toEqual([{ n: 1 }, { n: 2 }]);
    }
  });

  test("dead-letters a line longer than maxLineBytes with the default chunk size", async () => {
    const path = await file(`{"n":1}\n{"s":"${"y".repeat(300)}"}\n{"n":3}\n`);
    const { values, entries } = await read(path, { maxLineBytes: 64 });
    expect(values).toEqual([{ n: 1 }, { n: 3 }]);
    expect(brief(entries)).toEqual([[2, "line is longer than 64 bytes"]]);
  });

  test("reads a line of exactly maxLineBytes bytes", async () => {
    const line = `{"s":"${"z".repeat(56)}"}`;
    expect(line.length).toBe(64);
    const { values, entries } = await read(await file(`${line}\n{"n":2}\n`), { chunkBytes: 8, maxLineBytes: 64 });
    expect(entries).toEqual([]);
    expect(values).toEqual([{ s: "z".repeat(56) }, { n: 2 }]);
  });
});

describe("fromNdjson: a file that grows while it is read, under a checkpoint", () => {
  test.each([undefined, 5, 64])("leaves a last line without its newline for the next run, which reads it whole (chunkBytes %p)", async (chunkBytes) => {
    const path = await file('{"n":1}\n{"n":2}\n{"n":3,"s":"par');
    const checkpoint = `${dir.unique("checkpoint")}.sqlite`;
    // The writer is in the middle of line 3: reading it now would make two dead letters of it.
    const first = await read(path, { chunkBytes }, checkpoint);
    expect(first.values).toEqual([{ n: 1 }, { n: 2 }]);
    expect(first.entries).toEqual([]);
    await appendFile(path, 'tial"}\n{"n":4}');
    const second = await read(path, { chunkBytes }, checkpoint);
    expect(second.values).toEqual([{ n: 3, s: "partial" }]);
    expect(second.entries).toEqual([]);
    // A bad line 5 shows the numbering goes on where the file's lines are.
    await appendFile(path, "\n{bad\n");
    const third = await read(path, { chunkBytes }, checkpoint);
    expect(third.values).toEqual([{ n: 4 }]);
    expect(third.entries.map((e) => [e.line, e.raw])).toEqual([[5, "{bad"]]);
    const fourth = await read(path, { chunkBytes }, checkpoint);
    expect(fourth.summary.in).toBe(0);
  });

  test("leaves an overlong last line without its newline for the next run too", async () => {
    const path = await file(`{"n":1}\n${"x".repeat(40)}`);
    const checkpoint = `${dir.unique("checkpoint")}.sqlite`;
    const first = await read(path, { chunkBytes: 8, maxLineBytes: 16 }, checkpoint);
    expect(first.values).toEqual([{ n: 1 }]);
    expect(first.entries).toEqual([]);
    await appendFile(path, "\n");
    const second = await read(path, { chunkBytes: 8, maxLineBytes: 16 }, checkpoint);
    expect(brief(second.entries)).toEqual([[2, "line is longer than 16 bytes"]]);
  });

  test("reads the last line of a gzip file and of a named pipe under a checkpoint: neither is appended to while read", async () => {
    const content = '{"n":1}\n{"n":2}';
    const gzip = await file(Bun.gzipSync(Buffer.from(content)), "last-line.ndjson.gz");
    const fromGzip = await read(gzip, {}, `${dir.unique("checkpoint")}.sqlite`);
    expect(fromGzip.values).toEqual([{ n: 1 }, { n: 2 }]);

    const pipe = dir.unique("pipe");
    expect(Bun.spawnSync(["mkfifo", pipe]).exitCode).toBe(0);
    const writer = Bun.spawn(["sh", "-c", 'printf "%s" "$1" > "$2"', "sh", content, pipe]);
    let timer: ReturnType<typeof setTimeout> | undefined;
    // Opening the pipe again to look at its last line would wait for a writer that is gone.
    const hang = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error("the read of the pipe hangs")), 30_000);
    });
    const fromPipe = await Promise.race([read(pipe, {}, `${dir.unique("checkpoint")}.sqlite`), hang]).finally(() => clearTimeout(timer));
    await writer.exited;
    expect(fromPipe.values).toEqual([{ n: 1 }, { n: 2 }]);
  });

  test("still reads a last line without its newline when there is no checkpoint", async () => {
    const { values } = await read(await file('{"n":1}\n{"n":2}'));
    expect(values).toEqual([{ n: 1 }, { n: 2 }]);
  });
});

