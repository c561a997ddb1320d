/**
 * The default dead-letter store: a folder of NDJSON files, one entry a line.
 *
 * Entries are gathered in memory and committed as whole files (temporary name, fsync, rename),
 * like the dataset, so a crash never leaves a torn line and a reader never sees half an entry.
 * A file is committed once `fileBytes` are gathered or the oldest gathered entry is
 * `maxFileAgeMs` old, so a long-running app's rare bad record is durable within a bound, not
 * only when the run ends.
 */
import { readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { commitFile } from "../parquet/encode.ts";
import type { DeadLetter } from "./entry.ts";

/** What to do with dead letters already in the folder. */
export type DeadLetterMode = "append" | "overwrite" | "error";

export interface DeadLetterStoreOptions {
  /** `append` (default) keeps earlier runs' files; `overwrite` removes them first; `error` refuses to start. */
  readonly mode?: DeadLetterMode;
  /** Commit a file once this many bytes are gathered (default 4 MiB). */
  readonly fileBytes?: number;
  /**
   * Commit what is gathered once the oldest uncommitted entry is this old, even when no more
   * arrive (default 60 s, as the Parquet sink's `maxFileAgeMs`).
   */
  readonly maxFileAgeMs?: number;
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
  /** Files committed so far, in order. */
  readonly files: readonly string[];
}

/**
 * Opens an NDJSON dead-letter folder. Files are named `dead-letter-<runId>-<n>.ndjson`.
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
  const existing = await listNdjson(folder);
  if (existing.length > 0 && mode === "error") {
    throw new Error(
      `dead-letter folder ${folder} already holds ${existing.length} file(s); use mode "append" or "overwrite"`,
    );
  }
  if (mode === "overwrite") {
    await Promise.all(existing.map((name) => rm(join(folder, name), { force: true })));
  }

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
    lines = [];
    size = 0;
    const name = `dead-letter-${runId}-${String(counter++).padStart(5, "0")}.ndjson`;
    const path = join(folder, name);
    // Chained so files are committed in order and a failure is reported by the next flush.
    committing = committing.then(async () => {
      await commitFile(path, join(folder, `.${name}.tmp`), Buffer.from(text));
      files.push(path);
    });
    return committing;
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
    async close() {
      closed = true;
      await commit();
    },
  };
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
