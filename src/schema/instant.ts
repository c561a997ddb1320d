/**
 * Strict ISO-8601 parsing to exact integers.
 *
 * `Date.parse` is not used because it rolls impossible dates over ("2024-02-30" becomes March 1st
 * in some engines) and keeps only milliseconds; a data tool must reject the first and keep the
 * microseconds of the second.
 */
import * as v from "valibot";

// Accepts what valibot's isoTimestamp / isoDateTime accept: "T" or space, optional seconds and
// up to nine fraction digits, "Z" or an offset (optionally after a space), or no zone (taken as UTC).
const TIMESTAMP =
  /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z| ?[+-]\d{2}(?::?\d{2})?)?$/;
const DATE = /^(\d{4})-(\d{2})-(\d{2})$/;

const MS_PER_DAY = 86_400_000;

function daysInMonth(year: number, month: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
}

/**
 * Microseconds since the Unix epoch (UTC) of an ISO-8601 timestamp, or `NaN` when the text is not
 * a real instant (bad calendar date, hour 24, offset out of range) or is finer than a microsecond.
 *
 * @example
 * parseIsoMicros("2024-03-01T12:00:00.123456Z") // 1709294400123456
 * parseIsoMicros("2024-02-30T00:00:00Z") // NaN
 */
export function parseIsoMicros(text: string): number {
  const m = TIMESTAMP.exec(text);
  if (!m) return Number.NaN;
  const year = +m[1];
  const month = +m[2];
  const day = +m[3];
  const hour = +m[4];
  const minute = +m[5];
  const second = m[6] === undefined ? 0 : +m[6];
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return Number.NaN;
  if (hour > 23 || minute > 59 || second > 59) return Number.NaN;
  let micros = 0;
  const fraction = m[7];
  if (fraction !== undefined) {
    const nine = fraction.padEnd(9, "0");
    // Sub-microsecond digits would be lost in a microsecond column: refuse rather than round.
    if (nine.slice(6) !== "000") return Number.NaN;
    micros = +nine.slice(0, 6);
  }
  let offsetMinutes = 0;
  const zone = m[8]?.trim();
  if (zone && zone !== "Z") {
    const sign = zone[0] === "-" ? -1 : 1;
    const digits = zone.slice(1).replace(":", "");
    const oh = +digits.slice(0, 2);
    const om = digits.length > 2 ? +digits.slice(2, 4) : 0;
    if (oh > 23 || om > 59) return Number.NaN;
    offsetMinutes = sign * (oh * 60 + om);
  }
  const ms = Date.UTC(year, month - 1, day, hour, minute, second) - offsetMinutes * 60_000;
  return ms * 1000 + micros;
}

/**
 * Days since the Unix epoch of an ISO-8601 calendar date ("YYYY-MM-DD"), or `NaN` when it is not a
 * real date.
 */
export function parseIsoDays(text: string): number {
  const m = DATE.exec(text);
  if (!m) return Number.NaN;
  const year = +m[1];
  const month = +m[2];
  const day = +m[3];
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return Number.NaN;
  return Date.UTC(year, month - 1, day) / MS_PER_DAY;
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
