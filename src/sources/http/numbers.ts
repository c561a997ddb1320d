/**
 * The records of a page that hold a number a 64-bit float cannot hold (`1e400`, `1e-400`,
 * `12345678901234567890`), or that nest deeper than `MAX_DEPTH` levels, so `fromHttp` can
 * dead-letter those records and emit the others.
 *
 * Why two passes: a page is parsed whole, and nearly every page has no such number. `numberLoss`
 * (`json/numbers.ts`) decides that for the whole page with a walk over the parsed body, a few
 * percent of what `JSON.parse` cost, and only a page it flags is read again here, number by
 * number, to find every record that holds one: `numberLoss` stops at the first, and a page of
 * records with 20-digit ids has one in each record.
 */
import { MAX_DEPTH, type NumberLoss, numberLoss, problemOf } from "../json/numbers.ts";

/** A record that cannot be read as it was written, and why. */
export interface RecordLoss extends NumberLoss {
  /** The record's text as the server wrote it, with its numbers' digits. */
  readonly raw: string;
}

/** Longest number a message quotes whole (as `json/numbers.ts` does). */
const QUOTED_DIGITS = 40;

/**
 * The records of `records` (the page's records, found in `body`, parsed from `text`) that hold a
 * number that changed when it was parsed, by their index in `records`: the first such number of
 * each, with its path inside the record (`price`, `items.2.id`). Undefined when the page has none,
 * which is decided cheaply. A number outside the records (a page total) concerns no record.
 *
 * A record is found in the body by identity: as an element of `records` when that array is in
 * the body (a `records` path, or a function returning a part of the body), or as an object the
 * function returned as it is. A record the function built anew is not found.
 */
export function recordLosses(text: string, body: unknown, records: readonly unknown[]): Map<number, RecordLoss> | undefined {
  if (records.length === 0 || numberLoss(text, body) === undefined) return undefined;
  let byObject: Map<unknown, number> | undefined;
  const found = new Map<number, RecordLoss>();
  for (const loss of scanLosses(text)) {
    // The containers on the way to the number: the body, then each one the path enters.
    let container: unknown = body;
    for (let depth = 0; depth < loss.path.length; depth++) {
      let index: number | undefined;
      let recordDepth = depth;
      if (container === records) {
        index = loss.path[depth] as number;
        recordDepth = depth + 1;
      } else if (typeof container === "object" && container !== null) {
        byObject ??= new Map(records.map((record, i) => [record, i]));
        index = byObject.get(container);
      }
      if (index !== undefined) {
        if (!found.has(index)) found.set(index, inRecord(text, loss, recordDepth));
        break;
      }
      if (typeof container !== "object" || container === null) break;
      container = (container as Record<string | number, unknown>)[loss.path[depth] as string | number];
    }
  }
  return found.size === 0 ? undefined : found;
}

/** A changed number anywhere in a page, with the path to it and where each container on it opens. */
/**
 * The number at `path` (a dot path, as `atPath` reads it) as `text` writes it, when reading it as
 * a float changed it (`{"next":1234567890123456789}` parses to ...800); undefined when it did not.
 * With a key written twice, the last one counts, as `JSON.parse` takes it.
 */
export function changedNumberAt(text: string, path: string): string | undefined {
  const keys = path === "" ? [] : path.split(".");
  let found: string | undefined;
  for (const loss of scanLosses(text)) {
    if (loss.tooDeep || loss.path.length !== keys.length) continue;
    if (loss.path.every((key, i) => String(key) === keys[i])) found = loss.literal;
  }
  return found;
}

interface PageLoss {
  readonly literal: string;
  readonly index: number;
  readonly path: readonly (string | number)[];
  /** `opens[d]` is where the container holding `path[d]` begins in the text. */
  readonly opens: readonly number[];
  readonly problem: string;
  /** Not a number: the text nests past `MAX_DEPTH` here (`index`). */
  readonly tooDeep?: true;
}

/** `loss`, as seen from the record at `depth` of its path: the path inside it and its raw text. */
function inRecord(text: string, loss: PageLoss, depth: number): RecordLoss {
  const raw = depth < loss.opens.length ? text.slice(loss.opens[depth], valueEnd(text, loss.opens[depth] as number)) : loss.literal;
  return {
    literal: loss.literal.length > QUOTED_DIGITS ? `${loss.literal.slice(0, QUOTED_DIGITS)}…` : loss.literal,
    index: loss.index,
    path: loss.tooDeep ? "" : loss.path.slice(depth).join("."),
    problem: loss.problem,
    ...(loss.tooDeep ? { tooDeep: true as const } : {}),
    raw,
  };
}

function isNumberChar(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || c === 0x2e || c === 0x65 || c === 0x45 || c === 0x2b || c === 0x2d;
}

/** Where the string opening at `i` ends (the index after its closing quote). */
function stringEnd(text: string, i: number): number {
  let j = i + 1;
  while (j < text.length) {
    const c = text.charCodeAt(j);
    if (c === 0x5c) j += 2;
    else if (c === 0x22) return j + 1;
    else j++;
  }
  return j;
}

/** Where the object or array opening at `start` ends (the index after its closing bracket). */
function valueEnd(text: string, start: number): number {
  let depth = 0;
  let i = start;
  while (i < text.length) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      i = stringEnd(text, i);
      continue;
    }
    if (c === 0x7b || c === 0x5b) depth++;
    else if ((c === 0x7d || c === 0x5d) && --depth === 0) return i + 1;
    i++;
  }
  return i;
}

/**
 * Every number of a valid JSON text, outside strings, that changes when read as a float64, and
 * every place where the text nests past `MAX_DEPTH` (once per descent past it).
 */
function scanLosses(text: string): PageLoss[] {
  const losses: PageLoss[] = [];
  const arrays: boolean[] = [];
  const path: (string | number)[] = [];
  const opens: number[] = [];
  let expectKey = false;
  const n = text.length;
  let i = 0;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      const end = stringEnd(text, i);
      if (expectKey) {
        const key = text.slice(i, end);
        path[path.length - 1] = key.includes("\\") ? (JSON.parse(key) as string) : key.slice(1, -1);
        expectKey = false;
      }
      i = end;
      continue;
    }
    if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
      let j = i + 1;
      while (j < n && isNumberChar(text.charCodeAt(j))) j++;
      const literal = text.slice(i, j);
      const problem = problemOf(literal);
      if (problem !== undefined) losses.push({ literal, index: i, path: path.slice(), opens: opens.slice(), problem });
      i = j;
      continue;
    }
    if (c === 0x7b || c === 0x5b) {
      arrays.push(c === 0x5b);
      path.push(c === 0x5b ? 0 : "");
      opens.push(i);
      expectKey = c === 0x7b;
      if (opens.length === MAX_DEPTH + 1) losses.push({ literal: "", index: i, path: path.slice(), opens: opens.slice(), problem: "", tooDeep: true });
    } else if (c === 0x7d || c === 0x5d) {
      arrays.pop();
      path.pop();
      opens.pop();
    } else if (c === 0x2c) {
      if (arrays[arrays.length - 1]) (path[path.length - 1] as number)++;
      else expectKey = true;
    }
    i++;
  }
  return losses;
}
