/**
 * Finds the Parquet files of a dataset and the hive partition (`key=value` folders) each one is in.
 */
import { readdir, stat } from "node:fs/promises";
import { join, relative, sep } from "node:path";
import { NULL_PARTITION } from "../parquet/partition.ts";

/** One Parquet file of a dataset. */
export interface DatasetFile {
  readonly path: string;
  /** The folder of the file relative to the dataset root (`""` at the root), with `/` separators. */
  readonly partitionPath: string;
  /** Partition values from the `key=value` folders, outermost first; null for `__HIVE_DEFAULT_PARTITION__`. */
  readonly partition: Readonly<Record<string, string | null>>;
}

/** What a dataset path holds. */
export interface DatasetListing {
  readonly root: string;
  /** True when `root` is a single file rather than a folder. */
  readonly isFile: boolean;
  /** Partition keys in folder order, from every file's folders (first seen first). */
  readonly partitionKeys: readonly string[];
  /** Files sorted by path, so listings and reads are the same on every run. */
  readonly files: readonly DatasetFile[];
}

/**
 * Lists the Parquet files under `path` (recursively) with their partition values, or the file
 * itself when `path` is a file. Hidden entries (`.` or `_` first: temporary files of writes in
 * progress, the folder an overwrite moves aside, `_SUCCESS` markers, Spark's `_temporary`) are
 * skipped, except partition folders (`_source=web`): DuckDB and Polars read those, so a key
 * beginning with `_` or `.` is shown as they show it. Keys are taken as written (as DuckDB and
 * Polars take them); values are percent-decoded.
 *
 * Rejects with a message naming the path when it does not exist.
 *
 * @example
 * const { files, partitionKeys } = await listDataset("out/events");
 */
export async function listDataset(path: string): Promise<DatasetListing> {
  let info: Awaited<ReturnType<typeof stat>>;
  try {
    info = await stat(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new Error(code === "ENOENT" ? `${path} does not exist` : `${path} cannot be read (${(error as Error).message})`);
  }
  if (!info.isDirectory()) {
    return { root: path, isFile: true, partitionKeys: [], files: [{ path, partitionPath: "", partition: {} }] };
  }
  const names = await readdir(path, { recursive: true });
  const files: DatasetFile[] = [];
  const keys: string[] = [];
  for (const name of names) {
    const parts = name.split(sep);
    const folders = parts.slice(0, -1);
    const fileName = parts[parts.length - 1] as string;
    if (!fileName.endsWith(".parquet") || isHidden(fileName) || folders.some((p) => isHidden(p) && p.indexOf("=") <= 0)) continue;
    const partition: Record<string, string | null> = {};
    for (const folder of folders) {
      const eq = folder.indexOf("=");
      if (eq <= 0) continue;
      const key = folder.slice(0, eq);
      const value = folder.slice(eq + 1);
      partition[key] = value === NULL_PARTITION ? null : decodePartitionText(value);
      if (!keys.includes(key)) keys.push(key);
    }
    files.push({ path: join(path, name), partitionPath: folders.join("/"), partition });
  }
  files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return { root: path, isFile: false, partitionKeys: keys, files };
}

function isHidden(name: string): boolean {
  return name.startsWith(".") || name.startsWith("_");
}

/** Undoes the percent-encoding of partition values; text that is not valid escaping stays as it is. */
export function decodePartitionText(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** A file's path relative to the dataset root, for display. */
export function displayPath(listing: DatasetListing, file: DatasetFile): string {
  return listing.isFile ? file.path : relative(listing.root, file.path).split(sep).join("/");
}
