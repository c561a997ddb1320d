import { describe, expect, test } from "bun:test";
import { readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { concat, from, type Observable, Subject, take, tap, throwError } from "rxjs";
import * as v from "valibot";
import { deadLetter, enrich, validate } from "../../operators/index.ts";
import type { DeadLetter } from "../../src/deadletter/entry.ts";
import type { DeadLetterStore } from "../../src/deadletter/store.ts";
import { run, type RunSummary } from "../../src/run/run.ts";
import { fromNdjson } from "../../src/sources/ndjson.ts";
import { query, tempDir } from "../helpers/duckdb.ts";

const Item = v.object({ id: v.string(), n: v.number() });

/** Runs `source` into a collecting dead letter; resolves with what came out. */
async function collect(source: Observable<unknown>): Promise<{ values: unknown[]; entries: DeadLetter[]; summary: RunSummary }> {
  const values: unknown[] = [];
  const entries: DeadLetter[] = [];
  const summary = await run(
    source.pipe(deadLetter((entry) => entries.push(entry))),
    { handleSignals: false, onValue: (value) => values.push(value) },
  );
  return { values, entries, summary };
}

/** A store that records what happens to it. */
function fakeStore(log: string[]): DeadLetterStore & { entries: DeadLetter[] } {
  const entries: DeadLetter[] = [];
  return {
    folder: "memory",
    files: [],
    entries,
    add(entry) {
      log.push(`add ${entry.stage}`);
      entries.push(entry);
    },
    async flush() {
      await Promise.resolve();
      log.push("flush");
    },
    async close() {
      log.push("close");
    },
  };
}

describe("deadLetter", () => {
  test("completes with nothing when the source is empty", async () => {
    const { values, entries, summary } = await collect(from([]));
    expect(values).toEqual([]);
    expect(entries).toEqual([]);
    expect(summary.deadLettered).toBe(0);
  });

  test("passes one value through unchanged, as the same object", async () => {
    const item = { id: "a", n: 1 };
    const { values, entries } = await collect(from([item]));
    expect(values).toHaveLength(1);
    expect(values[0]).toBe(item);
    expect(entries).toEqual([]);
  });

  test("passes many values through in order", async () => {
    const items = Array.from({ length: 500 }, (_, i) => ({ id: `i${i}`, n: i }));
    const { values } = await collect(from(items));
    expect(values).toEqual(items);
  });

  test("receives each rejected record at the moment it is rejected, between the values around it", async () => {
    const log: string[] = [];
    await run(
      from([{ id: "a", n: 1 }, { id: "b" }, { id: "c", n: 3 }, { n: 4 }, { id: "e", n: 5 }]).pipe(
        validate(Item),
        deadLetter((entry) => log.push(`dead ${JSON.parse(entry.raw).n ?? JSON.parse(entry.raw).id}`)),
      ),
      { handleSignals: false, onValue: (value) => log.push(`value ${(value as { id: string }).id}`) },
    );
    expect(log).toEqual(["value a", "dead b", "value c", "dead 4", "value e"]);
  });

  test("gets every field of a dead letter from the stage that rejected it", async () => {
    const dir = await tempDir();
    try {
      const path = join(dir.path, "items.ndjson");
      await writeFile(path, '{"id":"a","n":1}\nnot json\n{"id":"c","n":"3"}\n');
      const { values, entries, summary } = await collect(fromNdjson(path).pipe(validate(Item)));
      expect(values).toEqual([{ id: "a", n: 1 }]);
      expect(entries).toHaveLength(2);
      const [parse, invalid] = entries;
      expect(parse).toMatchObject({ stage: "parse", source: path, line: 2, raw: "not json", runId: summary.runId });
      expect(parse.error).toStartWith("malformed JSON: ");
      expect(parse.issues).toBeUndefined();
      expect(parse.rawBase64).toBeUndefined();
      expect(invalid).toMatchObject({
        stage: "validate",
        source: path,
        line: 3,
        raw: '{"id":"c","n":"3"}',
        error: '1 issue: n: Invalid type: Expected number but received "3"',
        issues: [{ path: "n", expected: "number", received: '"3"', message: 'Invalid type: Expected number but received "3"' }],
        runId: summary.runId,
      });
      for (const entry of entries) expect(new Date(entry.at).toISOString()).toBe(entry.at);
      expect(summary.deadLetteredByStage).toEqual({ parse: 1, validate: 1 });
      expect(summary.in).toBe(3);
    } finally {
      await dir.remove();
    }
  });

  test("collects the rejects of every stage above it", async () => {
    const { values, entries } = await collect(
      from([{ id: "a", n: 1 }, { id: "b" }, { id: "c", n: 0 }]).pipe(
        validate(Item),
        enrich((item) => {
          if (item.n === 0) throw new Error("zero");
          return item;
        }),
      ),
    );
    expect(values).toEqual([{ id: "a", n: 1 }]);
    expect(entries.map((e) => e.stage)).toEqual(["validate", "enrich"]);
  });

  test("hands entries to a store and flushes it before completing", async () => {
    const log: string[] = [];
    const store = fakeStore(log);
    await run(
      from([{ id: "a", n: 1 }, { id: "b" }]).pipe(validate(Item), deadLetter(store)),
      { handleSignals: false, onValue: () => log.push("value") },
    ).then(() => log.push("complete"));
    // Flushed as the source completes, and again once the sink below has settled (it may still
    // refuse rows then), before the run resolves.
    expect(log).toEqual(["value", "add validate", "flush", "flush", "complete"]);
    expect(store.entries).toHaveLength(1);
  });

  test("commits a folder of NDJSON before completing, readable by DuckDB", async () => {
    const dir = await tempDir();
    try {
      const folder = join(dir.path, "dead-letter");
      const summary = await run(
        from([{ id: "a", n: 1 }, { id: "b" }, { id: 3, n: 3 }, { id: "ü😀", n: "x" }]).pipe(validate(Item), deadLetter(folder)),
        { handleSignals: false, runId: "run-1" },
      );
      // Nothing may be left to commit once the run has completed.
      const names = (await readdir(folder)).sort();
      expect(names).toEqual(["dead-letter-run-1-00000.ndjson"]);
      const rows = await query(
        `SELECT stage, raw, runId, CAST(len(issues) AS INTEGER) AS issues FROM read_json('${join(folder, "*.ndjson")}', format = 'newline_delimited') ORDER BY raw`,
      );
      expect(rows).toEqual([
        { stage: "validate", raw: '{"id":"b"}', runId: "run-1", issues: 1 },
        { stage: "validate", raw: '{"id":"ü😀","n":"x"}', runId: "run-1", issues: 1 },
        { stage: "validate", raw: '{"id":3,"n":3}', runId: "run-1", issues: 1 },
      ]);
      expect(summary.deadLettered).toBe(3);
    } finally {
      await dir.remove();
    }
  });

  test("passes a source error on after committing what it gathered", async () => {
    const dir = await tempDir();
    try {
      const folder = join(dir.path, "dead-letter");
      const failing = concat(from([{ id: "a" }]), throwError(() => new Error("disk gone")));
      await expect(
        run(failing.pipe(validate(Item), deadLetter(folder)), { handleSignals: false, runId: "run-2" }),
      ).rejects.toThrow("disk gone");
      expect(await readdir(folder)).toEqual(["dead-letter-run-2-00000.ndjson"]);
    } finally {
      await dir.remove();
    }
  });

  test("passes a source error on with a function target", async () => {
    const values: unknown[] = [];
    const failing = concat(from([1, 2]), throwError(() => new Error("broker gone")));
    await expect(
      run(failing.pipe(deadLetter(() => {})), { handleSignals: false, onValue: (value) => values.push(value) }),
    ).rejects.toThrow("broker gone");
    expect(values).toEqual([1, 2]);
  });

  test("stops listening to a never-ending source when unsubscribed early", () => {
    const source = new Subject<number>();
    const values: number[] = [];
    let completed = false;
    source
      .pipe(deadLetter(() => {}), take(2))
      .subscribe({ next: (value) => values.push(value), complete: () => (completed = true) });
    expect(source.observed).toBe(true);
    source.next(1);
    source.next(2);
    expect(completed).toBe(true);
    expect(source.observed).toBe(false);
    source.next(3);
    expect(values).toEqual([1, 2]);
  });

  test("unsubscribes from its source when its subscriber unsubscribes", () => {
    const source = new Subject<number>();
    const subscription = source.pipe(deadLetter(() => {})).subscribe();
    expect(source.observed).toBe(true);
    subscription.unsubscribe();
    expect(source.observed).toBe(false);
  });

  test("errors the run when the target throws, rather than losing the record", async () => {
    const dir = await tempDir();
    try {
      const path = join(dir.path, "items.ndjson");
      await writeFile(path, '{"id":"a","n":1}\n\n{"id":"c","n":3}\n');
      const throwing = deadLetter(() => {
        throw new Error("dead-letter disk full");
      });
      await expect(run(fromNdjson(path).pipe(throwing), { handleSignals: false })).rejects.toThrow("dead-letter disk full");
      await expect(
        run(from([{ id: "b" }]).pipe(validate(Item), deadLetter(() => {
          throw new Error("dead-letter disk full");
        })), { handleSignals: false }),
      ).rejects.toThrow("dead-letter disk full");
    } finally {
      await dir.remove();
    }
  });

  test("without it, a rejected record errors the run with a message naming the stage, file and line", async () => {
    const dir = await tempDir();
    try {
      const path = join(dir.path, "items.ndjson");
      await writeFile(path, '{"id":"a","n":1}\n{"id":"b","n":2}\n\n{"id":"d","n":4}\n');
      const values: unknown[] = [];
      const result = run(fromNdjson(path), { handleSignals: false, onValue: (value) => values.push(value) });
      await expect(result).rejects.toThrow(
        `a record from ${path} line 3 failed at stage "parse" (blank line) but this pipeline has no dead-letter target: add deadLetter(folder) after the operators that reject records`,
      );
      expect(values).toHaveLength(2);
    } finally {
      await dir.remove();
    }
  });

  test("refuses a folder that already holds dead letters in mode error", async () => {
    const dir = await tempDir();
    try {
      const folder = join(dir.path, "dead-letter");
      await run(from([{}]).pipe(validate(Item), deadLetter(folder)), { handleSignals: false });
      await expect(
        run(from([{}]).pipe(validate(Item), deadLetter(folder, { mode: "error" })), { handleSignals: false }),
      ).rejects.toThrow(/already holds 1 file/);
    } finally {
      await dir.remove();
    }
  });

  test("sends the rejects of a stage to the nearest deadLetter below it", async () => {
    const upper: DeadLetter[] = [];
    const lower: DeadLetter[] = [];
    await run(
      from([{ id: "a" }, { id: "b", n: 0 }]).pipe(
        validate(Item),
        deadLetter((entry) => upper.push(entry)),
        enrich((item) => {
          if (item.n === 0) throw new Error("zero");
          return item;
        }),
        deadLetter((entry) => lower.push(entry)),
      ),
      { handleSignals: false },
    );
    expect(upper.map((e) => e.stage)).toEqual(["validate"]);
    expect(lower.map((e) => e.stage)).toEqual(["enrich"]);
  });

  test("stops pulling from a synchronous source once the consumer has unsubscribed", async () => {
    let pulled = 0;
    await run(
      from(Array.from({ length: 1_000 }, (_, i) => i)).pipe(
        tap(() => pulled++),
        deadLetter(() => {}),
        take(1),
      ),
      { handleSignals: false },
    );
    expect(pulled).toBe(1);
  });
});
