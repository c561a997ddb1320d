import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { startIngest } from "../../examples/http-ingest.ts";
import { generateClickstream } from "../../src/generate/clickstream.ts";
import { type DeadLetter, readDeadLetters, type RunSummary } from "../../src/index.ts";
import { dataset, query, tempDir } from "../helpers/duckdb.ts";

const EXAMPLE = join(import.meta.dir, "..", "..", "examples", "http-ingest.ts");
const MAX_FILE_AGE_MS = 1000;
const EVENTS = 100_000;
const CLIENTS = 8;
const BATCH = 500;

/** Starts the service and reads its first line for the URL; the rest of stdout is read on `output()`. */
async function startService(out: string, ...args: string[]) {
  const child = Bun.spawn(["bun", EXAMPLE, "--out", out, "--max-file-age-ms", String(MAX_FILE_AGE_MS), "--json", ...args], {
    stdout: "pipe",
    stderr: "pipe",
  });
  const reader = child.stdout.getReader();
  const decoder = new TextDecoder();
  let text = "";
  while (!text.includes("\n")) {
    const { done, value } = await reader.read();
    if (done) throw new Error(`the service exited before listening: ${await new Response(child.stderr).text()}`);
    text += decoder.decode(value, { stream: true });
  }
  const url = /^listening on (\S+)/.exec(text)?.[1];
  if (!url) throw new Error(`unexpected first line: ${text}`);
  async function output(): Promise<string> {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return text;
      text += decoder.decode(value, { stream: true });
    }
  }
  return { child, url, output };
}

/** Polls until `probe` gives a value; fails naming `what` after `ms`. */
async function until<T>(what: string, ms: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const found = await probe();
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await Bun.sleep(50);
  }
}

async function deadLetters(folder: string): Promise<DeadLetter[]> {
  const all: DeadLetter[] = [];
  for await (const entry of readDeadLetters(folder)) all.push(entry);
  return all;
}

const rowCount = async (folder: string) =>
  Number((await query(`SELECT count(*) AS n FROM ${dataset(folder)}`).catch(() => [{ n: 0 }]))[0]?.n ?? 0);

describe("the HTTP ingest example", () => {
  let dir: { path: string; remove: () => Promise<void> };
  beforeAll(async () => {
    dir = await tempDir("sluice-http-ingest-");
  });
  afterAll(() => dir.remove());

  test("takes 100k events from 8 clients, commits while idle, and on SIGTERM leaves every event exactly once", async () => {
    const out = join(dir.path, "main");
    // The generator's defects (wrong types, missing fields, truncated JSON...) plus lines that
    // are not JSON at all, one of them blank, spread through the batches.
    const valid: string[] = [];
    const bad: string[] = [];
    const lines: string[] = [];
    for (const { text, defect } of generateClickstream({ count: EVENTS, seed: 8 })) {
      lines.push(text);
      (defect ? bad : valid).push(text);
      if (lines.length % 9973 === 0) {
        const garbage = lines.length === 9973 ? "" : `<html>not an event ${lines.length}</html>`;
        lines.push(garbage);
        bad.push(garbage);
      }
    }
    const total = lines.length;
    // A 1 MiB budget and a 20 ms wait: some batches meet a spent budget, are answered 503 and
    // sent again, and the exactly-once checks below cover that path too.
    const { child, url, output } = await startService(out, "--memory-budget", String(1 << 20), "--wait-ms", "20");
    try {
      // One event alone, as a JSON document; the rest as NDJSON batches.
      const single = await fetch(`${url}events`, { method: "POST", headers: { "Content-Type": "application/json" }, body: lines[0] });
      expect([single.status, await single.json()]).toEqual([202, { accepted: 1, notJson: 0 }]);

      const batches: string[][] = [];
      for (let i = 1; i < total; i += BATCH) batches.push(lines.slice(i, i + BATCH));
      let busy = 0;
      let notJson = 0;
      const started = performance.now();
      await Promise.all(
        Array.from({ length: CLIENTS }, async () => {
          for (let batch = batches.shift(); batch; batch = batches.shift()) {
            let rest = batch;
            for (;;) {
              const response = await fetch(`${url}events`, {
                method: "POST",
                headers: { "Content-Type": "application/x-ndjson" },
                body: `${rest.join("\n")}\n`,
              });
              const body = (await response.json()) as { accepted: number; notJson?: number };
              if (response.status === 202) {
                expect(body.accepted).toBe(rest.length);
                notJson += body.notJson ?? 0;
                break;
              }
              // Busy: nothing of the batch was taken; send what was not taken again.
              expect(response.status).toBe(503);
              expect(response.headers.get("retry-after")).toBe("1");
              busy++;
              rest = rest.slice(body.accepted);
              // Retry-After says a second; a tenth keeps the test short.
              await Bun.sleep(100);
            }
          }
        }),
      );
      const postedMs = performance.now() - started;
      const notJsonSent = bad.filter((line) => {
        try {
          JSON.parse(line);
          return false;
        } catch {
          return true;
        }
      }).length;
      expect(notJson).toBe(notJsonSent);

      // Idle: nothing more arrives, yet every event and dead letter becomes durable within
      // maxFileAgeMs (plus a commit's time), while the service is still up.
      const idleFrom = performance.now();
      await until("every row durable while idle", MAX_FILE_AGE_MS + 4000, async () =>
        (await rowCount(join(out, "events"))) === valid.length ? true : undefined,
      );
      await until("every dead letter durable while idle", MAX_FILE_AGE_MS + 4000, async () =>
        (await deadLetters(join(out, "dead-letter"))).length === bad.length ? true : undefined,
      );
      const idleMs = performance.now() - idleFrom;
      expect(child.exitCode).toBeNull();
      const health = await fetch(`${url}health`);
      expect(health.status).toBe(200);
      expect(await health.json()).toMatchObject({ status: "ok", in: total, written: valid.length, deadLettered: bad.length, waiting: 0 });
      console.log(
        `http-ingest: ${total} lines in ${(postedMs / 1000).toFixed(2)} s (${Math.round(total / (postedMs / 1000))} lines/s) from ${CLIENTS} clients, ${busy} busy answers; durable ${Math.round(idleMs)} ms into the idle period`,
      );

      child.kill("SIGTERM");
      const [code, stdout, stderr] = await Promise.all([child.exited, output(), new Response(child.stderr).text()]);
      expect(stderr).toContain("SIGTERM: no longer accepting");
      expect(code).toBe(0);
      const summary = JSON.parse(stdout.trim().split("\n").pop() as string) as RunSummary;
      expect(summary).toMatchObject({ in: total, written: valid.length, deadLettered: bad.length, dropped: 0, stopped: true });
      expect(summary.deadLetteredByStage.parse).toBe(notJsonSent);
    } finally {
      child.kill("SIGKILL");
    }

    // Read back by a reader sluice did not write: every valid event exactly once.
    const ids = await query(`SELECT event_id, count(*)::INT AS n FROM ${dataset(join(out, "events"))} GROUP BY ALL HAVING n > 1`);
    expect(ids).toEqual([]);
    const written = (await query(`SELECT event_id FROM ${dataset(join(out, "events"))}`)).map((r) => r.event_id as string).sort();
    expect(written).toEqual(valid.map((line) => JSON.parse(line).event_id as string).sort());

    // Every bad line exactly once, with its text as sent and its own position.
    const dead = await deadLetters(join(out, "dead-letter"));
    expect(dead.map((d) => d.raw).sort()).toEqual([...bad].sort());
    expect(new Set(dead.map((d) => d.source))).toEqual(new Set(["http"]));
    const positions = dead.map((d) => d.line);
    expect(new Set(positions).size).toBe(dead.length);
    expect(Math.min(...positions)).toBeGreaterThanOrEqual(1);
    expect(Math.max(...positions)).toBeLessThanOrEqual(total);
    expect(dead.find((d) => d.raw === "")).toMatchObject({ stage: "parse", error: "blank line" });
    expect(dead.find((d) => d.raw.startsWith("<html>"))?.error).toMatch(/^malformed JSON/);
  });

  test("exits 0 with a summary when stopped with nothing received", async () => {
    const { child, url, output } = await startService(join(dir.path, "empty"));
    try {
      expect(await (await fetch(`${url}health`)).json()).toMatchObject({ status: "ok", in: 0 });
      expect((await fetch(`${url}nope`)).status).toBe(404);
      expect((await fetch(`${url}events`)).status).toBe(405);
      child.kill("SIGINT");
      const [code, stdout] = await Promise.all([child.exited, output()]);
      expect(code).toBe(0);
      expect(JSON.parse(stdout.trim().split("\n").pop() as string)).toMatchObject({ in: 0, written: 0, deadLettered: 0, stopped: true });
    } finally {
      child.kill("SIGKILL");
    }
  });

  test("embedded: a request still arriving when shutdown begins is answered 503 and nothing of it is taken", async () => {
    const out = join(dir.path, "embedded");
    const ingest = startIngest({ outDir: out, maxFileAgeMs: MAX_FILE_AGE_MS });
    const url = String(ingest.server.url);
    const lines = [...generateClickstream({ count: 3, seed: 1, defectRate: 0 })].map((l) => l.text);
    const first = await fetch(`${url}events`, { method: "POST", body: `${lines[0]}\n{"event_id":1}\nnot json\n` });
    expect([first.status, await first.json()]).toEqual([202, { accepted: 3, notJson: 1 }]);

    // A body that is still being sent while the service begins to shut down.
    let finishBody = () => {};
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode(`${lines[1]}\n`));
        finishBody = () => {
          controller.enqueue(new TextEncoder().encode(`${lines[2]}\n`));
          controller.close();
        };
      },
    });
    const late = fetch(`${url}events`, { method: "POST", body });
    await Bun.sleep(100);
    const stopped = ingest.shutdown();
    finishBody();
    const answer = await late;
    expect([answer.status, await answer.json()]).toEqual([503, { error: "shutting down", accepted: 0 }]);
    const summary = await stopped;
    expect(summary).toMatchObject({ in: 3, written: 1, deadLettered: 2, deadLetteredByStage: { validate: 1, parse: 1 }, stopped: true });
    expect(await rowCount(join(out, "events"))).toBe(1);
    expect((await deadLetters(join(out, "dead-letter"))).map((d) => `${d.stage}:${d.source}:${d.line}`).sort()).toEqual([
      "parse:http:3",
      "validate:http:2",
    ]);
  });

  test("embedded: a line that is not valid UTF-8 is a parse dead letter, not an event with U+FFFD in it", async () => {
    const out = join(dir.path, "utf8");
    const ingest = startIngest({ outDir: out, maxFileAgeMs: MAX_FILE_AGE_MS });
    const lines = [...generateClickstream({ count: 3, seed: 2, defectRate: 0 })].map((l) => l.text);
    const encoder = new TextEncoder();
    // The second line's event id ends in the bytes FF FE, which no UTF-8 text holds.
    const broken = encoder.encode(lines[1]?.replace(/"event_id":"([^"]*)"/, '"event_id":"$1@@"'));
    const at = broken.indexOf(0x40);
    broken.set([0xff, 0xfe], at);
    const body = new Uint8Array([...encoder.encode(`${lines[0]}\n`), ...broken, 0x0a, ...encoder.encode(`${lines[2]}\n`)]);
    const answer = await fetch(`${String(ingest.server.url)}events`, { method: "POST", body });
    expect([answer.status, await answer.json()]).toEqual([202, { accepted: 3, notJson: 1 }]);
    const oneObject = await fetch(`${String(ingest.server.url)}events`, { method: "POST", body: broken, headers: { "Content-Type": "application/json" } });
    expect([oneObject.status, await oneObject.json()]).toEqual([202, { accepted: 1, notJson: 1 }]);
    const summary = await ingest.shutdown();
    expect(summary).toMatchObject({ in: 4, written: 2, deadLettered: 2, deadLetteredByStage: { parse: 2 } });
    const letters = await deadLetters(join(out, "dead-letter"));
    expect(letters.map((d) => `${d.stage}:${d.source}:${d.line}:${d.error}`).sort()).toEqual([
      "parse:http:2:line is not valid UTF-8",
      "parse:http:4:line is not valid UTF-8",
    ]);
    const ids = await query(`SELECT event_id FROM ${dataset(join(out, "events"))} ORDER BY event_id`);
    expect(ids.every((r) => !String(r.event_id).includes("\uFFFD"))).toBe(true);
    expect(ids.length).toBe(2);
  });

  test("embedded: a number a float cannot hold is a parse dead letter naming it, not Infinity or other digits in the dataset", async () => {
    const out = join(dir.path, "numbers");
    const ingest = startIngest({ outDir: out, maxFileAgeMs: MAX_FILE_AGE_MS });
    const lines = [...generateClickstream({ count: 3, seed: 4, defectRate: 0 })].map((l) => l.text);
    const huge = lines[0]?.replace(/"duration_ms":\d+/, '"duration_ms":1e400') as string;
    const long = lines[1]?.replace(/"duration_ms":\d+/, '"duration_ms":12345678901234567890') as string;
    expect([huge, long]).not.toContain(lines[0]);
    const answer = await fetch(`${String(ingest.server.url)}events`, { method: "POST", body: `${huge}\n${long}\n${lines[2]}\n` });
    expect([answer.status, await answer.json()]).toEqual([202, { accepted: 3, notJson: 2 }]);
    const summary = await ingest.shutdown();
    expect(summary).toMatchObject({ in: 3, written: 1, deadLettered: 2, deadLetteredByStage: { parse: 2 } });
    const letters = await deadLetters(join(out, "dead-letter"));
    expect(letters.map((d) => `${d.line}:${d.error.split(" (column")[0]}`).sort()).toEqual(["1:number 1e400 at duration_ms", "2:number 12345678901234567890 at duration_ms"]);
    expect(letters.map((d) => d.raw).sort()).toEqual([huge, long].sort());
    const rows = await query(`SELECT count(*)::INT AS n, count(*) FILTER (WHERE isinf(duration_ms::DOUBLE))::INT AS inf FROM ${dataset(join(out, "events"))}`);
    expect(rows).toEqual([{ n: 1, inf: 0 }]);
  });
});
