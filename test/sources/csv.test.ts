import { describe, expect, test } from "bun:test";
import { appendFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { take, toArray } from "rxjs";
import * as v from "valibot";
import { deadLetter, validate } from "../../operators/index.ts";
import type { DeadLetter } from "../../src/deadletter/entry.ts";
import { type Flow, holdGate } from "../../src/flow/flow.ts";
import { seededRandom } from "../../src/generate/random.ts";
import { run, type RunSummary } from "../../src/run/run.ts";
import { isoInstant } from "../../src/schema/instant.ts";
import { toParquet } from "../../src/sinks/toParquet.ts";
import { type CsvOptions, fromCsv } from "../../src/sources/csv.ts";
import { dataset, query } from "../helpers/duckdb.ts";
import { bytes, inputFolder } from "../helpers/inputs.ts";
import { recordingCheckpoint } from "../helpers/checkpoint.ts";

const dir = inputFolder("sluice-csv-", ".csv");
const file = dir.file.bind(dir);

interface Read {
  values: Record<string, unknown>[];
  entries: DeadLetter[];
  summary: RunSummary;
}

/**
 * Reads `input` into a collecting dead letter and checks the accounting every test relies on:
 * each record read is either emitted or dead-lettered, never both, never neither.
 */
async function read(input: string | readonly string[], options: CsvOptions = {}, onStart?: (flow: Flow) => void): Promise<Read> {
  const values: Record<string, unknown>[] = [];
  const entries: DeadLetter[] = [];
  const summary = await run(fromCsv(input, options).pipe(deadLetter((entry) => entries.push(entry))), {
    handleSignals: false,
    onValue: (value) => values.push(value as Record<string, unknown>),
    onStart,
  });
  expect(summary.in).toBe(values.length + entries.length);
  expect(summary.emitted).toBe(values.length);
  expect(summary.deadLettered).toBe(entries.length);
  for (const entry of entries) expect(entry.stage).toBe("parse");
  return { values, entries, summary };
}

const brief = (entries: readonly DeadLetter[]) => entries.map((e) => [e.line, e.error]);

// Small chunks make records and quoted fields cross chunk boundaries everywhere.
const CHUNKS = [undefined, 4, 7, 64];

describe("fromCsv: splitting records (RFC 4180)", () => {
  const cases: { name: string; content: string | Uint8Array; values: unknown[]; rejects?: [number, string | RegExp][] }[] = [
    {
      name: "plain records with a header",
      content: "a,b\n1,2\n3,4\n",
      values: [
        { a: "1", b: "2" },
        { a: "3", b: "4" },
      ],
    },
    { name: "a last record without a line ending", content: "a,b\n1,2\n3,4", values: [{ a: "1", b: "2" }, { a: "3", b: "4" }] },
    {
      // A CR at the very end ends the last record as CRLF would (a file cut after it), whether
      // the record holds a quote, ends in one, or spans lines; elsewhere a lone CR is data.
      name: "a carriage return at the very end of the input, after records with and without quotes",
      content: 'a,b,c\nx,y,z\r',
      values: [{ a: "x", b: "y", c: "z" }],
    },
    { name: "a final CR after a record with a quoted field", content: 'a,b,c\nx,"y",z\r', values: [{ a: "x", b: "y", c: "z" }] },
    { name: "a final CR after a closing quote", content: 'a,b,c\nx,y,"z"\r', values: [{ a: "x", b: "y", c: "z" }] },
    { name: "a final CR after a quoted field that spans lines", content: 'a,b,c\nx,"y\ny",z\r', values: [{ a: "x", b: "y\ny", c: "z" }] },
    { name: "a lone CR inside the input is data", content: 'a,b\nx,y\rz\n"p",q\r\n', values: [{ a: "x", b: "y\rz" }, { a: "p", b: "q" }] },
    {
      name: "CRLF line endings, kept out of the values",
      content: "a,b\r\n1,2\r\n3,4\r\n",
      values: [
        { a: "1", b: "2" },
        { a: "3", b: "4" },
      ],
    },
    {
      name: "a byte order mark before the header",
      content: bytes([0xef, 0xbb, 0xbf], "a,b\n1,2\n"),
      values: [{ a: "1", b: "2" }],
    },
    {
      name: "quoted fields holding delimiters and doubled quotes",
      content: 'a,b,c\n"x,y","say ""hi""",""\n"""",z,"a"""\n',
      values: [
        { a: "x,y", b: 'say "hi"', c: "" },
        { a: '"', b: "z", c: 'a"' },
      ],
    },
    {
      name: "quoted fields holding LF and CRLF, counted as lines",
      content: 'a,b\n"line one\nline two",1\r\n"crlf\r\ninside",2\r\nplain,3\n"x",\n',
      values: [
        { a: "line one\nline two", b: "1" },
        { a: "crlf\r\ninside", b: "2" },
        { a: "plain", b: "3" },
        { a: "x", b: null },
      ],
    },
    {
      name: "quoted fields that end a CRLF record",
      content: 'a,b\r\n1,"x"\r\n"y",""\r\n"z","w"',
      values: [
        { a: "1", b: "x" },
        { a: "y", b: "" },
        { a: "z", b: "w" },
      ],
    },
    {
      name: "a quote character inside an unquoted field, kept as text",
      content: 'a,b\n5\'10",tall\nab"c,d\n',
      values: [
        { a: "5'10\"", b: "tall" },
        { a: 'ab"c', b: "d" },
      ],
    },
    {
      name: "too many and too few fields, and blank lines",
      content: "a,b\n1,2\n1,2,3\n1\n\n4,5\n",
      values: [
        { a: "1", b: "2" },
        { a: "4", b: "5" },
      ],
      rejects: [
        [3, "3 fields, expected 2"],
        [4, "1 fields, expected 2"],
        [5, "blank line"],
      ],
    },
    {
      name: "text after a closing quote",
      content: 'a,b\n"x"y,1\n2,3\n',
      values: [{ a: "2", b: "3" }],
      rejects: [[2, "text after the closing quote of field 1"]],
    },
    {
      name: "a quoted field left open at the end of the input (a truncated file)",
      content: 'a,b\n1,2\n3,"never closed\n4,5\n6,7\n',
      values: [{ a: "1", b: "2" }],
      rejects: [[3, /^unterminated quoted field 2: the record beginning on line 3 runs to the end of the input \(3 lines\)/]],
    },
    {
      name: "records after a multi-line record, numbered by physical line",
      content: 'a,b\n"1\n\n\n",x\n2,y\n3\n',
      values: [
        { a: "1\n\n\n", b: "x" },
        { a: "2", b: "y" },
      ],
      rejects: [[7, "1 fields, expected 2"]],
    },
  ];

  for (const c of cases) {
    test.each(CHUNKS)(`reads ${c.name} (chunkBytes %p)`, async (chunkBytes) => {
      const { values, entries } = await read(await file(c.content), { chunkBytes });
      expect(values).toEqual(c.values as Record<string, unknown>[]);
      expect(brief(entries)).toEqual(
        (c.rejects ?? []).map(([line, error]) => [line, typeof error === "string" ? error : expect.stringMatching(error)]),
      );
    });
  }

  test.each([1, 2, 3, 4, 5])("reads back generated records of every shape exactly, across chunk sizes (seed %p)", async (seed) => {
    const random = seededRandom(seed);
    const pool = ["", "a", "plain text", "x,y", 'say "hi"', '"', "line\nbreak", "crlf\r\nbreak", "é日本😀", " padded ", "\r", "a'b", "5'10\""];
    const cell = (text: string, force: boolean) =>
      force || /[",\r\n]/.test(text) || text === "" ? `"${text.replaceAll('"', '""')}"` : text;
    let text = random.next() < 0.5 ? "\ufeffa,b,c" : "a,b,c";
    let line = 1;
    const values: Record<string, string>[] = [];
    const rejects: [number, string][] = [];
    const count = 30 + random.int(60);
    for (let i = 0; i < count; i++) {
      text += random.next() < 0.3 ? "\r\n" : "\n";
      line++;
      const width = random.next() < 0.1 ? random.pick([2, 4]) : 3;
      const cells = Array.from({ length: width }, () => random.pick(pool));
      text += cells.map((c) => cell(c, random.next() < 0.2)).join(",");
      if (width === 3) values.push({ a: cells[0] as string, b: cells[1] as string, c: cells[2] as string });
      else rejects.push([line, `${width} fields, expected 3`]);
      line += cells.join(",").split("\n").length - 1;
    }
    if (random.next() < 0.5) text += "\n";
    const path = await file(text);
    for (const chunkBytes of [4, 5, 13, 100, undefined]) {
      const got = await read(path, { chunkBytes });
      expect(got.values).toEqual(values);
      expect(brief(got.entries)).toEqual(rejects);
    }
  });

  test("keeps the raw text of each record on its dead letter, multi-line records whole", async () => {
    const path = await file('a,b\n1,2,3\n"multi\nline"x,2\r\n"open,4\n');
    const { entries } = await read(path, { chunkBytes: 5 });
    expect(entries.map((e) => [e.line, e.raw, e.source])).toEqual([
      [2, "1,2,3", path],
      [3, '"multi\nline"x,2', path],
      [5, '"open,4', path],
    ]);
  });

  test.each(CHUNKS)("dead-letters a record that is not UTF-8 with its bytes and keeps the others (chunkBytes %p)", async (chunkBytes) => {
    const path = await file(bytes('a,b\n"q,1",2\nok,', [0xff, 0xfe], '\n"multi\nline",', [0xc3], "\nlast,\"é\"\n"));
    const { values, entries } = await read(path, { chunkBytes });
    expect(values).toEqual([
      { a: "q,1", b: "2" },
      { a: "last", b: "é" },
    ]);
    expect(entries.map((e) => [e.line, e.error, e.rawBase64])).toEqual([
      [3, "record is not valid UTF-8", Buffer.from(bytes("ok,", [0xff, 0xfe])).toString("base64")],
      [4, "record is not valid UTF-8", Buffer.from(bytes('"multi\nline",', [0xc3])).toString("base64")],
    ]);
  });

  test.each(CHUNKS)("reads a record holding U+FFFD itself as that character next to one that is not UTF-8 (chunkBytes %p)", async (chunkBytes) => {
    const path = await file(bytes("a,b\nx", [0xef, 0xbf, 0xbd], ",1\nbad,", [0xff], "\n", [0xef, 0xbf, 0xbd], ",é\n"));
    const { values, entries } = await read(path, { chunkBytes });
    expect(values).toEqual([
      { a: "x\uFFFD", b: "1" },
      { a: "\uFFFD", b: "é" },
    ]);
    expect(brief(entries)).toEqual([[3, "record is not valid UTF-8"]]);
  });

  // Records are found on bytes and decoded one by one: bad bytes on the first line of a quoted
  // record, on a later line of it, or in a record that closes on its first line each spoil only
  // that record, and the records after it keep their lines.
  test.each(CHUNKS)("dead-letters each record that is not UTF-8, wherever in it the bytes are (chunkBytes %p)", async (chunkBytes) => {
    const path = await file(
      bytes('a,b\n"x\n', [0xff], 'y",1\n"é', [0xfe], '",2\n"', [0xc3], '\nz",3\nü,"two\r\nlines é"\n"ok",\uFFFD\nñ,"open é\nx'),
    );
    const { values, entries } = await read(path, { chunkBytes });
    expect(values).toEqual([
      { a: "ü", b: "two\r\nlines é" },
      { a: "ok", b: "\uFFFD" },
    ]);
    expect(entries.map((e) => [e.line, e.error, e.rawBase64 ?? e.raw])).toEqual([
      [2, "record is not valid UTF-8", Buffer.from(bytes('"x\n', [0xff], 'y",1')).toString("base64")],
      [4, "record is not valid UTF-8", Buffer.from(bytes('"é', [0xfe], '",2')).toString("base64")],
      [5, "record is not valid UTF-8", Buffer.from(bytes('"', [0xc3], '\nz",3')).toString("base64")],
      [
        10,
        "unterminated quoted field 2: the record beginning on line 10 runs to the end of the input (2 lines); the input looks truncated",
        'ñ,"open é\nx',
      ],
    ]);
  });

  test.each([";", "\t", "|"])("reads with the delimiter %p", async (delimiter) => {
    const d = delimiter;
    const path = await file(`a${d}b\n1${d}"x${d}y"\n2,5${d}z\n`);
    const { values } = await read(path, { delimiter });
    expect(values).toEqual([
      { a: "1", b: `x${d}y` },
      { a: "2,5", b: "z" },
    ]);
  });

  test("reads with another quote character", async () => {
    const { values } = await read(await file("a,b\n'x,y','it''s'\n"), { quote: "'" });
    expect(values).toEqual([{ a: "x,y", b: "it's" }]);
  });

  test("refuses a delimiter or quote that is not one ASCII character", () => {
    expect(() => fromCsv("x.csv", { delimiter: ";;" })).toThrow("fromCsv: delimiter must be one ASCII character");
    expect(() => fromCsv("x.csv", { delimiter: "\n" })).toThrow("fromCsv: delimiter must be one ASCII character");
    expect(() => fromCsv("x.csv", { quote: "«" })).toThrow("fromCsv: quote must be one ASCII character");
    expect(() => fromCsv("x.csv", { delimiter: '"' })).toThrow("the delimiter and the quote must differ");
  });

  test("reads a 10 MB quoted field with a 4 KiB read chunk", async () => {
    const big = "x,\"y\"\n".repeat(1_750_000).slice(0, 10_000_000);
    const path = await file(`a,b\n1,"${big.replaceAll('"', '""')}"\n2,after\n`);
    const { values, entries } = await read(path, { chunkBytes: 4096 });
    expect(entries).toEqual([]);
    expect(values.length).toBe(2);
    expect(values[0]?.b === big).toBe(true);
    expect(values[1]).toEqual({ a: "2", b: "after" });
  });

  test("dead-letters a record longer than maxRecordBytes and reads on after it", async () => {
    const path = await file(`a,b\n1,"${"z\n".repeat(5000)}"\n2,ok\n3,${"y".repeat(20_000)}\n4,ok\n`);
    const { values, entries } = await read(path, { chunkBytes: 1024, maxRecordBytes: 4096 });
    expect(values).toEqual([
      { a: "2", b: "ok" },
      { a: "4", b: "ok" },
    ]);
    expect(brief(entries)).toEqual([
      [2, "record is longer than 4096 bytes"],
      [5004, "record is longer than 4096 bytes"],
    ]);
  });

  test("dead-letters a quoted field open to the end of an input longer than maxRecordBytes, as one record", async () => {
    const path = await file(`a,b\n1,2\n3,"open\n${"4,5\n".repeat(3000)}`);
    const { values, entries } = await read(path, { chunkBytes: 1000, maxRecordBytes: 2000 });
    expect(values).toEqual([{ a: "1", b: "2" }]);
    expect(brief(entries)).toEqual([
      [3, expect.stringMatching(/^unterminated quoted field: the record beginning on line 3 runs to the end of the input \(3001 lines/)],
    ]);
  });
});

describe("fromCsv: headers", () => {
  const Pair = v.object({ a: v.pipe(v.number(), v.integer()), b: v.string() });

  test("takes the column names from the given list when the file has no header line", async () => {
    const { values } = await read(await file("1,x\n2,y\n"), { header: ["a", "b"], schema: Pair });
    expect(values).toEqual([
      { a: 1, b: "x" },
      { a: 2, b: "y" },
    ]);
  });

  test("takes the column names from the schema with header: false, numbering lines from 1", async () => {
    const { values, entries } = await read(await file("1,x\nnope,y\n"), { header: false, schema: Pair });
    expect(values).toEqual([{ a: 1, b: "x" }]);
    expect(entries.map((e) => e.line)).toEqual([2]);
  });

  test("matches header columns by name, in any order", async () => {
    const { values } = await read(await file("b,a\nx,1\n"), { schema: Pair });
    expect(values).toEqual([{ a: 1, b: "x" }]);
  });

  test("errors, naming the file and the columns, when the header lacks a required column", async () => {
    const path = await file("b,c\nx,1\n");
    expect(read(path, { schema: Pair })).rejects.toThrow(`fromCsv: ${path} has no column "a", which the schema requires (its columns: "b", "c")`);
  });

  test("errors when a header names a column twice", async () => {
    const path = await file("a,b,a\n1,2,3\n");
    expect(read(path)).rejects.toThrow(`fromCsv: ${path} names the column "a" twice`);
  });

  test("errors when the given names lack a required column, before reading", () => {
    expect(() => fromCsv("nowhere.csv", { header: ["b"], schema: Pair })).toThrow('has no column "a", which the schema requires');
  });

  test("errors when the header line itself is broken", async () => {
    const path = await file('"a"x,b\n1,2\n');
    expect(read(path)).rejects.toThrow(`fromCsv: the header of ${path} (line 1) cannot be read: text after the closing quote`);
  });

  test("errors, naming the file and the column, when the header holds a bare CR (classic Mac line endings), instead of reading no records", async () => {
    // A bare CR is not a line ending: the whole file is one header record, and with a schema whose
    // fields are all nullable (or none) the run read nothing and said nothing.
    for (const options of [{}, { schema: v.object({ a: v.nullable(v.string()), b: v.nullable(v.string()) }) }]) {
      const path = await file("a,b\r1,2\r3,4\r");
      const error = await read(path, options).then(
        () => undefined,
        (e: Error) => e,
      );
      expect(error?.message).toStartWith(
        `fromCsv: the header of ${path} (line 1) holds a carriage return in the column name "b\\r1": its lines seem to end with a bare CR`,
      );
    }
    // A quoted name may hold one.
    expect((await read(await file('a,"b\rc"\n1,2\n'))).values).toEqual([{ a: "1", "b\rc": "2" }]);
  });

  test("takes the first line that is not blank for the header, instead of dead-lettering every record", async () => {
    // A blank first line was taken for a header of one unnamed column: "2 fields, expected 1" for every record.
    const { values, entries } = await read(await file("\n\r\na,b\n1,2\n"));
    expect([values, entries]).toEqual([[{ a: "1", b: "2" }], []]);
    expect((await read(await file("\n\n"))).summary.in).toBe(0);
    // One column named by the empty text, quoted, is a header.
    expect((await read(await file('""\nx\n'))).values).toEqual([{ "": "x" }]);
  });

  test("reads a header of a million columns (often a file that is not CSV at all) without overflowing the stack", async () => {
    // A minified JSON array of numbers read as CSV is one such header. The builder generated for
    // a file's columns overflowed the stack at this width, after compiling for 50 s.
    const width = 1_000_000;
    const names = Array.from({ length: width }, (_, i) => `c${i}`);
    const path = await file(`${names.join(",")}\n${names.map((_, i) => i).join(",")}\n1,2\n`);
    const { values, entries } = await read(path, { schema: v.object({ c0: v.pipe(v.number(), v.integer()) }), extraColumns: "keep" });
    expect(values).toHaveLength(1);
    expect(values[0]?.c0).toBe(0);
    expect(values[0]?.[`c${width - 1}`]).toBe(String(width - 1));
    expect(entries.map((e) => [e.line, e.error])).toEqual([[3, `2 fields, expected ${width}`]]);
  }, 60_000);

  test("keeps, drops or refuses columns the schema does not name", async () => {
    const path = await file("a,b,extra\n1,x,\n2,y,e\n");
    expect((await read(path, { schema: Pair })).values).toEqual([
      { a: 1, b: "x", extra: null },
      { a: 2, b: "y", extra: "e" },
    ]);
    expect((await read(path, { schema: Pair, extraColumns: "drop" })).values).toEqual([
      { a: 1, b: "x" },
      { a: 2, b: "y" },
    ]);
    expect(read(path, { schema: Pair, extraColumns: "error" })).rejects.toThrow(`fromCsv: ${path} has columns the schema does not name: "extra"`);
  });

  test("reads a file holding only a header, or nothing, as no records", async () => {
    for (const content of ["a,b\n", "a,b", "", bytes([0xef, 0xbb, 0xbf])]) {
      const { values, entries, summary } = await read(await file(content), { schema: Pair });
      expect([values, entries, summary.in]).toEqual([[], [], 0]);
    }
  });

  test("fills nullable columns missing from the header with null and leaves optional ones out", async () => {
    const schema = v.object({ a: v.string(), n: v.nullable(v.number()), o: v.optional(v.number()) });
    const { values } = await read(await file("a\nx\n"), { schema });
    expect(values).toEqual([{ a: "x", n: null }]);
  });
});

describe("fromCsv: converting cells by the schema", () => {
  const schemaOf = (field: v.GenericSchema) => v.object({ x: field });
  const int = v.pipe(v.number(), v.integer());
  const cases: { type: string; field: v.GenericSchema; good: [string, unknown][]; bad: string[] }[] = [
    {
      type: "integer",
      field: int,
      good: [["0", 0], ["-17", -17], ["+5", 5], ["007", 7], ["9007199254740991", 9007199254740991], ["-9007199254740991", -9007199254740991]],
      bad: ["1.5", "1.0", "1e3", "", " 1", "1 ", "1,000", "abc", "-", "0x10", "9007199254740992", "12345678901234567890"],
    },
    {
      type: "bigint",
      field: v.bigint(),
      good: [["12345678901234567890", 12345678901234567890n], ["-1", -1n], ["0", 0n]],
      bad: ["1.5", "1e3", "", "x"],
    },
    {
      type: "number",
      field: v.number(),
      good: [["1.5", 1.5], ["-0.25", -0.25], ["3", 3], [".5", 0.5], ["5.", 5], ["1e3", 1000], ["-2.5E-3", -0.0025], ["0.1", 0.1], ["123456789.125", 123456789.125], ["0.30000000000000004", 0.30000000000000004]],
      bad: ["1,5", "abc", "", "NaN", "Infinity", "1e999", " 1", "1.2.3", "e5", "."],
    },
    {
      type: "boolean",
      field: v.boolean(),
      good: [["true", true], ["TRUE", true], ["True", true], ["1", true], ["false", false], ["FALSE", false], ["0", false]],
      bad: ["yes", "t", "tRUE", "", "2", " true"],
    },
    {
      type: "string",
      field: v.string(),
      good: [["hello", "hello"], ["  spaced  ", "  spaced  "], ["123", "123"]],
      bad: [""],
    },
    {
      type: "timestamp string",
      field: isoInstant(),
      // Timestamps stay text here; validate(schema) decides whether they are real instants.
      good: [["2024-03-01T12:00:00Z", "2024-03-01T12:00:00Z"], ["2024-02-30T00:00:00Z", "2024-02-30T00:00:00Z"]],
      bad: [""],
    },
    {
      type: "Date",
      field: v.date(),
      good: [["2024-03-01T12:00:00.123Z", new Date("2024-03-01T12:00:00.123Z")]],
      bad: ["2024-02-30T00:00:00Z", "2024-03-01T12:00:00.123456Z", "yesterday"],
    },
    {
      type: "list",
      field: v.array(v.string()),
      good: [['["a","b"]', ["a", "b"]], ["[]", []]],
      bad: ["a,b", "{}", "[1,"],
    },
    {
      type: "struct",
      field: v.object({ k: v.number() }),
      good: [['{"k":1}', { k: 1 }]],
      bad: ["[1]", "null", "k=1"],
    },
  ];

  for (const c of cases) {
    test(`converts ${c.type} cells exactly and dead-letters the rest with the column, line and text`, async () => {
      const cells = [...c.good.map(([text]) => text), ...c.bad];
      const quote = (text: string) => (/[",\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text);
      const path = await file(`x\n${cells.map(quote).join("\n")}\n`);
      const { values, entries } = await read(path, { schema: schemaOf(c.field) });
      expect(values).toEqual(c.good.map(([, value]) => ({ x: value })));
      expect(entries.map((e) => [e.line, e.raw])).toEqual(c.bad.map((text, i) => [c.good.length + i + 2, quote(text)]));
      for (const entry of entries) {
        expect(entry.error).toMatch(/^column "x"/);
        expect(entry.issues?.[0]).toMatchObject({ path: "x", received: expect.any(String) });
      }
    });
  }

  test("reads an unquoted empty cell as null where the field is nullable and a quoted one as the empty string", async () => {
    const schema = v.object({ s: v.nullable(v.string()), n: v.nullish(v.number()), o: v.optional(v.boolean()), r: v.string() });
    const { values, entries } = await read(await file('s,n,o,r\n,,,""\n"",1,true,x\n,,,\n'), { schema });
    expect(values).toEqual([
      { s: null, n: null, r: "" },
      { s: "", n: 1, o: true, r: "x" },
    ]);
    expect(entries.map((e) => [e.line, e.error])).toEqual([[4, expect.stringContaining('column "r" is empty, but the schema requires a value')]]);
  });

  test("reads the given null values as null, and only those", async () => {
    const schema = v.object({ n: v.nullable(v.number()), s: v.nullable(v.string()) });
    const { values, entries } = await read(await file('n,s\nNULL,\\N\n1,""\n2,\n,"NULL"\n'), { schema, nullValues: ["NULL", "\\N"] });
    // An empty cell is not a null value here: an empty string, and not a number.
    expect(values).toEqual([
      { n: null, s: null },
      { n: 1, s: "" },
      { n: 2, s: "" },
    ]);
    expect(entries.map((e) => [e.line, e.error])).toEqual([[5, 'column "n": "" is not a decimal number (such as -12.5, 3, .5 or 1e-3)']]);
  });

  test("names every cell that does not convert in one dead letter", async () => {
    const schema = v.object({ a: v.number(), b: v.boolean(), c: v.string() });
    const { entries } = await read(await file("a,b,c\n1;5,yes,ok\n"), { schema });
    expect(entries[0]?.error).toBe(
      'column "a": "1;5" is not a decimal number (such as -12.5, 3, .5 or 1e-3); column "b": "yes" is not a boolean',
    );
    expect(entries[0]?.issues?.map((i) => i.path)).toEqual(["a", "b"]);
  });

  test("reads booleans with the given accepted sets", async () => {
    const schema = v.object({ b: v.boolean() });
    const { values, entries } = await read(await file("b\nY\nN\ntrue\n"), { schema, trueValues: ["Y"], falseValues: ["N"] });
    expect(values).toEqual([{ b: true }, { b: false }]);
    expect(entries.map((e) => e.line)).toEqual([4]);
  });

  test("writes converted values that DuckDB reads back exactly", async () => {
    const Row = v.object({
      id: v.pipe(v.number(), v.integer()),
      big: v.bigint(),
      amount: v.nullable(v.number()),
      ok: v.boolean(),
      at: isoInstant(),
      day: v.pipe(v.string(), v.isoDate()),
      note: v.nullable(v.string()),
      tags: v.array(v.string()),
    });
    const random = seededRandom(7);
    const rows: string[] = ["id,big,amount,ok,at,day,note,tags"];
    const expected: Record<string, unknown>[] = [];
    for (let i = 0; i < 500; i++) {
      const big = 9007199254740993n + BigInt(i) * 1_000_000_007n;
      const amount = random.next() < 0.1 ? null : Math.round(random.next() * 1e6) / 100 - 5000;
      const note = random.next() < 0.2 ? null : random.pick(["plain", "with, comma", 'with "quotes"', "multi\nline", "ünïcödé 😀", ""]);
      const day = `2024-0${1 + random.int(9)}-1${random.int(10)}`;
      const at = `${day}T0${random.int(10)}:1${random.int(10)}:00.${String(random.int(1_000_000)).padStart(6, "0")}Z`;
      const tags = random.pick([[], ["a"], ["x,y", 'q"']]);
      const cell = (text: string) => (/[",\n]/.test(text) || text === "" ? `"${text.replaceAll('"', '""')}"` : text);
      rows.push([i, big, amount ?? "", i % 2 ? "true" : "0", at, day, note === null ? "" : cell(note), cell(JSON.stringify(tags))].join(","));
      expected.push({ id: i, big: String(big), amount, ok: i % 2 === 1, at, day, note, tags });
    }
    const path = await file(`${rows.join("\r\n")}\r\n`);
    const out = dir.unique("parquet");
    const summary = await run(
      fromCsv(path, { schema: Row, chunkBytes: 1000 }).pipe(validate(Row), deadLetter(() => {}), toParquet(out, { schema: Row })),
      { handleSignals: false },
    );
    expect([summary.in, summary.written, summary.deadLettered]).toEqual([500, 500, 0]);
    const got = await query(`
      SELECT id, big::VARCHAR AS big, amount, ok, strftime("at", '%Y-%m-%dT%H:%M:%S.%fZ') AS "at", day::VARCHAR AS day, note, tags
      FROM ${dataset(out)} ORDER BY id`);
    expect(got.map((r) => ({ ...r, id: Number(r.id) })) as Record<string, unknown>[]).toEqual(expected);
  });
});

describe("fromCsv: as an observable", () => {
  test("completes with nothing for an empty input", async () => {
    const values = await new Promise<unknown[]>((resolve, reject) => {
      file("").then((path) => fromCsv(path).pipe(toArray()).subscribe({ next: resolve, error: reject }));
    });
    expect(values).toEqual([]);
  });

  test("emits one record, then many in order, across several files and a glob", async () => {
    const sub = dir.unique("many");
    await file("n\n0\n", join(basename(sub), "a.csv"));
    const lines = Array.from({ length: 5000 }, (_, i) => String(i + 1));
    await file(`n\n${lines.join("\n")}\n`, join(basename(sub), "b.csv"));
    const { values, entries } = await read(join(sub, "*.csv"), { schema: v.object({ n: v.number() }), chunkBytes: 100 });
    expect(entries).toEqual([]);
    expect(values.map((r) => r.n)).toEqual(Array.from({ length: 5001 }, (_, i) => i));
  });

  test("reads files concurrently, each record keeping its own file and line", async () => {
    const paths = await Promise.all([0, 1, 2].map((f) => file(`f,n\n${Array.from({ length: 2000 }, (_, i) => `${f},${i % 7 === 0 ? "x" : i}`).join("\n")}\n`)));
    const { values, entries } = await read(paths, { schema: v.object({ f: v.number(), n: v.number() }), concurrency: 2, chunkBytes: 256 });
    expect(values.length).toBe(3 * (2000 - 286));
    for (const f of [0, 1, 2]) {
      expect(values.filter((r) => r.f === f).map((r) => r.n)).toEqual(Array.from({ length: 2000 }, (_, i) => i).filter((i) => i % 7 !== 0));
    }
    for (const entry of entries) expect(entry.raw).toBe(`${paths.indexOf(entry.source)},x`);
    for (const entry of entries) expect((entry.line - 2) % 7).toBe(0);
  });

  test("stops reading when take() unsubscribes early", async () => {
    const path = await file(`n\n${"1\n".repeat(500_000)}`);
    let flow: Flow | undefined;
    const summary = await run(fromCsv(path, { chunkBytes: 4096 }).pipe(take(3)), { handleSignals: false, onStart: (f) => (flow = f) });
    expect(summary.emitted).toBe(3);
    expect(flow?.stats.bytesRead).toBeLessThan(100_000);
  });

  test("errors, naming the input, when a file is missing or a glob matches nothing", async () => {
    const missing = join(dir.path, "missing.csv");
    expect(read(missing)).rejects.toThrow(`fromCsv: input ${missing} does not exist`);
    expect(read(join(dir.path, "nothing-*.csv"))).rejects.toThrow("fromCsv: no file matches");
  });

  test("errors when a record is bad and the pipeline has no dead letter", async () => {
    const path = await file("a,b\n1\n");
    expect(run(fromCsv(path), { handleSignals: false })).rejects.toThrow("has no dead-letter target");
  });

  test("waits while the sink holds the gate, reading only a chunk ahead", async () => {
    const path = await file(`n\n${"12345\n".repeat(100_000)}`);
    let release: (() => void) | undefined;
    let flow: Flow | undefined;
    const done = read(path, { chunkBytes: 6000 }, (f) => {
      flow = f;
      release = holdGate(f);
    });
    await Bun.sleep(100);
    expect(flow?.stats.in).toBeLessThanOrEqual(1000);
    release?.();
    const { values } = await done;
    expect(values.length).toBe(100_000);
  });
});

describe("fromCsv: resuming from a checkpoint", () => {
  test("marks only record boundaries: resuming from every mark reads exactly the records after it", async () => {
    const schema = v.object({ id: v.number(), text: v.nullable(v.string()) });
    const parts = ["id,text\r\n"];
    for (let i = 0; i < 60; i++) {
      parts.push(i % 5 === 0 ? `${i},"multi\nline ""${i}""\r\nend"\r\n` : i % 11 === 0 ? `${i},bad,extra\n` : `${i},plain ${i}\n`);
    }
    const path = await file(bytes([0xef, 0xbb, 0xbf], parts.join("")));
    const full = recordingCheckpoint();
    const all = await read(path, { schema, chunkBytes: 16 }, (f) => {
      f.checkpoint = full.checkpoint;
    });
    expect(all.summary.in).toBe(60);
    expect(all.entries.length).toBe(4);
    expect(full.marks.length).toBeGreaterThan(10);
    const everything = [
      ...all.values.map((value) => ({ id: value.id, kind: "value" })),
      ...all.entries.map((e) => ({ id: Number(e.raw.split(",")[0]), kind: "dead" })),
    ].sort((a, b) => (a.id as number) - (b.id as number));
    for (const [line, byteOffset] of full.marks) {
      const resumed = recordingCheckpoint({ line, byteOffset });
      const rest = await read(path, { schema, chunkBytes: 16 }, (f) => {
        f.checkpoint = resumed.checkpoint;
      });
      const got = [
        ...rest.values.map((value) => ({ id: value.id, kind: "value" })),
        ...rest.entries.map((e) => ({ id: Number(e.raw.split(",")[0]), kind: "dead" })),
      ].sort((a, b) => (a.id as number) - (b.id as number));
      expect(got).toEqual(everything.slice(everything.length - got.length));
      // The lines of a resumed read are the lines of the full read.
      const firstDead = rest.entries[0];
      if (firstDead) expect(all.entries.find((e) => e.raw === firstDead.raw)?.line).toBe(firstDead.line);
      expect(rest.summary.in).toBe(everything.filter((r) => (r.id as number) >= ((got[0]?.id as number | undefined) ?? 60)).length);
    }
  });
});

describe("fromCsv: a file that grows while it is read, under a checkpoint", () => {
  async function readWith(path: string, options: CsvOptions, checkpoint?: string): Promise<Read> {
    const values: Record<string, unknown>[] = [];
    const entries: DeadLetter[] = [];
    const summary = await run(fromCsv(path, options).pipe(deadLetter((entry) => entries.push(entry))), {
      handleSignals: false,
      onValue: (value) => values.push(value as Record<string, unknown>),
      checkpoint,
    });
    expect(summary.in).toBe(values.length + entries.length);
    return { values, entries, summary };
  }

  test.each(CHUNKS)("leaves a last record without its line ending for the next run, which reads it whole (chunkBytes %p)", async (chunkBytes) => {
    const path = await file('id,text\n1,a\n2,"multi\nli');
    const checkpoint = `${dir.unique("checkpoint")}.sqlite`;
    // The writer is in the middle of record 2 (a quoted field across lines): reading it now would
    // make a dead letter of it and of its rest.
    const first = await readWith(path, { chunkBytes }, checkpoint);
    expect(first.values).toEqual([{ id: "1", text: "a" }]);
    expect(first.entries).toEqual([]);
    await appendFile(path, 'ne"\n3,c');
    const second = await readWith(path, { chunkBytes }, checkpoint);
    expect(second.values).toEqual([{ id: "2", text: "multi\nline" }]);
    expect(second.entries).toEqual([]);
    await appendFile(path, "c\r\n4,d\n");
    const third = await readWith(path, { chunkBytes }, checkpoint);
    expect(third.values).toEqual([
      { id: "3", text: "cc" },
      { id: "4", text: "d" },
    ]);
    expect(third.entries).toEqual([]);
    // A bad record on line 7 shows the numbering goes on where the file's lines are.
    await appendFile(path, "5,x,y\n");
    const fourth = await readWith(path, { chunkBytes }, checkpoint);
    expect(fourth.values).toEqual([]);
    expect(brief(fourth.entries)).toEqual([[7, "3 fields, expected 2"]]);
    const fifth = await readWith(path, { chunkBytes }, checkpoint);
    expect(fifth.summary.in).toBe(0);
  });

  test("waits for the line ending of a header being written", async () => {
    const path = await file("id,te");
    const checkpoint = `${dir.unique("checkpoint")}.sqlite`;
    expect((await readWith(path, {}, checkpoint)).summary.in).toBe(0);
    await appendFile(path, "xt\n1,a");
    expect((await readWith(path, {}, checkpoint)).summary.in).toBe(0);
    await appendFile(path, "\n");
    expect((await readWith(path, {}, checkpoint)).values).toEqual([{ id: "1", text: "a" }]);
  });

  test("leaves an overlong last record without its line ending for the next run too", async () => {
    const path = await file(`a\n1\n${"x".repeat(40)}`);
    const checkpoint = `${dir.unique("checkpoint")}.sqlite`;
    const first = await readWith(path, { chunkBytes: 8, maxRecordBytes: 16 }, checkpoint);
    expect(first.values).toEqual([{ a: "1" }]);
    expect(first.entries).toEqual([]);
    await appendFile(path, "\n2\n");
    const second = await readWith(path, { chunkBytes: 8, maxRecordBytes: 16 }, checkpoint);
    expect(brief(second.entries)).toEqual([[3, "record is longer than 16 bytes"]]);
    expect(second.values).toEqual([{ a: "2" }]);
  });

  test("reads the last record of a gzip file under a checkpoint: it is not appended to while read", async () => {
    const gzip = await file(Bun.gzipSync(Buffer.from("a,b\n1,2\n3,4")), "last-record.csv.gz");
    const { values, entries } = await readWith(gzip, {}, `${dir.unique("checkpoint")}.sqlite`);
    expect(values).toEqual([
      { a: "1", b: "2" },
      { a: "3", b: "4" },
    ]);
    expect(entries).toEqual([]);
  });

  test("still reads a last record without its line ending when there is no checkpoint", async () => {
    const { values, entries } = await readWith(await file('a,b\n1,2\n3,"4'), {});
    expect(values).toEqual([{ a: "1", b: "2" }]);
    expect(brief(entries)).toEqual([[3, expect.stringContaining("unterminated quoted field 2")]]);
  });
});
