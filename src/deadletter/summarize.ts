/**
 * What is in a dead-letter folder, at a glance: counts by stage, by error and by field, each
 * with samples that point at the input (file:line) and show the raw record.
 */
import { relative } from "node:path";
import { isDeadLetterFileOf } from "../flow/runId.ts";
import type { DeadLetter } from "./entry.ts";
import { listDeadLetterFiles, type StoredDeadLetter, streamDeadLetters } from "./read.ts";
import { readReplayState } from "./replay.ts";

/** Options of {@link summarizeDeadLetters}. */
export interface SummarizeOptions {
  /** Samples kept per group (default 3). */
  readonly samples?: number;
  /** Characters of the raw record kept in a sample (default 200). */
  readonly rawChars?: number;
  /** Count entries already replayed too (default false: they are only counted in `replayed`). */
  readonly includeReplayed?: boolean;
  /** Distinct groups kept per section (default 1000); further ones are counted under `(other)`. */
  readonly maxGroups?: number;
}

/** One dead letter shown as an example of its group. */
export interface DeadLetterSample {
  /** `<dead-letter file>#<line>`. */
  readonly id: string;
  /** Where the record came from: the input and its line. */
  readonly source: string;
  readonly line: number;
  readonly stage: string;
  /** The real error message (groups are keyed by a normalised one). */
  readonly error: string;
  /** The raw record, shortened to `rawChars` with `…` when longer. */
  readonly raw: string;
  readonly runId: string;
}

/** A set of dead letters with something in common, and a few of them. */
export interface DeadLetterGroup {
  /** The stage, the error pattern, the field path (`(record)` for the record itself), the source or the run. */
  readonly key: string;
  readonly count: number;
  readonly samples: readonly DeadLetterSample[];
}

/** A group of dead letters failing the same way. */
export interface DeadLetterErrorGroup extends DeadLetterGroup {
  /** The stage the error happened at. */
  readonly stage: string;
}

/** What {@link summarizeDeadLetters} found. Groups are sorted by count, largest first. */
export interface DeadLetterSummary {
  readonly folder: string;
  /** Dead-letter files read. */
  readonly files: number;
  /** Entries counted in the groups: not yet replayed (all of them with `includeReplayed`). */
  readonly open: number;
  /** Entries a finished replay already sent through a pipeline (see the replay ledgers). */
  readonly replayed: number;
  /** Finished replays, oldest first. */
  readonly replays: readonly { readonly runId: string; readonly replayed: number }[];
  /**
   * A replay whose lock is still there: `running`, or crashed (its output is rolled back by the
   * next replay). Its own new dead letters are not counted anywhere but in `entries` here.
   */
  readonly unfinishedReplay: { readonly runId: string; readonly running: boolean; readonly entries: number } | undefined;
  /** Time of the first and last dead letter counted. */
  readonly firstAt: string | undefined;
  readonly lastAt: string | undefined;
  readonly byStage: readonly DeadLetterGroup[];
  readonly byError: readonly DeadLetterErrorGroup[];
  /** By the field path of each issue (validation); an entry with issues at two fields counts in both. */
  readonly byField: readonly DeadLetterGroup[];
  readonly bySource: readonly DeadLetterGroup[];
  readonly byRun: readonly DeadLetterGroup[];
}

/**
 * The pattern an error message is grouped by: what varies from record to record (numbers,
 * positions, the value received, the JSON parser's exact complaint, the issue count) is replaced,
 * so the same cause gives one group.
 *
 * @example
 * errorPattern('1 issue: duration_ms: Invalid type: Expected number but received "52675"');
 * // 'duration_ms: Invalid type: Expected number but received "…"'
 */
export function errorPattern(message: string): string {
  if (message.startsWith("malformed JSON")) return "malformed JSON: …";
  return (
    message
      // "2 issues: " varies with the record; the issues themselves say what is wrong.
      .replace(/^\d+ issues?: /, "")
      .replace(/received "(?:[^"\\]|\\.)*"/g, 'received "…"')
      // Standalone numbers (positions, sizes, ids, values: -1, 2.5e-7, 1.2345678901234569e+23) are
      // one N each, so two records failing the same way group together; not the digits of names
      // such as ISO-8601 or 64-bit. The lookbehind and lookahead keep a match from starting or
      // ending inside a number, which would leave pieces of it ("N9e+N").
      .replace(/(?<![A-Za-z]-|[A-Za-z0-9_])-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?![A-Za-z0-9_]|\.\d|-[A-Za-z])/g, "N")
  );
}

/**
 * Reads a dead-letter folder entry by entry (never all at once) and counts its dead letters by
 * stage, by error pattern ({@link errorPattern}), by field path, by source and by run, keeping
 * `samples` examples of each group (distinct real messages first).
 *
 * Entries a finished replay has sent through a pipeline are counted in `replayed`, not in the
 * groups (unless `includeReplayed`). The new dead letters of an unfinished replay are counted in
 * `unfinishedReplay` only: a crashed replay's output is rolled back by the next replay.
 * Resolves with the summary (all zero for an empty or missing folder). Rejects when a file cannot
 * be read or holds a line that is not a dead letter.
 *
 * @example
 * const summary = await summarizeDeadLetters("out/dead-letter", { samples: 2 });
 * for (const group of summary.byError) console.log(group.count, group.stage, group.key);
 */
export async function summarizeDeadLetters(folder: string, options: SummarizeOptions = {}): Promise<DeadLetterSummary> {
  const sampleCount = Math.max(0, options.samples ?? 3);
  const rawChars = options.rawChars ?? 200;
  const maxGroups = options.maxGroups ?? 1000;
  const state = readReplayState(folder);
  const unfinishedRun = state.unfinished?.runId;

  const byStage = createTally(sampleCount, maxGroups);
  const byError = createTally(sampleCount, maxGroups);
  const byField = createTally(sampleCount, maxGroups);
  const bySource = createTally(sampleCount, maxGroups);
  const byRun = createTally(sampleCount, maxGroups);
  const errorStage = new Map<string, string>();
  let open = 0;
  let replayed = 0;
  let unfinishedEntries = 0;
  let firstAt: string | undefined;
  let lastAt: string | undefined;

  const files = await listDeadLetterFiles(folder);
  for await (const stored of streamDeadLetters(folder, { files })) {
    if (unfinishedRun !== undefined && isDeadLetterFileOf(stored.file, unfinishedRun)) {
      unfinishedEntries++;
      continue;
    }
    if (state.isReplayed(stored.file, stored.index)) {
      replayed++;
      if (!options.includeReplayed) continue;
    }
    open++;
    const { entry } = stored;
    if (firstAt === undefined || entry.at < firstAt) firstAt = entry.at;
    if (lastAt === undefined || entry.at > lastAt) lastAt = entry.at;
    const sample = () => toSample(stored, rawChars);
    byStage.add(entry.stage, entry.error, sample);
    const errorKey = `${entry.stage}\u0000${errorPattern(entry.error)}`;
    if (byError.add(errorKey, entry.error, sample)) errorStage.set(errorKey, entry.stage);
    for (const path of fieldPaths(entry)) byField.add(path, entry.error, sample);
    bySource.add(entry.source, entry.error, sample);
    byRun.add(entry.runId, entry.error, sample);
  }

  return {
    folder,
    files: files.length,
    open,
    replayed,
    replays: state.ledgers.map(({ runId, replayed: n }) => ({ runId, replayed: n })),
    unfinishedReplay: state.unfinished
      ? { runId: state.unfinished.runId, running: state.unfinished.running, entries: unfinishedEntries }
      : undefined,
    firstAt,
    lastAt,
    byStage: byStage.groups(),
    byError: byError.groups().map((group) => {
      const stage = errorStage.get(group.key) ?? "";
      const key = group.key.includes("\u0000") ? group.key.slice(group.key.indexOf("\u0000") + 1) : group.key;
      return { ...group, key, stage };
    }),
    byField: byField.groups(),
    bySource: bySource.groups(),
    byRun: byRun.groups(),
  };
}

/** The distinct field paths of an entry's issues (`(record)` for an issue about the record itself). */
function fieldPaths(entry: DeadLetter): Set<string> {
  const paths = new Set<string>();
  for (const issue of entry.issues ?? []) paths.add(issue.path === "" ? "(record)" : issue.path);
  return paths;
}

function toSample(stored: StoredDeadLetter, rawChars: number): DeadLetterSample {
  const { entry } = stored;
  const raw = entry.raw.length > rawChars ? `${entry.raw.slice(0, rawChars)}…` : entry.raw;
  return { id: stored.id, source: entry.source, line: entry.line, stage: entry.stage, error: entry.error, raw, runId: entry.runId };
}

const OTHER = "(other)";

/** Counts per key with a few samples each. */
interface Tally {
  /** Counts one entry under `key`; returns true when the key is new. */
  add(key: string, error: string, sample: () => DeadLetterSample): boolean;
  groups(): DeadLetterGroup[];
}

/**
 * A tally in bounded memory: at most `maxGroups` keys (the rest under `(other)`), at most twice
 * `samples` samples per key (distinct messages first, then repeats to fill up).
 */
function createTally(samples: number, maxGroups: number): Tally {
  const counts = new Map<string, { count: number; distinct: DeadLetterSample[]; repeats: DeadLetterSample[] }>();
  return {
    add(key, error, sample) {
      let group = counts.get(key);
      let created = false;
      if (!group) {
        const name = counts.size >= maxGroups ? OTHER : key;
        group = counts.get(name);
        if (!group) {
          group = { count: 0, distinct: [], repeats: [] };
          counts.set(name, group);
          created = name === key;
        }
      }
      group.count++;
      if (group.distinct.length < samples) {
        if (!group.distinct.some((s) => s.error === error)) group.distinct.push(sample());
        else if (group.repeats.length < samples) group.repeats.push(sample());
      }
      return created;
    },
    groups() {
      return [...counts]
        .map(([key, g]) => ({ key, count: g.count, samples: [...g.distinct, ...g.repeats].slice(0, samples) }))
        .sort((a, b) => b.count - a.count || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    },
  };
}

/**
 * A summary as text for a terminal: totals, then each section's groups (`sections`, default
 * stage, error, field) with their share and samples (`source:line  raw`, the raw cut at
 * `rawWidth` characters, default 100, then the real error when it differs from the group's key).
 *
 * @example
 * console.log(formatDeadLetterSummary(await summarizeDeadLetters("out/dead-letter")));
 */
export function formatDeadLetterSummary(
  summary: DeadLetterSummary,
  options: { sections?: readonly ("stage" | "error" | "field" | "source" | "run")[] | undefined; rawWidth?: number } = {},
): string {
  const rawWidth = options.rawWidth ?? 100;
  const n = (x: number) => x.toLocaleString("en-US");
  const out: string[] = [];
  out.push(
    `${summary.folder}: ${n(summary.open)} open dead letter(s) in ${n(summary.files)} file(s)` +
      (summary.replayed > 0 ? `, ${n(summary.replayed)} already replayed by ${summary.replays.length} replay(s)` : ""),
  );
  if (summary.firstAt) out.push(`from ${summary.firstAt} to ${summary.lastAt}`);
  const unfinished = summary.unfinishedReplay;
  if (unfinished) {
    out.push(
      unfinished.running
        ? `replay ${unfinished.runId} is running (${n(unfinished.entries)} new dead letter(s) so far, not counted)`
        : `replay ${unfinished.runId} did not finish: its output (${n(unfinished.entries)} new dead letter(s), not counted) is rolled back by the next replay`,
    );
  }
  const total = Math.max(summary.open, 1);
  const sections = options.sections ?? ["stage", "error", "field"];
  const titled: Record<string, [string, readonly DeadLetterGroup[]]> = {
    stage: ["by stage", summary.byStage],
    error: ["by error", summary.byError],
    field: ["by field", summary.byField],
    source: ["by source", summary.bySource],
    run: ["by run", summary.byRun],
  };
  for (const section of sections) {
    const [title, groups] = titled[section] as [string, readonly DeadLetterGroup[]];
    if (groups.length === 0) continue;
    out.push("", title);
    const width = Math.max(...groups.map((g) => n(g.count).length));
    for (const group of groups) {
      const stage = "stage" in group && section === "error" ? `[${(group as DeadLetterErrorGroup).stage}] ` : "";
      const share = `${((100 * group.count) / total).toFixed(1).padStart(5)}%`;
      out.push(`  ${n(group.count).padStart(width)} ${share}  ${stage}${group.key}`);
      for (const sample of group.samples) {
        const raw = sample.raw.length > rawWidth ? `${sample.raw.slice(0, rawWidth)}…` : sample.raw;
        out.push(`      ${where(sample)}  ${raw}`);
        if (sample.error !== group.key) out.push(`        ${sample.error}`);
      }
    }
  }
  return out.join("\n");
}

function where(sample: DeadLetterSample): string {
  const rel = relative(process.cwd(), sample.source);
  const shown = rel && !rel.startsWith("..") ? rel : sample.source;
  return `${shown}:${sample.line}`;
}
