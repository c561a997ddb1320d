/**
 * Exclusive locks on what a run writes: a dataset folder, a dead-letter folder, a checkpoint, a
 * replay. One writer at a time: a second one is refused with a message naming the holder (pid,
 * host, run id, since when) and the lock file; a lock whose holder died is taken over by exactly
 * one of the processes that find it.
 *
 * A lock is a small JSON file (`{ pid, host, runId, since, token, ... }`). Why these steps:
 *
 * - It is created by writing the holder to a fresh file of our own (fsynced) and hard-linking
 *   that file to the lock's name. `link` fails with EEXIST when the name exists, as O_EXCL does,
 *   but the lock appears whole: `open(O_EXCL)` then `write` leaves a moment when the file is
 *   empty, and a second process reading it then would take a live lock for a torn, stale one.
 * - A lock is stale when its holder's process is gone on this host (`kill(pid, 0)` fails with
 *   ESRCH, or it is a zombie), or names this process but this process no longer holds it. A
 *   holder on another host is never taken for gone: sluice cannot see its processes.
 * - Taking over a stale lock is the hard part. "Rename a fresh file over it, then read it back to
 *   confirm" lets two takers both win: A renames and reads back its own lock, then B (which read
 *   the stale lock before A's rename) renames over A's and reads back its own. A lock directory
 *   has the same problem one level up. So takers of one stale lock first take a second lock
 *   named after the stale lock's exact bytes (`<lock>.takeover-<digest>`), with this same
 *   function; only its holder may replace the stale lock, and only after reading it again and
 *   finding the same bytes. Two takers cannot both hold that guard, and the second to get it
 *   reads the winner's lock, not the stale one, so it stops. The guard can go stale too (a
 *   taker killed between two system calls): it is taken over the same way, one level deeper.
 *   A plain `acquire` never replaces anything (it only links a name that does not exist), so
 *   nobody slips in while a stale lock is being replaced: the name is never missing.
 * - `flock(2)` would end with its holder by itself, but Node's fs has no flock, a lock the kernel
 *   drops leaves nothing to name in the refusal, and a replay needs its lock to outlive a crash:
 *   that is how the next replay knows to roll it back.
 *
 * Everything here is synchronous: a lock is taken once per run, with a few system calls, and
 * `openCheckpoint` (synchronous) takes one.
 *
 * Shared locks ({@link acquireSharedLock}) let several writers append to one folder at once (the
 * workers of a broker's consumer group) while still refusing a writer that needs it alone. Each
 * shared holder keeps a member file in `<lock>.shared/`; it registers while holding the lock
 * itself for a moment, and an exclusive taker, once it holds the lock, looks for live members
 * and gives the lock back when it finds one. Both look while holding the same lock, so an
 * exclusive writer and a shared one never both write.
 */
import { createHash, randomBytes } from "node:crypto";
import { closeSync, fsyncSync, linkSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, unlinkSync, writeSync } from "node:fs";
import { fsyncFolder } from "./fsync.ts";
import { hostname } from "node:os";
import { basename, dirname, join, resolve } from "node:path";

/** Who holds a lock, as stored in its file. Fields other than these are the user's (`fields`). */
export interface LockHolder {
  readonly pid: number;
  readonly host: string;
  readonly runId: string;
  /** When the lock was taken (ISO 8601). */
  readonly since: string;
  /** Random: tells this acquisition apart from any other, even of the same pid and run. */
  readonly token: string;
  readonly [field: string]: unknown;
}

/**
 * A lock file as read back: the fields {@link LockHolder} names (and a replay's `startedAt`) may
 * be missing or of another type, since the file may be torn or written by something else.
 */
export interface StoredLock {
  readonly pid?: unknown;
  readonly host?: unknown;
  readonly runId?: unknown;
  readonly since?: unknown;
  readonly startedAt?: unknown;
  readonly token?: unknown;
  readonly [field: string]: unknown;
}

/** Options of {@link acquireLock}. */
export interface LockOptions {
  /** The run taking the lock. */
  readonly runId: string;
  /** What the lock guards, for messages: `dataset folder out/events`. */
  readonly what: string;
  /** More fields to store in the lock file (a replay keeps its module and folder there). */
  readonly fields?: Readonly<Record<string, unknown>>;
  /**
   * Called when a stale lock is about to be taken over, while this process alone has the right
   * to take it over, with what the stale file held (undefined when it was not a lock: torn or
   * not JSON). A replay rolls back the dead one's files here. Throwing stops the takeover and
   * leaves the stale lock as it was.
   */
  readonly onStale?: (stale: Readonly<Record<string, unknown>> | undefined) => void;
}

/** Another live writer holds the lock. `holder` is what its lock file says. */
export class LockedError extends Error {
  /** The lock file. */
  readonly path: string;
  readonly holder: Readonly<Record<string, unknown>> | undefined;
  constructor(path: string, message: string, holder: Readonly<Record<string, unknown>> | undefined) {
    super(message);
    this.name = "LockedError";
    this.path = path;
    this.holder = holder;
  }
}

// Tokens of the locks this process holds. A lock file naming this pid is live only if its token
// is here: a run that failed in this process, or a process that had this pid before, left it.
const held = new Set<string>();

// How often a taker waits for another process that is taking over the same stale lock (each
// wait 5-25 ms) before giving up and reporting it.
const TAKEOVER_WAITS = 100;

/** A lock this process holds, until {@link Lock.release}. */
export class Lock {
  readonly path: string;
  readonly holder: LockHolder;
  readonly #text: string;
  #held = true;

  constructor(path: string, holder: LockHolder, text: string) {
    this.path = path;
    this.holder = holder;
    this.#text = text;
  }

  /** True until released or abandoned. */
  get held(): boolean {
    return this.#held;
  }

  /**
   * Removes the lock file, if it is still this lock's. Idempotent; never throws: a file that
   * could not be removed names this process, and is stale, and taken over, once it has ended.
   */
  release(): void {
    if (!this.#held) return;
    this.#held = false;
    held.delete(this.holder.token);
    try {
      if (readFileSync(this.path, "utf8") === this.#text) unlinkSync(this.path);
    } catch {
      // Gone already, or unreadable: see above.
    }
  }

  /**
   * Stops holding the lock but leaves its file, which is stale from now on: the next taker finds
   * it and (through `onStale`) cleans up after this run. A replay that failed does this.
   */
  abandon(): void {
    this.#held = false;
    held.delete(this.holder.token);
  }
}

/**
 * The lock file of a folder or file: `.<name>.lock` beside it, so it stays put when a dataset
 * folder is swapped for a new one and never shows up among the files inside.
 *
 * @example
 * lockPathOf("out/events"); // "<cwd>/out/.events.lock"
 */
export function lockPathOf(target: string): string {
  const absolute = resolve(target);
  return join(dirname(absolute), `.${basename(absolute)}.lock`);
}

/**
 * Takes the lock at `path` for this process, creating its folder if needed, or throws a
 * {@link LockedError} naming the live holder. A stale lock (see the module comment) is taken
 * over, by exactly one of the processes that try at once.
 *
 * @example
 * const lock = acquireLock(lockPathOf("out/events"), { runId, what: "dataset folder out/events" });
 * try {
 *   // write
 * } finally {
 *   lock.release();
 * }
 */
export function acquireLock(path: string, options: LockOptions): Lock {
  const lock = takeLock(path, options);
  try {
    refuseSharers(path, options.what);
  } catch (error) {
    lock.release();
    throw error;
  }
  return lock;
}

/**
 * Takes a shared hold on the lock at `path`: any number of shared holders write at once, but none
 * while an exclusive holder ({@link acquireLock}) has it, and no exclusive one while a shared one
 * lives. Throws a {@link LockedError} naming the exclusive holder. Release it as any lock; a
 * holder that died leaves a member file that is stale and passed over.
 *
 * @example
 * const lock = acquireSharedLock(lockPathOf("out/events"), { runId, what: "dataset folder out/events" });
 */
export function acquireSharedLock(path: string, options: LockOptions): Lock {
  let waits = 0;
  for (;;) {
    let gate: Lock;
    try {
      gate = takeLock(path, { ...options, fields: { ...options.fields, joining: true } });
    } catch (error) {
      // Another shared holder registering: it lets go in a few system calls.
      if (error instanceof LockedError && error.holder?.["joining"] === true && ++waits <= TAKEOVER_WAITS) {
        Bun.sleepSync(1 + Math.floor(Math.random() * 10));
        continue;
      }
      throw error;
    }
    try {
      const holder = holderOf(options, { shared: true });
      const text = `${JSON.stringify(holder)}\n`;
      const members = sharersOf(path);
      mkdirSync(members, { recursive: true });
      const member = join(members, `${holder.token}.json`);
      writeDurably(member, text);
      fsyncFolder(members);
      held.add(holder.token);
      return new Lock(member, holder, text);
    } finally {
      gate.release();
    }
  }
}

/** The folder of a lock's shared holders' member files. */
function sharersOf(path: string): string {
  return `${path}.shared`;
}

/**
 * Under the lock at `path`: throws a {@link LockedError} naming a live shared holder, if any, and
 * removes the member files of shared holders that are gone.
 */
function refuseSharers(path: string, what: string): void {
  const members = sharersOf(path);
  let names: string[];
  try {
    names = readdirSync(members);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return;
    throw error;
  }
  const live: Readonly<Record<string, unknown>>[] = [];
  for (const name of names) {
    if (!name.endsWith(".json")) continue;
    const member = join(members, name);
    const holder = readLockFile(member);
    if (holder && isLive(holder)) live.push(holder);
    else rmSync(member, { force: true });
  }
  const first = live[0];
  if (first) {
    const more = live.length > 1 ? ` and ${live.length - 1} more` : "";
    throw new LockedError(
      path,
      `${what} is in use by ${describe(first)}${more}, appending to it together (shared lock ${members}). Wait for them to finish or stop them: this writer needs it alone`,
      first,
    );
  }
}

/** A new holder of a lock: this process and run, since now, a fresh token, then `extra` and the caller's fields. */
function holderOf(options: LockOptions, extra?: { shared: true }): LockHolder {
  return {
    pid: process.pid,
    host: hostname(),
    runId: options.runId,
    since: new Date().toISOString(),
    token: randomBytes(8).toString("hex"),
    ...extra,
    ...options.fields,
  };
}

/** {@link acquireLock} without the look for shared holders (a takeover's guard has none). */
function takeLock(path: string, options: LockOptions): Lock {
  mkdirSync(dirname(path), { recursive: true });
  const holder = holderOf(options);
  const text = `${JSON.stringify(holder)}\n`;
  const fresh = `${path}.${holder.token}.new`;
  writeDurably(fresh, text);
  try {
    place(path, fresh, options);
  } finally {
    // Linked: the fresh name is a second name for the lock. Renamed: it is gone already.
    rmSync(fresh, { force: true });
  }
  fsyncFolder(dirname(path));
  held.add(holder.token);
  return new Lock(path, holder, text);
}

/** Puts `fresh` at `path`: links it when the name is free, replaces a stale lock through a guard. */
function place(path: string, fresh: string, options: LockOptions): void {
  let waits = 0;
  for (let attempt = 0; attempt < 1000; attempt++) {
    try {
      linkSync(fresh, path);
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    }
    const seen = readText(path);
    // Released between our link and our read: try the link again.
    if (seen === undefined) continue;
    const stale = parse(seen);
    if (stale && isLive(stale)) throw new LockedError(path, busyMessage(options.what, path, stale), stale);
    let guard: Lock;
    try {
      guard = takeLock(`${path}.takeover-${digest(seen)}`, { runId: options.runId, what: `the takeover of ${path}` });
    } catch (error) {
      if (!(error instanceof LockedError)) throw error;
      // Another process is taking it over now: soon its lock is there and it is named as the
      // holder. One whose takeover takes long (a replay rolling back) is named as the taker.
      if (++waits > TAKEOVER_WAITS) {
        throw new LockedError(
          path,
          `${options.what} is being taken over from a run that ended (${path}) by ${describe(error.holder)}; try again once it is done`,
          error.holder,
        );
      }
      Bun.sleepSync(5 + Math.floor(Math.random() * 20));
      continue;
    }
    try {
      // Someone took it over before we held the guard: look again at what is there now.
      if (readText(path) !== seen) continue;
      options.onStale?.(stale);
      renameSync(fresh, path);
      return;
    } finally {
      guard.release();
    }
  }
  throw new LockedError(path, `${options.what}: ${path} kept changing while sluice tried to take it; another process keeps taking and releasing it`, undefined);
}

/**
 * What a lock file holds, or undefined when it is missing, torn or not a lock. Does not say
 * whether the holder is alive: see {@link isLive}.
 *
 * @example
 * const holder = readLockFile(lockPathOf("out/events"));
 */
export function readLockFile(path: string): Readonly<Record<string, unknown>> | undefined {
  const text = readText(path);
  return text === undefined ? undefined : parse(text);
}

/**
 * True when a lock file's holder may still be running: a process of this host that exists, this
 * process holding that very lock, or any holder on another host (sluice cannot see those).
 *
 * @example
 * const holder = readLockFile(path);
 * if (holder && !isLive(holder)) console.log("left by a run that ended");
 */
export function isLive(holder: StoredLock): boolean {
  const pid = holder.pid;
  if (typeof pid !== "number" || !Number.isInteger(pid) || pid <= 0) return false;
  if (typeof holder.host === "string" && holder.host !== hostname()) return true;
  if (pid === process.pid) return typeof holder.token === "string" && held.has(holder.token);
  try {
    process.kill(pid, 0);
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
  return !isZombie(pid);
}

/** A killed process its parent has not reaped yet still answers `kill(pid, 0)`; Linux shows it as `Z`. */
function isZombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) === "Z";
  } catch {
    return false;
  }
}

function busyMessage(what: string, path: string, holder: StoredLock): string {
  const elsewhere = typeof holder.host === "string" && holder.host !== hostname();
  return `${what} is in use by ${describe(holder)} (lock ${path}). ${
    elsewhere
      ? `sluice cannot tell whether a process on another host is alive: wait for that run to finish, or remove the lock file if it is gone`
      : "Wait for that run to finish or stop it: two writers at once lose rows"
  }`;
}

function describe(holder: StoredLock | undefined): string {
  if (!holder) return "another process";
  return `run ${String(holder.runId)} (pid ${String(holder.pid)} on host ${String(holder.host ?? hostname())}, since ${String(holder.since ?? holder.startedAt ?? "an unknown time")})`;
}

function parse(text: string): Readonly<Record<string, unknown>> | undefined {
  try {
    const value = JSON.parse(text) as unknown;
    return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
}

function digest(text: string): string {
  return createHash("sha256").update(text).digest("hex").slice(0, 16);
}

function writeDurably(path: string, text: string): void {
  const fd = openSync(path, "wx");
  try {
    const bytes = Buffer.from(text);
    let written = 0;
    while (written < bytes.length) written += writeSync(fd, bytes, written);
    fsyncSync(fd);
  } catch (error) {
    closeSync(fd);
    rmSync(path, { force: true });
    throw error;
  }
  closeSync(fd);
}

