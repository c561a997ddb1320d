import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { datesOf, eventsFor, runDates } from "../../examples/platform/daily.ts";
import { discoverPipelines } from "../../src/run/discover.ts";
import { createLogger } from "../../src/run/log.ts";
import { parseSchedule } from "../../src/run/pipeline.ts";
import { ManualClock, Scheduler } from "../../src/run/schedule.ts";
import { dataset, query, tempDir } from "../helpers/duckdb.ts";

const root = join(import.meta.dir, "../..");
const PER_DAY = 1000;
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

  test("lists both pipelines and the daily job's schedule, backfills 3 dates with one run each, a re-run skips them, and --restart replaces rather than duplicates", async () => {
    const out = join(dir.path, "platform");
    const runScript = async (...extra: string[]) => {
      const child = Bun.spawn(["bun", join(root, "examples/platform.ts"), out, "--per-day", String(PER_DAY), ...extra], { cwd: root, stdout: "pipe", stderr: "pipe" });
      const [code, stdout, stderr] = await Promise.all([child.exited, new Response(child.stdout).text(), new Response(child.stderr).text()]);
      expect(stderr).toBe("");
      expect(code).toBe(0);
      return stdout;
    };
    const stdout = await runScript();
    expect(stdout).toMatch(/^ {2}clickstream\s+clickstream NDJSON/m);
    expect(stdout).toMatch(/^ {2}daily\s+daily events job/m);
    expect(stdout).toMatch(/^ +schedule 0 2 \* \* \* \(UTC\): next runs \d{4}-\d{2}-\d{2}T02:00:00\.000Z, /m);

    const expected = Object.fromEntries(DATES.map((d) => [d, validCount(d)]));
    for (const date of DATES) {
      const line = new RegExp(`^ {2}${date}\\s+run (\\S+)\\s+in ([\\d,]+)\\s+written ([\\d,]+)`, "m").exec(stdout);
      expect(line).not.toBeNull();
      expect(Number(line![2].replaceAll(",", ""))).toBe(PER_DAY);
      expect(Number(line![3].replaceAll(",", ""))).toBe(expected[date]);
    }
    expect(await partitionCounts(out)).toEqual(expected);

    const before = (await readdir(join(out, "events"), { recursive: true })).filter((f) => f.endsWith(".parquet"));
    // The backfill's state says every date is done: nothing runs, nothing changes.
    const again = await runScript();
    for (const date of DATES) expect(again).toContain(`  ${date}  already done`);
    expect((await readdir(join(out, "events"), { recursive: true })).filter((f) => f.endsWith(".parquet")).sort()).toEqual([...before].sort());

    await runScript("--restart");
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

  test("scheduled at 02:00, the daily job processes the day that has just ended", async () => {
    const out = join(dir.path, "scheduled");
    const daily = (await discoverPipelines(join(root, "examples/platform"))).find((p) => p.name === "daily");
    if (!daily?.ok || !daily.schedule) throw new Error("daily has no schedule");
    // The module's schedule, with arguments that write into the test's folder.
    const schedule = parseSchedule({ cron: daily.schedule.cron, timezone: daily.schedule.timezone, args: ["--out", out, "--per-day", String(PER_DAY)] }, daily.path);
    const clock = new ManualClock("2024-03-02T01:59:00Z");
    const finished: string[] = [];
    const scheduler = new Scheduler([{ name: "daily", pipeline: daily.pipeline, schedule }], {
      clock,
      logs: join(dir.path, "scheduled-logs"),
      log: createLogger({ write: () => {} }),
      onEvent: (e) => {
        if (e.type === "finished" || e.type === "failed") finished.push(e.type === "failed" ? `failed: ${e.error}` : e.scheduledAt.toISOString());
      },
    });
    scheduler.start();
    await clock.advanceTo("2024-03-02T02:00:00Z");
    for (const deadline = Date.now() + 30_000; finished.length === 0 && Date.now() < deadline; ) await Bun.sleep(10);
    await scheduler.stop();
    expect(finished).toEqual(["2024-03-02T02:00:00.000Z"]);
    expect(await partitionCounts(out)).toEqual({ "2024-03-01": validCount("2024-03-01") });
  });

  test("the daily job's dates come from the backfill or the schedule, and refuse --date beside them", () => {
    expect(runDates({ args: ["--out", "o"], date: "2024-03-05" })).toEqual(["2024-03-05"]);
    expect(runDates({ args: ["--out", "o"], scheduledAt: new Date("2024-03-01T02:00:00Z") })).toEqual(["2024-02-29"]);
    expect(runDates({ args: ["--date", "2024-03-07"] })).toEqual(["2024-03-07"]);
    expect(() => runDates({ args: ["--date", "2024-03-07"], date: "2024-03-05" })).toThrow("this run is for 2024-03-05 (--backfill); --date, --from and --to cannot be given too");
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
