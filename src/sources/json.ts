/**
 * `fromJson`: JSON documents holding an array of records (at the top level or under a path) as
 * an observable of the array's elements, read incrementally.
 *
 * A full streaming tokenizer would hand every value of the document to JavaScript one event at a
 * time, which is slow. Instead the bytes are scanned for structure only (quotes, escapes,
 * brackets; see `json/scan.ts`) until the array at the path is entered; then each element's byte
 * extent is found the same way, and each element is decoded on its own (one-byte text where it
 * can be; see `json/text.ts`) and parsed by `JSON.parse`, natively. In a document written one
 * element a line, a line that parses as one element is taken without scanning its bytes (see
 * `lineElement`). Each element is emitted as soon as the byte after it is read, so its value is
 * garbage by the time the next is parsed. Memory is one chunk, or one element when an element
 * is larger than a chunk. Values off the path are never parsed, so they go through a syntax check
 * as they are skipped (`json/syntax.ts`): damage there is reported, not passed over.
 */
import type { Observable } from "rxjs";
import { sendToDeadLetter } from "../flow/flow.ts";
import { stamp } from "../flow/position.ts";
import { type FileReading, type FileSourceOptions, fileSource } from "./files.ts";
import { lenient } from "./lines.ts";
import { describeNumberLoss, malformedJson, numberLoss } from "./json/numbers.ts";
import { type PathStep, parsePath, pathName } from "./json/path.ts";
import { checkValue, INVALID, newCheck, startCheck } from "./json/syntax.ts";
import { elementText, firstHighByte, viewsOf } from "./json/text.ts";
import {
  CLOSE_BRACE,
  CLOSE_BRACKET,
  COLON,
  COMMA,
  describeByte,
  isWhitespace,
  kindOf,
  MISMATCH,
  NEED_MORE,
  newScan,
  OPEN_BRACE,
  OPEN_BRACKET,
  QUOTE,
  BACKSLASH,
  scanValue,
  skipWhitespace,
  startScan,
} from "./json/scan.ts";

/** Options of {@link fromJson}. */
export interface JsonOptions extends FileSourceOptions {
  /**
   * Where the array of records is in each document: a dot path (`"value"`, `"data.items"`,
   * `"results.0.rows"`, a number indexing an array) or a list of steps (`["data", "items"]`, for
   * keys holding dots). Default: the top-level value is the array.
   */
  readonly path?: string | readonly (string | number)[];
  /** Bytes read at a time (default 1 MiB). */
  readonly chunkBytes?: number;
  /** Largest element accepted (default 128 MiB); a larger one becomes a dead letter. */
  readonly maxRecordBytes?: number;
}

/**
 * Reads JSON files (a path, a glob such as `exports/*.json`, or a list of either), each a
 * document holding an array of records, and emits the array's elements one by one, parsed. The
 * array is the top-level value, or the one `path` leads to (`path: "value"` for a Microsoft Graph
 * export `{"@odata.context": ..., "value": [...]}`). Other parts of the document are skipped
 * unparsed.
 *
 * A record's position is its 1-based index in the array (the dead letter's `line`) and its byte
 * offset in the file (`offset`). An element that is not JSON (`{"a":1,}`, a stray word) or not
 * UTF-8 (its bytes kept as `rawBase64`), or longer than `maxRecordBytes`, or holding a number a
 * 64-bit float cannot hold (`1e400`, `12345678901234567890`), becomes a dead letter at stage
 * `parse` and the next element is read. Damage to the document's structure (a truncated file,
 * something other than `,` or `]` after an element, brackets that do not match, the path missing
 * or holding something other than an array, an empty file, a value off the path that is not JSON)
 * becomes one dead letter at stage `parse` naming what was expected and what was found, with the
 * byte offset: the rest of that file is not read, and the next file is. The records before the
 * damage are kept, except the element right before it: an element is emitted only once the `,`
 * or `]` after it is read, since damage can make one look whole (a truncated `["x"` closed by the
 * array's own `]` holds the elements after it). A byte order mark is accepted.
 *
 * Reading pauses while the sink's memory budget is spent, so memory stays flat however large the
 * file is: one chunk, or one element when an element is larger than a chunk. Files are taken in
 * name order, `concurrency` at a time (default 1). Under a run with a checkpoint, finished files
 * are skipped and a partly read file resumes after the last durable element (the document's
 * beginning is scanned again to find the array). Completes after the last file; errors when an
 * input cannot be opened or read (naming it); unsubscribing stops the read and closes the files.
 * On SIGINT/SIGTERM under `run`, it stops after the current element and completes.
 *
 * @example
 * fromJson("exports/users-*.json", { path: "value" }).pipe(validate(User), deadLetter("out/dead-letter"))
 */
export function fromJson(input: string | readonly string[], options: JsonOptions = {}): Observable<unknown> {
  const steps = parsePath(options.path);
  return fileSource("fromJson", input, options, (file) => readJson(file, steps, options));
}

// States of the reader. Steps of the path lead through "containers" (objects, or arrays indexed
// by a number) to the target array.
const ROOT = 0;
const OBJ_FIRST = 1; // after `{` of a container: a key or `}`
const OBJ_KEY = 2; // after `,`: a key
const OBJ_KEY_SCAN = 3; // inside a key
const OBJ_COLON = 4;
const OBJ_VALUE = 5;
const OBJ_AFTER = 6; // after a member: `,` or `}`
const ARR_FIRST = 7; // after `[` of a container: a value or `]`
const ARR_VALUE = 8;
const ARR_AFTER = 9;
const SKIP = 10; // inside a value off the path
const TARGET_FIRST = 11; // after `[` of the target: an element or `]`
const TARGET_NEXT = 12; // after `,`: an element
const ELEMENT = 13; // inside an element
const OVERSIZED = 14; // inside an element too large to keep: skipping it
const TARGET_AFTER = 15; // after an element: `,` or `]`
const END = 16; // after the document: whitespace only
const DONE = 17;

/** What a structural fault leaves in the dead letter. */
interface Fault {
  readonly message: string;
  readonly line: number;
  readonly offset: number;
  readonly raw: string;
}

/** An element read to its end, held until the byte after it is seen. */
interface Held {
  readonly bytes: Uint8Array;
  readonly index: number;
  /** Byte offsets of its start and end in the file. */
  readonly offset: number;
  readonly end: number;
  /** Its text and value, when it was read by line. */
  readonly text: string | undefined;
  readonly value: unknown;
}

/** Longest raw text kept for a dead letter that is not an element parsed in full. */
const EXCERPT_BYTES = 1024;
const NEWLINE = 0x0a;
/**
 * Longest line taken as an element without the byte scan. A longer line may hold many elements
 * (a document written on one line, broken before its last `]`), and decoding it only to find that
 * it does not parse as one would cost more than the scan saves.
 */
const LINE_BYTES = 64 * 1024;

/** Reads one file; see {@link fromJson}. */
async function readJson(file: FileReading, steps: readonly PathStep[], options: JsonOptions): Promise<void> {
  const { flow, path, input, emit, stopped } = file;
  const chunkBytes = Math.max(Math.floor(options.chunkBytes ?? 1024 * 1024), 4);
  const maxRecordBytes = Math.max(Math.floor(options.maxRecordBytes ?? 128 * 1024 * 1024), 1);
  const target = pathName(steps);
  const lineMax = Math.min(LINE_BYTES, maxRecordBytes);

  let buffer: Uint8Array = new Uint8Array(chunkBytes);
  let views = viewsOf(buffer);
  let filled = 0;
  // Bytes of the file before buffer[0].
  let base = 0;
  let pos = 0;
  let atEnd = false;
  let state = ROOT;
  let fault: Fault | undefined;

  // The containers entered so far along the path (OPEN_BRACE or OPEN_BRACKET), and for arrays
  // the elements seen.
  const containers: number[] = [];
  const seen: number[] = [];
  let found = false;
  let matched = false;
  let keyStart = 0;
  const scan = newScan();
  // Keys and values off the path are checked for JSON syntax as they are skipped: nothing else reads them.
  const check = newCheck();
  // Where to go once the skipped value ends.
  let afterSkip = OBJ_AFTER;

  // The target array.
  let index = file.start.line;
  let elementStart = 0;
  const resumeAt = file.start.byteOffset > 0 ? file.start.byteOffset : undefined;

  // The last element read waits for the byte after it (`,` or `]`) before it is emitted: damage
  // can make an element look whole when it is not (see `withheld`). It is `[pendingStart,
  // pendingEnd)` of the buffer, with its text and value when it was read by line (see
  // lineElement), or `held`, copied, when the byte after it is in a later chunk.
  let awaiting = false;
  let pendingStart = 0;
  let pendingEnd = 0;
  let pendingText: string | undefined;
  let pendingValue: unknown;
  let held: Held | undefined;
  // The last element emitted from the buffer, marked as a place to resume after once the chunk is done.
  let markIndex = -1;
  let markEnd = 0;
  // The first byte above 0x7F at or after the last element decoded (see elementText).
  let high = -1;
  let halted = false;
  let byLine = true;
  // The first newline at or after the last element begun in the chunk, or `filled` when there is none.
  let newline = -1;
  let lineHits = 0;
  let lineMisses = 0;

  /** The text of `[from, to)`, cut to {@link EXCERPT_BYTES} (and marked `…` when cut). */
  const excerpt = (from: number, to: number) => {
    const available = Math.min(to, filled);
    const end = Math.min(available, from + EXCERPT_BYTES);
    const text = lenient.decode(buffer.subarray(from, end));
    return end < available ? `${text}…` : text;
  };
  /** Records a structural fault at `at`; the raw text is `[rawFrom, rawTo)`, cut to an excerpt. */
  const fail = (message: string, line: number, at: number, rawFrom = Math.max(0, at - 64), rawTo = at + 192): Fault => {
    fault = { message: `${message} (byte ${base + at})`, line, offset: base + at, raw: excerpt(rawFrom, rawTo) };
    state = DONE;
    return fault;
  };
  const foundAt = (at: number) => describeByte(at < filled ? buffer[at] : undefined);

  /** The value at `pos` is the one the path leads to at this depth: enter it. */
  function enterValue(): void {
    const depth = containers.length;
    const byte = buffer[pos];
    if (depth === steps.length) {
      if (byte !== OPEN_BRACKET) {
        const where = depth === 0 ? "at the top level" : `at ${target}`;
        fail(`expected an array ${where}, found ${kindOf(byte)}`, 0, pos);
        return;
      }
      found = true;
      pos++;
      state = TARGET_FIRST;
      if (resumeAt !== undefined) resume();
      return;
    }
    if (byte === OPEN_BRACE) {
      containers.push(OPEN_BRACE);
      seen.push(0);
      pos++;
      state = OBJ_FIRST;
      return;
    }
    const step = steps[depth] as PathStep;
    if (byte === OPEN_BRACKET && step.index !== undefined) {
      containers.push(OPEN_BRACKET);
      seen.push(0);
      pos++;
      state = ARR_FIRST;
      return;
    }
    const where = depth === 0 ? "at the top level" : `at ${pathName(steps, depth)}`;
    const wanted = byte === OPEN_BRACKET ? `an object (${JSON.stringify(step.key)} is not an array index)` : "an object";
    fail(`expected ${wanted} ${where} on the way to ${target}, found ${kindOf(byte)}`, 0, pos);
  }

  /** A checkpoint resumes after an element: jump there, inside the array the path leads to. */
  function resume(): void {
    const at = resumeAt as number;
    if (at < base + pos) {
      throw new Error(
        `fromJson: cannot resume ${path} at byte ${at}: the array at ${target} begins at byte ${base + pos}; the file changed since the checkpoint was written, remove the checkpoint to read it again`,
      );
    }
    base = at;
    filled = 0;
    pos = 0;
    atEnd = false;
    state = TARGET_AFTER;
  }

  /** The value at `pos` closes (the target array, or a container when `pop`): back to the one around it. */
  function closed(pop: boolean): void {
    pos++;
    if (pop) {
      containers.pop();
      seen.pop();
    }
    const depth = containers.length;
    state = depth === 0 ? END : containers[depth - 1] === OPEN_BRACE ? OBJ_AFTER : ARR_AFTER;
  }

  function keyMatches(from: number, to: number): boolean {
    const step = steps[containers.length - 1] as PathStep;
    const key = buffer.subarray(from, to);
    if (key.indexOf(BACKSLASH) < 0) {
      if (key.length !== step.bytes.length) return false;
      for (let i = 0; i < key.length; i++) if (key[i] !== step.bytes[i]) return false;
      return true;
    }
    try {
      return JSON.parse(lenient.decode(buffer.subarray(from - 1, to + 1))) === step.key;
    } catch {
      return false;
    }
  }

  /**
   * Runs the reader over the buffer until it needs more bytes (returns false) or is done (true).
   * Completed elements are left in the batch; a fault in `fault`.
   */
  function step(): boolean {
    for (;;) {
      switch (state) {
        case ROOT: {
          pos = skipWhitespace(buffer, pos, filled);
          if (pos === filled) return false;
          enterValue();
          break;
        }
        case OBJ_FIRST:
        case OBJ_KEY: {
          pos = skipWhitespace(buffer, pos, filled);
          if (pos === filled) return false;
          const byte = buffer[pos];
          if (byte === QUOTE) {
            keyStart = pos;
            startCheck(check, pos);
            state = OBJ_KEY_SCAN;
          } else if (byte === CLOSE_BRACE && state === OBJ_FIRST) {
            objectClosed();
          } else {
            const wanted = state === OBJ_FIRST ? "a key or '}'" : "a key";
            fail(`expected ${wanted} in the object at ${pathName(steps, containers.length - 1)}, found ${foundAt(pos)}`, 0, pos);
          }
          break;
        }
        case OBJ_KEY_SCAN: {
          const end = checkValue(buffer, filled, check);
          if (end === NEED_MORE) {
            pos = check.at;
            return false;
          }
          if (end === INVALID) {
            fail(`malformed key in the object at ${pathName(steps, containers.length - 1)}: ${check.problem}`, 0, check.at);
            break;
          }
          if (end - keyStart > maxRecordBytes) {
            fail(`a key is longer than maxRecordBytes (${maxRecordBytes} bytes)`, 0, keyStart, keyStart, keyStart + 64);
            break;
          }
          matched = !found && keyMatches(keyStart + 1, end - 1);
          pos = end;
          state = OBJ_COLON;
          break;
        }
        case OBJ_COLON: {
          pos = skipWhitespace(buffer, pos, filled);
          if (pos === filled) return false;
          if (buffer[pos] !== COLON) {
            fail(`expected ':' after a key in the object at ${pathName(steps, containers.length - 1)}, found ${foundAt(pos)}`, 0, pos);
            break;
          }
          pos++;
          state = OBJ_VALUE;
          break;
        }
        case OBJ_VALUE:
        case ARR_VALUE: {
          pos = skipWhitespace(buffer, pos, filled);
          if (pos === filled) return false;
          if (matched) {
            matched = false;
            enterValue();
          } else {
            afterSkip = state === OBJ_VALUE ? OBJ_AFTER : ARR_AFTER;
            startCheck(check, pos);
            state = SKIP;
          }
          break;
        }
        case OBJ_AFTER: {
          pos = skipWhitespace(buffer, pos, filled);
          if (pos === filled) return false;
          const byte = buffer[pos];
          if (byte === COMMA) {
            pos++;
            state = OBJ_KEY;
          } else if (byte === CLOSE_BRACE) {
            objectClosed();
          } else {
            fail(`expected ',' or '}' in the object at ${pathName(steps, containers.length - 1)}, found ${foundAt(pos)}`, 0, pos);
          }
          break;
        }
        case ARR_FIRST:
        case ARR_AFTER: {
          pos = skipWhitespace(buffer, pos, filled);
          if (pos === filled) return false;
          const byte = buffer[pos];
          if (byte === CLOSE_BRACKET) {
            if (!found) {
              const depth = containers.length;
              const count = seen[depth - 1];
              fail(`path ${target} not found: the array at ${pathName(steps, depth - 1)} has ${count} element${count === 1 ? "" : "s"}`, 0, pos);
              break;
            }
            closed(true);
          } else if (state === ARR_AFTER && byte !== COMMA) {
            fail(`expected ',' or ']' in the array at ${pathName(steps, containers.length - 1)}, found ${foundAt(pos)}`, 0, pos);
          } else {
            if (state === ARR_AFTER) pos++;
            const depth = containers.length;
            matched = !found && seen[depth - 1] === steps[depth - 1]?.index;
            (seen[depth - 1] as number)++;
            state = ARR_VALUE;
          }
          break;
        }
        case SKIP: {
          const end = checkValue(buffer, filled, check);
          if (end === NEED_MORE) {
            pos = check.at;
            return false;
          }
          if (end === INVALID) {
            // Nothing reads a skipped value, so this is the only place its damage can be seen.
            const around = containers.length === 0 ? "the document" : `the ${containers.at(-1) === OPEN_BRACE ? "object" : "array"} at ${pathName(steps, containers.length - 1)}`;
            fail(`the document is damaged off the path, in a value of ${around}: ${check.problem}`, 0, check.at);
            break;
          }
          pos = end;
          state = afterSkip;
          break;
        }
        case OVERSIZED: {
          const end = scanValue(buffer, filled, scan);
          if (end === NEED_MORE) {
            pos = scan.at;
            return false;
          }
          if (end === MISMATCH) {
            fail(`malformed JSON in element ${index}: ${describeByte(buffer[scan.at])} does not close the bracket open there`, index, scan.at);
            break;
          }
          pos = end;
          state = TARGET_AFTER;
          break;
        }
        case TARGET_FIRST:
        case TARGET_NEXT: {
          pos = skipWhitespace(buffer, pos, filled);
          if (pos === filled) return false;
          const byte = buffer[pos] as number;
          if (byte === CLOSE_BRACKET && state === TARGET_FIRST) {
            closed(false);
            break;
          }
          if (byte === CLOSE_BRACKET || byte === COMMA || byte === CLOSE_BRACE || byte === COLON) {
            fail(`expected an element after ${state === TARGET_FIRST ? "'['" : "','"} in the array at ${target}, found ${describeByte(byte)}`, index + 1, pos);
            break;
          }
          index++;
          elementStart = pos;
          if (byLine && (byte === OPEN_BRACE || byte === OPEN_BRACKET) && lineElement(byte)) break;
          startScan(scan, pos);
          state = ELEMENT;
          break;
        }
        case ELEMENT: {
          const end = scanValue(buffer, filled, scan);
          if (end === NEED_MORE) {
            pos = scan.at;
            return false;
          }
          if (end === MISMATCH) {
            fail(
              `element ${index} is malformed: ${describeByte(buffer[scan.at])} does not close the bracket open there, so the element's end cannot be found`,
              index,
              scan.at,
              elementStart,
              scan.at + 1,
            );
            break;
          }
          awaitNext(elementStart, end, undefined, undefined);
          pos = end;
          state = TARGET_AFTER;
          break;
        }
        case TARGET_AFTER: {
          pos = skipWhitespace(buffer, pos, filled);
          if (pos === filled) return false;
          const byte = buffer[pos];
          if ((byte === COMMA || byte === CLOSE_BRACKET) && awaiting && !release()) {
            halted = true;
            return true;
          }
          if (byte === COMMA) {
            pos++;
            state = TARGET_NEXT;
          } else if (byte === CLOSE_BRACKET) {
            closed(false);
          } else if (awaiting) {
            withheld(`expected ',' or ']' after element ${index} of the array at ${target}, found ${foundAt(pos)}`, pos);
          } else {
            fail(`expected ',' or ']' after element ${index} of the array at ${target}, found ${foundAt(pos)}`, index + 1, pos);
          }
          break;
        }
        case END: {
          pos = skipWhitespace(buffer, pos, filled);
          if (pos === filled) return atEnd;
          fail(`expected the end of the file after the JSON document, found ${foundAt(pos)}`, 0, pos);
          break;
        }
        default:
          return true;
      }
    }
  }

  function objectClosed(): void {
    if (!found) {
      const depth = containers.length;
      fail(`path ${target} not found: the object at ${pathName(steps, depth - 1)} has no key ${JSON.stringify(steps[depth - 1]?.key)}`, 0, pos);
      return;
    }
    closed(true);
  }

  /**
   * A fault right after an element: that element is not emitted either. Damage before an
   * element's end can make it look whole when it is not: a truncated `["x"` is closed by the
   * array's own `]` and holds the elements after it (`["x",{"after":2}]`), a stray `"` makes
   * `",{"` a string. Only the byte after an element (`,` or `]`) shows it ended where it seems to.
   */
  function withheld(message: string, at: number): void {
    const note = `; element ${index} is not read, as damage before its end can make it look whole`;
    if (held === undefined) {
      fail(`${message}${note}`, index, at, pendingStart, at + 192);
      return;
    }
    const problem = fail(`${message}${note}`, index, at, 0, at + 192);
    const cut = held.bytes.length > EXCERPT_BYTES;
    fault = { ...problem, raw: `${lenient.decode(held.bytes.subarray(0, EXCERPT_BYTES))}${cut ? "…" : problem.raw}` };
  }

  /**
   * The fast path for a document written one element a line, as most large exports are: takes
   * the element at `pos` (opened by `open`) to end where its line ends, before a `,`, and keeps
   * that only when the text parses. A text that parses is one whole JSON value ending in the
   * bracket that closes `open`, so it ends exactly where the byte scan would have ended it, and
   * the scan of its bytes is saved. Anything else (a line holding more or less than one element,
   * malformed JSON, bytes that are not UTF-8) goes to the scan, which gives its dead letter as
   * before. Where lines do not hold elements, guessing stops.
   */
  function lineElement(open: number): boolean {
    if (newline < pos) {
      const found = buffer.indexOf(NEWLINE, pos);
      newline = found < 0 || found > filled ? filled : found;
    }
    if (newline === filled) return false;
    let end = skipWhitespaceBack(buffer, pos, newline);
    if (buffer[end - 1] === COMMA) end = skipWhitespaceBack(buffer, pos, end - 1);
    if (end - pos < 2 || end - pos > lineMax || buffer[end - 1] !== (open === OPEN_BRACE ? CLOSE_BRACE : CLOSE_BRACKET)) return false;
    const text = textOf(pos, end);
    if (text === undefined) return missedLine();
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      return missedLine();
    }
    lineHits++;
    awaitNext(pos, end, text, value);
    pos = end;
    state = TARGET_AFTER;
    return true;
  }

  function missedLine(): false {
    // A failed parse costs an exception: stop guessing when lines rarely hold one element.
    if (++lineMisses > 16 && lineMisses * 4 > lineHits) byLine = false;
    return false;
  }

  /** The fault for input that ends where more was expected. */
  function truncated(): void {
    const cut = "the file ends";
    if (state === ROOT) {
      fail(base + filled === 0 ? "the file is empty: expected a JSON document" : "the file holds no JSON document, only whitespace", 0, filled);
    } else if (state === ELEMENT) {
      fail(`${cut} inside element ${index} of the array at ${target}: it is truncated`, index, elementStart, elementStart, filled);
    } else if (state === TARGET_AFTER && awaiting) {
      withheld(`${cut} inside the array at ${target} right after element ${index}: it is truncated (expected ',' or ']')`, filled);
    } else if (state === OVERSIZED || state === TARGET_FIRST || state === TARGET_NEXT || state === TARGET_AFTER) {
      fail(`${cut} inside the array at ${target} after element ${index}: it is truncated (expected ',' or ']')`, index + 1, filled);
    } else if (found) {
      const close = containers.at(-1) === OPEN_BRACKET ? "]" : "}";
      fail(`${cut} before the JSON document is closed: it is truncated (expected '${close}')`, 0, filled);
    } else {
      fail(`${cut} before the array at ${target} was found: it is truncated`, 0, filled);
    }
  }

  /** Element `index`, `[start, end)` of the buffer, waits for the byte after it. */
  function awaitNext(start: number, end: number, text: string | undefined, value: unknown): void {
    awaiting = true;
    pendingStart = start;
    pendingEnd = end;
    pendingText = text;
    pendingValue = value;
  }

  /**
   * The byte after the waiting element is `,` or `]`: emits it, at once, so its value is not kept
   * alive while the rest of the chunk is read. Returns false when the consumer has stopped.
   */
  function release(): boolean {
    awaiting = false;
    if (stopped()) return false;
    if (held !== undefined) {
      const element = held;
      held = undefined;
      emitHeld(element);
      file.mark(element.index, element.end);
      return true;
    }
    const text = pendingText;
    const value = pendingValue;
    pendingText = undefined;
    pendingValue = undefined;
    if (pendingEnd - pendingStart > maxRecordBytes) tooLarge(index, pendingStart, pendingEnd, pendingEnd - pendingStart);
    else if (text !== undefined) emitParsed(text, value, index, base + pendingStart);
    else {
      const decoded = textOf(pendingStart, pendingEnd);
      if (decoded !== undefined) emitElement(decoded, index, base + pendingStart);
      else notUtf8(buffer.subarray(pendingStart, pendingEnd), index, base + pendingStart);
    }
    markIndex = index;
    markEnd = base + pendingEnd;
    return true;
  }

  /** The text of `[from, to)` of the buffer, or undefined when it is not UTF-8. */
  function textOf(from: number, to: number): string | undefined {
    if (views.of !== buffer) views = viewsOf(buffer);
    // Between elements there are only ASCII bytes, so one search serves every element it passes.
    if (high < from) high = firstHighByte(views, from, filled);
    return elementText(views, from, high, to);
  }

  /**
   * The chunk is read: marks the last element emitted from it as a place to resume after, and
   * copies the element still waiting for the byte after it out of the buffer.
   */
  function chunkDone(): void {
    if (markIndex >= 0) {
      file.mark(markIndex, markEnd);
      markIndex = -1;
    }
    if (awaiting && held === undefined) {
      held = { bytes: buffer.slice(pendingStart, pendingEnd), index, offset: base + pendingStart, end: base + pendingEnd, text: pendingText, value: pendingValue };
      pendingText = undefined;
      pendingValue = undefined;
    }
    high = -1;
    newline = -1;
  }

  function emitHeld(element: Held): void {
    const size = element.bytes.length;
    if (size > maxRecordBytes) {
      const raw = `${lenient.decode(element.bytes.subarray(0, EXCERPT_BYTES))}…`;
      const error = `element ${element.index} has ${size} bytes, more than maxRecordBytes (${maxRecordBytes})`;
      sendToDeadLetter(flow, "parse", error, undefined, input.at(element.index, raw, element.offset));
      return;
    }
    if (element.text !== undefined) emitParsed(element.text, element.value, element.index, element.offset);
    else emitBytes(element.bytes, element.index, element.offset);
  }

  function emitBytes(bytes: Uint8Array, n: number, offset: number): void {
    const held = viewsOf(bytes);
    const text = elementText(held, 0, firstHighByte(held, 0, bytes.length), bytes.length);
    if (text !== undefined) emitElement(text, n, offset);
    else notUtf8(bytes, n, offset);
  }

  function notUtf8(bytes: Uint8Array, n: number, offset: number): void {
    sendToDeadLetter(flow, "parse", "element is not valid UTF-8", undefined, input.at(n, lenient.decode(bytes), offset), { rawBase64: Buffer.from(bytes).toString("base64") });
  }

  function emitElement(text: string, n: number, offset: number): void {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (error) {
      sendToDeadLetter(flow, "parse", malformedJson(text, error, (at) => `element ${n}, character ${at + 1}`), undefined, input.at(n, text, offset));
      return;
    }
    emitParsed(text, value, n, offset);
  }

  /** Emits element `n`, parsed from `text`, unless it holds a number a float cannot hold or nests too deep. */
  function emitParsed(text: string, value: unknown, n: number, offset: number): void {
    const position = input.at(n, text, offset);
    const loss = numberLoss(text, value);
    if (loss !== undefined) {
      const at = offset + Buffer.byteLength(text.slice(0, loss.index));
      sendToDeadLetter(flow, "parse", describeNumberLoss(loss, `element ${n}, byte ${at}`), undefined, position);
      return;
    }
    emit(stamp(value, position));
  }

  /** Dead-letters element `n`, whose first bytes are `[start, end)` of the buffer. */
  function tooLarge(n: number, start: number, end: number, size?: number): void {
    const raw = excerpt(start, end);
    const position = input.at(n, end === filled && !raw.endsWith("…") ? `${raw}…` : raw, base + start);
    const error = size === undefined ? `element ${n} is longer than maxRecordBytes (${maxRecordBytes} bytes)` : `element ${n} has ${size} bytes, more than maxRecordBytes (${maxRecordBytes})`;
    sendToDeadLetter(flow, "parse", error, undefined, position);
  }

  /** Sends the structural fault to the dead letter: the last record of this file. */
  function report(problem: Fault): void {
    if (stopped()) return;
    sendToDeadLetter(flow, "parse", problem.message, undefined, input.at(problem.line, problem.raw, problem.offset));
  }

  for (;;) {
    if (!atEnd) {
      const n = await file.readAt(buffer, filled, buffer.length - filled, base + filled);
      if (n === 0) atEnd = true;
      filled += n;
    }
    if (base === 0 && pos === 0 && state === ROOT) {
      // A byte order mark needs three bytes to be recognised.
      if (filled < 3 && !atEnd) continue;
      if (buffer[0] === 0xef && buffer[1] === 0xbb && buffer[2] === 0xbf) pos = 3;
    }
    const done = step();
    if (halted) return;
    chunkDone();
    if (!done && atEnd) truncated();
    if (fault) return report(fault);
    if (done) return;
    if (!(await file.pause())) return;

    // Keep what is still needed: the element or key being scanned, else nothing before `pos`.
    const keep = state === ELEMENT ? elementStart : state === OBJ_KEY_SCAN ? keyStart : pos;
    if (keep > 0) {
      buffer.copyWithin(0, keep, filled);
      filled -= keep;
      base += keep;
      pos -= keep;
      scan.at -= keep;
      check.at -= keep;
      elementStart -= keep;
      keyStart -= keep;
      // After an element larger than a chunk, give the memory back.
      if (buffer.length > chunkBytes && filled <= chunkBytes / 2) buffer = resized(buffer, chunkBytes, filled);
    } else if (filled === buffer.length) {
      // The buffer holds one unfinished element (or key) and nothing else.
      if (buffer.length <= maxRecordBytes) {
        buffer = resized(buffer, Math.min(buffer.length * 2, maxRecordBytes + 1), filled);
      } else if (state === ELEMENT) {
        tooLarge(index, 0, filled);
        // The scan goes on over the next chunks without keeping the element.
        state = OVERSIZED;
        buffer.copyWithin(0, scan.at, filled);
        filled -= scan.at;
        base += scan.at;
        pos = 0;
        scan.at = 0;
        buffer = resized(buffer, chunkBytes, filled);
      } else {
        return report(fail(`a key is longer than maxRecordBytes (${maxRecordBytes} bytes)`, 0, 0, 0, 64));
      }
    }
  }
}

/** The index after the last byte of `buffer[from, to)` that is not JSON whitespace (`from` when there is none). */
function skipWhitespaceBack(buffer: Uint8Array, from: number, to: number): number {
  while (to > from && isWhitespace(buffer[to - 1] as number)) to--;
  return to;
}

/** A buffer of `size` bytes holding the first `filled` bytes of `buffer`. */
function resized(buffer: Uint8Array, size: number, filled: number): Uint8Array {
  if (size === buffer.length) return buffer;
  const next = new Uint8Array(size);
  next.set(buffer.subarray(0, filled));
  return next;
}
