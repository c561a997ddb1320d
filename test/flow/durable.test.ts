import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { delay, mergeMap, Observable, of, tap } from "rxjs";
import * as v from "valibot";
import { deadLetter, validate } from "../../operators/index.ts";
import { watchDurable } from "../../src/flow/durable.ts";
import { currentFlow } from "../../src/flow/flow.ts";
import { Input, stamp } from "../../src/flow/position.ts";
import { type Commit, run, toParquet } from "../../src/index.ts";
import { seededRandom } from "../../src/generate/random.ts";
import { tempDir } from "../helpers/duckdb.ts";

const Reading = v.object({ id: v.number(), zone: v.picklist(["a", "b", "c"]), value: v.number() });
const COUNT = 2_000;

/** What record `line` is: valid (and its zone), or invalid. */
function recordAt(line: number): { id: number; zone: string; value: number | string } {
  const zone = ["a", "b", "c"][line % 3] as string;
  // Zone "c" is rare, so its buffer stays open long while others commit.
  return { id: line, zone: line % 50 === 0 ? "c" : zone === "c" ? "a" : zone, value: line % 37 === 0 ? "bad" : line };
}

/** A source like a broker partition: records arrive over time, and it is told how far they are durable. */
function stream(announcements: { upTo: number; files: Set<string>; deadLetters: Set<number> }[], out: string, dead: string) {
  return new Observable<unknown>((subscriber) => {
    const input = new Input(currentFlow(), "stream-0");
    // Kept after completion: the files holding the last records commit after the source completes.
    watchDurable(input, (upTo) => {
      // What is on disk at this moment: it must hold every record up to upTo.
      const files = new Set(readdirSync(join(out), { recursive: true }).map(String).filter((f) => f.endsWith(".parquet")));
      const deadLetters = new Set<number>();
      for (const name of readdirSync(dead).filter((f) => f.endsWith(".ndjson"))) {
        for (const text of readFileSync(join(dead, name), "utf8").split("\n")) if (text) deadLetters.add(JSON.parse(text).line);
      }
      announcements.push({ upTo, files, deadLetters });
    });
    let cancelled = false;
    (async () => {
      for (let line = 1; line <= COUNT && !cancelled; line++) {
        subscriber.next(stamp(recordAt(line), input.at(line)));
        if (line % 100 === 0) await Bun.sleep(2);
      }
      subscriber.complete();
    })();
    return () => {
      cancelled = true;
    };
  });
}

describe("durability announcements", () => {
  let dir: { path: string; remove: () => Promise<void> };
  beforeAll(async () => {
    dir = await tempDir();
  });
  afterAll(() => dir.remove());

  test("announce a line only once every record up to it is in a committed file or a committed dead letter, through a reordering operator", async () => {
    const out = join(dir.path, "events");
    const dead = join(dir.path, "dead");
    const announcements: { upTo: number; files: Set<string>; deadLetters: Set<number> }[] = [];
    const commits: Commit[] = [];
    const random = seededRandom(11);
    const delays = Array.from({ length: COUNT + 1 }, () => random.int(3));
    await run(
      stream(announcements, out, dead).pipe(
        mergeMap((r) => of(r).pipe(delay(delays[(r as { id: number }).id] as number)), 4),
        validate(Reading),
        deadLetter(dead, { maxFileAgeMs: 20 }),
        toParquet(out, { schema: Reading, partitionBy: ["zone"], maxFileRows: 150, maxFileAgeMs: 200 }),
      ),
      { onValue: (commit) => commits.push(commit as Commit) },
    );
    expect(announcements.length).toBeGreaterThan(3);
    // Lines each committed file holds, by its path relative to the dataset.
    const holds = new Map<string, { zone: string; ranges: [number, number][] }>();
    for (const commit of commits) {
      const relative = commit.path.slice(out.length + 1);
      holds.set(relative, { zone: commit.partition.zone as string, ranges: commit.sources.map((r) => [r.firstLine, r.lastLine]) });
    }
    let previous = 0;
    for (const { upTo, files, deadLetters } of announcements) {
      expect(upTo).toBeGreaterThan(previous);
      previous = upTo;
      for (let line = 1; line <= upTo; line++) {
        const record = recordAt(line);
        if (typeof record.value !== "number") {
          expect(deadLetters.has(line)).toBe(true);
          continue;
        }
        const inFile = [...files].some((file) => {
          const held = holds.get(file);
          return held?.zone === record.zone && held.ranges.some(([a, b]) => line >= a && line <= b);
        });
        if (!inFile) throw new Error(`line ${line} was announced durable (up to ${upTo}) but no committed file held it`);
      }
    }
    expect(previous).toBe(COUNT);
    // Some announcement came while zone "c"'s buffer still held early records: the prefix waited for it.
    expect(announcements[0]?.upTo).toBeLessThan(COUNT);
  });

  test("an overwrite that replaces a dataset announces nothing before the swap: a stopped run drops its staged files, so nothing was durable", async () => {
    const out = join(dir.path, "replaced");
    const dead = join(dir.path, "replaced-dead");
    await run(of({ id: 0, zone: "a" as const, value: 0 }).pipe(toParquet(out, { schema: Reading, partitionBy: ["zone"] })));
    const stopped: { upTo: number; files: Set<string>; deadLetters: Set<number> }[] = [];
    const stop = new AbortController();
    let seen = 0;
    const summary = await run(
      stream(stopped, out, dead).pipe(
        validate(Reading),
        deadLetter(dead, { maxFileAgeMs: 20 }),
        // Small files: many commit into the staging folder before the stop.
        toParquet(out, { schema: Reading, partitionBy: ["zone"], mode: "overwrite", maxFileRows: 100 }),
        tap(() => {
          if (++seen === 5) stop.abort();
        }),
      ),
      { signal: stop.signal },
    );
    expect(summary.stopped).toBe(true);
    // The old dataset stays, and no line was ever announced durable.
    expect(readdirSync(out, { recursive: true }).map(String).filter((f) => f.endsWith(".parquet")).length).toBe(1);
    expect(stopped).toEqual([]);

    // Completed, the same overwrite announces every line once the new dataset is in place.
    const completed: { upTo: number; files: Set<string>; deadLetters: Set<number> }[] = [];
    await run(
      stream(completed, out, join(dir.path, "completed-dead")).pipe(
        validate(Reading),
        deadLetter(join(dir.path, "completed-dead"), { maxFileAgeMs: 20 }),
        toParquet(out, { schema: Reading, partitionBy: ["zone"], mode: "overwrite", maxFileRows: 100 }),
      ),
    );
    expect(completed.at(-1)?.upTo).toBe(COUNT);
    // The first announcement came after the swap: the files it saw are the new dataset's.
    expect(completed[0]?.files.size).toBeGreaterThan(5);
  });
});
