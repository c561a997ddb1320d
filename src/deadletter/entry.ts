/**
 * The dead-letter format: what an entry holds, stored one JSON object a line, and what the files
 * holding entries are called. The store writes it; `read.ts` is the one reader of it.
 */

/** One problem with a record, in valibot's terms. */
export interface DeadLetterIssue {
  /** Dot path of the field, such as `tags.2` (empty for the record itself). */
  readonly path: string;
  readonly expected: string | null;
  readonly received: string;
  readonly message: string;
}

/**
 * A record that did not make it into the dataset, with everything needed to understand and
 * replay it. Stored one JSON object per line.
 */
export interface DeadLetter {
  /** Where it failed: `parse`, `validate`, `enrich`, `write`, or a stage named by the pipeline. */
  readonly stage: string;
  /** The input it came from (a file path, a URL, a topic). */
  readonly source: string;
  /** 1-based line (or record number) in that input; 0 when the source has no positions. */
  readonly line: number;
  /** Byte offset of the record in that input, when the source knows it (JSON documents). */
  readonly offset?: number;
  /** The raw input text: the line as read, or the record as JSON when no text exists. */
  readonly raw: string;
  /** The exact bytes, base64, when the raw input was not valid UTF-8. */
  readonly rawBase64?: string;
  readonly error: string;
  readonly issues?: readonly DeadLetterIssue[];
  /** When it was dead-lettered (ISO-8601). */
  readonly at: string;
  readonly runId: string;
  /**
   * The distributed job whose worker wrote it (`run(…, { distribute: { job } })`); absent outside
   * distributed runs. A worker looks up only its own job's dead letters when a split comes again.
   */
  readonly job?: string;
}

/**
 * The name of a run's dead-letter file number `index` (from 0):
 * `dead-letter-<runId>-<index, 5 digits or more>.ndjson`. Names sort in the order a run wrote its
 * files, and `isDeadLetterFileOf(name, runId)` (flow/runId.ts) knows them for that run alone.
 *
 * @example
 * deadLetterFileName("run-1", 0) // "dead-letter-run-1-00000.ndjson"
 */
export function deadLetterFileName(runId: string, index: number): string {
  return `dead-letter-${runId}-${String(index).padStart(5, "0")}.ndjson`;
}
