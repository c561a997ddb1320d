import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { clickstream } from "../../examples/clickstream.ts";
import type { DeadLetterSummary } from "../../src/deadletter/summarize.ts";
import { writeClickstream } from "../../src/generate/clickstream.ts";
import type { RunSummary } from "../../src/run/run.ts";
import { dataset, query, tempDir } from "../helpers/duckdb.ts";

const ROOT = join(import.meta.dir, "..", "..");
const COUNT = 2000;
let dir: Awaited<ReturnType<typeof tempDir>>;
let input: string;
let folder: string;
let run: RunSummary;
let defects: Record<string, number>;

beforeAll(async () => {
  dir = await tempDir("sluice-summarize-");
  input = join(dir.path, "events.ndjson");
  defects = await writeClickstream(input, { count: COUNT, seed: 5, defectRate: 0.1 });
  run = await clickstream(input, join(dir.path, "out"), { encoders: 0 });
  folder = join(dir.path, "out", "dead-letter");
});
afterAll(() => dir.remove());

async function sluice(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = Bun.spawn(["bun", "src/cli/main.ts", ...args], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
  return { code, stdout, stderr };
}

async function summarize(...args: string[]): Promise<DeadLetterSummary> {
  const { code, stdout, stderr } = await sluice(["dead-letter", "summarize", folder, "--json", ...args]);
  expect(stderr).toBe("");
  expect(code).toBe(0);
  return JSON.parse(stdout) as DeadLetterSummary;
}

const count = (groups: readonly { key: string; count: number }[], key: string) => groups.find((g) => g.key === key)?.count ?? 0;

describe("sluice dead-letter summarize", () => {
  test("counts by stage agree with the dead-letter files (read by DuckDB) and with the run", async () => {
    const summary = await summarize();
    expect(summary.open).toBe(run.deadLettered);
    expect(summary.files).toBe(1);
    expect(summary.replayed).toBe(0);
    const byStage = await query(`SELECT stage, count(*)::INTEGER AS n FROM read_json_auto('${folder}/*.ndjson') GROUP BY stage`);
    expect(byStage.length).toBe(summary.byStage.length);
    for (const row of byStage) expect(count(summary.byStage, row.stage as string)).toBe(row.n as number);
    expect(Object.fromEntries(summary.byStage.map((g) => [g.key, g.count]))).toEqual(run.deadLetteredByStage);
    // Every input line is in the dataset or counted here.
    const written = await query(`SELECT count(*)::INTEGER AS n FROM ${dataset(join(dir.path, "out", "events"))}`);
    expect((written[0]?.n as number) + summary.open).toBe(COUNT);
  });

  test("groups errors by cause: every truncated line is one malformed-JSON group, whatever the parser said", async () => {
    const summary = await summarize("--samples", "5");
    const malformed = summary.byError.find((g) => g.key === "malformed JSON: …");
    expect(malformed?.stage).toBe("parse");
    expect(malformed?.count).toBe(defects.malformed_json as number);
    // Samples show real messages, different ones first.
    const messages = malformed?.samples.map((s) => s.error) ?? [];
    expect(new Set(messages).size).toBeGreaterThan(1);
    for (const m of messages) expect(m.startsWith("malformed JSON: ")).toBe(true);
    const wrongType = summary.byError.find((g) => g.key === 'duration_ms: Invalid type: Expected number but received "…"');
    expect(wrongType?.count).toBe(defects.string_for_number as number);
    expect(count(summary.byError, "user_id: Invalid type: Expected string but received N")).toBe(defects.number_for_string as number);
    expect(summary.byError.reduce((sum, g) => sum + g.count, 0)).toBe(run.deadLettered);
  });

  test("counts by field path from the issues, as the generator planted them", async () => {
    const summary = await summarize();
    expect(count(summary.byField, "duration_ms")).toBe(defects.string_for_number as number);
    expect(count(summary.byField, "user_id")).toBe(defects.number_for_string as number);
    expect(count(summary.byField, "country")).toBe(defects.lowercase_country as number);
    expect(count(summary.byField, "event_type")).toBe(defects.unknown_event_type as number);
    // One issue per invalid record: the fields add up to the validate stage.
    expect(summary.byField.reduce((sum, g) => sum + g.count, 0)).toBe(run.deadLetteredByStage.validate as number);
  });

  test("samples point at the input line they came from, shortened as asked", async () => {
    const lines = readFileSync(input, "utf8").split("\n");
    const full = await summarize("--samples", "2", "--raw-chars", "100000");
    let seen = 0;
    for (const group of [...full.byStage, ...full.byError, ...full.byField]) {
      expect(group.samples.length).toBe(Math.min(2, group.count));
      for (const sample of group.samples) {
        expect(sample.source).toBe(input);
        expect(sample.raw).toBe(lines[sample.line - 1] as string);
        seen++;
      }
    }
    expect(seen).toBeGreaterThan(10);
    const short = await summarize("--samples", "1", "--raw-chars", "20");
    for (const group of short.byError) {
      const raw = group.samples[0]?.raw ?? "";
      expect(raw.length).toBeLessThanOrEqual(21);
      expect(lines[(group.samples[0]?.line ?? 0) - 1]?.startsWith(raw.replace(/…$/, ""))).toBe(true);
    }
    const none = await summarize("--samples", "0");
    expect(none.byError.every((g) => g.samples.length === 0)).toBe(true);
  });

  test("is short by default: counts by stage, error and field without samples; --samples alone shows 3", async () => {
    const short = await sluice(["dead-letter", "summarize", folder]);
    expect(short.code).toBe(0);
    expect(short.stdout).toContain("by stage");
    expect(short.stdout).toContain("by error");
    expect(short.stdout).toContain("by field");
    expect(short.stdout).not.toMatch(/events\.ndjson:\d+/);
    expect((await summarize()).byError.every((g) => g.samples.length === 0)).toBe(true);
    const withSamples = await summarize("--samples");
    expect(withSamples.byError.some((g) => g.samples.length === Math.min(3, g.count) && g.count > 0)).toBe(true);
    const beforeOption = await sluice(["dead-letter", "summarize", folder, "--samples", "--json"]);
    expect((JSON.parse(beforeOption.stdout) as DeadLetterSummary).byError[0]?.samples.length).toBe(3);
    const text = await sluice(["dead-letter", "summarize", folder, "--samples"]);
    expect(text.stdout).toMatch(/events\.ndjson:\d+ {2}\{/);
  });

  test("prints a readable table, and reports usage errors and an empty folder", async () => {
    const text = await sluice(["dead-letter", "summarize", folder, "--samples", "1"]);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain(`${run.deadLettered.toLocaleString("en-US")} open dead letter(s)`);
    expect(text.stdout).toContain("by stage");
    expect(text.stdout).toContain("[parse] malformed JSON: …");
    expect(text.stdout).toMatch(/events\.ndjson:\d+ {2}\{/);
    const bad = await sluice(["dead-letter", "summarize", folder, "--samples", "x"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("--samples");
    const empty = await sluice(["dead-letter", "summarize", join(dir.path, "nothing"), "--json"]);
    expect(empty.code).toBe(0);
    expect(JSON.parse(empty.stdout).open).toBe(0);
  });
});
