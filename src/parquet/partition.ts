/**
 * Hive-style partition folders (`key=value`), named so that DuckDB, Polars and sluice's own
 * reader all read back the value that was written.
 *
 * What the readers do (DuckDB 1.5, Polars 1.x, checked by test/parquet/partition.test.ts):
 * - Keys are taken as written: neither decodes `%20` in a key (DuckDB shows a column named
 *   `MPAA%20Rating`). So a key is never escaped, and a key that cannot be written as it is (one
 *   holding `/` or `=`) is refused when the sink is created.
 * - Values are percent-decoded by both. DuckDB reads a raw `null`, `NULL` or `Null` (any case) as
 *   SQL NULL and Polars does not; an escaped first letter (`%6Eull`) is read as the text by both.
 * - `__HIVE_DEFAULT_PARTITION__` is null for both; Polars decodes before it compares, so no
 *   escaping makes that text read back as text: a record holding it is refused.
 * - Both prefer the folder's value to the file's column of the same name, so the folder must be right.
 */

/** The folder name Hive, Spark, DuckDB and Polars use for a null partition value. */
export const NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__";

/** The longest folder name most file systems take (ext4, XFS, APFS, NTFS: 255). */
export const MAX_SEGMENT_BYTES = 255;

/**
 * Why `key` cannot name partition folders, or undefined when it can. Readers take a key as it is
 * written in the folder name, so it must be writable as it is: not empty, no `/`, `\` or `=`, no
 * control character, no lone surrogate, short enough for a folder name. Spaces, `%`, non-ASCII
 * and a leading `_` or `.` are fine (DuckDB and Polars read them; sluice's readers show them).
 *
 * @example
 * partitionKeyProblem("MPAA Rating") // undefined
 * partitionKeyProblem("a/b") // "cannot name a partition folder: it holds '/', ..."
 */
export function partitionKeyProblem(key: string): string | undefined {
  const cannot = "cannot name a partition folder";
  if (key === "") return `${cannot}: it is empty`;
  if (!key.isWellFormed()) return `${cannot}: it is not well-formed Unicode (it holds a lone surrogate)`;
  const bad = [...key].find((c) => c === "/" || c === "\\" || c === "=" || c < " " || c === "\u007f");
  if (bad !== undefined) {
    const shown = bad === "/" || bad === "\\" || bad === "=" ? `'${bad}'` : `the control character U+${bad.charCodeAt(0).toString(16).padStart(4, "0").toUpperCase()}`;
    return `${cannot}: it holds ${shown}, and readers (DuckDB, Polars) take a folder's key as it is written, without decoding escapes; partition by a field named without it`;
  }
  // Room for "=" and a short value.
  if (Buffer.byteLength(key) > MAX_SEGMENT_BYTES - 32) return `${cannot}: it is longer than ${MAX_SEGMENT_BYTES - 32} bytes`;
  return undefined;
}

/**
 * The folder name for one partition value: the key as it is, `=`, and the value escaped. Every
 * byte of the value outside `A-Z a-z 0-9 - _ . ~` is percent-encoded, so no value can contain a
 * path separator, a glob character or a control character, and `..` only ever appears after
 * `key=`: no value can reach outside the dataset. A value that DuckDB would read as NULL (`null`
 * in any case) has its first letter escaped too. Null is `__HIVE_DEFAULT_PARTITION__`.
 *
 * Throws, naming the key, for a key {@link partitionKeyProblem} refuses, and for a value no
 * folder name can hold faithfully: text that is not well-formed Unicode (a lone surrogate), the
 * text `__HIVE_DEFAULT_PARTITION__` itself (every reader takes it for null), or a value too long
 * for a folder name. The sink turns a refused value into a dead letter.
 *
 * @example
 * partitionSegment("country", "a/b") // "country=a%2Fb"
 * partitionSegment("country", "null") // "country=%6Eull"
 * partitionSegment("country", null) // "country=__HIVE_DEFAULT_PARTITION__"
 */
export function partitionSegment(key: string, value: string | null): string {
  const problem = partitionKeyProblem(key);
  if (problem !== undefined) throw new Error(`partition key ${JSON.stringify(key)} ${problem}`);
  if (value !== null && !value.isWellFormed()) {
    // A lone surrogate has no UTF-8 form, so no folder name can hold it faithfully.
    throw new Error(`partition value of "${key}" is not well-formed Unicode (it holds a lone surrogate): ${JSON.stringify(value)}`);
  }
  if (value === NULL_PARTITION) {
    throw new Error(
      `partition value of "${key}" is the text ${NULL_PARTITION}, which DuckDB, Polars, Hive and Spark read back as null however it is escaped`,
    );
  }
  const segment = `${key}=${value === null ? NULL_PARTITION : escapePartitionText(value)}`;
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

const NULL_LIKE = /^null$/i;

/**
 * Percent-encodes a partition value: everything but unreserved URL characters (RFC 3986), and
 * the first letter of a value DuckDB would read as NULL.
 */
export function escapePartitionText(text: string): string {
  const escaped = encodeURIComponent(text).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  return NULL_LIKE.test(escaped) ? `%${escaped.charCodeAt(0).toString(16).toUpperCase()}${escaped.slice(1)}` : escaped;
}
