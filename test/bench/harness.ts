/**
 * What the benchmarks share: running one engine's job in its own process and measuring it from
 * outside (wall clock around the whole process, CPU and peak RSS as the operating system counted
 * them, Parquet files and bytes it left), the job side of that protocol, and the printed tables
 * with ratios taken run by run against peers measured in the same session.
 */
import { readdirSync, statSync } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";

/** What a job prints as its last line on stdout. */
export interface JobReport {
  readonly rows: number;
  /** Rejects the engine reports, or null when it has no notion of them. */
  readonly rejected: number | null;
  readonly error?: string;
}

/** One measured run of one engine. */
export interface Measured extends JobReport {
  readonly engine: string;
  /** Whole process, start-up included. */
  readonly seconds: number;
  /** User + system seconds of the whole process. */
  readonly cpuSeconds: number;
  readonly peakRssMB: number;
  /** Parquet files and their bytes under the output folder. */
  readonly files: number;
  readonly bytes: number;
}

/** Parquet files (count and bytes) anywhere under `folder`. */
export function parquetFiles(folder: string): { files: number; bytes: number } {
  let files = 0;
  let bytes = 0;
  let entries: string[];
  try {
    entries = readdirSync(folder, { recursive: true }) as string[];
  } catch {
    return { files, bytes };
  }
  for (const entry of entries) {
    if (!entry.endsWith(".parquet")) continue;
    files++;
    bytes += statSync(join(folder, entry)).size;
  }
  return { files, bytes };
}

/**
 * Runs `argv` (a job that ends by printing a {@link JobReport} line), measures it, counts the
 * Parquet files it wrote under `out`, then removes `out`. A job that exits non-zero is returned
 * with its `error` (the report's, or the exit code) so the caller decides whether that is fatal.
 */
export async function measure(engine: string, argv: string[], out: string): Promise<Measured> {
  await rm(out, { recursive: true, force: true });
  const started = performance.now();
  const child = Bun.spawnSync(argv, { stderr: "inherit", env: { ...process.env } });
  const seconds = (performance.now() - started) / 1000;
  const usage = child.resourceUsage;
  const last = child.stdout.toString().trim().split("\n").at(-1) ?? "";
  let report: JobReport;
  try {
    report = JSON.parse(last) as JobReport;
  } catch {
    report = { rows: 0, rejected: null, error: `exit code ${child.exitCode}, no report (${last.slice(0, 200)})` };
  }
  if (child.exitCode !== 0 && report.error === undefined) report = { ...report, error: `exit code ${child.exitCode}` };
  const { files, bytes } = parquetFiles(out);
  await rm(out, { recursive: true, force: true });
  return {
    engine,
    rows: report.rows,
    rejected: report.rejected,
    ...(report.error === undefined ? {} : { error: report.error }),
    seconds,
    cpuSeconds: usage ? Number(usage.cpuTime.user + usage.cpuTime.system) / 1e6 : Number.NaN,
    peakRssMB: usage ? usage.maxRSS / 2 ** 20 : Number.NaN,
    files,
    bytes,
  };
}

/**
 * The job side: runs `engines[argv[0]](input, out, ...rest)` and prints its report as one JSON
 * line; an engine that throws prints `error` and exits 3.
 */
export async function runJob(
  engines: Record<string, (input: string, out: string, ...rest: string[]) => Promise<JobReport>>,
  argv: string[],
): Promise<never> {
  const [engine, input, out, ...rest] = argv;
  const job = engine === undefined ? undefined : engines[engine];
  if (!job || !input || !out) {
    console.error(`usage: <${Object.keys(engines).join("|")}> <input> <outdir> [...]`);
    process.exit(2);
  }
  try {
    await mkdir(out, { recursive: true });
    console.log(JSON.stringify(await job(input, out, ...rest)));
    process.exit(0);
  } catch (error) {
    console.log(JSON.stringify({ rows: 0, rejected: null, error: (error as Error).message ?? String(error) }));
    process.exit(3);
  }
}

export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  return s.length % 2 ? (s[(s.length - 1) / 2] as number) : ((s[s.length / 2 - 1] as number) + (s[s.length / 2] as number)) / 2;
};

/** Results by engine, one entry per round (undefined where that round's run failed). */
export type Rounds = Record<string, (Measured | undefined)[]>;

type Key = "seconds" | "cpuSeconds" | "peakRssMB";

/** engine ÷ base for each round where both ran (back to back, so the machine's load was alike). */
export function pairedRatios(rounds: Rounds, engine: string, base: string, key: Key): number[] {
  const a = rounds[engine] ?? [];
  const b = rounds[base] ?? [];
  const ratios: number[] = [];
  a.forEach((x, i) => {
    const y = b[i];
    if (x && y && !x.error && !y.error) ratios.push(x[key] / y[key]);
  });
  return ratios;
}

/** Median over rounds of engine ÷ base, taken round by round. */
export const pairedRatio = (rounds: Rounds, engine: string, base: string, key: Key): number => median(pairedRatios(rounds, engine, base, key));

const mb = (bytes: number) => (bytes / 2 ** 20).toFixed(1);
const n = (x: number) => Math.round(x).toLocaleString("en-US");

/** Prints one line for a finished run. */
export function printRun(round: number, rounds: number, m: Measured): void {
  const what = m.error
    ? `FAILED: ${m.error}`
    : `${n(m.rows)} rows${m.rejected === null ? "" : `, ${n(m.rejected)} rejects`}, ${m.files} files, ${mb(m.bytes)} MiB`;
  console.log(
    `run ${round + 1}/${rounds} ${m.engine.padEnd(22)} ${m.seconds.toFixed(2).padStart(7)} s wall ${m.cpuSeconds.toFixed(2).padStart(7)} s CPU ${m.peakRssMB.toFixed(0).padStart(6)} MB  ${what}`,
  );
}

/**
 * Prints the medians of every engine (wall, CPU, peak RSS, files, MiB written, rows, rejects,
 * input records per second of wall time) and the paired ratios against each baseline.
 */
export function printTable(title: string, records: number, rounds: Rounds, baselines: readonly string[]): void {
  console.log(`\n${title}, median of ${Math.max(...Object.values(rounds).map((r) => r.length))} run(s)`);
  console.log("| engine | wall s | CPU s | peak RSS MB | files | MiB written | rows | rejects | records/s |");
  console.log("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
  for (const [engine, runs] of Object.entries(rounds)) {
    const ok = runs.filter((r): r is Measured => r !== undefined && !r.error);
    if (ok.length === 0) {
      const failed = runs.find((r) => r?.error);
      console.log(`| ${engine} | failed after ${failed?.seconds.toFixed(2)} s: ${failed?.error?.slice(0, 120)} |`);
      continue;
    }
    const med = (f: (m: Measured) => number) => median(ok.map(f));
    const rejects = ok[0]?.rejected === null ? "–" : n(med((m) => m.rejected ?? 0));
    console.log(
      `| ${engine} | ${med((m) => m.seconds).toFixed(2)} | ${med((m) => m.cpuSeconds).toFixed(2)} | ${n(med((m) => m.peakRssMB))} | ${n(med((m) => m.files))} | ${mb(med((m) => m.bytes))} | ${n(med((m) => m.rows))} | ${rejects} | ${n(records / med((m) => m.seconds))} |`,
    );
  }
  for (const base of baselines) {
    if (!rounds[base]?.some((r) => r && !r.error)) continue;
    console.log(`\nratios against ${base}, paired run by run: median (min–max)`);
    console.log(`  ${"engine".padEnd(22)} ${"wall".padEnd(17)} ${"CPU".padEnd(17)} peak RSS`);
    for (const engine of Object.keys(rounds)) {
      if (engine === base) continue;
      const r = (key: Key) => {
        const xs = pairedRatios(rounds, engine, base, key);
        return `${median(xs).toFixed(2)} (${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)})`.padEnd(17);
      };
      if (pairedRatios(rounds, engine, base, "seconds").length === 0) continue;
      console.log(`  ${engine.padEnd(22)} ${r("seconds")} ${r("cpuSeconds")} ${r("peakRssMB")}`);
    }
  }
}

/** Rounds of `engines`, each run in turn in its own process; prints each run as it ends. */
export async function runRounds(
  engines: readonly string[],
  runs: number,
  command: (engine: string, out: string) => string[],
  outRoot: string,
  onRound?: (round: number, results: Record<string, Measured>) => void,
): Promise<Rounds> {
  const rounds: Rounds = Object.fromEntries(engines.map((e) => [e, []]));
  for (let r = 0; r < runs; r++) {
    const results: Record<string, Measured> = {};
    for (const engine of engines) {
      // Named by this process too: two benchmarks run at once (bench:csv and bench:json) must not
      // remove each other's output while it is written.
      const out = join(outRoot, `out-${engine}-${process.pid}`);
      const m = await measure(engine, command(engine, out), out);
      printRun(r, runs, m);
      results[engine] = m;
      (rounds[engine] as (Measured | undefined)[]).push(m);
    }
    onRound?.(r, results);
  }
  return rounds;
}
