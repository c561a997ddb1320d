/**
 * After a replay died, the next replays of the folder race to take its lock over and roll it back.
 * Two replays started at once used to both roll back and both run (1 trial in 12): rows written
 * twice. Exactly one may (the lock itself is tested 20 times over in test/io/lock.test.ts).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { clickstream } from "../../examples/clickstream.ts";
import { streamDeadLetters } from "../../src/deadletter/read.ts";
import { writeClickstream } from "../../src/generate/clickstream.ts";
import { dataset, query, tempDir } from "../helpers/duckdb.ts";

const ROOT = join(import.meta.dir, "..", "..");
const FIXED = "test/fixtures/replay-fixed-clickstream.ts";
const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const remove of cleanups) await remove();
});

function sluice(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = Bun.spawn(["bun", "src/cli/main.ts", ...args], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  return Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]).then(([stdout, stderr, code]) => ({ code, stdout, stderr }));
}

describe("two replays started at once after a replay died", () => {
  test("exactly one rolls the dead one back and replays; the other is refused or finds nothing left; no row is written twice", async () => {
    const dir = await tempDir("sluice-replay-race-");
    cleanups.push(dir.remove);
    const input = join(dir.path, "events.ndjson");
    await writeClickstream(input, { count: 800, seed: 29, defectRate: 0.12 });
    const out = join(dir.path, "out");
    const original = await clickstream(input, out, { encoders: 0 });
    const folder = join(out, "dead-letter");
    let entries = 0;
    for await (const _ of streamDeadLetters(folder)) entries++;

    const died = await sluice(["dead-letter", "replay", folder, FIXED, "--out", out, "--max-file-rows", "2", "--fail-after-commits", "2", "--run-id", "replay-died"]);
    expect(died.code).toBe(1);
    expect(existsSync(join(folder, "replay.lock"))).toBe(true);

    const both = await Promise.all([1, 2].map((n) => sluice(["dead-letter", "replay", folder, FIXED, "--out", out, "--run-id", `racer-${n}`, "--json"])));
    const finished = both.filter((r) => r.code === 0).map((r) => JSON.parse(r.stdout));
    const rolledBack = finished.filter((r) => r.rolledBack?.runId === "replay-died");
    expect(rolledBack.length).toBe(1);
    expect(finished.reduce((sum, r) => sum + r.replayed, 0)).toBe(entries);
    for (const refused of both.filter((r) => r.code !== 0)) {
      expect(refused.code).toBe(2);
      expect(refused.stderr).toContain("another replay");
    }

    const [{ n, ids }] = await query(`SELECT count(*)::INT AS n, count(DISTINCT event_id)::INT AS ids FROM ${dataset(join(out, "events"))}`);
    expect(n).toBe(ids);
    expect(n).toBe(original.written + rolledBack[0].summary.written);
    expect(readdirSync(folder).filter((name) => name.includes("replay-died") || name === "replay.lock")).toEqual([]);
  });
});
