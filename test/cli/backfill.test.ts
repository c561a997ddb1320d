import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { parseRunArgs } from "../../src/cli/run.ts";
import { backfillPipeline, MAX_BACKFILL_DAYS, parseDateRange, readState } from "../../src/run/backfill.ts";
import { definePipeline } from "../../src/run/pipeline.ts";
import { createLogger } from "../../src/run/log.ts";
import { EMPTY, throwError } from "rxjs";
import { dataset, query, tempDir } from "../helpers/duckdb.ts";

const root = join(import.meta.dir, "../..");
const main = join(root, "src/cli/main.ts");
const daily = join(root, "examples/platform/daily.ts");
const PER_DAY = 300;

async function sluice(args: string[], cwd = root) {
  const child = Bun.spawn(["bun", main, ...args], { cwd, stdout: "pipe", stderr: "pipe" });
  const [code, stdout, stderr] = await Promise.all([child.exited, new Response(child.stdout).text(), new Response(child.stderr).text()]);
  return { code, stdout, stderr };
}

/**
 * A pipeline module for the failure tests: writes `--rows` rows for its date (context.date, or
 * --date) to <out>/rows/day=<date>/, replacing that partition, and fails the run (an error from
 * the source, as an unreadable input would) when the file --fail-list names its date.
 */
function flakyModule(): string {
  return `import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Observable } from "rxjs";
import * as v from "valibot";
import { definePipeline } from ${JSON.stringify(join(root, "src/run/pipeline.ts"))};
import { toParquet } from ${JSON.stringify(join(root, "src/index.ts"))};
import { currentFlow } from ${JSON.stringify(join(root, "src/flow/flow.ts"))};
import { Input, stamp } from ${JSON.stringify(join(root, "src/flow/position.ts"))};

const Row = v.object({ id: v.number(), day: v.string(), value: v.string() });
const opts = (args: readonly string[]) =>
  parseArgs({ args: [...args], options: { out: { type: "string" }, rows: { type: "string" }, "fail-list": { type: "string" }, date: { type: "string" } } }).values;

export default definePipeline({
  description: "flaky per-date rows",
  source({ args, date }) {
    const o = opts(args);
    const day = date ?? o.date;
    if (!day || !o.out) throw new Error("--out and a date are needed");
    return new Observable((subscriber) => {
      const flow = currentFlow();
      const input = new Input(flow, "rows/" + day);
      rmSync(join(o.out!, "rows", "day=" + day), { recursive: true, force: true });
      const failing = o["fail-list"] && existsSync(o["fail-list"]) ? readFileSync(o["fail-list"], "utf8").split("\\n") : [];
      if (failing.includes(day)) {
        subscriber.error(new Error("input for " + day + " is not there yet"));
        return;
      }
      for (let i = 1; i <= Number(o.rows ?? 5); i++) subscriber.next(stamp({ id: i, day, value: day + "#" + i }, input.at(i)));
      subscriber.complete();
    });
  },
  process: (records, { args }) => records.pipe(toParquet(join(opts(args).out!, "rows"), { schema: Row, partitionBy: ["day"], mode: "append", encoders: 0 })),
});
`;
}

describe("sluice run --backfill", () => {
  let dir: { path: string; remove: () => Promise<void> };
  let flaky: string;
  beforeAll(async () => {
    dir = await tempDir("sluice-backfill-");
    flaky = join(dir.path, "pipelines", "flaky.ts");
    await Bun.write(flaky, flakyModule());
  });
  afterAll(() => dir.remove());

  test("a backfill over 3 dates writes the same 3 partitions as 3 single runs, each date one run with its own run id", async () => {
    const backfilled = join(dir.path, "daily-backfill");
    const single = join(dir.path, "daily-single");
    const state = join(dir.path, "daily-state.json");
    const common = ["--out", backfilled, "--per-day", String(PER_DAY), "--no-progress"];
    const result = await sluice(["run", daily, "--backfill", "2024-03-01..2024-03-03", "--backfill-state", state, ...common]);
    expect(result.stderr).toContain("date 3 of 3: 2024-03-03");
    expect(result.code).toBe(0);
    // Three single runs at once, each into its own folder (one writer per dataset folder).
    const singles = await Promise.all(
      ["2024-03-01", "2024-03-02", "2024-03-03"].map((date) => sluice(["run", daily, "--date", date, "--out", join(single, date), "--per-day", String(PER_DAY), "--no-progress"])),
    );
    expect(singles.map((r) => r.code)).toEqual([0, 0, 0]);
    const counts = await query(`SELECT event_date::VARCHAR AS d, count(*) AS n FROM ${dataset(join(backfilled, "events"))} GROUP BY ALL ORDER BY d`);
    expect(counts.map((r) => r.d)).toEqual(["2024-03-01", "2024-03-02", "2024-03-03"]);
    expect(counts.every((r) => Number(r.n) > PER_DAY * 0.9)).toBe(true);
    const a = dataset(join(backfilled, "events"));
    const b = `read_parquet('${single}/*/events/**/*.parquet', hive_partitioning = true)`;
    const [diff] = await query(
      `SELECT (SELECT count(*) FROM (SELECT * FROM ${a} EXCEPT ALL SELECT * FROM ${b})) AS only_a, (SELECT count(*) FROM (SELECT * FROM ${b} EXCEPT ALL SELECT * FROM ${a})) AS only_b, (SELECT count(*) FROM ${a}) AS n`,
    );
    expect(diff).toEqual({ only_a: "0", only_b: "0", n: String(counts.reduce((s, r) => s + Number(r.n), 0)) });

    const recorded = readState(state);
    expect(Object.keys(recorded?.done ?? {})).toEqual(["2024-03-01", "2024-03-02", "2024-03-03"]);
    const runIds = Object.values(recorded?.done ?? {}).map((d) => d.runId);
    expect(new Set(runIds).size).toBe(3);
    // Each date's partition holds only the files of its own run.
    for (const [date, done] of Object.entries(recorded?.done ?? {})) {
      const files = await readdir(join(backfilled, "events", `event_date=${date}`));
      expect(files.length).toBeGreaterThan(0);
      expect(files.every((f) => f.startsWith(`part-${done.runId}-`))).toBe(true);
    }
  });

  test("a failing date stops the backfill; running it again resumes at that date without redoing the earlier ones", async () => {
    const out = join(dir.path, "flaky-out");
    const failList = join(dir.path, "fail-list");
    await Bun.write(failList, "2024-03-02\n");
    const args = ["run", flaky, "--backfill", "2024-03-01..2024-03-04", "--out", out, "--fail-list", failList, "--no-progress", "--run-id", "bf"];
    const first = await sluice(args);
    expect(first.code).toBe(1);
    expect(first.stderr).toContain("input for 2024-03-02 is not there yet");
    expect(first.stderr).toContain("2024-03-02 failed (input for 2024-03-02 is not there yet); 2 later date(s) not run. Run the same backfill again to resume from 2024-03-02");
    expect((await readdir(join(out, "rows"))).sort()).toEqual(["day=2024-03-01"]);
    const firstDayFiles = await readdir(join(out, "rows", "day=2024-03-01"));
    expect(firstDayFiles.every((f) => f.startsWith("part-bf-2024-03-01-"))).toBe(true);

    // The default state file: beside the module, named by the pipeline and the range.
    const state = join(dir.path, "pipelines", ".sluice", "backfill", "flaky", "2024-03-01..2024-03-04.json");
    const recorded = readState(state);
    expect(Object.keys(recorded?.done ?? {})).toEqual(["2024-03-01"]);
    expect(recorded?.lastFailure).toMatchObject({ date: "2024-03-02", runId: "bf-2024-03-02", error: "input for 2024-03-02 is not there yet" });

    // The input arrives; the same command resumes at 2024-03-02.
    await rm(failList);
    const second = await sluice(args);
    expect(second.code).toBe(0);
    expect(second.stderr).toContain("1 of 4 dates already done");
    expect(second.stderr).not.toContain("date 1 of 4");
    expect(second.stderr).toContain("date 2 of 4: 2024-03-02");
    expect(await readdir(join(out, "rows", "day=2024-03-01"))).toEqual(firstDayFiles);
    const rows = await query(`SELECT day::VARCHAR AS day, count(*) AS n, min(value) AS first FROM ${dataset(join(out, "rows"))} GROUP BY ALL ORDER BY day`);
    expect(rows).toEqual(["2024-03-01", "2024-03-02", "2024-03-03", "2024-03-04"].map((day) => ({ day, n: "5", first: `${day}#1` })));
    expect(readState(state)?.lastFailure).toBeUndefined();

    // A resume with other pipeline arguments is refused: the recorded dates were made with these.
    const other = await sluice([...args, "--rows", "3"]);
    expect(other.code).toBe(2);
    expect(other.stderr).toContain(`backfill state ${state} was written by a backfill with other pipeline arguments (--out ${out} --fail-list ${failList})`);
    expect(other.stderr).toContain("--backfill-restart starts over");

    // --backfill-restart forgets the recorded dates and runs every one again.
    const again = await sluice([...args, "--backfill-restart"]);
    expect(again.code).toBe(0);
    expect(again.stderr).toContain("done, 4 date(s) run now, 0 done before");
    expect(again.stderr).toContain("date 1 of 4: 2024-03-01");
  });

  test("a reversed range is refused with exit 2 before anything runs", async () => {
    const out = join(dir.path, "never");
    const result = await sluice(["run", flaky, "--backfill", "2024-03-31..2024-03-01", "--out", out]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('sluice run: --backfill: "2024-03-31..2024-03-01" is reversed: 2024-03-31 comes after 2024-03-01; write the earlier date first');
    expect(await Bun.file(out).exists()).toBe(false);
  });

  test.each([
    ["2024-03-01...2024-03-31", '--backfill: "2024-03-01...2024-03-31" is not a date range: TO ".2024-03-31" is not a date YYYY-MM-DD'],
    ["2024-3-1..2024-03-31", '--backfill: "2024-3-1..2024-03-31" is not a date range: FROM "2024-3-1" is not a date YYYY-MM-DD'],
    ["2023-02-29..2023-03-01", '--backfill: "2023-02-29..2023-03-01": FROM 2023-02-29 is not a date that exists'],
    ["march", '--backfill: "march" is not a date range: FROM "march" is not a date YYYY-MM-DD'],
  ])("the command line refuses the malformed range %p", (range, message) => {
    expect(() => parseRunArgs(["pipeline.ts", "--backfill", range])).toThrow(message);
  });

  test("--backfill-state without --backfill is a usage error, and --help shows the backfill options", async () => {
    expect(() => parseRunArgs([flaky, "--backfill-state", "x.json", "--out", "o"])).toThrow("--backfill-state and --backfill-restart go with --backfill FROM..TO");
    // A run id that leaves no room for the date: refused before anything runs.
    expect(() => parseRunArgs([flaky, "--backfill", "2024-03-01", "--run-id", "r".repeat(120)])).toThrow("--run-id with --backfill (each date's run id is <run id>-<date>)");
    expect(parseRunArgs([flaky, "--backfill", "2024-03-01..2024-03-02", "--backfill-restart", "--out", "o"])).toMatchObject({
      backfill: ["2024-03-01", "2024-03-02"],
      backfillRestart: true,
      pipelineArgs: ["--out", "o"],
    });
    const help = await sluice(["run", "--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("--backfill FROM..TO");
    expect(help.stdout).toContain("--backfill-restart");
  });
});

describe("parseDateRange and backfillPipeline", () => {
  test("ranges are inclusive, cross months and leap days, and a single date is a range of one", () => {
    expect(parseDateRange("2024-02-28..2024-03-01")).toEqual(["2024-02-28", "2024-02-29", "2024-03-01"]);
    expect(parseDateRange("2023-12-31..2024-01-01")).toEqual(["2023-12-31", "2024-01-01"]);
    expect(parseDateRange("2024-03-05")).toEqual(["2024-03-05"]);
    expect(parseDateRange("2024-03-05..2024-03-05")).toEqual(["2024-03-05"]);
    expect(parseDateRange(" 2024-03-05..2024-03-06 ")).toHaveLength(2);
  });

  test.each([
    ["", "is not a date range"],
    ["..", "is not a date range"],
    ["2024-03-01..", "is not a date range"],
    ["2024-03-01 .. 2024-03-02", "is not a date range"],
    ["2024-13-01..2024-13-02", "FROM 2024-13-01 is not a date that exists"],
    ["0000-01-01..9999-12-31", `covers 3652425 days; a backfill covers at most ${MAX_BACKFILL_DAYS}`],
    [`${"2024-03-01..".repeat(1000)}`, "is not a date range"],
  ])("refuses %#", (range, message) => {
    expect(() => parseDateRange(range, "--backfill")).toThrow(message);
  });

  test("backfillPipeline gives each date to the pipeline through context.date and stops at a failed date", async () => {
    const dir = await tempDir("sluice-backfill-lib-");
    try {
      const seen: string[] = [];
      const pipeline = definePipeline({
        description: "d",
        source: ({ date }) => {
          seen.push(date ?? "none");
          return date === "2024-03-03" ? throwError(() => new Error("no input for 2024-03-03")) : EMPTY;
        },
        process: (records) => records,
      });
      const state = join(dir.path, "state.json");
      const log = createLogger({ write: () => {} });
      const first = await backfillPipeline(pipeline, "2024-03-01..2024-03-05", { state, name: "d", log });
      expect(seen).toEqual(["2024-03-01", "2024-03-02", "2024-03-03"]);
      expect(first).toMatchObject({ ran: ["2024-03-01", "2024-03-02"], failed: { date: "2024-03-03", error: "no input for 2024-03-03" }, notRun: ["2024-03-04", "2024-03-05"] });
      const second = await backfillPipeline(pipeline, "2024-03-01..2024-03-05", { state, name: "d", log });
      expect(seen.slice(3)).toEqual(["2024-03-03"]);
      expect(second.alreadyDone).toEqual(["2024-03-01", "2024-03-02"]);
      await expect(backfillPipeline(pipeline, "2024-03-05..2024-03-01", { state, log })).rejects.toThrow("is reversed");
      await expect(backfillPipeline(pipeline, "2024-03-01..2024-03-05", { state, name: "other", log })).rejects.toThrow("belongs to pipeline d");
      // Credentials among the arguments are masked in the state file.
      const secretState = join(dir.path, "secret.json");
      await backfillPipeline(pipeline, "2024-03-01", { state: secretState, args: ["--db", "postgres://app:s3cr3t@db/x", "--password", "hunter2"], log });
      const text = await Bun.file(secretState).text();
      expect(text).toContain("postgres://app:***@db/x");
      expect(text).not.toContain("s3cr3t");
      expect(text).not.toContain("hunter2");

      await Bun.write(state, "{ torn");
      await expect(backfillPipeline(pipeline, "2024-03-01..2024-03-05", { state, name: "d", log })).rejects.toThrow(`backfill state ${state} is not JSON`);
    } finally {
      await dir.remove();
    }
  });
});
