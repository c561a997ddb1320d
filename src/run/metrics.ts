/**
 * A run's figures, for people and for Prometheus: snapshots of the flow's counters, an observable
 * of them, their Prometheus text exposition and a small HTTP server for `/metrics` and `/health`.
 */
import { map, type Observable, type SchedulerLike, timer } from "rxjs";
import { COMMIT_LATENCY_BUCKETS, type Flow, type FlowStats, type SourceLag } from "../flow/flow.ts";

/** The figures of a run at one moment. Counters only grow; gauges go up and down. */
export interface MetricsSnapshot {
  readonly runId: string;
  /** When the snapshot was taken, epoch milliseconds. */
  readonly at: number;
  /** Records read by the sources (counter). */
  readonly in: number;
  /** Rows committed to the dataset (counter). */
  readonly written: number;
  /** Dead letters by stage (counters). */
  readonly deadLettered: Readonly<Record<string, number>>;
  /** Records read again after a resume that an earlier run had already made durable (counter). */
  readonly skipped: number;
  /** Parquet files committed and their bytes (counters). */
  readonly files: number;
  readonly bytes: number;
  /** Bytes read from inputs (counter). */
  readonly bytesRead: number;
  /** Size of all inputs when the sources know it (see {@link addInputTotal}). */
  readonly bytesTotal: number | undefined;
  /** Number of input records when the sources know it. */
  readonly recordsTotal: number | undefined;
  /** Rows and bytes held in the sink, not yet committed (gauges). */
  readonly buffered: number;
  readonly bufferedBytes: number;
  /** Partition writers open in the sink (gauge). */
  readonly openPartitions: number;
  /** Buffer flush → durable file, seconds: per-bucket counts over {@link COMMIT_LATENCY_BUCKETS} then +Inf. */
  readonly commitLatency: { readonly count: number; readonly sumSeconds: number; readonly buckets: readonly number[] };
  /** Resident memory of the process, bytes. */
  readonly rssBytes: number;
  /** True once the run was asked to stop (SIGINT/SIGTERM or an abort). */
  readonly stopping: boolean;
  /** Consumer lag per source partition, as the brokers last reported it (gauges), sorted by source, partition, group. */
  readonly lag: readonly SourceLag[];
}

// Input totals are optional figures a source may report; until FlowStats declares them they
// ride on the stats object under these names.
interface InputTotals {
  bytesTotal?: number;
  recordsTotal?: number;
}

/**
 * Adds to the size of the run's input, so progress displays can draw a bar and an ETA. A source
 * calls it once it knows what it will read (for files: the sum of their sizes). Totals add up,
 * so sources concatenated in one pipeline each report their own part.
 *
 * @example
 * const sizes = await Promise.all(paths.map((p) => Bun.file(p).size));
 * addInputTotal(flow, { bytes: sizes.reduce((a, b) => a + b, 0) });
 */
export function addInputTotal(flow: Flow, total: { readonly bytes?: number; readonly records?: number }): void {
  const stats = flow.stats as FlowStats & InputTotals;
  if (total.bytes !== undefined) stats.bytesTotal = (stats.bytesTotal ?? 0) + total.bytes;
  if (total.records !== undefined) stats.recordsTotal = (stats.recordsTotal ?? 0) + total.records;
}

/** Which source partition a lag figure belongs to. */
export interface LagWhere {
  /** The input's name without the partition (`redis:<stream>`, `jetstream:<stream>`, `kafka:<topic>`). */
  readonly source: string;
  readonly partition: string;
  readonly group: string;
}

function lagKey(where: LagWhere): string {
  return JSON.stringify([where.source, where.partition, where.group]);
}

/**
 * Records a source partition's consumer lag as its broker reports it: `messages` the group has not
 * acknowledged (not yet delivered plus delivered and not acknowledged), `pending` the delivered
 * part when the broker says. A broker source calls it every few seconds while it reads; the
 * figure stays as last reported once the source ends. Names only, never URLs or credentials.
 *
 * @example
 * setLag(flow, { source: "redis:events", partition: "0", group: "lake" }, { messages: 120, pending: 20 });
 */
export function setLag(flow: Flow, where: LagWhere, figures: { readonly messages: number; readonly pending?: number | undefined }): void {
  if (!Number.isFinite(figures.messages)) return;
  const pending = figures.pending !== undefined && Number.isFinite(figures.pending) ? figures.pending : undefined;
  flow.stats.lag.set(lagKey(where), { ...where, messages: Math.max(0, figures.messages), pending, at: Date.now() });
}

/** Forgets a source partition's lag (a Kafka partition that went to another reader of the group). */
export function deleteLag(flow: Flow, where: LagWhere): void {
  flow.stats.lag.delete(lagKey(where));
}

/** The flow's figures now. Copies everything, so the snapshot does not change afterwards. */
export function snapshotMetrics(flow: Flow): MetricsSnapshot {
  const s = flow.stats as FlowStats & InputTotals;
  return {
    runId: flow.runId,
    at: Date.now(),
    in: s.in,
    written: s.written,
    deadLettered: { ...s.deadLettered },
    // Optional until every FlowStats producer has it (checkpoint/resume adds it).
    skipped: (s as { skipped?: number }).skipped ?? 0,
    files: s.files,
    bytes: s.bytes,
    bytesRead: s.bytesRead,
    bytesTotal: positive(s.bytesTotal),
    recordsTotal: positive(s.recordsTotal),
    buffered: s.buffered,
    bufferedBytes: s.bufferedBytes,
    openPartitions: s.openPartitions,
    commitLatency: {
      count: s.commitLatency.count,
      sumSeconds: s.commitLatency.sumSeconds,
      buckets: [...s.commitLatency.buckets],
    },
    rssBytes: process.memoryUsage.rss(),
    stopping: flow.stopping,
    lag: [...(s.lag?.values() ?? [])].sort(
      (a, b) => a.source.localeCompare(b.source) || a.partition.localeCompare(b.partition, undefined, { numeric: true }) || a.group.localeCompare(b.group),
    ),
  };
}

function positive(value: number | undefined): number | undefined {
  return typeof value === "number" && Number.isFinite(value) && value > 0 ? value : undefined;
}

/** Options of {@link metrics}. */
export interface MetricsOptions {
  /** Time between snapshots (default 1000 ms). */
  readonly intervalMs?: number;
  /** The scheduler timing the snapshots (tests use RxJS's `TestScheduler`). */
  readonly scheduler?: SchedulerLike;
}

/**
 * Emits a {@link MetricsSnapshot} of the flow at once and then every `intervalMs`.
 *
 * Never completes on its own (a run's end is not visible from its flow): unsubscribe when the run
 * ends, which stops the timer. Never errors.
 *
 * @example
 * const subscription = metrics(flow, { intervalMs: 5000 }).subscribe((m) => console.log(m.in, m.written));
 * await done;
 * subscription.unsubscribe();
 */
export function metrics(flow: Flow, options: MetricsOptions = {}): Observable<MetricsSnapshot> {
  return timer(0, options.intervalMs ?? 1000, options.scheduler).pipe(map(function snapshot() {
    return snapshotMetrics(flow);
  }));
}

/**
 * The snapshot in Prometheus' text exposition format (version 0.0.4): HELP and TYPE lines,
 * counters ending in `_total`, the commit latency as a histogram with cumulative
 * `_bucket{le="…"}`, `_sum` and `_count`, label values escaped.
 *
 * @example
 * new Response(formatPrometheus(snapshotMetrics(flow)), { headers: { "content-type": PROMETHEUS_CONTENT_TYPE } });
 */
export function formatPrometheus(snapshot: MetricsSnapshot): string {
  const out: string[] = [];
  const family = (name: string, type: "counter" | "gauge" | "histogram", help: string) => {
    out.push(`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} ${type}`);
  };
  const sample = (name: string, value: number, labels?: Record<string, string>) => {
    out.push(`${name}${formatLabels(labels)} ${formatValue(value)}`);
  };

  family("sluice_run_info", "gauge", "The run these figures belong to; always 1.");
  sample("sluice_run_info", 1, { run_id: snapshot.runId });
  family("sluice_records_read_total", "counter", "Records read by the sources, including lines that did not parse.");
  sample("sluice_records_read_total", snapshot.in);
  family("sluice_records_written_total", "counter", "Rows committed to the dataset.");
  sample("sluice_records_written_total", snapshot.written);
  family("sluice_records_dead_lettered_total", "counter", "Records sent to the dead letter, by the stage that rejected them.");
  for (const [stage, count] of Object.entries(snapshot.deadLettered).sort(([a], [b]) => a.localeCompare(b))) {
    sample("sluice_records_dead_lettered_total", count, { stage });
  }
  family("sluice_records_skipped_total", "counter", "Records read again after a resume that an earlier run had already made durable.");
  sample("sluice_records_skipped_total", snapshot.skipped);
  family("sluice_files_written_total", "counter", "Parquet files committed.");
  sample("sluice_files_written_total", snapshot.files);
  family("sluice_bytes_written_total", "counter", "Bytes of Parquet committed.");
  sample("sluice_bytes_written_total", snapshot.bytes);
  family("sluice_bytes_read_total", "counter", "Bytes read from the inputs.");
  sample("sluice_bytes_read_total", snapshot.bytesRead);
  if (snapshot.bytesTotal !== undefined) {
    family("sluice_input_bytes", "gauge", "Size of the run's inputs, as reported by the sources.");
    sample("sluice_input_bytes", snapshot.bytesTotal);
  }
  if (snapshot.recordsTotal !== undefined) {
    family("sluice_input_records", "gauge", "Number of input records, as reported by the sources.");
    sample("sluice_input_records", snapshot.recordsTotal);
  }
  family("sluice_buffered_rows", "gauge", "Rows held in sink buffers, not yet committed.");
  sample("sluice_buffered_rows", snapshot.buffered);
  family("sluice_buffered_bytes", "gauge", "Bytes held in sink buffers and in-flight encodes.");
  sample("sluice_buffered_bytes", snapshot.bufferedBytes);
  family("sluice_open_partition_writers", "gauge", "Partition buffers open in the sink.");
  sample("sluice_open_partition_writers", snapshot.openPartitions);
  family("sluice_commit_latency_seconds", "histogram", "Time from a buffer's flush to its file being durable.");
  let cumulative = 0;
  COMMIT_LATENCY_BUCKETS.forEach((bound, i) => {
    cumulative += snapshot.commitLatency.buckets[i] ?? 0;
    sample("sluice_commit_latency_seconds_bucket", cumulative, { le: formatValue(bound) });
  });
  sample("sluice_commit_latency_seconds_bucket", snapshot.commitLatency.count, { le: "+Inf" });
  sample("sluice_commit_latency_seconds_sum", snapshot.commitLatency.sumSeconds);
  sample("sluice_commit_latency_seconds_count", snapshot.commitLatency.count);
  if (snapshot.lag.length > 0) {
    family("sluice_source_lag", "gauge", "Messages of a source partition its consumer group has not acknowledged (not yet delivered, plus delivered and not acknowledged), as the broker last reported it.");
    for (const lag of snapshot.lag) sample("sluice_source_lag", lag.messages, lagLabels(lag));
    const pending = snapshot.lag.filter((lag) => lag.pending !== undefined);
    if (pending.length > 0) {
      family("sluice_source_pending", "gauge", "Of a source partition's lag, the messages delivered and not acknowledged, as the broker last reported it.");
      for (const lag of pending) sample("sluice_source_pending", lag.pending as number, lagLabels(lag));
    }
  }
  family("sluice_stopping", "gauge", "1 once the run was asked to stop (SIGINT/SIGTERM), else 0.");
  sample("sluice_stopping", snapshot.stopping ? 1 : 0);
  family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
  sample("process_resident_memory_bytes", snapshot.rssBytes);
  return `${out.join("\n")}\n`;
}

/** The content type of {@link formatPrometheus}'s text. */
export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

function lagLabels(lag: SourceLag): Record<string, string> {
  return { source: lag.source, partition: lag.partition, group: lag.group };
}

function formatLabels(labels: Record<string, string> | undefined): string {
  if (!labels) return "";
  const parts = Object.entries(labels).map(([key, value]) => `${key}="${escapeLabel(value)}"`);
  return `{${parts.join(",")}}`;
}

/** Label values escape backslash, double quote and line feed. */
export function escapeLabel(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

function escapeHelp(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Number.POSITIVE_INFINITY) return "+Inf";
  if (value === Number.NEGATIVE_INFINITY) return "-Inf";
  return String(value);
}

/** Options of {@link serveMetrics}. */
export interface ServeMetricsOptions {
  /** Default `127.0.0.1`: the figures are not published beyond the machine unless asked. */
  readonly hostname?: string;
  /** Default 9464; 0 picks a free port (read it from the result). */
  readonly port?: number;
}

/** How a run ended, as `/health` reports it once given to {@link MetricsServer.finish}. */
export interface RunOutcome {
  /** `finished`: the whole input was read; `stopped`: a signal or an abort ended it early; `failed`: an infrastructure error. */
  readonly status: "finished" | "failed" | "stopped";
  /** The exit code the command ends with. */
  readonly exitCode: number;
  /** Records read, rows committed, dead letters (all stages), files and bytes written: the summary's figures, or what was counted before a failure. */
  readonly in: number;
  readonly written: number;
  readonly deadLettered: number;
  readonly files: number;
  readonly bytes: number;
  readonly durationMs?: number | undefined;
  /** The failure's message. */
  readonly error?: string | undefined;
}

/** A running metrics server. */
export interface MetricsServer {
  readonly hostname: string;
  readonly port: number;
  /** `http://host:port/metrics`. */
  readonly url: string;
  /**
   * Records how the run ended: from then on `/health` answers with the outcome's status and
   * figures (while the server lingers for a last scrape), not `ok`.
   */
  finish(outcome: RunOutcome): void;
  /** Stops listening; resolves once closed. */
  stop(): Promise<void>;
}

/**
 * Serves the flow's figures over HTTP with `Bun.serve`: `GET /metrics` in Prometheus text
 * format, `GET /health` as JSON (`{"status":"ok"|"stopping","runId",…}` during the run; after
 * `finish(outcome)`, `{"status":"finished"|"failed"|"stopped","exitCode",…figures}`; status 200),
 * anything else 404. `flow` may be a function returning the flow, so the port can be bound (and a busy
 * port reported) before the run starts; until it returns a flow both routes answer 503.
 *
 * Throws at once when the port cannot be bound. Runs until `stop()`.
 *
 * @example
 * const server = serveMetrics(flow, { port: 9464 });
 * console.log(`metrics on ${server.url}`);
 * await done;
 * await server.stop();
 */
export function serveMetrics(flow: Flow | (() => Flow | undefined), options: ServeMetricsOptions = {}): MetricsServer {
  const currentFlow = typeof flow === "function" ? flow : () => flow;
  const hostname = options.hostname ?? "127.0.0.1";
  const started = Date.now();
  const notStarted = () => new Response("the run has not started\n", { status: 503 });
  let outcome: RunOutcome | undefined;
  const server = Bun.serve({
    hostname,
    port: options.port ?? 9464,
    routes: {
      "/metrics": function metricsRoute() {
        const open = currentFlow();
        if (!open) return notStarted();
        return new Response(formatPrometheus(snapshotMetrics(open)), { headers: { "content-type": PROMETHEUS_CONTENT_TYPE } });
      },
      "/health": function healthRoute() {
        const open = currentFlow();
        const uptimeSeconds = (Date.now() - started) / 1000;
        if (outcome) return Response.json({ ...outcome, runId: open?.runId, uptimeSeconds });
        if (!open) return notStarted();
        return Response.json({
          status: open.stopping ? "stopping" : "ok",
          runId: open.runId,
          uptimeSeconds,
          in: open.stats.in,
          written: open.stats.written,
        });
      },
    },
    fetch: () => new Response("not found: try /metrics or /health\n", { status: 404 }),
  });
  const port = server.port ?? 0;
  const host = hostname.includes(":") ? `[${hostname}]` : hostname;
  return {
    hostname,
    port,
    url: `http://${host}:${port}/metrics`,
    finish(end) {
      outcome = end;
    },
    stop: () => server.stop(true).then(() => {}),
  };
}
