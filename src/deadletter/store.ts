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
 *
 * The folder may be a prefix in a bucket (`s3://bucket/dead-letter`): each file is written to a
 * local temporary file and uploaded in one PUT when it commits (a reader sees it whole or not at
 * all). There `overwrite` deletes the earlier objects after this run's are uploaded, and the lock
 * is one on this machine: a bucket offers no lock (see docs/limits.md).
 */
import { createHash } from "node:crypto";
import { mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { readdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isDeadLetterFileOf } from "../flow/runId.ts";
import { acquireLock, type Lock, lockPathOf } from "../io/lock.ts";
import { deleteKey, getObject, isS3Url, listKeys, parseS3Url, uploadFile } from "../io/s3.ts";
import { commitFile } from "../parquet/encode.ts";
import { type DeadLetter, deadLetterFileName } from "./entry.ts";
import { parseEntry } from "./read.ts";

// Buffer#utf8Write skips write()'s argument parsing.
interface Utf8Writable {
  utf8Write(text: string, offset: number): number;
}

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
  /**
   * Runs synchronously right before a file takes its final name (before the upload, in a bucket);
   * a throw keeps the file from landing and fails the commit. The `deadLetter` operator checks
   * there that the run's broker sources still hold their messages (`checkLeases`).
   */
  readonly beforeCommit?: () => void;
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
   * `overwrite` the folder keeps its earlier files and this run's are dropped (resolves `true`);
   * otherwise as `close` (resolves `false`). A store without it is closed instead.
   */
  cancel?(): Promise<boolean>;
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
  // A prefix in a bucket: a lock file on this machine, named after the URL.
  const path = isS3Url(folder) ? join(tmpdir(), "sluice-locks", `${createHash("sha256").update(folder).digest("hex").slice(0, 32)}.lock`) : lockPathOf(folder);
  return acquireLock(path, { runId, what: `dead-letter folder ${folder}` });
}

/** A dead-letter folder that is a prefix in a bucket: its files as objects directly under it. */
class BucketFolder {
  readonly prefix: string;
  constructor(readonly url: string) {
    const { key } = parseS3Url(url);
    this.prefix = key === "" || key.endsWith("/") ? url : `${url}/`;
  }

  /** Names of the dead-letter files under the prefix (not in deeper "folders"). */
  async names(): Promise<string[]> {
    const names: string[] = [];
    for await (const object of listKeys(this.prefix)) {
      const name = object.url.slice(this.prefix.length);
      if (!name.includes("/") && name.endsWith(".ndjson")) names.push(name);
    }
    return names;
  }

  /** Writes `bytes` to a local temporary file, uploads it in one PUT, removes the local file. */
  async put(name: string, bytes: Uint8Array): Promise<void> {
    const local = join(tmpdir(), `.sluice-${process.pid}-${name}.tmp`);
    try {
      writeFileSync(local, bytes);
      await uploadFile(local, this.prefix + name, { type: "application/x-ndjson" });
    } finally {
      rmSync(local, { force: true });
    }
  }

  async remove(names: readonly string[]): Promise<void> {
    for (const name of names) await deleteKey(this.prefix + name);
  }
}

/**
 * The entries of the dead-letter files runs `runs` committed under a prefix in a bucket
 * (`s3://bucket/dead-letter`), file by file in name order, one file in memory at a time (a store
 * commits a file every few MiB). What a checkpoint resuming into a bucket reads back, as
 * `readDeadLettersSync` does for a local folder, with the same check of each line (`parseEntry`):
 * throws, naming the object and line, on one that is not a dead letter.
 *
 * @example
 * for await (const entry of readBucketDeadLetters("s3://lake/dead-letter", ["run-1"])) seen.add(entry.line);
 */
export async function* readBucketDeadLetters(folder: string, runs: readonly string[]): AsyncGenerator<DeadLetter> {
  const bucket = new BucketFolder(folder);
  const names = (await bucket.names()).filter((name) => runs.some((runId) => isDeadLetterFileOf(name, runId))).sort();
  for (const name of names) {
    const text = new TextDecoder().decode(await getObject(bucket.prefix + name));
    const lines = text.split("\n");
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i] as string;
      if (line !== "") yield parseEntry(line, "readBucketDeadLetters", bucket.prefix + name, i + 1);
    }
  }
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
  const bucket = isS3Url(folder) ? new BucketFolder(folder) : undefined;
  let staging: string | undefined;
  // In a bucket, overwrite at close: the earlier objects, deleted once this run's are uploaded.
  let earlier: string[] = [];
  try {
    if (!bucket) finishEarlierRuns(folder);
    const existing = bucket ? await bucket.names() : await listNdjson(folder);
    if (existing.length > 0 && mode === "error") {
      throw new Error(
        `dead-letter folder ${folder} already holds ${existing.length} file(s); use mode "append" or "overwrite"`,
      );
    }
    if (mode === "overwrite" && existing.length > 0) {
      if (options.replace === "open") {
        if (bucket) await bucket.remove(existing);
        else for (const name of existing) rmSync(join(folder, name), { force: true });
      } else if (bucket) earlier = existing;
      else staging = join(folder, `.staging-${runId}`);
    }
  } catch (error) {
    lock.release();
    throw error;
  }
  // Where files are committed until close: the staging folder, or the folder itself.
  const target = staging ?? folder;
  const where = (name: string) => (bucket ? bucket.prefix + name : join(folder, name));

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
    // Each line written into one buffer of the size counted as they came: a third of the time of
    // joining the lines and encoding the text (and Buffer.from took longer still).
    const buffer = Buffer.allocUnsafe(size);
    let end = 0;
    for (const line of lines) {
      end += (buffer as unknown as Utf8Writable).utf8Write(line, end);
      buffer[end++] = 0x0a;
    }
    const bytes = buffer.subarray(0, end);
    const entries = lines.length;
    lines = [];
    size = 0;
    const name = deadLetterFileName(runId, counter++);
    // Chained so files are committed in order and a failure is reported by the next flush.
    committing = committing.then(async () => {
      try {
        if (bucket) {
          options.beforeCommit?.();
          await bucket.put(name, bytes);
        } else await commitFile(join(target, name), join(target, `.${name}.tmp`), bytes, options.beforeCommit);
      } catch (error) {
        // Node's errors name the system call, not the file (ENOSPC ... write): say which file.
        throw new Error(`cannot commit dead-letter file ${where(name)} (${entries} entries): ${(error as Error).message}`, bucket ? {} : { cause: error });
      }
      files.push(where(name));
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
      if (bucket && earlier.length > 0) {
        const mine = new Set(files);
        await bucket.remove(earlier.filter((name) => !mine.has(where(name))));
      }
    } finally {
      lock.release();
    }
  }

  async function cancel(): Promise<boolean> {
    if (!lock.held) return false;
    // Nothing is replaced at close (no earlier files, or not an overwrite): as close.
    if (!staging && earlier.length === 0) {
      await close();
      return false;
    }
    stop();
    lines = [];
    try {
      await committing.catch(() => {});
      if (staging) rmSync(staging, { recursive: true, force: true });
      // The earlier objects stay; this run's go.
      else await bucket?.remove(files.map((url) => url.slice(bucket.prefix.length)));
    } finally {
      lock.release();
    }
    return true;
  }

  return {
    folder,
    files,
    add(entry) {
      if (closed) throw new Error(`dead-letter store ${folder} is closed`);
      const line = JSON.stringify(entry);
      lines.push(line);
      size += Buffer.byteLength(line) + 1;
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
  // A run without dead letters committed no file, so nothing made the folder: overwriting the
  // earlier ones with none is still an overwrite.
  mkdirSync(staging, { recursive: true });
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
