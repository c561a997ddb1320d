/**
 * Deterministic transaction-like CSV, with a controlled share of defects, for the CSV benchmark
 * and tests: wrong types, missing fields, broken quoting, values a schema refuses. Valid rows
 * exercise quoting (delimiters, doubled quotes and line breaks inside quoted fields, unicode) and
 * the difference between an empty quoted cell ("" = empty text) and an empty one (null).
 */
import { rm } from "node:fs/promises";
import { seededRandom } from "./random.ts";

/** The header of the generated files. */
export const TRANSACTION_COLUMNS = ["tx_id", "account", "amount", "quantity", "currency", "merchant", "description", "refunded", "at"] as const;
export const TRANSACTION_CURRENCIES = ["EUR", "USD", "GBP", "CHF", "JPY"] as const;

const MERCHANTS = ["Fresh Market", "Bio, Corner Shop", "Rail & Co", 'The "Blue" Airline', "Café Zürich", "Noodle Bar", "Hardware Depot", "Ünïcödé GmbH"];
const DESCRIPTIONS = [null, "", "monthly", "split, with a friend", 'gift for "Sam"', "two\nlines", "¡olé! 😀", "refund requested"];

/** The kinds of defect the generator plants, in equal shares. */
export const TRANSACTION_DEFECTS = [
  "amount_not_a_number", //   "12,50", "abc", "€5"
  "amount_empty", //          unquoted empty cell in a required number column
  "quantity_not_integer", //  "2.5" (DuckDB rounds it to 3) or "2x"
  "refunded_not_boolean", //  "maybe"
  "missing_field", //         one cell fewer
  "text_after_quote", //      "Noodle Bar"x: broken quoting
  "impossible_timestamp", //  2024-02-30, 31/05/2024 10:00
  "lowercase_currency", //    "eur": the type is right, the value is refused
  "bad_account", //           "AC12": fails the pattern
] as const;
export type TransactionDefect = (typeof TRANSACTION_DEFECTS)[number];

export interface TransactionOptions {
  /** Number of records (default 1000). */
  readonly count?: number;
  readonly seed?: number;
  /** Share of records with a defect (default 0.01). */
  readonly defectRate?: number;
  /** Days the timestamps spread over from 2024-05-01 (default 30). */
  readonly days?: number;
}

const quote = (text: string) => (/[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text);
const two = (n: number) => String(n).padStart(2, "0");

/**
 * Generates CSV records (each without its line ending; the first is the header). The same
 * options give the same records.
 *
 * @example
 * for (const { text } of generateTransactionCsv({ count: 10, seed: 1 })) console.log(text);
 */
export function* generateTransactionCsv(options: TransactionOptions = {}): Generator<{ text: string; defect: TransactionDefect | undefined }> {
  const count = options.count ?? 1000;
  const random = seededRandom(options.seed ?? 42);
  const defectRate = options.defectRate ?? 0.01;
  const days = options.days ?? 30;
  yield { text: TRANSACTION_COLUMNS.join(","), defect: undefined };
  for (let i = 0; i < count; i++) {
    const day = 1 + random.int(days);
    const date = new Date(Date.UTC(2024, 4, day));
    const fraction = random.int(3) === 0 ? "" : `.${String(random.int(1_000_000)).padStart(6, "0")}`;
    const zone = random.int(5) === 0 ? "+02:00" : "Z";
    // An offset keeps the same UTC day only if the hour allows it; the partition is the UTC day either way.
    const at = `${date.toISOString().slice(0, 10)}T${two(random.int(24))}:${two(random.int(60))}:${two(random.int(60))}${fraction}${zone}`;
    const amount = random.next() < 0.05 ? -Math.round(random.next() * 10_000) / 100 : Math.round(random.next() * 150_000) / 100;
    const description = random.pick(DESCRIPTIONS);
    const cells = [
      `T${i.toString(36)}`,
      `AC${String(random.int(1_000_000)).padStart(6, "0")}`,
      String(amount),
      String(1 + random.int(20)),
      random.pick(TRANSACTION_CURRENCIES) as string,
      quote(random.pick(MERCHANTS)),
      description === null ? "" : description === "" ? '""' : quote(description),
      random.int(10) === 0 ? "true" : "false",
      at,
    ];
    let defect: TransactionDefect | undefined;
    if (random.next() < defectRate) {
      defect = random.pick(TRANSACTION_DEFECTS);
      switch (defect) {
        case "amount_not_a_number":
          cells[2] = random.pick(['"12,50"', "abc", "€5"]);
          break;
        case "amount_empty":
          cells[2] = "";
          break;
        case "quantity_not_integer":
          cells[3] = random.pick(["2.5", "2x"]);
          break;
        case "refunded_not_boolean":
          cells[7] = "maybe";
          break;
        case "missing_field":
          cells.splice(1 + random.int(cells.length - 1), 1);
          break;
        case "text_after_quote":
          cells[5] = '"Noodle Bar"x';
          break;
        case "impossible_timestamp":
          cells[8] = random.pick(["2024-02-30T10:00:00Z", "31/05/2024 10:00"]);
          break;
        case "lowercase_currency":
          cells[4] = "eur";
          break;
        case "bad_account":
          cells[1] = "AC12";
          break;
      }
    }
    yield { text: cells.join(","), defect };
  }
}

/**
 * Writes generated CSV (CRLF line endings) to `path`, flushing as it goes so memory stays flat
 * for any count; returns how many records carry each defect.
 *
 * @example
 * await writeTransactionCsv("data/tx.csv", { count: 1_000_000 });
 */
export async function writeTransactionCsv(path: string, options: TransactionOptions = {}): Promise<Record<string, number>> {
  // A file writer does not truncate: old bytes would survive past the new end.
  await rm(path, { force: true });
  const writer = Bun.file(path).writer({ highWaterMark: 1 << 20 });
  const defects: Record<string, number> = {};
  let pending: string[] = [];
  let size = 0;
  for (const { text, defect } of generateTransactionCsv(options)) {
    if (defect) defects[defect] = (defects[defect] ?? 0) + 1;
    pending.push(text);
    size += text.length;
    if (size > 1 << 20) {
      writer.write(`${pending.join("\r\n")}\r\n`);
      await writer.flush();
      pending = [];
      size = 0;
    }
  }
  if (pending.length > 0) writer.write(`${pending.join("\r\n")}\r\n`);
  await writer.end();
  return defects;
}
