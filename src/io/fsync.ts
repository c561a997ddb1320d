/**
 * Making a folder's entries durable. A file renamed or linked into a folder is durable only once
 * the folder itself is fsynced: the new name lives in the folder's own data.
 */
import { closeSync, fsyncSync, openSync } from "node:fs";

/** Fsyncs a folder, so the names created, renamed or removed in it survive a crash. */
export function fsyncFolder(path: string): void {
  const fd = openSync(path, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
