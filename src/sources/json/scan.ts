/**
 * The byte scanner behind `fromJson`: finds where a JSON value ends without parsing it.
 *
 * Only structure matters here: string quotes and escapes (so a `]` inside a string is text) and
 * brackets (so the end of an object is found at its matching `}`). Values themselves are parsed
 * by `JSON.parse`, natively, once their extent is known. Scanning bytes, not decoded text, keeps
 * byte offsets exact and lets a value with invalid UTF-8 spoil only itself.
 *
 * The scan is resumable: when the buffer ends inside a value it returns {@link NEED_MORE} and
 * its state says where to continue once more bytes are in the buffer, so a value larger than a
 * chunk is never scanned twice.
 */

/** Bytes of JSON's structure; all ASCII, so a multi-byte UTF-8 character never contains one. */
export const QUOTE = 0x22;
export const BACKSLASH = 0x5c;
export const COMMA = 0x2c;
export const COLON = 0x3a;
export const OPEN_BRACE = 0x7b;
export const CLOSE_BRACE = 0x7d;
export const OPEN_BRACKET = 0x5b;
export const CLOSE_BRACKET = 0x5d;

/** {@link scanValue} needs more bytes: the buffer ended inside the value. */
export const NEED_MORE = -1;
/** {@link scanValue} met a closing bracket that does not match the open one (`{"a":[1}`). */
export const MISMATCH = -2;

const NOT_STARTED = 0;
const IN_STRING = 1;
const IN_COMPOSITE = 2;
const IN_SCALAR = 3;

/** Where a resumable scan of one value stands. Reset it with {@link startScan} for each value. */
export interface ValueScan {
  /** Open brackets, innermost last. */
  stack: Uint8Array;
  depth: number;
  mode: number;
  /** Where to continue, after {@link NEED_MORE}; where the fault is, after {@link MISMATCH}. */
  at: number;
}

/** A scan state, ready for a value. */
export function newScan(): ValueScan {
  return { stack: new Uint8Array(64), depth: 0, mode: NOT_STARTED, at: 0 };
}

/** Prepares `scan` for a value beginning at `at`. */
export function startScan(scan: ValueScan, at: number): void {
  scan.depth = 0;
  scan.mode = NOT_STARTED;
  scan.at = at;
}

/** True for the four whitespace bytes JSON allows between tokens. */
export function isWhitespace(byte: number): boolean {
  return byte === 0x20 || byte === 0x0a || byte === 0x0d || byte === 0x09;
}

/** The first index at or after `i` that is not JSON whitespace (`end` when there is none). */
export function skipWhitespace(buffer: Uint8Array, i: number, end: number): number {
  while (i < end) {
    const byte = buffer[i] as number;
    if (byte !== 0x20 && byte !== 0x0a && byte !== 0x0d && byte !== 0x09) return i;
    i++;
  }
  return end;
}

/**
 * Continues scanning the value `scan` describes, from `scan.at`, over `buffer[.., end)`. Returns
 * the index just after the value, {@link NEED_MORE}, or {@link MISMATCH}.
 *
 * A string ends at its closing quote, an object or array at its matching bracket, and anything
 * else (a number, `true`, a stray word) at the next whitespace, `,`, `]` or `}`: a scalar is not
 * checked here, `JSON.parse` decides whether it is JSON.
 */
export function scanValue(buffer: Uint8Array, end: number, scan: ValueScan): number {
  let i = scan.at;
  let mode = scan.mode;
  let depth = scan.depth;
  let stack = scan.stack;
  let result = NEED_MORE;

  if (mode === NOT_STARTED) {
    if (i >= end) return NEED_MORE;
    const first = buffer[i] as number;
    if (first === QUOTE) {
      mode = IN_STRING;
      i++;
    } else if (first === OPEN_BRACE || first === OPEN_BRACKET) {
      mode = IN_COMPOSITE;
      stack[0] = first;
      depth = 1;
      i++;
    } else {
      mode = IN_SCALAR;
    }
  }

  scanning: for (;;) {
    if (mode === IN_STRING) {
      // The hot loop: most bytes of a record are inside strings.
      for (;;) {
        if (i >= end) break scanning;
        const byte = buffer[i] as number;
        if (byte === QUOTE) break;
        if (byte === BACKSLASH) {
          // An escape is taken whole, so `\"` never ends the string; wait for its second byte.
          if (i + 1 >= end) break scanning;
          i += 2;
          continue;
        }
        i++;
      }
      i++;
      if (depth === 0) {
        result = i;
        break;
      }
      mode = IN_COMPOSITE;
    }
    if (mode === IN_COMPOSITE) {
      for (;;) {
        if (i >= end) break scanning;
        const byte = buffer[i] as number;
        if (byte === QUOTE) {
          mode = IN_STRING;
          i++;
          continue scanning;
        }
        if (byte === OPEN_BRACE || byte === OPEN_BRACKET) {
          if (depth === stack.length) {
            const deeper = new Uint8Array(stack.length * 2);
            deeper.set(stack);
            stack = deeper;
            scan.stack = stack;
          }
          stack[depth++] = byte;
        } else if (byte === CLOSE_BRACE || byte === CLOSE_BRACKET) {
          const open = stack[--depth];
          if ((byte === CLOSE_BRACE ? OPEN_BRACE : OPEN_BRACKET) !== open) {
            scan.at = i;
            return MISMATCH;
          }
          if (depth === 0) {
            result = i + 1;
            break scanning;
          }
        }
        i++;
      }
    }
    // A scalar.
    for (;;) {
      if (i >= end) break scanning;
      const byte = buffer[i] as number;
      if (byte === COMMA || byte === CLOSE_BRACKET || byte === CLOSE_BRACE || isWhitespace(byte)) {
        result = i;
        break scanning;
      }
      i++;
    }
  }

  scan.at = i;
  scan.mode = mode;
  scan.depth = depth;
  return result;
}

/** What kind of JSON value begins with `byte`, for messages ("found a string"). */
export function kindOf(byte: number | undefined): string {
  if (byte === undefined) return "the end of the file";
  if (byte === OPEN_BRACE) return "an object";
  if (byte === OPEN_BRACKET) return "an array";
  if (byte === QUOTE) return "a string";
  if (byte === 0x2d || (byte >= 0x30 && byte <= 0x39)) return "a number";
  if (byte === 0x74 || byte === 0x66) return "a boolean";
  if (byte === 0x6e) return "null";
  return describeByte(byte);
}

/** A byte as a message shows it: `'x'` when printable ASCII, `byte 0xff` otherwise. */
export function describeByte(byte: number | undefined): string {
  if (byte === undefined) return "the end of the file";
  if (byte > 0x20 && byte < 0x7f) return `'${String.fromCharCode(byte)}'`;
  return `byte 0x${byte.toString(16).padStart(2, "0")}`;
}
