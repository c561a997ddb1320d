import { Observable, type MonoTypeOperatorFunction } from "rxjs";
import { currentFlow, joinFlow } from "../src/flow/flow.ts";
import { formatTable } from "../src/notebook/table.ts";

/** Options of {@link preview}. */
export interface PreviewOptions {
  /** A title printed above the table (default none). */
  readonly label?: string;
  /** Where the text goes (default `console.log`). */
  readonly write?: (text: string) => void;
  /** Widest a column may be, in terminal cells (default 40). */
  readonly maxWidth?: number;
}

/**
 * Passes every value through unchanged and prints the first `n` as a table (see `formatTable`):
 * once the n-th value has arrived, or on complete when fewer came. The values are copied
 * (`structuredClone`) as they pass, so the table shows them as they were at this point even if
 * later steps mutate them. `preview(0)` prints nothing. Put it anywhere in a pipeline to see what flows there.
 *
 * On error, the values gathered so far are printed, then the error travels on. Unsubscribing
 * prints nothing and drops the gathered values. A `write` that throws errors the stream, as a
 * throwing `tap` callback does. Holds at most `n` references.
 *
 * @example
 * fromNdjson("events.ndjson").pipe(
 *   validate(Event),
 *   preview(5, { label: "validated" }),
 *   deadLetter("out/dead-letter"),
 *   toParquet("out/events", { schema: Event }),
 * );
 */
export function preview<T>(n = 10, options: PreviewOptions = {}): MonoTypeOperatorFunction<T> {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`preview: n must be a whole number of rows, got ${n}`);
  const write = options.write ?? ((text: string) => console.log(text));
  return function previewOperator(source) {
    return new Observable<T>((subscriber) => {
      // Cleared once printed: later values pass straight through.
      let seen: T[] | undefined = n > 0 ? [] : undefined;

      // Returns false (after erroring the stream) when `write` threw.
      function print(): boolean {
        const rows = seen;
        seen = undefined;
        if (!rows) return true;
        const title = `${options.label ? `${options.label}: ` : ""}${rows.length === 0 ? "no values" : `first ${rows.length} value${rows.length === 1 ? "" : "s"}`}`;
        try {
          write(rows.length === 0 ? title : `${title}\n${formatTable(rows, undefined, { maxWidth: options.maxWidth })}`);
        } catch (error) {
          subscriber.error(error);
          return false;
        }
        return true;
      }

      // Marked with the run's flow, so a source subscribed above it later finds its run (see currentFlow).
      const subscription = source.subscribe(joinFlow(currentFlow(subscriber), {
        next(value) {
          if (seen) {
            // A copy, so what is printed is the value as it passed here, whatever later steps do to it.
            seen.push(snapshot(value));
            if (seen.length >= n && !print()) return;
          }
          subscriber.next(value);
        },
        error(error) {
          if (print()) subscriber.error(error);
        },
        complete() {
          if (print()) subscriber.complete();
        },
      }));
      return () => {
        subscription.unsubscribe();
        seen = undefined;
      };
    });
  };
}

function snapshot<T>(value: T): T {
  try {
    return structuredClone(value);
  } catch {
    // Not cloneable (a function, a class instance with private state): show it as it is at print time.
    return value;
  }
}
