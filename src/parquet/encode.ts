/**
 * How row groups are encoded (see encodeParquet.ts, which does it), and the atomic commit of a
 * file's bytes. This module does not load parquet-wasm: the threads that commit files need not.
 */
import { existsSync, linkSync, renameSync, rmSync, unlinkSync } from "node:fs";
import { mkdir, open } from "node:fs/promises";
import { syncFolder } from "../io/fsync.ts";
import { dirname } from "node:path";

/** How rows are encoded. */
export interface EncodeOptions {
  readonly compression: "zstd" | "snappy" | "gzip" | "brotli" | "lz4" | "none";
  /** Rows per row group: an encode of more rows gives several row groups. */
  readonly rowGroupSize: number;
  /** Extra key/value metadata stored in the footer. */
  readonly metadata?: Record<string, string>;
  /**
   * Top-level columns written without a dictionary (plain values): those whose values hardly
   * repeat, where a dictionary only adds its own page and the indexes (see dictionary.ts).
   */
  readonly plainColumns?: readonly string[];
}

/**
 * Writes bytes so that readers and crashes only ever see the whole file or none of it: a
 * temporary name, fsync, then the final name, then fsync of the folder so the name is durable.
 *
 * The final name is given with `link(temp, final)`, not `rename`: rename replaces a file that
 * already has the name, silently, and two writers that chose the same name once lost each other's
 * rows that way. `link` fails with EEXIST instead, and this rejects with that error (code
 * `EEXIST`) and removes the temporary file; the existing file is untouched. On a file system
 * without hard links (EPERM, ENOTSUP), the name is checked and then renamed to: that is only safe
 * because every writer of a sluice folder holds its lock (src/io/lock.ts), so nobody else can
 * take the name between the check and the rename.
 *
 * `beforePublish` runs synchronously right before the final name is given (nothing else of the
 * process runs in between): a throw removes the temporary file and rejects with it.
 */
export async function commitFile(path: string, tempPath: string, bytes: Uint8Array, beforePublish?: () => void): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  // Written and synced on the thread pool: the main thread parses the next records meanwhile.
  const handle = await open(tempPath, "w");
  try {
    let written = 0;
    while (written < bytes.length) written += (await handle.write(bytes, written, bytes.length - written, written)).bytesWritten;
    await handle.sync();
  } catch (error) {
    await handle.close().catch(() => undefined);
    rmSync(tempPath, { force: true });
    throw error;
  }
  await handle.close();
  try {
    beforePublish?.();
  } catch (error) {
    rmSync(tempPath, { force: true });
    throw error;
  }
  await publishFile(tempPath, path);
}

/**
 * Gives the durable file `tempPath` the name `path`, never replacing a file of that name (see
 * {@link commitFile}), and makes the name durable. The temporary file is removed when it fails.
 */
export async function publishFile(tempPath: string, path: string): Promise<void> {
  // The name is given synchronously, so nothing runs between a caller's last check and it.
  try {
    link(tempPath, path);
  } catch (error) {
    rmSync(tempPath, { force: true });
    throw error;
  }
  await syncFolder(dirname(path));
}

function link(tempPath: string, path: string): void {
  try {
    linkSync(tempPath, path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "EEXIST") throw alreadyThere(path, error);
    if (code !== "EPERM" && code !== "ENOTSUP" && code !== "EOPNOTSUPP") throw error;
    if (existsSync(path)) throw alreadyThere(path, error);
    renameSync(tempPath, path);
    return;
  }
  unlinkSync(tempPath);
}

function alreadyThere(path: string, cause: unknown): Error {
  return Object.assign(
    new Error(
      `${path} already exists and sluice never replaces a committed file; another run wrote it (a run id used twice?): choose another run id, or move the file away`,
      { cause },
    ),
    { code: "EEXIST" },
  );
}
