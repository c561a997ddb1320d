/**
 * The dead-letter store in mode overwrite keeps a folder's earlier dead letters until the run
 * completes (issue 12: a failed overwrite run used to leave neither its own nor the earlier ones),
 * and holds the folder's lock while open.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { DeadLetter } from "../../src/deadletter/entry.ts";
import { openDeadLetterStore, readDeadLetters } from "../../src/deadletter/store.ts";
import { LockedError } from "../../src/io/lock.ts";
import { Observable } from "rxjs";
import * as v from "valibot";
import { deadLetter, validate } from "../../operators/index.ts";
import { fromPush, run, toParquet } from "../../src/index.ts";
import { dataset, query, tempDir } from "../helpers/duckdb.ts";

let dir: { path: string; remove: () => Promise<void> };
beforeAll(async () => {
  dir = await tempDir("sluice-dl-overwrite-");
});
afterAll(() => dir.remove());
let cases = 0;

const entry = (runId: string, line: number): DeadLetter => ({ stage: "validate", source: "in", line, raw: "{}", error: "e", at: "", runId });

/** A folder with two earlier runs' dead letters (old-a: lines 1, 2; old-b: line 3) and a replay ledger. */
async function folderWithOldDeadLetters(): Promise<string> {
  const folder = join(dir.path, `case-${cases++}`);
  for (const [runId, lines] of [["old-a", [1, 2]], ["old-b", [3]]] as const) {
    const store = await openDeadLetterStore(folder, runId);
    for (const line of lines) store.add(entry(runId, line));
    await store.close();
  }
  writeFileSync(join(folder, "replayed-r.ledger"), "{}\n");
  return folder;
}

async function lines(folder: string): Promise<string[]> {
  const found: string[] = [];
  for await (const e of readDeadLetters(folder)) found.push(`${e.runId}:${e.line}`);
  return found;
}

describe("the dead-letter store in mode overwrite", () => {
  test("keeps the earlier dead letters while it is open, even after its own files are committed, and replaces them at close", async () => {
    const folder = await folderWithOldDeadLetters();
    const store = await openDeadLetterStore(folder, "new", { mode: "overwrite" });
    store.add(entry("new", 7));
    await store.flush();
    store.add(entry("new", 8));
    await store.flush();
    expect(await lines(folder)).toEqual(["old-a:1", "old-a:2", "old-b:3"]);
    await store.close();
    expect(await lines(folder)).toEqual(["new:7", "new:8"]);
    expect(store.files).toEqual([join(folder, "dead-letter-new-00000.ndjson"), join(folder, "dead-letter-new-00001.ndjson")]);
    // Replay ledgers stay, as before; nothing hidden is left.
    expect(readdirSync(folder).sort()).toEqual(["dead-letter-new-00000.ndjson", "dead-letter-new-00001.ndjson", "replayed-r.ledger"]);
  });

  test("closed with no dead letters of its own, it leaves the folder without dead letters, and a re-run of a clean pipeline succeeds", async () => {
    const folder = await folderWithOldDeadLetters();
    const store = await openDeadLetterStore(folder, "clean", { mode: "overwrite" });
    await store.close();
    expect(await lines(folder)).toEqual([]);
    expect(store.files).toEqual([]);
    expect(readdirSync(folder).sort()).toEqual(["replayed-r.ledger"]);

    // The same through a run: the second, with nothing rejected, used to fail at its end
    // (ENOENT renaming a staging folder never made) and commit no data.
    const Row = v.object({ id: v.string() });
    const out = join(dir.path, `case-${cases++}`);
    const once = async (records: unknown[]) => {
      const source = fromPush<unknown>();
      const done = run(source.pipe(validate(Row), deadLetter(join(out, "dead-letter"), { mode: "overwrite" }), toParquet(join(out, "data"), { schema: Row, mode: "overwrite" })));
      for (const r of records) source.push(r);
      source.end();
      return done;
    };
    expect((await once([{ id: 1 }, { id: "a" }])).deadLettered).toBe(1);
    expect(await once([{ id: "b" }, { id: "c" }])).toMatchObject({ written: 2, deadLettered: 0 });
    expect(await lines(join(out, "dead-letter"))).toEqual([]);
    expect((await query(`SELECT id FROM ${dataset(join(out, "data"))} ORDER BY id`)).map((r) => r.id)).toEqual(["b", "c"]);
  });

  test("cancelled (the run failed or was stopped): the earlier dead letters stay and its own are dropped", async () => {
    const folder = await folderWithOldDeadLetters();
    const store = await openDeadLetterStore(folder, "failed", { mode: "overwrite" });
    store.add(entry("failed", 7));
    await store.flush();
    store.add(entry("failed", 8));
    await store.cancel?.();
    expect(await lines(folder)).toEqual(["old-a:1", "old-a:2", "old-b:3"]);
    expect(readdirSync(folder).filter((n) => n.startsWith("."))).toEqual([]);
  });

  test("in a run that fails below the folder after the completion passed it (the sink's last commit), the earlier dead letters stay", async () => {
    const folder = await folderWithOldDeadLetters();
    const Row = v.object({ id: v.string() });
    // A sink whose last commit fails: the completion has gone through the folder, then the run errors.
    const failsAtEnd = (records: Observable<unknown>) =>
      new Observable<unknown>((subscriber) =>
        records.subscribe({
          next: (record) => subscriber.next(record),
          error: (error) => subscriber.error(error),
          complete: () => subscriber.error(new Error("the last commit failed")),
        }),
      );
    const source = fromPush<unknown>();
    const done = run(source.pipe(validate(Row), deadLetter(folder, { mode: "overwrite" }), failsAtEnd), { handleSignals: false });
    source.push({ id: 1 });
    source.push({ id: "a" });
    source.end();
    expect(await done.then(() => "resolved", (error: Error) => error.message)).toBe("the last commit failed");
    expect(await lines(folder)).toEqual(["old-a:1", "old-a:2", "old-b:3"]);
    expect(readdirSync(folder).filter((n) => n.startsWith(".") || n.endsWith(".lock"))).toEqual([]);
  });

  test("cut off while its files moved in, it is finished by the next store to open the folder", async () => {
    const folder = await folderWithOldDeadLetters();
    // What a store of run "cut" left when killed after moving one of its two files in.
    mkdirSync(join(folder, ".publishing-cut"));
    writeFileSync(join(folder, "dead-letter-cut-00000.ndjson"), `${JSON.stringify(entry("cut", 7))}\n`);
    writeFileSync(join(folder, ".publishing-cut", "dead-letter-cut-00001.ndjson"), `${JSON.stringify(entry("cut", 8))}\n`);
    // And an overwrite that never got to close: dropped.
    mkdirSync(join(folder, ".staging-never"));
    writeFileSync(join(folder, ".staging-never", "dead-letter-never-00000.ndjson"), `${JSON.stringify(entry("never", 9))}\n`);
    await (await openDeadLetterStore(folder, "next")).close();
    expect(await lines(folder)).toEqual(["cut:7", "cut:8"]);
    expect(readdirSync(folder).filter((n) => n.startsWith("."))).toEqual([]);
  });

  test("refuses a second store on the same folder while the first is open, and lets it in after", async () => {
    const folder = join(dir.path, `case-${cases++}`);
    const first = await openDeadLetterStore(folder, "first");
    const refused = await openDeadLetterStore(folder, "second").catch((e) => e);
    expect(refused).toBeInstanceOf(LockedError);
    expect(refused.message).toContain(`dead-letter folder ${folder} is in use by run first (pid ${process.pid}`);
    await first.close();
    await (await openDeadLetterStore(folder, "second")).close();
  });
});
