import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { closeSync, openSync } from "node:fs";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { EMPTY, Observable } from "rxjs";
import * as v from "valibot";
import { validate } from "../../operators/index.ts";
import type { Flow } from "../../src/flow/flow.ts";
import { fromGenerator, toParquet } from "../../src/index.ts";
import { loadPipeline, PipelineLoadError } from "../../src/run/discover.ts";
import { createLogger } from "../../src/run/log.ts";
import { definePipeline, type Pipeline, type PipelineContext, parseSchedule } from "../../src/run/pipeline.ts";
import { ManualClock, type ScheduleEvent, Scheduler, scheduledRunId, upcomingRuns } from "../../src/run/schedule.ts";
import { dataset, query, tempDir } from "../helpers/duckdb.ts";

const root = join(import.meta.dir, "../..");

/** Polls until `check` is true; the deadline only turns a hang into a failure, it asserts no speed. */
async function until(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(2);
  }
}

/** A pipeline that records each context it runs with and reads nothing. */
function recording(schedule: Pipeline["schedule"], contexts: PipelineContext[]): Pipeline {
  return definePipeline({
    description: "records its contexts",
    ...(schedule === undefined ? {} : { schedule }),
    source: (context) => {
      contexts.push(context);
      return EMPTY;
    },
    process: (records) => records,
  });
}

/** A pipeline whose runs last until `release()` (or until the run is stopped). */
function holding(schedule: string) {
  const waiting: (() => void)[] = [];
  const pipeline = definePipeline({
    description: "holds each run open",
    schedule,
    source: () =>
      new Observable<unknown>((subscriber) => {
        waiting.push(() => subscriber.complete());
      }),
    process: (records) => records,
  });
  return {
    pipeline,
    release: () => {
      for (const done of waiting.splice(0)) done();
    },
    get waiting() {
      return waiting.length;
    },
  };
}

function collectLog() {
  const lines: string[] = [];
  return { lines, log: createLogger({ write: (line) => lines.push(line) }) };
}

/**
 * A scheduler over one pipeline that generates rows without end into `<out>/rows` (Parquet), under
 * a manual clock at 2024-03-01T00:00Z; `flow()` is its current run's flow.
 */
function endless(schedule: Pipeline["schedule"], out: string, logs: string) {
  const clock = new ManualClock("2024-03-01T00:00:00Z");
  const Row = v.object({ id: v.number(), at: v.string() });
  const pipeline = definePipeline({
    description: "endless rows",
    ...(schedule === undefined ? {} : { schedule }),
    source: () => fromGenerator({ producers: [{ name: "rows", rate: { events: 500, perMs: 100 }, make: (_r, i, t) => ({ id: i, at: new Date(t).toISOString() }) }] }),
    process: (records) => records.pipe(validate(Row), toParquet(join(out, "rows"), { schema: Row, encoders: 0 })),
  });
  const events: ScheduleEvent[] = [];
  let flow: Flow | undefined;
  const scheduler = new Scheduler([{ name: "endless", pipeline }], {
    clock,
    logs,
    log: collectLog().log,
    onEvent: (e) => events.push(e),
    watch: (started) => {
      flow = started;
      return () => {};
    },
  });
  return { clock, scheduler, events, flow: () => flow };
}

describe("Scheduler under a manual clock", () => {
  let dir: { path: string; remove: () => Promise<void> };
  beforeAll(async () => {
    dir = await tempDir("sluice-schedule-");
  });
  afterAll(() => dir.remove());

  test("fires at each cron time and not before, each run with its own run id, context and log file", async () => {
    const logs = join(dir.path, "fires");
    const clock = new ManualClock("2024-03-01T10:07:00Z");
    const contexts: PipelineContext[] = [];
    const events: ScheduleEvent[] = [];
    const scheduler = new Scheduler([{ name: "quarter", pipeline: recording({ cron: "*/15 * * * *", args: ["--out", "x"] }, contexts) }], {
      clock,
      logs,
      log: collectLog().log,
      onEvent: (e) => events.push(e),
    });
    scheduler.start();
    await clock.advanceTo("2024-03-01T10:14:59.999Z");
    expect(events).toEqual([]);
    await clock.advanceTo("2024-03-01T11:00:00Z");
    await until(() => events.filter((e) => e.type === "finished").length === 4, "4 finished runs");
    await scheduler.stop();

    const due = ["2024-03-01T10:15:00.000Z", "2024-03-01T10:30:00.000Z", "2024-03-01T10:45:00.000Z", "2024-03-01T11:00:00.000Z"];
    const started = events.filter((e) => e.type === "started");
    expect(started.map((e) => e.scheduledAt.toISOString())).toEqual(due);
    expect(contexts.map((c) => c.scheduledAt?.toISOString())).toEqual(due);
    expect(contexts.every((c) => c.args.join(" ") === "--out x" && c.date === undefined && !c.replay)).toBe(true);
    const runIds = started.map((e) => (e.type === "started" ? e.runId : ""));
    expect(new Set(runIds).size).toBe(4);
    expect(runIds[0]).toStartWith("20240301T101500Z-");
    expect(contexts.map((c) => c.runId)).toEqual(runIds);

    const files = (await readdir(join(logs, "quarter"))).sort();
    expect(files).toEqual(runIds.map((id) => `${id}.log`).sort());
    const first = await Bun.file(join(logs, "quarter", `${runIds[0]}.log`)).text();
    expect(first).toContain(`run ${runIds[0]} of quarter due at 2024-03-01T10:15:00.000Z`);
    expect(first).toContain("run finished");
    // Log lines carry the scheduler's clock, not the wall clock.
    expect(first).toStartWith("2024-03-01T10:15:00.000Z info");
  });

  test("reads the expression in the schedule's time zone, and 6 fields mean seconds", async () => {
    const clock = new ManualClock("2024-03-30T00:00:00Z");
    const berlin: PipelineContext[] = [];
    const seconds: PipelineContext[] = [];
    const everySeconds = new Scheduler([{ name: "seconds", pipeline: recording("*/20 * * * * *", seconds) }], {
      clock,
      logs: join(dir.path, "zones"),
      log: collectLog().log,
    });
    const scheduler = new Scheduler([{ name: "berlin", pipeline: recording({ cron: "0 2 * * *", timezone: "Europe/Berlin" }, berlin) }], {
      clock,
      logs: join(dir.path, "zones"),
      log: collectLog().log,
    });
    everySeconds.start();
    scheduler.start();
    await clock.advanceTo("2024-03-30T00:01:00Z");
    await until(() => seconds.length === 3, "3 runs every 20 s");
    await everySeconds.stop();
    // Across the switch to summer time (31 March): 02:00 CET is 01:00Z; from 1 April 02:00 CEST is 00:00Z.
    await clock.advanceTo("2024-04-01T12:00:00Z");
    await until(() => berlin.length === 3, "3 Berlin runs");
    await scheduler.stop();
    expect(seconds.map((c) => c.scheduledAt?.toISOString().slice(11, 19))).toEqual(["00:00:20", "00:00:40", "00:01:00"]);
    expect(berlin.map((c) => c.scheduledAt?.toISOString())).toEqual([
      "2024-03-30T01:00:00.000Z",
      // 02:00 does not exist on 31 March in Berlin; croner runs a fixed-time job at the first time after the gap.
      "2024-03-31T01:00:00.000Z",
      "2024-04-01T00:00:00.000Z",
    ]);
  });

  test("skips and logs a cron time that comes while the same pipeline is still running, then runs again", async () => {
    const logs = join(dir.path, "overlap");
    const clock = new ManualClock("2024-03-01T00:00:30Z");
    const job = holding("* * * * *");
    const events: ScheduleEvent[] = [];
    const { lines, log } = collectLog();
    const scheduler = new Scheduler([{ name: "slow", pipeline: job.pipeline }], { clock, logs, log, onEvent: (e) => events.push(e) });
    scheduler.start();
    await clock.advanceTo("2024-03-01T00:01:00Z");
    await until(() => job.waiting === 1, "the first run to start reading");
    const firstId = scheduler.running.get("slow");
    expect(firstId).toStartWith("20240301T000100Z-");

    await clock.advanceTo("2024-03-01T00:02:00Z");
    expect(events.map((e) => e.type)).toEqual(["started", "skipped"]);
    expect(events[1]).toMatchObject({ type: "skipped", pipeline: "slow", runningRunId: firstId });
    expect(lines.some((l) => l.includes(`slow: skipped the run due at 2024-03-01T00:02:00.000Z: run ${firstId} is still running`))).toBe(true);
    expect(await Bun.file(join(logs, "slow", `${firstId}.log`)).text()).toContain("a run of slow due at 2024-03-01T00:02:00.000Z was skipped");

    job.release();
    await until(() => events.some((e) => e.type === "finished"), "the first run to finish");
    expect(scheduler.running.size).toBe(0);
    await clock.advanceTo("2024-03-01T00:03:00Z");
    await until(() => job.waiting === 1, "the next run");
    expect(events.filter((e) => e.type === "started").map((e) => e.scheduledAt.toISOString())).toEqual([
      "2024-03-01T00:01:00.000Z",
      "2024-03-01T00:03:00.000Z",
    ]);
    job.release();
    await scheduler.stop();
    // Two runs, two log files; the skipped time has none.
    expect((await readdir(join(logs, "slow"))).length).toBe(2);
  });

  test("runs of different pipelines due at the same time go on at once", async () => {
    const clock = new ManualClock("2024-03-01T00:00:00Z");
    const a = holding("0 * * * *");
    const b = holding("0 * * * *");
    const scheduler = new Scheduler(
      [
        { name: "a", pipeline: a.pipeline },
        { name: "b", pipeline: b.pipeline },
      ],
      { clock, logs: join(dir.path, "together"), log: collectLog().log },
    );
    scheduler.start();
    await clock.advanceTo("2024-03-01T01:00:00Z");
    await until(() => a.waiting === 1 && b.waiting === 1, "both runs to start");
    expect([...scheduler.running.keys()].sort()).toEqual(["a", "b"]);
    a.release();
    b.release();
    await scheduler.stop();
  });

  test("a failed run is logged with its error and the pipeline stays scheduled", async () => {
    const logs = join(dir.path, "fails");
    const clock = new ManualClock("2024-03-01T00:00:00Z");
    let calls = 0;
    const pipeline = definePipeline({
      description: "fails once",
      schedule: "*/5 * * * *",
      source: () =>
        new Observable<unknown>((subscriber) => {
          if (++calls === 1) subscriber.error(new Error("input out/missing.ndjson does not exist"));
          else subscriber.complete();
        }),
      process: (records) => records,
    });
    const events: ScheduleEvent[] = [];
    const { lines, log } = collectLog();
    const scheduler = new Scheduler([{ name: "flaky", pipeline }], { clock, logs, log, onEvent: (e) => events.push(e) });
    scheduler.start();
    await clock.advanceTo("2024-03-01T00:10:00Z");
    await until(() => events.filter((e) => e.type === "failed" || e.type === "finished").length === 2, "two runs to end");
    await scheduler.stop();
    const failed = events.find((e) => e.type === "failed");
    expect(failed).toMatchObject({ pipeline: "flaky", error: "input out/missing.ndjson does not exist" });
    expect(events.some((e) => e.type === "finished")).toBe(true);
    expect(lines.some((l) => l.includes("flaky: run") && l.includes("failed: input out/missing.ndjson does not exist"))).toBe(true);
    if (failed?.type !== "failed") throw new Error("no failed event");
    expect(await Bun.file(failed.logFile).text()).toContain("error run failed: input out/missing.ndjson does not exist");
  });

  test("stop() during a run lets it commit what it buffered: DuckDB reads back exactly the rows it reports written", async () => {
    const out = join(dir.path, "stopped-out");
    const { clock, scheduler, events, flow } = endless("0 * * * *", out, join(dir.path, "stopped-logs"));
    scheduler.start();
    await clock.advanceTo("2024-03-01T01:00:00Z");
    await until(() => (flow()?.stats.in ?? 0) > 200, "rows to be read");
    expect(flow()?.stats.written).toBe(0); // still buffered: nothing committed yet
    await scheduler.stop();
    const finished = events.find((e) => e.type === "finished");
    if (finished?.type !== "finished") throw new Error(`no finished event: ${JSON.stringify(events)}`);
    expect(finished.summary.stopped).toBe(true);
    expect(finished.summary.written).toBeGreaterThan(200);
    const [{ n, ids }] = await query(`SELECT count(*) AS n, count(DISTINCT id) AS ids FROM ${dataset(join(out, "rows"))}`);
    expect(Number(n)).toBe(finished.summary.written);
    expect(Number(ids)).toBe(finished.summary.written);
    expect(await Bun.file(finished.logFile).text()).toContain("run stopped by the scheduler's shutdown after committing what was buffered");
  });

  test("a credential among the scheduled arguments never reaches a log", async () => {
    const logs = join(dir.path, "secret");
    const clock = new ManualClock("2024-03-01T00:00:00Z");
    const { lines, log } = collectLog();
    const args = ["--password", "hunter2", "--db", "postgres://app:s3cr3t@db/test"];
    const scheduler = new Scheduler([{ name: "secret", pipeline: recording({ cron: "0 * * * *", args }, []) }], { clock, logs, log });
    scheduler.start();
    await clock.advanceTo("2024-03-01T01:00:00Z");
    await until(() => scheduler.running.size === 0 && lines.some((l) => l.includes("finished")), "the run");
    await scheduler.stop();
    const [file] = await readdir(join(logs, "secret"));
    const text = `${await Bun.file(join(logs, "secret", file as string)).text()}${lines.join("\n")}`;
    expect(text).toContain("--password");
    expect(text).not.toContain("hunter2");
    expect(text).not.toContain("s3cr3t");
  });

  test("retries a failed run after the delay, doubled each time, as new runs with their own ids and logs, until one finishes", async () => {
    const logs = join(dir.path, "retries");
    const clock = new ManualClock("2024-03-01T00:30:00Z");
    const contexts: PipelineContext[] = [];
    const pipeline = definePipeline({
      description: "fails twice, then works",
      schedule: { cron: "0 * * * *", retries: 3, retryDelaySeconds: 60 },
      source: (context) =>
        new Observable<unknown>((subscriber) => {
          contexts.push(context);
          if (contexts.length <= 2) subscriber.error(new Error(`the API answered 503 (call ${contexts.length})`));
          else subscriber.complete();
        }),
      process: (records) => records,
    });
    const events: ScheduleEvent[] = [];
    const { lines, log } = collectLog();
    const scheduler = new Scheduler([{ name: "api", pipeline }], { clock, logs, log, onEvent: (e) => events.push(e) });
    scheduler.start();
    await clock.advanceTo("2024-03-01T01:00:00Z");
    await until(() => events.some((e) => e.type === "failed"), "the first failure");
    // The first retry is due a minute later, the second two minutes after that: not before.
    await clock.advanceTo("2024-03-01T01:00:59Z");
    expect(contexts.length).toBe(1);
    await clock.advanceTo("2024-03-01T01:01:00Z");
    await until(() => events.filter((e) => e.type === "failed").length === 2, "the second failure");
    await clock.advanceTo("2024-03-01T01:02:59Z");
    expect(contexts.length).toBe(2);
    await clock.advanceTo("2024-03-01T01:03:00Z");
    await until(() => events.some((e) => e.type === "finished"), "the third attempt to finish");
    await scheduler.stop();

    expect(events.map((e) => `${e.type} ${"attempt" in e ? e.attempt : ""}`)).toEqual([
      "started 1",
      "failed 1",
      "started 2",
      "failed 2",
      "started 3",
      "finished 3",
    ]);
    const failed = events.filter((e) => e.type === "failed");
    expect(failed.map((e) => e.retryAt?.toISOString())).toEqual(["2024-03-01T01:01:00.000Z", "2024-03-01T01:03:00.000Z"]);
    // Every attempt is for the same cron time, with a run id and a log of its own.
    expect(contexts.map((c) => c.scheduledAt?.toISOString())).toEqual(Array(3).fill("2024-03-01T01:00:00.000Z"));
    const runIds = contexts.map((c) => c.runId);
    expect(new Set(runIds).size).toBe(3);
    expect((await readdir(join(logs, "api"))).sort()).toEqual(runIds.map((id) => `${id}.log`).sort());
    const second = await Bun.file(join(logs, "api", `${runIds[1]}.log`)).text();
    expect(second).toContain("(attempt 2 of 4)");
    expect(second).toContain("run failed: the API answered 503 (call 2); retry at 2024-03-01T01:03:00.000Z");
    expect(lines.some((l) => l.includes(`api: run ${runIds[0]} failed: the API answered 503 (call 1)`) && l.includes("retry at 2024-03-01T01:01:00.000Z"))).toBe(true);
  });

  test("gives up after the last retry until the next cron time, skips cron times while it waits, and stop() ends the wait", async () => {
    const clock = new ManualClock("2024-03-01T00:00:00Z");
    let calls = 0;
    const pipeline = definePipeline({
      description: "always fails",
      schedule: { cron: "*/10 * * * *", retries: 1, retryDelaySeconds: 900 },
      source: () =>
        new Observable<unknown>((subscriber) => {
          calls++;
          subscriber.error(new Error("database down"));
        }),
      process: (records) => records,
    });
    const events: ScheduleEvent[] = [];
    const scheduler = new Scheduler([{ name: "db", pipeline }], { clock, logs: join(dir.path, "gives-up"), log: collectLog().log, onEvent: (e) => events.push(e) });
    scheduler.start();
    await clock.advanceTo("2024-03-01T00:10:00Z");
    await until(() => events.some((e) => e.type === "failed"), "the first failure");
    // 00:20 comes while the retry (due 00:25) is waited for: skipped.
    await clock.advanceTo("2024-03-01T00:25:00Z");
    await until(() => events.filter((e) => e.type === "failed").length === 2, "the retry to fail");
    expect(events.filter((e) => e.type === "skipped").map((e) => e.scheduledAt.toISOString())).toEqual(["2024-03-01T00:20:00.000Z"]);
    const last = events.filter((e) => e.type === "failed").at(-1);
    expect(last).toMatchObject({ attempt: 2, retryAt: undefined, error: "database down" });
    // The next cron time starts afresh, with its own retry; stop() ends the wait for it.
    await clock.advanceTo("2024-03-01T00:30:00Z");
    await until(() => events.filter((e) => e.type === "failed").length === 3, "the 00:30 run to fail");
    expect(events.at(-1)).toMatchObject({ type: "failed", attempt: 1, retryAt: new Date("2024-03-01T00:45:00.000Z") });
    await scheduler.stop();
    await clock.advanceTo("2024-03-01T01:00:00Z");
    expect(calls).toBe(3);
    expect(scheduler.running.size).toBe(0);
  });

  test("a cron time skipped while a retry is waited for writes into no other file, and the logs say the run is waiting to retry", async () => {
    const logs = join(dir.path, "skip-while-waiting");
    const clock = new ManualClock("2024-03-01T00:00:00Z");
    const pipeline = definePipeline({
      description: "always fails",
      schedule: { cron: "*/10 * * * *", retries: 1, retryDelaySeconds: 900 },
      source: () => new Observable<unknown>((subscriber) => subscriber.error(new Error("database down"))),
      process: (records) => records,
    });
    const events: ScheduleEvent[] = [];
    const { lines, log } = collectLog();
    const scheduler = new Scheduler([{ name: "db", pipeline }], { clock, logs, log, onEvent: (e) => events.push(e) });
    scheduler.start();
    await clock.advanceTo("2024-03-01T00:10:00Z");
    await until(() => events.some((e) => e.type === "failed"), "the first failure");
    // The failed attempt's log is closed: a file opened now (another run's log, a data file) may
    // get its descriptor number. The cron time at 00:20 must not write into it.
    const other = join(dir.path, "opened-during-the-wait.txt");
    const fd = openSync(other, "w");
    try {
      await clock.advanceTo("2024-03-01T00:20:00Z");
      expect(events.map((e) => e.type)).toEqual(["started", "failed", "skipped"]);
    } finally {
      closeSync(fd);
    }
    expect(await Bun.file(other).text()).toBe("");
    const failedId = events[0]?.type === "started" ? events[0].runId : "";
    expect(
      lines.some((l) => l.includes(`db: skipped the run due at 2024-03-01T00:20:00.000Z: run ${failedId} failed and is retried at 2024-03-01T00:25:00.000Z`)),
    ).toBe(true);
    await scheduler.stop();
  });

  test("a run past its timeout is stopped, keeps what it committed (read back by DuckDB), and fails", async () => {
    const out = join(dir.path, "timeout-out");
    const { clock, scheduler, events, flow } = endless({ cron: "0 * * * *", timeoutSeconds: 600 }, out, join(dir.path, "timeout-logs"));
    scheduler.start();
    await clock.advanceTo("2024-03-01T01:00:00Z");
    await until(() => (flow()?.stats.in ?? 0) > 200, "rows to be read");
    await clock.advanceTo("2024-03-01T01:09:59Z");
    expect(events.map((e) => e.type)).toEqual(["started"]);
    await clock.advanceTo("2024-03-01T01:10:00Z");
    await until(() => events.length === 2, "the run to end");
    const failed = events[1];
    if (failed?.type !== "failed") throw new Error(`not failed: ${JSON.stringify(events)}`);
    const written = Number(/committing (\d+) row/.exec(failed.error)?.[1]);
    expect(failed.error).toStartWith("timed out after 600 s (stopped after committing");
    expect(failed.retryAt).toBeUndefined();
    expect(written).toBeGreaterThan(200);
    const [{ n, ids }] = await query(`SELECT count(*) AS n, count(DISTINCT id) AS ids FROM ${dataset(join(out, "rows"))}`);
    expect([Number(n), Number(ids)]).toEqual([written, written]);
    expect(await Bun.file(failed.logFile).text()).toContain("run stopped: it took longer than its timeout of 600 s");
    await scheduler.stop();
  });

  test("refuses duplicate names, a name that cannot be a folder, and a pipeline without a schedule", () => {
    const p = recording("* * * * *", []);
    expect(() => new Scheduler([{ name: "a", pipeline: p }, { name: "a", pipeline: p }], { logs: "x" })).toThrow("two pipelines are named a");
    for (const name of ["..", "a/b", "a\\b", "tab\there", ""]) {
      expect(() => new Scheduler([{ name, pipeline: p }], { logs: "x" })).toThrow("cannot name a log folder");
    }
    // Any other file name is a fine folder name.
    expect(() => new Scheduler([{ name: "événements du jour", pipeline: p }], { logs: "x" })).not.toThrow();
    expect(() => new Scheduler([{ name: "none", pipeline: recording(undefined, []) }], { logs: "x" })).toThrow("pipeline none has no schedule");
  });
});

describe("schedules", () => {
  test("parseSchedule reads strings, specs with a time zone and arguments, and nicknames", () => {
    expect(parseSchedule("0 2 * * *", "m.ts")).toMatchObject({ cron: "0 2 * * *", timezone: "UTC", args: [] });
    const spec = parseSchedule({ cron: " @daily ", timezone: "America/New_York", args: ["--out", "o"] }, "m.ts");
    expect(spec).toMatchObject({ cron: "@daily", timezone: "America/New_York", args: ["--out", "o"], retries: 0, retryDelayMs: 60_000, timeoutMs: undefined });
    expect(parseSchedule({ cron: "@hourly", retries: 2, retryDelaySeconds: 0.5, timeoutSeconds: 90 }, "m.ts")).toMatchObject({ retries: 2, retryDelayMs: 500, timeoutMs: 90_000 });
    expect(spec.next(new Date("2024-03-01T12:00:00Z"))?.toISOString()).toBe("2024-03-02T05:00:00.000Z");
  });

  test.each([
    ["60 * * * *", 'pipelines/bad.ts: schedule "60 * * * *" is not a valid cron expression: Invalid value for minute: 60'],
    ["* * *", 'pipelines/bad.ts: schedule "* * *" is not a valid cron expression'],
    ["0 0 0 1 1 * 2030", "requires exactly 5 or 6 parts"],
    ["0 0 31 2 *", 'pipelines/bad.ts: schedule "0 0 31 2 *" never fires'],
    ["1-2-3 * * * *", "illegal range"],
    ["", "is not a valid cron expression"],
    ["* ".repeat(500), "longer than 256 characters"], // hostile: a huge expression
    [42, "schedule must be a cron expression"],
    [null, "not null"],
    [["* * * * *"], "not an array"],
    [{ cron: 5 }, "schedule.cron must be a cron expression"],
    [{ cron: "* * * * *", timezone: "Mars/Base" }, 'time zone "Mars/Base" is not an IANA time zone'],
    [{ cron: "* * * * *", args: ["ok", 1] }, "schedule.args must be an array of strings"],
    [{ cron: "* * * * *", retries: -1 }, "schedule.retries must be a whole number from 0 to 100, not -1"],
    [{ cron: "* * * * *", retries: 1.5 }, "schedule.retries must be a whole number from 0 to 100, not 1.5"],
    [{ cron: "* * * * *", retries: "3" }, "schedule.retries must be a whole number from 0 to 100, not a string"],
    [{ cron: "* * * * *", retries: 1e9 }, "schedule.retries must be a whole number from 0 to 100"],
    [{ cron: "* * * * *", retryDelaySeconds: Number.NaN }, "schedule.retryDelaySeconds must be a number of seconds from 0 to 2592000, not NaN"],
    [{ cron: "* * * * *", timeoutSeconds: 0 }, "schedule.timeoutSeconds must be a number of seconds above 0"],
    [{ cron: "* * * * *", timeoutSeconds: Number.POSITIVE_INFINITY }, "schedule.timeoutSeconds must be a number of seconds above 0"],
  ])("parseSchedule refuses a bad schedule, naming the module (%#)", (schedule, message) => {
    expect(() => parseSchedule(schedule, "pipelines/bad.ts")).toThrow(message);
    expect(() => parseSchedule(schedule, "pipelines/bad.ts")).toThrow(/^pipelines\/bad\.ts: /);
  });

  test("loadPipeline refuses a module whose schedule is not a cron expression, naming the module", async () => {
    const dir = await tempDir("sluice-schedule-load-");
    try {
      const path = join(dir.path, "hourly.ts");
      await Bun.write(
        path,
        `import { definePipeline } from ${JSON.stringify(join(root, "src/run/pipeline.ts"))};
export default definePipeline({ description: "d", schedule: "0 25 * * *", source: () => { throw new Error("not run"); }, process: (r) => r });
`,
      );
      const error = await loadPipeline(path).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(PipelineLoadError);
      expect(error).toMatchObject({ reason: "schedule", path });
      expect((error as Error).message).toBe(`${path}: schedule "0 25 * * *" is not a valid cron expression: Invalid value for hour: 25`);
    } finally {
      await dir.remove();
    }
  });

  test("upcomingRuns merges the pipelines' next times in time order", () => {
    const hourly = parseSchedule("0 * * * *", "h");
    const daily = parseSchedule("30 1 * * *", "d");
    const runs = upcomingRuns(
      [
        { name: "hourly", schedule: hourly },
        { name: "daily", schedule: daily },
      ],
      new Date("2024-03-01T00:00:00Z"),
      4,
    );
    expect(runs.map((r) => `${r.at.toISOString().slice(11, 16)} ${r.name}`)).toEqual(["01:00 hourly", "01:30 daily", "02:00 hourly", "03:00 hourly"]);
  });

  test("scheduled run ids sort by due time and are valid run ids", () => {
    const id = scheduledRunId(new Date("2024-03-01T02:00:00.123Z"));
    expect(id).toMatch(/^20240301T020000Z-[a-z0-9]{6}$/);
  });
});
