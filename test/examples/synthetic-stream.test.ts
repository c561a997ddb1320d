import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import type { ProducerTally } from "../../examples/synthetic-stream.ts";
import type { RunSummary } from "../../src/run/run.ts";
import { dataset, query, tempDir } from "../helpers/duckdb.ts";

const EXAMPLE = join(import.meta.dir, "..", "..", "examples", "synthetic-stream.ts");
const START = "2024-05-01T23:59:59.500Z";

async function runExample(outDir: string, seed: number) {
  const child = Bun.spawn(["bun", EXAMPLE, outDir, "--seconds", "1", "--seed", String(seed), "--start", START, "--json"], {
    stdout: "pipe",
    stderr: "pipe",
  });
  const [out, err, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
  expect(err).toBe("");
  expect(code).toBe(0);
  return JSON.parse(out) as { summary: RunSummary; producers: Record<string, ProducerTally> };
}

describe("the synthetic stream example", () => {
  let dir: { path: string; remove: () => Promise<void> };
  let first: Awaited<ReturnType<typeof runExample>>;
  beforeAll(async () => {
    dir = await tempDir("sluice-synthetic-");
    first = await runExample(join(dir.path, "a"), 7);
  });
  afterAll(() => dir.remove());

  test("makes each producer's events at its rate for the duration, and accounts for every one", async () => {
    const { summary, producers } = first;
    // One second of schedule at 2,000/s, 800/s and 50/s.
    expect(Object.fromEntries(Object.entries(producers).map(([name, t]) => [name, t.made]))).toEqual({ web: 2000, app: 800, crawler: 50 });
    expect(summary.in).toBe(2850);
    expect(summary.written + summary.deadLettered).toBe(2850);
    expect(summary.deadLettered).toBe(Object.values(producers).reduce((n, t) => n + t.deadLettered, 0));
    expect(summary.deadLettered).toBeGreaterThan(0);

    const perProducer = await query(`SELECT split_part(event_id, '-', 1) AS producer, count(*)::INT AS n FROM ${dataset(join(dir.path, "a", "events"))} GROUP BY ALL ORDER BY producer`);
    expect(perProducer).toEqual(
      ["app", "crawler", "web"].map((name) => ({ producer: name, n: producers[name].made - producers[name].deadLettered })),
    );
  });

  test("stamps events with their scheduled time and partitions them by UTC day", async () => {
    const rows = await query(`SELECT event_date::VARCHAR AS day, min(epoch_ms(event_ts)) AS lo, max(epoch_ms(event_ts)) AS hi, count(*)::INT AS n
      FROM ${dataset(join(dir.path, "a", "events"))} GROUP BY ALL ORDER BY day`);
    const start = Date.parse(START);
    expect(rows.map((r) => r.day)).toEqual(["2024-05-01", "2024-05-02"]);
    expect(Number(rows[0].lo)).toBeGreaterThanOrEqual(start);
    expect(Number(rows[0].hi)).toBeLessThan(start + 500);
    expect(Number(rows[1].lo)).toBeGreaterThanOrEqual(start + 500);
    expect(Number(rows[1].hi)).toBeLessThan(start + 1000);
  });

  test("writes the same dataset again for the same seed and start, and a different one for another seed", async () => {
    const again = await runExample(join(dir.path, "b"), 7);
    expect(again.summary.written).toBe(first.summary.written);
    const cols = "event_id, user_id, session_id, timestamp, event_type, page_url, duration_ms, price, country, tags, event_ts, event_date";
    const diff = (x: string, y: string) =>
      query(`SELECT count(*)::INT AS n FROM ((SELECT ${cols} FROM ${dataset(join(dir.path, x, "events"))}) EXCEPT ALL (SELECT ${cols} FROM ${dataset(join(dir.path, y, "events"))}))`);
    expect(await diff("a", "b")).toEqual([{ n: 0 }]);
    expect(await diff("b", "a")).toEqual([{ n: 0 }]);
    await runExample(join(dir.path, "c"), 8);
    expect((await diff("a", "c"))[0].n).toBeGreaterThan(2000);
  });
});
