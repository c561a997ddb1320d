/**
 * Splits a byte stream into CSV records (RFC 4180), a chunk at a time, holding at most one chunk
 * (or one record, when a record is longer than a chunk) in memory.
 *
 * The structure of CSV (delimiter, quote, CR, LF) is ASCII, and no byte of a multi-byte UTF-8
 * sequence is ASCII, so records can be found on bytes and each decoded alone. A line without a
 * quote character is one record: decoded, and cut by `String.split` (the fast path). A line with
 * one is decoded and walked character by character; when a quoted field in it holds a line
 * break, the byte grammar ({@link scanRecord}) finds where the record ends and the record is
 * decoded whole. Decoding keeps a record one byte a character when it can ({@link textOf}). A
 * record that is not valid UTF-8 is a bad record; the others are read as usual.
 */
import { firstHighByte, latin1Text, lenient, type ReadBytes, utf8Text, wordsOf } from "../lines.ts";

/** The characters that shape a CSV file. Each is one ASCII character. */
export interface CsvDialect {
  readonly delimiter: string;
  readonly quote: string;
}

/** What the splitter reports. Calls for one chunk happen synchronously, in input order. */
export interface RecordHandlers {
  /**
   * A record. `quoted[i]` is true when field `i` was written in quotes; `quoted` is undefined
   * when no field was. `line` is the physical line where the record begins (from 1); `raw` its
   * text without the line ending. Return `false` to stop reading.
   */
  record(fields: string[], quoted: boolean[] | undefined, line: number, raw: string): boolean | undefined;
  /** A record that cannot be cut into fields: broken quoting, bad UTF-8, too long. */
  bad(line: number, error: string, raw: string, bytes: Uint8Array | undefined): boolean | undefined;
  /**
   * After each chunk: return a promise to pause reading (backpressure), or `false` to stop.
   * `line` is the last line of the last whole record so far, `offset` the input offset where the
   * next record begins: together, a place to resume from. Never called inside a record.
   */
  chunkDone(line: number, offset: number): Promise<boolean> | boolean;
  /**
   * At the end of input, when the last record has no line ending: true leaves it unreported,
   * because the input may still grow (a file being appended to) and the record may be cut short.
   * The last `chunkDone` then gives a resume point before it, where a later read takes it whole.
   * `bytes` are the record's bytes (its first KiB, for a record longer than allowed) and `offset`
   * where it begins in the input. Without this handler the record is a record.
   */
  unfinished?(bytes: Uint8Array, offset: number): Promise<boolean> | boolean;
}

/** Sizes the splitter works with. */
export interface RecordLimits {
  /** Bytes read at a time (default 1 MiB). */
  readonly chunkBytes?: number;
  /** Longest record accepted (default 64 MiB); a longer one becomes a bad record and is skipped. */
  readonly maxRecordBytes?: number | undefined;
}

/** Where the splitter begins when it resumes part-way through an input. */
export interface RecordStart {
  /** Lines before the first one read: numbering continues after it. */
  readonly line: number;
  /** The input offset `read` begins at (0 at the start, where a byte order mark is skipped). */
  readonly offset: number;
}

const LF = 10;
const CR = 13;

// Byte-scanner states: the same grammar as the text parser, used where text cannot be used
// (a record larger than the limit, a chunk that is not UTF-8).
export const FIELD_START = 0;
const UNQUOTED = 1;
const QUOTED = 2;
const QUOTE_IN_QUOTED = 3;

/** A record boundary finder on bytes that can carry its state across chunks. */
export interface ByteScan {
  state: number;
  /** Line feeds seen inside the current record. */
  newlines: number;
}

/**
 * Advances `scan` over `bytes[from, to)`; returns the index just past the line feed that ends
 * the record, or -1 when the record goes on past `to`.
 */
export function scanRecord(bytes: Uint8Array, from: number, to: number, scan: ByteScan, delimiter: number, quote: number): number {
  let state = scan.state;
  for (let i = from; i < to; i++) {
    const c = bytes[i] as number;
    if (state === QUOTED) {
      if (c === quote) state = QUOTE_IN_QUOTED;
      else if (c === LF) scan.newlines++;
      continue;
    }
    if (c === LF) {
      scan.state = FIELD_START;
      return i + 1;
    }
    if (c === delimiter) state = FIELD_START;
    else if (state === FIELD_START) state = c === quote ? QUOTED : UNQUOTED;
    else if (state === QUOTE_IN_QUOTED) state = c === quote ? QUOTED : UNQUOTED;
  }
  scan.state = state;
  return -1;
}

/** The parser's state for one input. */
interface TextParse {
  /** The last line number used. */
  line: number;
  /** Set by a handler returning `false`. */
  halted: boolean;
  readonly delimiter: string;
  readonly quote: string;
  readonly quoteCode: number;
  readonly delimiterCode: number;
  readonly handlers: RecordHandlers;
  /** The chunk being parsed, and the same memory four bytes at a time when it is aligned for that. */
  bytes: Buffer;
  words: Uint32Array | undefined;
  /** The first byte above 0x7F at or after the last record decoded (-1 before one is looked for). */
  high: number;
}

/**
 * Reports the records of `bytes`, which holds whole lines (ends with a line feed) unless `atEnd`.
 * Returns the offset where an unfinished record begins (a quoted field that goes on past the
 * bytes), or `bytes.length` when every record in it was reported.
 *
 * Each record is decoded alone: records and lines are found on bytes (`indexOf`, native), so an
 * ASCII record becomes one-byte text (a chunk decoded at once is two bytes a character as soon
 * as one character in it is not ASCII, and so is every field cut from it, which the checks and
 * the sink's encoder then pay for), and a bad byte only spoils its own record.
 */
function parseChunk(p: TextParse, bytes: Buffer, atEnd: boolean): number {
  const n = bytes.length;
  p.bytes = bytes;
  p.words = wordsOf(bytes);
  p.high = -1;
  const handlers = p.handlers;
  const delimiter = p.delimiter;
  let pos = 0;
  let nextQuote = -1;
  while (pos < n && !p.halted) {
    const newline = bytes.indexOf(LF, pos);
    const lineEnd = newline < 0 ? n : newline;
    // The next quote character is searched once and reused until the parse passes it, so a
    // chunk with no quotes at all costs one search.
    if (nextQuote < pos && nextQuote !== Number.POSITIVE_INFINITY) {
      nextQuote = bytes.indexOf(p.quoteCode, pos);
      if (nextQuote < 0) nextQuote = Number.POSITIVE_INFINITY;
    }
    if (nextQuote > lineEnd) {
      // No quote: the line is the record, and `split` cuts it.
      const stop = lineEnd > pos && bytes[lineEnd - 1] === CR ? lineEnd - 1 : lineEnd;
      const raw = textOf(p, pos, stop);
      if (raw === undefined) notUtf8(p, ++p.line, bytes.subarray(pos, stop));
      else if (handlers.record(raw.split(delimiter), undefined, ++p.line, raw) === false) p.halted = true;
      pos = lineEnd + 1;
      continue;
    }
    const end = quotedRecord(p, bytes, pos, lineEnd < n ? lineEnd + 1 : n, atEnd);
    if (end < 0) return pos;
    pos = end;
  }
  return n;
}

/**
 * Reports the record at `bytes[begin]`, which has a quote character in its first line (ending
 * at `lineEnd`, after its line feed). Returns the offset after the record, or -1 when the bytes
 * end inside a quoted field and more input may follow.
 */
function quotedRecord(p: TextParse, bytes: Buffer, begin: number, lineEnd: number, atEnd: boolean): number {
  const n = bytes.length;
  // Most such records end on their first line: it is decoded and parsed alone, without its
  // line ending, so that the text is the record's raw text too. One that does ends at the
  // text's end.
  const stop = lineEnd > begin && bytes[lineEnd - 1] === LF ? (lineEnd - 1 > begin && bytes[lineEnd - 2] === CR ? lineEnd - 2 : lineEnd - 1) : withoutFinalCr(bytes, begin, lineEnd, atEnd);
  const line = textOf(p, begin, stop);
  if (line !== undefined && parseQuotedRecord(p, line, 0, atEnd && lineEnd === n, true) >= 0) return lineEnd;
  // A quoted field holds a line break (or the line is not UTF-8): the byte grammar finds where
  // the record ends, and the record is decoded whole.
  const scan: ByteScan = { state: FIELD_START, newlines: 0 };
  let end = scanRecord(bytes, begin, n, scan, p.delimiterCode, p.quoteCode);
  if (end < 0) {
    if (!atEnd) return -1;
    end = n;
  }
  const text = textOf(p, begin, withoutFinalCr(bytes, begin, end, atEnd));
  if (text !== undefined) {
    parseQuotedRecord(p, text, 0, true, false);
    return end;
  }
  const last = end > begin && bytes[end - 1] === LF ? (end - 1 > begin && bytes[end - 2] === CR ? end - 2 : end - 1) : withoutFinalCr(bytes, begin, end, atEnd);
  const first = p.line + 1;
  p.line += 1 + scan.newlines;
  notUtf8(p, first, bytes.subarray(begin, last));
  return end;
}

/**
 * `end`, or `end - 1` when the input ends there with a carriage return: a CR at the very end of
 * the input ends the last record as CRLF would (a file cut after its CR, or ending in a lone CR),
 * whether the record holds a quote or not. Elsewhere a lone CR is data.
 */
function withoutFinalCr(bytes: Uint8Array, begin: number, end: number, atEnd: boolean): number {
  return atEnd && end === bytes.length && end > begin && bytes[end - 1] === CR ? end - 1 : end;
}

/**
 * The text of the chunk's bytes `[from, to)` when they are UTF-8, else `undefined`. An ASCII
 * record (found by one scan of the chunk for bytes above 0x7F, not one per record) is sliced as
 * Latin-1, without a decoder; one whose characters are all U+00FF or below (é, ü, ß) is kept one
 * byte a character by {@link latin1Text}; only the others go through the UTF-8 decoder and become
 * two-byte text. One-byte text is cheaper for everything after: the cell conversions, the checks,
 * the sink's UTF-8 writes and its well-formedness test.
 */
function textOf(p: TextParse, from: number, to: number): string | undefined {
  const bytes = p.bytes;
  if (p.high < from) p.high = firstHighByte(bytes, p.words, from, bytes.length);
  if (p.high >= to) return (bytes as unknown as Latin1Sliceable).latin1Slice(from, to);
  return latin1Text(bytes, from, p.high, to) ?? utf8Text(bytes, from, to);
}

// Buffer#latin1Slice skips toString()'s argument parsing.
interface Latin1Sliceable {
  latin1Slice(start: number, end: number): string;
}

/** Reports `body`, the bytes of the record at `line` without its line ending, as not UTF-8. */
function notUtf8(p: TextParse, line: number, body: Uint8Array): void {
  // A copy as a plain Uint8Array (Buffer#slice would share the chunk's memory).
  if (p.handlers.bad(line, "record is not valid UTF-8", lenient.decode(body), new Uint8Array(body)) === false) p.halted = true;
}

/**
 * Parses one record that has a quote character in its first line, character by character.
 * Returns the index after its line ending, or -1 when the text ends inside a quoted field and
 * more input may follow.
 */
function parseQuotedRecord(p: TextParse, text: string, begin: number, atEnd: boolean, oneLine: boolean): number {
  const n = text.length;
  const q = p.quoteCode;
  const d = p.delimiterCode;
  const fields: string[] = [];
  const quoted: boolean[] = [];
  let problem: string | undefined;
  let i = begin;
  let end = -1;
  let stop = -1;
  for (;;) {
    if (i < n && text.charCodeAt(i) === q) {
      // A quoted field: runs to the quote that is not doubled. Most hold no doubled quote and
      // are one slice of the text, without a concatenation.
      let from = i + 1;
      let at = from;
      let value: string | undefined;
      for (;;) {
        while (at < n && text.charCodeAt(at) !== q) at++;
        if (at >= n || text.charCodeAt(at + 1) !== q) break;
        value = value === undefined ? text.slice(from, at + 1) : value + text.slice(from, at + 1);
        at += 2;
        from = at;
      }
      if (at >= n) {
        if (!atEnd) return -1;
        // The input's last line ending belongs to no line of the record.
        stop = n > begin && text.charCodeAt(n - 1) === LF ? (n - 1 > begin && text.charCodeAt(n - 2) === CR ? n - 2 : n - 1) : n;
        const lines = oneLine ? 1 : countNewlines(text, begin, stop) + 1;
        problem = `unterminated quoted field ${fields.length + 1}: the record beginning on line ${p.line + 1} runs to the end of the input${lines > 1 ? ` (${lines} lines)` : ""}; the input looks truncated`;
        end = n;
        break;
      }
      fields.push(value === undefined ? text.slice(from, at) : value + text.slice(from, at));
      quoted.push(true);
      i = at + 1;
      let c = i < n ? text.charCodeAt(i) : -1;
      if (c === CR && text.charCodeAt(i + 1) === LF) c = text.charCodeAt(++i);
      if (c !== d && c !== LF && c !== -1) {
        // Text between a closing quote and the delimiter: the quoting is broken. The rest of
        // the field is read as unquoted text, so the record ends where a byte scan says it does.
        problem ??= `text after the closing quote of field ${fields.length}`;
        while (i < n) {
          const ch = text.charCodeAt(i);
          if (ch === d || ch === LF) break;
          i++;
        }
      }
    } else {
      // An unquoted field: a quote character inside it is an ordinary character.
      let j = i;
      while (j < n) {
        const ch = text.charCodeAt(j);
        if (ch === d || ch === LF) break;
        j++;
      }
      const last = j < n && text.charCodeAt(j) === LF && j > i && text.charCodeAt(j - 1) === CR ? j - 1 : j;
      fields.push(text.slice(i, last));
      quoted.push(false);
      i = j;
    }
    if (i >= n) {
      stop = n;
      end = n;
      break;
    }
    if (text.charCodeAt(i) === d) {
      i++;
      continue;
    }
    // A line feed ends the record.
    stop = i > begin && text.charCodeAt(i - 1) === CR ? i - 1 : i;
    end = i + 1;
    break;
  }
  const line = p.line + 1;
  // A first line holds no line feed before its end.
  if (!oneLine) p.line += countNewlines(text, begin, stop);
  p.line++;
  const raw = text.slice(begin, stop);
  const go = problem === undefined ? p.handlers.record(fields, quoted, line, raw) : p.handlers.bad(line, problem, raw, undefined);
  if (go === false) p.halted = true;
  return end;
}

function countNewlines(text: string, from: number, to: number): number {
  let count = 0;
  for (let at = text.indexOf("\n", from); at >= 0 && at < to; at = text.indexOf("\n", at + 1)) count++;
  return count;
}

/**
 * Reads all of `read` and reports its records. A UTF-8 byte order mark at the start of the input
 * is skipped; `\r\n` and `\n` end a record outside quotes and are kept inside them; a last record
 * without a line ending is still a record, unless `handlers.unfinished` says to leave it for a
 * later read; an empty input has none.
 */
export async function splitRecords(
  read: ReadBytes,
  dialect: CsvDialect,
  handlers: RecordHandlers,
  limits: RecordLimits = {},
  begin: RecordStart = { line: 0, offset: 0 },
): Promise<void> {
  const maxRecordBytes = Math.max(limits.maxRecordBytes ?? 64 * 1024 * 1024, 1);
  // At least 4 bytes: the byte order mark check needs 3 before it can decide.
  let buffer = new Uint8Array(Math.max(limits.chunkBytes ?? 1024 * 1024, 4));
  let filled = 0;
  let first = begin.offset === 0;
  // Input offset of buffer[0], so a chunk's end can be named as a place to resume from.
  let base = begin.offset;
  const p: TextParse = {
    line: begin.line,
    halted: false,
    delimiter: dialect.delimiter,
    quote: dialect.quote,
    delimiterCode: dialect.delimiter.charCodeAt(0),
    quoteCode: dialect.quote.charCodeAt(0),
    handlers,
    bytes: Buffer.alloc(0),
    words: undefined,
    high: -1,
  };
  // While skipping an overlong record: its first bytes (for the dead letter) and its scan state.
  let skipping: { head: Uint8Array; line: number; from: number; scan: ByteScan; last: number } | undefined;
  const parse = (from: number, to: number, atEnd: boolean): number =>
    from + parseChunk(p, Buffer.from(buffer.buffer, buffer.byteOffset + from, to - from), atEnd);

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
      const end = scanRecord(buffer, 0, filled, skipping.scan, p.delimiterCode, p.quoteCode);
      if (filled > 0) skipping.last = buffer[filled - 1] as number;
      if (end < 0 && !atEnd) {
        base += filled;
        filled = 0;
        continue;
      }
      if (end < 0 && (await leaveLast(handlers, skipping.head, skipping.from))) {
        // An overlong record still being written: a later read decides on it whole.
        await handlers.chunkDone(p.line, skipping.from);
        return;
      }
      const unterminated = end < 0 && skipping.scan.state === QUOTED;
      // At the end of the input, its last line ending belongs to no line of the record.
      const lines = skipping.scan.newlines - (unterminated && skipping.last === LF ? 1 : 0);
      p.line = skipping.line + lines;
      const error = unterminated
        ? `unterminated quoted field: the record beginning on line ${skipping.line} runs to the end of the input (${lines + 1} lines, over ${maxRecordBytes} bytes); the input looks truncated`
        : `record is longer than ${maxRecordBytes} bytes`;
      if (handlers.bad(skipping.line, error, `${lenient.decode(skipping.head)}…`, undefined) === false) return;
      skipping = undefined;
      start = end < 0 ? filled : end;
    }

    // Whole lines only: a chunk ends after its last line feed (or at the end of the input). A
    // last record without a line ending, which may be left for a later read, is parsed apart:
    // where it begins is known only once the whole lines before it are (a quoted field may hold
    // line feeds).
    const open = atEnd && handlers.unfinished !== undefined && filled > start && buffer[filled - 1] !== LF;
    const cut = atEnd && !open ? filled : buffer.lastIndexOf(LF, filled - 1) + 1;
    if (cut > start) {
      start = parse(start, cut, atEnd && !open);
      if (p.halted) return;
    }
    if (open) {
      if (await leaveLast(handlers, buffer.subarray(start, filled), base + start)) {
        await handlers.chunkDone(p.line, base + start);
        return;
      }
      parse(start, filled, true);
      if (p.halted) return;
    }

    if (atEnd) {
      await handlers.chunkDone(p.line, base + filled);
      return;
    }
    if (start === 0 && filled === buffer.length) {
      // Not one whole record in a full buffer: a record longer than the buffer.
      if (buffer.length >= maxRecordBytes) {
        const scan: ByteScan = { state: FIELD_START, newlines: 0 };
        scanRecord(buffer, 0, filled, scan, p.delimiterCode, p.quoteCode);
        // The first line of the record is counted by `line`, the ones inside it by the scan.
        skipping = { head: buffer.slice(0, 1024), line: p.line + 1, from: base, scan, last: buffer[filled - 1] as number };
        base += filled;
        filled = 0;
        continue;
      }
      const bigger = new Uint8Array(Math.min(buffer.length * 2, maxRecordBytes));
      bigger.set(buffer);
      buffer = bigger;
      continue;
    }
    buffer.copyWithin(0, start, filled);
    filled -= start;
    base += start;
    const next = handlers.chunkDone(p.line, base);
    if ((typeof next === "boolean" ? next : await next) === false) return;
  }
}

/** Whether to leave the last record, without a line ending, unreported (see {@link RecordHandlers.unfinished}). */
async function leaveLast(handlers: RecordHandlers, bytes: Uint8Array, offset: number): Promise<boolean> {
  if (!handlers.unfinished) return false;
  const leave = handlers.unfinished(bytes, offset);
  return typeof leave === "boolean" ? leave : await leave;
}
