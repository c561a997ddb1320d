/**
 * Numbers a 64-bit float cannot hold, found in JSON text so a source can refuse the record instead
 * of passing on a different number.
 *
 * `JSON.parse` reads every number as a float64: `1e400` becomes Infinity (stored as Infinity in a
 * float64 column, as null in a JSON column), `1e-400` becomes 0, and `12345678901234567890`
 * becomes 12345678901234567000. Nothing in the parsed value says a change happened, so the raw
 * text is what tells.
 *
 * What counts as a change: overflow to Infinity, a number that is not zero read as 0, a subnormal
 * that drops digits, and a number of magnitude 2^53 or more (where every float is an integer) that
 * does not print back as written. A decimal in the normal range below 2^53 with more digits than a
 * float holds (`0.12345678901234567890`) is rounded to the nearest float, in its 17th digit, as
 * every float64 reader rounds `0.1`: that is not refused.
 *
 * Why the check is split in two: it runs after `JSON.parse` on every record, so the common case
 * must cost next to nothing. Every change listed above leaves a parsed number outside
 * [2.2e-308, 2^53] or at 0, so a walk over the parsed value's numbers clears nearly every record:
 * 3-5% of what `JSON.parse` costs, while a regex over the text for 16 digits alone costs 10%, and
 * one for exponents would also stop on every `Mobile/15E148` in a user agent. A 0 is usually a 0: only
 * when the text holds `e-` or sixteen zeros in a row can it have underflowed. The rare record left
 * goes to the exact check, which reads the text's numbers one by one, outside strings, with the
 * path of each.
 */

/** Every literal that can change matches this (16 digits and points in a row, or a 3-digit exponent); most that match do not change. */
const SUSPECT = /[\d.]{16}|[eE][+-]?\d{3}/g;
const LONG_EXPONENT = /[eE][+-]?\d{3}/;
const LITERAL = /^(-?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/;
const MIN_NORMAL = 2.2250738585072014e-308;
const MAX_SAFE = Number.MAX_SAFE_INTEGER;
/** Longest number a message quotes whole. */
const QUOTED_DIGITS = 40;

/** A number in a JSON text that a 64-bit float cannot hold unchanged. */
export interface NumberLoss {
  /** The number as written (cut to 40 characters, ending in `…`). */
  readonly literal: string;
  /** Its index (in UTF-16 units) in the text. */
  readonly index: number;
  /** Where it is in the value: `items.2.price`, or `""` for the value itself. */
  readonly path: string;
  /** What happens to it: `is too large for a 64-bit float (it would become Infinity)`. */
  readonly problem: string;
  /** Set instead when the text is nested deeper than {@link MAX_DEPTH}: `index` is where it passes it. */
  readonly tooDeep?: true;
}

/**
 * Deepest nesting of arrays and objects a JSON source reads (10,000 levels; serde_json stops at
 * 128, Python's json near 1,000). A deeper value is a dead letter at stage `parse`. Past some tens
 * of thousands of levels, `JSON.stringify` (a JSON column, a dead letter) overflows the stack,
 * and each overflow costs about 2 s under Bun 1.4.4: a few such lines would stall a run.
 */
export const MAX_DEPTH = 10_000;

/**
 * The first number in `text` (one JSON value, already parsed as `value`) that reading it as a
 * 64-bit float changed, or undefined when none was, which is nearly always and is decided cheaply.
 *
 * A number is unchanged when the float it became prints back as the same decimal (`1e300`,
 * `12345678901234567000`), or has at most 17 significant digits and is the float's 17-digit form
 * (`4.9406564584124654e-324`, as `printf("%.17g")` writes a double), or is a decimal in the normal
 * range below 2^53 (rounded in its 17th digit). It changed when it overflowed to Infinity
 * (`1e400`), underflowed to 0 (`1e-400`) or to a subnormal that dropped digits, or lost digits at
 * 2^53 or beyond (`12345678901234567890`, `9007199254740993`).
 *
 * A text nested deeper than {@link MAX_DEPTH} gives a loss marked `tooDeep` instead, which
 * {@link describeNumberLoss} words as such: every JSON source refuses both with one check.
 *
 * @example
 * numberLoss('{"id":12345678901234567890}', JSON.parse('{"id":12345678901234567890}'))
 * // { literal: "12345678901234567890", index: 6, path: "id", problem: "has more digits than ... 12345678901234567000)" }
 */
export function numberLoss(text: string, value: unknown): NumberLoss | undefined {
  // Each level takes two characters: a shorter text cannot be too deep.
  if (text.length > 2 * MAX_DEPTH) {
    const deep = tooDeep(text);
    if (deep !== undefined) return deep;
  }
  const found = oddest(value);
  if (found === NORMAL) return undefined;
  // A 0 can only come from a number that is not 0 through a negative exponent or a long run of zeros.
  if (found === ZERO && !text.includes("e-") && !text.includes("E-") && !text.includes("0000000000000000")) return undefined;
  return mayHoldLiteral(text) ? scanNumbers(text) : undefined;
}

/**
 * The dead letter's reason when `text` (one message, parsed as `value`) holds a number a float
 * cannot hold or is nested too deep, placed by column; undefined when it holds none. For
 * sources whose input is one value per message (brokers, a replayed dead letter).
 */
export function messageLoss(text: string, value: unknown): string | undefined {
  const loss = numberLoss(text, value);
  return loss === undefined ? undefined : describeNumberLoss(loss, `column ${loss.index + 1}`);
}

/** What {@link parseJson} makes of a text: the value, or why it is refused. */
/** What {@link parseJson} gives: `ok` (or `error === undefined`) tells the two apart. */
export type ParsedJson = { readonly ok: true; readonly value: unknown; readonly error?: undefined } | { readonly ok: false; readonly error: string; readonly value?: undefined };

/**
 * Parses one JSON text (a request line, a message) as sluice's own JSON sources do, for an app
 * that feeds `fromPush`: a blank text, malformed JSON, a number a 64-bit float cannot hold
 * (`1e400`, `12345678901234567890`) and a value nested more than 10,000 levels deep are refused
 * with the reason a dead letter gives (`pushInvalid(text, error)`), instead of becoming
 * `Infinity`, other digits or a stack overflow later. Never throws.
 *
 * @example
 * const parsed = parseJson(line);
 * if (parsed.ok) events.push(parsed.value, { raw: line });
 * else events.pushInvalid(line, parsed.error);
 */
export function parseJson(text: string): ParsedJson {
  if (text.trim() === "") return { ok: false, error: "blank line" };
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return { ok: false, error: malformedJson(text, error, (at) => `column ${at + 1}`) };
  }
  const loss = messageLoss(text, value);
  return loss === undefined ? { ok: true, value } : { ok: false, error: loss };
}

/**
 * The reason a dead letter gives for a text `JSON.parse` refused with `error`. JavaScriptCore calls
 * a string holding a raw control character (a tab or NUL a producer did not escape) an
 * "Unterminated string", which sends the reader looking for a missing quote: such a character is
 * named instead, with `where` it is (given its index in the text).
 */
export function malformedJson(text: string, error: unknown, where: (index: number) => string): string {
  const message = `malformed JSON: ${(error as Error).message}`;
  if (message.endsWith("Unable to parse JSON string")) return moreAfterValue(text, where) ?? message;
  if (!message.endsWith("Unterminated string")) return message;
  const at = rawControlInString(text);
  if (at < 0) return message;
  const code = text.charCodeAt(at);
  const hex = code.toString(16).toUpperCase().padStart(4, "0");
  const escaped = SHORT_ESCAPES[code] ?? `\\u${hex.toLowerCase()}`;
  return `malformed JSON: a string holds the control character U+${hex} unescaped (${where(at)}), which JSON does not allow: write it as ${escaped}`;
}

const SHORT_ESCAPES: Readonly<Record<number, string>> = { 8: "\\b", 9: "\\t", 10: "\\n", 12: "\\f", 13: "\\r" };

/**
 * JavaScriptCore's "Unable to parse JSON string" is mostly a whole value with more after it: two
 * objects on one line, a stray bracket, or lines ending in a bare CR (classic Mac OS) read as one.
 * Says where the value ends and what follows, when the text begins with a whole object, array or
 * string; undefined otherwise.
 */
function moreAfterValue(text: string, where: (index: number) => string): string | undefined {
  const start = text.length - text.trimStart().length;
  const open = text.charCodeAt(start);
  let end = -1;
  let depth = 0;
  let inString = false;
  for (let i = start; i < text.length && end < 0; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++;
      else if (c === 0x22) {
        inString = false;
        if (depth === 0) end = i + 1;
      }
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) depth++;
    else if (c === 0x7d || c === 0x5d) {
      depth--;
      if (depth === 0) end = i + 1;
    } else if (depth === 0) return undefined;
  }
  if (end < 0 || (open !== 0x7b && open !== 0x5b && open !== 0x22)) return undefined;
  try {
    JSON.parse(text.slice(0, end));
  } catch {
    return undefined;
  }
  const more = text.slice(end).replace(/^[ \t]+/, "");
  const shown = JSON.stringify(more.length > 40 ? `${more.slice(0, 40)}…` : more);
  const cr = more.startsWith("\r")
    ? ". A bare CR follows it: lines that end with CR alone (classic Mac OS) are one line here; convert them (tr '\\r' '\\n')"
    : "";
  return `malformed JSON: a value ends at ${where(end - 1)} and more follows it (${shown}); one JSON value is expected${cr}`;
}

/** Index of the first character below U+0020 inside a string of `text`, or -1. */
function rawControlInString(text: string): number {
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (!inString) inString = c === 0x22;
    else if (c === 0x5c) i++;
    else if (c === 0x22) inString = false;
    else if (c < 0x20) return i;
  }
  return -1;
}

/** The reason a source gives on the dead letter: `number 1e400 at amount (line 3, column 12) is ...`. */
export function describeNumberLoss(loss: NumberLoss, where: string): string {
  if (loss.tooDeep) return `value nested more than ${MAX_DEPTH.toLocaleString("en-US")} levels deep (${where}); the record is not read`;
  const at = loss.path === "" ? `(${where})` : `at ${loss.path} (${where})`;
  return `number ${loss.literal} ${at} ${loss.problem}; the record is not read (write such numbers as strings to keep them exact)`;
}

/** Where a JSON text (valid: it parsed) nests past {@link MAX_DEPTH}, counting brackets outside strings. */
function tooDeep(text: string): NumberLoss | undefined {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > MAX_DEPTH) return { literal: "", index: i, path: "", problem: "", tooDeep: true };
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return undefined;
}

const NORMAL = 0;
const ZERO = 1;
const ODD = 2;

/** The oddest number in a parsed value: all in [2.2e-308, 2^53) (NORMAL), some 0 (ZERO), or some beyond (ODD). */
function oddest(value: unknown): number {
  try {
    return walk(value);
  } catch {
    // Nested deeper than the stack: let the exact check decide.
    return ODD;
  }
}

function walk(value: unknown): number {
  if (typeof value === "number") return judge(value);
  if (typeof value !== "object" || value === null) return NORMAL;
  return Array.isArray(value) ? walkArray(value) : walkObject(value as Record<string, unknown>);
}

function judge(value: number): number {
  const a = value < 0 ? -value : value;
  return a >= MIN_NORMAL && a <= MAX_SAFE ? NORMAL : a === 0 ? ZERO : ODD;
}

// Members are judged in place and only containers recurse: a call per member, as a plain recursive
// walk makes, cost three times as much in the clickstream job (40 ms against 10-20 ms of CPU per
// 300k records, where JSON.parse takes about 350 ms).
function walkObject(value: Record<string, unknown>): number {
  let found = NORMAL;
  for (const key in value) {
    const item = value[key];
    let next: number;
    if (typeof item === "number") next = judge(item);
    else if (typeof item === "object" && item !== null) next = Array.isArray(item) ? walkArray(item) : walkObject(item as Record<string, unknown>);
    else continue;
    if (next === ODD) return ODD;
    if (next > found) found = next;
  }
  return found;
}

function walkArray(value: unknown[]): number {
  let found = NORMAL;
  for (let i = 0; i < value.length; i++) {
    const item = value[i];
    let next: number;
    if (typeof item === "number") next = judge(item);
    else if (typeof item === "object" && item !== null) next = Array.isArray(item) ? walkArray(item) : walkObject(item as Record<string, unknown>);
    else continue;
    if (next === ODD) return ODD;
    if (next > found) found = next;
  }
  return found;
}

function isNumberChar(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || c === 0x2e || c === 0x65 || c === 0x45 || c === 0x2b || c === 0x2d;
}

/**
 * True when a {@link SUSPECT} match can be part of a number outside a string: a number starts
 * after `:`, `[`, `,`, whitespace or at the start. A match after any other character (`"`, a
 * letter, `/`) is inside a string.
 */
function mayHoldLiteral(text: string): boolean {
  SUSPECT.lastIndex = 0;
  for (let match = SUSPECT.exec(text); match !== null; match = SUSPECT.exec(text)) {
    let start = match.index;
    while (start > 0 && isNumberChar(text.charCodeAt(start - 1))) start--;
    if (start === 0) return true;
    const before = text.charCodeAt(start - 1);
    if (before === 0x3a || before === 0x5b || before === 0x2c || before === 0x20 || before === 0x09 || before === 0x0a || before === 0x0d) return true;
  }
  return false;
}

const OBJECT = 0;
const ARRAY = 1;

/** Reads the numbers of a valid JSON text, outside strings, keeping the path to each. */
function scanNumbers(text: string): NumberLoss | undefined {
  const kinds: number[] = [];
  const path: (string | number)[] = [];
  let expectKey = false;
  const n = text.length;
  let i = 0;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      let j = i + 1;
      let escaped = false;
      while (j < n) {
        const d = text.charCodeAt(j);
        if (d === 0x5c) {
          escaped = true;
          j += 2;
          continue;
        }
        if (d === 0x22) break;
        j++;
      }
      if (expectKey) {
        path[path.length - 1] = escaped ? (JSON.parse(text.slice(i, j + 1)) as string) : text.slice(i + 1, j);
        expectKey = false;
      }
      i = j + 1;
      continue;
    }
    if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
      let j = i + 1;
      while (j < n && isNumberChar(text.charCodeAt(j))) j++;
      const literal = text.slice(i, j);
      const problem = problemOf(literal);
      if (problem !== undefined) {
        return {
          literal: literal.length > QUOTED_DIGITS ? `${literal.slice(0, QUOTED_DIGITS)}…` : literal,
          index: i,
          path: path.join("."),
          problem,
        };
      }
      i = j;
      continue;
    }
    if (c === 0x7b) {
      kinds.push(OBJECT);
      path.push("");
      expectKey = true;
    } else if (c === 0x5b) {
      kinds.push(ARRAY);
      path.push(0);
    } else if (c === 0x7d || c === 0x5d) {
      kinds.pop();
      path.pop();
    } else if (c === 0x2c) {
      if (kinds[kinds.length - 1] === ARRAY) (path[path.length - 1] as number)++;
      else expectKey = true;
    }
    i++;
  }
  return undefined;
}

/** What reading `literal` as a float64 does to it, or undefined when it survives. */
export function problemOf(literal: string): string | undefined {
  if (literal.length < 16 && !LONG_EXPONENT.test(literal)) return undefined;
  const x = Number(literal);
  if (!Number.isFinite(x)) return `is too large for a 64-bit float (it would become ${x})`;
  const written = decimal(literal);
  if (written === "0") return undefined;
  if (x === 0) return "is too small for a 64-bit float (it would become 0)";
  const a = Math.abs(x);
  // Rounded in its 17th digit, as every float64 reader rounds a decimal: not refused.
  if (a >= MIN_NORMAL && a <= MAX_SAFE) return undefined;
  if (written === decimal(String(x))) return undefined;
  const significant = written.indexOf("e") - (written.charCodeAt(0) === 0x2d ? 1 : 0);
  if (significant <= 17 && written === decimal(x.toPrecision(17))) return undefined;
  const shown = String(x);
  return a < MIN_NORMAL
    ? `is too small for a 64-bit float to keep its digits (it would become ${shown})`
    : `has more digits than a 64-bit float holds (it would become ${shown})`;
}

/**
 * A decimal in one normal form, so two spellings of one number compare equal: sign, significant
 * digits without leading or trailing zeros, and where the point goes (`"-15e1"` for -1.5, `-0.15e1`
 * and `-1500e-3`). Zero is `"0"`.
 */
function decimal(text: string): string {
  const match = LITERAL.exec(text);
  if (!match) return text;
  const whole = match[2] as string;
  let digits = whole + (match[3] ?? "");
  let point = whole.length + (match[4] === undefined ? 0 : Number(match[4]));
  let lead = 0;
  while (lead < digits.length && digits.charCodeAt(lead) === 0x30) lead++;
  let end = digits.length;
  while (end > lead && digits.charCodeAt(end - 1) === 0x30) end--;
  if (end === lead) return "0";
  point -= lead;
  digits = digits.slice(lead, end);
  return `${match[1]}${digits}e${point}`;
}
