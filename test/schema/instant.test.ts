import { describe, expect, test } from "bun:test";
import * as v from "valibot";
import { civilFromDays, daysFromCivil, isoInstant, parseIsoDays, parseIsoMicros } from "../../src/schema/instant.ts";
import { seededRandom } from "../../src/generate/random.ts";

const DAY_MS = 86_400_000;

/** Microseconds of a UTC instant given as Date.UTC-style fields (years 0-99 kept as written). */
function utcMicros(year: number, month: number, day: number, hour = 0, minute = 0, second = 0, micros = 0): number {
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  date.setUTCHours(hour, minute, second, 0);
  return date.getTime() * 1000 + micros;
}

/** The project's seeded generator (mulberry32), so a failure can be replayed. */
const random = (seed: number): (() => number) => seededRandom(seed).next;

describe("parseIsoMicros", () => {
  test("reads the documented example", () => {
    expect(parseIsoMicros("2024-03-01T12:00:00.123456Z")).toBe(1_709_294_400_123_456);
    expect(parseIsoMicros("2024-02-30T00:00:00Z")).toBeNaN();
  });

  test.each([
    ["2024-02-29T00:00:00Z", utcMicros(2024, 2, 29)],
    ["2000-02-29T12:34:56Z", utcMicros(2000, 2, 29, 12, 34, 56)],
    ["1970-01-01T00:00:00Z", 0],
    ["1969-12-31T23:59:59Z", -1_000_000],
    ["2024-12-31T23:59:59Z", utcMicros(2024, 12, 31, 23, 59, 59)],
    ["2023-04-30T00:00:00Z", utcMicros(2023, 4, 30)],
    ["0000-02-29T00:00:00Z", utcMicros(0, 2, 29)],
    ["9999-12-31T23:59:59Z", utcMicros(9999, 12, 31, 23, 59, 59)],
  ])("accepts the real instant %s", (text, micros) => {
    expect(parseIsoMicros(text)).toBe(micros);
  });

  test.each([
    ["2023-02-29T00:00:00Z", "Feb 29 in a common year"],
    ["1900-02-29T00:00:00Z", "Feb 29 in a century that is not a leap year"],
    ["2024-02-30T00:00:00Z", "Feb 30"],
    ["2024-04-31T00:00:00Z", "Apr 31"],
    ["2024-13-01T00:00:00Z", "month 13"],
    ["2024-00-10T00:00:00Z", "month 0"],
    ["2024-01-00T00:00:00Z", "day 0"],
    ["2024-01-32T00:00:00Z", "day 32"],
    ["2024-01-01T24:00:00Z", "hour 24"],
    ["2024-01-01T23:60:00Z", "minute 60"],
    ["2024-01-01T23:59:60Z", "a leap second"],
    ["2024-01-01T00:00:00+24:00", "offset hour 24"],
    ["2024-01-01T00:00:00+01:60", "offset minute 60"],
    ["2024-01-01", "a date without a time"],
    ["2024-01-01T00", "an hour without minutes"],
    ["2024-01-01T00:00:", "a colon without seconds"],
    ["2024-01-01T00:00:0", "one digit of seconds"],
    ["2024-01-01T00:00:00.", "a dot without fraction digits"],
    ["2024-01-01T00:00:00.Z", "a dot without fraction digits before Z"],
    ["2024-01-01t00:00:00Z", "a lower-case t"],
    ["2024-01-01T00:00:00z", "a lower-case z"],
    ["2024-01-01_00:00:00Z", "an underscore separator"],
    ["2024-01-01T00:00:00Zjunk", "text after Z"],
    ["2024-01-01T00:00:00 ", "a trailing space"],
    ["2024-01-01T00:00:00 Z", "a space before Z"],
    ["2024-01-01T00:00:00+1:00", "a one-digit offset hour"],
    ["2024-01-01T00:00:00+01:0", "a one-digit offset minute"],
    ["2024-01-01T00:00:00+01:00:00", "offset seconds"],
    ["2024-01-01T00:00:00+010", "three offset digits"],
    ["2024-1-01T00:00:00Z", "a one-digit month"],
    ["24-01-01T00:00:00Z", "a two-digit year"],
    ["+2024-01-01T00:00:00Z", "a signed year"],
    ["2024-01-01T0a:00:00Z", "a letter in the hour"],
    ["２０２４-01-01T00:00:00Z", "full-width digits"],
    ["", "the empty string"],
    ["not a date at all", "prose"],
  ])("rejects %s (%s)", (text) => {
    expect(parseIsoMicros(text)).toBeNaN();
  });

  test.each([
    ["2024-03-01T12:00:00+05:30", utcMicros(2024, 3, 1, 6, 30)],
    ["2024-03-01T12:00:00-08:00", utcMicros(2024, 3, 1, 20)],
    ["2024-03-01T12:00:00+0530", utcMicros(2024, 3, 1, 6, 30)],
    ["2024-03-01T12:00:00-0800", utcMicros(2024, 3, 1, 20)],
    ["2024-03-01T12:00:00+05", utcMicros(2024, 3, 1, 7)],
    ["2024-03-01T12:00:00 +05:30", utcMicros(2024, 3, 1, 6, 30)],
    ["2024-03-01T12:00:00+00:00", utcMicros(2024, 3, 1, 12)],
    ["2024-03-01T12:00:00-00:00", utcMicros(2024, 3, 1, 12)],
    ["2024-03-01T12:00:00+23:59", utcMicros(2024, 2, 29, 12, 1)],
    ["2024-03-01T00:30:00+01:00", utcMicros(2024, 2, 29, 23, 30)],
    ["2024-12-31T23:30:00-01:00", utcMicros(2025, 1, 1, 0, 30)],
    ["2024-03-01T12:00:00.5-01:00", utcMicros(2024, 3, 1, 13, 0, 0, 500_000)],
  ])("applies the offset of %s", (text, micros) => {
    expect(parseIsoMicros(text)).toBe(micros);
  });

  test("takes a space for the T, missing seconds as :00 and a missing zone as UTC", () => {
    const noon = utcMicros(2024, 3, 1, 12);
    expect(parseIsoMicros("2024-03-01 12:00:00Z")).toBe(noon);
    expect(parseIsoMicros("2024-03-01T12:00Z")).toBe(noon);
    expect(parseIsoMicros("2024-03-01T12:00")).toBe(noon);
    expect(parseIsoMicros("2024-03-01T12:00:00")).toBe(noon);
    expect(parseIsoMicros("2024-03-01 12:00:00.25 +01:00")).toBe(utcMicros(2024, 3, 1, 11, 0, 0, 250_000));
  });

  test.each([
    [".1", 100_000],
    [".12", 120_000],
    [".123", 123_000],
    [".1234", 123_400],
    [".12345", 123_450],
    [".123456", 123_456],
    [".1234560", 123_456],
    [".12345600", 123_456],
    [".123456000", 123_456],
    [".000001", 1],
    [".000001000", 1],
    [".0", 0],
    [".000000000", 0],
    [".999999", 999_999],
  ])("keeps the fraction %s as %d microseconds", (fraction, micros) => {
    const base = utcMicros(2024, 3, 1, 12);
    expect(parseIsoMicros(`2024-03-01T12:00:00${fraction}Z`)).toBe(base + micros);
    expect(parseIsoMicros(`2024-03-01T12:00:00${fraction}`)).toBe(base + micros);
    expect(parseIsoMicros(`2024-03-01T12:00:00${fraction}+00:00`)).toBe(base + micros);
  });

  test.each([
    [".1234567", "a seventh digit"],
    [".0000001", "only a seventh digit"],
    [".12345678", "an eighth digit"],
    [".123456789", "a ninth digit"],
    [".000000001", "only a ninth digit"],
    [".123456780", "a non-zero eighth digit before a zero"],
    [".1234560000", "ten digits, even when the extra ones are zero"],
    [".0000000000", "ten zeros"],
  ])("refuses sub-microsecond precision: %s (%s)", (fraction) => {
    expect(parseIsoMicros(`2024-03-01T12:00:00${fraction}Z`)).toBeNaN();
  });

  test("keeps microseconds before the epoch exact", () => {
    expect(parseIsoMicros("1969-12-31T23:59:59.5Z")).toBe(-500_000);
    expect(parseIsoMicros("1969-12-31T23:59:59.999999Z")).toBe(-1);
    expect(parseIsoMicros("1900-01-01T00:00:00.000001Z")).toBe(utcMicros(1900, 1, 1) + 1);
  });

  test("gives each text its own answer when texts repeat, alternate and fail in between", () => {
    // The last text's answer is remembered: a repeat, an equal copy and a text after a failure
    // must all be read afresh or from the right memory.
    const a = "2024-03-01T12:00:00.123456Z";
    const b = "2024-02-30T00:00:00Z";
    const c = "1999-12-31 23:59:59.5+01:00";
    const want = { a: utcMicros(2024, 3, 1, 12, 0, 0, 123_456), c: utcMicros(1999, 12, 31, 22, 59, 59, 500_000) };
    const got = [a, a, b, a, b, b, c, [...a].join(""), c, b, c].map(parseIsoMicros);
    expect(got).toEqual([want.a, want.a, Number.NaN, want.a, Number.NaN, Number.NaN, want.c, want.a, want.c, Number.NaN, want.c]);
  });

  test("agrees with Date on every millisecond instant it prints", () => {
    const next = random(1);
    const min = utcMicros(0, 1, 1) / 1000;
    const max = Date.UTC(9999, 11, 31, 23, 59, 59, 999);
    const mismatches: string[] = [];
    for (let i = 0; i < 20_000; i++) {
      const ms = Math.floor(min + next() * (max - min));
      const text = new Date(ms).toISOString();
      if (text.length !== 24) continue;
      if (parseIsoMicros(text) !== ms * 1000) mismatches.push(text);
      const spaced = `${text.slice(0, 10)} ${text.slice(11, 23)}+00:00`;
      if (parseIsoMicros(spaced) !== ms * 1000) mismatches.push(spaced);
    }
    expect(mismatches).toEqual([]);
  });

  test("agrees with an independent Date-based reading on generated text, real and impossible", () => {
    const next = random(2);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)];
    const int = (low: number, high: number) => low + Math.floor(next() * (high - low + 1));
    const pad = (n: number, width = 2) => String(n).padStart(width, "0");

    function oracle(y: number, mo: number, d: number, h: number, mi: number, s: number, fraction: string, zone: string): number {
      if (mo < 1 || mo > 12 || d < 1) return Number.NaN;
      const date = new Date(0);
      date.setUTCFullYear(y, mo - 1, d);
      if (date.getUTCMonth() !== mo - 1 || date.getUTCDate() !== d) return Number.NaN;
      if (h > 23 || mi > 59 || s > 59) return Number.NaN;
      let micros = 0;
      if (fraction !== "") {
        if (fraction.length > 9) return Number.NaN;
        const nine = fraction.padEnd(9, "0");
        if (nine.slice(6) !== "000") return Number.NaN;
        micros = Number(nine.slice(0, 6));
      }
      let offset = 0;
      const z = zone.trim();
      if (z !== "" && z !== "Z") {
        const digits = z.slice(1).replace(":", "");
        const oh = Number(digits.slice(0, 2));
        const om = digits.length > 2 ? Number(digits.slice(2)) : 0;
        if (oh > 23 || om > 59) return Number.NaN;
        offset = (z[0] === "-" ? -1 : 1) * (oh * 60 + om);
      }
      return utcMicros(y, mo, d, h, mi - offset, s) + micros;
    }

    const mismatches: string[] = [];
    let real = 0;
    for (let i = 0; i < 30_000; i++) {
      const y = next() < 0.8 ? int(1890, 2110) : int(0, 9999);
      const mo = next() < 0.9 ? int(1, 12) : pick([0, 13, 99]);
      const d = next() < 0.7 ? int(1, 28) : int(0, 32);
      const h = next() < 0.9 ? int(0, 23) : pick([24, 25, 99]);
      const mi = next() < 0.9 ? int(0, 59) : pick([60, 99]);
      const withSeconds = next() < 0.85;
      const s = next() < 0.9 ? int(0, 59) : pick([60, 61, 99]);
      const fraction = withSeconds && next() < 0.6
        ? Array.from({ length: int(1, 10) }, () => (next() < 0.5 ? "0" : String(int(0, 9)))).join("")
        : "";
      const oh = next() < 0.9 ? int(0, 23) : pick([24, 99]);
      const om = next() < 0.9 ? pick([0, 15, 30, 45, 59]) : pick([60, 99]);
      const sign = pick(["+", "-"]);
      const zone = pick(["", "Z", `${sign}${pad(oh)}:${pad(om)}`, `${sign}${pad(oh)}${pad(om)}`, `${sign}${pad(oh)}`, ` ${sign}${pad(oh)}:${pad(om)}`]);
      const text =
        `${pad(y, 4)}-${pad(mo)}-${pad(d)}${pick(["T", " "])}${pad(h)}:${pad(mi)}` +
        `${withSeconds ? `:${pad(s)}${fraction ? `.${fraction}` : ""}` : ""}${zone}`;
      const expected = oracle(y, mo, d, h, mi, withSeconds ? s : 0, fraction, zone);
      const actual = parseIsoMicros(text);
      if (!Number.isNaN(expected)) real++;
      if (!Object.is(actual, expected)) mismatches.push(`${text}: expected ${expected}, got ${actual}`);
    }
    expect(mismatches.slice(0, 10)).toEqual([]);
    // Both kinds of text were generated, not only one.
    expect(real).toBeGreaterThan(5_000);
    expect(real).toBeLessThan(25_000);
  });
});

describe("parseIsoDays", () => {
  test.each([
    ["1970-01-01", 0],
    ["1970-01-02", 1],
    ["1969-12-31", -1],
    ["2024-02-29", 19_782],
    ["2000-02-29", 11_016],
    ["2024-03-01", 19_783],
    ["0000-01-01", -719_528],
    ["9999-12-31", 2_932_896],
  ])("reads %s as day %d", (text, days) => {
    expect(parseIsoDays(text)).toBe(days);
  });

  test.each([
    ["2023-02-29", "Feb 29 in a common year"],
    ["2100-02-29", "Feb 29 in 2100"],
    ["2024-02-30", "Feb 30"],
    ["2024-06-31", "Jun 31"],
    ["2024-13-01", "month 13"],
    ["2024-00-01", "month 0"],
    ["2024-01-00", "day 0"],
    ["2024-1-01", "a one-digit month"],
    ["2024-01-1", "a one-digit day"],
    ["2024/01/01", "slashes"],
    ["20240101", "the basic format"],
    ["2024-01-01T00:00:00Z", "a timestamp"],
    [" 2024-01-01", "a leading space"],
    ["2024-01-01 ", "a trailing space"],
    ["abcd-01-01", "letters for the year"],
    ["-024-01-01", "a sign in the year"],
    ["", "the empty string"],
  ])("rejects %s (%s)", (text) => {
    expect(parseIsoDays(text)).toBeNaN();
  });
});

describe("civilFromDays", () => {
  test("prints what Date prints and parseIsoDays reads it back, for every day from 1600 to 2400", () => {
    const first = daysFromCivil(1600, 1, 1);
    const last = daysFromCivil(2400, 12, 31);
    const mismatches: number[] = [];
    for (let day = first; day <= last; day++) {
      const text = civilFromDays(day);
      if (text !== new Date(day * DAY_MS).toISOString().slice(0, 10) || parseIsoDays(text) !== day) mismatches.push(day);
    }
    expect(last - first).toBe((Date.UTC(2400, 11, 31) - Date.UTC(1600, 0, 1)) / DAY_MS);
    expect(mismatches).toEqual([]);
  });

  test("prints what Date prints and parseIsoDays reads it back, across years 0000 to 9999", () => {
    const first = daysFromCivil(0, 1, 1);
    const last = daysFromCivil(9999, 12, 31);
    const mismatches: number[] = [];
    // A prime stride lands on every day of the month and every month over the range.
    for (let day = first; day <= last; day += 13) {
      const text = civilFromDays(day);
      if (text !== new Date(day * DAY_MS).toISOString().slice(0, 10) || parseIsoDays(text) !== day) mismatches.push(day);
    }
    for (const day of [first, last, 0, -1]) {
      expect(parseIsoDays(civilFromDays(day))).toBe(day);
    }
    expect(mismatches).toEqual([]);
  });

  test("gives each day its own text when days repeat and alternate", () => {
    const days = [19_800, 19_800, 19_801, 19_800, -1, -1, 19_801];
    expect(days.map(civilFromDays)).toEqual(days.map((d) => new Date(d * DAY_MS).toISOString().slice(0, 10)));
  });

  test("is the inverse of daysFromCivil", () => {
    expect(civilFromDays(0)).toBe("1970-01-01");
    expect(civilFromDays(-1)).toBe("1969-12-31");
    expect(civilFromDays(daysFromCivil(2024, 2, 29))).toBe("2024-02-29");
    expect(civilFromDays(daysFromCivil(0, 1, 1))).toBe("0000-01-01");
  });
});

describe("isoInstant", () => {
  test("accepts a real instant and outputs the text unchanged", () => {
    const result = v.safeParse(isoInstant(), "2024-02-29T23:59:59.123456+01:00");
    expect(result.success).toBe(true);
    expect(result.output).toBe("2024-02-29T23:59:59.123456+01:00");
  });

  test.each([
    ["2024-02-30T00:00:00Z", "an impossible date valibot's isoTimestamp lets through"],
    ["2023-02-29T00:00:00Z", "Feb 29 in a common year"],
    ["2024-04-31T00:00:00Z", "Apr 31"],
    ["2024-03-01T12:00:00.1234567Z", "sub-microsecond digits"],
  ])("rejects %s (%s)", (text) => {
    expect(v.safeParse(v.pipe(v.string(), v.isoTimestamp()), text).success).toBe(true);
    const result = v.safeParse(isoInstant(), text);
    expect(result.success).toBe(false);
    expect(result.issues?.[0].message).toBe("not a real ISO-8601 instant (microsecond precision at most)");
  });

  test("rejects what isoTimestamp rejects, and never coerces", () => {
    for (const input of ["2024-13-01T00:00:00Z", "2024-03-01", "", 1_709_294_400_000, null, new Date(0)]) {
      expect(v.safeParse(isoInstant(), input).success).toBe(false);
    }
  });

  test("uses the message it is given", () => {
    const result = v.safeParse(isoInstant("bad instant"), "2024-02-30T00:00:00Z");
    expect(result.issues?.[0].message).toBe("bad instant");
  });
});
