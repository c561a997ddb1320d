import { describe, expect, test } from "bun:test";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { tap } from "rxjs";
import * as v from "valibot";
import { ClickEvent } from "../../examples/clickstream.ts";
import { deadLetter, validate } from "../../operators/index.ts";
import type { DeadLetter } from "../../src/deadletter/entry.ts";
import { writeClickstream } from "../../src/generate/clickstream.ts";
import { run, type RunOptions, type RunSummary } from "../../src/run/run.ts";
import { toParquet } from "../../src/sinks/toParquet.ts";
import { fromCsv } from "../../src/sources/csv.ts";
import { fromJson } from "../../src/sources/json.ts";
import { fromNdjson } from "../../src/sources/ndjson.ts";
import { query } from "../helpers/duckdb.ts";
import { inputFolder } from "../helpers/inputs.ts";

const dir = inputFolder("sluice-files-", ".ndjson");
const FIXTURE = join(import.meta.dir, "../fixtures/ndjson-to-dead-letter.ts");

/** A named pipe, new in the test folder. */
function fifo(): string {
  const path = dir.unique("pipe");
  const made = Bun.spawnSync(["mkfifo", path]);
  if (made.exitCode !== 0) throw new Error(`mkfifo ${path}: ${made.stderr.toString()}`);
  return path;
}

/** Another process that opens `pipe` after `delayMs` and writes `file` into it, as `producer > pipe &` does. */
function writeInto(pipe: string, file: string, delayMs = 100) {
  return Bun.spawn(["sh", "-c", 'sleep "$1"; cat "$2" > "$3"', "sh", String(delayMs / 1000), file, pipe]);
}

/** Resolves `promise`, or rejects once `ms` have passed: a hang fails the test instead of stalling it. */
function within<T>(ms: number, promise: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`still waiting after ${ms} ms`)), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/** What reading NDJSON `input` gives: the values, and the dead letters without their source name. */
async function readNdjson(input: string, options: RunOptions = {}) {
  const values: unknown[] = [];
  const entries: Omit<DeadLetter, "source" | "at" | "runId">[] = [];
  const summary = await run(
    fromNdjson(input, { chunkBytes: 16 * 1024 }).pipe(deadLetter(({ source: _s, at: _a, runId: _r, ...rest }) => entries.push(rest))),
    { handleSignals: false, onValue: (value) => values.push(value), ...options },
  );
  return { values, entries, summary };
}

const lines = (text: string) => text.split("\n").filter(Boolean);

/** A clickstream file with defects (so dead letters are compared too), and its text. */
async function clickstream(count: number, seed: number): Promise<{ path: string; text: string }> {
  const path = dir.unique("events.ndjson");
  await writeClickstream(path, { count, seed, defectRate: 0.05 });
  return { path, text: await Bun.file(path).text() };
}

const compressors = {
  gzip: (bytes: Uint8Array<ArrayBuffer>) => Bun.gzipSync(bytes),
  zstd: (bytes: Uint8Array<ArrayBuffer>) => Bun.zstdCompressSync(bytes),
};

/** `text` compressed, each part of it a member (gzip) or frame (zstd) of its own, as `cat a.gz b.gz` makes. */
function compressed(format: keyof typeof compressors, text: string, parts = 1): Uint8Array {
  const all = lines(text);
  const size = Math.ceil(all.length / parts);
  const pieces: Uint8Array[] = [];
  for (let i = 0; i < all.length; i += size) pieces.push(compressors[format](Buffer.from(`${all.slice(i, i + size).join("\n")}\n`)));
  return Buffer.concat(pieces);
}

describe("named pipes", () => {
  test("a run reading a pipe that no process has opened for writing stops when it is asked to", async () => {
    const controller = new AbortController();
    const done = run(fromNdjson(fifo()).pipe(deadLetter(() => {})), { handleSignals: false, signal: controller.signal });
    await Bun.sleep(150);
    const asked = performance.now();
    controller.abort();
    const summary = await within(15_000, done);
    expect(performance.now() - asked).toBeLessThan(1000);
    expect(summary).toMatchObject({ stopped: true, in: 0 });
  });

  test("a run reading a pipe whose writer sends nothing stops when it is asked to, keeping what it read", async () => {
    const pipe = fifo();
    const first = await dir.file('{"n":1}\n{"n":2}\n');
    // Writes two lines, then holds the pipe open without writing.
    const writer = Bun.spawn(["sh", "-c", 'exec 3>"$1"; cat "$2" >&3; sleep 30', "sh", pipe, first]);
    const controller = new AbortController();
    const values: unknown[] = [];
    const done = run(fromNdjson(pipe).pipe(deadLetter(() => {})), { handleSignals: false, signal: controller.signal, onValue: (v) => values.push(v) });
    try {
      const until = Date.now() + 3000;
      while (values.length < 2 && Date.now() < until) await Bun.sleep(10);
      controller.abort();
      const summary = await within(15_000, done);
      expect(summary).toMatchObject({ stopped: true, in: 2 });
      expect(values).toEqual([{ n: 1 }, { n: 2 }]);
    } finally {
      writer.kill();
    }
  });

  test("a process reading a pipe that no process writes to exits on the first SIGTERM", async () => {
    const child = Bun.spawn(["bun", FIXTURE, fifo(), dir.unique("dead-letter")], { stdout: "pipe", stderr: "pipe" });
    const stderr = child.stderr.getReader();
    const started = await within(30_000, stderr.read());
    expect(new TextDecoder().decode(started.value)).toContain("started");
    await Bun.sleep(150);
    child.kill("SIGTERM");
    const code = await within(20_000, child.exited).catch((error) => {
      child.kill("SIGKILL");
      throw error;
    });
    expect({ code, signal: child.signalCode }).toEqual({ code: 0, signal: null });
    const summary = JSON.parse(await new Response(child.stdout).text()) as RunSummary;
    expect(summary).toMatchObject({ stopped: true, in: 0 });
  });

  test("reads what another process writes into a pipe, as `producer > pipe & sluice run ... pipe` does", async () => {
    const { path, text } = await clickstream(3000, 1);
    const pipe = fifo();
    const writer = writeInto(pipe, path, 300);
    const fromPipe = await within(30_000, readNdjson(pipe));
    expect(await writer.exited).toBe(0);
    const fromFile = await readNdjson(path);
    expect(fromPipe.summary.in).toBe(lines(text).length);
    expect(fromPipe.values).toEqual(fromFile.values);
    expect(fromPipe.entries).toEqual(fromFile.entries);
    expect(fromPipe.summary.bytesRead).toBe(Buffer.byteLength(text));
  });

  test("reads a gzip stream written into a pipe", async () => {
    const { path, text } = await clickstream(2000, 2);
    const gz = await dir.file(compressed("gzip", text), "pipe-input.ndjson.gz");
    const pipe = fifo();
    const writer = writeInto(pipe, gz);
    const fromPipe = await within(30_000, readNdjson(pipe));
    expect(await writer.exited).toBe(0);
    const fromFile = await readNdjson(path);
    expect(fromPipe.values).toEqual(fromFile.values);
    expect(fromPipe.entries).toEqual(fromFile.entries);
  });

  test("a short first record a writer sends into a pipe is read before the writer sends more", async () => {
    const pipe = fifo();
    const first = await dir.file('{}\n');
    // One three-byte record, then the pipe stays open and quiet.
    const writer = Bun.spawn(["sh", "-c", 'exec 3>"$1"; cat "$2" >&3; sleep 30', "sh", pipe, first]);
    const controller = new AbortController();
    const values: unknown[] = [];
    const done = run(fromNdjson(pipe).pipe(deadLetter(() => {})), { handleSignals: false, signal: controller.signal, onValue: (v) => values.push(v) });
    try {
      const until = Date.now() + 3000;
      while (values.length < 1 && Date.now() < until) await Bun.sleep(10);
      expect(values).toEqual([{}]);
    } finally {
      controller.abort();
      writer.kill();
      await within(15_000, done);
    }
  });

  test("under a checkpoint, a pipe is read whole on every run, as standard input is", async () => {
    const checkpoint = join(dir.unique("checkpointed"), "checkpoint.sqlite");
    const pipe = fifo();
    for (const [count, seed] of [
      [500, 3],
      [700, 4],
    ] as const) {
      const { path } = await clickstream(count, seed);
      const writer = writeInto(pipe, path);
      const { summary } = await within(30_000, readNdjson(pipe, { checkpoint }));
      expect(await writer.exited).toBe(0);
      expect(summary.in).toBe(count);
    }
  });
});

describe("compressed files", () => {
  /** Loads `input` through validation into a Parquet dataset; resolves the summary and the dead letters. */
  async function load(input: string, out: string, options: RunOptions = {}) {
    const entries: DeadLetter[] = [];
    const summary = await run(
      fromNdjson(input, { chunkBytes: 16 * 1024 }).pipe(
        validate(ClickEvent),
        deadLetter((e) => entries.push(e)),
        toParquet(out, { schema: ClickEvent, mode: "overwrite", maxFileRows: 700 }),
      ),
      { handleSignals: false, ...options },
    );
    return { summary, entries };
  }

  const table = (out: string) => `read_parquet('${out}/**/*.parquet')`;

  /** Rows of `a` missing from `b` and of `b` missing from `a`, compared by DuckDB. */
  async function differences(a: string, b: string) {
    const [row] = await query(`SELECT
      (SELECT count(*) FROM (SELECT * FROM ${table(a)} EXCEPT ALL SELECT * FROM ${table(b)}))::INTEGER AS only_a,
      (SELECT count(*) FROM (SELECT * FROM ${table(b)} EXCEPT ALL SELECT * FROM ${table(a)}))::INTEGER AS only_b,
      (SELECT count(*) FROM ${table(a)})::INTEGER AS rows`);
    return row;
  }

  test.each([
    ["gzip", 1],
    ["gzip", 5],
    ["zstd", 1],
    ["zstd", 5],
  ] as const)("reads a %s file (%p members) into the same dataset and dead letters as the plain file, checked with DuckDB", async (format, parts) => {
    const { path, text } = await clickstream(6000, 10);
    const packed = await dir.file(compressed(format, text, parts), `events-${format}-${parts}.ndjson.${format === "gzip" ? "gz" : "zst"}`);
    const plainOut = dir.unique("plain");
    const packedOut = dir.unique(format);
    const plain = await load(path, plainOut);
    const unpacked = await load(packed, packedOut);
    expect(unpacked.summary.in).toBe(6000);
    expect(unpacked.summary.written).toBe(plain.summary.written);
    expect(await differences(plainOut, packedOut)).toEqual({ only_a: 0, only_b: 0, rows: plain.summary.written });
    const strip = (entries: DeadLetter[]) => entries.map(({ line, raw, error, stage }) => ({ line, raw, error, stage }));
    expect(strip(unpacked.entries)).toEqual(strip(plain.entries));
    expect(unpacked.entries.every((e) => e.source === packed)).toBe(true);
    // Progress counts the bytes read from disk.
    expect(unpacked.summary.bytesRead).toBe((await Bun.file(packed).bytes()).length);
  });

  test("knows a compressed file by its first bytes, not its name: a gzip file named .ndjson is read, a text file named .gz is read as text", async () => {
    const text = '{"a":1}\n{"a":2}\n';
    const misnamed = await dir.file(Bun.gzipSync(Buffer.from(text)), "really-gzip.ndjson");
    const plain = await dir.file(text, "really-text.ndjson.gz");
    for (const path of [misnamed, plain]) {
      const { values, entries } = await readNdjson(path);
      expect({ values, entries }).toEqual({ values: [{ a: 1 }, { a: 2 }], entries: [] });
    }
  });

  test.each([
    ["xz", [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0x00, 0x04], "xz -dc"],
    ["bzip2", [...Buffer.from("BZh91AY&SY"), 0x12], "bzip2 -dc"],
    ["lz4", [0x04, 0x22, 0x4d, 0x18, 0x64, 0x40], "lz4 -dc"],
    ["zip", [0x50, 0x4b, 0x03, 0x04, 0x14, 0x00], "unzip -p"],
  ])("refuses a %s file by name, saying how to read it, instead of reading it as text", async (format, head, tool) => {
    const path = await dir.file(new Uint8Array([...head, ...Buffer.from("\n{}\n".repeat(100))]));
    await expect(readNdjson(path)).rejects.toThrow(
      `fromNdjson: ${path} is ${format}-compressed, which sluice does not read (it reads gzip and zstd): decompress it first, or read it through a named pipe (mkfifo p; ${tool} ${path} > p &, then read p)`,
    );
  });

  test.each([
    ["UTF-16", "utf16le", [0xff, 0xfe]],
    ["UTF-16", "utf16be", [0xfe, 0xff]],
    ["UTF-32", "utf32le", [0xff, 0xfe, 0x00, 0x00]],
  ] as const)("refuses %s text (%s; Windows PowerShell writes UTF-16) by its byte order mark, saying how to convert it", async (encoding, _order, bom) => {
    // Read as UTF-8, every line was a dead letter (NDJSON) or the header could not be read (CSV).
    const path = await dir.file(new Uint8Array([...bom, ...Buffer.from('{"a":1}\r\n'.repeat(3), "utf16le")]));
    const message = `${path} is ${encoding} text (its first bytes are a byte order mark), which sluice does not read (it reads UTF-8): convert it first (iconv -f ${encoding} -t UTF-8 ${path} > out), or read it through a named pipe (mkfifo p; iconv -f ${encoding} -t UTF-8 ${path} > p &, then read p)`;
    await expect(readNdjson(path)).rejects.toThrow(`fromNdjson: ${message}`);
    await expect(run(fromCsv(path), { handleSignals: false })).rejects.toThrow(`fromCsv: ${message}`);
    await expect(run(fromJson(path), { handleSignals: false })).rejects.toThrow(`fromJson: ${message}`);
  });

  test("text that begins like a compression's magic bytes is still text", async () => {
    const path = await dir.file('BZh\n{"a":1}\n');
    const { values, entries } = await readNdjson(path);
    expect(values).toEqual([{ a: 1 }]);
    expect(entries.map((e) => [e.line, e.raw])).toEqual([[1, "BZh"]]);
  });

  test("reads compressed CSV and JSON files too", async () => {
    const csv = await dir.file(Bun.gzipSync(Buffer.from("id,name\n1,a\n2,b\n")), "people.csv.gz");
    const json = await dir.file(Bun.zstdCompressSync(Buffer.from('{"value":[{"id":1},{"id":2}]}')), "people.json.zst");
    const Person = v.object({ id: v.number(), name: v.string() });
    const people: unknown[] = [];
    await run(fromCsv(csv, { schema: Person }), { handleSignals: false, onValue: (value) => people.push(value) });
    expect(people).toEqual([
      { id: 1, name: "a" },
      { id: 2, name: "b" },
    ]);
    const ids: unknown[] = [];
    await run(fromJson(json, { path: "value" }), { handleSignals: false, onValue: (value) => ids.push(value) });
    expect(ids).toEqual([{ id: 1 }, { id: 2 }]);
  });

  test.each(["gzip", "zstd"] as const)("a %s file cut short fails the run, naming the file and the format, after the records before the cut", async (format) => {
    const { text } = await clickstream(4000, 11);
    const whole = compressed(format, text);
    const cut = await dir.file(whole.subarray(0, Math.floor(whole.length * 0.6)), `cut.ndjson.${format}`);
    const values: unknown[] = [];
    const done = run(fromNdjson(cut).pipe(deadLetter(() => {})), { handleSignals: false, onValue: (v) => values.push(v) });
    await expect(done).rejects.toThrow(`fromNdjson: cannot decompress ${cut} (${format}): `);
    await expect(done).rejects.toThrow("the file is damaged or incomplete");
    expect(values.length).toBeGreaterThan(0);
    // It says where in the text the damage was met: past the lines read, before the end.
    const message = await done.then(
      () => "",
      (error: Error) => error.message,
    );
    const at = Number(/ after byte (\d+) of the decompressed text;/.exec(message)?.[1]);
    const read = Buffer.byteLength(text.split("\n").slice(0, values.length).join("\n"));
    expect(at).toBeGreaterThanOrEqual(read);
    expect(at).toBeLessThan(Buffer.byteLength(text));
  });

  test("decompresses as a stream: 256 MB of lines in a 1 MB gzip file are read in bounded memory", async () => {
    // 4,096 lines of 64 KiB: decompressed whole, they alone would take 256 MB.
    const line = `${JSON.stringify({ pad: "x".repeat(64 * 1024 - 12) })}\n`;
    const text = line.repeat(4096);
    const gz = await dir.file(Bun.gzipSync(Buffer.from(text)), "big.ndjson.gz");
    expect(Bun.file(gz).size).toBeLessThan(2 * 1024 * 1024);
    const child = Bun.spawn(["bun", FIXTURE, gz, dir.unique("dead-letter")], { stdout: "pipe", stderr: "pipe" });
    const [code, stdout] = await Promise.all([child.exited, new Response(child.stdout).text()]);
    expect(code).toBe(0);
    const result = JSON.parse(stdout) as RunSummary & { maxRssBytes: number };
    expect(result.in).toBe(4096);
    expect(result.maxRssBytes).toBeLessThan(256 * 1024 * 1024);
  }, 60_000);

  describe("under a checkpoint", () => {
    /** A run of the load that stops once `stopAfter` records have been read (none: runs to the end). */
    async function checkpointed(input: string, out: string, stopAfter?: number) {
      const controller = new AbortController();
      let read = 0;
      const entries: DeadLetter[] = [];
      const summary = await run(
        fromNdjson(input, { chunkBytes: 16 * 1024 }).pipe(
          tap(() => {
            if (++read === stopAfter) controller.abort();
          }),
          validate(ClickEvent),
          deadLetter(join(out, "dead-letter"), { mode: "overwrite" }),
          toParquet(join(out, "events"), { schema: ClickEvent, mode: "overwrite", maxFileRows: 700 }),
        ),
        { handleSignals: false, signal: controller.signal, checkpoint: join(out, "checkpoint.sqlite") },
      );
      return { summary, entries };
    }

    test("a stopped run resumes a compressed file where it stopped, every record once; a finished one is skipped", async () => {
      const { path, text } = await clickstream(12_000, 20);
      const gz = await dir.file(compressed("gzip", text, 3), "resumed.ndjson.gz");
      const reference = dir.unique("reference");
      const whole = await load(path, reference);
      const out = dir.unique("resumed");
      const first = await checkpointed(gz, out, 5000);
      expect(first.summary.stopped).toBe(true);
      expect(first.summary.in).toBeLessThan(12_000);
      const second = await checkpointed(gz, out);
      expect(second.summary.stopped).toBe(false);
      // It resumed: what the first run made durable is not read again.
      expect(first.summary.in + second.summary.in).toBe(12_000 + second.summary.skipped);
      expect(second.summary.in).toBeLessThan(12_000);
      expect(await differences(reference, join(out, "events"))).toEqual({ only_a: 0, only_b: 0, rows: whole.summary.written });
      const dead = await query(`SELECT count(*)::INTEGER AS n, count(DISTINCT line)::INTEGER AS d FROM read_json_auto('${out}/dead-letter/*.ndjson')`);
      expect(dead).toEqual([{ n: whole.entries.length, d: whole.entries.length }]);
      // Finished: a third run reads nothing from it.
      const third = await checkpointed(gz, out);
      expect(third.summary.in).toBe(0);
      expect(third.summary.bytesRead).toBe(0);
    }, 60_000);

    test.each([
      ["CSV", "gzip"],
      ["JSON", "zstd"],
    ] as const)("a stopped run resumes a compressed %s file (%s) too, every record once", async (kind, format) => {
      const Row = v.object({ id: v.number(), name: v.string() });
      const rows = Array.from({ length: 6000 }, (_, i) => ({ id: i, name: `n${i}` }));
      const text = kind === "CSV" ? `id,name\n${rows.map((r) => `${r.id},${r.name}`).join("\n")}\n` : JSON.stringify({ value: rows }, null, 1);
      const path = await dir.file(compressors[format](Buffer.from(text)), `rows.${kind.toLowerCase()}.${format}`);
      const out = dir.unique(`resumed-${kind}`);
      const once = async (stopAfter?: number) => {
        const controller = new AbortController();
        let read = 0;
        const source = kind === "CSV" ? fromCsv(path, { schema: Row, chunkBytes: 4096 }) : fromJson(path, { path: "value", chunkBytes: 4096 });
        return run(
          source.pipe(
            tap(() => {
              if (++read === stopAfter) controller.abort();
            }),
            validate(Row),
            deadLetter(join(out, "dead-letter")),
            toParquet(join(out, "rows"), { schema: Row, maxFileRows: 500 }),
          ),
          { handleSignals: false, signal: controller.signal, checkpoint: join(out, "checkpoint.sqlite") },
        );
      };
      const first = await once(2500);
      expect(first.stopped).toBe(true);
      const second = await once();
      expect(second.in).toBeLessThan(6000);
      expect(first.written + second.written).toBe(6000);
      const [counts] = await query(`SELECT count(*)::INTEGER AS n, count(DISTINCT id)::INTEGER AS d, max(id)::INTEGER AS top FROM ${table(join(out, "rows"))}`);
      expect(counts).toEqual({ n: 6000, d: 6000, top: 5999 });
      expect((await once()).in).toBe(0);
    });

    test.each([100, 5000])("a compressed file replaced by a shorter one (%p lines) since the last run fails the run with advice", async (kept) => {
      const { text } = await clickstream(8000, 21);
      const name = `replaced-${kept}.ndjson.zst`;
      const gz = await dir.file(compressed("zstd", text), name);
      const out = dir.unique("replaced");
      // Stopped after 6,000 records: the resume point is past line 5,000.
      expect((await checkpointed(gz, out, 6000)).summary.stopped).toBe(true);
      await rm(gz);
      await dir.file(compressed("zstd", lines(text).slice(0, kept).join("\n")), name);
      await expect(checkpointed(gz, out)).rejects.toThrow(
        new RegExp(`^fromNdjson: ${gz.replaceAll(/[.*+?^${}()|[\]\\/]/g, "\\$&")} decompresses to \\d+ bytes but an earlier run already read \\d+ bytes of it; it was replaced or truncated\\. Remove the checkpoint file to read everything again\\.$`),
      );
    });
  });
});
