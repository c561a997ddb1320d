/**
 * Listing dead letters: the entries of a folder one at a time, each with where it is stored and
 * whether a replay already sent it, filtered as a replay filters them.
 */
import { isDeadLetterFileOf } from "../flow/runId.ts";
import { type StoredDeadLetter, streamDeadLetters } from "./read.ts";
import { filterOf, type ReplayFilter, readReplayState } from "./replay.ts";

/** Options of {@link listDeadLetters}. */
export interface ListDeadLettersOptions extends Omit<ReplayFilter, "again"> {
  /**
   * Also list entries a finished replay already sent through a pipeline (`replayed: true`) and
   * the dead letters of a replay that did not finish (the next replay rolls those back). Off by
   * default: what is listed is what is still open, as `summarize` counts it.
   */
  readonly all?: boolean | undefined;
}

/** One listed dead letter. */
export interface ListedDeadLetter extends StoredDeadLetter {
  /** True when a finished replay already sent it (listed only with `all`). */
  readonly replayed: boolean;
}

/**
 * The dead letters of a folder, oldest file first, one at a time (a folder of any size in
 * bounded memory): by default only the open ones, those no finished replay has sent, matching
 * the stages, source glob and run given. A missing folder has none.
 *
 * @example
 * for await (const { id, entry } of listDeadLetters("out/dead-letter", { stages: ["validate"] })) {
 *   console.log(id, entry.source, entry.line, entry.error);
 * }
 */
export async function* listDeadLetters(folder: string, options: ListDeadLettersOptions = {}): AsyncGenerator<ListedDeadLetter> {
  const state = readReplayState(folder);
  const unfinished = state.unfinished?.runId;
  const matches = filterOf(options);
  for await (const stored of streamDeadLetters(folder)) {
    const replayed = state.isReplayed(stored.file, stored.index);
    if (!options.all && (replayed || (unfinished !== undefined && isDeadLetterFileOf(stored.file, unfinished)))) continue;
    if (!matches(stored.entry)) continue;
    yield { ...stored, replayed };
  }
}
