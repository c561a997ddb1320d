/**
 * The transaction classifier's batch half on object storage and a database: CSV objects in a
 * bucket → validation → a prediction API called in batches of 100 → day-partitioned Parquet in
 * the bucket AND the same classified rows upserted into PostgreSQL, in one run.
 *
 *   bun examples/transactions-bucket.ts --bucket s3://lake[/prefix] [--checkpoint file]
 *     [--database url] [--table name] [--count rows-per-file] [--batch-rows n] [--max-file-rows n]
 *
 * The endpoint and credentials come from the standard variables (S3_ENDPOINT or AWS_ENDPOINT_URL,
 * AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION). The script uploads the three seeded CSV
 * files of examples/transactions.ts (about 2% defects) to <bucket>/input/ when they are not there
 * yet, then reads <bucket>/input/*.csv and writes:
 * - <bucket>/transactions/tx_date=YYYY-MM-DD/*.parquet, listed in <bucket>/transactions/_manifest/;
 * - <bucket>/dead-letter/*.ndjson: every bad row, once;
 * - the table (default `transactions`) in postgres://postgres@127.0.0.1:5432/test, keyed by tx_id,
 *   with lineage columns (`_sluice_run_id`, `_sluice_input`, `_sluice_line`), and its ledger
 *   `_sluice_commits`.
 *
 * Nothing lost, nothing duplicated: both sinks hang off one source through RxJS's `connect`, so
 * each record reaches both (they are subscribed before the source starts), and the run's
 * checkpoint (a local SQLite file, default `out/transactions-bucket.sqlite`) resumes below what
 * either sink has not committed. Re-run with the same checkpoint, it skips finished inputs and
 * leaves the bucket and the table as they were; after a crash it writes only what is missing
 * (each sink skips what its own ledger holds). Started without the checkpoint that wrote an
 * existing dataset, it refuses before reading anything.
 */
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { connect, merge } from "rxjs";
import {
  type Commit,
  formatBytes,
  fromCsv,
  listKeys,
  readManifest,
  run,
  type RunSummary,
  type SqlCommit,
  toParquet,
  toSql,
  uploadFile,
} from "sluice";
import { deadLetter, enrich, validate } from "sluice/operators";
import { Classified, classify, startPredictionApi, Transaction, withDate, writeTransactions } from "./transactions.ts";

/** Where one run reads and writes. */
export interface BucketJob {
  /** `s3://bucket` or `s3://bucket/prefix`: inputs under `input/`, the dataset under `transactions/`, dead letters under `dead-letter/`. */
  readonly bucket: string;
  /** The local checkpoint file. */
  readonly checkpoint: string;
  /** A PostgreSQL URL. */
  readonly database: string;
  readonly table: string;
  /** The prediction API's URL. */
  readonly api: string;
  /** Rows per PostgreSQL batch and transaction (toSql's `batchRows`, default 10,000). */
  readonly batchRows?: number;
  /** Rows per Parquet object at most (toParquet's `maxFileRows`, default unlimited). */
  readonly maxFileRows?: number;
}

/** The URLs a job's bucket holds. */
export function bucketLayout(bucket: string) {
  const base = bucket.replace(/\/+$/, "");
  return { input: `${base}/input`, dataset: `${base}/transactions`, deadLetters: `${base}/dead-letter` };
}

/**
 * Uploads the seeded input files to `<bucket>/input/` (one PUT each), leaving any that are there
 * already: a re-run reads the same objects (same ETags), which its checkpoint requires.
 * Returns the keys uploaded.
 */
export async function uploadInputs(bucket: string, options: { count?: number } = {}): Promise<string[]> {
  const { input } = bucketLayout(bucket);
  const present = new Set<string>();
  for await (const object of listKeys(`${input}/`)) present.add(object.url);
  // The names writeTransactions gives its three files: generate nothing when all are there.
  if ([0, 1, 2].every((f) => present.has(`${input}/transactions-${f}.csv`))) return [];
  const local = await mkdtemp(join(tmpdir(), "sluice-transactions-input-"));
  try {
    const files = await writeTransactions(local, options.count === undefined ? {} : { count: options.count });
    const uploaded: string[] = [];
    for (const { path } of files) {
      const url = `${input}/${basename(path)}`;
      if (present.has(url)) continue;
      await uploadFile(path, url);
      uploaded.push(url);
    }
    return uploaded;
  } finally {
    await rm(local, { recursive: true, force: true });
  }
}

/** What a run did, per sink (the run summary's `written` adds both sinks' rows). */
export interface BucketRunResult {
  readonly summary: RunSummary;
  /** Rows in Parquet objects this run committed, and how many objects. */
  readonly parquetRows: number;
  readonly parquetFiles: number;
  /** Rows this run upserted into the table. */
  readonly tableRows: number;
}

/**
 * Classifies `<bucket>/input/*.csv` into the bucket's dataset and the PostgreSQL table in one
 * run. Rejects before reading anything when the dataset exists but the checkpoint file does not
 * (the dataset was written under another checkpoint: writing it again would duplicate it).
 */
export async function classifyBucket(job: BucketJob): Promise<BucketRunResult> {
  const { input, dataset, deadLetters } = bucketLayout(job.bucket);
  if (!existsSync(job.checkpoint) && ((await readManifest(dataset))?.length ?? 0) > 0) {
    throw new Error(
      `${dataset} holds a dataset already and the checkpoint ${job.checkpoint} does not exist: pass the checkpoint of the run that wrote it (--checkpoint), or write to another bucket or prefix`,
    );
  }
  let parquetRows = 0;
  let parquetFiles = 0;
  let tableRows = 0;
  const pipeline = fromCsv(`${input}/*.csv`, { schema: Transaction, concurrency: 2 }).pipe(
    validate(Transaction),
    enrich(withDate),
    classify(job.api),
    deadLetter(deadLetters, { mode: "error" }),
    // `connect` subscribes both sinks to one shared stream before it subscribes to the source, so
    // neither can miss a record; each commits on its own schedule, and the checkpoint's resume
    // points stay below the lowest line either holds uncommitted.
    connect((classified) =>
      merge(
        classified.pipe(
          toParquet(dataset, { schema: Classified, partitionBy: ["tx_date"], mode: "error", ...(job.maxFileRows ? { maxFileRows: job.maxFileRows } : {}) }),
        ),
        classified.pipe(
          toSql(job.database, job.table, {
            schema: Classified,
            mode: "upsert",
            key: ["tx_id"],
            create: true,
            lineage: true,
            ...(job.batchRows ? { batchRows: job.batchRows } : {}),
          }),
        ),
      ),
    ),
  );
  const summary = await run(pipeline, {
    checkpoint: job.checkpoint,
    handleSignals: true,
    onValue(value) {
      const commit = value as Commit | SqlCommit;
      if ("table" in commit) tableRows += commit.rows;
      else {
        parquetRows += commit.rows;
        parquetFiles++;
      }
    },
  });
  return { summary, parquetRows, parquetFiles, tableRows };
}

/** The result as aligned lines: per sink, since the run summary's `written` counts both. */
export function formatBucketRun(result: BucketRunResult, job: BucketJob): string {
  const { summary } = result;
  const n = (x: number) => x.toLocaleString("en-US");
  const stages = Object.entries(summary.deadLetteredByStage).map(([stage, count]) => `${stage} ${n(count)}`);
  const rows = [
    ["run", summary.runId + (summary.stopped ? " (stopped early)" : "")],
    ["records in", n(summary.in)],
    ["parquet rows", `${n(result.parquetRows)} in ${n(result.parquetFiles)} objects (${formatBytes(summary.bytes)}) under ${bucketLayout(job.bucket).dataset}`],
    ["table rows", `${n(result.tableRows)} upserted into ${job.table}`],
    ["dead-lettered", `${n(summary.deadLettered)}${stages.length > 0 ? ` (${stages.join(", ")})` : ""}`],
    ...(summary.in === 0 ? [["note", `every input was finished by an earlier run of ${job.checkpoint}: nothing to do`]] : []),
  ];
  return rows.map(([k, v]) => `${(k as string).padEnd(14)} ${v}`).join("\n");
}

if (import.meta.main) {
  const args = Bun.argv.slice(2);
  const option = (name: string) => {
    const at = args.indexOf(name);
    return at >= 0 ? args.splice(at, 2)[1] : undefined;
  };
  const bucket = option("--bucket");
  if (!bucket?.startsWith("s3://")) {
    console.error(
      "usage: bun examples/transactions-bucket.ts --bucket s3://bucket[/prefix] [--checkpoint file] [--database url] [--table name] [--count rows-per-file] [--batch-rows n] [--max-file-rows n]",
    );
    process.exit(2);
  }
  /** A positive whole number given as `name`, or undefined; exits with a usage error otherwise. */
  const positive = (name: string) => {
    const text = option(name);
    const value = text === undefined ? undefined : Number(text);
    if (value !== undefined && !(Number.isSafeInteger(value) && value > 0)) {
      console.error(`${name} ${JSON.stringify(text)}: expected a positive whole number`);
      process.exit(2);
    }
    return value;
  };
  const count = positive("--count");
  const batchRows = positive("--batch-rows");
  const maxFileRows = positive("--max-file-rows");
  // A failure prints its message alone (it names the bucket, key or table, never a credential).
  try {
    const uploaded = await uploadInputs(bucket, count === undefined ? {} : { count });
    console.log(`uploaded ${uploaded.length} input object(s) to ${bucketLayout(bucket).input}/`);
    const api = startPredictionApi();
    try {
      const job: BucketJob = {
        bucket,
        checkpoint: option("--checkpoint") ?? "out/transactions-bucket.sqlite",
        database: option("--database") ?? "postgres://postgres@127.0.0.1:5432/test",
        table: option("--table") ?? "transactions",
        api: api.url,
        ...(batchRows ? { batchRows } : {}),
        ...(maxFileRows ? { maxFileRows } : {}),
      };
      const result = await classifyBucket(job);
      console.log(formatBucketRun(result, job));
      console.log(`prediction API calls ${api.calls()}`);
    } finally {
      api.stop();
    }
  } catch (error) {
    console.error(`transactions-bucket: ${error instanceof Error ? error.message : String(error)}`);
    process.exitCode = 1;
  }
}
