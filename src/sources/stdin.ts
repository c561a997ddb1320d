/**
 * `fromStdin`: NDJSON piped into the process (`cat events.ndjson | bun script.ts`).
 */
import { Observable } from "rxjs";
import { currentFlow, deadLetterBelow } from "../flow/flow.ts";
import { Input } from "../flow/position.ts";
import type { LineOptions, ReadBytes } from "./lines.ts";
import { readNdjson } from "./ndjson.ts";

/** Options of {@link fromStdin}. */
export interface StdinOptions extends LineOptions {
  /**
   * The bytes to read instead of the process's standard input (default `Bun.stdin.stream()`).
   * Lets an app feed a socket or a child process's output through the same parsing.
   */
  readonly stream?: ReadableStream<Uint8Array>;
  /** The source name on dead letters and commits (default `"stdin"`). */
  readonly name?: string;
}

/**
 * Reads NDJSON from standard input, one line at a time, and emits each parsed value.
 *
 * The parsing is {@link fromNdjson}'s: lines that are not JSON, blank lines, lines that are not
 * UTF-8 (their exact bytes kept as `rawBase64`) and lines over `maxLineBytes` become dead letters
 * at stage `parse` with source `"stdin"` and the line number; a byte order mark and CRLF are
 * accepted; a last line without a newline is still a line.
 *
 * Reading pauses while the sink's memory budget is spent: the pipe then fills and the writing
 * process blocks, so memory stays flat however much is piped in. Completes at the end of input
 * (the writer closed the pipe; an empty input completes with no records). Errors, naming stdin,
 * when reading fails. Unsubscribing, or SIGINT/SIGTERM under `run`, stops reading after the
 * current chunk and releases the stream. Standard input can be read once per process.
 *
 * @example
 * // cat events.ndjson | bun load.ts
 * await run(fromStdin().pipe(validate(Event), deadLetter("out/dead-letter"), toParquet("out/events", { schema: Event })));
 */
export function fromStdin(options: StdinOptions = {}): Observable<unknown> {
  const name = options.name ?? "stdin";
  return new Observable<unknown>((subscriber) => {
    const flow = currentFlow(subscriber);
    const reader = (options.stream ?? Bun.stdin.stream()).getReader();
    let unsubscribed = false;
    const stopped = () => unsubscribed || subscriber.closed || flow.stopping;
    // A web stream hands out chunks of its own size; the splitter asks for bytes into its buffer.
    // The rest of a chunk that did not fit waits here (at most one chunk).
    let pending: Uint8Array | undefined;

    const read: ReadBytes = async function readStdin(buffer, offset, length) {
      while (!pending || pending.length === 0) {
        if (stopped()) return 0;
        let result: Awaited<ReturnType<typeof reader.read>>;
        try {
          result = await reader.read();
        } catch (error) {
          if (unsubscribed) return 0;
          throw new Error(`fromStdin: cannot read ${name}: ${(error as Error).message}`, { cause: error });
        }
        if (result.done) return 0;
        pending = result.value;
        flow.stats.bytesRead += pending.length;
      }
      const chunk: Uint8Array = pending;
      const n = Math.min(length, chunk.length);
      buffer.set(chunk.subarray(0, n), offset);
      pending = n === chunk.length ? undefined : chunk.subarray(n);
      return n;
    };

    const input = new Input(flow, name);
    // Its parse errors go to the folder below this source (see deadLetterBelow).
    input.deadLetterTarget = deadLetterBelow(subscriber);
    readNdjson(input, read, (value) => subscriber.next(value), stopped, options)
      .then(
        () => subscriber.complete(),
        (error) => subscriber.error(error),
      )
      .finally(() => {
        pending = undefined;
        try {
          reader.releaseLock();
        } catch {
          // Already released by a cancel: nothing more to free.
        }
      });

    return function stopStdin() {
      unsubscribed = true;
      // Wakes a read waiting for input that may never come (a terminal, an idle pipe).
      reader.cancel().catch(() => {});
    };
  });
}
