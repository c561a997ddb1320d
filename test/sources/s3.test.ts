/**
 * File sources over objects in a bucket (s3rver): the same records, dead letters and Parquet as
 * over local copies of the same files; resume after a kill; bounded memory on a large object;
 * errors that name the bucket and key and never the secret.
 */
import { Database } from "bun:sqlite";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { gzipSync } from "node:zlib";
import { map } from "rxjs";
import * as v from "valibot";
import { ClickEvent, EnrichedEvent, enrichEvent } from "../../examples/clickstream.ts";
import { deadLetter, enrich, validate } from "../../operators/index.ts";
import { openCheckpoint } from "../../src/checkpoint/checkpoint.ts";
import type { DeadLetter } from "../../src/deadletter/entry.ts";
import { writeClickstream } from "../../src/generate/clickstream.ts";
import { putObject, uploadFile } from "../../src/io/s3.ts";
import { run, type RunSummary } from "../../src/run/run.ts";
import { toParquet } from "../../src/sinks/toParquet.ts";
import { fromCsv } from "../../src/sources/csv.ts";
import { fromJson } from "../../src/sources/json.ts";
import { fromNdjson } from "../../src/sources/ndjson.ts";
import { dataset, query, tempDir } from "../helpers/duckdb.ts";
import { type S3rverHandle, startS3rver } from "../helpers/s3rver.ts";

const BUCKET = "src-test";
let server: S3rverHandle;
let dir: Awaited<ReturnType<typeof tempDir>>;
/** Small ranges, so records and chunks straddle range boundaries everywhere. */
let s3: { endpoint: string; accessKeyId: string; secretAccessKey: string; rangeBytes: number };

/** Writes `content` under `local/<name>` and uploads it to `s3://src-test/<name>`. */
async function both(name: string, content: string | Uint8Array): Promise<void> {
  const path = join(dir.path, "local", name);
  mkdirSync(join(path, ".."), { recursive: true });
  writeFileSync(path, content);
  await uploadFile(path, `s3://${BUCKET}/${name}`, s3);
}

beforeAll(async () => {
  server = await startS3rver([BUCKET]);
  dir = await tempDir("sluice-s3-src-");
  s3 = { endpoint: server.endpoint, accessKeyId: "S3RVER", secretAccessKey: "S3RVER", rangeBytes: 64 * 1024 };
}, 30_000);

afterAll(async () => {
  await server?.stop();
  await dir?.remove();
});

/** The dead letters of a run, with their input named relative to a local folder or a bucket prefix. */
function brief(entries: readonly DeadLetter[], base: string) {
  return entries.map((e) => ({ source: e.source.startsWith("s3://") ? e.source.slice(base.length) : relative(base, e.source), line: e.line, offset: e.offset, raw: e.raw, error: e.error }));
}

const Txn = v.object({
  id: v.number(),
  account: v.pipe(v.string(), v.minLength(1)),
  amount: v.number(),
  big: v.nullable(v.bigint()),
  memo: v.nullable(v.string()),
});

/** CSV text with quoted delimiters, line breaks inside quotes, unicode, nulls, huge integers, and a few bad rows. */
function csvFile(seed: number, rows: number): string {
  const lines = ["id,account,amount,big,memo"];
  for (let i = 0; i < rows; i++) {
    const id = seed * 100_000 + i;
    if (i % 997 === 5) lines.push(`${id},acct-${i},not-a-number,1,bad`);
    else if (i % 1201 === 7) lines.push(`${id},"unterminated`);
    else lines.push(`${id},acct-${i % 37},${(i * 3.25).toFixed(2)},${i % 5 === 0 ? "" : `${BigInt(i) * 1_000_000_000_000n}`},${i % 7 === 0 ? "" : `"memo, ${"ü€".repeat(i % 4)}\n""line"" ${i}"`}`);
  }
  return `${lines.join("\r\n")}\r\n`;
}

async function pipelineSummary(source: ReturnType<typeof fromCsv>, out: string, schema: v.GenericSchema, partitionBy: string[] = []) {
  const entries: DeadLetter[] = [];
  const summary = await run(
    source.pipe(
      validate(schema as typeof Txn),
      deadLetter((e) => entries.push(e)),
      toParquet(out, { schema: schema as typeof Txn, mode: "overwrite", maxFileRows: 700, ...(partitionBy.length ? { partitionBy: partitionBy as ["id"] } : {}) }),
    ),
    { handleSignals: false },
  );
  return { summary, entries };
}

describe("reading objects in a bucket", () => {
  test("a CSV glob over a bucket gives the same Parquet and the same dead letters as the local copies, naming s3://bucket/key", async () => {
    for (let f = 0; f < 3; f++) await both(`csv/in/part-${f}.csv`, csvFile(f, 2500));
    // Outside the glob: a deeper key and another extension.
    await both("csv/in/deeper/x.csv", csvFile(9, 10));
    await both("csv/in/notes.txt", "not csv");
    const local = await pipelineSummary(fromCsv(join(dir.path, "local/csv/in/*.csv"), { schema: Txn }), join(dir.path, "out/csv-local"), Txn);
    // s3rver checks the key id only: a secret of our choosing, to look for in the output afterwards.
    const secret = "never-in-output-7f3a9c";
    const remote = await pipelineSummary(fromCsv(`s3://${BUCKET}/csv/in/*.csv`, { schema: Txn, s3: { ...s3, secretAccessKey: secret } }), join(dir.path, "out/csv-s3"), Txn);
    expect(remote.summary.in).toBe(7500);
    expect(remote.summary.written).toBeGreaterThan(7000);
    expect({ ...remote.summary, durationMs: 0, runId: "" }).toMatchObject({ in: local.summary.in, written: local.summary.written, deadLettered: local.summary.deadLettered });
    const sql = (out: string) => `SELECT id, account, amount, big::VARCHAR AS big, memo FROM ${dataset(join(dir.path, out))} ORDER BY id`;
    const [a, b] = [await query(sql("out/csv-local")), await query(sql("out/csv-s3"))];
    expect(b.length).toBe(remote.summary.written);
    expect(b).toEqual(a);
    expect(b.find((r) => r.id === 3)).toEqual({ id: 3, account: "acct-3", amount: 9.75, big: "3000000000000", memo: 'memo, ü€ü€ü€\n"line" 3' });
    expect(brief(remote.entries, `s3://${BUCKET}/`)).toEqual(brief(local.entries, join(dir.path, "local")));
    expect(remote.entries.map((e) => e.source)).toContain(`s3://${BUCKET}/csv/in/part-1.csv`);
    // Neither the Parquet files (their metadata names the inputs) nor the dead letters hold the secret.
    let naming = 0;
    for (const name of readdirSync(join(dir.path, "out/csv-s3"), { recursive: true }) as string[]) {
      const path = join(dir.path, "out/csv-s3", name);
      if (!statSync(path).isFile()) continue;
      const bytes = Buffer.from(await Bun.file(path).bytes());
      expect(bytes.includes(secret)).toBe(false);
      if (bytes.includes(`s3://${BUCKET}/csv/in/`)) naming++;
    }
    expect(naming).toBeGreaterThan(0);
    expect(JSON.stringify(remote.entries)).not.toContain(secret);
  }, 60_000);

  test("an NDJSON glob (and its gzip-compressed copy) gives the same partitioned Parquet as the local copies", async () => {
    for (let f = 0; f < 2; f++) {
      const path = join(dir.path, `gen-${f}.ndjson`);
      await writeClickstream(path, { count: 1200, seed: 40 + f });
      const bytes = await Bun.file(path).bytes();
      await both(`nd/in/day-${f}.ndjson`, bytes);
      await putObject(`s3://${BUCKET}/nd/gz/day-${f}.ndjson.gz`, gzipSync(bytes), s3);
    }
    const read = async (input: string, out: string, options: object) => {
      const entries: DeadLetter[] = [];
      const summary = await run(
        fromNdjson(input, { chunkBytes: 8192, ...options }).pipe(
          validate(ClickEvent),
          enrich(enrichEvent),
          deadLetter((e) => entries.push(e)),
          toParquet(join(dir.path, out), { schema: EnrichedEvent, partitionBy: ["event_date"], mode: "overwrite" }),
        ),
        { handleSignals: false },
      );
      return { summary, entries };
    };
    const local = await read(join(dir.path, "local/nd/in/*.ndjson"), "out/nd-local", {});
    const remote = await read(`s3://${BUCKET}/nd/in/*.ndjson`, "out/nd-s3", { s3, concurrency: 2 });
    const gz = await read(`s3://${BUCKET}/nd/gz/*.ndjson.gz`, "out/nd-gz", { s3 });
    const sql = (out: string) => `SELECT * EXCLUDE (event_date), event_date::VARCHAR AS d FROM ${dataset(join(dir.path, out))} ORDER BY event_id`;
    const expected = await query(sql("out/nd-local"));
    expect(expected.length).toBe(local.summary.written);
    expect(expected.length).toBeGreaterThan(2000);
    expect(await query(sql("out/nd-s3"))).toEqual(expected);
    expect(await query(sql("out/nd-gz"))).toEqual(expected);
    expect(brief(remote.entries, `s3://${BUCKET}/`).sort((x, y) => `${x.source}${x.line}`.localeCompare(`${y.source}${y.line}`))).toEqual(
      brief(local.entries, join(dir.path, "local")).sort((x, y) => `${x.source}${x.line}`.localeCompare(`${y.source}${y.line}`)),
    );
    expect(gz.entries.length).toBe(local.entries.length);
    expect(gz.entries[0]?.source).toMatch(/^s3:\/\/src-test\/nd\/gz\/day-\d\.ndjson\.gz$/);
  }, 60_000);

  test("a JSON document holding an array, streamed from a bucket, gives the records of the local copy", async () => {
    const items = Array.from({ length: 4000 }, (_, i) => ({ id: i, account: `a${i % 13}`, amount: i / 4, big: null, memo: i % 3 ? `𝄞 ${i}` : null }));
    await both("json/export.json", JSON.stringify({ "@odata.context": "x", value: items, next: null }));
    const collect = async (input: string, options: object) => {
      const values: unknown[] = [];
      await run(fromJson(input, { path: "value", ...options }), { handleSignals: false, onValue: (value) => values.push(value) });
      return values;
    };
    const remote = await collect(`s3://${BUCKET}/json/export.json`, { s3 });
    expect(remote).toEqual(await collect(join(dir.path, "local/json/export.json"), {}));
    expect(remote).toEqual(items);
  }, 60_000);

  test("edge objects (empty, a byte order mark only, no final newline, an odd key) and a list mixing local paths and URLs read as their local copies", async () => {
    const cases: [string, string][] = [
      ["edge/empty.ndjson", ""],
      ["edge/bom.ndjson", "\uFEFF"],
      ["edge/no-newline.ndjson", '{"id":1,"text":"a"}\n{"id":2,"text":"ü"}'],
      ["edge/odd key with spaces, ü & #.ndjson", '{"id":3,"text":"odd"}\n{"id":'],
      // Glob characters in a name that matches no other: the object itself, as on disk.
      ["edge/{x}.ndjson", '{"id":4,"text":"braces"}\n'],
      ["edge/export[1].ndjson", '{"id":5,"text":"brackets"}\n'],
    ];
    for (const [name, content] of cases) await both(name, content);
    const read = async (inputs: string[], options: object) => {
      const values: unknown[] = [];
      const entries: DeadLetter[] = [];
      const summary = await run(fromNdjson(inputs, options).pipe(deadLetter((e) => entries.push(e))), { handleSignals: false, onValue: (value) => values.push(value) });
      return { values, entries: entries.map((e) => [e.source.slice(e.source.lastIndexOf("/") + 1), e.line, e.raw]), in: summary.in };
    };
    const names = cases.map(([name]) => name);
    const local = await read(
      names.map((n) => join(dir.path, "local", n)),
      {},
    );
    // Half from the bucket, half from disk, in one list.
    const mixed = await read(
      names.map((n, i) => (i % 2 ? `s3://${BUCKET}/${n}` : join(dir.path, "local", n))),
      { s3 },
    );
    expect(local.values).toEqual([
      { id: 1, text: "a" },
      { id: 2, text: "ü" },
      { id: 3, text: "odd" },
      { id: 4, text: "braces" },
      { id: 5, text: "brackets" },
    ]);
    expect(mixed).toEqual(local);
    expect(local.entries).toEqual([["odd key with spaces, ü & #.ndjson", 2, '{"id":']]);
  }, 60_000);

  test("a missing key, a missing bucket, an empty glob and wrong credentials fail the run naming bucket and key, never the secret", async () => {
    const secret = "s3cr3t/Value+With=Signs";
    const attempt = async (input: string, options: object) => {
      try {
        await run(fromCsv(input, { s3: { ...s3, ...options } }), { handleSignals: false });
      } catch (error) {
        return (error as Error).message;
      }
      throw new Error("the run did not fail");
    };
    expect(await attempt(`s3://${BUCKET}/csv/in/missing.csv`, {})).toBe(`fromCsv: s3://${BUCKET}/csv/in/missing.csv: cannot read: no object with key "csv/in/missing.csv" in bucket ${BUCKET}`);
    expect(await attempt("s3://no-such-bucket/in/a.csv", {})).toBe(`fromCsv: s3://no-such-bucket/in/a.csv: cannot read: bucket no-such-bucket does not exist at ${server.endpoint}`);
    expect(await attempt("s3://no-such-bucket/in/*.csv", {})).toStartWith("fromCsv: s3://no-such-bucket/in/: cannot list: bucket no-such-bucket does not exist");
    expect(await attempt(`s3://${BUCKET}/csv/in/*.tsv`, {})).toBe(`fromCsv: no object matches s3://${BUCKET}/csv/in/*.tsv`);
    const refused = await attempt(`s3://${BUCKET}/csv/in/part-0.csv`, { accessKeyId: "NOTAKEY", secretAccessKey: secret });
    expect(refused).toStartWith(`fromCsv: s3://${BUCKET}/csv/in/part-0.csv: cannot read: access refused (InvalidAccessKeyId)`);
    expect(refused).not.toContain(secret);
    expect(refused).not.toContain(encodeURIComponent(secret));
  }, 60_000);
});

describe("resuming objects under a checkpoint", () => {
  const total = 8_000;
  let size = 0;

  beforeAll(async () => {
    const lines = Array.from({ length: total }, (_, i) => JSON.stringify({ id: i, text: `row ${i} ${"x".repeat(i % 50)}` }));
    const text = `${lines.join("\n")}\n`;
    size = Buffer.byteLength(text);
    await putObject(`s3://${BUCKET}/resume/big.ndjson`, text, s3);
  });

  /**
   * A job in a subprocess: reads the object into Parquet under a checkpoint, slowly from record
   * `slowFrom` on (10 ms a record): files still commit (by age, every second) and the checkpoint is
   * saved after each, while most of the object is still unread.
   */
  function job(out: string, slowFrom: number) {
    const script = join(dir.path, "resume-job.ts");
    const root = join(import.meta.dir, "../..");
    writeFileSync(
      script,
      `import { concatMap } from "rxjs";
import * as v from "valibot";
import { fromNdjson, run, toParquet } from ${JSON.stringify(join(root, "src/index.ts"))};
import { validate } from ${JSON.stringify(join(root, "operators/index.ts"))};
const [url, out, slowFrom] = Bun.argv.slice(2);
const Row = v.object({ id: v.number(), text: v.string() });
const summary = await run(
  fromNdjson(url, { chunkBytes: 16 * 1024, s3: { rangeBytes: 64 * 1024 } }).pipe(
    validate(Row),
    concatMap(async (row) => {
      if (row.id >= Number(slowFrom)) await Bun.sleep(10);
      return row;
    }),
    toParquet(out + "/data", { schema: Row, maxFileRows: 500, maxFileAgeMs: 1000, mode: "overwrite" }),
  ),
  { checkpoint: out + "/checkpoint.sqlite" },
);
console.log(JSON.stringify(summary));
`,
    );
    return Bun.spawn(["bun", script, `s3://${BUCKET}/resume/big.ndjson`, out, String(slowFrom)], { stdout: "pipe", stderr: "pipe", env: { ...process.env, ...server.env } });
  }

  test("a run killed (SIGKILL) mid-object resumes with a ranged read from its byte offset and duplicates nothing", async () => {
    const out = join(dir.path, "resume-out");
    const first = job(out, 2_000);
    // Waits until the checkpoint holds a resume point inside the object, then kills.
    const checkpoint = join(out, "checkpoint.sqlite");
    let resumedAt = null as { line: number; byte_offset: number } | null;
    const deadline = Date.now() + 50_000;
    while (!resumedAt && Date.now() < deadline && first.exitCode === null) {
      await Bun.sleep(50);
      if (!(await Bun.file(checkpoint).exists())) continue;
      try {
        // Not read-only: a read-only connection cannot read a WAL database another process writes.
        const db = new Database(checkpoint);
        resumedAt = db.query("SELECT line, byte_offset FROM inputs WHERE source = ? AND byte_offset > 0").get(`s3://${BUCKET}/resume/big.ndjson`) as typeof resumedAt;
        db.close();
      } catch {
        // Not created yet, or being written: look again.
      }
    }
    first.kill("SIGKILL");
    await first.exited;
    expect(first.signalCode).toBe("SIGKILL");
    expect(resumedAt?.byte_offset).toBeGreaterThan(0);

    const second = job(out, total);
    const [code, stdout, stderr] = await Promise.all([second.exited, new Response(second.stdout).text(), new Response(second.stderr).text()]);
    expect({ code, stderr: code === 0 ? "" : stderr }).toEqual({ code: 0, stderr: "" });
    const summary = JSON.parse(stdout.trim().split("\n").pop() as string) as RunSummary;
    // The second run read only the rest of the object (from a resume point at or after the one seen).
    expect(summary.in).toBeLessThanOrEqual(total - (resumedAt?.line ?? 0));
    expect(summary.in).toBeLessThan(total);
    // ...by a ranged read from the byte offset: the bytes before it were not fetched again.
    expect(summary.bytesRead).toBeLessThanOrEqual(size - (resumedAt?.byte_offset ?? 0));
    const [counts] = await query(`SELECT count(*)::INTEGER AS n, count(DISTINCT id)::INTEGER AS d, min(id) AS lo, max(id) AS hi FROM ${dataset(join(out, "data"))}`);
    expect(counts).toEqual({ n: total, d: total, lo: 0, hi: total - 1 });
  }, 120_000);

  test("an object replaced (another ETag) or cut shorter since the checkpoint was saved is refused, as a local file that shrank", async () => {
    const url = `s3://${BUCKET}/resume/replaced.ndjson`;
    const original = `${Array.from({ length: 100 }, (_, i) => JSON.stringify({ id: i, text: "a" })).join("\n")}\n`;
    await putObject(url, original, s3);
    const path = join(dir.path, "replaced", "checkpoint.sqlite");
    const { statObject } = await import("../../src/io/s3.ts");
    const earlier = openCheckpoint(path, "earlier");
    earlier.startOf(url, original.length, (await statObject(url, s3)).etag);
    earlier.mark(url, 50, original.indexOf(`{"id":50`));
    await earlier.save();
    earlier.close();
    const attempt = async () => {
      try {
        await run(fromNdjson(url, { s3 }), { handleSignals: false, checkpoint: path });
        return "ran";
      } catch (error) {
        return (error as Error).message;
      }
    };
    // Same size, other bytes: only the ETag tells.
    await putObject(url, original.replaceAll('"a"', '"b"'), s3);
    expect(await attempt()).toMatch(new RegExp(`input ${url.replaceAll("/", "\\/").replaceAll(".", "\\.")} was replaced \\(ETag "[0-9a-f]+" when an earlier run read \\d+ bytes of it, "[0-9a-f]+" now\\)`));
    await putObject(url, original.slice(0, 100), s3);
    expect(await attempt()).toContain(`input ${url} is 100 bytes but an earlier run already read`);
    // A compressed object too (offsets count decompressed bytes; the ETag still tells).
    const gz = `s3://${BUCKET}/resume/replaced.ndjson.gz`;
    await putObject(gz, gzipSync(original), s3);
    const gzPath = join(dir.path, "replaced-gz", "checkpoint.sqlite");
    const before = openCheckpoint(gzPath, "earlier");
    before.startOf(gz, Number.MAX_SAFE_INTEGER, (await statObject(gz, s3)).etag);
    before.mark(gz, 50, original.indexOf(`{"id":50`));
    await before.save();
    before.close();
    await putObject(gz, gzipSync(original.replaceAll('"a"', '"b"')), s3);
    const replacedGz = await run(fromNdjson(gz, { s3 }), { handleSignals: false, checkpoint: gzPath }).then(
      () => "ran",
      (error: Error) => error.message,
    );
    expect(replacedGz).toContain(`input ${gz} was replaced (ETag`);
  }, 60_000);
});

describe("memory", () => {
  test("a 50 MB object is read with a range or two in memory, not whole", async () => {
    const line = `${JSON.stringify({ id: 0, text: "y".repeat(180) })}\n`;
    const local = join(dir.path, "fifty.ndjson");
    const count = Math.ceil((50 * 1024 * 1024) / line.length);
    await Bun.write(local, line.repeat(count));
    await uploadFile(local, `s3://${BUCKET}/big/fifty.ndjson`, s3);
    const root = join(import.meta.dir, "../..");
    const script = join(dir.path, "rss-job.ts");
    writeFileSync(
      script,
      `import { filter } from "rxjs";
import { fromNdjson, run } from ${JSON.stringify(join(root, "src/index.ts"))};
const summary = await run(fromNdjson(Bun.argv[2], { s3: { rangeBytes: 1024 * 1024 } }).pipe(filter(() => false)));
// Peak RSS of this process (VmHWM): resourceUsage().maxRSS carries the parent's peak over across exec.
const hwm = /VmHWM:\\s+(\\d+) kB/.exec(await Bun.file("/proc/self/status").text())?.[1];
console.log(JSON.stringify({ in: summary.in, maxRssKiB: Number(hwm) }));
`,
    );
    const measure = async (input: string) => {
      const child = Bun.spawn(["bun", script, input], { stdout: "pipe", stderr: "pipe", env: { ...process.env, ...server.env } });
      const [code, stdout, stderr] = await Promise.all([child.exited, new Response(child.stdout).text(), new Response(child.stderr).text()]);
      if (code !== 0) throw new Error(stderr);
      return JSON.parse(stdout.trim().split("\n").pop() as string) as { in: number; maxRssKiB: number };
    };
    const remote = await measure(`s3://${BUCKET}/big/fifty.ndjson`);
    const plain = await measure(local);
    expect(remote.in).toBe(count);
    expect(plain.in).toBe(count);
    console.log(`peak RSS reading 50 MiB: from s3 ${Math.round(remote.maxRssKiB / 1024)} MiB, local file ${Math.round(plain.maxRssKiB / 1024)} MiB`);
    // A sanity bound only: measured here, 1 MiB ranges gave -4 to +21 MiB over the local read, and
    // one range holding the whole object (rangeBytes 64 MiB) +79 MiB.
    expect(remote.maxRssKiB - plain.maxRssKiB).toBeLessThan(40 * 1024);
  }, 120_000);
});

describe("dead letters to a bucket", () => {
  /** The dead-letter objects under a prefix and their entries, as a reader sees them. */
  async function lettersIn(url: string) {
    const { getObject, listKeys } = await import("../../src/io/s3.ts");
    const names: string[] = [];
    const entries: DeadLetter[] = [];
    for await (const object of listKeys(url)) {
      names.push(object.key);
      const text = new TextDecoder().decode(await getObject(object.url));
      for (const line of text.split("\n")) if (line) entries.push(JSON.parse(line) as DeadLetter);
    }
    return { names, entries };
  }

  test("deadLetter('s3://…') uploads each committed file whole; the entries equal a local folder's; overwrite replaces, error refuses", async () => {
    Object.assign(process.env, server.env);
    const input = join(dir.path, "letters.ndjson");
    await Bun.write(input, Array.from({ length: 3000 }, (_, i) => (i % 3 === 0 ? `{"bad": ${i}` : `{"id":${i}}`)).join("\n"));
    const url = `s3://${BUCKET}/letters/dl`;
    // Small files, so there are several commits (and uploads).
    const summary = await run(fromNdjson(input).pipe(deadLetter(url, { fileBytes: 16 * 1024 })), { handleSignals: false });
    await run(fromNdjson(input).pipe(deadLetter(join(dir.path, "letters-local"), { fileBytes: 16 * 1024 })), { handleSignals: false });
    const remote = await lettersIn(`${url}/`);
    expect(summary.deadLettered).toBe(1000);
    expect(remote.names.length).toBeGreaterThan(3);
    expect(remote.names.every((n) => /^letters\/dl\/dead-letter-.+-\d{5}\.ndjson$/.test(n))).toBe(true);
    const local: DeadLetter[] = [];
    const { readDeadLetters } = await import("../../src/deadletter/read.ts");
    for await (const entry of readDeadLetters(join(dir.path, "letters-local"))) local.push(entry);
    const strip = (e: DeadLetter) => ({ ...e, runId: "", at: "" });
    expect(remote.entries.map(strip)).toEqual(local.map(strip));
    // No local folder or temporary file named after the URL was left behind.
    expect(await Bun.file("s3:").exists()).toBe(false);

    const again = await run(fromNdjson(input).pipe(deadLetter(url, { mode: "overwrite", fileBytes: 1024 * 1024 })), { handleSignals: false });
    const replaced = await lettersIn(`${url}/`);
    expect(replaced.names).toEqual([`letters/dl/dead-letter-${again.runId}-00000.ndjson`]);
    expect(replaced.entries.length).toBe(1000);
    await expect(run(fromNdjson(input).pipe(deadLetter(url, { mode: "error" })), { handleSignals: false })).rejects.toThrow(`dead-letter folder ${url} already holds 1 file(s)`);
  }, 60_000);

  test("a run resumed under a checkpoint does not write again the dead letters a failed run uploaded, as with a local folder", async () => {
    Object.assign(process.env, server.env);
    const input = join(dir.path, "resume-letters.ndjson");
    await Bun.write(input, `${Array.from({ length: 3000 }, (_, i) => (i % 3 === 0 ? `{"bad": ${i}` : `{"id":${i}}`)).join("\n")}\n`);
    const Row = v.object({ id: v.number() });
    // The first run fails at its last record: its dead letters are committed (small files), its rows
    // are not, so the checkpoint's resume point stays at the start and the next run reads them again.
    const job = (letters: string, out: string, failAt?: number) =>
      fromNdjson(input).pipe(
        map((r: unknown) => {
          if ((r as { id?: unknown }).id === failAt) throw new Error("the job failed");
          return r as { id: number };
        }),
        deadLetter(letters, { fileBytes: 4 * 1024 }),
        toParquet(out, { schema: Row, maxFileAgeMs: 600_000 }),
      );
    const count = async (letters: string) => {
      if (letters.startsWith("s3://")) return (await lettersIn(`${letters}/`)).entries;
      const local: DeadLetter[] = [];
      const { readDeadLetters } = await import("../../src/deadletter/read.ts");
      for await (const entry of readDeadLetters(letters)) local.push(entry);
      return local;
    };
    for (const letters of [join(dir.path, "resume-local"), `s3://${BUCKET}/resume/dl`]) {
      const out = join(dir.path, `resume-out-${letters.startsWith("s3://") ? "bucket" : "local"}`);
      const checkpoint = `${out}.sqlite`;
      await expect(run(job(letters, out, 2999), { handleSignals: false, checkpoint })).rejects.toThrow("the job failed");
      expect((await count(letters)).length).toBeGreaterThan(100);
      const resumed = await run(job(letters, out), { handleSignals: false, checkpoint });
      const entries = await count(letters);
      expect({ letters, entries: entries.length, lines: new Set(entries.map((e) => e.line)).size }).toEqual({ letters, entries: 1000, lines: 1000 });
      expect(resumed.written).toBe(2000);
      expect(resumed.in).toBe(resumed.written + resumed.deadLettered + resumed.skipped);
      expect((await query(`SELECT count(*) AS n, count(DISTINCT id) AS d FROM read_parquet('${out}/**/*.parquet')`))[0]).toEqual({ n: "2000", d: "2000" });
    }
  }, 60_000);
});
