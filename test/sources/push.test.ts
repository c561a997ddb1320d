import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { retry, take, tap } from "rxjs";
import * as v from "valibot";
import { deadLetter, validate } from "../../operators/index.ts";
import type { DeadLetter } from "../../src/deadletter/entry.ts";
import { type Flow, holdGate } from "../../src/flow/flow.ts";
import { run } from "../../src/run/run.ts";
import { toParquet } from "../../src/sinks/toParquet.ts";
import { positionOf } from "../../src/flow/position.ts";
import { fromPush } from "../../src/sources/push.ts";
import { dataset, query, tempDir } from "../helpers/duckdb.ts";
import { plain } from "../helpers/plain.ts";

const Row = v.object({ id: v.pipe(v.number(), v.integer()), name: v.string() });

/** Lets queued microtasks and the records they emit run. */
const settle = () => Bun.sleep(0);

describe("fromPush", () => {
  let dir: { path: string; remove: () => Promise<void> };
  beforeAll(async () => {
    dir = await tempDir("sluice-push-");
  });
  afterAll(() => dir.remove());

  test("counts every record pushed and names dead letters by the source name and sequence number", async () => {
    const events = fromPush();
    const dead: DeadLetter[] = [];
    const out = join(dir.path, "counts");
    const done = run(events.pipe(validate(Row), deadLetter((e) => dead.push(e)), toParquet(out, { schema: Row })));
    for (let i = 1; i <= 100; i++) {
      // Every tenth record has a wrong type; record 55 never became one.
      if (i === 55) expect(events.pushInvalid("{oops", "malformed JSON")).toBe(true);
      else expect(events.push(i % 10 === 0 ? { id: String(i), name: `n${i}` } : { id: i, name: `n${i}` })).toBe(true);
    }
    events.end();
    const summary = await done;
    expect(summary).toMatchObject({ in: 100, written: 89, deadLettered: 11, deadLetteredByStage: { validate: 10, parse: 1 }, dropped: 0 });
    expect(dead.map((d) => [d.stage, d.source, d.line])).toEqual([
      ...[10, 20, 30, 40, 50].map((line) => ["validate", "push", line]),
      ["parse", "push", 55],
      ...[60, 70, 80, 90, 100].map((line) => ["validate", "push", line]),
    ]);
    expect(dead[5]).toMatchObject({ raw: "{oops", error: "malformed JSON" });
    expect(dead[0].raw).toBe('{"id":"10","name":"n10"}');
    const back = await query(`SELECT count(*)::INT AS n, sum(id)::INT AS s FROM ${dataset(out)}`);
    expect(back).toEqual([{ n: 89, s: 5050 - 550 - 55 }]);
  });

  test("takes the input name and the positions an app gives, and keeps numbering after them", async () => {
    const events = fromPush<unknown>({ name: "http" });
    const dead: DeadLetter[] = [];
    const done = run(events.pipe(validate(Row), deadLetter((e) => dead.push(e))));
    events.push({ id: "a" });
    events.push({ id: "b" }, { source: "tenant-7", line: 42, raw: "the original text" });
    events.push({ id: "c" });
    events.push({ id: "d" }, { line: 10 });
    events.push({ id: "e" });
    events.push({ id: "f" }, { source: "tenant-7" });
    events.end();
    await done;
    expect(dead.map((d) => `${d.source}:${d.line}`)).toEqual(["http:1", "tenant-7:42", "http:2", "http:10", "http:11", "tenant-7:43"]);
    expect(dead[1].raw).toBe("the original text");
    expect(() => events.push({}, { line: 0 })).toThrow(/position.line must be a whole number >= 1, got 0/);
  });

  test("emits records in push order, without their positions showing, a microtask after the push", async () => {
    const events = fromPush<{ n: number }>();
    const seen: unknown[] = [];
    const done = run(events.pipe(tap((r) => seen.push(plain(r)))), {});
    events.push({ n: 1 });
    events.push({ n: 2 });
    expect(seen).toEqual([]);
    await settle();
    expect(seen).toEqual([{ n: 1 }, { n: 2 }]);
    events.end();
    expect(await done).toMatchObject({ in: 2, dropped: 2 });
  });

  test("an empty source that is ended completes its run with nothing read", async () => {
    const events = fromPush();
    const done = run(events.pipe(deadLetter(() => {})));
    events.end();
    expect(await done).toMatchObject({ in: 0, stopped: false });
    expect(events.closed).toBe(true);
    expect(events.push({ id: 1 })).toBe(false);
    await expect(events.write({ id: 1 })).rejects.toThrow('fromPush("push"): it was ended; it takes no more records');
  });

  test("refuses pushes while the sink holds the gate, and takes them again once it opens", async () => {
    const events = fromPush<unknown>();
    let release = () => {};
    let flow: Flow | undefined;
    const done = run(events.pipe(validate(Row), deadLetter(() => {})), {
      onStart(f) {
        flow = f;
        release = holdGate(f);
      },
    });
    expect(events.push({ id: 1, name: "a" })).toBe(false);
    let drained = false;
    events.drained().then(() => (drained = true));
    let written = false;
    const write = events.write({ id: 2, name: "b" }).then(() => (written = true));
    await Bun.sleep(20);
    expect([drained, written, flow?.stats.in]).toEqual([false, false, 0]);
    release();
    await write;
    expect(drained).toBe(true);
    expect(events.push({ id: 3, name: "c" })).toBe(true);
    events.end();
    // The refused push took nothing: only the write and the last push were read.
    expect(await done).toMatchObject({ in: 2, dropped: 2 });
  });

  test("a Parquet sink over its memory budget makes push refuse until its writes commit, and nothing is lost", async () => {
    const events = fromPush<unknown>({ highWaterMark: 100 });
    const out = join(dir.path, "budget");
    const done = run(events.pipe(validate(Row), deadLetter(() => {}), toParquet(out, { schema: Row, memoryBudget: 256 * 1024, maxFileRows: 2000 })));
    let refused = 0;
    let mostWaiting = 0;
    const padding = "x".repeat(200);
    for (let i = 1; i <= 20_000; i++) {
      const record = { id: i, name: `${i}-${padding}` };
      if (!events.push(record)) {
        refused++;
        await events.write(record);
      }
      mostWaiting = Math.max(mostWaiting, events.waiting);
    }
    events.end();
    expect(await done).toMatchObject({ in: 20_000, written: 20_000 });
    expect(refused).toBeGreaterThan(0);
    expect(mostWaiting).toBeLessThanOrEqual(100);
    const back = await query(`SELECT count(*)::INT AS n, count(DISTINCT id)::INT AS d FROM ${dataset(out)}`);
    expect(back).toEqual([{ n: 20_000, d: 20_000 }]);
  });

  test("holds at most highWaterMark records: later pushes are refused until the run takes them", async () => {
    const events = fromPush<number>({ highWaterMark: 3 });
    // Before any subscriber: three wait, the fourth is refused.
    expect([1, 2, 3, 4].map((n) => events.push(n))).toEqual([true, true, true, false]);
    expect(events.waiting).toBe(3);
    const seen: number[] = [];
    const done = run(events.pipe(tap((n) => seen.push(n))));
    // Subscribed: the waiting ones go first, and room comes back.
    await events.drained();
    expect(seen).toEqual([1, 2, 3]);
    for (let n = 4; n <= 10; n++) await events.write(n);
    events.end();
    expect(await done).toMatchObject({ in: 10 });
    expect(seen).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  });

  test("an abort refuses new pushes at once and the run resolves with everything pushed before it durable", async () => {
    const events = fromPush<unknown>({ name: "app" });
    const stop = new AbortController();
    const out = join(dir.path, "abort");
    const dead: DeadLetter[] = [];
    const done = run(events.pipe(validate(Row), deadLetter((e) => dead.push(e)), toParquet(out, { schema: Row })), { signal: stop.signal });
    for (let i = 1; i <= 500; i++) await events.write({ id: i, name: i === 7 ? 7 : `n${i}` });
    // Still waiting in the source when the abort comes: taken, so they must be written too.
    for (let i = 501; i <= 510; i++) expect(events.push({ id: i, name: `n${i}` })).toBe(true);
    stop.abort();
    expect(events.closed).toBe(true);
    expect(events.push({ id: 999, name: "late" })).toBe(false);
    await expect(events.write({ id: 999, name: "late" })).rejects.toThrow(/the run it feeds is stopping \(an abort or a signal\); it takes no more records/);
    const summary = await done;
    expect(summary).toMatchObject({ in: 510, written: 509, deadLettered: 1, stopped: true, dropped: 0 });
    expect(dead.map((d) => `${d.source}:${d.line}`)).toEqual(["app:7"]);
    const back = await query(`SELECT count(*)::INT AS n, count(DISTINCT id)::INT AS d, max(id)::INT AS hi FROM ${dataset(out)}`);
    expect(back).toEqual([{ n: 509, d: 509, hi: 510 }]);
  });

  test("two runs at once, each fed by its own push source, keep separate counts and positions", async () => {
    const a = fromPush<unknown>({ name: "a" });
    const b = fromPush<unknown>({ name: "b" });
    const deadA: DeadLetter[] = [];
    const deadB: DeadLetter[] = [];
    const runA = run(a.pipe(validate(Row), deadLetter((e) => deadA.push(e)), toParquet(join(dir.path, "two-a"), { schema: Row })));
    const runB = run(b.pipe(validate(Row), deadLetter((e) => deadB.push(e)), toParquet(join(dir.path, "two-b"), { schema: Row })));
    // Interleaved across awaits, so any state shared between the runs would mix them up.
    for (let i = 1; i <= 300; i++) {
      await a.write({ id: i, name: i % 100 === 0 ? null : "a" });
      if (i <= 120) await b.write({ id: i, name: i % 40 === 0 ? null : "b" });
    }
    a.end();
    b.end();
    const [sa, sb] = await Promise.all([runA, runB]);
    expect(sa).toMatchObject({ in: 300, written: 297, deadLettered: 3 });
    expect(sb).toMatchObject({ in: 120, written: 117, deadLettered: 3 });
    expect(deadA.map((d) => `${d.source}:${d.line}`)).toEqual(["a:100", "a:200", "a:300"]);
    expect(deadB.map((d) => `${d.source}:${d.line}`)).toEqual(["b:40", "b:80", "b:120"]);
    expect(new Set(deadA.map((d) => d.runId)).size).toBe(1);
    expect(deadA[0].runId).not.toBe(deadB[0].runId);
  });

  test("error() fails the run with the app's error, and a later subscriber gets it too", async () => {
    const events = fromPush<unknown>();
    const done = run(events.pipe(deadLetter(() => {})));
    events.push({ id: 1 });
    const failure = new Error("upstream feed broke");
    events.error(failure);
    await expect(done).rejects.toBe(failure);
    expect(events.push({ id: 2 })).toBe(false);
    await expect(events.drained()).rejects.toThrow(/it failed: upstream feed broke/);
    await expect(run(events)).rejects.toBe(failure);
  });

  test("a second subscriber while one is attached errors, naming the source", async () => {
    const events = fromPush({ name: "only" });
    const first = run(events.pipe(deadLetter(() => {})));
    await expect(run(events)).rejects.toThrow(/fromPush\("only"\): already feeding a run/);
    events.end();
    await first;
  });

  test("unsubscribing keeps what waits for the next subscriber, and sequence numbers go on", async () => {
    const events = fromPush<{ n: number }>();
    for (let n = 1; n <= 5; n++) events.push({ n });
    const lines = (seen: string[]) => tap((r: { n: number }) => seen.push(`${r.n}@${positionOf(r)?.line}`));
    const first: string[] = [];
    // take(2) unsubscribes after two records; the other three stay in the source.
    expect(await run(events.pipe(lines(first), take(2)))).toMatchObject({ in: 2 });
    expect(events.waiting).toBe(3);
    expect(events.closed).toBe(false);
    events.push({ n: 6 });
    events.end();
    const second: string[] = [];
    expect(await run(events.pipe(lines(second)))).toMatchObject({ in: 4 });
    expect([first, second]).toEqual([
      ["1@1", "2@2"],
      ["3@3", "4@4", "5@5", "6@6"],
    ]);
  });

  test("a record that cannot reach a dead-letter target fails the run instead of vanishing", async () => {
    const events = fromPush();
    const done = run(events);
    events.pushInvalid("{", "malformed JSON");
    await expect(done).rejects.toThrow(/from push line 1 failed at stage "parse" \(malformed JSON\) but this pipeline has no dead-letter target/);
  });

  test("a retry below resubscribes and the records still waiting are read by the new subscription", async () => {
    const events = fromPush<{ n: number }>();
    let failures = 0;
    const seen: number[] = [];
    const done = run(
      events.pipe(
        tap((r) => {
          if (r.n === 2 && failures++ === 0) throw new Error("transient");
          seen.push(r.n);
        }),
        retry(1),
      ),
    );
    for (let n = 1; n <= 4; n++) events.push({ n });
    await settle();
    events.push({ n: 5 });
    events.end();
    const summary = await done;
    // Record 2 failed once and was not taken again (the error consumed it); 3 and 4 waited.
    expect(seen).toEqual([1, 3, 4, 5]);
    expect(summary.in).toBe(5);
  });

  test("rejects a bad highWaterMark or name when made", () => {
    expect(() => fromPush({ highWaterMark: 0 })).toThrow(/highWaterMark must be a whole number of records >= 1, got 0/);
    expect(() => fromPush({ name: "" })).toThrow(/name must be a non-empty string/);
  });
});
