/**
 * `toParquet("s3://bucket/prefix", …)`: the dataset in a bucket. Files are written and committed
 * locally (a temporary folder), then each goes up in one PUT (atomic: readers see the whole
 * object or none), then its `_manifest/` entry is written, then the local copy is deleted. The
 * manifest is what makes a file part of the dataset: a reader that honours it (sluice's readers
 * do) never sees an object whose upload or run did not finish.
 *
 * Under a checkpoint, a file's intent is recorded before its upload, and it is durable once its
 * manifest entry is written. A run killed in between leaves an intent the next run settles
 * before reading anything ({@link settleObjects}): with a manifest entry the file counts as
 * committed; without one its object (if any) is deleted and its rows are written again.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Checkpoint } from "../checkpoint/checkpoint.ts";
import {
  deleteKey,
  formatS3Url,
  isS3Url,
  listKeys,
  manifestKeyOf,
  parseS3Url,
  readManifest,
  type S3Options,
  uploadFile,
  writeManifestEntry,
} from "../io/s3.ts";

export { isS3Url };

/** Where a dataset in a bucket is written from. */
export interface BucketTarget {
  /** The dataset's URL, without a trailing slash. */
  readonly url: string;
  /** The local folder files are written and committed in before their upload. */
  readonly localRoot: string;
  /** Uploads a committed local file, records it in the manifest and deletes the local copy. */
  publish(localPath: string, subfolder: string, name: string, rows: number, runId: string): Promise<number>;
  /** Removes the local folder. */
  close(): Promise<void>;
}

/** A file's key relative to the dataset prefix: its partition folders (`/` between), then its name. */
function keyOf(subfolder: string, name: string): string {
  return subfolder ? `${subfolder.split(/[\\/]/).join("/")}/${name}` : name;
}

/** The URL of a file of a dataset in a bucket (`path.join` would fold `s3://` into `s3:/`). */
export function objectUrl(dataset: string, subfolder: string, name: string): string {
  return `${dataset.replace(/\/+$/, "")}/${keyOf(subfolder, name)}`;
}

/**
 * Opens the bucket target for a write `mode`: `error` refuses a prefix that already holds Parquet
 * objects, `append` adds to it; `overwrite` is not offered (a bucket has no atomic swap).
 */
export async function openBucketTarget(url: string, mode: string, s3: S3Options | undefined): Promise<BucketTarget> {
  const base = url.replace(/\/+$/, "");
  if (mode === "overwrite") {
    throw new Error(`toParquet: ${base}: mode "overwrite" is not available for a bucket (it has no atomic swap); write to a new prefix, or use "append"`);
  }
  if (mode === "error") {
    const manifest = await readManifest(base, s3);
    let existing = manifest?.length ?? 0;
    if (existing === 0) {
      for await (const object of listKeys(`${base}/`, s3)) {
        if (object.key.endsWith(".parquet")) {
          existing++;
          break;
        }
      }
    }
    if (existing > 0) {
      throw new Error(`toParquet: ${base} already holds Parquet objects; pass mode "append" to add to the dataset, or write to a new prefix`);
    }
  }
  const localRoot = await mkdtemp(join(tmpdir(), "sluice-upload-"));
  return {
    url: base,
    localRoot,
    async publish(localPath, subfolder, name, rows, runId) {
      const path = keyOf(subfolder, name);
      const object = await uploadFile(localPath, objectUrl(base, subfolder, name), s3);
      await writeManifestEntry(base, { path, size: object.size, etag: object.etag, rows, runId, committedAt: new Date().toISOString() }, s3);
      await rm(localPath, { force: true });
      return object.size;
    },
    close: () => rm(localRoot, { recursive: true, force: true }),
  };
}

/**
 * Settles the files an interrupted run recorded in `checkpoint` for a bucket and did not mark
 * committed: a file whose manifest entry exists is committed; any other is deleted (it was never
 * part of the dataset) and its rows are written again. An entry that is not whole (its PUT was cut
 * short by the crash: S3 refuses such a PUT, a simpler store may keep what arrived) committed
 * nothing: it is deleted with its file.
 */
export async function settleObjects(checkpoint: Checkpoint, s3?: S3Options): Promise<void> {
  const manifests = new Map<string, Set<string>>();
  const broken = new Map<string, Set<string>>();
  for (const { path, partitionKey } of checkpoint.pendingObjects()) {
    // The dataset's URL: the object's, less its partition folders and its name.
    const depth = (JSON.parse(partitionKey) as unknown[]).length + 1;
    const parts = path.split("/");
    const dataset = parts.slice(0, parts.length - depth).join("/");
    const relative = parts.slice(parts.length - depth).join("/");
    let listed = manifests.get(dataset);
    if (!listed) {
      const cutShort = new Set<string>();
      listed = new Set((await readManifest(dataset, { ...s3, cutShort: (url) => cutShort.add(url) }))?.map((entry) => entry.path) ?? []);
      manifests.set(dataset, listed);
      broken.set(dataset, cutShort);
    }
    if (listed.has(relative)) checkpoint.resolveObject(path, true);
    else {
      const { bucket, key } = parseS3Url(dataset);
      const entry = formatS3Url(bucket, manifestKeyOf(key, relative));
      if (broken.get(dataset)?.has(entry)) await deleteKey(entry, s3);
      await deleteKey(path, s3);
      checkpoint.resolveObject(path, false);
    }
  }
}
