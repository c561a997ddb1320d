/**
 * The benchmark's inputs and peers: the generators plant what they say, and the CSV and JSON
 * jobs, run as the benchmark runs them (a process each, measured by the harness), keep and
 * reject the records they should, with the same values in sluice's Parquet as in DuckDB's.
 * Nothing here asserts speed or memory.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { generateClickstream } from "../../src/generate/clickstream.ts";
import { writeClickstreamDocument } from "../../src/generate/document.ts";
import { generateTransactionCsv, TRANSACTION_DEFECTS, writeTransactionCsv } from "../../src/generate/transactions.ts";
import { dataset, query, tempDir } from "../helpers/duckdb.ts";
import { measure, pairedRatio, parquetFiles } from "./harness.ts";

let dir: { path: string; remove: () => Promise<void> };
beforeAll(async () => {
  dir = await tempDir("sluice-bench-");
});
afterAll(() => dir.remove());

const texts = (options: Parameters<typeof generateTransactionCsv>[0]) => [...generateTransactionCsv(options)].map((r) => r.text).join("\n");

/** Runs one engine of a job file and keeps its output (the harness's `measure` removes it). */
function runKept(jobFile: string, engine: string, input: string, out: string): { rows: number; rejected: number } {
  const child = Bun.spawnSync(["bun", join(import.meta.dir, jobFile), engine, input, out], { stderr: "pipe" });
  if (child.exitCode !== 0) throw new Error(`${jobFile} ${engine} exited ${child.exitCode}: ${child.stdout} ${child.stderr}`);
  return JSON.parse(child.stdout.toString().trim().split("\n").at(-1) as string);
}

describe("generateTransactionCsv", () => {
  test("gives the same records for the same seed and other records for another", () => {
    expect(texts({ count: 500, seed: 3 })).toBe(texts({ count: 500, seed: 3 }));
    expect(texts({ count: 500, seed: 3 })).not.toBe(texts({ count: 500, seed: 4 }));
  });

  test("plants every kind of defect, about the share asked for", () => {
    const defects = [...generateTransactionCsv({ count: 20_000, seed: 1, defectRate: 0.01 })].filter((r) => r.defect);
    expect(defects.length).toBeGreaterThan(140);
    expect(defects.length).toBeLessThan(260);
    expect(new Set(defects.map((r) => r.defect))).toEqual(new Set(TRANSACTION_DEFECTS));
  });

  test("with no defects, every record is valid CSV with the header's nine fields", async () => {
    const path = join(dir.path, "clean.csv");
    await writeTransactionCsv(path, { count: 3000, seed: 2, defectRate: 0 });
    const rows = await query(`SELECT count(*)::INT AS n, count(DISTINCT tx_id)::INT AS ids FROM read_csv('${path}', header = true, all_varchar = true, strict_mode = true)`);
    expect(rows).toEqual([{ n: 3000, ids: 3000 }]);
  });
});

describe("the CSV job", () => {
  const count = 3000;
  const options = { count, seed: 5, defectRate: 0.15 };
  const planted = [...generateTransactionCsv(options)].slice(1);
  const input = () => join(dir.path, "tx.csv");

  test("sluice keeps exactly the records without a defect, DuckDB also keeps the ones where it rounds 2.5", async () => {
    await writeTransactionCsv(input(), options);
    const sluice = runKept("csv-jobs.ts", "sluice", input(), join(dir.path, "csv-sluice"));
    const duckdb = runKept("csv-jobs.ts", "duckdb", input(), join(dir.path, "csv-duckdb"));
    const defective = planted.filter((r) => r.defect).length;
    const rounded = planted.filter((r) => r.defect === "quantity_not_integer" && r.text.split(",")[3] === "2.5").length;
    expect(defective).toBeGreaterThan(300);
    expect(rounded).toBeGreaterThan(0);
    expect(sluice).toEqual({ rows: count - defective, rejected: defective });
    expect(duckdb).toEqual({ rows: count - defective + rounded, rejected: defective - rounded });

    // The same values, read back by DuckDB from both datasets (sluice's ids are the clean ones).
    const cleanIds = new Set(planted.map((r, i) => (r.defect ? undefined : `T${i.toString(36)}`)).filter(Boolean));
    const ids = await query(`SELECT tx_id FROM ${dataset(join(dir.path, "csv-sluice", "transactions"))}`);
    expect(new Set(ids.map((r) => r.tx_id))).toEqual(cleanIds);
    const columns = "tx_id, account, amount, quantity, currency, merchant, description, refunded, epoch_us(\"at\") AS at_us, tx_date::VARCHAR AS tx_date";
    const differ = await query(`
      (SELECT ${columns} FROM ${dataset(join(dir.path, "csv-sluice", "transactions"))}
       EXCEPT ALL SELECT ${columns} FROM ${dataset(join(dir.path, "csv-duckdb", "transactions"))})
      UNION ALL
      (SELECT ${columns} FROM ${dataset(join(dir.path, "csv-duckdb", "transactions"))} WHERE quantity IS NOT NULL
       AND tx_id IN (SELECT tx_id FROM ${dataset(join(dir.path, "csv-sluice", "transactions"))})
       EXCEPT ALL SELECT ${columns} FROM ${dataset(join(dir.path, "csv-sluice", "transactions"))})`);
    expect(differ).toEqual([]);
    const shown = await query(`SELECT count(*)::INT AS n FROM ${dataset(join(dir.path, "csv-sluice", "transactions"))} WHERE description LIKE '%"%' OR description LIKE '%,%' OR description LIKE e'%\\n%'`);
    expect(Number(shown[0]?.n)).toBeGreaterThan(0);
  });
});

describe("the JSON document", () => {
  test.each([0, 1, 7, 9000])("of %p events is one valid array holding all but the truncated ones", async (count) => {
    const path = join(dir.path, `doc-${count}.json`);
    const { elements, defects } = await writeClickstreamDocument(path, { count, seed: 11, defectRate: 0.05 });
    const expected = [...generateClickstream({ count, seed: 11, defectRate: 0.05 })].filter((l) => l.defect !== "malformed_json");
    const parsed = JSON.parse(await Bun.file(path).text()) as { event_id?: string }[];
    expect(parsed.length).toBe(expected.length);
    expect(elements).toBe(expected.length);
    expect(parsed.map((e) => JSON.stringify(e))).toEqual(expected.map((l) => JSON.stringify(JSON.parse(l.text))));
    expect(defects.malformed_json).toBeUndefined();
  });

  test("job: sluice's fromJson and DuckDB's read_json keep and reject the same elements, with the same values", async () => {
    const path = join(dir.path, "doc.json");
    await writeClickstreamDocument(path, { count: 4000, seed: 12, defectRate: 0.1 });
    const sluice = runKept("json-jobs.ts", "sluice", path, join(dir.path, "json-sluice"));
    const duckdb = runKept("json-jobs.ts", "duckdb-strict", path, join(dir.path, "json-duckdb"));
    expect(sluice.rows + sluice.rejected).toBe(JSON.parse(await Bun.file(path).text()).length);
    expect(sluice.rejected).toBeGreaterThan(200);
    expect(duckdb).toEqual(sluice);
    const columns = "event_id, user_id, session_id, timestamp, event_type, page_url, user_agent, duration_ms, price, country, tags, epoch_us(event_ts) AS ts, event_date::VARCHAR AS day, device_type, event_category";
    const a = dataset(join(dir.path, "json-sluice", "events"));
    const b = dataset(join(dir.path, "json-duckdb", "events"));
    expect(await query(`(SELECT ${columns} FROM ${a} EXCEPT ALL SELECT ${columns} FROM ${b}) UNION ALL (SELECT ${columns} FROM ${b} EXCEPT ALL SELECT ${columns} FROM ${a})`)).toEqual([]);
  });
});

describe("the single-thread floors", () => {
  test("read every line and reject exactly what sluice rejects, so their time is for the same job", async () => {
    const path = join(dir.path, "floor.ndjson");
    const lines = [...generateClickstream({ count: 3000, seed: 13, defectRate: 0.1 })].map((l) => l.text);
    // A last line without its newline is read too.
    await Bun.write(path, lines.join("\n"));
    const sluice = runKept("job.ts", "sluice", path, join(dir.path, "floor-sluice"));
    expect(sluice.rows + sluice.rejected).toBe(3000);
    expect(sluice.rejected).toBeGreaterThan(100);
    expect(runKept("job.ts", "floor-operators", path, join(dir.path, "floor-operators"))).toEqual(sluice);
    // Parsing alone rejects only what is not JSON.
    const parse = runKept("job.ts", "floor-parse", path, join(dir.path, "floor-parse"));
    expect(parse.rows + parse.rejected).toBe(3000);
    expect(parse.rejected).toBe(lines.filter((text) => !parses(text)).length);
    expect(parse.rejected).toBeLessThan(sluice.rejected);
  });
});

function parses(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

describe("the harness", () => {
  test("measures a job's process, counts its Parquet files and removes its output", async () => {
    const out = join(dir.path, "measured");
    const input = join(dir.path, "small.csv");
    await writeTransactionCsv(input, { count: 200, seed: 9, defectRate: 0 });
    const m = await measure("duckdb", ["bun", join(import.meta.dir, "csv-jobs.ts"), "duckdb", input, out], out);
    expect(m.error).toBeUndefined();
    expect(m.rows).toBe(200);
    expect(m.files).toBeGreaterThan(0);
    expect(m.bytes).toBeGreaterThan(0);
    expect(m.cpuSeconds).toBeGreaterThan(0);
    expect(m.peakRssMB).toBeGreaterThan(0);
    expect(parquetFiles(out)).toEqual({ files: 0, bytes: 0 });
  });

  test("reports a job that fails with its error instead of throwing", async () => {
    const out = join(dir.path, "failed");
    const m = await measure("duckdb", ["bun", join(import.meta.dir, "csv-jobs.ts"), "duckdb", join(dir.path, "missing.csv"), out], out);
    expect(m.error).toContain("missing.csv");
  });

  test("takes ratios run by run, skipping failed runs", () => {
    const run = (engine: string, seconds: number, error?: string) =>
      ({ engine, seconds, cpuSeconds: seconds, peakRssMB: 1, rows: 0, rejected: null, files: 0, bytes: 0, ...(error ? { error } : {}) });
    const rounds = { a: [run("a", 2), run("a", 30), run("a", 1, "boom")], b: [run("b", 1), run("b", 10), run("b", 1)] };
    expect(pairedRatio(rounds, "a", "b", "seconds")).toBe(2.5);
  });
});
