/**
 * Run ids. A run id becomes part of file and folder names (`part-<runId>-….parquet`,
 * `dead-letter-<runId>-….ndjson`, `.replay-<runId>/`, `<archive>/<day>/<runId>-<page>.json`), so
 * it is accepted only from an alphabet that cannot name another folder: `../../x` as a run id
 * once wrote files outside the output folder and made a replay delete a folder outside the
 * dead-letter folder.
 */

/** What a run id may look like: a letter or digit, then up to 127 letters, digits, `.`, `_`, `-`, never `..`. */
export const RUN_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/**
 * Returns `id` when it is a safe run id, and throws an `Error` naming `who` (the option or function
 * it came from), the id, and the allowed alphabet otherwise. Use it wherever a run id enters from
 * outside: a command line, an option of `run()`, a lock file or a checkpoint read back from disk.
 *
 * @example
 * const runId = checkRunId(values["run-id"] ?? newRunId(), "--run-id");
 */
export function checkRunId(id: unknown, who: string): string {
  if (typeof id === "string" && RUN_ID_PATTERN.test(id) && !id.includes("..")) return id;
  const shown = typeof id === "string" ? JSON.stringify(id) : String(id);
  throw new Error(
    `${who}: ${shown} is not a valid run id: a run id names files and folders, so it must match [A-Za-z0-9][A-Za-z0-9._-]{0,127} (letters, digits, '.', '_', '-'; at most 128 characters) and must not contain '..'`,
  );
}

/** True when `id` is a run id {@link checkRunId} accepts. */
export function isRunId(id: unknown): id is string {
  return typeof id === "string" && RUN_ID_PATTERN.test(id) && !id.includes("..");
}

/**
 * A fresh run id: sortable by time, unique enough to name files, always accepted by
 * {@link checkRunId}.
 *
 * @example
 * newRunId(); // "20240301T120000Z-k3j9x2"
 */
export function newRunId(): string {
  const stamp = new Date().toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");
  return `${stamp}-${Math.random().toString(36).slice(2, 8)}`;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/**
 * True when `name` (a file name, not a path) is a Parquet file the sink wrote for run `runId`:
 * `part-<runId>-<digits>.parquet`. The digits keep run `a` from claiming run `a-b`'s files.
 */
export function isDatasetFileOf(name: string, runId: string): boolean {
  return new RegExp(`^part-${escapeRegExp(runId)}-\\d+\\.parquet$`).test(name);
}

/**
 * True when `name` is a dead-letter file of run `runId` (`dead-letter-<runId>-<digits>.ndjson`),
 * or with `temporary`, the temporary name it is written under first (`.dead-letter-…ndjson.tmp`).
 */
export function isDeadLetterFileOf(name: string, runId: string, { temporary = false } = {}): boolean {
  const base = `dead-letter-${escapeRegExp(runId)}-\\d+\\.ndjson`;
  return new RegExp(temporary ? `^\\.${base}\\.tmp$` : `^${base}$`).test(name);
}
