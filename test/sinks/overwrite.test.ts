/**
 * `overwrite` keeps the old dataset until the new one is complete (issue 12). It used to delete
 * first: a run whose input path had a typo failed with 0 records read after the old dataset and
 * its dead letters were gone, and a Ctrl-C during a re-run left a partial dataset where a
 * complete one had been.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, renameSync } from "node:fs";
import { join } from "node:path";
import { from } from "rxjs";
import * as v from "valibot";
import { deadLetter, validate } from "../../operators/index.ts";
import { readDeadLetters } from "../../src/deadletter/store.ts";
import { formatSummary, fromNdjson, fromPush, run, toParquet } from "../../src/index.ts";
import { dataset, query, tempDir } from "../helpers/duckdb.ts";

const Row = v.object({ id: v.pipe(v.number(), v.integer()), tag: v.string() });
type Row = v.InferOutput<typeof Row>;
const rows = (n: number, tag: string): Row[] => Array.from({ length: n }, (_, id) => ({ id, tag }));

let dir: { path: string; remove: () => Promise<void> };
beforeAll(async () => {
  dir = await tempDir("sluice-overwrite-");
});
afterAll(() => dir.remove());
let cases = 0;

/** A folder holding an earlier run's complete output: 30 rows tagged "old" in 3 files, and 2 dead letters. */
async function withOldDataset(): Promise<{ out: string; events: string; deadLetters: string }> {
  const out = join(dir.path, `case-${cases++}`);
  const events = join(out, "events");
  const deadLetters = join(out, "dead-letter");
  const input = [...rows(30, "old"), { id: "bad 1", tag: "old" }, { id: "bad 2", tag: "old" }];
  await run(from(input).pipe(validate(Row), deadLetter(deadLetters), toParquet(events, { schema: Row, maxFileRows: 10 })));
  return { out, events, deadLetters };
}

async function tags(events: string): Promise<Record<string, number>> {
  const found = await query(`SELECT tag, count(*)::INT AS n, count(DISTINCT id)::INT AS ids FROM ${dataset(events)} GROUP BY tag ORDER BY tag`);
  for (const r of found) expect(r.ids).toBe(r.n);
  return Object.fromEntries(found.map((r) => [r.tag, r.n]));
}

async function deadTags(folder: string): Promise<string[]> {
  const found: string[] = [];
  for await (const entry of readDeadLetters(folder)) found.push(JSON.parse(entry.raw).tag);
  return found;
}

describe("an overwrite run", () => {
  test("whose input is missing fails, and the old dataset and its dead letters stay whole and readable", async () => {
    const { out, events, deadLetters } = await withOldDataset();
    const failed = run(
      fromNdjson(join(out, "typo.ndjson")).pipe(
        validate(Row),
        deadLetter(deadLetters, { mode: "overwrite" }),
        toParquet(events, { schema: Row, mode: "overwrite" }),
      ),
    );
    await expect(failed).rejects.toThrow("typo.ndjson");
    expect(await tags(events)).toEqual({ old: 30 });
    expect(await deadTags(deadLetters)).toEqual(["old", "old"]);
    expect(readdirSync(out).sort()).toEqual(["dead-letter", "events"]);
  });

  test("that is stopped keeps the old dataset and dead letters, and counts its rows and dead letters as discarded, not written or dropped", async () => {
    const { out, events, deadLetters } = await withOldDataset();
    const pushed = fromPush<unknown>({ name: "new" });
    const stop = new AbortController();
    const stopped = run(
      pushed.pipe(validate(Row), deadLetter(deadLetters, { mode: "overwrite" }), toParquet(events, { schema: Row, mode: "overwrite", maxFileRows: 5 })),
      { signal: stop.signal },
    );
    for (const row of rows(12, "new")) pushed.push(row);
    pushed.push({ id: "bad", tag: "new" });
    await Bun.sleep(100);
    stop.abort();
    const summary = await stopped;
    // Neither the 12 rows nor the dead letter are anywhere now: the summary says so, and why.
    expect(summary).toMatchObject({ stopped: true, in: 13, written: 0, files: 0, deadLettered: 0, deadLetteredByStage: {}, discarded: 13, dropped: 0 });
    expect(formatSummary(summary)).toMatch(/discarded\s+13 \(the run stopped: the overwrite keeps the earlier dataset\)/);
    expect(await tags(events)).toEqual({ old: 30 });
    expect(await deadTags(deadLetters)).toEqual(["old", "old"]);
    expect(readdirSync(out).sort()).toEqual(["dead-letter", "events"]);
    expect(readdirSync(deadLetters).filter((n) => n.startsWith("."))).toEqual([]);
  });

  test("is invisible to readers while it runs: they see the old dataset whole, then the new one whole, with its dead letters", async () => {
    const { out, events, deadLetters } = await withOldDataset();
    const pushed = fromPush<unknown>({ name: "new" });
    const done = run(
      pushed.pipe(validate(Row), deadLetter(deadLetters, { mode: "overwrite" }), toParquet(events, { schema: Row, mode: "overwrite", maxFileRows: 5 })),
    );
    for (const row of rows(20, "new")) pushed.push(row);
    pushed.push({ id: "bad", tag: "new" });
    // Files of the new run are committed (to the staging folder) while the old dataset is read.
    const staging = join(out, `.events.staging-${(await stagingRun(out)) ?? ""}`);
    const deadline = Date.now() + 10_000;
    const staged = () => (existsSync(staging) ? readdirSync(staging).filter((n) => n.endsWith(".parquet")).length : 0);
    while (staged() < 4 && Date.now() < deadline) await Bun.sleep(10);
    expect(staged()).toBe(4);
    expect(await tags(events)).toEqual({ old: 30 });
    expect(await deadTags(deadLetters)).toEqual(["old", "old"]);
    pushed.end();
    expect(await done).toMatchObject({ written: 20, deadLettered: 1 });
    expect(await tags(events)).toEqual({ new: 20 });
    expect(await deadTags(deadLetters)).toEqual(["new"]);
    expect(readdirSync(out).sort()).toEqual(["dead-letter", "events"]);
  });

  test("into a folder with no dataset writes in place, and a stopped one keeps what it committed", async () => {
    const out = join(dir.path, `case-${cases++}`, "events");
    const pushed = fromPush<Row>({ name: "first" });
    const stop = new AbortController();
    const done = run(pushed.pipe(toParquet(out, { schema: Row, mode: "overwrite", maxFileRows: 5 })), { signal: stop.signal });
    for (const row of rows(10, "first")) pushed.push(row);
    await Bun.sleep(50);
    stop.abort();
    expect(await done).toMatchObject({ stopped: true, written: 10 });
    expect(await tags(out)).toEqual({ first: 10 });
  });
});

describe("after a crash", () => {
  test("a swap cut in two (old dataset moved aside, new one not yet in place) is finished by the next run", async () => {
    const { out, events } = await withOldDataset();
    // What a completed overwrite run "cut" left when killed between its two renames.
    const staging = join(out, ".events.staging-cut");
    mkdirSync(staging);
    await run(from(rows(8, "cut")).pipe(toParquet(staging, { schema: Row })));
    renameSync(events, join(out, ".events.replaced-cut"));
    expect(existsSync(events)).toBe(false);
    await run(from(rows(3, "next")).pipe(toParquet(events, { schema: Row, mode: "append" })));
    expect(await tags(events)).toEqual({ cut: 8, next: 3 });
    expect(readdirSync(out).sort()).toEqual(["dead-letter", "events"]);
  });
});

/** The run id of the overwrite staging beside `out/events`, once it exists. */
async function stagingRun(out: string): Promise<string | undefined> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const name = readdirSync(out).find((n) => n.startsWith(".events.staging-"));
    if (name) return name.slice(".events.staging-".length);
    await Bun.sleep(5);
  }
  return undefined;
}
