import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import * as v from "valibot";
import { deadLetter, validate } from "../../operators/index.ts";
import type { DeadLetter } from "../../src/deadletter/entry.ts";
import { openDeadLetterStore } from "../../src/deadletter/store.ts";
import { readDeadLetters } from "../../src/index.ts";
import { run } from "../../src/run/run.ts";
import { toParquet } from "../../src/sinks/toParquet.ts";
import { fromPush } from "../../src/sources/push.ts";
import { tempDir } from "../helpers/duckdb.ts";

const entry = (line: number): DeadLetter => ({
  stage: "validate",
  source: "test",
  line,
  raw: `{"line":${line}}`,
  error: "bad",
  at: new Date(0).toISOString(),
  runId: "r1",
});

const ndjsonIn = async (folder: string) => (await readdir(folder).catch(() => [] as string[])).filter((f) => f.endsWith(".ndjson")).sort();

async function until<T>(what: string, probe: () => Promise<T | undefined>, ms = 5000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const found = await probe();
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await Bun.sleep(10);
  }
}

async function collect(folder: string): Promise<DeadLetter[]> {
  const all: DeadLetter[] = [];
  for await (const e of readDeadLetters(folder)) all.push(e);
  return all;
}

let dir: { path: string; remove: () => Promise<void> };
beforeAll(async () => {
  dir = await tempDir("sluice-dlstore-");
});
afterAll(() => dir.remove());

describe("the dead-letter store's age bound", () => {
  test("commits what is gathered once the oldest entry is maxFileAgeMs old, with no more entries coming", async () => {
    const folder = join(dir.path, "age");
    const store = await openDeadLetterStore(folder, "r1", { maxFileAgeMs: 80 });
    const started = Date.now();
    store.add(entry(1));
    store.add(entry(2));
    expect(await ndjsonIn(folder)).toEqual([]);
    const files = await until("first file", async () => ((await ndjsonIn(folder)).length > 0 ? ndjsonIn(folder) : undefined));
    expect(Date.now() - started).toBeGreaterThanOrEqual(75);
    expect(files).toEqual(["dead-letter-r1-00000.ndjson"]);
    expect((await collect(folder)).map((e) => e.line)).toEqual([1, 2]);

    // The clock starts again with the next entry, not at the store's opening.
    store.add(entry(3));
    await until("second file", async () => ((await ndjsonIn(folder)).length === 2 ? true : undefined));
    expect((await collect(folder)).map((e) => e.line)).toEqual([1, 2, 3]);
    await store.close();
    expect(store.files).toHaveLength(2);
  });

  test("close commits the rest and clears the timer: no file after it", async () => {
    const folder = join(dir.path, "close");
    const store = await openDeadLetterStore(folder, "r2", { maxFileAgeMs: 50 });
    store.add(entry(1));
    await store.close();
    expect(await ndjsonIn(folder)).toEqual(["dead-letter-r2-00000.ndjson"]);
    await Bun.sleep(120);
    expect(await ndjsonIn(folder)).toEqual(["dead-letter-r2-00000.ndjson"]);
    expect(() => store.add(entry(2))).toThrow(/is closed/);
  });

  test("a file committed at fileBytes restarts the age clock for the entries after it", async () => {
    const folder = join(dir.path, "bytes");
    const store = await openDeadLetterStore(folder, "r3", { fileBytes: 300, maxFileAgeMs: 150 });
    for (let line = 1; line <= 3; line++) store.add(entry(line));
    await store.flush();
    const bySize = await ndjsonIn(folder);
    expect(bySize).toHaveLength(1);
    store.add(entry(4));
    await Bun.sleep(40);
    expect(await ndjsonIn(folder)).toEqual(bySize);
    await until("aged file", async () => ((await ndjsonIn(folder)).length === 2 ? true : undefined));
    await store.close();
    expect((await collect(folder)).map((e) => e.line)).toEqual([1, 2, 3, 4]);
  });

  test("the timer does not keep the process alive", async () => {
    const script = join(dir.path, "alive.ts");
    const store = join(import.meta.dir, "../../src/deadletter/store.ts");
    await Bun.write(
      script,
      `import { openDeadLetterStore } from ${JSON.stringify(store)};
const s = await openDeadLetterStore(${JSON.stringify(join(dir.path, "alive"))}, "r4", { maxFileAgeMs: 60_000 });
s.add({ stage: "x", source: "s", line: 1, raw: "", error: "e", at: "", runId: "r4" });
console.log("added");
`,
    );
    const started = Date.now();
    const child = Bun.spawn(["bun", script], { stdout: "pipe", stderr: "pipe" });
    // A timer that held the process would keep it up for the whole minute.
    const guard = setTimeout(() => child.kill(), 15_000);
    const [code, out] = await Promise.all([child.exited, new Response(child.stdout).text()]);
    clearTimeout(guard);
    expect([code, out.trim()]).toEqual([0, "added"]);
    expect(Date.now() - started).toBeLessThan(15_000);
  });

  test("a running pipeline's dead letters are durable within maxFileAgeMs, read while it still runs", async () => {
    const Row = v.object({ id: v.pipe(v.number(), v.integer()) });
    const folder = join(dir.path, "pipeline-dead-letter");
    const events = fromPush<unknown>({ name: "app" });
    const done = run(
      events.pipe(
        validate(Row),
        deadLetter(folder, { maxFileAgeMs: 100 }),
        toParquet(join(dir.path, "pipeline-events"), { schema: Row, maxFileAgeMs: 60_000 }),
      ),
    );
    events.push({ id: 1 });
    events.push({ id: "two" });
    events.push({ id: 3 });
    const seen = await until("dead letter on disk", async () => {
      const found = await collect(folder);
      return found.length > 0 ? found : undefined;
    });
    expect(seen.map((e) => [e.stage, e.source, e.line, e.raw])).toEqual([["validate", "app", 2, '{"id":"two"}']]);
    expect(events.closed).toBe(false);
    events.pushInvalid("{nope", "malformed JSON");
    events.end();
    const summary = await done;
    expect(summary).toMatchObject({ in: 4, written: 2, deadLettered: 2 });
    expect((await collect(folder)).map((e) => `${e.stage}:${e.line}`)).toEqual(["validate:2", "parse:4"]);
  });
});

describe("the dead-letter store's files", () => {
  test("hold every entry's text exactly, whatever characters it has, in files cut at fileBytes of UTF-8", async () => {
    const texts = ["plain", "café", "日本語", "😀 and 🎉", "lone \ud800 high", "lone \udc00 low", "nul \u0000 tab \t", "x".repeat(5000), "é".repeat(3000)];
    const folder = join(dir.path, "text");
    const store = await openDeadLetterStore(folder, "t1", { fileBytes: 2048, maxFileAgeMs: 60_000 });
    const added = texts.flatMap((raw, i) => [i, i + texts.length].map((line) => ({ ...entry(line), raw })));
    for (const e of added) store.add(e);
    await store.close();
    const files = await ndjsonIn(folder);
    expect(files.length).toBeGreaterThan(1);
    const read = await collect(folder);
    // JSON escapes a lone surrogate, so even that reads back as it was.
    expect(read).toEqual(added);
    for (const name of files) {
      const bytes = await Bun.file(join(folder, name)).bytes();
      expect(bytes.at(-1)).toBe(0x0a);
      expect(new TextDecoder("utf-8", { fatal: true }).decode(bytes).split("\n").slice(0, -1).every((line) => JSON.parse(line))).toBe(true);
    }
  });
});
