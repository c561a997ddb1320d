/**
 * `sluice dead-letter list` and `listDeadLetters`: every open dead letter of a real run, each
 * with where it is stored and where it came from, filtered as a replay filters; replayed entries
 * only with --all. Checked against the dead-letter files as DuckDB reads them.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { clickstream } from "../../examples/clickstream.ts";
import { listDeadLetters } from "../../src/index.ts";
import { writeClickstream } from "../../src/generate/clickstream.ts";
import type { RunSummary } from "../../src/run/run.ts";
import { query, tempDir } from "../helpers/duckdb.ts";

const ROOT = join(import.meta.dir, "..", "..");
const FIXED = "test/fixtures/replay-fixed-clickstream.ts";
let dir: Awaited<ReturnType<typeof tempDir>>;
let out: string;
let folder: string;
let summary: RunSummary;

beforeAll(async () => {
  dir = await tempDir("sluice-dl-list-");
  const input = join(dir.path, "events.ndjson");
  await writeClickstream(input, { count: 1500, seed: 23, defectRate: 0.12 });
  out = join(dir.path, "out");
  summary = await clickstream(input, out, { encoders: 0 });
  folder = join(out, "dead-letter");
});
afterAll(() => dir.remove());

async function sluice(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = Bun.spawn(["bun", "src/cli/main.ts", ...args], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
  return { code, stdout, stderr };
}

interface Listed {
  id: string;
  file: string;
  line: number;
  replayed: boolean;
  entry: { stage: string; source: string; line: number; raw: string; error: string };
}
async function list(...args: string[]): Promise<Listed[]> {
  const { code, stdout, stderr } = await sluice(["dead-letter", "list", folder, "--json", ...args]);
  expect(stderr).toBe("");
  expect(code).toBe(0);
  return stdout === "" ? [] : stdout.trimEnd().split("\n").map((line) => JSON.parse(line) as Listed);
}

/** The dead-letter files as DuckDB reads them: source line, stage and raw text, in file order. */
async function stored(where = "true"): Promise<{ line: number; stage: string; raw: string }[]> {
  return (await query(
    `SELECT line::INTEGER AS line, stage, raw FROM read_json('${folder}/*.ndjson', format = 'newline_delimited', filename = true) WHERE ${where} ORDER BY filename, line`,
  )) as { line: number; stage: string; raw: string }[];
}

describe("sluice dead-letter list", () => {
  test("lists every dead letter of the run once, with its source line, stage and raw text as stored", async () => {
    const listed = await list();
    expect(listed.length).toBe(summary.deadLettered);
    expect(new Set(listed.map((l) => l.id)).size).toBe(listed.length);
    const expected = await stored();
    expect(listed.map((l) => ({ line: l.entry.line, stage: l.entry.stage, raw: l.entry.raw }))).toEqual(expected);
    for (const l of listed) {
      expect(l.id).toBe(`${l.file}#${l.line}`);
      expect(l.replayed).toBe(false);
      expect(l.entry.source).toEndWith("events.ndjson");
    }
  });

  test("prints every entry into a pipe whose reader is slow: the output is not cut off when the command ends", async () => {
    const child = Bun.spawn(["bash", "-c", `bun src/cli/main.ts dead-letter list ${JSON.stringify(folder)} --json | (sleep 1; wc -l)`], { cwd: ROOT, stdout: "pipe" });
    const [counted, code] = await Promise.all([new Response(child.stdout).text(), child.exited]);
    expect(code).toBe(0);
    expect(Number(counted.trim())).toBe(summary.deadLettered);
  });

  test("--stage, --limit and the text form", async () => {
    const validate = await list("--stage", "validate");
    expect(validate.length).toBe((await stored("stage = 'validate'")).length);
    expect(validate.length).toBeGreaterThan(0);
    expect(validate.every((l) => l.entry.stage === "validate")).toBe(true);
    expect((await list("--limit", "3")).map((l) => l.id)).toEqual((await list()).slice(0, 3).map((l) => l.id));

    const text = await sluice(["dead-letter", "list", folder, "--limit", "2", "--raw-chars", "10"]);
    expect(text.code).toBe(0);
    const lines = text.stdout.trimEnd().split("\n");
    expect(lines.length).toBe(2);
    const [first] = await list("--limit", "1");
    expect(lines[0]).toStartWith(`${first?.id}  ${first?.entry.source}:${first?.entry.line}  ${first?.entry.stage}  `);
    expect(lines[0]).toEndWith(`${first?.entry.raw.slice(0, 10)}…`);
  });

  test("entries a replay sent are left out, and listed as replayed with --all", async () => {
    const before = await list();
    const replay = await sluice(["dead-letter", "replay", folder, FIXED, "--out", out, "--stage", "validate", "--json"]);
    expect(replay.stderr).toBe("");
    expect(replay.code).toBe(0);
    const replayed = JSON.parse(replay.stdout).replayed as number;
    expect(replayed).toBeGreaterThan(0);

    // What is open: the original entries not replayed, and those that failed again in the replay.
    const open = await list();
    const openOriginal = open.filter((l) => before.some((b) => b.id === l.id));
    expect(openOriginal.length).toBe(before.length - replayed);
    expect(openOriginal.every((l) => l.entry.stage !== "validate")).toBe(true);

    const all = await list("--all");
    expect(all.filter((l) => l.replayed).length).toBe(replayed);
    expect(all.length).toBe(open.length + replayed);

    // The API agrees with the command.
    const api: string[] = [];
    for await (const l of listDeadLetters(folder)) api.push(l.id);
    expect(api).toEqual(open.map((l) => l.id));
  });

  test("text output escapes a hostile record's controls and bidirectional marks, and cuts between characters", async () => {
    const hostile = join(dir.path, "hostile-dl");
    const entry = { stage: "parse", source: "in\u001b[2J.ndjson", line: 7, raw: "\u202e{\"a\":\"\u001b[31mred\", \"b\":\"😀😀\"}", error: "bad\nline", at: "2024-03-01T00:00:00.000Z", runId: "r1" };
    await Bun.write(join(hostile, "dead-letter-r1-00000.ndjson"), `${JSON.stringify(entry)}\n`);
    // 24 UTF-16 units end in the middle of the first emoji's surrogate pair; 24 characters do not.
    expect(entry.raw.slice(0, 24).at(-1)?.isWellFormed()).toBe(false);
    const { code, stdout } = await sluice(["dead-letter", "list", hostile, "--raw-chars", "24"]);
    expect(code).toBe(0);
    expect(stdout).toBe(
      "dead-letter-r1-00000.ndjson#1  in\\u001b[2J.ndjson:7  parse  bad\\nline  \\u202e{\"a\":\"\\u001b[31mred\", \"b\":\"😀…\n",
    );
    expect(stdout.includes("\u001b") || stdout.includes("\u202e")).toBe(false);
  });

  test("a missing folder lists nothing; a wrong option is a usage error", async () => {
    const missing = await sluice(["dead-letter", "list", join(dir.path, "nothing-here"), "--json"]);
    expect(missing).toEqual({ code: 0, stdout: "", stderr: "" });
    const bad = await sluice(["dead-letter", "list", folder, "--limit", "ten"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("--limit must be a whole number, not ten");
  });
});
