import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  deleteKey,
  deleteManifestEntry,
  downloadParquetFooter,
  getObject,
  listKeys,
  type ManifestEntry,
  openObject,
  parseS3Url,
  putObject,
  readManifest,
  resolveObjects,
  resolveS3Options,
  statObject,
  uploadFile,
  writeManifestEntry,
} from "../../src/io/s3.ts";
import { tempDir } from "../helpers/duckdb.ts";
import { type S3rverHandle, startS3rver } from "../helpers/s3rver.ts";

let server: S3rverHandle;
let dir: Awaited<ReturnType<typeof tempDir>>;
/** Options pointing at the test server, as a pipeline passes them. */
let s3: { endpoint: string; accessKeyId: string; secretAccessKey: string };

beforeAll(async () => {
  server = await startS3rver(["io-test", "empty-bucket"]);
  dir = await tempDir("sluice-s3-io-");
  s3 = { endpoint: server.endpoint, accessKeyId: "S3RVER", secretAccessKey: "S3RVER" };
}, 30_000);

afterAll(async () => {
  await server?.stop();
  await dir?.remove();
});

describe("s3:// URLs", () => {
  test.each([
    ["s3://data/in/a.csv", { bucket: "data", key: "in/a.csv" }],
    ["s3://data", { bucket: "data", key: "" }],
    ["s3://data/", { bucket: "data", key: "" }],
    ["s3://my.bucket-1/a b/é/ü.ndjson", { bucket: "my.bucket-1", key: "a b/é/ü.ndjson" }],
    ["S3://data/x", { bucket: "data", key: "x" }],
  ])("parses %s", (url, expected) => {
    expect(parseS3Url(url)).toEqual(expected);
  });

  test.each([
    ["s3://", "is not a bucket name"],
    ["s3://ab/x", "is not a bucket name"],
    ["s3://Data/x", "is not a bucket name"],
    ["s3://data_1/x", "is not a bucket name"],
    [`s3://${"a".repeat(64)}/x`, "is not a bucket name"],
    ["s3://data/a\u0000b", "NUL"],
    ["https://data/x", "is not an s3:// URL"],
  ])("refuses %s, naming it", (url, reason) => {
    expect(() => parseS3Url(url)).toThrow(reason);
    expect(() => parseS3Url(url)).toThrow(url.slice(0, 5));
  });

  test("options come from the standard variables unless given, with AWS_ENDPOINT_URL as a fallback", () => {
    const env = { AWS_ENDPOINT_URL: "http://minio:9000", AWS_ACCESS_KEY_ID: "id", AWS_SECRET_ACCESS_KEY: "secret", AWS_SESSION_TOKEN: "tok" };
    expect(resolveS3Options({}, env)).toMatchObject({ endpoint: "http://minio:9000", accessKeyId: "id", secretAccessKey: "secret", sessionToken: "tok", region: "us-east-1" });
    expect(resolveS3Options({ endpoint: "http://other", region: "eu-west-1" }, { ...env, S3_ENDPOINT: "http://s3e" })).toMatchObject({
      endpoint: "http://other",
      region: "eu-west-1",
    });
    expect(resolveS3Options({}, { ...env, S3_ENDPOINT: "http://s3e" }).endpoint).toBe("http://s3e");
  });
});

describe("listing and globs", () => {
  const keys = ["in/a.csv", "in/b.csv", "in/c d.csv", "in/sub/d.csv", "in/sub/deep/e.csv", "in/x.ndjson", "in/ü.csv", "other/f.csv"];

  beforeAll(async () => {
    for (const key of keys) await putObject(`s3://io-test/${key}`, `${key}\n`, s3);
  });

  test("lists every key under a prefix across pages, in key order", async () => {
    const seen: string[] = [];
    for await (const object of listKeys("s3://io-test/in/", { ...s3, pageSize: 2 })) {
      seen.push(object.key);
      expect(object.size).toBe(Buffer.byteLength(`${object.key}\n`));
      expect(object.etag).toMatch(/^"[0-9a-f]{32}"$/);
    }
    expect(seen).toEqual(keys.filter((k) => k.startsWith("in/")));
  });

  test("a glob matches within one folder with * and across folders with **, sorted", async () => {
    const names = async (url: string) => (await resolveObjects(url, "test", s3)).map((o) => o.url);
    expect(await names("s3://io-test/in/*.csv")).toEqual(["s3://io-test/in/a.csv", "s3://io-test/in/b.csv", "s3://io-test/in/c d.csv", "s3://io-test/in/ü.csv"]);
    expect(await names("s3://io-test/in/**/*.csv")).toEqual([
      "s3://io-test/in/a.csv",
      "s3://io-test/in/b.csv",
      "s3://io-test/in/c d.csv",
      "s3://io-test/in/sub/d.csv",
      "s3://io-test/in/sub/deep/e.csv",
      "s3://io-test/in/ü.csv",
    ]);
    expect(await names("s3://io-test/in/{a,x}.*")).toEqual(["s3://io-test/in/a.csv", "s3://io-test/in/x.ndjson"]);
    expect(await names("s3://io-test/in/c d.csv")).toEqual(["s3://io-test/in/c d.csv"]);
  });

  test("a glob matching nothing, a missing key and a prefix are refused by name", async () => {
    await expect(resolveObjects("s3://io-test/in/*.parquet", "fromCsv", s3)).rejects.toThrow("fromCsv: no object matches s3://io-test/in/*.parquet");
    await expect(resolveObjects("s3://io-test/in/missing.csv", "fromCsv", s3)).rejects.toThrow(
      's3://io-test/in/missing.csv: cannot read: no object with key "in/missing.csv" in bucket io-test',
    );
    await expect(resolveObjects("s3://io-test/in/sub", "fromCsv", s3)).rejects.toThrow("s3://io-test/in/sub is a prefix");
    await expect(resolveObjects("s3://io-test/in/", "fromCsv", s3)).rejects.toThrow("is a prefix");
  });
});

describe("ranged reads", () => {
  test("reads any span of an object, across range boundaries, holding a range at a time", async () => {
    const bytes = new Uint8Array(300_000);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7919) % 256;
    await putObject("s3://io-test/ranges.bin", bytes, s3);
    const object = await openObject("s3://io-test/ranges.bin", { ...s3, rangeBytes: 64 * 1024 });
    expect(object.size).toBe(bytes.length);
    // Sequential reads in odd sizes give back the object byte for byte.
    const copy = new Uint8Array(bytes.length);
    let position = 0;
    for (;;) {
      const n = await object.readAt(copy, position, 10_007, position);
      if (n === 0) break;
      position += n;
    }
    expect(position).toBe(bytes.length);
    expect(Buffer.compare(copy, bytes)).toBe(0);
    // Going back and jumping ahead.
    for (const at of [250_000, 3, 65_535, 65_536, 299_999]) {
      const one = new Uint8Array(5);
      const n = await object.readAt(one, 0, 5, at);
      expect([...one.subarray(0, n)]).toEqual([...bytes.subarray(at, at + 5)]);
    }
    expect(await object.readAt(new Uint8Array(4), 0, 4, bytes.length)).toBe(0);
  });

  test("a ranged GET the store answers 503 SlowDown is tried again; one that keeps failing errors naming the object and the code", async () => {
    const bytes = new Uint8Array(200_000).map((_, i) => i % 241);
    await putObject("s3://io-test/flaky.bin", bytes, s3);
    let failures = 0;
    let ranged = 0;
    const proxy = Bun.serve({
      port: 0,
      hostname: "127.0.0.1",
      async fetch(request) {
        const url = new URL(request.url);
        if (request.headers.get("range")) {
          ranged++;
          if (failures > 0) {
            failures--;
            return new Response('<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>', {
              status: 503,
              headers: { "content-type": "application/xml" },
            });
          }
        }
        return fetch(`${server.endpoint}${url.pathname}${url.search}`, { method: request.method, headers: request.headers, decompress: false });
      },
    });
    try {
      const options = { ...s3, endpoint: `http://127.0.0.1:${proxy.port}`, rangeBytes: 64 * 1024, retryDelayMs: 1 };
      failures = 2;
      const object = await openObject("s3://io-test/flaky.bin", options);
      const copy = new Uint8Array(bytes.length);
      expect(await object.readAt(copy, 0, copy.length, 0)).toBe(bytes.length);
      expect(Buffer.compare(copy, bytes)).toBe(0);
      // Four ranges, two of them refused once each (or one twice) before they came.
      expect(ranged).toBe(4 + 2);
      failures = 100;
      const again = await openObject("s3://io-test/flaky.bin", { ...options, attempts: 3 });
      await expect(again.readAt(copy, 0, 10, 0)).rejects.toThrow("s3://io-test/flaky.bin: cannot read bytes 0-65535: SlowDown: Please reduce your request rate.");
    } finally {
      proxy.stop(true);
    }
  });

  test("a missing key, a missing bucket and wrong credentials are errors naming bucket and key, never the secret", async () => {
    const secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzzSECRET";
    await expect(statObject("s3://io-test/nope.csv", s3)).rejects.toThrow('s3://io-test/nope.csv: cannot read: no object with key "nope.csv" in bucket io-test');
    await expect(statObject("s3://no-such-bucket/a.csv", s3)).rejects.toThrow(`s3://no-such-bucket/a.csv: cannot read: bucket no-such-bucket does not exist at ${server.endpoint}`);
    const wrong = { ...s3, accessKeyId: "AKIAWRONGKEY123", secretAccessKey: secret };
    const attempts = [
      () => statObject("s3://io-test/in/a.csv", wrong),
      () => openObject("s3://io-test/in/a.csv", wrong),
      () => resolveObjects("s3://io-test/in/*.csv", "fromCsv", wrong),
    ];
    for (const attempt of attempts) {
      const error = (await attempt().then(
        () => undefined,
        (e: Error) => e,
      )) as Error;
      expect(error.message).toContain("s3://io-test/in/");
      expect(error.message).toContain("access refused (InvalidAccessKeyId)");
      expect(`${error.message} ${error.stack} ${JSON.stringify(error)}`).not.toContain(secret);
      expect(error.message).not.toContain("AKIAWRONGKEY123");
    }
    const refused = await statObject("s3://io-test/a.csv", { ...s3, endpoint: "http://127.0.0.1:1", secretAccessKey: secret }).catch((e: Error) => e);
    expect((refused as Error).message).toContain("cannot connect to http://127.0.0.1:1");
    expect((refused as Error).message).not.toContain(secret);
  });

  test("without credentials the error says which variables to set", async () => {
    const saved = { ...process.env };
    for (const name of ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY"]) delete process.env[name];
    try {
      await expect(statObject("s3://io-test/a.csv", { endpoint: server.endpoint })).rejects.toThrow("s3://io-test: no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY");
    } finally {
      Object.assign(process.env, saved);
    }
  });
});

describe("footer stand-ins", () => {
  test("a Parquet footer longer than the first 64 KiB fetched is fetched whole; the stand-in has the object's size and tail", async () => {
    const footer = new Uint8Array(100_000).map((_, i) => (i * 31) % 256);
    const body = new Uint8Array(300_000).fill(9);
    const object = new Uint8Array(4 + body.length + footer.length + 8);
    object.set(new TextEncoder().encode("PAR1"), 0);
    object.set(body, 4);
    object.set(footer, 4 + body.length);
    new DataView(object.buffer).setUint32(object.length - 8, footer.length, true);
    object.set(new TextEncoder().encode("PAR1"), object.length - 4);
    await putObject("s3://io-test/footers/big-footer.parquet", object, s3);
    const stat = await statObject("s3://io-test/footers/big-footer.parquet", s3);
    const local = join(dir.path, "stand-in.parquet");
    await downloadParquetFooter(stat, local, s3);
    const copy = await Bun.file(local).bytes();
    expect(copy.length).toBe(object.length);
    expect(Buffer.compare(copy.subarray(copy.length - footer.length - 8), object.subarray(object.length - footer.length - 8))).toBe(0);
    expect(copy.subarray(4, 4 + body.length).every((b) => b === 0)).toBe(true);
    // Not Parquet: named.
    await putObject("s3://io-test/footers/not.parquet", "hello, this is not parquet", s3);
    await expect(downloadParquetFooter(await statObject("s3://io-test/footers/not.parquet", s3), local, s3)).rejects.toThrow("s3://io-test/footers/not.parquet: not a Parquet file");
  });
});

describe("uploads", () => {
  /** A pass-through proxy in front of s3rver that records each request's method and query. */
  let proxy: ReturnType<typeof Bun.serve>;
  let requests: string[] = [];
  beforeAll(() => {
    proxy = Bun.serve({
      port: 0,
      hostname: "127.0.0.1",
      async fetch(request) {
        const url = new URL(request.url);
        // Without a presigned URL's signing parameters, which change on every request.
        const query = [...url.searchParams].filter(([name]) => !name.startsWith("X-Amz-"));
        const search = query.length > 0 ? `?${new URLSearchParams(query)}` : "";
        requests.push(`${request.method} ${search.replace(/uploadId=[^&]*/, "uploadId=…")}`);
        const headers = new Headers(request.headers);
        const body = request.method === "GET" || request.method === "HEAD" ? undefined : await request.arrayBuffer();
        return fetch(`${server.endpoint}${url.pathname}${url.search}`, { method: request.method, headers, body, decompress: false });
      },
    });
  });
  afterAll(() => proxy?.stop(true));
  const viaProxy = () => ({ ...s3, endpoint: `http://127.0.0.1:${proxy.port}` });

  test("uploadFile puts a finished file of 12 MiB in one PUT: the object equals the file", async () => {
    const local = join(dir.path, "twelve.bin");
    const bytes = new Uint8Array(12 * 1024 * 1024);
    for (let i = 0; i < bytes.length; i += 997) bytes[i] = i % 253;
    writeFileSync(local, bytes);
    requests = [];
    const object = await uploadFile(local, "s3://io-test/up/twelve.bin", viaProxy());
    // Bun's own write would have used a multipart upload above 5 MiB (POST ?uploads, PUT ?partNumber...).
    expect(requests.filter((r) => r.startsWith("PUT") || r.startsWith("POST"))).toEqual(["PUT "]);
    expect(object.etag).toBe(`"${createHash("md5").update(bytes).digest("hex")}"`);
    expect(object.size).toBe(bytes.length);
    expect(Buffer.compare(await getObject("s3://io-test/up/twelve.bin", s3), bytes)).toBe(0);
  });

  test("a 64 MiB file goes up streamed from disk, not read into memory (peak RSS of the uploading process)", async () => {
    const local = join(dir.path, "sixty-four.bin");
    writeFileSync(local, new Uint8Array(64 * 1024 * 1024).fill(7));
    const script = join(dir.path, "upload-rss.ts");
    writeFileSync(
      script,
      `import { uploadFile } from ${JSON.stringify(join(import.meta.dir, "../../src/io/s3.ts"))};
const object = await uploadFile(Bun.argv[2], "s3://io-test/up/sixty-four.bin");
// VmHWM, not resourceUsage().maxRSS: Linux carries the parent's peak over across exec.
const kib = Number(/VmHWM:\\s+(\\d+) kB/.exec(await Bun.file("/proc/self/status").text())?.[1]);
console.log(JSON.stringify({ size: object.size, peakMiB: kib / 1024 }));
`,
    );
    const child = Bun.spawn(["bun", script, local], { stdout: "pipe", stderr: "pipe", env: { ...process.env, ...server.env } });
    const [code, stdout, stderr] = await Promise.all([child.exited, new Response(child.stdout).text(), new Response(child.stderr).text()]);
    expect({ code, stderr }).toEqual({ code: 0, stderr: "" });
    const { size, peakMiB } = JSON.parse(stdout) as { size: number; peakMiB: number };
    expect(size).toBe(64 * 1024 * 1024);
    // Measured: about 20 MiB streamed; Bun's write(key, file) as one PUT peaked above 3x the file.
    expect(peakMiB).toBeLessThan(64);
  }, 60_000);

  test("a file above the single-PUT limit goes up in parts and arrives whole", async () => {
    const local = join(dir.path, "parts.bin");
    const bytes = new Uint8Array(11 * 1024 * 1024 + 123);
    for (let i = 0; i < bytes.length; i += 101) bytes[i] = (i / 101) % 256;
    writeFileSync(local, bytes);
    requests = [];
    const object = await uploadFile(local, "s3://io-test/up/parts.bin", { ...viaProxy(), singlePutLimit: 1024 * 1024, partSize: 5 * 1024 * 1024 });
    expect(requests.filter((r) => r.startsWith("PUT") || r.startsWith("POST"))).toEqual([
      "POST ?uploads=",
      "PUT ?partNumber=1&uploadId=…&x-id=UploadPart",
      "PUT ?partNumber=2&uploadId=…&x-id=UploadPart",
      "PUT ?partNumber=3&uploadId=…&x-id=UploadPart",
      "POST ?uploadId=…",
    ]);
    expect(object.size).toBe(bytes.length);
    expect(Buffer.compare(await getObject("s3://io-test/up/parts.bin", s3), bytes)).toBe(0);
  });

  test("an upload that cannot happen names the local file or the bucket, and leaves no object", async () => {
    await expect(uploadFile(join(dir.path, "missing.parquet"), "s3://io-test/up/m.parquet", s3)).rejects.toThrow(`cannot read ${join(dir.path, "missing.parquet")}`);
    const local = join(dir.path, "small.bin");
    writeFileSync(local, "abc");
    await expect(uploadFile(local, "s3://no-such-bucket/up/x.bin", s3)).rejects.toThrow("s3://no-such-bucket/up/x.bin: cannot write: bucket no-such-bucket does not exist");
    await expect(uploadFile(local, "s3://io-test/up/", s3)).rejects.toThrow("names a prefix");
    const refused = (await uploadFile(local, "s3://io-test/up/x.bin", { ...s3, endpoint: "http://127.0.0.1:1", secretAccessKey: "a-secret-never-shown" }).catch((e: Error) => e)) as Error;
    expect(refused.message).toStartWith("s3://io-test/up/x.bin: cannot write: cannot connect to http://127.0.0.1:1");
    expect(refused.message).not.toMatch(/X-Amz|Signature|a-secret-never-shown|S3RVER/);
    await expect(statObject("s3://io-test/up/m.parquet", s3)).rejects.toThrow("no object with key");
  });

  test("deleteKey removes an object; deleting it again succeeds", async () => {
    await putObject("s3://io-test/del/x", "x", s3);
    await deleteKey("s3://io-test/del/x", s3);
    await expect(statObject("s3://io-test/del/x", s3)).rejects.toThrow("no object with key");
    await deleteKey("s3://io-test/del/x", s3);
  });
});

describe("manifest", () => {
  const entry = (path: string, rows: number): ManifestEntry => ({ path, size: rows * 10, etag: `"e${rows}"`, rows, runId: "run-1", committedAt: "2024-03-01T00:00:00.000Z" });

  test("a dataset without a manifest has none", async () => {
    expect(await readManifest("s3://io-test/no-manifest", s3)).toBeUndefined();
  });

  test("entries written are read back sorted by path; writing a path again replaces its entry", async () => {
    const url = "s3://io-test/lake/events";
    const paths = ["date=2024-03-02/part-1.parquet", "date=2024-03-01/part-0.parquet", "source=a%2Fb/ü part.parquet", "x.parquet"];
    for (const [i, path] of paths.entries()) await writeManifestEntry(url, entry(path, i + 1), s3);
    await writeManifestEntry(url, { ...entry("x.parquet", 40), runId: "run-2" }, s3);
    const read = await readManifest(url, { ...s3, pageSize: 2 });
    expect(read?.map((e) => e.path)).toEqual([...paths].sort());
    expect(read?.find((e) => e.path === "x.parquet")).toEqual({ ...entry("x.parquet", 40), runId: "run-2" });
    await deleteManifestEntry(url, "x.parquet", s3);
    expect((await readManifest(url, s3))?.map((e) => e.path)).toEqual([...paths].sort().filter((p) => p !== "x.parquet"));
    // A manifest of another dataset whose prefix starts the same is not mixed in.
    await writeManifestEntry("s3://io-test/lake/events2", entry("y.parquet", 1), s3);
    expect((await readManifest(url, s3))?.length).toBe(3);
  });

  test("an entry that is not one is refused, naming its key", async () => {
    await expect(writeManifestEntry("s3://io-test/lake/bad", { ...entry("../escape.parquet", 1) }, s3)).rejects.toThrow("is not one");
    await putObject("s3://io-test/lake/broken/_manifest/a.json", '{"path":"a.parquet","size":', s3);
    await expect(readManifest("s3://io-test/lake/broken", s3)).rejects.toThrow("manifest entry s3://io-test/lake/broken/_manifest/a.json is not JSON");
    await putObject("s3://io-test/lake/odd/_manifest/a.json", '{"path":"a.parquet","size":1e400}', s3);
    await expect(readManifest("s3://io-test/lake/odd", s3)).rejects.toThrow("manifest entry s3://io-test/lake/odd/_manifest/a.json is not one");
  });
});
