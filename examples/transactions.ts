/**
 * A transaction classifier, reduced to run offline: CSV files of transactions → validation →
 * a prediction API called in batches of 100 → Parquet partitioned by day, with a lineage row in
 * PostgreSQL for every committed file (which lines of which input it holds).
 *
 *   bun examples/transactions.ts [outDir] [--table name] [--database url]
 *
 * generates three seeded CSV files (about 2% defects: bad amounts, impossible timestamps, a file
 * cut off inside a quoted field) into <outDir>/input, starts a local prediction API, and writes
 * <outDir>/transactions/tx_date=YYYY-MM-DD/*.parquet, <outDir>/dead-letter/*.ndjson and the
 * lineage table (default `transaction_lineage`) in postgres://postgres@127.0.0.1:5432/test.
 */
import { join } from "node:path";
import { SQL } from "bun";
import { concatMap } from "rxjs";
import * as v from "valibot";
import { civilFromDays, type Commit, formatSummary, fromCsv, isoInstant, parseIsoMicros, run, toParquet } from "sluice";
import { deadLetter, enrich, enrichBatch, validate } from "sluice/operators";
import { seededRandom } from "../src/generate/random.ts";

export const CURRENCIES = ["EUR", "USD", "GBP"] as const;
export const CLASSES = ["refund", "large", "groceries", "travel", "dining", "other"] as const;
const MERCHANTS: Record<string, (typeof CLASSES)[number]> = {
  "Fresh Market": "groceries",
  "Bio, Corner Shop": "groceries",
  "Rail & Co": "travel",
  'The "Blue" Airline': "travel",
  "Café Zürich": "dining",
  "Noodle Bar": "dining",
  "Hardware Depot": "other",
};

/** One input row. Nothing is coerced: fromCsv converts the cells, validate checks them. */
export const Transaction = v.object({
  tx_id: v.pipe(v.string(), v.minLength(1)),
  account: v.pipe(v.string(), v.regex(/^AC\d{6}$/, "account must be AC and six digits")),
  amount: v.number(),
  currency: v.picklist(CURRENCIES),
  merchant: v.string(),
  description: v.nullable(v.string()),
  at: isoInstant(),
});
export type Transaction = v.InferOutput<typeof Transaction>;

/** A stored row: the transaction, its UTC day and the API's prediction. */
export const Classified = v.object({
  ...Transaction.entries,
  tx_date: v.pipe(v.string(), v.isoDate()),
  class: v.picklist(CLASSES),
  score: v.number(),
});
export type Classified = v.InferOutput<typeof Classified>;

/** The rule the local prediction API applies (a stand-in for a model). */
export function predict(tx: Pick<Transaction, "amount" | "merchant">): { class: (typeof CLASSES)[number]; score: number } {
  if (tx.amount < 0) return { class: "refund", score: 0.99 };
  if (tx.amount >= 1000) return { class: "large", score: 0.9 };
  const known = MERCHANTS[tx.merchant];
  return known ? { class: known, score: 0.8 } : { class: "other", score: 0.5 };
}

/** A generated input row, with its line and the defect planted in it (if any). */
export interface GeneratedRow {
  readonly tx_id: string;
  readonly line: number;
  readonly defect: "bad_amount" | "bad_timestamp" | "unterminated_quote" | undefined;
  /** The values a valid row holds (undefined for a defect). */
  readonly values: Transaction | undefined;
}

const quote = (text: string) => (/[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text);

/**
 * The CSV text of one seeded input file and what each row is. The last file ends inside a quoted
 * field, as an upload cut off in transit does.
 */
export function generateTransactions(file: number, count: number, seed: number, truncated: boolean): { text: string; rows: GeneratedRow[] } {
  const random = seededRandom(seed * 1000 + file);
  const lines = ["tx_id,account,amount,currency,merchant,description,at"];
  const rows: GeneratedRow[] = [];
  let line = 1;
  const descriptions = [null, "", "monthly", "split, with a friend", 'gift for "Sam"', "two\nlines", "¡olé! 😀"];
  for (let i = 0; i < count; i++) {
    const tx_id = `T${file}-${String(i).padStart(6, "0")}`;
    const day = 1 + random.int(5);
    const at = `2024-05-0${day}T${String(random.int(24)).padStart(2, "0")}:${String(random.int(60)).padStart(2, "0")}:${String(random.int(60)).padStart(2, "0")}.${String(random.int(1000)).padStart(3, "0")}Z`;
    const amount = random.next() < 0.05 ? -Math.round(random.next() * 10000) / 100 : Math.round(random.next() * 150000) / 100;
    const merchant = random.pick(Object.keys(MERCHANTS).concat("Unknown Shop"));
    const description = random.pick(descriptions);
    const values: Transaction = {
      tx_id,
      account: `AC${String(random.int(1_000_000)).padStart(6, "0")}`,
      amount,
      currency: random.pick(CURRENCIES),
      merchant,
      description,
      at,
    };
    const roll = random.next();
    const defect = roll < 0.01 ? "bad_amount" : roll < 0.02 ? "bad_timestamp" : undefined;
    const amountText = defect === "bad_amount" ? random.pick(["12,50", "abc", "1.2.3", "", "€5"]) : String(amount);
    const atText = defect === "bad_timestamp" ? random.pick(["2024-02-30T10:00:00Z", "31/05/2024 10:00", "2024-05-01T25:00:00Z"]) : at;
    line++;
    const description_ = description === null ? "" : description === "" ? '""' : quote(description);
    lines.push([tx_id, values.account, amountText, values.currency, quote(merchant), description_, atText].join(","));
    rows.push({ tx_id, line, defect, values: defect ? undefined : values });
    line += (description ?? "").split("\n").length - 1;
  }
  let text = `${lines.join("\r\n")}\r\n`;
  if (truncated) {
    const tx_id = `T${file}-${String(count).padStart(6, "0")}`;
    text += `${tx_id},AC000001,10.5,EUR,Noodle Bar,"the upload stopped in the mid`;
    rows.push({ tx_id, line: line + 1, defect: "unterminated_quote", values: undefined });
  }
  return { text, rows };
}

/** Writes the seeded input files into `folder`; returns their paths and rows. */
export async function writeTransactions(folder: string, options: { files?: number; count?: number; seed?: number } = {}) {
  const files = options.files ?? 3;
  const written: { path: string; rows: GeneratedRow[] }[] = [];
  for (let f = 0; f < files; f++) {
    const { text, rows } = generateTransactions(f, options.count ?? 2000, options.seed ?? 1, f === files - 1);
    const path = join(folder, `transactions-${f}.csv`);
    await Bun.write(path, text);
    written.push({ path, rows });
  }
  return written;
}

/** The local prediction API: POST a JSON array of transactions, get predictions in the same order. */
export function startPredictionApi(): { url: string; calls: () => number; stop: () => void } {
  let calls = 0;
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    routes: {
      "/predict": {
        async POST(request) {
          calls++;
          const batch = (await request.json()) as Transaction[];
          return Response.json(batch.map((tx) => ({ tx_id: tx.tx_id, ...predict(tx) })));
        },
      },
    },
  });
  return { url: `http://127.0.0.1:${server.port}/predict`, calls: () => calls, stop: () => server.stop(true) };
}

/**
 * Classifies transactions with the prediction API, 100 per call, in order. `enrichBatch` keeps
 * each record's file and line through the asynchronous call (so lineage and dead letters name
 * the right row) and pauses the source while calls fall behind. A failed call (after callApi's
 * retries) errors the run: the API is infrastructure.
 */
export function classify(api: string) {
  return enrichBatch(
    async (txs: (Transaction & { tx_date: string })[]): Promise<Classified[]> => {
      const predictions = await callApi(api, txs);
      return txs.map((tx, i) => {
        const prediction = predictions[i];
        if (prediction?.tx_id !== tx.tx_id) throw new Error(`prediction API: answer ${i} is for ${prediction?.tx_id}, not ${tx.tx_id}`);
        return { ...tx, class: prediction.class, score: prediction.score };
      });
    },
    { size: 100 },
  );
}

async function callApi(url: string, batch: readonly Transaction[]) {
  let lastError: unknown;
  for (let attempt = 1; attempt <= 3; attempt++) {
    try {
      const response = await fetch(url, { method: "POST", body: JSON.stringify(batch), headers: { "content-type": "application/json" } });
      if (response.ok) return (await response.json()) as { tx_id: string; class: Classified["class"]; score: number }[];
      lastError = new Error(`HTTP ${response.status}`);
    } catch (error) {
      lastError = error;
    }
    await Bun.sleep(100 * attempt);
  }
  throw new Error(`prediction API at ${url} failed 3 times (${(lastError as Error).message}); is it running?`);
}

/** Adds the UTC day of the transaction, the partition key. */
export function withDate(tx: Transaction): Transaction & { tx_date: string } {
  return { ...tx, tx_date: civilFromDays(Math.floor(parseIsoMicros(tx.at) / 86_400_000_000)) };
}

/** Runs the job on `input` (a glob) into `outDir`, with lineage rows in `table`. */
export async function classifyTransactions(input: string, outDir: string, options: { api: string; sql: SQL; table?: string }) {
  const table = options.table ?? "transaction_lineage";
  const { sql } = options;
  await sql.unsafe(`CREATE TABLE IF NOT EXISTS ${table} (
    run_id text NOT NULL, source_file text NOT NULL, first_line integer NOT NULL, last_line integer NOT NULL,
    output_file text NOT NULL, output_rows integer NOT NULL, committed_at timestamptz NOT NULL DEFAULT now())`);
  let runId = "";
  const summary = await run(
    fromCsv(input, { schema: Transaction, concurrency: 2 }).pipe(
      validate(Transaction),
      enrich(withDate),
      classify(options.api),
      deadLetter(join(outDir, "dead-letter"), { mode: "overwrite" }),
      toParquet(join(outDir, "transactions"), { schema: Classified, partitionBy: ["tx_date"], mode: "overwrite" }),
      // One lineage row per input range in each file, once the file is durable.
      concatMap((commit: Commit) =>
        sql.begin(async (tx) => {
          for (const range of commit.sources) {
            await tx.unsafe(
              `INSERT INTO ${table} (run_id, source_file, first_line, last_line, output_file, output_rows) VALUES ($1, $2, $3, $4, $5, $6)`,
              [runId, range.source, range.firstLine, range.lastLine, commit.path, commit.rows],
            );
          }
        }),
      ),
    ),
    { onStart: (flow) => (runId = flow.runId), handleSignals: true },
  );
  // The dataset was overwritten: the lineage of earlier runs names files that now hold this run's rows.
  if (!summary.stopped) {
    const dataset = join(outDir, "transactions");
    await sql.unsafe(`DELETE FROM ${table} WHERE run_id <> $1 AND left(output_file, length($2)) = $2`, [runId, `${dataset}/`]);
  }
  return summary;
}

if (import.meta.main) {
  const args = Bun.argv.slice(2);
  const option = (name: string) => {
    const at = args.indexOf(name);
    return at >= 0 ? args.splice(at, 2)[1] : undefined;
  };
  const table = option("--table");
  const database = option("--database") ?? "postgres://postgres@127.0.0.1:5432/test";
  const outDir = args[0] ?? "out";
  await writeTransactions(join(outDir, "input"));
  const api = startPredictionApi();
  const sql = new SQL(database);
  try {
    const summary = await classifyTransactions(join(outDir, "input", "*.csv"), outDir, { api: api.url, sql, table });
    console.log(formatSummary(summary));
    console.log(`prediction API calls ${api.calls()}`);
    console.log(`dataset: ${join(outDir, "transactions")}   dead letters: ${join(outDir, "dead-letter")}   lineage: ${table ?? "transaction_lineage"}`);
  } finally {
    api.stop();
    await sql.close();
  }
}
