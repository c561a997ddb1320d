/**
 * Reading a dead-letter folder one entry at a time, so a folder of any size is summarized or
 * replayed in bounded memory (`readDeadLetters` in store.ts reads each file whole).
 */
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import type { DeadLetter } from "./entry.ts";

/** One stored dead letter and where it is stored. */
export interface StoredDeadLetter {
  /** The dead-letter file's name inside the folder (`dead-letter-<runId>-00000.ndjson`). */
  readonly file: string;
  /** 1-based line of the entry in that file. */
  readonly index: number;
  /** `<file>#<index>`: names the entry for replay ledgers. Stable: committed files never change. */
  readonly id: string;
  readonly entry: DeadLetter;
}

/** Options of {@link streamDeadLetters}. */
export interface StreamDeadLettersOptions {
  /** Read only these file names (in this order) instead of every `*.ndjson` file of the folder. */
  readonly files?: readonly string[];
  /** Read the files from this folder instead (a snapshot), still naming them as in `folder`. */
  readonly from?: string;
}

/**
 * The dead-letter files of a folder (`*.ndjson`), sorted by name, which is the order they were
 * committed in within a run. A missing folder has none.
 *
 * @example
 * const files = await listDeadLetterFiles("out/dead-letter");
 */
export async function listDeadLetterFiles(folder: string): Promise<string[]> {
  try {
    return (await readdir(folder)).filter((name) => name.endsWith(".ndjson") && !name.startsWith(".")).sort();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw error;
  }
}

/**
 * Reads the dead letters of a folder one at a time, file by file in name order, holding one read
 * chunk (or one entry, when an entry is longer) in memory.
 *
 * Completes after the last entry. Throws, naming the file and line, when a line is not a JSON
 * object (dead-letter files are committed whole, so that means the file was edited or is not a
 * dead-letter file) or a file cannot be read. Stopping the iteration early (`break`) closes the
 * file being read.
 *
 * @example
 * for await (const { id, entry } of streamDeadLetters("out/dead-letter")) console.log(id, entry.error);
 */
export async function* streamDeadLetters(
  folder: string,
  options: StreamDeadLettersOptions = {},
): AsyncGenerator<StoredDeadLetter> {
  const files = options.files ?? (await listDeadLetterFiles(folder));
  const dir = options.from ?? folder;
  for (const file of files) {
    for await (const [text, index] of fileLines(join(dir, file))) {
      if (text === "") continue;
      let entry: DeadLetter;
      try {
        entry = JSON.parse(text) as DeadLetter;
      } catch (error) {
        throw new Error(
          `streamDeadLetters: ${join(folder, file)} line ${index} is not a dead letter (${(error as Error).message}); move files that are not dead letters out of the folder`,
        );
      }
      if (typeof entry !== "object" || entry === null || typeof entry.stage !== "string") {
        throw new Error(`streamDeadLetters: ${join(folder, file)} line ${index} is not a dead letter (no stage); move files that are not dead letters out of the folder`);
      }
      yield { file, index, id: `${file}#${index}`, entry };
    }
  }
}

/**
 * The lines of a UTF-8 text file with their 1-based numbers, read a chunk at a time. A line
 * longer than a chunk is gathered in pieces, so it costs its own size and no more.
 */
export async function* fileLines(path: string): AsyncGenerator<[text: string, line: number]> {
  const decoder = new TextDecoder();
  // Pieces of a line not ended yet: joined once its newline arrives, never re-scanned.
  let pieces: string[] = [];
  let line = 0;
  const reader = Bun.file(path).stream().getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      const text = decoder.decode(value, { stream: true });
      let start = 0;
      let newline = text.indexOf("\n");
      while (newline !== -1) {
        pieces.push(text.slice(start, newline));
        const whole = pieces.join("");
        pieces = [];
        yield [whole.endsWith("\r") ? whole.slice(0, -1) : whole, ++line];
        start = newline + 1;
        newline = text.indexOf("\n", start);
      }
      if (start < text.length) pieces.push(text.slice(start));
    }
    pieces.push(decoder.decode());
    const last = pieces.join("");
    if (last !== "") yield [last, ++line];
  } finally {
    // Early return from the consumer lands here: release the file.
    await reader.cancel().catch(() => {});
  }
}
