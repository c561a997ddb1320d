/**
 * `fromNdjson`: newline-delimited JSON files as an observable of parsed records.
 */
import type { Observable } from "rxjs";
import { type Flow, sendToDeadLetter, waitForGate } from "../flow/flow.ts";
import { type Input, stamp } from "../flow/position.ts";
import { type FileReading, type FileSourceOptions, fileSource } from "./files.ts";
import { describeNumberLoss, malformedJson, numberLoss } from "./json/numbers.ts";
import { type LineOptions, type ReadBytes, splitLines } from "./lines.ts";

/** Options of {@link fromNdjson}. */
export interface NdjsonOptions extends LineOptions, FileSourceOptions {}

/**
 * Reads NDJSON files (a path, a glob such as `data/*.ndjson`, or a list of either) one line at a
 * time with Bun's file I/O and emits each parsed value.
 *
 * Lines that are not JSON, blank lines, lines that are not UTF-8, lines longer than
 * `maxLineBytes` and lines holding a number a 64-bit float cannot hold (`1e400`, `1e-400`,
 * `12345678901234567890`: the reason names the number, its field, line and column) become dead
 * letters (stage `parse`) with the raw text and the line number; the lines around them are read
 * as usual. A byte order mark and CRLF line endings are accepted.
 *
 * Reading pauses while the sink's memory budget is spent, so memory stays flat however large the
 * input is. Files are taken in name order, `concurrency` at a time (default 1). Under a run with
 * a checkpoint, finished files are skipped and a partly read file resumes where its durable rows
 * end; and since a file may still be written to, a last line without its newline is not read but
 * left for the next run, which takes it whole (without a checkpoint it is read: a run reads the
 * file as it is). Completes after the last file; errors when an input cannot be opened or read (naming it);
 * unsubscribing stops the read and closes the files. On SIGINT/SIGTERM under `run`, it stops
 * after the current chunk and completes.
 *
 * @example
 * fromNdjson("exports/*.ndjson").pipe(validate(Event), deadLetter("out/dead-letter"))
 */
export function fromNdjson(input: string | readonly string[], options: NdjsonOptions = {}): Observable<unknown> {
  return fileSource(
    "fromNdjson",
    input,
    options,
    (file) => readNdjson(file.input, file.read, file.emit, file.stopped, options, file, file.mayGrow),
    { kind: "lines" },
  );
}

/**
 * Parses NDJSON from `read`, stamping each record with its position in `input`. Shared by every
 * line-based source (files, stdin).
 *
 * `mayGrow`, for an input that may still be written to (see `FileReading.mayGrow`): a last line
 * without its newline is left unread and the resume point stays before it, so a later run reads
 * the line whole instead of two dead letters, one for each half.
 */
export async function readNdjson(
  input: Input,
  read: ReadBytes,
  emit: (value: unknown) => void,
  isStopped: () => boolean,
  options: LineOptions = {},
  resume?: Pick<FileReading, "start" | "mark">,
  mayGrow = false,
): Promise<void> {
  const flow: Flow = input.flow;
  const startOffset = resume?.start.byteOffset ?? 0;
  let unread = false;
  await splitLines(
    read,
    {
      line(text, line) {
        if (isStopped()) {
          unread = true;
          return;
        }
        const position = input.at(line, text);
        let value: unknown;
        try {
          value = JSON.parse(text);
        } catch (error) {
          const reason = text.trim() === "" ? "blank line" : malformedJson(text, error, (at) => `line ${line}, column ${at + 1}`);
          sendToDeadLetter(flow, "parse", reason, undefined, position);
          return;
        }
        const loss = numberLoss(text, value);
        if (loss !== undefined) {
          sendToDeadLetter(flow, "parse", describeNumberLoss(loss, `line ${line}, column ${loss.index + 1}`), undefined, position);
          return;
        }
        emit(stamp(value, position));
      },
      bad(line, error, text, bytes) {
        if (isStopped()) {
          unread = true;
          return;
        }
        sendToDeadLetter(flow, "parse", error, undefined, input.at(line, text), bytes ? { rawBase64: Buffer.from(bytes).toString("base64") } : {});
      },
      async chunkDone(_bytes, line, consumed) {
        // A resume point only where every line before it was emitted.
        if (!unread) resume?.mark(line, startOffset + consumed);
        if (isStopped() || flow.stopping) return false;
        if (flow.gate) await waitForGate(flow);
        return !(isStopped() || flow.stopping);
      },
      ...(mayGrow ? { unfinished: () => true } : {}),
    },
    options,
    { line: resume?.start.line ?? 0, midway: startOffset > 0 },
  );
}
