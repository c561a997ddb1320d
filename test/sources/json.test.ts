import { describe, expect, test } from "bun:test";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { map, Observable, type OperatorFunction, take, toArray } from "rxjs";
import * as v from "valibot";
import { deadLetter, validate } from "../../operators/index.ts";
import type { DeadLetter } from "../../src/deadletter/entry.ts";
import { createFlow, currentFlow, type Flow, holdGate, positionIn, withFlow } from "../../src/flow/flow.ts";
import { positionOf } from "../../src/flow/position.ts";
import { seededRandom } from "../../src/generate/random.ts";
import { type RunSummary, run } from "../../src/run/run.ts";
import { toParquet } from "../../src/sinks/toParquet.ts";
import { fromJson, type JsonOptions } from "../../src/sources/json.ts";
import { dataset, query } from "../helpers/duckdb.ts";
import { bytes, inputFolder } from "../helpers/inputs.ts";
import { plain } from "../helpers/plain.ts";
import { recordingCheckpoint } from "../helpers/checkpoint.ts";

const dir = inputFolder("sluice-json-", ".json");
const file = dir.file.bind(dir);

const utf8 = (text: string) => Buffer.from(text, "utf8");

/** A record as emitted, with the position the flow gave it. */
interface Emitted {
  value: unknown;
  line: number;
  offset: number | undefined;
  raw: string | undefined;
}

/** Passes values on, noting the position each carries: where the source says the record came from. */
function positions(into: Emitted[]): OperatorFunction<unknown, unknown> {
  return (source) =>
    new Observable((subscriber) => {
      const flow = currentFlow();
      return source.subscribe({
        next(value) {
          const position = positionIn(flow, value);
          into.push({ value: plain(value), line: position?.line ?? 0, offset: position?.offset, raw: position?.raw });
          subscriber.next(value);
        },
        error: (error) => subscriber.error(error),
        complete: () => subscriber.complete(),
      });
    });
}

interface Read {
  values: unknown[];
  records: Emitted[];
  entries: DeadLetter[];
  summary: RunSummary;
}

/**
 * Reads `input` into a collecting dead letter and checks the accounting every test relies on:
 * each record read is either emitted or dead-lettered, never both, never neither.
 */
async function read(input: string | readonly string[], options: JsonOptions = {}): Promise<Read> {
  const records: Emitted[] = [];
  const entries: DeadLetter[] = [];
  const summary = await run(fromJson(input, options).pipe(positions(records), deadLetter((entry) => entries.push(entry))), {
    handleSignals: false,
  });
  expect(summary.in).toBe(records.length + entries.length);
  expect(summary.emitted).toBe(records.length);
  expect(summary.deadLettered).toBe(entries.length);
  for (const entry of entries) expect(entry.stage).toBe("parse");
  return { values: records.map((r) => r.value), records, entries, summary };
}

/** The parts of a dead letter a test compares: position and reason. */
const brief = (entries: readonly DeadLetter[]) => entries.map((e) => ({ line: e.line, offset: e.offset, error: e.error }));

const CHUNKS = [4, 5, 7, 13, 64, 4096, undefined];

describe("fromJson: reading documents", () => {
  const users = [
    { id: "1", displayName: "Ada", signInActivity: { lastSignInDateTime: "2024-01-02T03:04:05Z" } },
    { id: "2", displayName: "Grace", signInActivity: null },
  ];
  const graph = JSON.stringify({ "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users", value: users, "@odata.nextLink": "x" });

  test.each([
    ["a top-level array", JSON.stringify(users), {}, users],
    ["the array under a path", graph, { path: "value" }, users],
    ["a nested path written with dots", '{"data":{"x":[1,{"items":[9]}],"items":[{"n":1},{"n":2}]}}', { path: "data.items" }, [{ n: 1 }, { n: 2 }]],
    ["a nested path given as a list", '{"a.b":{"items":[true,false]}}', { path: ["a.b", "items"] }, [true, false]],
    ["a path through an array index", '{"results":[{"rows":[0]},{"rows":[1,2]}]}', { path: "results.1.rows" }, [1, 2]],
    ["an empty array", '{"value":[]}', { path: "value" }, []],
    ["an empty top-level array", " [ ] \n", {}, []],
    ["any JSON value as an element", '[1,"text",null,true,[1,{"b":[]}],{"ü":"😀"},-0.5e-3]', {}, [1, "text", null, true, [1, { b: [] }], { ü: "😀" }, -0.0005]],
    ["a key that matches only once escapes are decoded", '{"valu\\u0065":[1],"x":0}', { path: "value" }, [1]],
    ["keys named like the path deeper in other members", '{"meta":{"value":[0]},"s":"\\"value\\":[","value":[1]}', { path: "value" }, [1]],
  ] as const)("reads %s", async (_name, content, options, expected) => {
    const path = await file(content);
    for (const chunkBytes of CHUNKS) {
      const { values, entries } = await read(path, { ...options, chunkBytes });
      expect(entries).toEqual([]);
      expect(values).toEqual(expected as unknown[]);
    }
  });

  test.each([16, 4096])("skips members off the path that are larger than a chunk without keeping them (chunkBytes %p)", async (chunkBytes) => {
    const decoy = { rows: Array.from({ length: 20_000 }, (_, n) => ({ n, s: "]}\"" })), value: [0] };
    const content = JSON.stringify({ before: decoy, value: [1, 2], after: decoy });
    const { values, entries, summary } = await read(await file(content), { path: "value", chunkBytes, maxRecordBytes: 1024 });
    expect(entries).toEqual([]);
    expect(values).toEqual([1, 2]);
    expect(summary.bytesRead).toBe(content.length);
  });

  test("gives each record its index in the array as line, its byte offset and its raw text", async () => {
    const content = '{"v":"é","value":[\n  {"a":1},\r\n\t"日本",  [1, 2] ,3\n]}';
    const { records } = await read(await file(content), { path: "value" });
    const buffer = utf8(content);
    expect(records.map(({ line, offset, raw }) => ({ line, offset, raw }))).toEqual([
      { line: 1, offset: buffer.indexOf('{"a"'), raw: '{"a":1}' },
      { line: 2, offset: buffer.indexOf('"日本"'), raw: '"日本"' },
      { line: 3, offset: buffer.indexOf("[1, 2]"), raw: "[1, 2]" },
      { line: 4, offset: buffer.lastIndexOf("3"), raw: "3" },
    ]);
  });

  test.each(CHUNKS)("reads strings holding brackets, quotes, escapes, unicode escapes and surrogates (chunkBytes %p)", async (chunkBytes) => {
    const strings = ["]", "}", "[{", '"', '\\"', "\\", "\\\\", '\\"]', "\u005d", "\\u005d", "日本語", "😀", "\ud83d\ude00", "\t\n\r\b\f", "\u0000", "é]}\"", ""];
    const elements = strings.map((s, i) => ({ s, [s]: i, nested: [[s], { s }] }));
    // Written both by JSON.stringify and with every non-ASCII character escaped, so both forms appear.
    const escaped = JSON.stringify(elements).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
    const content = `{"a":${JSON.stringify(elements)},"b":${escaped}}`;
    for (const key of ["a", "b"]) {
      const { values, entries } = await read(await file(content), { path: key, chunkBytes });
      expect(entries).toEqual([]);
      expect(values).toEqual(elements);
    }
  });

  test.each([undefined, 3, 64])("skips a byte order mark at the start of the file (chunkBytes %p)", async (chunkBytes) => {
    const { values, entries } = await read(await file(bytes([0xef, 0xbb, 0xbf], '{"value":[1,2]}')), { path: "value", chunkBytes });
    expect(values).toEqual([1, 2]);
    expect(entries).toEqual([]);
  });

  test.each([undefined, 7, 64])("reads an element of 10 MB and the elements around it (chunkBytes %p)", async (chunkBytes) => {
    const blob = "x".repeat(10 * 1024 * 1024);
    const path = await file(`[{"n":1},{"blob":"${blob}","n":2},{"n":3}]`);
    const { values, entries, records } = await read(path, { chunkBytes });
    expect(entries).toEqual([]);
    expect(values).toHaveLength(3);
    expect((values[1] as { blob: string }).blob).toBe(blob);
    expect(records.map((r) => r.offset)).toEqual([1, 9, 9 + blob.length + 18]);
  });

  test.each([
    [16, 64],
    [7, 64],
    [4096, 64],
  ])("dead-letters an element over maxRecordBytes and reads the ones after it (chunkBytes %d, maxRecordBytes %d)", async (chunkBytes, maxRecordBytes) => {
    const long = `{"s":"${"y".repeat(300)}"}`;
    const exact = `{"s":"${"z".repeat(56)}"}`;
    expect(exact.length).toBe(64);
    const content = `[{"n":1},${long},{"n":3},${exact},${long},${long},{"n":7}]`;
    const { values, entries } = await read(await file(content), { chunkBytes, maxRecordBytes });
    expect(values).toEqual([{ n: 1 }, { n: 3 }, { s: "z".repeat(56) }, { n: 7 }]);
    expect(entries.map((e) => [e.line, e.offset])).toEqual([2, 5, 6].map((line) => [line, content.indexOf(long, line === 2 ? 0 : line === 5 ? 100 : 500)]));
    for (const entry of entries) {
      expect(entry.error).toMatch(new RegExp(`^element ${entry.line} (has 308 bytes, more than|is longer than) maxRecordBytes`));
      // The whole element when the chunk held it, else its first bytes marked as cut.
      if (entry.raw !== long) {
        expect(entry.raw).toEndWith("…");
        expect(long.startsWith(entry.raw.slice(0, -1))).toBe(true);
      }
    }
  });

  test("reads files matched by a glob in name order, numbering elements per file, after a broken file", async () => {
    const folder = dir.unique("glob");
    await mkdir(folder);
    await writeFile(join(folder, "a.json"), '{"value":[{"f":"a","n":1},{"f":"a","n":2}]}');
    await writeFile(join(folder, "b.json"), '{"value":[{"f":"b","n":1},{"f":"b","n":2},{"f":"b"');
    await writeFile(join(folder, "c.json"), '{"value":[{"f":"c","n":1}]}');
    await writeFile(join(folder, "skip.txt"), "[]");
    const { values, entries, records } = await read(join(folder, "*.json"), { path: "value" });
    expect(values).toEqual([
      { f: "a", n: 1 },
      { f: "a", n: 2 },
      { f: "b", n: 1 },
      { f: "b", n: 2 },
      { f: "c", n: 1 },
    ]);
    expect(records.map((r) => r.line)).toEqual([1, 2, 1, 2, 1]);
    expect(entries.map((e) => [e.source, e.line, e.offset])).toEqual([[join(folder, "b.json"), 3, 42]]);
  });
});

describe("fromJson: damaged documents", () => {
  // Each case: the file, the options, the records kept, and the one dead letter: its line, the
  // byte offset (found in the content by a marker) and the start of its message.
  const cases: [name: string, content: string | Uint8Array, options: JsonOptions, values: unknown[], line: number, at: number, error: RegExp][] = [
    ["an empty file", "", {}, [], 0, 0, /^the file is empty: expected a JSON document/],
    ["a file holding only whitespace", " \n\t\r\n", {}, [], 0, 5, /^the file holds no JSON document, only whitespace/],
    ["a file holding only a byte order mark", bytes([0xef, 0xbb, 0xbf]), {}, [], 0, 3, /^the file holds no JSON document/],
    ["a file truncated mid-element", '[{"a":1},{"a":2', {}, [{ a: 1 }], 2, 9, /^the file ends inside element 2 of the array at the top level: it is truncated/],
    ["a file truncated mid-string", '{"value":[{"a":1},{"a":"ab\\"c', { path: "value" }, [{ a: 1 }], 2, 18, /^the file ends inside element 2 of the array at "value"/],
    ["a file truncated after a comma", '[{"a":1},', {}, [{ a: 1 }], 2, 9, /^the file ends inside the array at the top level after element 1: it is truncated \(expected ',' or '\]'\)/],
    ["a file truncated after the array", '{"value":[1,2]', { path: "value" }, [1, 2], 0, 14, /^the file ends before the JSON document is closed: it is truncated \(expected '\}'\)/],
    ["a file truncated before the array", '{"meta":{"x":"', { path: "value" }, [], 0, 14, /^the file ends before the array at "value" was found/],
    // Damage right after an element withholds the element: its end may not be where it seems.
    ["garbage between elements", '[{"a":1} xx {"a":2}]', {}, [], 1, 9, /^expected ',' or '\]' after element 1 of the array at the top level, found 'x'; element 1 is not read, as damage before its end can make it look whole \(byte 9\)/],
    ["a missing comma", '[{"a":1}{"a":2}]', {}, [], 1, 8, /^expected ',' or '\]' after element 1 .*found '\{'; element 1 is not read/],
    ["a file truncated right after an element", '[{"a":1},{"a":2}', {}, [{ a: 1 }], 2, 16, /^the file ends inside the array at the top level right after element 2: it is truncated \(expected ',' or '\]'\); element 2 is not read/],
    // A truncated element closed by the array's own bracket would hold the element after it: ["x",{"after":2}].
    ["a truncated element that the array's bracket closes", '[{"n":1},["x"\n,{"after":2}]', {}, [{ n: 1 }], 2, 27, /^the file ends inside the array at the top level right after element 2: .*element 2 is not read/],
    // A stray quote would make the string ",{" an element.
    ["a stray quote", '[{"n":1},",{"after":2}]', {}, [{ n: 1 }], 2, 13, /^expected ',' or '\]' after element 2 of the array at the top level, found 'a'; element 2 is not read/],
    ["damage off the path, before the array", '{"meta":{"x":1,,"y":2},"value":[1,2]}', { path: "value" }, [], 0, 15, /^the document is damaged off the path, in a value of the object at the top level: expected a key, found ','/],
    ["damage off the path, after the array", '{"value":[1,2],"next":{"a":tru}}', { path: "value" }, [1, 2], 0, 30, /^the document is damaged off the path, in a value of the object at the top level: expected true, found '\}'/],
    ["a stray quote off the path", '{"meta":{"s":"a\tb"},"value":[1]}', { path: "value" }, [], 0, 15, /^the document is damaged off the path.*a string holds a control character \(byte 0x09\)/],
    ["a number with a leading zero off the path", '{"n":01,"value":[1]}', { path: "value" }, [], 0, 6, /^the document is damaged off the path.*a number has a leading zero/],
    ["damage in an array off the path", '{"r":[[1,],[2]]}', { path: "r.1" }, [], 0, 9, /^the document is damaged off the path, in a value of the array at "r": expected a value, found '\]'/],
    ["a bad escape in a key", '{"a\\x":1,"value":[1]}', { path: "value" }, [], 0, 4, /^malformed key in the object at the top level: a string holds an escape that JSON does not have: \\x/],
    ["a trailing comma", "[1,2,]", {}, [1, 2], 3, 5, /^expected an element after ',' in the array at the top level, found '\]'/],
    ["brackets that do not match", '[1,{"a":[1}, {"b":2}]', {}, [1], 2, 10, /^element 2 is malformed: '\}' does not close the bracket open there/],
    ["the path missing", '{"x":1,"values":[1]}', { path: "value" }, [], 0, 19, /^path "value" not found: the object at the top level has no key "value"/],
    ["a nested path missing", '{"data":{"item":[1]}}', { path: "data.items" }, [], 0, 19, /^path "data.items" not found: the object at "data" has no key "items"/],
    ["an array index out of range", '{"r":[[1]]}', { path: "r.1" }, [], 0, 9, /^path "r.1" not found: the array at "r" has 1 element/],
    ["the path holding an object", '{"value":{"a":1}}', { path: "value" }, [], 0, 9, /^expected an array at "value", found an object/],
    ["the path holding a string", '{"value":"[1,2]"}', { path: "value" }, [], 0, 9, /^expected an array at "value", found a string/],
    ["the path holding null", '{"value":null}', { path: "value" }, [], 0, 9, /^expected an array at "value", found null/],
    ["a step of the path holding a number", '{"data":5}', { path: "data.items" }, [], 0, 8, /^expected an object at "data" on the way to "data.items", found a number/],
    ["an array where a key is wanted", '{"data":[]}', { path: "data.items" }, [], 0, 8, /^expected an object \("items" is not an array index\) at "data"/],
    ["a top-level object without a path", '{"value":[1]}', {}, [], 0, 0, /^expected an array at the top level, found an object/],
    ["a top-level array where the path wants an object", "[1]", { path: "value" }, [], 0, 0, /^expected an object \("value" is not an array index\) at the top level/],
    ["a top-level scalar", "42", {}, [], 0, 0, /^expected an array at the top level, found a number/],
    ["garbage after the document", "[1,2]\n[3]", {}, [1, 2], 0, 6, /^expected the end of the file after the JSON document, found '\['/],
    ["garbage in the object around the array", '{"value":[1] "x":2}', { path: "value" }, [1], 0, 13, /^expected ',' or '\}' in the object at the top level, found '"'/],
    ["a key without a colon", '{"meta" 1, "value":[1]}', { path: "value" }, [], 0, 8, /^expected ':' after a key in the object at the top level, found '1'/],
    ["a key that is not a string", '{meta: 1}', { path: "value" }, [], 0, 1, /^expected a key or '\}' in the object at the top level, found 'm'/],
    ["a key longer than maxRecordBytes", `{"${"k".repeat(300)}":1,"value":[1]}`, { path: "value", maxRecordBytes: 64 }, [], 0, 1, /^a key is longer than maxRecordBytes \(64 bytes\)/],
  ];

  test.each(cases)("dead-letters %s with its position, keeping the records before it", async (_name, content, options, expected, line, at, error) => {
    const path = await file(content);
    for (const chunkBytes of CHUNKS) {
      const { values, entries } = await read(path, { ...options, chunkBytes });
      expect(values).toEqual(expected);
      expect(entries).toHaveLength(1);
      expect(entries[0]).toMatchObject({ source: path, line, offset: at, stage: "parse" });
      expect(entries[0].error).toMatch(error);
      expect(entries[0].error).toContain(`(byte ${at})`);
    }
  });

  test.each(CHUNKS)("keeps the withheld element as the raw text of the fault after it (chunkBytes %p)", async (chunkBytes) => {
    const merged = await read(await file('[{"n":1},["x"\n,{"after":2}]'), { chunkBytes });
    expect(merged.values).toEqual([{ n: 1 }]);
    expect(merged.entries[0].raw).toBe('["x"\n,{"after":2}]');
    const stray = await read(await file('[{"n":1},",{"after":2}]'), { chunkBytes });
    // The element, then as much of what follows as the buffer holds.
    expect(stray.entries[0].raw).toStartWith('",{"a');
    expect('",{"after":2}]').toStartWith(stray.entries[0].raw);
  });

  test.each(CHUNKS)("dead-letters an element with a number a 64-bit float cannot hold, naming it and its byte (chunkBytes %p)", async (chunkBytes) => {
    const content = '[{"n":1},\n {"é":"ü","big":12345678901234567890},{"r":[1e400]},{"id":"12345678901234567890"}]';
    const { values, entries } = await read(await file(content), { chunkBytes });
    expect(values).toEqual([{ n: 1 }, { id: "12345678901234567890" }]);
    const tail = "; the record is not read (write such numbers as strings to keep them exact)";
    expect(brief(entries)).toEqual([
      {
        line: 2,
        offset: 11,
        error: `number 12345678901234567890 at big (element 2, byte ${utf8(content).indexOf(utf8("1234"))}) has more digits than a 64-bit float holds (it would become 12345678901234567000)${tail}`,
      },
      { line: 3, offset: utf8(content).indexOf(utf8('{"r"')), error: `number 1e400 at r.0 (element 3, byte ${utf8(content).indexOf(utf8("1e400"))}) is too large for a 64-bit float (it would become Infinity)${tail}` },
    ]);
  });

  test("keeps the raw text of a truncated element and an excerpt around other faults", async () => {
    const truncated = await read(await file('[{"a":1},{"a":"abc'));
    expect(truncated.entries[0].raw).toBe('{"a":"abc');
    const garbage = await read(await file(`[${"1,".repeat(100)}1 xx ${"2,".repeat(200)}2]`));
    const raw = garbage.entries[0].raw;
    expect(raw).toContain("1 xx 2,");
    expect(raw.length).toBeLessThanOrEqual(256);
  });

  test.each(CHUNKS)("dead-letters elements that are not JSON and reads the ones after them (chunkBytes %p)", async (chunkBytes) => {
    const bad = ['{"a":1,}', "nope", "{'a':1}", '{"a":undefined}', "01", '"tab\there"', "[1,,2]", "NaN", "tru"];
    const content = `[${bad.map((b, i) => `{"n":${i}},${b}`).join(" ,\n ")},{"n":"end"}]`;
    const { values, entries } = await read(await file(content), { chunkBytes });
    expect(values).toEqual([...bad.map((_, i) => ({ n: i })), { n: "end" }]);
    expect(entries.map((e) => [e.line, e.raw, e.offset])).toEqual(bad.map((b, i) => [2 * i + 2, b, utf8(content).indexOf(utf8(`},${b}`)) + 2]));
    for (const entry of entries) expect(entry.error).toStartWith("malformed JSON: ");
    // JavaScriptCore calls the raw tab an "Unterminated string": the character is named instead.
    expect(entries[5]?.error).toBe("malformed JSON: a string holds the control character U+0009 unescaped (element 12, character 5), which JSON does not allow: write it as \\t");
  });

  test.each([
    ["a stray continuation byte", [0x80]],
    ["0xFF", [0xff]],
    ["an overlong encoding of /", [0xc0, 0xaf]],
    ["an encoded surrogate", [0xed, 0xa0, 0x80]],
    ["a cut three-byte sequence", [0xe2, 0x82]],
    ["a cut four-byte sequence", [0xf0, 0x9f, 0x98]],
    ["a code point above U+10FFFF", [0xf4, 0x90, 0x80, 0x80]],
  ])("dead-letters an element with %s, keeping its exact bytes, and reads the elements around it", async (_name, bad) => {
    const element = bytes('{"s":"', bad, '"}');
    const content = bytes('[{"n":1},{"s":"日本😀"},', element, ',{"n":4}]');
    const path = await file(content);
    for (const chunkBytes of CHUNKS) {
      const { values, entries } = await read(path, { chunkBytes });
      expect(values).toEqual([{ n: 1 }, { s: "日本😀" }, { n: 4 }]);
      expect(brief(entries)).toEqual([{ line: 3, offset: Buffer.from(content).indexOf(Buffer.from(element)), error: "element is not valid UTF-8" }]);
      expect(Buffer.from(entries[0].rawBase64!, "base64")).toEqual(Buffer.from(element));
      expect(entries[0].raw).toBe(new TextDecoder().decode(element));
    }
  });
});

/** A document with every kind of element, in random sizes, built from parts whose offsets are known. */
function messyDocument(seed: number) {
  const random = seededRandom(seed);
  const text = () =>
    Array.from({ length: random.int(30) }, () => random.pick(["a", "é", "日本", "😀", " ", "\n", '"', "\\", "]", "}", "[{", "\u2028", "\ud83d\ude00"])).join("");
  const value = (depth: number): unknown => {
    const kind = random.int(depth > 2 ? 4 : 7);
    if (kind === 0) return random.int(1_000_000) - 500_000;
    if (kind === 1) return text();
    if (kind === 2) return random.pick([null, true, false, 1.5e-7]);
    if (kind === 3) return { [text()]: text() };
    if (kind === 4) return Array.from({ length: random.int(4) }, () => value(depth + 1));
    return Object.fromEntries(Array.from({ length: random.int(5) }, (_, i) => [`k${i}${text()}`, value(depth + 1)]));
  };
  const space = () => random.pick(["", " ", "\n", "\r\n  ", "\t"]);
  const parts: Uint8Array[] = [];
  let size = 0;
  const add = (part: string | Uint8Array) => {
    const chunk = typeof part === "string" ? utf8(part) : part;
    parts.push(chunk);
    size += chunk.length;
  };
  if (random.next() < 0.5) add(bytes([0xef, 0xbb, 0xbf]));
  const nested = random.next() < 0.7;
  if (nested) add(`{"decoy":${JSON.stringify({ value: [1, "],"], s: '"value":[' })},${space()}"value"${space()}:${space()}[`);
  else add(`${space()}[`);
  const values: { line: number; offset: number; value: unknown }[] = [];
  const rejects: { line: number; offset: number; raw: Uint8Array }[] = [];
  const count = random.int(60);
  for (let i = 0; i < count; i++) {
    if (i > 0) add(`${space()},${space()}`);
    const line = i + 1;
    const roll = random.next();
    if (roll < 0.12) {
      const raw = random.next() < 0.5 ? utf8(random.pick(['{"a":1,}', "nope", "[1,,2]", '{"a" 1}'])) : bytes('{"s":"', random.pick([[0xff], [0x80], [0xe2, 0x82]]), `${text().replace(/[\\"]/g, "")}"}`);
      rejects.push({ line, offset: size, raw });
      add(raw);
    } else {
      const v = value(0);
      values.push({ line, offset: size, value: v });
      add(random.next() < 0.3 ? JSON.stringify(v, null, 2) : JSON.stringify(v));
    }
  }
  add(`${space()}]`);
  if (nested) add(`,"after":${JSON.stringify({ value: [text()] })}}`);
  add(space());
  return { content: Buffer.concat(parts), values, rejects, path: nested ? "value" : undefined };
}

describe("fromJson: generated documents", () => {
  test("reads every kind of element the same way at every chunk size, with exact positions", async () => {
    for (let seed = 1; seed <= 12; seed++) {
      const doc = messyDocument(seed);
      const path = await file(doc.content);
      for (const chunkBytes of [4, 5, 8, 13, 31, 64, 4096, undefined]) {
        const { records, entries } = await read(path, { path: doc.path, chunkBytes });
        expect(records.map(({ line, offset, value }) => ({ line, offset, value }))).toEqual(doc.values);
        // The raw text of each record is exactly its bytes in the file.
        for (const record of records) {
          const raw = utf8(record.raw as string);
          expect(doc.content.subarray(record.offset, (record.offset as number) + raw.length)).toEqual(raw);
        }
        expect(entries.map((e) => ({ line: e.line, offset: e.offset as number, raw: e.rawBase64 ? Buffer.from(e.rawBase64, "base64") : utf8(e.raw) }))).toEqual(
          doc.rejects.map((r) => ({ ...r, raw: Buffer.from(r.raw) })),
        );
      }
    }
  });

  test("counts every byte of the file as read", async () => {
    const doc = messyDocument(99);
    const { summary } = await read(await file(doc.content), { path: doc.path, chunkBytes: 16 });
    expect(summary.bytesRead).toBe(doc.content.length);
  });
});

describe("fromJson: into Parquet", () => {
  test("writes records with nested objects and lists that DuckDB reads back identically", async () => {
    const User = v.object({
      id: v.string(),
      name: v.nullable(v.string()),
      enabled: v.boolean(),
      logins: v.pipe(v.number(), v.integer()),
      activity: v.nullable(v.object({ last: v.nullable(v.string()), score: v.number() })),
      licenses: v.array(v.object({ sku: v.string() })),
    });
    const random = seededRandom(3);
    const users = Array.from({ length: 700 }, (_, i) => ({
      id: `u-${i}`,
      name: random.next() < 0.1 ? null : random.pick(["Ada", "Zoë ]}", 'say "hi"', "日本", ""]),
      enabled: random.next() < 0.5,
      logins: random.int(10_000),
      activity: random.next() < 0.2 ? null : { last: random.next() < 0.3 ? null : `2024-0${1 + random.int(9)}-01`, score: random.int(1000) / 8 },
      licenses: Array.from({ length: random.int(3) }, (_, k) => ({ sku: `sku-${k}` })),
    }));
    const path = await file(JSON.stringify({ "@odata.context": "x", value: users }, null, 1));
    const out = dir.unique("parquet");
    const summary = await run(
      fromJson(path, { path: "value", chunkBytes: 1000 }).pipe(validate(User), deadLetter(() => {}), toParquet(out, { schema: User, maxFileRows: 300 })),
      { handleSignals: false },
    );
    expect([summary.in, summary.written, summary.deadLettered]).toEqual([700, 700, 0]);
    const rows = await query(`SELECT id, name, enabled, logins, activity, licenses FROM ${dataset(out)} ORDER BY CAST(substr(id, 3) AS INTEGER)`);
    expect(rows).toEqual(users.map((u) => ({ ...u, logins: String(u.logins) })));
  });
});

describe("fromJson: as an observable", () => {
  test("completes with nothing for an empty array", async () => {
    const values = await new Promise<unknown[]>((resolve, reject) => {
      file("[]").then((path) => fromJson(path).pipe(map(plain), toArray()).subscribe({ next: resolve, error: reject }));
    });
    expect(values).toEqual([]);
  });

  test("emits one record, then many in order", async () => {
    expect((await read(await file('[{"n":0}]'))).values).toEqual([{ n: 0 }]);
    const many = Array.from({ length: 5000 }, (_, n) => ({ n }));
    const { values } = await read(await file(JSON.stringify({ value: many })), { path: "value", chunkBytes: 100 });
    expect(values).toEqual(many);
  });

  test("reads files concurrently, each record keeping its own file and index", async () => {
    const paths = await Promise.all([0, 1, 2].map((f) => file(JSON.stringify(Array.from({ length: 2000 }, (_, n) => ({ f, n }))))));
    const entries: DeadLetter[] = [];
    const seen: { source: string; line: number; value: { f: number; n: number } }[] = [];
    await run(
      fromJson(paths, { concurrency: 2, chunkBytes: 256 }).pipe(
        (source) =>
          new Observable((subscriber) => {
            return source.subscribe({
              next: (value) => seen.push({ source: positionOf(value)?.source ?? "", line: positionOf(value)?.line ?? 0, value: value as { f: number; n: number } }),
              error: (e) => subscriber.error(e),
              complete: () => subscriber.complete(),
            });
          }),
        deadLetter((e) => entries.push(e)),
      ),
      { handleSignals: false },
    );
    expect(entries).toEqual([]);
    expect(seen).toHaveLength(6000);
    for (const record of seen) {
      expect(record.source).toBe(paths[record.value.f]);
      expect(record.line).toBe(record.value.n + 1);
    }
  });

  test("stops reading when take() unsubscribes early", async () => {
    const content = JSON.stringify(Array.from({ length: 20_000 }, (_, n) => ({ n })));
    const path = await file(content);
    let flow: Flow | undefined;
    const values: unknown[] = [];
    const summary = await run(fromJson(path, { chunkBytes: 1024 }).pipe(take(3)), {
      handleSignals: false,
      onStart: (f) => (flow = f),
      onValue: (value) => values.push(value),
    });
    expect(values).toEqual([{ n: 0 }, { n: 1 }, { n: 2 }]);
    expect(summary.in).toBe(3);
    expect(flow?.stats.bytesRead).toBeLessThan(content.length / 10);
  });

  test("waits while the sink holds the gate, reading no further than the chunk it has", async () => {
    const content = JSON.stringify(Array.from({ length: 20_000 }, (_, n) => ({ n })));
    const path = await file(content);
    let held: { values: number; bytesRead: number } | undefined;
    let count = 0;
    const summary = await run(
      fromJson(path, { chunkBytes: 4096 }).pipe(
        (source) =>
          new Observable((subscriber) => {
            const flow = currentFlow();
            return source.subscribe({
              next(value) {
                count++;
                if (count === 1) {
                  const release = holdGate(flow);
                  setTimeout(() => {
                    held = { values: count, bytesRead: flow.stats.bytesRead };
                    release();
                  }, 100);
                }
                subscriber.next(value);
              },
              error: (e) => subscriber.error(e),
              complete: () => subscriber.complete(),
            });
          }),
      ),
      { handleSignals: false },
    );
    expect(summary.emitted).toBe(20_000);
    // While held: the first chunk's records only.
    expect(held?.bytesRead).toBe(4096);
    expect(held?.values).toBeLessThan(500);
  });

  test("errors naming the path when a file does not exist, before reading anything", async () => {
    const present = await file("[1]");
    const missing = join(dir.path, "missing.json");
    const values: unknown[] = [];
    const result = run(fromJson([present, missing]).pipe(deadLetter(() => {})), { handleSignals: false, onValue: (value) => values.push(value) });
    await expect(result).rejects.toThrow(`fromJson: input ${missing} does not exist`);
    expect(values).toEqual([]);
  });

  test("errors naming the file and position of a bad element when there is no dead-letter target", async () => {
    const path = await file('[1, nope, 3]');
    await expect(run(fromJson(path), { handleSignals: false })).rejects.toThrow(`a record from ${path} line 2 failed at stage "parse" (malformed JSON: `);
  });

  test("refuses a path with an empty step or an index that is not a whole number", () => {
    expect(() => fromJson("x.json", { path: "data..items" })).toThrow('fromJson: path "data..items" has an empty step');
    expect(() => fromJson("x.json", { path: ["data", -1] })).toThrow("not an array index");
  });
});

/** Reads `path` under a checkpoint that resumes at `start` and notes the marks the source sets. */
async function readFrom(path: string, options: JsonOptions, start?: { line: number; byteOffset: number }) {
  const flow = createFlow();
  const { marks, checkpoint } = recordingCheckpoint(start);
  flow.checkpoint = checkpoint;
  const records: Emitted[] = [];
  const entries: DeadLetter[] = [];
  await new Promise<void>((resolve, reject) =>
    withFlow(flow, () =>
      fromJson(path, options)
        .pipe(positions(records), deadLetter((e) => entries.push(e)))
        .subscribe({ error: reject, complete: resolve }),
    ),
  );
  return { records, entries, marks };
}

describe("fromJson: resuming from a checkpoint", () => {
  test("marks places after whole elements, and resuming at any of them reads exactly the rest", async () => {
    const doc = messyDocument(5);
    const path = await file(doc.content);
    const whole = await readFrom(path, { path: doc.path, chunkBytes: 64 });
    expect(whole.marks.length).toBeGreaterThan(5);
    for (const [line, byteOffset] of whole.marks) {
      const rest = await readFrom(path, { path: doc.path, chunkBytes: 64 }, { line, byteOffset });
      expect(rest.records.map((r) => [r.line, r.offset, r.value])).toEqual(
        whole.records.filter((r) => r.line > line).map((r) => [r.line, r.offset, r.value]),
      );
      expect(rest.entries.map((e) => [e.line, e.offset])).toEqual(whole.entries.filter((e) => e.line > line).map((e) => [e.line, e.offset]));
    }
  });
});

describe("fromJson: a document of one element a line", () => {
  // Elements on lines of their own are taken a line at a time when the line parses; these lines
  // do not all hold one element, or hold damage. Each document is read as written and with every
  // newline made a space (same bytes, same offsets, and no line to take): both must give the same
  // records, dead letters and places to resume.
  const lines: (string | Uint8Array)[] = [
    '{"a":1}',
    '["x",{"b":[1,2]}]',
    '{"s":"é ü ß 日本 😀 \u2028 \u00e9"}',
    '{"a":1,}',
    '{"a":1}, {"b":2}',
    '{"a":\n1}',
    JSON.stringify({ a: [1, { b: 2 }], c: "}" }, null, 2),
    bytes('{"s":"', [0xff], '"}'),
    bytes('{"s":"é', [0xc3], '"}'),
    bytes('{"s":"', [0xed, 0xa0, 0x80], '"}'),
    bytes('{"s":"', [0xef, 0xbb, 0xbf], '"}'),
    '{"n":1e400}',
    '{"n":[12345678901234567890]}',
    `${"[".repeat(10_001)}${"]".repeat(10_001)}`,
    `{"d":${"[".repeat(9_000)}${"]".repeat(9_000)}}`,
    '{"s":"}"}',
    '{"s":"\\"},{\\""}',
    '{"s":"a\tb"}',
    '"a string"',
    "42",
    "null",
    "[]",
    "{}",
    '{"k":"v"}   ',
    `{"long":"${"x".repeat(200)}"}`,
  ];
  const separators = [",\n", " ,\n", ",\r\n", "\n,", ",\n\n", ",\t\n"];
  const endings = ["\n]\n", ']\n', "]", '\n{"a":', '\n{"a":[1}\n]', '\n{"a":1} x\n]', "\n[1]]\n", ',\n{"a":1}]'];

  /** A document of `lines` in a random order with random separators, ending with `ending`. */
  function document(seed: number, ending: string, nested: boolean): Uint8Array {
    const random = seededRandom(seed);
    const parts: (string | Uint8Array)[] = [nested ? '{"meta":{"x":"\\n"},\n"value":[\n' : "[\n"];
    const count = 5 + random.int(40);
    for (let i = 0; i < count; i++) {
      if (i > 0) parts.push(random.pick(separators));
      parts.push(random.pick(lines));
    }
    parts.push(nested ? ending.replace(/\]\n?$/, "]}") : ending);
    return bytes(...parts.map((p) => (typeof p === "string" ? utf8(p) : p)));
  }

  /** What a read gives, with newlines made spaces so both forms of a document compare. */
  async function outcome(content: Uint8Array, options: JsonOptions) {
    const spaced = (text: string | undefined) => text?.replaceAll("\n", " ");
    const { records, entries, marks } = await readFrom(await file(content), options);
    return {
      records: records.map((r) => ({ line: r.line, offset: r.offset, value: r.value, raw: spaced(r.raw) })),
      entries: entries.map((e) => ({ line: e.line, offset: e.offset, error: spaced(e.error), raw: spaced(e.raw), rawBase64: e.rawBase64 && Buffer.from(e.rawBase64, "base64").toString("hex").replaceAll("0a", "20") })),
      marks,
    };
  }

  test("reads lines that hold one element, more, less or damage as it reads the same document without lines", async () => {
    let taken = 0;
    for (let seed = 1; seed <= 24; seed++) {
      const ending = endings[seed % endings.length] as string;
      const nested = seed % 3 === 0;
      const content = document(seed, ending, nested);
      const flat = Buffer.from(content).map((b) => (b === 0x0a ? 0x20 : b));
      for (const options of [{}, { chunkBytes: 64 }, { chunkBytes: 1024 }, { maxRecordBytes: 100 }] as JsonOptions[]) {
        const withPath = { ...options, path: nested ? "value" : undefined };
        const byLine = await outcome(content, withPath);
        expect({ seed, options, ...byLine }).toEqual({ seed, options, ...(await outcome(flat, withPath)) });
        taken += byLine.records.length;
      }
    }
    expect(taken).toBeGreaterThan(1000);
  });

  test("reads a document whose lines each hold two elements as it reads it without lines", async () => {
    const content = utf8(`[\n${Array.from({ length: 60 }, (_, i) => `{"a":${i}}, {"b":${i}}`).join(",\n")},\n${Array.from({ length: 60 }, (_, i) => `{"c":${i}}`).join(",\n")}\n]`);
    const flat = Buffer.from(content).map((b) => (b === 0x0a ? 0x20 : b));
    const byLine = await outcome(content, {});
    expect(byLine.records.length).toBe(180);
    expect(byLine).toEqual(await outcome(flat, {}));
  });
});
