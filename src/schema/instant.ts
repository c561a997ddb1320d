/**
 * Strict ISO-8601 parsing to exact integers, and exact integers back to ISO-8601 text.
 *
 * `Date.parse` is not used because it rolls impossible dates over ("2024-02-30" becomes March 1st
 * in some engines) and keeps only milliseconds; a data tool must reject the first and keep the
 * microseconds of the second.
 */
import * as v from "valibot";

const MS_PER_DAY = 86_400_000;
const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function isLeap(year: number): boolean {
  return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
}

function daysInMonth(year: number, month: number): number {
  return month === 2 && isLeap(year) ? 29 : (DAYS_IN_MONTH[month - 1] as number);
}

/** Days from 1970-01-01 to a civil date (proleptic Gregorian), without allocating a Date. */
export function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (month + (month > 2 ? -3 : 9)) + 2) / 5) + day - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146_097 + doe - 719_468;
}

// The texts of the days asked for: a job's records span few days, in any order. The same string
// (not an equal one) each time also spares its partition lookup the hashing of a new key. Kept
// for at most DAY_TEXTS days, then started afresh, so a long span of days costs no memory.
const dayTexts = new Map<number, string>();
const DAY_TEXTS = 4096;

/** The ISO date ("YYYY-MM-DD") of a day number: the inverse of {@link daysFromCivil}. */
export function civilFromDays(days: number): string {
  let text = dayTexts.get(days);
  if (text === undefined) {
    text = civilText(days);
    if (dayTexts.size >= DAY_TEXTS) dayTexts.clear();
    dayTexts.set(days, text);
  }
  return text;
}

function civilText(days: number): string {
  const z = days + 719_468;
  const era = Math.floor(z / 146_097);
  const doe = z - era * 146_097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36_524) - Math.floor(doe / 146_096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const day = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  const year = yoe + era * 400 + (month <= 2 ? 1 : 0);
  return `${String(year).padStart(4, "0")}-${month < 10 ? "0" : ""}${month}-${day < 10 ? "0" : ""}${day}`;
}

/** Time units, as Parquet and Arrow name them. */
export type Unit = "s" | "ms" | "us" | "ns";

const PER_SECOND: Record<Unit, bigint> = { s: 1n, ms: 1_000n, us: 1_000_000n, ns: 1_000_000_000n };
const DIGITS: Record<Unit, number> = { s: 0, ms: 3, us: 6, ns: 9 };

function clock(secondsOfDay: bigint, fraction: bigint, unit: Unit): string {
  const h = secondsOfDay / 3600n;
  const m = (secondsOfDay / 60n) % 60n;
  const s = secondsOfDay % 60n;
  const pad = (n: bigint) => String(n).padStart(2, "0");
  const digits = DIGITS[unit];
  return `${pad(h)}:${pad(m)}:${pad(s)}${digits > 0 ? `.${String(fraction).padStart(digits, "0")}` : ""}`;
}

/**
 * An instant counted in `unit`s since the Unix epoch, as ISO-8601 text with the unit's digits
 * (`2024-03-01T00:01:15.850002Z` for microseconds). `utc` false (a timestamp without a time
 * zone) leaves out the `Z`.
 *
 * @example
 * isoTimestamp(1709251275850002n, "us", true) // "2024-03-01T00:01:15.850002Z"
 */
export function isoTimestamp(value: bigint | number, unit: Unit, utc: boolean): string {
  const count = BigInt(value);
  const perSecond = PER_SECOND[unit];
  const perDay = 86_400n * perSecond;
  let days = count / perDay;
  let rest = count % perDay;
  if (rest < 0n) {
    rest += perDay;
    days -= 1n;
  }
  return `${civilFromDays(Number(days))}T${clock(rest / perSecond, rest % perSecond, unit)}${utc ? "Z" : ""}`;
}

/** A time of day counted in `unit`s since midnight, as `HH:MM:SS[.fraction]`. */
export function isoTime(value: bigint | number, unit: Unit): string {
  const count = BigInt(value);
  const perSecond = PER_SECOND[unit];
  return clock(count / perSecond, count % perSecond, unit);
}

/** Days since the Unix epoch as `YYYY-MM-DD`. */
export function isoDate(days: number): string {
  return civilFromDays(days);
}

// Reads `count` ASCII digits at `at`; -1 when any is not a digit.
function digits(text: string, at: number, count: number): number {
  let value = 0;
  for (let i = at; i < at + count; i++) {
    const d = text.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return -1;
    value = value * 10 + d;
  }
  return value;
}

/**
 * Microseconds since the Unix epoch (UTC) of an ISO-8601 timestamp, or `NaN` when the text is not
 * a real instant (bad calendar date, hour 24, offset out of range) or is finer than a microsecond.
 * Accepts what valibot's `isoTimestamp` and `isoDateTime` accept: "T" or a space, optional
 * seconds and up to nine fraction digits, "Z" or an offset (optionally after a space), or no zone
 * (taken as UTC). Hand-written rather than a regex because it runs for every record.
 *
 * @example
 * parseIsoMicros("2024-03-01T12:00:00.123456Z") // 1709294400123456
 * parseIsoMicros("2024-02-30T00:00:00Z") // NaN
 */
export function parseIsoMicros(text: string): number {
  return parseIsoParts(text) ? (isoParts[0] as number) * 1000 + (isoParts[1] as number) : Number.NaN;
}

/**
 * The same instant as exact microseconds, for instants too far from 1970 for a `number`
 * (about 285 years either way): a `number` when it is safe, a `bigint` beyond, `NaN` when the
 * text is not a real instant.
 */
export function parseIsoMicrosExact(text: string): number | bigint {
  if (!parseIsoParts(text)) return Number.NaN;
  const ms = isoParts[0] as number;
  const micros = isoParts[1] as number;
  const exact = ms * 1000 + micros;
  return Number.isSafeInteger(exact) ? exact : BigInt(ms) * 1000n + BigInt(micros);
}

// The parts of the last instant parsed: milliseconds since the epoch (exact for years 0-9999)
// and the microseconds below them. A scratch array rather than an object per call: this runs
// for every timestamp of every record.
const isoParts = new Float64Array(2);

// The last text parsed and whether it was an instant: a record's timestamp is parsed by its
// check, by an enrichment that reads it and by its column, the same string each time.
let lastText: string | undefined;
let lastValid = false;

function parseIsoParts(text: string): boolean {
  if (text === lastText) return lastValid;
  lastValid = parseIsoText(text);
  lastText = text;
  return lastValid;
}

function parseIsoText(text: string): boolean {
  const n = text.length;
  if (n < 16 || text.charCodeAt(4) !== 45 || text.charCodeAt(7) !== 45 || text.charCodeAt(13) !== 58) return false;
  const sep = text.charCodeAt(10);
  if (sep !== 84 && sep !== 32) return false;
  const year = digits(text, 0, 4);
  const month = digits(text, 5, 2);
  const day = digits(text, 8, 2);
  const hour = digits(text, 11, 2);
  const minute = digits(text, 14, 2);
  if (year < 0 || month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return false;
  if (hour < 0 || hour > 23 || minute < 0 || minute > 59) return false;
  let at = 16;
  let second = 0;
  let micros = 0;
  if (text.charCodeAt(at) === 58) {
    second = digits(text, at + 1, 2);
    if (second < 0 || second > 59) return false;
    at += 3;
    if (text.charCodeAt(at) === 46) {
      at++;
      let count = 0;
      while (at < n && text.charCodeAt(at) >= 48 && text.charCodeAt(at) <= 57) {
        const d = text.charCodeAt(at) - 48;
        // Sub-microsecond digits would be lost in a microsecond column: refuse rather than round.
        if (count >= 6 && d !== 0) return false;
        if (count < 6) micros = micros * 10 + d;
        count++;
        at++;
      }
      if (count === 0 || count > 9) return false;
      for (let i = count; i < 6; i++) micros *= 10;
    }
  }
  let offsetMinutes = 0;
  if (at < n) {
    let c = text.charCodeAt(at);
    if (c === 90 && at === n - 1) {
      at++;
    } else {
      if (c === 32) c = text.charCodeAt(++at);
      if (c !== 43 && c !== 45) return false;
      const rest = n - at - 1;
      const oh = digits(text, at + 1, 2);
      let om = 0;
      if (rest === 5 && text.charCodeAt(at + 3) === 58) om = digits(text, at + 4, 2);
      else if (rest === 4) om = digits(text, at + 3, 2);
      else if (rest !== 2) return false;
      if (oh < 0 || oh > 23 || om < 0 || om > 59) return false;
      offsetMinutes = (c === 45 ? -1 : 1) * (oh * 60 + om);
    }
  }
  isoParts[0] = daysFromCivil(year, month, day) * MS_PER_DAY + ((hour * 60 + minute - offsetMinutes) * 60 + second) * 1000;
  isoParts[1] = micros;
  return true;
}

/**
 * Days since the Unix epoch of an ISO-8601 calendar date ("YYYY-MM-DD"), or `NaN` when it is not a
 * real date.
 */
export function parseIsoDays(text: string): number {
  if (text.length !== 10 || text.charCodeAt(4) !== 45 || text.charCodeAt(7) !== 45) return Number.NaN;
  const year = digits(text, 0, 4);
  const month = digits(text, 5, 2);
  const day = digits(text, 8, 2);
  if (year < 0 || month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return Number.NaN;
  return daysFromCivil(year, month, day);
}

/**
 * A valibot pipe for a string that is an ISO-8601 timestamp naming a real instant, stored as a
 * timestamp column. Use it where `v.isoTimestamp()` alone would accept "2024-02-31T00:00:00Z".
 *
 * @example
 * const Event = v.object({ at: isoInstant() });
 */
export function isoInstant(message = "not a real ISO-8601 instant (microsecond precision at most)") {
  return v.pipe(
    v.string(),
    v.isoTimestamp(),
    v.check((text: string) => !Number.isNaN(parseIsoMicros(text)), message),
  );
}
