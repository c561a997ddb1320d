import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { SQL } from "bun";
import { type GeneratedRow, generateTransactions, predict } from "../../examples/transactions.ts";
import { readDeadLetters } from "../../src/index.ts";
import { query, tempDir } from "../helpers/duckdb.ts";

const DATABASE = "postgres://postgres@127.0.0.1:5432/test";

describe("the transactions example", () => {
  let dir: { path: string; remove: () => Promise<void> };
  const table = `lineage_test_${process.pid}_${Date.now()}`;
  const sql = new SQL(DATABASE);
  let stdout = "";
  // What the example generates, worked out here from the same seeded generator.
  const inputs: { path: string; rows: GeneratedRow[] }[] = [];

  beforeAll(async () => {
    dir = await tempDir("sluice-transactions-");
    for (let f = 0; f < 3; f++) {
      inputs.push({ path: join(dir.path, "input", `transactions-${f}.csv`), rows: generateTransactions(f, 2000, 1, f === 2).rows });
    }
    const child = Bun.spawn(["bun", join(import.meta.dir, "../../examples/transactions.ts"), dir.path, "--table", table], {
      stdout: "pipe",
      stderr: "pipe",
    });
    const [out, err, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
    stdout = out;
    if (code !== 0) throw new Error(`the example exited with ${code}: ${err}`);
  });

  afterAll(async () => {
    await sql.unsafe(`DROP TABLE IF EXISTS ${table}`);
    await sql.close();
    await dir.remove();
  });

  const all = () => inputs.flatMap((input) => input.rows.map((row) => ({ ...row, source: input.path })));

  test("writes every valid transaction exactly once, with the class and score the API gave it", async () => {
    const rows = await query(`
      SELECT tx_id, account, amount, currency, merchant, description, "at", tx_date::VARCHAR AS tx_date, class, score
      FROM read_parquet('${join(dir.path, "transactions")}/**/*.parquet', hive_partitioning = true)`);
    const valid = all().filter((row) => row.values);
    expect(rows.length).toBe(valid.length);
    const byId = new Map(rows.map((row) => [row.tx_id, row]));
    expect(byId.size).toBe(rows.length);
    for (const { values } of valid) {
      if (!values) continue;
      const row = byId.get(values.tx_id) as Record<string, unknown>;
      const at = String(row.at);
      expect({ ...row, at: undefined } as Record<string, unknown>).toEqual({
        ...values,
        at: undefined,
        tx_date: values.at.slice(0, 10),
        ...predict(values),
      });
      // DuckDB prints timestamps as "2024-05-01 10:00:00.123+00"; compare the instant.
      expect(Date.parse(at.replace(" ", "T").replace(/\+00$/, "Z"))).toBe(Date.parse(values.at));
    }
    expect(stdout).toContain(`written        ${valid.length.toLocaleString("en-US")}`);
  });

  test("dead-letters every planted defect with its file and line, the truncated record at stage parse", async () => {
    const entries = [];
    for await (const entry of readDeadLetters(join(dir.path, "dead-letter"))) entries.push(entry);
    const defects = all().filter((row) => row.defect);
    expect(defects.length).toBeGreaterThan(60);
    const key = (source: string, line: number) => `${source}:${line}`;
    expect(entries.map((e) => key(e.source, e.line)).sort()).toEqual(defects.map((d) => key(d.source, d.line)).sort());
    const truncated = entries.find((e) => e.error.startsWith("unterminated quoted field"));
    expect(truncated).toMatchObject({ stage: "parse", source: inputs[2]?.path, line: inputs[2]?.rows.at(-1)?.line });
    const stages = new Map(defects.map((d) => [key(d.source, d.line), d.defect]));
    for (const entry of entries) {
      const defect = stages.get(key(entry.source, entry.line));
      // A bad amount fails conversion (parse); an impossible timestamp fails validation.
      expect(entry.stage).toBe(defect === "bad_timestamp" ? "validate" : "parse");
    }
  });

  test("records lineage in PostgreSQL: each output file's rows come from the line ranges it names", async () => {
    const lineage = await sql.unsafe(`SELECT run_id, source_file, first_line, last_line, output_file, output_rows FROM ${table}`);
    expect(new Set(lineage.map((r: { run_id: string }) => r.run_id)).size).toBe(1);
    const lineOf = new Map(all().map((row) => [row.tx_id, { line: row.line, source: row.source }]));
    const files = await query(`
      SELECT filename AS file, list(tx_id) AS ids
      FROM read_parquet('${join(dir.path, "transactions")}/**/*.parquet', hive_partitioning = true, filename = true)
      GROUP BY filename`);
    expect(new Set(lineage.map((r: { output_file: string }) => r.output_file))).toEqual(new Set(files.map((f) => f.file)));
    for (const file of files) {
      const ranges = lineage.filter((r: { output_file: string }) => r.output_file === file.file);
      const ids = file.ids as string[];
      expect(ranges.every((r: { output_rows: number }) => r.output_rows === ids.length)).toBe(true);
      for (const id of ids) {
        const at = lineOf.get(id) as { line: number; source: string };
        const range = ranges.find((r: { source_file: string }) => r.source_file === at.source);
        expect(range).toBeDefined();
        expect(at.line).toBeGreaterThanOrEqual(range.first_line);
        expect(at.line).toBeLessThanOrEqual(range.last_line);
      }
      // Each named range begins and ends on a row this file holds.
      for (const range of ranges) {
        const lines = ids.map((id) => lineOf.get(id)).filter((x) => x?.source === range.source_file).map((x) => x?.line);
        expect([Math.min(...(lines as number[])), Math.max(...(lines as number[]))]).toEqual([range.first_line, range.last_line]);
      }
    }
  });

  test("run again over the same folder, the lineage holds only the new run's rows (the dataset was overwritten)", async () => {
    const child = Bun.spawn(["bun", join(import.meta.dir, "../../examples/transactions.ts"), dir.path, "--table", table], { stdout: "pipe", stderr: "pipe" });
    const [err, code] = await Promise.all([new Response(child.stderr).text(), child.exited]);
    expect({ code, err: code === 0 ? "" : err }).toEqual({ code: 0, err: "" });
    const lineage = await sql.unsafe(`SELECT run_id, output_file FROM ${table}`);
    expect(new Set(lineage.map((r: { run_id: string }) => r.run_id)).size).toBe(1);
    const files = await query(`SELECT DISTINCT filename AS file FROM read_parquet('${join(dir.path, "transactions")}/**/*.parquet', filename = true)`);
    expect(new Set(lineage.map((r: { output_file: string }) => r.output_file))).toEqual(new Set(files.map((f) => f.file)));
  }, 60_000);
});
