/**
 * `bun test/bench/stages.ts <csv|ndjson> <input> <outdir> [rounds]`: a sluice job cut after each
 * stage, to see what each stage adds: the CSV job (test/bench/csv-jobs.ts) or the clickstream
 * example (examples/clickstream.ts). The source alone (`fromCsv` or `fromNdjson` → `deadLetter`,
 * records counted and dropped), then with `validate`, with the job's `enrich`, and the whole job
 * with `toParquet`. Each cut runs in its own process, the four in turn for `rounds` rounds
 * (default 3); prints each run's wall seconds, the main thread's CPU seconds (from
 * /proc/thread-self/schedstat) and the process's, then the medians. Linux only.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ignoreElements, type Observable, tap } from "rxjs";
import type * as v from "valibot";
import { civilFromDays, fromCsv, fromNdjson, parseIsoMicros, run, toParquet } from "sluice";
import { deadLetter, enrich, validate } from "sluice/operators";
import { ClickEvent, EnrichedEvent, enrichEvent } from "../../examples/clickstream.ts";
import { StoredTransaction, Transaction } from "./csv-jobs.ts";

const CUTS = ["source", "validate", "enrich", "full"] as const;
type Cut = (typeof CUTS)[number];

interface StageRun {
  readonly cut: Cut;
  readonly wall: number;
  readonly main: number;
  readonly cpu: number;
  readonly records: number;
}

function mainThreadSeconds(): number {
  return Number(readFileSync("/proc/thread-self/schedstat", "utf8").split(" ")[0]) / 1e9;
}

/** A job's parts: its source, its input schema, its enrichment, and what its sink writes. */
interface Job {
  readonly source: (input: string) => Observable<unknown>;
  readonly schema: v.GenericSchema;
  readonly enrich: (record: any) => object;
  readonly stored: v.GenericSchema;
  readonly folder: string;
  readonly partition: string;
}

const JOBS: Record<string, Job> = {
  csv: {
    source: (input) => fromCsv(input, { schema: Transaction }),
    schema: Transaction,
    enrich: (tx: Transaction) => ({ ...tx, tx_date: civilFromDays(Math.floor(parseIsoMicros(tx.at) / 86_400_000_000)) }),
    stored: StoredTransaction,
    folder: "transactions",
    partition: "tx_date",
  },
  ndjson: { source: (input) => fromNdjson(input), schema: ClickEvent, enrich: enrichEvent, stored: EnrichedEvent, folder: "events", partition: "event_date" },
};

async function runCut(job: Job, cut: Cut, input: string, out: string): Promise<StageRun> {
  const cpu0 = process.cpuUsage();
  const main0 = mainThreadSeconds();
  const started = performance.now();
  let counted = 0;
  const count = () =>
    tap(() => {
      counted++;
    });
  const deadLetters = join(out, "dead-letter");
  const source = job.source(input);
  let pipeline: Observable<unknown>;
  if (cut === "source") pipeline = source.pipe(deadLetter(deadLetters, { mode: "overwrite" }), count(), ignoreElements());
  else if (cut === "validate") pipeline = source.pipe(validate(job.schema), deadLetter(deadLetters, { mode: "overwrite" }), count(), ignoreElements());
  else if (cut === "enrich") pipeline = source.pipe(validate(job.schema), enrich(job.enrich), deadLetter(deadLetters, { mode: "overwrite" }), count(), ignoreElements());
  else {
    pipeline = source.pipe(
      validate(job.schema),
      enrich(job.enrich),
      deadLetter(deadLetters, { mode: "overwrite" }),
      toParquet(join(out, job.folder), { schema: job.stored, partitionBy: [job.partition] as never[], mode: "overwrite" }),
    );
  }
  const summary = await run(pipeline);
  const cpu = process.cpuUsage(cpu0);
  return {
    cut,
    wall: (performance.now() - started) / 1000,
    main: mainThreadSeconds() - main0,
    cpu: (cpu.user + cpu.system) / 1e6,
    records: cut === "full" ? summary.written : counted,
  };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? (s[(s.length - 1) / 2] as number) : ((s[s.length / 2 - 1] as number) + (s[s.length / 2] as number)) / 2;
};

const [kind = "", input, out, arg] = Bun.argv.slice(2);
const job = JOBS[kind];
if (!job || !input || !out) throw new Error("usage: bun test/bench/stages.ts <csv|ndjson> <input> <outdir> [rounds]");
if (arg && (CUTS as readonly string[]).includes(arg)) {
  // The child: one cut, one JSON line.
  console.log(JSON.stringify(await runCut(job, arg as Cut, input, out)));
  process.exit(0);
}
const rounds = Number(arg ?? 3);
const runs: StageRun[] = [];
for (let r = 0; r < rounds; r++) {
  for (const cut of CUTS) {
    const child = Bun.spawnSync(["bun", import.meta.path, kind, input, join(out, cut), cut], { stderr: "inherit" });
    if (child.exitCode !== 0) throw new Error(`the ${cut} cut failed (exit code ${child.exitCode})`);
    const result = JSON.parse(child.stdout.toString().trim().split("\n").at(-1) ?? "") as StageRun;
    runs.push(result);
    console.log(`round ${r + 1} ${cut.padEnd(8)} ${result.wall.toFixed(2)} s wall, main thread ${result.main.toFixed(2)} s CPU, process ${result.cpu.toFixed(2)} s CPU, ${result.records} records`);
  }
}
console.log("\n| pipeline up to | main thread CPU s | process CPU s | wall s |\n| --- | ---: | ---: | ---: |");
for (const cut of CUTS) {
  const of = runs.filter((r) => r.cut === cut);
  console.log(`| ${cut} | ${median(of.map((r) => r.main)).toFixed(2)} | ${median(of.map((r) => r.cpu)).toFixed(2)} | ${median(of.map((r) => r.wall)).toFixed(2)} |`);
}
