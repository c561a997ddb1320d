/**
 * Live progress of a run: a block redrawn in place on a terminal, or a plain line every few
 * seconds for CI and log files, plus the summary table printed at the end.
 */
import type { Flow, SourceLag } from "../flow/flow.ts";
import { formatBytes, formatSummary, type RunSummary } from "../run/run.ts";
import type { Logger } from "../run/log.ts";
import { type MetricsSnapshot, snapshotMetrics } from "../run/metrics.ts";

/** `tty`: redraw in place; `plain`: a line every interval through the logger; `none`: nothing. */
export type ProgressMode = "tty" | "plain" | "none";

/** Rates and estimates derived from two snapshots. */
export interface ProgressRates {
  readonly rowsPerSecond: number;
  readonly bytesPerSecond: number;
  readonly elapsedSeconds: number;
  /** 0..1 when the input size (or record count) is known. */
  readonly fraction: number | undefined;
  /** Seconds left at the current rate, when the fraction and a rate are known. */
  readonly etaSeconds: number | undefined;
}

/** Options of {@link startProgress}. */
export interface ProgressOptions {
  readonly mode: ProgressMode;
  /** Where plain lines go (and, in JSON format, what shape they take). */
  readonly log: Logger;
  /** Time between plain lines (default 5000 ms). The terminal display redraws every `redrawMs`. */
  readonly intervalMs?: number;
  /** Default 250 ms: four redraws a second. */
  readonly redrawMs?: number;
  /** The terminal stream (default standard error). */
  readonly stream?: { write(text: string): unknown; columns?: number };
}

/** A running progress display. */
export interface ProgressDisplay {
  /** Stops the timer and, on a terminal, erases the block so the summary follows cleanly. */
  stop(): void;
  /** Highest resident memory seen, bytes. */
  peakRss(): number;
}

/**
 * Shows the flow's progress until `stop()`. On a terminal the block shows a bar and an ETA when
 * the sources reported their input's size ({@link addInputTotal}), records in / written /
 * dead-lettered, rows/s and MiB/s (over the last few seconds), files and bytes written,
 * buffered rows and memory, and the consumer lag of broker sources (total, and the partition
 * lagging most) when they report it. In `plain` mode a line goes through the logger every `intervalMs`
 * (a JSON object with the same figures under `--log-format json`).
 *
 * @example
 * const display = startProgress(flow, { mode: process.stderr.isTTY ? "tty" : "plain", log });
 * await done;
 * display.stop();
 */
export function startProgress(flow: Flow, options: ProgressOptions): ProgressDisplay {
  const started = Date.now();
  const stream = options.stream ?? process.stderr;
  const window: MetricsSnapshot[] = [];
  let peak = process.memoryUsage.rss();
  let drawnLines = 0;

  function sample(): { snapshot: MetricsSnapshot; rates: ProgressRates } {
    const snapshot = snapshotMetrics(flow);
    if (snapshot.rssBytes > peak) peak = snapshot.rssBytes;
    window.push(snapshot);
    // Rates over the last few seconds: steady enough to read, recent enough to notice a stall.
    const horizon = options.mode === "tty" ? 3000 : (options.intervalMs ?? 5000);
    while (window.length > 2 && snapshot.at - (window[1] as MetricsSnapshot).at >= horizon) window.shift();
    return { snapshot, rates: progressRates(window[0] as MetricsSnapshot, snapshot, started) };
  }

  function draw() {
    const { snapshot, rates } = sample();
    const width = Math.max(20, (stream.columns ?? 100) - 1);
    const lines = renderProgressBlock(snapshot, rates, width);
    stream.write(`${eraseBlock(drawnLines)}${lines.join("\n")}`);
    drawnLines = lines.length;
  }

  function line() {
    const { snapshot, rates } = sample();
    if (options.log.format === "json") options.log.info("progress", progressFields(snapshot, rates));
    else options.log.info(renderProgressLine(snapshot, rates));
  }

  let timer: ReturnType<typeof setInterval> | undefined;
  const memoryTimer = setInterval(() => {
    const rss = process.memoryUsage.rss();
    if (rss > peak) peak = rss;
  }, 250);
  if (options.mode === "tty") {
    stream.write("\x1b[?25l");
    draw();
    timer = setInterval(draw, options.redrawMs ?? 250);
  } else if (options.mode === "plain") {
    window.push(snapshotMetrics(flow));
    timer = setInterval(line, options.intervalMs ?? 5000);
  }

  return {
    stop() {
      if (timer) clearInterval(timer);
      clearInterval(memoryTimer);
      timer = undefined;
      if (options.mode === "tty") {
        stream.write(`${eraseBlock(drawnLines)}\x1b[?25h`);
        drawnLines = 0;
      }
    },
    peakRss: () => Math.max(peak, process.memoryUsage.rss()),
  };
}

/** Moves the cursor back to the start of a block of `lines` lines and clears it. */
function eraseBlock(lines: number): string {
  if (lines === 0) return "";
  return `${lines > 1 ? `\x1b[${lines - 1}A` : ""}\r\x1b[J`;
}

/** Rates between two snapshots of the same run, and the ETA when the input's size is known. */
export function progressRates(from: MetricsSnapshot, to: MetricsSnapshot, startedAt: number): ProgressRates {
  const seconds = (to.at - from.at) / 1000;
  const rowsPerSecond = seconds > 0 ? (to.in - from.in) / seconds : 0;
  const bytesPerSecond = seconds > 0 ? (to.bytesRead - from.bytesRead) / seconds : 0;
  let fraction: number | undefined;
  let etaSeconds: number | undefined;
  if (to.bytesTotal !== undefined) {
    fraction = Math.min(1, to.bytesRead / to.bytesTotal);
    if (bytesPerSecond > 0) etaSeconds = Math.max(0, (to.bytesTotal - to.bytesRead) / bytesPerSecond);
  } else if (to.recordsTotal !== undefined) {
    fraction = Math.min(1, to.in / to.recordsTotal);
    if (rowsPerSecond > 0) etaSeconds = Math.max(0, (to.recordsTotal - to.in) / rowsPerSecond);
  }
  return { rowsPerSecond, bytesPerSecond, elapsedSeconds: (to.at - startedAt) / 1000, fraction, etaSeconds };
}

const n = (x: number) => Math.round(x).toLocaleString("en-US");

function deadTotal(snapshot: MetricsSnapshot): number {
  return Object.values(snapshot.deadLettered).reduce((a, b) => a + b, 0);
}

/** Total consumer lag over the source partitions, and the partition lagging most; undefined when no source reports lag. */
export function lagSummary(snapshot: MetricsSnapshot): { total: number; worst: SourceLag } | undefined {
  let worst: SourceLag | undefined;
  let total = 0;
  for (const lag of snapshot.lag) {
    total += lag.messages;
    if (!worst || lag.messages > worst.messages) worst = lag;
  }
  return worst ? { total, worst } : undefined;
}

function lagText(snapshot: MetricsSnapshot): string | undefined {
  const lag = lagSummary(snapshot);
  if (!lag) return undefined;
  const { worst } = lag;
  const more = snapshot.lag.length > 1 ? `, worst ${worst.source}/${worst.partition} ${n(worst.messages)}` : "";
  return `lag ${n(lag.total)}${more}`;
}

/** Seconds as `m:ss` or `h:mm:ss`. */
export function formatDuration(seconds: number): string {
  const total = Math.max(0, Math.round(seconds));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

/** The terminal block: a bar line when the total is known, then the counts, then the output. */
export function renderProgressBlock(snapshot: MetricsSnapshot, rates: ProgressRates, width: number): string[] {
  const lines: string[] = [];
  const elapsed = `elapsed ${formatDuration(rates.elapsedSeconds)}`;
  if (rates.fraction !== undefined) {
    const eta = rates.etaSeconds !== undefined ? `ETA ${formatDuration(rates.etaSeconds)}` : "ETA --:--";
    const of =
      snapshot.bytesTotal !== undefined
        ? `${formatBytes(snapshot.bytesRead)} of ${formatBytes(snapshot.bytesTotal)}`
        : `${n(snapshot.in)} of ${n(snapshot.recordsTotal ?? 0)} records`;
    const tail = ` ${(rates.fraction * 100).toFixed(1).padStart(5)}%  ${eta}  ${of}  ${elapsed}`;
    const barWidth = Math.max(10, Math.min(40, width - tail.length - 2));
    const filled = Math.round(rates.fraction * barWidth);
    lines.push(`[${"#".repeat(filled)}${"-".repeat(barWidth - filled)}]${tail}`);
  }
  const stages = Object.entries(snapshot.deadLettered)
    .map(([stage, count]) => `${stage} ${n(count)}`)
    .join(", ");
  lines.push(
    `in ${n(snapshot.in)}  written ${n(snapshot.written)}  dead-lettered ${n(deadTotal(snapshot))}${stages ? ` (${stages})` : ""}` +
      `  ${n(rates.rowsPerSecond)} rows/s  ${formatBytes(rates.bytesPerSecond)}/s`,
  );
  lines.push(
    `files ${n(snapshot.files)} (${formatBytes(snapshot.bytes)})  buffered ${n(snapshot.buffered)} rows in ${n(snapshot.openPartitions)} partitions` +
      `  rss ${formatBytes(snapshot.rssBytes)}${rates.fraction === undefined ? `  ${elapsed}` : ""}${snapshot.stopping ? "  stopping…" : ""}`,
  );
  const lag = lagText(snapshot);
  if (lag) lines.push(`${lag} (messages not acknowledged, as the broker reports)`);
  return lines.map((text) => (text.length > width ? `${text.slice(0, width - 1)}…` : text));
}

/** One plain line for logs. */
export function renderProgressLine(snapshot: MetricsSnapshot, rates: ProgressRates): string {
  const head = `progress${rates.fraction !== undefined ? ` ${(rates.fraction * 100).toFixed(1)}%` : ""}${rates.etaSeconds !== undefined ? ` eta ${formatDuration(rates.etaSeconds)}` : ""}:`;
  const parts = [
    `in ${n(snapshot.in)} (${n(rates.rowsPerSecond)} rows/s)`,
    `written ${n(snapshot.written)}`,
    `dead-lettered ${n(deadTotal(snapshot))}`,
    `read ${formatBytes(snapshot.bytesRead)} (${formatBytes(rates.bytesPerSecond)}/s)`,
    `files ${n(snapshot.files)} (${formatBytes(snapshot.bytes)})`,
    `buffered ${n(snapshot.buffered)}`,
    ...(snapshot.lag.length > 0 ? [lagText(snapshot) as string] : []),
    `rss ${formatBytes(snapshot.rssBytes)}`,
    `elapsed ${formatDuration(rates.elapsedSeconds)}`,
  ];
  if (snapshot.stopping) parts.push("stopping");
  return `${head} ${parts.join(" · ")}`;
}

/** The figures of a progress line as JSON fields. */
export function progressFields(snapshot: MetricsSnapshot, rates: ProgressRates): Record<string, unknown> {
  return {
    in: snapshot.in,
    written: snapshot.written,
    deadLettered: deadTotal(snapshot),
    deadLetteredByStage: snapshot.deadLettered,
    rowsPerSecond: Math.round(rates.rowsPerSecond),
    bytesRead: snapshot.bytesRead,
    bytesPerSecond: Math.round(rates.bytesPerSecond),
    files: snapshot.files,
    bytesWritten: snapshot.bytes,
    buffered: snapshot.buffered,
    openPartitions: snapshot.openPartitions,
    rssBytes: snapshot.rssBytes,
    elapsedSeconds: Math.round(rates.elapsedSeconds * 10) / 10,
    ...(rates.fraction !== undefined ? { fraction: Math.round(rates.fraction * 1000) / 1000 } : {}),
    ...(rates.etaSeconds !== undefined ? { etaSeconds: Math.round(rates.etaSeconds) } : {}),
    ...(snapshot.stopping ? { stopping: true } : {}),
    ...lagFields(snapshot),
  };
}

function lagFields(snapshot: MetricsSnapshot): Record<string, unknown> {
  const lag = lagSummary(snapshot);
  if (!lag) return {};
  const { source, partition, group, messages } = lag.worst;
  return { lag: lag.total, lagWorst: { source, partition, group, messages } };
}

/** The end-of-run table: {@link formatSummary} plus throughput and peak memory. */
export function formatRunTable(summary: RunSummary, extra: { peakRssBytes: number; status: string }): string {
  const seconds = Math.max(summary.durationMs / 1000, 0.001);
  const rows = [
    ["throughput", `${formatBytes(summary.bytesRead / seconds)}/s read`],
    ["peak memory", `${formatBytes(extra.peakRssBytes)} rss`],
    ["status", extra.status],
  ];
  return `${formatSummary(summary)}\n${rows.map(([k, v]) => `${(k as string).padEnd(14)} ${v}`).join("\n")}`;
}
