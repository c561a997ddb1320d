import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { TestScheduler } from "rxjs/testing";
import { ClickEvent, EnrichedEvent, enrichEvent } from "../../examples/clickstream.ts";
import { deadLetter, enrich, validate } from "../../operators/index.ts";
import { createFlow, type Flow, observeCommitLatency } from "../../src/flow/flow.ts";
import { writeClickstream } from "../../src/generate/clickstream.ts";
import { fromNdjson, run, toParquet } from "../../src/index.ts";
import { addInputTotal, formatPrometheus, metrics, serveMetrics, snapshotMetrics } from "../../src/run/metrics.ts";
import { tempDir } from "../helpers/duckdb.ts";

/**
 * A small reader of the Prometheus text format, written from the format's description, so the
 * test does not trust the writer's own idea of it: returns samples and the declared families.
 */
function parsePrometheus(text: string) {
  const types = new Map<string, string>();
  const helps = new Map<string, string>();
  const samples: { name: string; labels: Record<string, string>; value: number }[] = [];
  for (const line of text.split("\n")) {
    if (line === "") continue;
    const meta = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line);
    if (meta) {
      (meta[1] === "HELP" ? helps : types).set(meta[2], meta[3]);
      continue;
    }
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$/.exec(line);
    if (!sample) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    const body = sample[3] ?? "";
    const label = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/g;
    let consumed = 0;
    for (let m = label.exec(body); m; m = label.exec(body)) {
      labels[m[1]] = m[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
      consumed += m[0].length;
    }
    if (consumed !== body.length) throw new Error(`bad labels: ${body}`);
    const raw = sample[4];
    samples.push({ name: sample[1], labels, value: raw === "+Inf" ? Number.POSITIVE_INFINITY : Number(raw) });
  }
  const value = (name: string, labels: Record<string, string> = {}) =>
    samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
  return { types, helps, samples, value };
}

function busyFlow(runId = "run-1"): Flow {
  const flow = createFlow(runId);
  flow.stats.in = 120;
  flow.stats.written = 100;
  flow.stats.deadLettered = { validate: 12, parse: 3 };
  flow.stats.files = 2;
  flow.stats.bytes = 4096;
  flow.stats.bytesRead = 9000;
  flow.stats.buffered = 5;
  flow.stats.bufferedBytes = 777;
  flow.stats.openPartitions = 3;
  for (const seconds of [0.005, 0.02, 0.02, 0.3, 20]) observeCommitLatency(flow.stats, seconds);
  return flow;
}

describe("Prometheus text", () => {
  test("every family has HELP and TYPE, counters end in _total and every sample belongs to a declared family", () => {
    const parsed = parsePrometheus(formatPrometheus(snapshotMetrics(busyFlow())));
    for (const [name, type] of parsed.types) {
      expect(parsed.helps.has(name)).toBe(true);
      if (type === "counter") expect(name.endsWith("_total")).toBe(true);
    }
    for (const sample of parsed.samples) {
      const family = sample.name.replace(/_(bucket|sum|count)$/, "");
      expect(parsed.types.has(sample.name) || parsed.types.get(family) === "histogram").toBe(true);
    }
  });

  test("carries the flow's figures: records by stage, bytes, open partition writers, buffered rows", () => {
    const { value, types } = parsePrometheus(formatPrometheus(snapshotMetrics(busyFlow())));
    expect(value("sluice_records_read_total")).toBe(120);
    expect(value("sluice_records_written_total")).toBe(100);
    expect(value("sluice_records_dead_lettered_total", { stage: "validate" })).toBe(12);
    expect(value("sluice_records_dead_lettered_total", { stage: "parse" })).toBe(3);
    expect(value("sluice_files_written_total")).toBe(2);
    expect(value("sluice_bytes_written_total")).toBe(4096);
    expect(value("sluice_bytes_read_total")).toBe(9000);
    expect(value("sluice_buffered_rows")).toBe(5);
    expect(value("sluice_buffered_bytes")).toBe(777);
    expect(value("sluice_open_partition_writers")).toBe(3);
    expect(types.get("sluice_open_partition_writers")).toBe("gauge");
    expect(value("process_resident_memory_bytes")).toBeGreaterThan(0);
    // No total was reported, so no input-size gauge is invented.
    expect(types.has("sluice_input_bytes")).toBe(false);
  });

  test("the commit latency histogram has cumulative buckets ending in +Inf equal to the count", () => {
    const parsed = parsePrometheus(formatPrometheus(snapshotMetrics(busyFlow())));
    expect(parsed.types.get("sluice_commit_latency_seconds")).toBe("histogram");
    const buckets = parsed.samples.filter((s) => s.name === "sluice_commit_latency_seconds_bucket");
    const counts = buckets.map((b) => b.value);
    expect(counts).toEqual([...counts].sort((a, b) => a - b));
    expect(buckets.at(-1)?.labels.le).toBe("+Inf");
    expect(buckets.at(-1)?.value).toBe(5);
    expect(parsed.value("sluice_commit_latency_seconds_bucket", { le: "0.01" })).toBe(1);
    expect(parsed.value("sluice_commit_latency_seconds_bucket", { le: "0.025" })).toBe(3);
    expect(parsed.value("sluice_commit_latency_seconds_bucket", { le: "0.5" })).toBe(4);
    expect(parsed.value("sluice_commit_latency_seconds_bucket", { le: "10" })).toBe(4);
    expect(parsed.value("sluice_commit_latency_seconds_count")).toBe(5);
    expect(parsed.value("sluice_commit_latency_seconds_sum")).toBeCloseTo(20.345, 6);
  });

  test("escapes backslashes, quotes and line feeds in label values", () => {
    const runId = 'a"b\\c\nd';
    const flow = busyFlow(runId);
    flow.stats.deadLettered = { 'odd "stage"\\x': 1 };
    const text = formatPrometheus(snapshotMetrics(flow));
    expect(text).toContain('sluice_run_info{run_id="a\\"b\\\\c\\nd"} 1');
    const parsed = parsePrometheus(text);
    expect(parsed.samples.find((s) => s.name === "sluice_run_info")?.labels.run_id).toBe(runId);
    expect(parsed.value("sluice_records_dead_lettered_total", { stage: 'odd "stage"\\x' })).toBe(1);
  });

  test("reports the input size once a source adds it, summing the parts of several sources", () => {
    const flow = createFlow("r");
    addInputTotal(flow, { bytes: 1000 });
    addInputTotal(flow, { bytes: 24, records: 7 });
    const snapshot = snapshotMetrics(flow);
    expect(snapshot.bytesTotal).toBe(1024);
    expect(snapshot.recordsTotal).toBe(7);
    expect(parsePrometheus(formatPrometheus(snapshot)).value("sluice_input_bytes")).toBe(1024);
  });
});

describe("metrics(flow)", () => {
  test("emits a snapshot at once and then every interval, and stops its timer on unsubscribe", () => {
    const scheduler = new TestScheduler((actual, expected) => expect(actual).toEqual(expected));
    scheduler.run(({ expectObservable }) => {
      const flow = createFlow("r");
      const counts = metrics(flow, { intervalMs: 10, scheduler });
      // The counter moves between snapshots; each snapshot holds the value of its moment.
      scheduler.schedule(() => (flow.stats.in = 5), 5);
      scheduler.schedule(() => (flow.stats.in = 9), 15);
      // Unsubscribed at 25 ms: had the timer kept running, the virtual clock would never stop.
      expectObservable(counts, "^ 25ms !").toBe("a 9ms b 9ms c", {
        a: expect.objectContaining({ in: 0 }),
        b: expect.objectContaining({ in: 5 }),
        c: expect.objectContaining({ in: 9 }),
      });
    });
  });

  test("snapshots are copies: later changes to the flow do not alter an emitted snapshot", () => {
    const flow = busyFlow();
    const snapshot = snapshotMetrics(flow);
    flow.stats.deadLettered.validate = 99;
    flow.stats.commitLatency.buckets[0] = 42;
    expect(snapshot.deadLettered.validate).toBe(12);
    expect(snapshot.commitLatency.buckets[0]).toBe(1);
  });
});

describe("serveMetrics", () => {
  let dir: { path: string; remove: () => Promise<void> };
  let input: string;
  beforeAll(async () => {
    dir = await tempDir();
    input = join(dir.path, "events.ndjson");
    await writeClickstream(input, { count: 5000, seed: 8 });
  });
  afterAll(() => dir.remove());

  test("answers 503 before the run starts, then serves /metrics and /health on 127.0.0.1, 404 elsewhere", async () => {
    let flow: Flow | undefined;
    const server = serveMetrics(() => flow, { port: 0 });
    try {
      expect(server.hostname).toBe("127.0.0.1");
      expect(server.port).toBeGreaterThan(0);
      expect((await fetch(server.url)).status).toBe(503);
      flow = busyFlow("served");
      const response = await fetch(server.url);
      expect(response.status).toBe(200);
      expect(response.headers.get("content-type")).toContain("version=0.0.4");
      expect(parsePrometheus(await response.text()).value("sluice_records_written_total")).toBe(100);
      const health = await fetch(server.url.replace("/metrics", "/health"));
      expect(await health.json()).toMatchObject({ status: "ok", runId: "served", in: 120, written: 100 });
      flow.stopping = true;
      expect(await (await fetch(server.url.replace("/metrics", "/health"))).json()).toMatchObject({ status: "stopping" });
      expect((await fetch(server.url.replace("/metrics", "/nope"))).status).toBe(404);
    } finally {
      await server.stop();
    }
    await expect(fetch(server.url)).rejects.toThrow();
  });

  test("/health says how the run ended once it is finished, failed or stopped, while the server keeps serving", async () => {
    const flow = busyFlow("ended");
    const server = serveMetrics(flow, { port: 0 });
    const health = async () => (await fetch(server.url.replace("/metrics", "/health"))).json();
    try {
      expect(await health()).toMatchObject({ status: "ok", runId: "ended" });
      const figures = { in: 120, written: 100, deadLettered: 20, files: 2, bytes: 4096 };
      server.finish({ status: "finished", exitCode: 0, ...figures, durationMs: 1500 });
      expect(await health()).toMatchObject({ status: "finished", exitCode: 0, runId: "ended", ...figures, durationMs: 1500 });
      server.finish({ status: "stopped", exitCode: 130, ...figures });
      expect(await health()).toMatchObject({ status: "stopped", exitCode: 130 });
      server.finish({ status: "failed", exitCode: 1, ...figures, error: "disk full" });
      expect(await health()).toMatchObject({ status: "failed", exitCode: 1, error: "disk full", written: 100 });
      expect((await fetch(server.url)).status).toBe(200);
    } finally {
      await server.stop();
    }
  });

  test("after a real run the served figures equal the run's summary", async () => {
    let flow: Flow | undefined;
    const server = serveMetrics(() => flow, { port: 0 });
    try {
      const summary = await run(
        fromNdjson(input).pipe(
          validate(ClickEvent),
          enrich(enrichEvent),
          deadLetter(join(dir.path, "dead")),
          toParquet(join(dir.path, "events"), { schema: EnrichedEvent, partitionBy: ["event_date"] }),
        ),
        { onStart: (started) => (flow = started) },
      );
      const { value } = parsePrometheus(await (await fetch(server.url)).text());
      expect(value("sluice_records_read_total")).toBe(summary.in);
      expect(value("sluice_records_written_total")).toBe(summary.written);
      for (const [stage, count] of Object.entries(summary.deadLetteredByStage)) {
        expect(value("sluice_records_dead_lettered_total", { stage })).toBe(count);
      }
      expect(value("sluice_files_written_total")).toBe(summary.files);
      expect(value("sluice_bytes_written_total")).toBe(summary.bytes);
      expect(value("sluice_bytes_read_total")).toBe(summary.bytesRead);
      expect(value("sluice_buffered_rows")).toBe(0);
      expect(value("sluice_open_partition_writers")).toBe(0);
      expect(value("sluice_commit_latency_seconds_count")).toBe(summary.files);
      expect(summary.written).toBeGreaterThan(0);
    } finally {
      await server.stop();
    }
  });

  test("refuses a port that is already taken, at once", () => {
    const taken = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("") });
    try {
      expect(() => serveMetrics(createFlow("r"), { port: taken.port })).toThrow();
    } finally {
      taken.stop(true);
    }
  });
});
