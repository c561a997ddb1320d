/**
 * Reading a dead-letter folder: the one place that knows which files of a folder hold dead
 * letters and how an entry is stored in them (see entry.ts). The checkpoint, summarize and replay
 * read through it. Entries are read one at a time, so a folder of any size is summarized or
 * replayed in bounded memory.
 */
import { readdirSync, readFileSync } from "node:fs";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { isDeadLetterFileOf } from "../flow/runId.ts";
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

/** Which dead-letter files of a folder to list. */
export interface ListDeadLetterFilesOptions {
  /**
   * Only the files these runs wrote (`dead-letter-<runId>-<n>.ndjson`, matched exactly: run `a`
   * does not claim run `a-b`'s files). Default: every `*.ndjson` file.
   */
  readonly runs?: readonly string[];
}

/** Options of {@link streamDeadLetters}. */
export interface StreamDeadLettersOptions {
  /** Read only these file names (in this order) instead of every `*.ndjson` file of the folder. */
  readonly files?: readonly string[];
  /** Read the files from this folder instead (a snapshot), still naming them as in `folder`. */
  readonly from?: string;
}

/**
 * The dead-letter files of a folder (`*.ndjson`, or those of `options.runs`), sorted by name,
 * which is the order they were committed in within a run. A missing folder has none.
 *
 * @example
 * const files = await listDeadLetterFiles("out/dead-letter");
 */
export async function listDeadLetterFiles(folder: string, options: ListDeadLetterFilesOptions = {}): Promise<string[]> {
  try {
    return deadLetterFilesAmong(await readdir(folder), options);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw error;
  }
}

/**
 * {@link listDeadLetterFiles}, synchronously: for code that must know before the first record
 * flows (a checkpoint resuming a run).
 *
 * @example
 * const earlier = listDeadLetterFilesSync("out/dead-letter", { runs: ["run-1"] });
 */
export function listDeadLetterFilesSync(folder: string, options: ListDeadLetterFilesOptions = {}): string[] {
  try {
    return deadLetterFilesAmong(readdirSync(folder), options);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw error;
  }
}

function deadLetterFilesAmong(names: readonly string[], { runs }: ListDeadLetterFilesOptions): string[] {
  const wanted = runs
    ? (name: string) => runs.some((runId) => isDeadLetterFileOf(name, runId))
    : (name: string) => name.endsWith(".ndjson") && !name.startsWith(".");
  return names.filter(wanted).sort();
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
      yield { file, index, id: `${file}#${index}`, entry: parseEntry(text, "streamDeadLetters", join(folder, file), index) };
    }
  }
}

/**
 * {@link streamDeadLetters} synchronously, over the files {@link listDeadLetterFilesSync} lists:
 * for code that must know before the first record flows (a checkpoint resuming a run). Holds one
 * file at a time in memory (the store commits a file every few MiB).
 *
 * Throws as {@link streamDeadLetters} does.
 *
 * @example
 * for (const { entry } of readDeadLettersSync("out/dead-letter", { runs: ["run-1"] })) seen.add(entry.line);
 */
export function* readDeadLettersSync(folder: string, options: ListDeadLetterFilesOptions = {}): Generator<StoredDeadLetter> {
  for (const file of listDeadLetterFilesSync(folder, options)) {
    const lines = readFileSync(join(folder, file), "utf8").split("\n");
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i] as string;
      const text = line.endsWith("\r") ? line.slice(0, -1) : line;
      if (text === "") continue;
      const index = i + 1;
      yield { file, index, id: `${file}#${index}`, entry: parseEntry(text, "readDeadLettersSync", join(folder, file), index) };
    }
  }
}

/**
 * Reads every dead letter in a folder, oldest file first: the entries of
 * {@link streamDeadLetters}, without where each is stored.
 *
 * @example
 * for await (const entry of readDeadLetters("out/dead-letter")) console.log(entry.stage, entry.error);
 */
export async function* readDeadLetters(folder: string): AsyncGenerator<DeadLetter> {
  for await (const { entry } of streamDeadLetters(folder)) yield entry;
}

/** One stored line as an entry; throws, naming `who`, the file and the line, when it is not one. */
export function parseEntry(text: string, who: string, path: string, index: number): DeadLetter {
  let entry: DeadLetter;
  try {
    entry = JSON.parse(text) as DeadLetter;
  } catch (error) {
    throw new Error(
      `${who}: ${path} line ${index} is not a dead letter (${(error as Error).message}); move files that are not dead letters out of the folder`,
    );
  }
  if (typeof entry !== "object" || entry === null || typeof entry.stage !== "string") {
    throw new Error(`${who}: ${path} line ${index} is not a dead letter (no stage); move files that are not dead letters out of the folder`);
  }
  return entry;
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
