/**
 * Splits a byte stream into lines, a chunk at a time, without ever holding more than one chunk
 * (or one line, when a line is longer than a chunk) in memory.
 *
 * Lines are split on bytes, not on decoded text, so a bad byte sequence only spoils its own line.
 * Each line becomes its own string: an ASCII line (one scan per chunk finds the bytes above
 * 0x7F) as one-byte text, a line of characters up to U+00FF also as one-byte text
 * ({@link latin1Text}), any other through {@link utf8Text}. Decoding a chunk
 * at once and cutting the text was slower: one non-ASCII character anywhere makes the whole text
 * two bytes a character, and every line cut from it too, which `JSON.parse` and the heap then pay
 * for (reading and parsing the 1M clickstream, where about a quarter of the lines hold a
 * non-ASCII character).
 */

/** Reads up to `length` bytes into `buffer` at `offset`; resolves 0 at the end of input. */
export type ReadBytes = (buffer: Uint8Array, offset: number, length: number) => Promise<number>;

/** What the splitter reports. Calls for one chunk happen synchronously, in line order. */
export interface LineHandlers {
  /** A line of valid UTF-8 without its line ending. `line` counts from 1. */
  line(text: string, line: number): void;
  /** A line that is not valid UTF-8, or longer than allowed. */
  bad(line: number, error: string, text: string, bytes: Uint8Array | undefined): void;
  /**
   * After each chunk: return a promise to pause reading (backpressure), or `false` to stop.
   * `line` is the last line reported so far and `consumed` the bytes read up to the end of it,
   * counted from where reading began: together, a place to resume from.
   */
  chunkDone(bytesRead: number, line: number, consumed: number): Promise<boolean> | boolean;
  /**
   * At the end of input, when the last line has no newline: true leaves that line unreported,
   * because the input may still grow (a file being appended to) and the line may be cut short.
   * The last `chunkDone` then gives a resume point before it, where a later read takes it whole.
   * `bytes` are the line's bytes (its first KiB, for a line longer than allowed) and `offset`
   * where it begins, counted from where reading began. Without this handler the line is a line.
   */
  unfinished?(bytes: Uint8Array, offset: number): Promise<boolean> | boolean;
}

export interface LineOptions {
  /** Bytes read at a time (default 1 MiB). */
  readonly chunkBytes?: number;
  /** Longest line accepted (default 128 MiB); a longer one becomes a bad line. */
  readonly maxLineBytes?: number;
}

/** Where the splitter begins, when it resumes part-way through an input. */
export interface LineStart {
  /** Lines before the first one read (numbering continues after it). */
  readonly line: number;
  /** True when reading begins mid-input: there is no byte order mark to look for. */
  readonly midway: boolean;
}

const NEWLINE = 10;
const CR = 13;
/**
 * The UTF-8 decoders every byte-level source shares: `fatal` throws on bytes that are not UTF-8
 * (to find the bad record), `lenient` replaces them (for the dead letter's readable text). Both
 * keep a byte order mark as text: sources skip it themselves, at the start of an input only.
 */
export const fatal = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
export const lenient = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });

/**
 * The text of `bytes[from, to)` when it is UTF-8, else `undefined`. Buffer's own decoder is
 * several times faster than `fatal` (0.4 against 3.4 µs for a 340-byte line of mixed text), but
 * it turns what is not UTF-8 into U+FFFD: a text without one was valid, one with one (which may
 * also be a real U+FFFD) is decided by `fatal`.
 */
export function utf8Text(bytes: Uint8Array, from: number, to: number): string | undefined {
  const view = (bytes instanceof Buffer ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)) as unknown as Sliceable;
  const text = view.utf8Slice(from, to);
  if (!text.includes("\uFFFD")) return text;
  try {
    return fatal.decode(bytes.subarray(from, to));
  } catch {
    return undefined;
  }
}

/** Longest line {@link latin1Text} takes; a longer one goes to {@link utf8Text}. */
const LATIN1_MAX = 64 * 1024;
let latin1Scratch = Buffer.allocUnsafe(1024);

/**
 * The text of the UTF-8 `bytes[from, to)` when every character in it is U+00FF or below
 * (ASCII with accented Latin letters: `é`, `ü`, `ß`), else `undefined`; `high` is the first byte
 * above 0x7F. Such text is kept one byte a character, as ASCII is, where a decoder gives two
 * bytes a character: `JSON.parse`, string comparisons and the UTF-8 writes of the column
 * builders all run faster on it. A byte sequence that is not one of these characters in valid
 * UTF-8 (any other lead byte, a missing continuation byte) gives `undefined`, and the caller's
 * decoder decides, so nothing that is not UTF-8 gets through here.
 */
export function latin1Text(bytes: Buffer, from: number, high: number, to: number): string | undefined {
  if (to - from > LATIN1_MAX) return undefined;
  if (latin1Scratch.length < to - from) latin1Scratch = Buffer.allocUnsafe(LATIN1_MAX);
  const out = latin1Scratch;
  // A `high` before `from` (a scan that began in an earlier line) would write that line's bytes too.
  if (high < from) high = from;
  let o = high - from;
  if (o > 0) bytes.copy(out, 0, from, high);
  for (let i = high; i < to; i++) {
    const c = bytes[i] as number;
    if (c < 0x80) {
      out[o++] = c;
      continue;
    }
    // U+0080-U+00FF are 0xC2 or 0xC3 followed by one continuation byte (10xxxxxx).
    if ((c !== 0xc2 && c !== 0xc3) || i + 1 >= to) return undefined;
    const next = bytes[++i] as number;
    if ((next & 0xc0) !== 0x80) return undefined;
    out[o++] = ((c & 0x03) << 6) | (next & 0x3f);
  }
  return (out as unknown as Sliceable).latin1Slice(0, o);
}

// Buffer#utf8Slice and #latin1Slice skip toString()'s argument parsing.
interface Sliceable {
  utf8Slice(start: number, end: number): string;
  latin1Slice(start: number, end: number): string;
}

/**
 * Reads all of `read` and reports its lines. A UTF-8 byte order mark at the start is skipped;
 * `\r\n` and `\n` both end a line; a last line without a newline is still a line, unless
 * `handlers.unfinished` says to leave it for a later read.
 */
export async function splitLines(
  read: ReadBytes,
  handlers: LineHandlers,
  options: LineOptions = {},
  begin: LineStart = { line: 0, midway: false },
): Promise<void> {
  const maxLineBytes = options.maxLineBytes ?? 128 * 1024 * 1024;
  // At least 4 bytes: the byte order mark check needs 3 before it can decide.
  let buffer = new Uint8Array(Math.max(options.chunkBytes ?? 1024 * 1024, 4));
  let filled = 0;
  let lineNumber = begin.line;
  let first = !begin.midway;
  // Bytes of input before buffer[0], so a chunk's end can be named as an input offset.
  let base = 0;
  // While skipping an overlong line: its first bytes, kept for the dead letter.
  let skipping: Uint8Array | undefined;
  let skippingFrom = 0;

  for (;;) {
    const n = await read(buffer, filled, buffer.length - filled);
    const atEnd = n === 0;
    filled += n;
    let start = 0;
    if (first) {
      if (filled < 3 && !atEnd) continue;
      if (buffer[0] === 0xef && buffer[1] === 0xbb && buffer[2] === 0xbf) start = 3;
      first = false;
    }

    if (skipping) {
      const newline = buffer.subarray(0, filled).indexOf(NEWLINE);
      if (newline < 0 && atEnd && (await leaveLast(handlers, skipping, skippingFrom))) {
        // An overlong line still being written: a later read decides on it whole.
        await handlers.chunkDone(n, lineNumber, skippingFrom);
        return;
      }
      if (newline < 0 && !atEnd) {
        base += filled;
        filled = 0;
        // Still inside the overlong line: a resume point is where it began.
        const next = handlers.chunkDone(n, lineNumber, skippingFrom);
        if ((typeof next === "boolean" ? next : await next) === false) return;
        continue;
      }
      lineNumber++;
      handlers.bad(lineNumber, `line is longer than ${maxLineBytes} bytes`, `${lenient.decode(skipping)}…`, undefined);
      skipping = undefined;
      start = newline < 0 ? filled : newline + 1;
    }

    // At the end, a final newline ends the last line; it does not start another one. A last
    // line without one is a line too, unless it is left for a later read.
    const throughEnd = atEnd && !(filled > start && buffer[filled - 1] !== NEWLINE && (await leaveLast(handlers, buffer, base, start, filled)));
    const last = throughEnd ? (filled > start && buffer[filled - 1] === NEWLINE ? filled - 1 : filled) : buffer.lastIndexOf(NEWLINE, filled - 1);
    if (throughEnd ? filled > start : last >= start) {
      lineNumber = emitLines(buffer, start, last, lineNumber, handlers, maxLineBytes);
      start = last + 1;
    } else if (!atEnd && start === 0 && filled === buffer.length) {
      // No newline in a full buffer: one line longer than the buffer. The buffer may hold the
      // longest line allowed plus its CRLF.
      if (buffer.length >= maxLineBytes + 2) {
        skipping = buffer.slice(0, 1024);
        skippingFrom = base;
        base += filled;
        filled = 0;
        continue;
      }
      const bigger = new Uint8Array(Math.min(buffer.length * 2, maxLineBytes + 2));
      bigger.set(buffer);
      buffer = bigger;
      continue;
    }
    if (atEnd) {
      await handlers.chunkDone(n, lineNumber, base + (throughEnd ? filled : start));
      return;
    }
    const consumed = Math.min(start, filled);
    buffer.copyWithin(0, consumed, filled);
    filled -= consumed;
    base += consumed;
    const next = handlers.chunkDone(n, lineNumber, base);
    if ((typeof next === "boolean" ? next : await next) === false) return;
  }
}

/**
 * Whether to leave the last line, without a newline, unreported (see {@link LineHandlers.unfinished}):
 * the one in `buffer[from, to)` (at input offset `base + from`), or the overlong line kept in `buffer`.
 */
async function leaveLast(handlers: LineHandlers, buffer: Uint8Array, base: number, from = 0, to = buffer.length): Promise<boolean> {
  if (!handlers.unfinished) return false;
  // Where the last newline is, the line begins after it.
  const newline = buffer.lastIndexOf(NEWLINE, to - 1);
  const begin = newline >= from ? newline + 1 : from;
  const leave = handlers.unfinished(buffer.subarray(begin, to), base + begin);
  return typeof leave === "boolean" ? leave : await leave;
}

/** Reports the lines in `buffer[start, end)`; returns the last line number used. */
function emitLines(
  buffer: Uint8Array,
  start: number,
  end: number,
  lineNumber: number,
  handlers: LineHandlers,
  maxLineBytes: number,
): number {
  const bytes = Buffer.from(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  const words = wordsOf(buffer);
  // Where the next byte above 0x7F is: a line that ends before it is ASCII. One scan of the
  // chunk instead of a view and an isAscii call per line (a third of the splitting's time).
  let high = firstHighByte(buffer, words, start, end);
  let from = start;
  for (;;) {
    const newline = buffer.indexOf(NEWLINE, from);
    const stop = newline < 0 || newline > end ? end : newline;
    const to = stop > from && buffer[stop - 1] === CR ? stop - 1 : stop;
    lineNumber++;
    if (to - from > maxLineBytes) handlers.bad(lineNumber, `line is longer than ${maxLineBytes} bytes`, `${preview(buffer.subarray(from, to))}…`, undefined);
    else {
      const decoded = spanText(bytes, from, high, to);
      if (decoded === undefined) {
        const line = buffer.subarray(from, to);
        handlers.bad(lineNumber, "line is not valid UTF-8", lenient.decode(line), line.slice());
      } else handlers.line(decoded, lineNumber);
    }
    if (stop >= end) return lineNumber;
    from = stop + 1;
    if (high < from) high = firstHighByte(buffer, words, from, end);
  }
}

/**
 * The text of the UTF-8 `bytes[from, to)`, or `undefined` when they are not UTF-8; `high` is
 * the first byte above 0x7F at or after `from` ({@link firstHighByte}). ASCII is copied by the
 * decoder as one-byte text (twice as fast as `Buffer#latin1Slice` for a 340-byte line, in Bun
 * 1.4.4); characters up to U+00FF are kept one-byte text too ({@link latin1Text}); the rest go
 * through {@link utf8Text}. The same text the fatal decoder gives, for lines and JSON elements.
 */
export function spanText(bytes: Buffer, from: number, high: number, to: number): string | undefined {
  if (high >= to) return fatal.decode(bytes.subarray(from, to));
  return latin1Text(bytes, from, high, to) ?? utf8Text(bytes, from, to);
}

/** `bytes` four at a time, for {@link firstHighByte}, when their memory is aligned for that. */
export function wordsOf(bytes: Uint8Array): Uint32Array | undefined {
  return bytes.byteOffset % 4 === 0 ? new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >> 2) : undefined;
}

/**
 * The index of the first byte above 0x7F in `bytes[from, end)`, or `end`. `words` views the
 * same memory four bytes at a time, when it is aligned for that.
 */
export function firstHighByte(bytes: Uint8Array, words: Uint32Array | undefined, from: number, end: number): number {
  let i = from;
  if (words) {
    while (i < end && (i & 3) !== 0) {
      if ((bytes[i] as number) > 0x7f) return i;
      i++;
    }
    // Ran out before a word boundary: `i >> 2 << 2` would step back before `from`.
    if (i >= end) return end;
    const lastWord = end >> 2;
    let k = i >> 2;
    while (k < lastWord && ((words[k] as number) & 0x80808080) === 0) k++;
    i = k << 2;
  }
  while (i < end && (bytes[i] as number) <= 0x7f) i++;
  return i;
}

/** The start of an overlong line for its dead letter: its first 1,024 characters, or bytes when it is not UTF-8. */
function preview(line: Uint8Array): string {
  try {
    return fatal.decode(line).slice(0, 1024);
  } catch {
    return lenient.decode(line.subarray(0, 1024));
  }
}
