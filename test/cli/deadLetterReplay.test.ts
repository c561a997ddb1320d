import { afterAll, describe, expect, test } from "bun:test";
import { appendFileSync, existsSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { clickstream } from "../../examples/clickstream.ts";
import type { DeadLetter } from "../../src/deadletter/entry.ts";
import { streamDeadLetters } from "../../src/deadletter/read.ts";
import { summarizeDeadLetters } from "../../src/deadletter/summarize.ts";
import { writeClickstream } from "../../src/generate/clickstream.ts";
import { dataset, query, tempDir } from "../helpers/duckdb.ts";

const ROOT = join(import.meta.dir, "..", "..");
const FIXED = "test/fixtures/replay-fixed-clickstream.ts";
const COUNT = 1500;
const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const remove of cleanups) await remove();
});

async function sluice(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = Bun.spawn(["bun", "src/cli/main.ts", ...args], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
  return { code, stdout, stderr };
}

/** The fix in the fixture applies to exactly these dead letters: one issue, of a fixable shape. */
function fixable(entry: DeadLetter): boolean {
  const issue = entry.issues?.length === 1 ? entry.issues[0] : undefined;
  if (entry.stage !== "validate" || !issue) return false;
  return (issue.path === "duration_ms" && /^"\d+"$/.test(issue.received)) || (issue.path === "country" && /^"[a-z]{2}"$/.test(issue.received));
}

/** A real run's output: generated input through the clickstream pipeline. */
async function original() {
  const dir = await tempDir("sluice-replay-");
  cleanups.push(dir.remove);
  const input = join(dir.path, "events.ndjson");
  await writeClickstream(input, { count: COUNT, seed: 23, defectRate: 0.12 });
  const out = join(dir.path, "out");
  const summary = await clickstream(input, out, { encoders: 0 });
  const folder = join(out, "dead-letter");
  const entries: DeadLetter[] = [];
  for await (const { entry } of streamDeadLetters(folder)) entries.push(entry);
  const fixed = entries.filter(fixable);
  expect(entries.length).toBe(summary.deadLettered);
  expect(fixed.length).toBeGreaterThan(10);
  expect(entries.length - fixed.length).toBeGreaterThan(10);
  return { input, out, folder, summary, entries, fixed, events: join(out, "events") };
}

async function rows(events: string): Promise<number> {
  return Number((await query(`SELECT count(*) AS n FROM ${dataset(events)}`))[0]?.n);
}

async function duplicates(events: string): Promise<number> {
  return Number((await query(`SELECT count(*) - count(DISTINCT event_id) AS d FROM ${dataset(events)}`))[0]?.d);
}

function filesOf(folder: string, prefix: string): string[] {
  return readdirSync(folder, { recursive: true, encoding: "utf8" }).filter((name) => name.split("/").pop()?.startsWith(prefix));
}

describe("sluice dead-letter replay", () => {
  test("writes the records that now pass exactly once and keeps the rest dead-lettered with the new error", async () => {
    const o = await original();
    const { code, stdout, stderr } = await sluice(["dead-letter", "replay", o.folder, FIXED, "--out", o.out, "--json"]);
    expect(stderr).toBe("");
    expect(code).toBe(0);
    const result = JSON.parse(stdout);
    expect(result.replayed).toBe(o.entries.length);
    expect(result.summary.in).toBe(o.entries.length);
    expect(result.summary.written).toBe(o.fixed.length);
    expect(result.summary.deadLettered).toBe(o.entries.length - o.fixed.length);

    // The dataset: the original rows plus each fixed record once, with the fixed values.
    expect(await rows(o.events)).toBe(o.summary.written + o.fixed.length);
    expect(await duplicates(o.events)).toBe(0);
    const ids = o.fixed.map((e) => `'${(JSON.parse(e.raw) as { event_id: string }).event_id}'`).join(",");
    const stored = await query(`SELECT event_id, duration_ms, country, user_id FROM ${dataset(o.events)} WHERE event_id IN (${ids})`);
    expect(stored.length).toBe(o.fixed.length);
    const byId = new Map(stored.map((row) => [row.event_id, row]));
    for (const entry of o.fixed) {
      const input = JSON.parse(entry.raw) as Record<string, unknown>;
      const row = byId.get(input.event_id as string);
      expect(String(row?.duration_ms)).toBe(String(Number(input.duration_ms)));
      expect(row?.country).toBe(String(input.country).toUpperCase());
      expect(row?.user_id).toBe(input.user_id as string);
    }

    // The rest: new dead letters of the replay's run, at the ORIGINAL position, with the new error.
    const renewed: DeadLetter[] = [];
    for await (const { entry } of streamDeadLetters(o.folder)) if (entry.runId === result.runId) renewed.push(entry);
    const before = new Map(o.entries.filter((e) => !fixable(e)).map((e) => [`${e.source}:${e.line}`, e]));
    expect(renewed.length).toBe(before.size);
    for (const entry of renewed) {
      const old = before.get(`${entry.source}:${entry.line}`);
      expect(old).toBeDefined();
      expect(entry.raw).toBe(old?.raw as string);
      expect(entry.stage).toBe(old?.stage as string);
      expect(entry.error).toBe(old?.error as string);
    }

    // Totals: every input line is in the dataset or an open dead letter, once.
    const summary = await summarizeDeadLetters(o.folder);
    expect(summary.open).toBe(o.entries.length - o.fixed.length);
    expect(summary.replayed).toBe(o.entries.length);
    expect((await rows(o.events)) + summary.open).toBe(COUNT);
    expect(existsSync(join(o.folder, "replay.lock"))).toBe(false);
    expect(readdirSync(o.folder).filter((n) => n.startsWith(".")).length).toBe(0);

    // A second replay sends nothing; with --again the re-failures go through and fail the same way.
    const second = JSON.parse((await sluice(["dead-letter", "replay", o.folder, FIXED, "--out", o.out, "--json"])).stdout);
    expect(second.replayed).toBe(0);
    expect(second.alreadyReplayed).toBe(o.entries.length);
    expect(second.fromEarlierReplays).toBe(o.entries.length - o.fixed.length);
    expect(second.ledger).toBeUndefined();
    const again = JSON.parse((await sluice(["dead-letter", "replay", o.folder, FIXED, "--again", "--out", o.out, "--json"])).stdout);
    expect(again.replayed).toBe(o.entries.length - o.fixed.length);
    expect(again.summary.written).toBe(0);
    expect(await rows(o.events)).toBe(o.summary.written + o.fixed.length);
    expect((await summarizeDeadLetters(o.folder)).open).toBe(o.entries.length - o.fixed.length);
  });

  test("a line that is still not valid UTF-8 fails its replay with the source's own words, so summarize keeps one group", async () => {
    const dir = await tempDir("sluice-replay-utf8-");
    cleanups.push(dir.remove);
    const input = join(dir.path, "events.ndjson");
    await writeClickstream(input, { count: 20, seed: 5, defectRate: 0 });
    appendFileSync(input, Buffer.concat([Buffer.from('{"event_id":"x'), Buffer.from([0xff, 0xfe]), Buffer.from('"}\n')]));
    const out = join(dir.path, "out");
    await clickstream(input, out, { encoders: 0 });
    const folder = join(out, "dead-letter");
    const { code, stderr } = await sluice(["dead-letter", "replay", folder, FIXED, "--out", out, "--json"]);
    expect({ code, stderr }).toEqual({ code: 0, stderr: "" });
    const letters: DeadLetter[] = [];
    for await (const { entry } of streamDeadLetters(folder)) letters.push(entry);
    expect(letters.map((e) => [e.line, e.stage, e.error])).toEqual([
      [21, "parse", "line is not valid UTF-8"],
      [21, "parse", "line is not valid UTF-8"],
    ]);
    expect(letters[1]?.rawBase64).toBe(letters[0]?.rawBase64 as string);
    const summary = await summarizeDeadLetters(folder);
    expect(summary.open).toBe(1);
  });

  test("filters by stage, source and run, and a later replay takes only what is left", async () => {
    const o = await original();
    const parse = o.entries.filter((e) => e.stage === "parse").length;
    const validate = o.entries.filter((e) => e.stage === "validate").length;
    expect(parse).toBeGreaterThan(0);

    const none = JSON.parse((await sluice(["dead-letter", "replay", "--source", "**/other-*.ndjson", o.folder, FIXED, "--out", o.out, "--json"])).stdout);
    expect(none.replayed).toBe(0);
    expect(none.filteredOut).toBe(o.entries.length);
    const dry = JSON.parse((await sluice(["dead-letter", "replay", "--dry-run", "--run", o.summary.runId, o.folder, FIXED, "--out", o.out, "--json"])).stdout);
    expect(dry.replayed).toBe(o.entries.length);
    expect(await rows(o.events)).toBe(o.summary.written);

    const first = await sluice(["dead-letter", "replay", o.folder, FIXED, "--stage", "validate", "--source", "**/events.ndjson", "--out", o.out, "--json"]);
    expect(first.code).toBe(0);
    const r1 = JSON.parse(first.stdout);
    expect(r1.replayed).toBe(validate);
    expect(r1.filteredOut).toBe(parse);
    expect(r1.summary.written).toBe(o.fixed.length);

    const r2 = JSON.parse((await sluice(["dead-letter", "replay", o.folder, FIXED, "--out", o.out, "--json"])).stdout);
    expect(r2.replayed).toBe(parse);
    expect(r2.summary.written).toBe(0);
    expect(r2.summary.deadLetteredByStage).toEqual({ parse });

    const r3 = JSON.parse((await sluice(["dead-letter", "replay", "--run", o.summary.runId, o.folder, FIXED, "--out", o.out, "--json"])).stdout);
    expect(r3.replayed).toBe(0);
    expect(await rows(o.events)).toBe(o.summary.written + o.fixed.length);
    expect(await duplicates(o.events)).toBe(0);
    expect((await rows(o.events)) + (await summarizeDeadLetters(o.folder)).open).toBe(COUNT);
  });

  test("a replay that fails after committing files is rolled back by the next one: nothing is duplicated", async () => {
    const o = await original();
    const failed = await sluice(["dead-letter", "replay", o.folder, FIXED, "--out", o.out, "--max-file-rows", "2", "--fail-after-commits", "2", "--run-id", "replay-broken"]);
    expect(failed.code).toBe(1);
    expect(failed.stderr).toContain("simulated failure");
    expect(failed.stderr).toContain("rolls back");
    // Its files are there, half of a replay: the lock says so.
    expect(filesOf(o.events, "part-replay-broken-").length).toBeGreaterThanOrEqual(2);
    expect(existsSync(join(o.folder, "replay.lock"))).toBe(true);
    expect(existsSync(join(o.folder, "replayed-replay-broken.ledger"))).toBe(false);
    const pending = await summarizeDeadLetters(o.folder);
    expect(pending.unfinishedReplay?.runId).toBe("replay-broken");
    expect(pending.unfinishedReplay?.running).toBe(false);
    expect(pending.open).toBe(o.entries.length);

    const next = await sluice(["dead-letter", "replay", o.folder, FIXED, "--out", o.out, "--json"]);
    expect(next.code).toBe(0);
    const result = JSON.parse(next.stdout);
    expect(result.rolledBack.runId).toBe("replay-broken");
    expect(result.rolledBack.finished).toBe(false);
    expect(result.rolledBack.datasetFiles.length).toBeGreaterThanOrEqual(2);
    expect(result.replayed).toBe(o.entries.length);
    expect(filesOf(o.events, "part-replay-broken-")).toEqual([]);
    expect(filesOf(o.folder, "dead-letter-replay-broken-")).toEqual([]);
    expect(await rows(o.events)).toBe(o.summary.written + o.fixed.length);
    expect(await duplicates(o.events)).toBe(0);
    expect((await rows(o.events)) + (await summarizeDeadLetters(o.folder)).open).toBe(COUNT);
  });

  test("a module that asks for overwrite under replay neither replaces the dataset nor loses dead letters", async () => {
    const o = await original();
    const { code, stdout } = await sluice(["dead-letter", "replay", o.folder, FIXED, "--out", o.out, "--json", "--", "--ignore-replay"]);
    expect(code).toBe(0);
    const result = JSON.parse(stdout);
    // Under the replay's checkpoint, deadLetter appends whatever mode the module asks for, so
    // nothing had to be restored from the snapshot.
    expect(result.restored).toEqual([]);
    expect(await rows(o.events)).toBe(o.summary.written + o.fixed.length);
    expect(await duplicates(o.events)).toBe(0);
    const summary = await summarizeDeadLetters(o.folder);
    expect(summary.replayed).toBe(o.entries.length);
    expect((await rows(o.events)) + summary.open).toBe(COUNT);
  });

  test("refuses a missing module, a missing folder, and a folder another replay holds", async () => {
    const o = await original();
    const missing = await sluice(["dead-letter", "replay", o.folder, "test/fixtures/no-such-module.ts"]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("does not exist");
    const noFolder = await sluice(["dead-letter", "replay", join(o.out, "nope"), FIXED, "--out", o.out]);
    expect(noFolder.code).toBe(2);
    expect(noFolder.stderr).toContain("does not exist");
    const usage = await sluice(["dead-letter", "replay", o.folder]);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain("pipeline module is missing");
    // This test process is alive: its pid in the lock means a replay is running.
    writeFileSync(join(o.folder, "replay.lock"), JSON.stringify({ runId: "other", pid: process.pid, startedAt: "", module: "", cwd: ROOT }));
    const busy = await sluice(["dead-letter", "replay", o.folder, FIXED, "--out", o.out]);
    expect(busy.code).toBe(2);
    expect(busy.stderr).toContain("another replay");
    expect(await rows(o.events)).toBe(o.summary.written);
  });
});
