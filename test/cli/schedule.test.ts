import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { dataset, query, tempDir } from "../helpers/duckdb.ts";

const root = join(import.meta.dir, "../..");
const main = join(root, "src/cli/main.ts");
const imports = (file: string) => JSON.stringify(join(root, file));

async function sluice(args: string[], cwd = root) {
  const child = Bun.spawn(["bun", main, ...args], { cwd, stdout: "pipe", stderr: "pipe" });
  const [code, stdout, stderr] = await Promise.all([child.exited, new Response(child.stdout).text(), new Response(child.stderr).text()]);
  return { code, stdout, stderr };
}

/** A module that reads nothing, on `schedule`. */
const idle = (schedule: string) => `import { EMPTY } from "rxjs";
import { definePipeline } from ${imports("src/run/pipeline.ts")};
export default definePipeline({ description: "idle", schedule: ${schedule}, source: () => EMPTY, process: (r) => r });
`;

/**
 * A module due every second whose runs never end by themselves: rows from a generator, buffered
 * by the sink (nothing is committed before the run stops), so only a clean stop writes them.
 */
const endless = (out: string) => `import * as v from "valibot";
import { definePipeline } from ${imports("src/run/pipeline.ts")};
import { fromGenerator, toParquet } from ${imports("src/index.ts")};
import { validate } from ${imports("operators/index.ts")};
const Row = v.object({ id: v.number(), at: v.string() });
export default definePipeline({
  description: "endless rows",
  schedule: "* * * * * *",
  source: () => fromGenerator({ producers: [{ name: "rows", rate: { events: 200, perMs: 100 }, make: (_r, i, t) => ({ id: i, at: new Date(t).toISOString() }) }] }),
  process: (records, { runId }) => records.pipe(validate(Row), toParquet(${JSON.stringify(out)} + "/" + runId, { schema: Row, encoders: 0 })),
});
`;

describe("sluice schedule", () => {
  let dir: { path: string; remove: () => Promise<void> };
  beforeAll(async () => {
    dir = await tempDir("sluice-cli-schedule-");
  });
  afterAll(() => dir.remove());

  test("--dry-run prints each scheduled pipeline and the next runs of all of them in time order", async () => {
    const folder = join(dir.path, "dry");
    await Bun.write(join(folder, "hourly.ts"), idle(`"15 * * * *"`));
    await Bun.write(join(folder, "nightly.ts"), idle(`{ cron: "0 2 * * *", timezone: "Europe/Berlin" }`));
    await Bun.write(join(folder, "manual.ts"), idle("undefined"));
    const { code, stdout } = await sluice(["schedule", folder, "--dry-run", "--at", "2024-03-01T00:00:00Z", "--count", "4"]);
    expect(code).toBe(0);
    expect(stdout).toBe(
      [
        "2 scheduled pipelines:",
        "  hourly   15 * * * * (UTC)",
        "  nightly  0 2 * * * (Europe/Berlin)",
        "not scheduled: manual",
        "",
        "the next 4 runs after 2024-03-01T00:00:00.000Z:",
        "  2024-03-01T00:15:00.000Z  hourly",
        "  2024-03-01T01:00:00.000Z  nightly",
        "  2024-03-01T01:15:00.000Z  hourly",
        "  2024-03-01T02:15:00.000Z  hourly",
        "",
      ].join("\n"),
    );
    const json = await sluice(["schedule", folder, "--dry-run", "--at", "2024-03-01T00:00:00Z", "--count", "2", "--log-format", "json"]);
    expect(JSON.parse(json.stdout).runs).toEqual([
      { pipeline: "hourly", at: "2024-03-01T00:15:00.000Z" },
      { pipeline: "nightly", at: "2024-03-01T01:00:00.000Z" },
    ]);

    const list = await sluice(["list", folder, "--json"]);
    const rows = JSON.parse(list.stdout) as { name: string; schedule: { cron: string; timezone: string; next: string } | null }[];
    expect(rows.map((r) => [r.name, r.schedule?.cron ?? null, r.schedule?.timezone ?? null])).toEqual([
      ["hourly", "15 * * * *", "UTC"],
      ["manual", null, null],
      ["nightly", "0 2 * * *", "Europe/Berlin"],
    ]);
    expect(Date.parse(rows[0]?.schedule?.next ?? "")).toBeGreaterThan(Date.now());
    expect((await sluice(["list", folder])).stdout).toMatch(/^ {2} {7} {2}schedule 15 \* \* \* \* \(UTC\), next run \d{4}-/m);
  });

  test("refuses to start when a module's schedule is not a cron expression, naming the module, and when nothing is scheduled", async () => {
    const folder = join(dir.path, "bad");
    await Bun.write(join(folder, "good.ts"), idle(`"0 * * * *"`));
    await Bun.write(join(folder, "typo.ts"), idle(`"0 2 * * MON-FUN"`));
    const { code, stderr } = await sluice(["schedule", folder]);
    expect(code).toBe(2);
    expect(stderr).toContain(`${join(folder, "typo.ts")}: schedule "0 2 * * MON-FUN" is not a valid cron expression`);
    expect(stderr).toContain("1 module(s) in");

    const none = join(dir.path, "none");
    await Bun.write(join(none, "manual.ts"), idle("undefined"));
    const empty = await sluice(["schedule", none]);
    expect(empty.code).toBe(2);
    expect(empty.stderr).toContain(`no pipeline in ${none} has a schedule`);

    const usage = await sluice(["schedule", none, "--at", "yesterday", "--dry-run"]);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain("--at must be an ISO 8601 instant");
    const help = await sluice(["schedule", "--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("--dry-run");
  });

  test("SIGTERM while a run is going lets it commit what it buffered, then exits 143; its log file is named by its run id", async () => {
    const folder = join(dir.path, "live");
    const out = join(dir.path, "live-out");
    const logs = join(dir.path, "live-logs");
    await Bun.write(join(folder, "endless.ts"), endless(out));
    const child = Bun.spawn(["bun", main, "schedule", folder, "--logs", logs, "--progress-interval", "0.1"], { cwd: root, stdout: "pipe", stderr: "pipe" });
    const stderr = new Response(child.stderr).text();
    // Wait until a run has started and its log shows rows read (a progress line).
    const deadline = Date.now() + 30_000;
    let logFile = "";
    for (;;) {
      const files = await readdir(join(logs, "endless")).catch(() => [] as string[]);
      if (files[0]) {
        logFile = join(logs, "endless", files[0]);
        if (/progress: in [1-9]/.test(await Bun.file(logFile).text())) break;
      }
      if (Date.now() > deadline) throw new Error(`no run read rows within 30 s: ${await Bun.file(logFile).text().catch(() => "no log")}`);
      await Bun.sleep(20);
    }
    child.kill("SIGTERM");
    const code = await child.exited;
    const text = await stderr;
    expect(code).toBe(143);
    expect(text).toContain("SIGTERM received: no more runs start; waiting for endless (run");
    expect(text).toContain("scheduler stopped: every run has ended");

    const runId = (await readdir(join(logs, "endless")))[0]?.replace(/\.log$/, "") ?? "";
    expect(runId).toMatch(/^\d{8}T\d{6}Z-[a-z0-9]{6}$/);
    const log = await Bun.file(join(logs, "endless", `${runId}.log`)).text();
    expect(log).toContain(`run ${runId} of endless (${join(folder, "endless.ts")}) due at`);
    expect(log).toContain("run stopped by the scheduler's shutdown after committing what was buffered");
    // The summary's line (progress lines say "written 0" while the rows are buffered).
    const written = Number(/ info {2}written {2,}([\d,]+)$/m.exec(log)?.[1]?.replaceAll(",", ""));
    expect(written).toBeGreaterThan(0);
    const [{ n, ids }] = await query(`SELECT count(*) AS n, count(DISTINCT id) AS ids FROM ${dataset(join(out, runId))}`);
    expect(Number(n)).toBe(written);
    expect(Number(ids)).toBe(written);
  });
});
