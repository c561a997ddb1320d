/**
 * Making a folder's entries durable. A file renamed or linked into a folder is durable only once
 * the folder itself is fsynced: the new name lives in the folder's own data.
 */
import { closeSync, fsyncSync, openSync } from "node:fs";
import { open } from "node:fs/promises";

/** Fsyncs a folder, so the names created, renamed or removed in it survive a crash. */
export function fsyncFolder(path: string): void {
  const fd = openSync(path, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * {@link fsyncFolder} on the thread pool: the calling thread goes on meanwhile (an fsync can take
 * tens of milliseconds on a real disk, which an app's event loop should not wait out).
 */
export async function syncFolder(path: string): Promise<void> {
  const handle = await open(path, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
