import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { datesOf, eventsFor } from "../../examples/platform/daily.ts";
import { dataset, query, tempDir } from "../helpers/duckdb.ts";

const root = join(import.meta.dir, "../..");
const PER_DAY = 3000;
const DATES = ["2024-03-01", "2024-03-02", "2024-03-03"];

/** The rows a date should hold: its generated events without a planted defect. */
function validCount(date: string): number {
  let count = 0;
  for (const line of eventsFor(date, PER_DAY)) if (!line.defect) count++;
  return count;
}

async function partitionCounts(out: string): Promise<Record<string, number>> {
  const rows = await query(`SELECT event_date::VARCHAR AS d, count(*) AS n FROM ${dataset(join(out, "events"))} GROUP BY ALL ORDER BY d`);
  return Object.fromEntries(rows.map((r) => [r.d as string, Number(r.n)]));
}

describe("the platform example", () => {
  let dir: { path: string; remove: () => Promise<void> };
  beforeAll(async () => {
    dir = await tempDir("sluice-platform-");
  });
  afterAll(() => dir.remove());

  test("lists both pipelines, backfills 3 dates with one run each, and re-running replaces rather than duplicates", async () => {
    const out = join(dir.path, "platform");
    const runScript = async () => {
      const child = Bun.spawn(["bun", join(root, "examples/platform.ts"), out, "--per-day", String(PER_DAY)], { cwd: root, stdout: "pipe", stderr: "pipe" });
      const [code, stdout, stderr] = await Promise.all([child.exited, new Response(child.stdout).text(), new Response(child.stderr).text()]);
      expect(stderr).toBe("");
      expect(code).toBe(0);
      return stdout;
    };
    const stdout = await runScript();
    expect(stdout).toMatch(/^ {2}clickstream\s+clickstream NDJSON/m);
    expect(stdout).toMatch(/^ {2}daily\s+daily events job/m);

    const expected = Object.fromEntries(DATES.map((d) => [d, validCount(d)]));
    for (const date of DATES) {
      const line = new RegExp(`^ {2}${date}\\s+run (\\S+)\\s+in ([\\d,]+)\\s+written ([\\d,]+)`, "m").exec(stdout);
      expect(line).not.toBeNull();
      expect(Number(line![2].replaceAll(",", ""))).toBe(PER_DAY);
      expect(Number(line![3].replaceAll(",", ""))).toBe(expected[date]);
    }
    expect(await partitionCounts(out)).toEqual(expected);

    const before = (await readdir(join(out, "events"), { recursive: true })).filter((f) => f.endsWith(".parquet"));
    await runScript();
    expect(await partitionCounts(out)).toEqual(expected);
    const after = (await readdir(join(out, "events"), { recursive: true })).filter((f) => f.endsWith(".parquet"));
    // The files of the first backfill are gone: each date now holds only the second run's files.
    expect(after.some((f) => before.includes(f))).toBe(false);
  });

  test("sluice run of the daily job for one date replaces that date only", async () => {
    const out = join(dir.path, "one-date");
    const sluice = (args: string[]) =>
      Bun.spawn(["bun", join(root, "src/cli/main.ts"), "run", join(root, "examples/platform/daily.ts"), ...args, "--out", out, "--per-day", String(PER_DAY)], {
        cwd: root,
        stdout: "pipe",
        stderr: "pipe",
      }).exited;
    expect(await sluice(["--from", "2024-03-01", "--to", "2024-03-02"])).toBe(0);
    const firstDay = (await readdir(join(out, "events", "event_date=2024-03-01"))).sort();
    expect(await sluice(["--date", "2024-03-02"])).toBe(0);
    expect((await readdir(join(out, "events", "event_date=2024-03-01"))).sort()).toEqual(firstDay);
    expect(await partitionCounts(out)).toEqual({ "2024-03-01": validCount("2024-03-01"), "2024-03-02": validCount("2024-03-02") });
  });

  test("the daily job's dates: one date, an inclusive range, and clear refusals", () => {
    expect(datesOf(["--date", "2024-02-29"])).toEqual(["2024-02-29"]);
    expect(datesOf(["--from", "2024-02-28", "--to", "2024-03-01"])).toEqual(["2024-02-28", "2024-02-29", "2024-03-01"]);
    expect(() => datesOf([])).toThrow("give --date");
    expect(() => datesOf(["--date", "2023-02-29"])).toThrow("--date must be a date");
    expect(() => datesOf(["--date", "2024-3-1"])).toThrow("--date must be a date");
    expect(() => datesOf(["--from", "2024-03-02", "--to", "2024-03-01"])).toThrow("before --from");
    expect(() => datesOf(["--date", "2024-03-01", "--from", "2024-03-01"])).toThrow("not both");
    expect(() => datesOf(["--from", "2020-01-01", "--to", "2024-01-01"])).toThrow("at most 366 days");
  });
});
