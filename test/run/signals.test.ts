import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { writeClickstream } from "../../src/generate/clickstream.ts";
import { dataset, query, tempDir } from "../helpers/duckdb.ts";

const example = join(import.meta.dir, "../../examples/clickstream.ts");

/**
 * Starts the example and waits until a partition's file is being written (row groups go into a
 * dot-named temporary file until it commits), so the signal lands mid-run.
 */
async function startRun(input: string, out: string) {
  const child = Bun.spawn(["bun", example, input, out], { stdout: "pipe", stderr: "pipe" });
  const deadline = Date.now() + 30_000;
  for (;;) {
    const files = await readdir(join(out, "events"), { recursive: true }).catch(() => [] as string[]);
    if (files.some((f) => f.endsWith(".tmp"))) break;
    if (Date.now() > deadline) throw new Error("no file being written within 30 s");
    await Bun.sleep(20);
  }
  return child;
}

const number = (text: string, label: string) => Number(new RegExp(`${label}\\s+([\\d,]+)`).exec(text)?.[1].replaceAll(",", ""));

describe("stopping a run", () => {
  let dir: { path: string; remove: () => Promise<void> };
  let input: string;
  beforeAll(async () => {
    dir = await tempDir();
    input = join(dir.path, "events.ndjson");
    await writeClickstream(input, { count: 400_000, seed: 3 });
  });
  afterAll(() => dir.remove());

  test("SIGINT stops reading, commits what is buffered, prints the summary and exits 0", async () => {
    const out = join(dir.path, "sigint");
    const child = await startRun(input, out);
    child.kill("SIGINT");
    const [code, stdout] = await Promise.all([child.exited, new Response(child.stdout).text()]);
    expect(code).toBe(0);
    expect(stdout).toContain("stopped early");
    const read = number(stdout, "records in");
    const written = number(stdout, "written");
    const dead = number(stdout, "dead-lettered");
    expect(read).toBeLessThan(400_000);
    expect(written + dead).toBe(read);
    const [{ n }] = await query(`SELECT count(*) AS n FROM ${dataset(join(out, "events"))}`);
    expect(Number(n)).toBe(written);
  });

  test("SIGKILL mid-run never leaves a partial file under a .parquet name", async () => {
    const out = join(dir.path, "sigkill");
    const child = await startRun(input, out);
    child.kill("SIGKILL");
    await child.exited;
    const all = await readdir(join(out, "events"), { recursive: true });
    const files = all.filter((f) => f.endsWith(".parquet"));
    // Killed while files were open: their temporary names are left, and no reader's glob matches them.
    expect(all.some((f) => f.endsWith(".tmp") && !f.endsWith(".parquet"))).toBe(true);
    // Every committed file is whole: DuckDB reads each footer and every row.
    for (const file of files) {
      const [{ n }] = await query(`SELECT count(*) AS n FROM read_parquet('${join(out, "events", file)}')`);
      expect(Number(n)).toBeGreaterThan(0);
    }
  });
});
