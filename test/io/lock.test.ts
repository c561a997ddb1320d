/**
 * The lock every writer of a folder takes (src/io/lock.ts): one holder at a time, a refusal that
 * names the holder, a dead holder's lock taken over, and of several takers exactly one winning.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { acquireLock, isLive, LockedError, lockPathOf, readLockFile } from "../../src/io/lock.ts";
import { tempDir } from "../helpers/duckdb.ts";

const TAKER = join(import.meta.dir, "..", "fixtures", "lock-taker.ts");

let dir: { path: string; remove: () => Promise<void> };
let deadPid: number;
beforeAll(async () => {
  dir = await tempDir("sluice-lock-");
  // The pid of a process that has exited (and was reaped): a lock naming it is stale.
  const child = Bun.spawn(["true"]);
  await child.exited;
  deadPid = child.pid;
});
afterAll(() => dir.remove());

let cases = 0;
const lockPath = () => join(dir.path, `case-${cases++}`, "target.lock");

/** A lock-taker process (test/fixtures/lock-taker.ts) driven line by line. */
class Taker {
  readonly child: Subprocess<"pipe", "pipe", "inherit">;
  readonly #lines: string[] = [];
  readonly #waiting: ((line: string) => void)[] = [];

  constructor() {
    this.child = Bun.spawn(["bun", TAKER], { stdin: "pipe", stdout: "pipe", stderr: "inherit" });
    this.#read();
  }

  async #read() {
    const decoder = new TextDecoder();
    let pending = "";
    for await (const chunk of this.child.stdout) {
      pending += decoder.decode(chunk, { stream: true });
      for (let end = pending.indexOf("\n"); end >= 0; end = pending.indexOf("\n")) {
        const line = pending.slice(0, end);
        pending = pending.slice(end + 1);
        const waiter = this.#waiting.shift();
        if (waiter) waiter(line);
        else this.#lines.push(line);
      }
    }
  }

  /** Sends a command; resolves with its answer. */
  ask(command: string): Promise<{ won?: boolean; error?: string }> {
    const answer = new Promise<string>((resolve) => {
      const line = this.#lines.shift();
      if (line !== undefined) resolve(line);
      else this.#waiting.push(resolve);
    });
    this.child.stdin.write(`${command}\n`);
    this.child.stdin.flush();
    return answer.then((line) => JSON.parse(line));
  }

  async stop() {
    this.child.kill("SIGKILL");
    await this.child.exited;
  }
}

/** A lock file as a run that died left it. */
function staleLock(path: string, runId: string) {
  writeFileSync(path, JSON.stringify({ pid: deadPid, host: hostname(), runId, since: "2024-03-01T00:00:00.000Z", token: Math.random().toString(36).slice(2) }));
}

describe("a lock", () => {
  test("refuses a second holder in this process, naming the run id, pid, host, start time and the lock file", () => {
    const path = lockPath();
    const first = acquireLock(path, { runId: "run-a", what: "dataset folder out/events" });
    const error = (() => {
      try {
        acquireLock(path, { runId: "run-b", what: "dataset folder out/events" });
      } catch (e) {
        return e as LockedError;
      }
    })();
    expect(error).toBeInstanceOf(LockedError);
    expect(error?.message).toContain("dataset folder out/events is in use by run run-a");
    expect(error?.message).toContain(`pid ${process.pid} on host ${hostname()}`);
    expect(error?.message).toContain(`since ${first.holder.since}`);
    expect(error?.message).toContain(path);
    expect(error?.holder).toMatchObject({ runId: "run-a", pid: process.pid });
    first.release();
  });

  test("is removed by release, taken by the next one, and a second release removes nothing of theirs", () => {
    const path = lockPath();
    const first = acquireLock(path, { runId: "a", what: "x" });
    first.release();
    expect(existsSync(path)).toBe(false);
    const second = acquireLock(path, { runId: "b", what: "x" });
    first.release();
    expect(readLockFile(path)).toMatchObject({ runId: "b" });
    second.release();
    // Only the lock was ever in the folder: no temporary or takeover files are left behind.
    expect(readdirSync(join(path, ".."))).toEqual([]);
  });

  test("is taken over when its holder was killed with SIGKILL", async () => {
    const path = lockPath();
    const holder = new Taker();
    expect(await holder.ask(`hold ${path} killed-run`)).toEqual({ won: true });
    const live = readLockFile(path);
    expect(live).toMatchObject({ runId: "killed-run", pid: holder.child.pid });
    expect(() => acquireLock(path, { runId: "next", what: "x" })).toThrow(`in use by run killed-run (pid ${holder.child.pid}`);
    await holder.stop();
    expect(live && isLive(live)).toBe(false);
    const next = acquireLock(path, { runId: "next", what: "x" });
    expect(readLockFile(path)).toMatchObject({ runId: "next", pid: process.pid });
    next.release();
    expect(readdirSync(join(path, ".."))).toEqual([]);
  });

  test("left by this process (abandoned) or by an earlier process with this pid is stale; held by another host, never", () => {
    const path = lockPath();
    const abandoned = acquireLock(path, { runId: "failed-replay", what: "x" });
    abandoned.abandon();
    expect(existsSync(path)).toBe(true);
    const seen: unknown[] = [];
    const next = acquireLock(path, { runId: "next", what: "x", onStale: (stale) => seen.push(stale) });
    expect(seen).toEqual([expect.objectContaining({ runId: "failed-replay" })]);
    next.release();

    writeFileSync(path, JSON.stringify({ pid: process.pid, runId: "before-a-restart", since: "2024-03-01T00:00:00.000Z" }));
    acquireLock(path, { runId: "after", what: "x" }).release();

    writeFileSync(path, JSON.stringify({ pid: deadPid, host: "elsewhere", runId: "remote", since: "2024-03-01T00:00:00.000Z", token: "t" }));
    expect(() => acquireLock(path, { runId: "here", what: "x" })).toThrow("cannot tell whether a process on another host is alive");
    expect(readLockFile(path)).toMatchObject({ runId: "remote" });
  });

  test("lives beside its folder, so it stays when the folder is swapped", () => {
    expect(lockPathOf("/data/out/events")).toBe("/data/out/.events.lock");
    expect(lockPathOf("/data/out/events/")).toBe("/data/out/.events.lock");
  });
});

describe("two processes taking over one stale lock at the same moment", () => {
  test("exactly one wins and rolls back the dead holder, the other is refused naming it: 20 times out of 20", async () => {
    const takers = [new Taker(), new Taker()];
    try {
      for (let trial = 0; trial < 20; trial++) {
        const path = lockPath();
        acquireLock(path, { runId: "setup", what: "x" }).release();
        staleLock(path, `dead-${trial}`);
        const answers = await Promise.all(takers.map((taker, i) => taker.ask(`take ${path} taker-${i}`)));
        const winners = answers.flatMap((answer, i) => (answer.won ? [i] : []));
        expect(winners.length).toBe(1);
        const winner = winners[0] as number;
        const loser = answers[1 - winner];
        // Refused naming the winner: as the holder, or (on a slow machine) as the one taking it over.
        expect(loser?.error).toContain(`run taker-${winner} (pid ${takers[winner]?.child.pid}`);
        // The stale holder's cleanup ran once, in the winner.
        expect(readFileSync(`${path}.stale`, "utf8")).toBe(`${takers[winner]?.child.pid}\n`);
        expect(readLockFile(path)).toMatchObject({ runId: `taker-${winner}` });
        await takers[winner]?.ask("release");
        rmSync(`${path}.stale`);
        expect(readdirSync(join(path, ".."))).toEqual([]);
      }
    } finally {
      await Promise.all(takers.map((taker) => taker.stop()));
    }
  });
});
