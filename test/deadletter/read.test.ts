import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { deadLetterFileName } from "../../src/deadletter/entry.ts";
import {
  fileLines,
  listDeadLetterFiles,
  listDeadLetterFilesSync,
  readDeadLetters,
  readDeadLettersSync,
  streamDeadLetters,
} from "../../src/deadletter/read.ts";
import { isDeadLetterFileOf } from "../../src/flow/runId.ts";
import { errorPattern } from "../../src/deadletter/summarize.ts";
import { tempDir } from "../helpers/duckdb.ts";

let dir: Awaited<ReturnType<typeof tempDir>>;
beforeAll(async () => {
  dir = await tempDir("sluice-dlread-");
});
afterAll(() => dir.remove());

async function lines(path: string): Promise<[string, number][]> {
  const out: [string, number][] = [];
  for await (const line of fileLines(path)) out.push(line);
  return out;
}

describe("fileLines", () => {
  test("numbers lines from 1, strips CRLF, keeps a last line without newline and an empty line", async () => {
    const path = join(dir.path, "a.txt");
    writeFileSync(path, "one\r\ntwo\n\nthree");
    expect(await lines(path)).toEqual([["one", 1], ["two", 2], ["", 3], ["three", 4]]);
  });

  test("joins a line longer than the read chunks, with multi-byte characters across chunk edges", async () => {
    const path = join(dir.path, "long.txt");
    const long = "é€😀x".repeat(400_000);
    writeFileSync(path, `short\n${long}\nend\n`);
    const got = await lines(path);
    expect(got.length).toBe(3);
    expect(got[1]?.[0] === long).toBe(true);
    expect(got[2]).toEqual(["end", 3]);
  });

  test("an empty file has no lines", async () => {
    const path = join(dir.path, "empty.txt");
    writeFileSync(path, "");
    expect(await lines(path)).toEqual([]);
  });
});

describe("streamDeadLetters", () => {
  test("yields entries file by file in name order with their ids, and names a line that is not a dead letter", async () => {
    const folder = join(dir.path, "dl");
    const entry = (line: number) => JSON.stringify({ stage: "validate", source: "in.ndjson", line, raw: "{}", error: "e", at: "", runId: "r" });
    await Bun.write(join(folder, "dead-letter-b-00000.ndjson"), `${entry(3)}\n`);
    await Bun.write(join(folder, "dead-letter-a-00000.ndjson"), `${entry(1)}\n\n${entry(2)}\n`);
    await Bun.write(join(folder, "replayed-x.ledger"), "not a dead letter\n");
    const got: string[] = [];
    for await (const s of streamDeadLetters(folder)) got.push(`${s.id}=${s.entry.line}`);
    expect(got).toEqual(["dead-letter-a-00000.ndjson#1=1", "dead-letter-a-00000.ndjson#3=2", "dead-letter-b-00000.ndjson#1=3"]);

    await Bun.write(join(folder, "dead-letter-c-00000.ndjson"), `${entry(4)}\n{"torn":\n`);
    const read = async () => {
      for await (const _ of streamDeadLetters(folder)) {
        // drain
      }
    };
    await expect(read()).rejects.toThrow("dead-letter-c-00000.ndjson line 2 is not a dead letter");
  });
});

describe("dead-letter file names", () => {
  test("the name a run's file is written under is the name its readers know as that run's, and no other run's", () => {
    for (const [runId, index] of [["a", 0], ["a-b", 1], ["20240301T120000Z-k3j9x2", 123456], ["x.y_z", 99999]] as const) {
      const name = deadLetterFileName(runId, index);
      expect(isDeadLetterFileOf(name, runId)).toBe(true);
      expect(isDeadLetterFileOf(name, `${runId}-b`)).toBe(false);
      expect(isDeadLetterFileOf(name, runId.slice(0, -1) || "z")).toBe(false);
    }
    expect(isDeadLetterFileOf(deadLetterFileName("a-b", 0), "a")).toBe(false);
    // Sorting names sorts a run's files in the order they were written (up to 100,000 files).
    const names = [0, 1, 9, 10, 99_999].map((n) => deadLetterFileName("r", n));
    expect([...names].reverse().sort()).toEqual(names);
  });
});

describe("listing and reading a folder", () => {
  const entry = (runId: string, line: number) =>
    JSON.stringify({ stage: "parse", source: "in.ndjson", line, raw: "x", error: "e", at: "", runId });

  async function folderOfRuns(name: string): Promise<string> {
    const folder = join(dir.path, name);
    await Bun.write(join(folder, deadLetterFileName("a", 1)), `${entry("a", 3)}\r\n`);
    await Bun.write(join(folder, deadLetterFileName("a", 0)), `${entry("a", 1)}\n\n${entry("a", 2)}\n`);
    await Bun.write(join(folder, deadLetterFileName("a-b", 0)), `${entry("a-b", 4)}\n`);
    await Bun.write(join(folder, `.${deadLetterFileName("a", 2)}.tmp`), "torn");
    await Bun.write(join(folder, "replayed-r.ledger"), "{}\n");
    await Bun.write(join(folder, "other.ndjson"), `${entry("z", 5)}\n`);
    return folder;
  }

  test("lists every *.ndjson file by name, or those of the given runs exactly", async () => {
    const folder = await folderOfRuns("list");
    const all = ["dead-letter-a-00000.ndjson", "dead-letter-a-00001.ndjson", "dead-letter-a-b-00000.ndjson", "other.ndjson"];
    expect(await listDeadLetterFiles(folder)).toEqual(all);
    expect(listDeadLetterFilesSync(folder)).toEqual(all);
    expect(await listDeadLetterFiles(folder, { runs: ["a"] })).toEqual(["dead-letter-a-00000.ndjson", "dead-letter-a-00001.ndjson"]);
    expect(listDeadLetterFilesSync(folder, { runs: ["a-b", "none"] })).toEqual(["dead-letter-a-b-00000.ndjson"]);
    expect(await listDeadLetterFiles(join(folder, "missing"))).toEqual([]);
    expect(listDeadLetterFilesSync(join(folder, "missing"), { runs: ["a"] })).toEqual([]);
  });

  test("the synchronous reader yields what the streaming one yields, ids and all", async () => {
    const folder = await folderOfRuns("sync");
    const streamed = [];
    for await (const stored of streamDeadLetters(folder)) streamed.push(stored);
    expect([...readDeadLettersSync(folder)]).toEqual(streamed);
    expect([...readDeadLettersSync(folder, { runs: ["a"] })].map((s) => s.id)).toEqual([
      "dead-letter-a-00000.ndjson#1",
      "dead-letter-a-00000.ndjson#3",
      "dead-letter-a-00001.ndjson#1",
    ]);
    const entries = [];
    for await (const e of readDeadLetters(folder)) entries.push(e);
    expect(entries).toEqual(streamed.map((s) => s.entry));
  });

  test("the synchronous reader names a line that is not a dead letter", async () => {
    const folder = join(dir.path, "sync-torn");
    await Bun.write(join(folder, deadLetterFileName("a", 0)), `${entry("a", 1)}\n{"stage": 1}\n`);
    expect(() => [...readDeadLettersSync(folder)]).toThrow("dead-letter-a-00000.ndjson line 2 is not a dead letter (no stage)");
  });
});

describe("errorPattern", () => {
  test.each([
    ["malformed JSON: JSON Parse error: Unterminated string", "malformed JSON: …"],
    ["malformed JSON: Unexpected token } in JSON at position 123", "malformed JSON: …"],
    ['1 issue: duration_ms: Invalid type: Expected number but received "52675"', 'duration_ms: Invalid type: Expected number but received "…"'],
    ["1 issue: user_id: Invalid type: Expected string but received 26957", "user_id: Invalid type: Expected string but received N"],
    ["1 issue: timestamp: not a real ISO-8601 instant (microsecond precision at most)", "timestamp: not a real ISO-8601 instant (microsecond precision at most)"],
    ['1 issue: event_id: Invalid key: Expected "event_id" but received undefined', 'event_id: Invalid key: Expected "event_id" but received undefined'],
    ["line 12 is longer than 134217728 bytes", "line N is longer than N bytes"],
    ["value 3.5 does not fit int32 column c2", "value N does not fit int32 column c2"],
    [
      "number 123456789012345678901234 at n (line 10, column 44) has more digits than a 64-bit float holds (it would become 1.2345678901234569e+23); the record is not read",
      "number N at n (line N, column N) has more digits than a 64-bit float holds (it would become N); the record is not read",
    ],
    [
      "number 9007199254740993 at n (line 16, column 45) has more digits than a 64-bit float holds (it would become 9007199254740992); the record is not read",
      "number N at n (line N, column N) has more digits than a 64-bit float holds (it would become N); the record is not read",
    ],
    ["1 issue: n: Invalid value: Expected >=0 but received -1", "n: Invalid value: Expected >=N but received N"],
    ["1 issue: n: Invalid value: Expected >=0 but received 2.5e-7", "n: Invalid value: Expected >=N but received N"],
    ["value -3 is outside 10-20.", "value N is outside N-N."],
    ["1 issue: tags.12: Invalid type: Expected string but received 1", "tags.N: Invalid type: Expected string but received N"],
  ])("%p groups as %p", (message, pattern) => {
    expect(errorPattern(message)).toBe(pattern);
  });
});
