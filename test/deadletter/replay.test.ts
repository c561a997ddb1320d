import { Database } from "bun:sqlite";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { of } from "rxjs";
import { definePipeline } from "../../src/run/pipeline.ts";
import { readReplayState, recoverReplay, replayDeadLetters } from "../../src/deadletter/replay.ts";
import { summarizeDeadLetters } from "../../src/deadletter/summarize.ts";
import { tempDir } from "../helpers/duckdb.ts";

/** A pipeline that must never be reached: every attack here is refused before it runs. */
const pipeline = definePipeline({
  description: "never run",
  source: () => of(),
  process: () => {
    throw new Error("the pipeline was built, so the replay went ahead");
  },
});

let dir: { path: string; remove: () => Promise<void> };
let deadPid: number;
beforeAll(async () => {
  dir = await tempDir("sluice-replay-attacks-");
  // The pid of a process that has exited: a lock naming it is a crashed replay's.
  const child = Bun.spawn(["true"]);
  await child.exited;
  deadPid = child.pid;
});
afterAll(() => dir.remove());

let cases = 0;
/** A fresh `<base>/out/dead-letter` holding one dead letter, and a precious file and folder beside it. */
function setUp() {
  const base = join(dir.path, `case-${cases++}`);
  const folder = join(base, "out", "dead-letter");
  mkdirSync(folder, { recursive: true });
  const entry = { stage: "parse", source: "in.ndjson", line: 1, raw: "{", error: "malformed", at: "2024-03-01T00:00:00.000Z", runId: "r1" };
  writeFileSync(join(folder, "dead-letter-r1-00000.ndjson"), `${JSON.stringify(entry)}\n`);
  for (const victim of ["victim", join("out", "victim3"), "victim4"]) {
    mkdirSync(join(base, victim), { recursive: true });
    writeFileSync(join(base, victim, "precious.txt"), "keep me");
  }
  return { base, folder };
}

function lock(folder: string, fields: Record<string, unknown>): void {
  writeFileSync(join(folder, "replay.lock"), JSON.stringify({ pid: deadPid, startedAt: "2024-03-01T00:00:00.000Z", module: "m.ts", ...fields }));
}

/** A snapshot checkpoint as the sink leaves it: the paths of the files it started to commit. */
function checkpoint(folder: string, runId: string, paths: string[]): void {
  mkdirSync(join(folder, `.replay-${runId}`), { recursive: true });
  const db = new Database(join(folder, `.replay-${runId}`, "checkpoint.sqlite"), { create: true });
  db.run(`CREATE TABLE commits (path TEXT NOT NULL, partition_key TEXT NOT NULL, source TEXT NOT NULL,
    first_line INTEGER NOT NULL, last_line INTEGER NOT NULL, run_id TEXT NOT NULL, durable INTEGER NOT NULL)`);
  for (const path of paths) db.query("INSERT INTO commits VALUES (?, '', 'in.ndjson', 1, 1, ?, 1)").run(path, runId);
  db.close();
}

/** Every file under `folder`, relative to it. */
function filesUnder(folder: string): string[] {
  return readdirSync(folder, { recursive: true, encoding: "utf8" })
    .filter((name) => statSync(join(folder, name)).isFile())
    .sort();
}

describe("replay refuses run ids and locks that name paths", () => {
  test("an unsafe run id is refused before the folder is touched", async () => {
    const { base, folder } = setUp();
    const before = filesUnder(base);
    for (const runId of ["../../victim", "../victim4", "a/b", ".."]) {
      await expect(replayDeadLetters(folder, pipeline, { runId })).rejects.toThrow(`replay: runId: ${JSON.stringify(runId)} is not a valid run id`);
    }
    await expect(replayDeadLetters(folder, pipeline, { runId: "../../victim", dryRun: true })).rejects.toThrow("is not a valid run id");
    expect(filesUnder(base)).toEqual(before);
  });

  test('a crafted lock {"runId":"../../../victim3"} makes the next replay stop, deleting nothing', async () => {
    const { base, folder } = setUp();
    lock(folder, { runId: "../../../victim3", cwd: base });
    const before = filesUnder(base);
    const error = await replayDeadLetters(folder, pipeline).catch((e: Error) => e);
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toContain(`replay: the lock ${join(folder, "replay.lock")}: "../../../victim3" is not a valid run id`);
    expect((error as Error).message).toContain("nothing it names was deleted");
    await expect(recoverReplay(folder)).rejects.toThrow("is not a valid run id");
    expect(filesUnder(base)).toEqual(before);
    expect(existsSync(join(base, "out", "victim3", "precious.txt"))).toBe(true);
    // Reading the folder still works: the lock is not taken for a replay's.
    expect(readReplayState(folder).unfinished).toBeUndefined();
    expect((await summarizeDeadLetters(folder)).open).toBe(1);
  });

  test("a crafted snapshot checkpoint naming another file stops the rollback before anything is deleted", async () => {
    const { base, folder } = setUp();
    lock(folder, { runId: "evil", cwd: base });
    checkpoint(folder, "evil", [join(base, "victim4", "precious.txt"), "/etc/hostname", join(base, "victim4", "part-evil-000000000000.parquet.txt")]);
    // A file the rollback would delete if it went ahead: it must stay too (nothing is deleted).
    writeFileSync(join(folder, "dead-letter-evil-00000.ndjson"), "");
    const before = filesUnder(base);
    const error = await replayDeadLetters(folder, pipeline).catch((e: Error) => e);
    expect((error as Error).message).toContain("names 3 file(s) that are not that replay's");
    expect((error as Error).message).toContain("nothing was deleted");
    expect(filesUnder(base)).toEqual(before);
  });

  test("the lock's cwd is not trusted: relative paths recorded elsewhere stop the rollback", async () => {
    const { base, folder } = setUp();
    // The attacker points cwd at the victim folder and lists a file there by a relative name.
    writeFileSync(join(base, "victim4", "part-evil2-000000000000.parquet"), "not sluice's");
    lock(folder, { runId: "evil2", cwd: join(base, "victim4") });
    checkpoint(folder, "evil2", ["part-evil2-000000000000.parquet"]);
    const before = filesUnder(base);
    const error = await recoverReplay(folder).catch((e: Error) => e);
    expect((error as Error).message).toContain(`its lock says that was ${join(base, "victim4")}, not ${process.cwd()}`);
    expect((error as Error).message).toContain("nothing was deleted");
    expect(filesUnder(base)).toEqual(before);
  });

  test("an unfinished replay's own files are rolled back, and only those", async () => {
    const { base, folder } = setUp();
    const events = join(base, "out", "events", "event_date=2024-03-01");
    mkdirSync(events, { recursive: true });
    const own = join(events, "part-broken-000000000003.parquet");
    const other = join(events, "part-broken-extra-000000000003.parquet");
    writeFileSync(own, "rows of the replay");
    writeFileSync(other, "rows of run broken-extra");
    writeFileSync(join(folder, "dead-letter-broken-00000.ndjson"), "");
    writeFileSync(join(folder, ".dead-letter-broken-00001.ndjson.tmp"), "");
    // Run "broken-extra" starts with "broken-": its dead letters are not the replay's.
    writeFileSync(join(folder, "dead-letter-broken-extra-00000.ndjson"), "");
    lock(folder, { runId: "broken", cwd: "/somewhere/else" });
    checkpoint(folder, "broken", [own]);
    const undone = await recoverReplay(folder);
    expect(undone?.runId).toBe("broken");
    expect(undone?.datasetFiles).toEqual([own]);
    expect(undone?.deadLetterFiles).toEqual([join(folder, "dead-letter-broken-00000.ndjson")]);
    expect(existsSync(own)).toBe(false);
    expect(existsSync(other)).toBe(true);
    expect(readdirSync(folder).sort()).toEqual(["dead-letter-broken-extra-00000.ndjson", "dead-letter-r1-00000.ndjson"]);
    expect(existsSync(join(base, "victim", "precious.txt"))).toBe(true);
  });
});
