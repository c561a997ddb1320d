import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { type ClickEvent, enrichEvent } from "../../examples/clickstream.ts";
import { generateClickstream } from "../../src/generate/clickstream.ts";
import { readDeadLetters } from "../../src/index.ts";
import { dataset, query, tempDir } from "../helpers/duckdb.ts";

const EXAMPLE = join(import.meta.dir, "..", "..", "examples", "stdin.ts");

/** Runs the example with `input` piped into its standard input; returns its summary. */
async function pipeInto(input: Uint8Array, outDir: string) {
  const child = Bun.spawn(["bun", EXAMPLE, outDir, "--json"], { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
  child.stdin.write(input);
  await child.stdin.end();
  const [out, err, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
  expect(err).toBe("");
  expect(code).toBe(0);
  return JSON.parse(out) as { in: number; written: number; deadLettered: number; deadLetteredByStage: Record<string, number> };
}

describe("the stdin example", () => {
  let dir: { path: string; remove: () => Promise<void> };
  beforeAll(async () => {
    dir = await tempDir("sluice-stdin-example-");
  });
  afterAll(() => dir.remove());

  test("writes the valid piped events to date partitions and the rest, by line, to the dead letter", async () => {
    const lines = [...generateClickstream({ count: 4000, seed: 3, defectRate: 0.05 })];
    // Lines a pipe can carry that no generator makes: invalid UTF-8, a blank line, CRLF endings, no final newline.
    const parts: Buffer[] = lines.map((l, i) => Buffer.from(`${l.text}${i % 3 === 0 ? "\r\n" : "\n"}`));
    parts.splice(10, 0, Buffer.from([0x7b, 0xff, 0x7d, 0x0a]), Buffer.from("\n"));
    const last = parts.length - 1;
    parts[last] = Buffer.from(parts[last].toString().trimEnd());
    const input = Buffer.concat(parts);
    const out = join(dir.path, "run");

    const summary = await pipeInto(input, out);
    const defective = lines.filter((l) => l.defect).length;
    expect(summary.in).toBe(lines.length + 2);
    expect(summary.deadLettered).toBe(defective + 2);
    expect(summary.written).toBe(lines.length - defective);

    const rows = await query(`SELECT event_id, epoch_us(event_ts)::VARCHAR AS us, event_date::VARCHAR AS day, duration_ms FROM ${dataset(join(out, "events"))}`);
    const byId = new Map(rows.map((r) => [r.event_id as string, r]));
    expect(byId.size).toBe(summary.written);
    for (const line of lines) {
      if (line.defect) continue;
      const expected = enrichEvent(JSON.parse(line.text) as ClickEvent);
      const row = byId.get(expected.event_id);
      expect(row).toMatchObject({ day: expected.event_date, duration_ms: String(expected.duration_ms) });
      expect(BigInt(row?.us as string) / 1000n).toBe(BigInt(Date.parse(expected.timestamp)));
    }

    const entries = [];
    for await (const entry of readDeadLetters(join(out, "dead-letter"))) entries.push(entry);
    expect(entries.every((e) => e.source === "stdin")).toBe(true);
    const utf8 = entries.find((e) => e.error === "line is not valid UTF-8");
    expect(utf8?.line).toBe(11);
    expect(Buffer.from(utf8?.rawBase64 ?? "", "base64")).toEqual(Buffer.from([0x7b, 0xff, 0x7d]));
    expect(entries.find((e) => e.error === "blank line")?.line).toBe(12);
  });

  test("completes with an empty dataset on empty input", async () => {
    const out = join(dir.path, "empty");
    const summary = await pipeInto(new Uint8Array(0), out);
    expect(summary).toMatchObject({ in: 0, written: 0, deadLettered: 0 });
  });
});
