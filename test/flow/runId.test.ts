import { describe, expect, test } from "bun:test";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { Observable, of } from "rxjs";
import * as v from "valibot";
import { deadLetter } from "../../operators/index.ts";
import { definePipeline, runPipeline } from "../../src/cli/pipeline.ts";
import { run } from "../../src/run/run.ts";
import { checkRunId, isDatasetFileOf, isDeadLetterFileOf, isRunId, newRunId } from "../../src/flow/runId.ts";
import { toParquet } from "../../src/sinks/toParquet.ts";
import { tempDir } from "../helpers/duckdb.ts";

const GOOD = ["a", "0", "nightly-42", "20240301T120000Z-k3j9x2", "replay.2024-03-01", "A_b.c-d", "x".repeat(128), "a.b", "v1.2"];
const BAD: [string, unknown][] = [
  ["a parent folder", "../x"],
  ["a deep escape", "../../../../../ESCAPED"],
  ["a path", "a/b"],
  ["a Windows path", "a\\b"],
  ["an absolute path", "/tmp/x"],
  ["a dot-dot inside", "a..b"],
  ["the current folder", "."],
  ["the parent folder", ".."],
  ["a hidden name", ".hidden"],
  ["a leading dash (an option)", "-rf"],
  ["an empty string", ""],
  ["a space", "a b"],
  ["a NUL byte", "a\u0000b"],
  ["a newline", "a\nb"],
  ["non-ASCII letters", "prüfung"],
  ["129 characters", "x".repeat(129)],
  ["a glob", "a*"],
  ["a number", 42],
  ["undefined", undefined],
];

describe("checkRunId", () => {
  test.each(GOOD)("accepts %p", (id) => {
    expect(checkRunId(id, "--run-id")).toBe(id);
    expect(isRunId(id)).toBe(true);
  });

  test.each(BAD)("rejects %s, naming the id, who gave it and the allowed alphabet", (_what, id) => {
    expect(isRunId(id)).toBe(false);
    let message = "";
    try {
      checkRunId(id, "--run-id");
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toStartWith("--run-id: ");
    expect(message).toContain(typeof id === "string" ? JSON.stringify(id) : String(id));
    expect(message).toContain("[A-Za-z0-9][A-Za-z0-9._-]{0,127}");
    expect(message).toContain("'..'");
  });

  test("new run ids are always accepted", () => {
    for (let i = 0; i < 1000; i++) expect(isRunId(newRunId())).toBe(true);
  });
});

describe("a run's own file names", () => {
  test("match the run's Parquet files and no other run's", () => {
    expect(isDatasetFileOf("part-abc-000000000000.parquet", "abc")).toBe(true);
    expect(isDatasetFileOf("part-abc-def-000000000000.parquet", "abc")).toBe(false);
    expect(isDatasetFileOf("part-abc-def-000000000000.parquet", "abc-def")).toBe(true);
    expect(isDatasetFileOf("part-000000000000.parquet", "abc")).toBe(false);
    expect(isDatasetFileOf("part-abc-000000000000.parquet.bak", "abc")).toBe(false);
    // A dot in the run id is a dot, not "any character".
    expect(isDatasetFileOf("part-aXb-000000000000.parquet", "a.b")).toBe(false);
    expect(isDatasetFileOf("notes.txt", "abc")).toBe(false);
  });

  test("match the run's dead-letter files and their temporary names", () => {
    expect(isDeadLetterFileOf("dead-letter-abc-00000.ndjson", "abc")).toBe(true);
    expect(isDeadLetterFileOf("dead-letter-abc-def-00000.ndjson", "abc")).toBe(false);
    expect(isDeadLetterFileOf(".dead-letter-abc-00000.ndjson.tmp", "abc")).toBe(false);
    expect(isDeadLetterFileOf(".dead-letter-abc-00000.ndjson.tmp", "abc", { temporary: true })).toBe(true);
    expect(isDeadLetterFileOf("dead-letter-abc-00000.ndjson", "abc", { temporary: true })).toBe(false);
  });
});

describe("run() and runPipeline() with an unsafe run id", () => {
  test("run() throws before subscribing, and writes nothing anywhere", async () => {
    const dir = await tempDir("sluice-runid-");
    try {
      const out = join(dir.path, "a", "b", "out");
      let subscribed = false;
      const pipeline = of({ x: 1 }).pipe(
        deadLetter(join(out, "dead-letter")),
        toParquet(join(out, "events"), { schema: v.object({ x: v.number() }) }),
      );
      const watched = new Observable<unknown>((subscriber) => {
        subscribed = true;
        return pipeline.subscribe(subscriber);
      });
      expect(() => run(watched, { runId: "../../../../../ESCAPED", handleSignals: false })).toThrow(
        'run(): options.runId: "../../../../../ESCAPED" is not a valid run id',
      );
      expect(subscribed).toBe(false);
      expect(readdirSync(dir.path)).toEqual([]);
      expect(existsSync(join(process.cwd(), "ESCAPED"))).toBe(false);
    } finally {
      await dir.remove();
    }
  });

  test("runPipeline() rejects before building the pipeline", async () => {
    let built = false;
    const pipeline = definePipeline({
      description: "test",
      source: () => {
        built = true;
        return of(1);
      },
      process: (records) => records,
    });
    await expect(runPipeline(pipeline, { runId: "a/../../b" }, { handleSignals: false })).rejects.toThrow('runPipeline(): context.runId: "a/../../b" is not a valid run id');
    expect(built).toBe(false);
  });
});
