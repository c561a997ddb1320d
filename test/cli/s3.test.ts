/**
 * `sluice inspect`, `sluice head`, `readDataset` and `sluice dead-letter summarize` over datasets
 * and dead-letter folders in a bucket (s3rver): the same answers as over the local folder they
 * were uploaded from; a manifest hides objects it does not list; errors name bucket and key
 * without the secret.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import { join, relative } from "node:path";
import { deadLetter } from "../../operators/index.ts";
import { readDataset } from "../../src/dataset/read.ts";
import { copyToLocal, localDataset, uploadFile, writeManifestEntry } from "../../src/io/s3.ts";
import { readFooter } from "../../src/parquet/footer.ts";
import { run } from "../../src/run/run.ts";
import { fromNdjson } from "../../src/sources/ndjson.ts";
import { tempDir } from "../helpers/duckdb.ts";
import { writeSample } from "../helpers/sample.ts";
import { type S3rverHandle, startS3rver } from "../helpers/s3rver.ts";

const REPO = join(import.meta.dir, "../..");
const BUCKET = "cli-test";
let server: S3rverHandle;
let dir: Awaited<ReturnType<typeof tempDir>>;
let folder: string;
let files: string[];

/** Runs the sluice CLI as a user would, with the server's variables (or others) in its environment. */
async function sluice(args: string[], env: Record<string, string> = server.env): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = Bun.spawn(["bun", "src/cli/main.ts", ...args], { cwd: REPO, stdout: "pipe", stderr: "pipe", env: { ...process.env, ...env } });
  const [stdout, stderr, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
  return { code, stdout, stderr };
}

/** A row as JSON text, bigints as decimal strings. */
const text = (row: unknown) => JSON.stringify(row, (_key, value) => (typeof value === "bigint" ? `${value}n` : value));

/** Every file under `root`, relative, with `/` separators. */
function filesUnder(root: string): string[] {
  return (readdirSync(root, { recursive: true, withFileTypes: true }) as { isFile(): boolean; name: string; parentPath: string }[])
    .filter((e) => e.isFile())
    .map((e) => relative(root, join(e.parentPath, e.name)))
    .sort();
}

beforeAll(async () => {
  server = await startS3rver([BUCKET]);
  Object.assign(process.env, server.env);
  dir = await tempDir("sluice-s3-cli-");
  folder = join(dir.path, "sample");
  await writeSample(folder);
  files = filesUnder(folder).filter((f) => f.endsWith(".parquet"));
  // The dataset as it is, under two prefixes: one without a manifest, one with (plus an object it does not list).
  for (const file of files) {
    const object = await uploadFile(join(folder, file), `s3://${BUCKET}/plain/sample/${file}`);
    await uploadFile(join(folder, file), `s3://${BUCKET}/managed/sample/${file}`);
    const rows = (await readFooter(join(folder, file))).numRows;
    await writeManifestEntry(`s3://${BUCKET}/managed/sample`, { path: file, size: object.size, etag: object.etag, rows, runId: "r1", committedAt: new Date(0).toISOString() });
  }
  await uploadFile(join(folder, files[0] as string), `s3://${BUCKET}/managed/sample/region=eu/part-orphan-of-a-failed-run.parquet`);
}, 60_000);

afterAll(async () => {
  await server?.stop();
  await dir?.remove();
});

describe("inspect and head over s3://", () => {
  test("sluice inspect s3://bucket/prefix reports what it reports for the local folder, reading only footers", async () => {
    const local = await sluice(["inspect", folder, "--json"]);
    for (const prefix of ["plain", "managed"]) {
      const remote = await sluice(["inspect", `s3://${BUCKET}/${prefix}/sample`, "--json"]);
      expect(remote.stderr).toBe("");
      expect(remote.code).toBe(0);
      expect({ ...JSON.parse(remote.stdout), path: "" }).toEqual({ ...JSON.parse(local.stdout), path: "" });
      expect(JSON.parse(remote.stdout).path).toBe(`s3://${BUCKET}/${prefix}/sample`);
    }
    const text = await sluice(["inspect", `s3://${BUCKET}/plain/sample`]);
    expect(text.stdout).toContain(`s3://${BUCKET}/plain/sample`);
    // One object, as one file.
    const one = await sluice(["inspect", `s3://${BUCKET}/plain/sample/${files[0]}`, "--json"]);
    const oneLocal = await sluice(["inspect", join(folder, files[0] as string), "--json"]);
    expect(JSON.parse(one.stdout).rows).toBe(JSON.parse(oneLocal.stdout).rows);
  }, 60_000);

  test("sluice head prints the same rows as for the local folder, copying only the files those rows are in", async () => {
    const local = await sluice(["head", folder, "-n", "7", "--json"]);
    const remote = await sluice(["head", `s3://${BUCKET}/plain/sample`, "-n", "7", "--json"]);
    expect(remote.stderr).toBe("");
    expect(remote.stdout).toBe(local.stdout);
    expect(remote.stdout.trim().split("\n").length).toBe(7);
    const table = await sluice(["head", `s3://${BUCKET}/managed/sample`, "-n", "7", "--width", "400"]);
    expect(table.stdout.trim().split("\n").length).toBe(9); // header, rule, 7 rows
    const copy = await localDataset(`s3://${BUCKET}/plain/sample`, { rows: 7 });
    try {
      expect(filesUnder(copy.path)).toEqual([files[0]]);
    } finally {
      copy.dispose();
    }
  }, 60_000);

  test("readDataset reads a bucket's dataset as the local one; with a manifest, objects it does not list are not read", async () => {
    const expected = (await readDataset(folder)).toArray().map(text);
    expect((await readDataset(`s3://${BUCKET}/plain/sample`)).toArray().map(text)).toEqual(expected);
    // The orphan (a copy of the first file) would add its rows again if it were read.
    expect((await readDataset(`s3://${BUCKET}/managed/sample`)).toArray().map(text)).toEqual(expected);
    const filtered = await readDataset(`s3://${BUCKET}/plain/sample`, { where: { region: "eu" }, columns: ["id", "region"] });
    const local = await readDataset(folder, { where: { region: "eu" }, columns: ["id", "region"] });
    expect(filtered.toArray().map(text)).toEqual(local.toArray().map(text));
  }, 60_000);

  test("a missing dataset, a missing bucket and refused credentials exit 1 naming bucket and prefix, never the secret", async () => {
    const missing = await sluice(["inspect", `s3://${BUCKET}/nothing/here`]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(`s3://${BUCKET}/nothing/here does not exist`);
    const bucket = await sluice(["head", "s3://no-such-bucket/events"]);
    expect(bucket.code).toBe(1);
    expect(bucket.stderr).toContain("bucket no-such-bucket does not exist");
    const secret = "very/secret+key=value";
    const refused = await sluice(["inspect", `s3://${BUCKET}/plain/sample`], { ...server.env, AWS_ACCESS_KEY_ID: "WRONGKEYID", AWS_SECRET_ACCESS_KEY: secret });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toStartWith(`sluice inspect: s3://${BUCKET}/plain/sample/`);
    expect(refused.stderr).toContain("cannot list: access refused (InvalidAccessKeyId)");
    expect(refused.stderr).not.toContain(secret);
    expect(refused.stderr).not.toContain("WRONGKEYID");
    // A key that would climb out of the local copy's folder (a store may hold one; Bun normalizes
    // such a key when it writes, so the listing is made up here).
    const object = { url: `s3://${BUCKET}/x/../../escape.parquet`, bucket: BUCKET, key: "x/../../escape.parquet", size: 4, etag: '"e"' };
    await expect(copyToLocal(new Map([["x/../../escape.parquet", object]]))).rejects.toThrow(`s3://${BUCKET}/x/../../escape.parquet: its key has an empty, "." or ".." part`);
    await expect(copyToLocal(new Map([["a//b.parquet", { ...object, key: "a//b.parquet" }]]))).rejects.toThrow('an empty, "." or ".." part');
  }, 60_000);
});

describe("dead-letter summarize over s3://", () => {
  test("summarizes a dead-letter folder uploaded to a bucket as the local folder", async () => {
    const input = join(dir.path, "bad.ndjson");
    await Bun.write(input, ['{"a":1}', "{not json", '{"a":', "[1,2", "\u00ff\u00fe", '{"b":2}', "nope"].join("\n"));
    const letters = join(dir.path, "dead-letter");
    await run(fromNdjson(input).pipe(deadLetter(letters)), { handleSignals: false });
    for (const file of filesUnder(letters)) await uploadFile(join(letters, file), `s3://${BUCKET}/dl/${file}`);
    const local = await sluice(["dead-letter", "summarize", letters, "--json", "--samples", "2"]);
    const remote = await sluice(["dead-letter", "summarize", `s3://${BUCKET}/dl`, "--json", "--samples", "2"]);
    expect(remote.stderr).toBe("");
    expect(remote.code).toBe(0);
    const [l, r] = [JSON.parse(local.stdout), JSON.parse(remote.stdout)];
    expect(l.open).toBe(5);
    expect({ ...r, folder: "" }).toEqual({ ...l, folder: "" });
    expect(r.folder).toBe(`s3://${BUCKET}/dl`);
  }, 60_000);
});
