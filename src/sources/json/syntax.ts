/**
 * A resumable check of JSON syntax over bytes, for the values `fromJson` skips (members off the
 * path) and for keys: it finds where a value ends, as `scanValue` does, and also whether it is
 * JSON, without parsing or keeping it.
 *
 * `scanValue` only balances brackets and quotes, which is enough for elements of the array
 * because `JSON.parse` reads each of them afterwards. A skipped value is never parsed, so damage
 * inside it (`{"x":1,,}`, a stray quote that turns the rest of the document inside out) would go
 * unnoticed, and with it the doubt it casts on everything after it. This check is slower than the
 * bracket scan (every byte goes through the state machine) but skipped values are usually small
 * (the `@odata.context` beside the `value` array); memory stays one stack of open brackets.
 *
 * UTF-8 inside strings is not checked: a skipped string is never decoded.
 */
import { CLOSE_BRACE, CLOSE_BRACKET, COLON, COMMA, describeByte, NEED_MORE, OPEN_BRACE, OPEN_BRACKET, QUOTE, BACKSLASH } from "./scan.ts";

/** {@link checkValue} found bytes that are not JSON; the check's `at` and `problem` say where and what. */
export const INVALID = -3;

const VALUE = 0; // a value is expected (whitespace first)
const FIRST_VALUE = 1; // just after `[`: a value or `]`
const STRING = 2;
const ESCAPE = 3; // after a backslash in a string
const UNICODE = 4; // inside `\uXXXX`
const MINUS = 5; // after `-`: a digit
const ZERO = 6; // after a leading 0: `.`, `e` or the end
const INTEGER = 7;
const POINT = 8; // after `.`: a digit
const FRACTION = 9;
const EXPONENT = 10; // after `e`: a sign or a digit
const EXPONENT_SIGN = 11; // after the sign: a digit
const EXPONENT_DIGITS = 12;
const LITERAL = 13; // inside true, false or null
const AFTER = 14; // after a value inside a container: `,` or its closing bracket
const FIRST_KEY = 15; // just after `{`: a key or `}`
const KEY = 16; // after `,` in an object: a key
const COLON_NEXT = 17; // after a key: `:`

const TRUE = new TextEncoder().encode("true");
const FALSE = new TextEncoder().encode("false");
const NULL = new TextEncoder().encode("null");

/** Where a resumable check of one value stands. Reset it with {@link startCheck} for each value. */
export interface SyntaxCheck {
  /** Open brackets, innermost last. */
  stack: Uint8Array;
  depth: number;
  state: number;
  /** After a key's string ends, the check goes on to `:` rather than to `,`. */
  inKey: boolean;
  /** Hex digits still expected in `\uXXXX`, or the literal being matched and how far. */
  count: number;
  literal: Uint8Array;
  /** Where to continue, after {@link NEED_MORE}; where the fault is, after {@link INVALID}. */
  at: number;
  /** What is wrong, after {@link INVALID}: `expected ',' or '}', found ']'`. */
  problem: string;
}

/** A check state, ready for a value. */
export function newCheck(): SyntaxCheck {
  return { stack: new Uint8Array(64), depth: 0, state: VALUE, inKey: false, count: 0, literal: TRUE, at: 0, problem: "" };
}

/** Prepares `check` for a value beginning at `at`. */
export function startCheck(check: SyntaxCheck, at: number): void {
  check.depth = 0;
  check.state = VALUE;
  check.inKey = false;
  check.count = 0;
  check.at = at;
  check.problem = "";
}

function isDigit(byte: number): boolean {
  return byte >= 0x30 && byte <= 0x39;
}

function isHex(byte: number): boolean {
  return isDigit(byte) || (byte >= 0x41 && byte <= 0x46) || (byte >= 0x61 && byte <= 0x66);
}

function isSpace(byte: number): boolean {
  return byte === 0x20 || byte === 0x0a || byte === 0x0d || byte === 0x09;
}

/**
 * Continues checking the value `check` describes, from `check.at`, over `buffer[.., end)`.
 * Returns the index just after the value, {@link NEED_MORE}, or {@link INVALID}. A number (or a
 * literal) at the outermost level ends at the first byte that cannot continue it, so the caller
 * decides what may follow.
 */
export function checkValue(buffer: Uint8Array, end: number, check: SyntaxCheck): number {
  let i = check.at;
  let state = check.state;
  const invalid = (problem: string): number => {
    check.at = i;
    check.problem = problem;
    return INVALID;
  };
  const found = () => describeByte(buffer[i]);

  for (;;) {
    // A value (or key) has ended at `i` when `state` is AFTER with nothing open.
    if (state === AFTER && check.depth === 0) {
      check.at = i;
      check.state = state;
      return i;
    }
    if (i >= end) break;
    const byte = buffer[i] as number;
    switch (state) {
      case VALUE:
      case FIRST_VALUE: {
        if (isSpace(byte)) break;
        if (byte === QUOTE) state = STRING;
        else if (byte === OPEN_BRACE || byte === OPEN_BRACKET) {
          if (check.depth === check.stack.length) {
            const deeper = new Uint8Array(check.stack.length * 2);
            deeper.set(check.stack);
            check.stack = deeper;
          }
          check.stack[check.depth++] = byte;
          state = byte === OPEN_BRACE ? FIRST_KEY : FIRST_VALUE;
        } else if (byte === CLOSE_BRACKET && state === FIRST_VALUE) {
          check.depth--;
          state = AFTER;
        } else if (byte === 0x2d) state = MINUS;
        else if (byte === 0x30) state = ZERO;
        else if (isDigit(byte)) state = INTEGER;
        else if (byte === 0x74 || byte === 0x66 || byte === 0x6e) {
          check.literal = byte === 0x74 ? TRUE : byte === 0x66 ? FALSE : NULL;
          check.count = 1;
          state = LITERAL;
        } else return invalid(`expected a value, found ${found()}`);
        break;
      }
      case STRING: {
        // The hot loop: most bytes of a skipped value are inside strings.
        while (i < end) {
          const b = buffer[i] as number;
          if (b === QUOTE || b === BACKSLASH || b < 0x20) break;
          i++;
        }
        if (i >= end) continue;
        const b = buffer[i] as number;
        if (b === BACKSLASH) state = ESCAPE;
        else if (b === QUOTE) {
          if (check.inKey) {
            check.inKey = false;
            state = COLON_NEXT;
          } else state = AFTER;
        } else return invalid(`a string holds a control character (${describeByte(b)}); it must be escaped`);
        break;
      }
      case ESCAPE: {
        if (byte === 0x75) {
          state = UNICODE;
          check.count = 4;
        } else if (byte === QUOTE || byte === BACKSLASH || byte === 0x2f || byte === 0x62 || byte === 0x66 || byte === 0x6e || byte === 0x72 || byte === 0x74) {
          state = STRING;
        } else return invalid(`a string holds an escape that JSON does not have: \\${String.fromCharCode(byte)}`);
        break;
      }
      case UNICODE: {
        if (!isHex(byte)) return invalid(`a string holds a \\u escape with ${found()} where a hex digit belongs`);
        if (--check.count === 0) state = STRING;
        break;
      }
      case MINUS:
        if (byte === 0x30) state = ZERO;
        else if (isDigit(byte)) state = INTEGER;
        else return invalid(`expected a digit after '-', found ${found()}`);
        break;
      case POINT:
        if (!isDigit(byte)) return invalid(`expected a digit after '.', found ${found()}`);
        state = FRACTION;
        break;
      case EXPONENT:
        if (byte === 0x2b || byte === 0x2d) state = EXPONENT_SIGN;
        else if (isDigit(byte)) state = EXPONENT_DIGITS;
        else return invalid(`expected a digit in the exponent, found ${found()}`);
        break;
      case EXPONENT_SIGN:
        if (!isDigit(byte)) return invalid(`expected a digit in the exponent, found ${found()}`);
        state = EXPONENT_DIGITS;
        break;
      case ZERO:
      case INTEGER:
      case FRACTION:
      case EXPONENT_DIGITS: {
        if (isDigit(byte) && state !== ZERO) break;
        if (byte === 0x2e && (state === ZERO || state === INTEGER)) state = POINT;
        else if ((byte === 0x65 || byte === 0x45) && state !== EXPONENT_DIGITS) state = EXPONENT;
        else if (isDigit(byte)) return invalid("a number has a leading zero");
        else {
          // The number ended before this byte, which belongs to what comes after.
          state = AFTER;
          continue;
        }
        break;
      }
      case LITERAL: {
        if (byte !== check.literal[check.count]) return invalid(`expected ${new TextDecoder().decode(check.literal)}, found ${found()}`);
        if (++check.count === check.literal.length) state = AFTER;
        break;
      }
      case AFTER: {
        if (isSpace(byte)) break;
        const open = check.stack[check.depth - 1];
        const close = open === OPEN_BRACE ? CLOSE_BRACE : CLOSE_BRACKET;
        if (byte === COMMA) state = open === OPEN_BRACE ? KEY : VALUE;
        else if (byte === close) check.depth--;
        else return invalid(`expected ',' or '${String.fromCharCode(close)}', found ${found()}`);
        break;
      }
      case FIRST_KEY:
      case KEY: {
        if (isSpace(byte)) break;
        if (byte === QUOTE) {
          check.inKey = true;
          state = STRING;
        } else if (byte === CLOSE_BRACE && state === FIRST_KEY) {
          check.depth--;
          state = AFTER;
        } else return invalid(`expected ${state === FIRST_KEY ? "a key or '}'" : "a key"}, found ${found()}`);
        break;
      }
      case COLON_NEXT: {
        if (isSpace(byte)) break;
        if (byte !== COLON) return invalid(`expected ':' after a key, found ${found()}`);
        state = VALUE;
        break;
      }
    }
    i++;
  }
  check.at = i;
  check.state = state;
  return NEED_MORE;
}
