/**
 * The default dead-letter store: a folder of NDJSON files, one entry a line.
 *
 * Entries are gathered in memory and committed as whole files (temporary name, fsync, link),
 * like the dataset, so a crash never leaves a torn line and a reader never sees half an entry.
 * A file is committed once `fileBytes` are gathered or the oldest gathered entry is
 * `maxFileAgeMs` old, so a long-running app's rare bad record is durable within a bound, not
 * only when the run ends.
 *
 * One store writes a folder at a time: it holds the folder's lock (`.<folder>.lock` beside it,
 * see src/io/lock.ts) from open to close. In mode `overwrite`, a folder's earlier dead letters
 * stay until the run completes: this run's files wait in a hidden `.staging-<runId>/` folder
 * inside it and replace the earlier ones at `close`; a run that fails or is stopped (`cancel`)
 * leaves the folder as it was.
 */
import { readdirSync, renameSync, rmSync } from "node:fs";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { isDeadLetterFileOf } from "../flow/runId.ts";
import { acquireLock, type Lock, lockPathOf } from "../io/lock.ts";
import { commitFile } from "../parquet/encode.ts";
import { type DeadLetter, deadLetterFileName } from "./entry.ts";

/** What to do with dead letters already in the folder. */
export type DeadLetterMode = "append" | "overwrite" | "error";

export interface DeadLetterStoreOptions {
  /**
   * `append` (default) keeps earlier runs' files; `overwrite` replaces them once this run
   * completes (see `replace`); `error` refuses to start.
   */
  readonly mode?: DeadLetterMode;
  /** Commit a file once this many bytes are gathered (default 4 MiB). */
  readonly fileBytes?: number;
  /**
   * Commit what is gathered once the oldest uncommitted entry is this old, even when no more
   * arrive (default 60 s, as the Parquet sink's `maxFileAgeMs`).
   */
  readonly maxFileAgeMs?: number;
  /**
   * When `overwrite` removes the earlier files: at `close` (default), so a run that fails or is
   * stopped leaves them; or at `open`, writing in place, for a checkpointed run, whose later runs
   * resume into the folder and must find this run's files there.
   */
  readonly replace?: "close" | "open";
  /**
   * The folder's lock, taken already with {@link lockDeadLetterFolder} (to refuse a second writer
   * before anything runs). The store releases it when it closes; without it, the store takes it.
   */
  readonly lock?: Lock;
  /**
   * Called after each file is durable with the number of entries it holds: the entries added
   * first, in order. The `deadLetter` operator uses it to tell sources how far their input is
   * durable.
   */
  readonly onCommitted?: (entries: number) => void;
}

/**
 * A place dead letters go. `add` is synchronous; a file is committed at `fileBytes` or
 * `maxFileAgeMs`, and `flush` and `close` make the rest durable.
 */
export interface DeadLetterStore {
  readonly folder: string;
  add(entry: DeadLetter): void;
  /** Commits what is gathered so far. */
  flush(): Promise<void>;
  /** Commits the rest; the store takes no more entries. */
  close(): Promise<void>;
  /**
   * Ends the store of a run that did not complete (it failed, or was stopped): in mode
   * `overwrite` the folder keeps its earlier files and this run's are dropped; otherwise as
   * `close`. A store without it is closed instead.
   */
  cancel?(): Promise<void>;
  /** Files committed so far, in order (where they are once the store is closed). */
  readonly files: readonly string[];
}

/**
 * Takes the lock of a dead-letter folder for run `runId`, or throws a `LockedError` naming the run
 * that holds it. Synchronous, so a pipeline is refused before it reads anything.
 *
 * @example
 * const lock = lockDeadLetterFolder("out/dead-letter", "run-1");
 * const store = await openDeadLetterStore("out/dead-letter", "run-1", { lock });
 */
export function lockDeadLetterFolder(folder: string, runId: string): Lock {
  return acquireLock(lockPathOf(folder), { runId, what: `dead-letter folder ${folder}` });
}

/**
 * Opens an NDJSON dead-letter folder. Files are named `dead-letter-<runId>-<n>.ndjson`.
 *
 * Holds the folder's lock until `close` or `cancel`: a second store (in this process or
 * another) is refused with a `LockedError` naming this one's run. A file name that exists already
 * is never replaced (a run id used twice): that commit fails.
 *
 * The age timer does not keep the process alive (it is unref'd) and is cleared by `close`; a
 * commit it starts that fails is reported by the next `flush` or `close`.
 *
 * @example
 * const store = await openDeadLetterStore("out/dead-letter", "run-1", { mode: "overwrite" });
 */
export async function openDeadLetterStore(
  folder: string,
  runId: string,
  options: DeadLetterStoreOptions = {},
): Promise<DeadLetterStore> {
  const mode = options.mode ?? "append";
  const fileBytes = options.fileBytes ?? 4 * 1024 * 1024;
  const maxFileAgeMs = options.maxFileAgeMs ?? 60_000;
  const lock = options.lock ?? lockDeadLetterFolder(folder, runId);
  let staging: string | undefined;
  try {
    finishEarlierRuns(folder);
    const existing = await listNdjson(folder);
    if (existing.length > 0 && mode === "error") {
      throw new Error(
        `dead-letter folder ${folder} already holds ${existing.length} file(s); use mode "append" or "overwrite"`,
      );
    }
    if (mode === "overwrite" && existing.length > 0) {
      if (options.replace === "open") for (const name of existing) rmSync(join(folder, name), { force: true });
      else staging = join(folder, `.staging-${runId}`);
    }
  } catch (error) {
    lock.release();
    throw error;
  }
  // Where files are committed until close: the staging folder, or the folder itself.
  const target = staging ?? folder;

  let lines: string[] = [];
  let size = 0;
  let counter = 0;
  let closed = false;
  let committing: Promise<void> = Promise.resolve();
  // Set while entries are gathered: fires when the oldest of them reaches maxFileAgeMs.
  let ageTimer: ReturnType<typeof setTimeout> | undefined;
  const files: string[] = [];

  function commit(): Promise<void> {
    if (ageTimer !== undefined) {
      clearTimeout(ageTimer);
      ageTimer = undefined;
    }
    if (lines.length === 0) return committing;
    const text = `${lines.join("\n")}\n`;
    const entries = lines.length;
    lines = [];
    size = 0;
    const name = deadLetterFileName(runId, counter++);
    // Chained so files are committed in order and a failure is reported by the next flush.
    committing = committing.then(async () => {
      try {
        await commitFile(join(target, name), join(target, `.${name}.tmp`), Buffer.from(text));
      } catch (error) {
        // Node's errors name the system call, not the file (ENOSPC ... write): say which file.
        throw new Error(`cannot commit dead-letter file ${join(folder, name)} (${entries} entries): ${(error as Error).message}`, { cause: error });
      }
      files.push(join(folder, name));
      options.onCommitted?.(entries);
    });
    return committing;
  }

  function stop() {
    closed = true;
    if (ageTimer !== undefined) {
      clearTimeout(ageTimer);
      ageTimer = undefined;
    }
  }

  async function close(): Promise<void> {
    if (!lock.held) return committing;
    stop();
    try {
      await commit();
      if (staging) publishStaged(folder, staging, runId);
    } finally {
      lock.release();
    }
  }

  async function cancel(): Promise<void> {
    if (!lock.held) return;
    if (!staging) return close();
    stop();
    lines = [];
    try {
      await committing.catch(() => {});
      rmSync(staging, { recursive: true, force: true });
    } finally {
      lock.release();
    }
  }

  return {
    folder,
    files,
    add(entry) {
      if (closed) throw new Error(`dead-letter store ${folder} is closed`);
      const line = JSON.stringify(entry);
      lines.push(line);
      size += line.length + 1;
      if (size >= fileBytes) {
        // Errors surface at the next flush or close; the entries stay counted until then.
        commit().catch(() => {});
      } else if (ageTimer === undefined) {
        // The first entry of a new file starts its clock; an app that stays up must not hold a
        // rare bad record in memory until it exits.
        ageTimer = setTimeout(() => {
          ageTimer = undefined;
          commit().catch(() => {});
        }, maxFileAgeMs);
        ageTimer.unref?.();
      }
    },
    flush: commit,
    close,
    cancel,
  };
}

/**
 * Replaces the folder's dead letters with the staged ones. The staging folder is renamed first:
 * from then on a crash is finished by the next store to open the folder, which moves the rest in.
 * New files go in before old ones go, so a crash can leave both, never neither.
 */
function publishStaged(folder: string, staging: string, runId: string): void {
  const publishing = join(folder, `.publishing-${runId}`);
  rmSync(publishing, { recursive: true, force: true });
  renameSync(staging, publishing);
  finishPublishing(folder, publishing, runId, new Set(readdirSync(publishing)));
}

function finishPublishing(folder: string, publishing: string, runId: string, fresh: ReadonlySet<string> | undefined): void {
  for (const name of readdirSync(publishing)) {
    // Same name as an earlier file: a run id used twice, replaced on purpose by this overwrite.
    if (name.endsWith(".ndjson")) renameSync(join(publishing, name), join(folder, name));
  }
  for (const name of readdirSync(folder)) {
    if (!name.endsWith(".ndjson")) continue;
    // After a crash the names moved in are not known any more: this run's are those of its id.
    const mine = fresh ? fresh.has(name) : isDeadLetterFileOf(name, runId);
    if (!mine) rmSync(join(folder, name), { force: true });
  }
  rmSync(publishing, { recursive: true, force: true });
}

/**
 * Under the folder's lock, cleans up after stores that did not end: a staging folder is an
 * overwrite that did not complete (dropped); a publishing one, an overwrite that completed but
 * was cut off while its files moved in (finished).
 */
function finishEarlierRuns(folder: string): void {
  let names: string[];
  try {
    names = readdirSync(folder);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return;
    throw error;
  }
  for (const name of names) {
    if (name.startsWith(".staging-")) rmSync(join(folder, name), { recursive: true, force: true });
    else if (name.startsWith(".publishing-")) finishPublishing(folder, join(folder, name), name.slice(".publishing-".length), undefined);
  }
}

async function listNdjson(folder: string): Promise<string[]> {
  try {
    return (await readdir(folder)).filter((name) => name.endsWith(".ndjson"));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw error;
  }
}

/**
 * Reads every dead letter in a folder, oldest file first.
 *
 * @example
 * for await (const entry of readDeadLetters("out/dead-letter")) console.log(entry.stage, entry.error);
 */
export async function* readDeadLetters(folder: string): AsyncGenerator<DeadLetter> {
  const names = (await listNdjson(folder)).sort();
  for (const name of names) {
    const text = await Bun.file(join(folder, name)).text();
    for (const line of text.split("\n")) {
      if (line) yield JSON.parse(line) as DeadLetter;
    }
  }
}
