/**
 * Reads output back with DuckDB: a Parquet reader sluice did not write, so a test that passes
 * proves the files are standard, not merely self-consistent.
 */
import { DuckDBInstance } from "@duckdb/node-api";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

let connection: Awaited<ReturnType<Awaited<ReturnType<typeof DuckDBInstance.create>>["connect"]>> | undefined;

/** Runs a query and returns its rows as JSON-friendly objects (BIGINT as string, timestamps as text). */
export async function query(sql: string): Promise<Record<string, unknown>[]> {
  if (!connection) connection = await (await DuckDBInstance.create(":memory:")).connect();
  const reader = await connection.runAndReadAll(sql);
  return reader.getRowObjectsJson() as Record<string, unknown>[];
}

/** A fresh temporary folder, removed by the returned function. */
export async function tempDir(prefix = "sluice-test-"): Promise<{ path: string; remove: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), prefix));
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}

/** SQL for reading a hive-partitioned dataset folder. */
export function dataset(folder: string): string {
  return `read_parquet('${folder.replaceAll("'", "''")}/**/*.parquet', hive_partitioning = true)`;
}
