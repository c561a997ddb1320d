/**
 * `fromNdjson`: newline-delimited JSON files as an observable of parsed records.
 */
import { open } from "node:fs/promises";
import { Observable } from "rxjs";
import { currentFlow, enterRecord, type Flow, sendToDeadLetter, waitForGate } from "../flow/flow.ts";
import { resolveInputs } from "./files.ts";
import { type LineOptions, type ReadBytes, splitLines } from "./lines.ts";

/** Options of {@link fromNdjson}. */
export interface NdjsonOptions extends LineOptions {}

/**
 * Reads NDJSON files (a path, a glob such as `data/*.ndjson`, or a list of either) one line at a
 * time with Bun's file I/O and emits each parsed value.
 *
 * Lines that are not JSON, blank lines, lines that are not UTF-8 and lines longer than
 * `maxLineBytes` become dead letters (stage `parse`) with the raw text and the line number; the
 * lines around them are read as usual. A byte order mark and CRLF line endings are accepted.
 *
 * Reading pauses while the sink's memory budget is spent, so memory stays flat however large the
 * input is. Files are read in name order. Completes after the last file; errors when an input
 * cannot be opened or read (naming it); unsubscribing stops the read and closes the file. On
 * SIGINT/SIGTERM under `run`, it stops after the current chunk and completes.
 *
 * @example
 * fromNdjson("exports/*.ndjson").pipe(validate(Event), deadLetter("out/dead-letter"))
 */
export function fromNdjson(input: string | readonly string[], options: NdjsonOptions = {}): Observable<unknown> {
  return new Observable<unknown>((subscriber) => {
    const flow = currentFlow();
    let stopped = false;
    let closeFile: (() => Promise<void>) | undefined;

    (async () => {
      for (const path of await resolveInputs(input, "fromNdjson")) {
        if (stopped || flow.stopping) break;
        let file: Awaited<ReturnType<typeof open>>;
        try {
          file = await open(path, "r");
        } catch (error) {
          throw new Error(`fromNdjson: cannot open ${path}: ${(error as Error).message}`, { cause: error });
        }
        closeFile = () => file.close();
        const read: ReadBytes = async (buffer, offset, length) => {
          try {
            const { bytesRead } = await file.read(buffer, offset, length, null);
            flow.stats.bytesRead += bytesRead;
            return bytesRead;
          } catch (error) {
            throw new Error(`fromNdjson: cannot read ${path}: ${(error as Error).message}`, { cause: error });
          }
        };
        try {
          await readNdjson(path, read, flow, (value) => subscriber.next(value), () => stopped || subscriber.closed, options);
        } finally {
          closeFile = undefined;
          await file.close();
        }
      }
    })().then(
      () => subscriber.complete(),
      (error) => subscriber.error(error),
    );

    return () => {
      stopped = true;
      closeFile?.().catch(() => {});
    };
  });
}

/**
 * Parses NDJSON from `read`, setting the flow's cursor before each emission. Shared by every
 * line-based source (files, stdin).
 */
export async function readNdjson(
  source: string,
  read: ReadBytes,
  flow: Flow,
  emit: (value: unknown) => void,
  isStopped: () => boolean,
  options: LineOptions = {},
): Promise<void> {
  await splitLines(
    read,
    {
      line(text, line) {
        if (isStopped()) return;
        enterRecord(flow, source, line, text);
        let value: unknown;
        try {
          value = JSON.parse(text);
        } catch (error) {
          const reason = text.trim() === "" ? "blank line" : `malformed JSON: ${(error as Error).message}`;
          sendToDeadLetter(flow, "parse", reason, undefined);
          return;
        }
        emit(value);
      },
      bad(line, error, text, bytes) {
        if (isStopped()) return;
        enterRecord(flow, source, line, text);
        sendToDeadLetter(flow, "parse", error, undefined, bytes ? { rawBase64: Buffer.from(bytes).toString("base64") } : {});
      },
      async chunkDone() {
        flow.raw = undefined;
        if (isStopped() || flow.stopping) return false;
        if (flow.gate) await waitForGate(flow);
        return !(isStopped() || flow.stopping);
      },
    },
    options,
  );
}
