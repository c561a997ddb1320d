import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { isLoopback } from "../../src/cli/run.ts";
import { writeClickstream } from "../../src/generate/clickstream.ts";
import { tempDir } from "../helpers/duckdb.ts";

const root = join(import.meta.dir, "../..");
const main = join(root, "src/cli/main.ts");
const clickstreamModule = join(root, "examples/platform/clickstream.ts");
const argsModule = join(root, "test/fixtures/args-pipeline.ts");

async function sluice(args: string[], cwd = root): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = Bun.spawn(["bun", main, ...args], { cwd, stdout: "pipe", stderr: "pipe", env: { ...process.env, NO_COLOR: "1" } });
  const [stdout, stderr, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
  return { code, stdout, stderr };
}

/** Every file under `folder`, relative to it. */
function filesUnder(folder: string): string[] {
  return readdirSync(folder, { recursive: true, encoding: "utf8" })
    .filter((name) => statSync(join(folder, name)).isFile())
    .sort();
}

let dir: { path: string; remove: () => Promise<void> };
let input: string;
beforeAll(async () => {
  dir = await tempDir("sluice-cli-security-");
  input = join(dir.path, "events.ndjson");
  await writeClickstream(input, { count: 200, seed: 5, defectRate: 0.1 });
});
afterAll(() => dir.remove());

describe("a run id is never a path", () => {
  test.each(["../x", "../../../../../ESCAPED", "a/../../b", "/tmp/abs", "..", ".hidden"])(
    "sluice run --run-id %p exits 2 with a clear message and writes nothing anywhere",
    async (runId) => {
      // The run starts three folders deep, so "../../../" would still land inside the temporary folder.
      const work = join(dir.path, `run-${Bun.hash(runId)}`, "a", "b", "c");
      mkdirSync(work, { recursive: true });
      const before = filesUnder(dir.path);
      const { code, stdout, stderr } = await sluice(["run", "--run-id", runId, clickstreamModule, "--input", input, "--out", "out"], work);
      expect(code).toBe(2);
      expect(stdout).toBe("");
      expect(stderr).toContain(`sluice run: --run-id: ${JSON.stringify(runId)} is not a valid run id`);
      expect(stderr).toContain("[A-Za-z0-9][A-Za-z0-9._-]{0,127}");
      expect(filesUnder(dir.path)).toEqual(before);
      expect(existsSync(join(root, "ESCAPED"))).toBe(false);
    },
  );

  test("sluice dead-letter replay --run-id '../../../victim' exits 2 and deletes nothing", async () => {
    const base = join(dir.path, "replay-attack");
    const folder = join(base, "out", "dead-letter");
    mkdirSync(folder, { recursive: true });
    writeFileSync(join(folder, "dead-letter-r1-00000.ndjson"), `${JSON.stringify({ stage: "parse", source: "x", line: 1, raw: "{", error: "e", at: "", runId: "r1" })}\n`);
    // ".replay-<runId>" of this id is base/victim: the replay used to remove it recursively.
    const victim = join(base, "victim");
    mkdirSync(victim);
    writeFileSync(join(victim, "precious.txt"), "keep me");
    const before = filesUnder(base);
    const { code, stderr } = await sluice(["dead-letter", "replay", "--run-id", "../../../victim", folder, clickstreamModule, "--out", join(base, "out")]);
    expect(code).toBe(2);
    expect(stderr).toContain('--run-id: "../../../victim" is not a valid run id');
    expect(filesUnder(base)).toEqual(before);
  });

  test("a safe run id still names the files", async () => {
    const out = join(dir.path, "safe");
    const { code } = await sluice(["run", "--run-id", "nightly.2024-03-01_a", "--progress", "none", clickstreamModule, "--input", input, "--out", out]);
    expect(code).toBe(0);
    const names = readdirSync(join(out, "dead-letter"));
    expect(names.length).toBeGreaterThan(0);
    expect(names.every((name) => name.startsWith("dead-letter-nightly.2024-03-01_a-"))).toBe(true);
  });
});

describe("secrets in logs", () => {
  test("--log-format json logs the pipeline's arguments with URL passwords and credential options masked", async () => {
    const { code, stdout, stderr } = await sluice([
      "run",
      "--log-format",
      "json",
      argsModule,
      "--url",
      "postgres://app:Pa55w0rd@db.example:5432/sales",
      "--api-key=k3y-Pa55w0rd",
      "--password",
      "Pa55w0rd-2",
      "--source",
      "https://api.example/v1/items?api_key=Pa55w0rd-3&page=1",
      "--date",
      "2024-03-01",
    ]);
    expect(code).toBe(0);
    expect(`${stdout}${stderr}`).not.toContain("Pa55w0rd");
    const started = stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line))
      .find((line) => line.message === "run started");
    expect(started.args).toEqual([
      "--url",
      "postgres://app:***@db.example:5432/sales",
      "--api-key=***",
      "--password",
      "***",
      "--source",
      "https://api.example/v1/items?api_key=***&page=1",
      "--date",
      "2024-03-01",
    ]);
  });

  test("an error quoting a connection string is logged without its password", async () => {
    for (const format of ["json", "text"]) {
      const { code, stdout, stderr } = await sluice(["run", "--log-format", format, argsModule, "--fail-setup", "cannot reach postgres://app:Pa55w0rd@db.example/sales"]);
      expect(code).toBe(2);
      expect(`${stdout}${stderr}`).not.toContain("Pa55w0rd");
      expect(`${stdout}${stderr}`).toContain("cannot reach postgres://app:***@db.example/sales");
    }
  });
});

describe("metrics on an address other than loopback", () => {
  test.each([
    ["127.0.0.1", true],
    ["127.1.2.3", true],
    ["localhost", true],
    ["::1", true],
    ["[::1]", true],
    ["::ffff:127.0.0.1", true],
    ["0.0.0.0", false],
    ["::", false],
    ["192.168.1.20", false],
    ["metrics.example.com", false],
    ["128.0.0.1", false],
  ])("%p is loopback: %p", (host, loopback) => {
    expect(isLoopback(host)).toBe(loopback);
  });

  test("--metrics 0.0.0.0:0 warns on standard error that it serves without authentication; 127.0.0.1 does not", async () => {
    const open = await sluice(["run", "--metrics", "0.0.0.0:0", "--log-format", "json", argsModule]);
    expect(open.code).toBe(0);
    expect(open.stderr).toContain("sluice run: warning: --metrics 0.0.0.0:0 serves /metrics and /health without authentication");
    expect(open.stdout).not.toContain("warning");
    const local = await sluice(["run", "--metrics", "127.0.0.1:0", "--log-format", "json", argsModule]);
    expect(local.code).toBe(0);
    expect(local.stderr).toBe("");
    const defaultHost = await sluice(["run", "--metrics", "0", "--progress", "none", argsModule]);
    expect(defaultHost.code).toBe(0);
    expect(defaultHost.stderr).not.toContain("without authentication");
  });
});
