/**
 * `bun run bench:sql [--count N] [--runs R] [--batch-rows B]`: loads N generated rows into
 * PostgreSQL (127.0.0.1:5432, db `test`) with `toSql` (NDJSON file → toSql, insert mode) and with
 * `psql`'s `\copy ... FROM` (the same rows as a COPY text file), each in its own process, and
 * prints wall time, CPU seconds (user + system of the client process: the server's work is in
 * neither), peak RSS and rows/s, with the ratios toSql ÷ psql taken run by run. Both tables are
 * counted afterwards: a run that did not load every row is an error, not a result.
 *
 * Run by hand, not in the suite (a 1M-row run takes about a minute on a busy 2-core machine).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { SQL } from "bun";
import type { OperatorFunction } from "rxjs";
import * as v from "valibot";

const URL = process.env.SLUICE_BENCH_PG ?? "postgres://postgres@127.0.0.1:5432/test";

const Event = v.object({
  event_id: v.string(),
  user_id: v.string(),
  amount: v.number(),
  at: v.pipe(v.string(), v.isoTimestamp()),
  flag: v.boolean(),
  day: v.pipe(v.string(), v.isoDate()),
  items: v.pipe(v.number(), v.integer()),
});

const COLUMNS = "event_id text NOT NULL, user_id text NOT NULL, amount double precision NOT NULL, at timestamptz NOT NULL, flag boolean NOT NULL, day date NOT NULL, items bigint NOT NULL";

/** The child: one toSql load of `file` into `table`, printing the run summary as JSON. */
async function child(file: string, table: string, batchRows: number): Promise<void> {
  const { fromNdjson, run, toSql } = await import("../../src/index.ts");
  // No validate step: toSql checks every value against the schema itself.
  const sink = toSql(URL, table, { schema: Event, mode: "insert", batchRows }) as OperatorFunction<unknown, unknown>;
  const summary = await run(fromNdjson(file).pipe(sink));
  console.log(JSON.stringify({ rows: summary.written }));
}

/** Writes `count` rows as NDJSON (for toSql) and as COPY text (for psql), a chunk at a time. */
async function generate(folder: string, count: number): Promise<{ ndjson: string; tsv: string }> {
  const ndjson = join(folder, "events.ndjson");
  const tsv = join(folder, "events.tsv");
  const a = Bun.file(ndjson).writer();
  const b = Bun.file(tsv).writer();
  const start = Date.parse("2024-03-01T00:00:00Z");
  for (let i = 0; i < count; i++) {
    const at = new Date(start + i * 997).toISOString();
    const row = {
      event_id: `e-${i}`,
      user_id: `user-${(i * 7919) % 50_000}`,
      amount: Math.round(((i * 37) % 100_000) * 1.01) / 100,
      at,
      flag: i % 3 === 0,
      day: at.slice(0, 10),
      items: 1 + (i % 9),
    };
    a.write(`${JSON.stringify(row)}\n`);
    b.write(`${row.event_id}\t${row.user_id}\t${row.amount}\t${row.at}\t${row.flag ? "t" : "f"}\t${row.day}\t${row.items}\n`);
    if (i % 50_000 === 0) {
      await a.flush();
      await b.flush();
    }
  }
  await a.end();
  await b.end();
  return { ndjson, tsv };
}

interface Measured {
  readonly seconds: number;
  readonly cpuSeconds: number;
  readonly peakRssMB: number;
  readonly rows: number;
}

/** Runs `argv` in its own process and measures it from outside; then counts the table. */
async function measure(sql: SQL, argv: string[], table: string): Promise<Measured> {
  const started = performance.now();
  const proc = Bun.spawnSync(argv, { stdout: "pipe", stderr: "inherit" });
  const seconds = (performance.now() - started) / 1000;
  if (proc.exitCode !== 0) throw new Error(`${argv.slice(0, 2).join(" ")} exited ${proc.exitCode}: ${proc.stdout.toString().slice(-500)}`);
  const usage = proc.resourceUsage;
  const [{ n }] = (await sql.unsafe(`SELECT count(*)::int AS n FROM ${table}`)) as { n: number }[];
  return {
    seconds,
    cpuSeconds: usage ? Number(usage.cpuTime.user + usage.cpuTime.system) / 1e6 : Number.NaN,
    peakRssMB: usage ? usage.maxRSS / 2 ** 20 : Number.NaN,
    rows: n,
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Bun.argv.slice(2),
    options: { count: { type: "string" }, runs: { type: "string" }, "batch-rows": { type: "string" } },
  });
  const count = Number(values.count ?? 1_000_000);
  const runs = Number(values.runs ?? 1);
  const batchRows = Number(values["batch-rows"] ?? 10_000);
  const folder = mkdtempSync(join(tmpdir(), "sluice-bench-sql-"));
  const sql = new SQL({ url: URL, max: 1 });
  const table = `sluice_bench_sql_${process.pid}`;
  try {
    console.log(`generating ${count.toLocaleString("en-US")} rows in ${folder}`);
    const { ndjson, tsv } = await generate(folder, count);
    const results: { toSql: Measured; psql: Measured }[] = [];
    for (let r = 0; r < runs; r++) {
      await sql.unsafe(`DROP TABLE IF EXISTS ${table}; CREATE TABLE ${table} (${COLUMNS})`).simple();
      const psql = await measure(
        sql,
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", URL, "-c", `\\copy ${table} FROM '${tsv}'`],
        table,
      );
      await sql.unsafe(`DROP TABLE IF EXISTS ${table}; CREATE TABLE ${table} (${COLUMNS})`).simple();
      const load = await measure(sql, ["bun", import.meta.path, "--child", ndjson, table, String(batchRows)], table);
      for (const [name, m] of [["psql", psql], ["toSql", load]] as const) {
        if (m.rows !== count) throw new Error(`${name} loaded ${m.rows} rows, not ${count}`);
      }
      results.push({ toSql: load, psql });
    }
    const f = (x: number, d = 2) => x.toLocaleString("en-US", { minimumFractionDigits: d, maximumFractionDigits: d });
    console.log(`\n${count.toLocaleString("en-US")} rows × 7 columns into PostgreSQL, batchRows ${batchRows}, ${runs} run(s)\n`);
    console.log("| run | loader | wall | CPU (client) | peak RSS | rows/s | toSql ÷ psql (wall, CPU, RSS) |");
    console.log("| --- | --- | --- | --- | --- | --- | --- |");
    results.forEach(({ toSql, psql }, i) => {
      const line = (name: string, m: Measured, ratio: string) =>
        `| ${i + 1} | ${name} | ${f(m.seconds)} s | ${f(m.cpuSeconds)} s | ${f(m.peakRssMB, 0)} MB | ${f(count / m.seconds, 0)} | ${ratio} |`;
      console.log(line("toSql", toSql, `${f(toSql.seconds / psql.seconds)}, ${f(toSql.cpuSeconds / psql.cpuSeconds)}, ${f(toSql.peakRssMB / psql.peakRssMB)}`));
      console.log(line("psql \\copy", psql, "1"));
    });
  } finally {
    await sql.unsafe(`DROP TABLE IF EXISTS ${table}`).catch(() => {});
    await sql.unsafe("DELETE FROM _sluice_commits WHERE table_name = $1", [table]).catch(() => {});
    await sql.close();
    rmSync(folder, { recursive: true, force: true });
  }
}

if (Bun.argv[2] === "--child") await child(Bun.argv[3] as string, Bun.argv[4] as string, Number(Bun.argv[5]));
else await main();
