import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { type ClickEvent, clickstream, enrichEvent } from "../../examples/clickstream.ts";
import { generateClickstream } from "../../src/generate/clickstream.ts";
import { readDeadLetters } from "../../src/index.ts";
import { dataset, query, tempDir } from "../helpers/duckdb.ts";

const COUNT = 20_000;

/** Exact microseconds of a generated "…T…(.fff|.ffffff)Z" timestamp, computed without sluice's parser. */
function microsOf(iso: string): string {
  const fraction = /\.(\d+)Z$/.exec(iso)?.[1] ?? "";
  return String(BigInt(Date.parse(iso)) * 1000n + BigInt(fraction.padEnd(6, "0").slice(3, 6)));
}

describe("the clickstream example", () => {
  let dir: { path: string; remove: () => Promise<void> };
  let input: string;
  const lines: { text: string; defect: string | undefined }[] = [];

  beforeAll(async () => {
    dir = await tempDir();
    input = join(dir.path, "events.ndjson");
    // A higher defect rate than the default, so every kind of defect appears many times.
    for (const line of generateClickstream({ count: COUNT, seed: 11, defectRate: 0.05 })) lines.push(line);
    await Bun.write(input, `${lines.map((l) => l.text).join("\n")}\n`);
  });
  afterAll(() => dir.remove());

  test("accounts for every input line: written + dead-lettered = in, with the planted defects rejected", async () => {
    const out = join(dir.path, "out");
    const summary = await clickstream(input, out);
    const planted = lines.filter((l) => l.defect).length;
    const malformed = lines.filter((l) => l.defect === "malformed_json").length;

    expect(summary.in).toBe(COUNT);
    expect(summary.written + summary.deadLettered).toBe(COUNT);
    expect(summary.dropped).toBe(0);
    expect(summary.deadLettered).toBe(planted);
    expect(summary.deadLetteredByStage.parse).toBe(malformed);
    expect(summary.deadLetteredByStage.validate).toBe(planted - malformed);

    const [{ n }] = await query(`SELECT count(*) AS n FROM ${dataset(join(out, "events"))}`);
    expect(Number(n)).toBe(summary.written);
  });

  test("DuckDB reads back exactly the values of every valid input line", async () => {
    const out = join(dir.path, "values");
    await clickstream(input, out);
    const rows = await query(`
      SELECT event_id, user_id, session_id, timestamp, event_type, page_url, user_agent, duration_ms, price,
             country, tags, epoch_us(event_ts) AS event_us, event_date::VARCHAR AS event_date, typeof(event_date) AS date_type,
             device_type, event_category
      FROM ${dataset(join(out, "events"))}`);
    const byId = new Map(rows.map((r) => [r.event_id as string, r]));

    let compared = 0;
    for (const line of lines) {
      if (line.defect) continue;
      const event = JSON.parse(line.text) as ClickEvent;
      const expected = enrichEvent(event);
      const row = byId.get(event.event_id);
      expect(row).toBeDefined();
      expect(row).toEqual({
        event_id: expected.event_id,
        user_id: expected.user_id,
        session_id: expected.session_id,
        timestamp: expected.timestamp,
        event_type: expected.event_type,
        page_url: expected.page_url,
        user_agent: expected.user_agent,
        duration_ms: String(expected.duration_ms),
        price: expected.price ?? null,
        country: expected.country,
        tags: expected.tags,
        // The exact microseconds of the ISO text, computed here independently of sluice's parser.
        event_us: microsOf(expected.timestamp),
        event_date: expected.timestamp.slice(0, 10),
        date_type: "DATE",
        device_type: expected.device_type,
        event_category: expected.event_category,
      });
      compared++;
    }
    expect(compared).toBe(rows.length);
  });

  test("dead letters name the stage, the file, the line and keep the raw line", async () => {
    const out = join(dir.path, "dead");
    await clickstream(input, out);
    const entries = [];
    for await (const entry of readDeadLetters(join(out, "dead-letter"))) entries.push(entry);
    const expectedLines = lines.flatMap((l, i) => (l.defect ? [i + 1] : []));
    expect(entries.map((e) => e.line).sort((a, b) => a - b)).toEqual(expectedLines);
    for (const entry of entries) {
      const line = lines[entry.line - 1];
      expect(entry.source).toBe(input);
      expect(entry.raw).toBe(line.text);
      expect(entry.stage).toBe(line.defect === "malformed_json" ? "parse" : "validate");
      expect(entry.error.length).toBeGreaterThan(0);
      if (entry.stage === "validate") expect(entry.issues?.length).toBeGreaterThan(0);
    }
    const typeError = entries.find((e) => lines[e.line - 1].defect === "string_for_number");
    expect(typeError?.issues?.[0]).toMatchObject({ path: "duration_ms", expected: "number", received: expect.stringContaining('"') });
  });

  test("writes date partitions as event_date=YYYY-MM-DD folders with deterministic names, and a re-run replaces them", async () => {
    const out = join(dir.path, "rerun");
    await clickstream(input, out);
    const first = (await readdir(join(out, "events"), { recursive: true })).sort();
    const second = await clickstream(input, out);
    const again = (await readdir(join(out, "events"), { recursive: true })).sort();
    expect(again).toEqual(first);
    expect(first.filter((p) => p.endsWith(".parquet")).every((p) => /^event_date=\d{4}-\d{2}-\d{2}\/part-\d{12}\.parquet$/.test(p))).toBe(true);
    const [{ n }] = await query(`SELECT count(*) AS n FROM ${dataset(join(out, "events"))}`);
    expect(Number(n)).toBe(second.written);
  });
});
