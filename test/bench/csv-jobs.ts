/**
 * The CSV job, one engine per process (run by test/bench/csv.ts through harness.ts): generated
 * transactions (src/generate/transactions.ts) → typed, checked records → Parquet partitioned by
 * the UTC day, with rejects kept.
 *
 *   bun test/bench/csv-jobs.ts <sluice|duckdb> <input.csv> <outdir>
 *
 * - sluice: `fromCsv(schema) → validate → enrich(tx_date) → deadLetter → toParquet`.
 * - duckdb: `read_csv` with every column's type declared and `store_rejects` (a rejects table
 *   with file, line and reason), then the checks a declared type cannot make (pattern, list,
 *   non-null) as SQL, their failures into a second rejects table, the rest to hive-partitioned
 *   Parquet with `COPY ... PARTITION_BY`. It is the peer, not the reference: DuckDB rounds "2.5"
 *   into a BIGINT column instead of refusing it (docs/benchmarks.md).
 */
import { join } from "node:path";
import * as v from "valibot";
import { civilFromDays, fromCsv, isoInstant, parseIsoMicros, run, toParquet } from "sluice";
import { deadLetter, enrich, validate } from "sluice/operators";
import { TRANSACTION_CURRENCIES } from "../../src/generate/transactions.ts";
import { runJob } from "./harness.ts";

/** One input row; fromCsv converts each cell to the type its field takes. */
export const Transaction = v.object({
  tx_id: v.pipe(v.string(), v.minLength(1)),
  account: v.pipe(v.string(), v.regex(/^AC\d{6}$/, "account must be AC and six digits")),
  amount: v.number(),
  quantity: v.pipe(v.number(), v.integer()),
  currency: v.picklist(TRANSACTION_CURRENCIES),
  merchant: v.string(),
  description: v.nullable(v.string()),
  refunded: v.boolean(),
  at: isoInstant(),
});
export type Transaction = v.InferOutput<typeof Transaction>;

/** A stored row: the transaction and its UTC day. */
export const StoredTransaction = v.object({ ...Transaction.entries, tx_date: v.pipe(v.string(), v.isoDate()) });

function sluiceCsv(input: string, out: string) {
  return run(
    fromCsv(input, { schema: Transaction }).pipe(
      validate(Transaction),
      enrich((tx) => ({ ...tx, tx_date: civilFromDays(Math.floor(parseIsoMicros(tx.at) / 86_400_000_000)) })),
      deadLetter(join(out, "dead-letter"), { mode: "overwrite" }),
      toParquet(join(out, "transactions"), { schema: StoredTransaction, partitionBy: ["tx_date"], mode: "overwrite" }),
    ),
  );
}

const sq = (s: string) => `'${s.replaceAll("'", "''")}'`;

async function duckdbCsv(input: string, out: string): Promise<{ rows: number; rejected: number }> {
  // Loaded here, not at the top: sluice's process must not pay for DuckDB's native library.
  const { DuckDBInstance } = await import("@duckdb/node-api");
  const c = await (await DuckDBInstance.create(":memory:")).connect();
  await c.run("SET TimeZone = 'UTC'");
  await c.run(`
    CREATE TEMP TABLE typed AS
    SELECT *, ("at" AT TIME ZONE 'UTC')::DATE AS tx_date
    FROM read_csv(${sq(input)}, header = true, auto_detect = false, delim = ',', quote = '"', escape = '"',
      allow_quoted_nulls = false, store_rejects = true, rejects_table = 'read_rejects', rejects_scan = 'read_scans',
      columns = {'tx_id': 'VARCHAR', 'account': 'VARCHAR', 'amount': 'DOUBLE', 'quantity': 'BIGINT', 'currency': 'VARCHAR',
                 'merchant': 'VARCHAR', 'description': 'VARCHAR', 'refunded': 'BOOLEAN', 'at': 'TIMESTAMPTZ'})`);
  // What the declared types do not check: a required value present, a pattern, a list.
  const valid = `tx_id IS NOT NULL AND length(tx_id) > 0 AND account IS NOT NULL AND regexp_full_match(account, 'AC[0-9]{6}')
    AND amount IS NOT NULL AND quantity IS NOT NULL AND refunded IS NOT NULL AND merchant IS NOT NULL AND "at" IS NOT NULL
    AND currency IN (${TRANSACTION_CURRENCIES.map(sq).join(", ")})`;
  await c.run(`CREATE TEMP TABLE check_rejects AS SELECT * FROM typed WHERE NOT coalesce(${valid}, false)`);
  await c.run(
    `COPY (SELECT * FROM typed WHERE coalesce(${valid}, false)) TO ${sq(join(out, "transactions"))} (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (tx_date), OVERWRITE_OR_IGNORE)`,
  );
  const reader = await c.runAndReadAll(`SELECT
    (SELECT count(*) FROM typed) - (SELECT count(*) FROM check_rejects),
    (SELECT count(DISTINCT (file_id, line)) FROM read_rejects) + (SELECT count(*) FROM check_rejects)`);
  const [rows, rejected] = reader.getRows()[0] ?? [];
  return { rows: Number(rows), rejected: Number(rejected) };
}

if (import.meta.main) {
  await runJob(
    {
      async sluice(input, out) {
        const summary = await sluiceCsv(input, out);
        return { rows: summary.written, rejected: summary.deadLettered };
      },
      duckdb: duckdbCsv,
    },
    Bun.argv.slice(2),
  );
}
