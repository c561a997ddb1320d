/**
 * Hive-style partition folders (`key=value`), escaped the way DuckDB and Hive read them back.
 */

/** The folder name Hive, Spark and DuckDB use for a null partition value. */
export const NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__";

/**
 * Escapes a partition value for use in a folder name. Every byte outside `A-Z a-z 0-9 - _ . ~`
 * is percent-encoded, so no value can contain a path separator, a glob character or a control
 * character, and `..` only ever appears after `key=`: no value can reach outside the dataset.
 * DuckDB decodes these escapes when it reads the dataset with `hive_partitioning = true`.
 * Throws, naming the key, for text that is not well-formed Unicode (a lone surrogate): the sink
 * turns that into a dead letter.
 *
 * @example
 * partitionSegment("country", "a/b") // "country=a%2Fb"
 * partitionSegment("country", null) // "country=__HIVE_DEFAULT_PARTITION__"
 */
export function partitionSegment(key: string, value: string | null): string {
  if (!key.isWellFormed()) throw new Error(`partition key ${JSON.stringify(key)} is not well-formed Unicode (it holds a lone surrogate)`);
  if (value !== null && !value.isWellFormed()) {
    // A lone surrogate has no UTF-8 form, so no folder name can hold it faithfully.
    throw new Error(`partition value of "${key}" is not well-formed Unicode (it holds a lone surrogate): ${JSON.stringify(value)}`);
  }
  const segment = `${escapePartitionText(key)}=${value === null ? NULL_PARTITION : escapePartitionText(value)}`;
  // File systems refuse longer folder names (ENAMETOOLONG): one such value must reject its
  // record, not fail the run (and every checkpointed re-run) at the same record.
  const bytes = Buffer.byteLength(segment);
  if (bytes > MAX_SEGMENT_BYTES) {
    throw new Error(
      `partition value of "${key}" is too long for a folder name: "${key}=" and the escaped value take ${bytes} bytes, more than ${MAX_SEGMENT_BYTES}`,
    );
  }
  return segment;
}

/** The longest folder name most file systems take (ext4, XFS, APFS, NTFS: 255). */
export const MAX_SEGMENT_BYTES = 255;

/** Percent-encodes everything but unreserved URL characters (RFC 3986). */
export function escapePartitionText(text: string): string {
  return encodeURIComponent(text).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}
