/**
 * An ingest service: clickstream events POSTed over HTTP → validation → enrichment →
 * date-partitioned Parquet, with every rejected line in the dead letter. sluice embedded in an
 * app that owns its process, its server and its signals.
 *
 *   bun examples/http-ingest.ts [--port 0] [--host 127.0.0.1] [--out out/http-ingest]
 *                               [--max-file-age-ms 10000] [--memory-budget BYTES] [--wait-ms 250] [--json]
 *
 * (port also from $PORT; 0 picks a free one). Prints `listening on <url>`, then serves:
 *
 * - `POST /events`: one JSON object (`Content-Type: application/json`) or an NDJSON batch (any
 *   other type). Each line is one event, positioned as input `http` + a sequence number. A line
 *   that is not JSON, or not UTF-8, becomes a dead letter at stage `parse`, not an error for the
 *   batch. Answers 202 `{ accepted, notJson }`; 503 with `Retry-After` when the sink's memory
 *   budget stays spent past `--wait-ms` (nothing of the batch was taken: send it again), and
 *   while shutting down.
 *   A batch cut short by a shutdown answers 503 with `accepted` = how many of its lines, from
 *   the first, were taken: send the rest elsewhere or later.
 * - `GET /health`: 200 with the run's counters, 503 once shutting down.
 *
 * Writes <out>/events/event_date=YYYY-MM-DD/part-<run>-*.parquet (appending: every start adds
 * files) and <out>/dead-letter/*.ndjson. Files become durable at their size bounds, and an
 * idle service still commits within `--max-file-age-ms`. On SIGTERM or SIGINT it stops
 * accepting, lets the run commit what it holds, prints the summary and exits 0.
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import { type Flow, formatSummary, fromPush, parseJson, run, type RunSummary, toParquet } from "sluice";
import { deadLetter, enrich, validate } from "sluice/operators";
import { ClickEvent, EnrichedEvent, enrichEvent } from "./clickstream.ts";

/** Options of {@link startIngest}. */
export interface IngestOptions {
  /** Folder for `events/` and `dead-letter/`. */
  readonly outDir: string;
  /** 0 picks a free port. */
  readonly port?: number;
  readonly hostname?: string;
  /** Commit Parquet and dead-letter files at least this often while events arrive slowly (default 10 s). */
  readonly maxFileAgeMs?: number;
  /** The sink's memory budget in bytes (default the sink's, 16 MiB). */
  readonly memoryBudget?: number;
  /** How long a request waits for a spent budget to free up before it is answered 503 (default 250 ms). */
  readonly waitMs?: number;
}

/** A running service: its server, the run it feeds, and how to stop both. */
export interface Ingest {
  readonly server: Bun.Server<undefined>;
  /** Settles when the run ends (after `shutdown`, or when it fails). */
  readonly done: Promise<RunSummary>;
  /** Stops accepting, commits what is held, stops the server; resolves with the run's summary. */
  shutdown(): Promise<RunSummary>;
}

const MAX_BODY_BYTES = 16 * 1024 * 1024;

/** Starts the pipeline and the HTTP server in front of it. */
export function startIngest(options: IngestOptions): Ingest {
  const maxFileAgeMs = options.maxFileAgeMs ?? 10_000;
  const waitMs = options.waitMs ?? 250;
  const events = fromPush<unknown>({ name: "http" });
  const stop = new AbortController();
  let flow: Flow | undefined;
  // No handleSignals: this app installs its own handlers, and decides when to exit.
  const done = run(
    events.pipe(
      validate(ClickEvent),
      enrich(enrichEvent),
      deadLetter(join(options.outDir, "dead-letter"), { maxFileAgeMs }),
      toParquet(join(options.outDir, "events"), {
        schema: EnrichedEvent,
        partitionBy: ["event_date"],
        maxFileAgeMs,
        memoryBudget: options.memoryBudget,
        mode: "append",
      }),
    ),
    { signal: stop.signal, onStart: (f) => (flow = f) },
  );
  let stopping = false;

  const json = (status: number, body: unknown, headers: Record<string, string> = {}) => Response.json(body, { status, headers });
  const shuttingDown = (accepted: number) => json(503, { error: "shutting down", accepted }, { Connection: "close" });

  /** Pushes one line, waiting while the source cannot take it. */
  async function offer(bytes: Uint8Array): Promise<"event" | "notJson" | "closed"> {
    let value: unknown;
    let invalid: string | undefined;
    // `request.text()` would put U+FFFD in place of bytes that are not UTF-8, changing the event
    // without a word: such a line is a dead letter, as the file sources make it.
    let line = utf8(bytes);
    if (line === undefined) {
      line = lenient.decode(bytes);
      invalid = "line is not valid UTF-8";
    } else {
      // As the file sources read a line: malformed JSON, a number a float cannot hold (1e400)
      // and deep nesting are refused with a reason, never turned into Infinity or other digits.
      const parsed = parseJson(line);
      if (parsed.error === undefined) value = parsed.value;
      else invalid = parsed.error;
    }
    for (;;) {
      // The raw line rides along, so a dead letter shows exactly what the client sent.
      const taken = invalid === undefined ? events.push(value, { raw: line }) : events.pushInvalid(line, invalid);
      if (taken) return invalid === undefined ? "event" : "notJson";
      try {
        await events.drained();
      } catch {
        // The source closed (shutdown): waiting would never end.
        return "closed";
      }
    }
  }

  async function ingest(request: Request): Promise<Response> {
    if (stopping || events.closed) return shuttingDown(0);
    const body = new Uint8Array(await request.arrayBuffer());
    const oneObject = (request.headers.get("content-type") ?? "").startsWith("application/json");
    const lines = oneObject ? [body] : splitLines(body);
    // Admission: a batch is taken whole or not at all, so a client resends exactly what it sent.
    // While the sink's budget is spent the source refuses; wait a little for it, then say 503.
    const admitted = await Promise.race([
      events.drained().then(
        () => "yes" as const,
        () => "closed" as const,
      ),
      Bun.sleep(waitMs).then(() => "busy" as const),
    ]);
    if (admitted === "closed") return shuttingDown(0);
    if (admitted === "busy") {
      return json(503, { error: "busy: the pipeline's memory budget is spent; send the batch again after Retry-After", accepted: 0 }, { "Retry-After": "1" });
    }
    let notJson = 0;
    for (let i = 0; i < lines.length; i++) {
      const taken = await offer(lines[i] as Uint8Array);
      if (taken === "closed") return shuttingDown(i);
      if (taken === "notJson") notJson++;
    }
    return json(202, { accepted: lines.length, notJson });
  }

  const server = Bun.serve({
    port: options.port ?? 0,
    hostname: options.hostname ?? "127.0.0.1",
    maxRequestBodySize: MAX_BODY_BYTES,
    routes: {
      "/events": { POST: ingest },
      "/health": () => {
        const s = flow?.stats;
        const counters = {
          in: s?.in ?? 0,
          written: s?.written ?? 0,
          deadLettered: Object.values(s?.deadLettered ?? {}).reduce((a, b) => a + b, 0),
          buffered: s?.buffered ?? 0,
          waiting: events.waiting,
        };
        return stopping ? json(503, { status: "stopping", ...counters }) : json(200, { status: "ok", ...counters });
      },
    },
    fetch: (request) =>
      new URL(request.url).pathname === "/events"
        ? json(405, { error: "POST events to /events" }, { Allow: "POST" })
        : json(404, { error: "not found: POST /events or GET /health" }),
  });

  let finished: Promise<RunSummary> | undefined;
  return {
    server,
    done,
    shutdown() {
      finished ??= (async () => {
        stopping = true;
        // The source refuses new records from here; what it took is still written.
        stop.abort();
        try {
          return await done;
        } finally {
          // Requests still being answered finish; new connections are refused.
          server.stop();
        }
      })();
      return finished;
    },
  };
}

const strict = new TextDecoder("utf-8", { fatal: true });
const lenient = new TextDecoder("utf-8");

/** The line's text, or undefined when its bytes are not UTF-8. */
function utf8(bytes: Uint8Array): string | undefined {
  try {
    return strict.decode(bytes);
  } catch {
    return undefined;
  }
}

/** NDJSON lines of a body: `\n` or `\r\n` ends a line; a last line without one is still a line. */
function splitLines(body: Uint8Array): Uint8Array[] {
  const lines: Uint8Array[] = [];
  let start = 0;
  while (start < body.length) {
    let end = body.indexOf(0x0a, start);
    if (end === -1) end = body.length;
    lines.push(body.subarray(start, end > start && body[end - 1] === 0x0d ? end - 1 : end));
    start = end + 1;
  }
  return lines;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Bun.argv.slice(2),
    options: {
      port: { type: "string", default: process.env.PORT ?? "0" },
      host: { type: "string", default: "127.0.0.1" },
      out: { type: "string", default: join("out", "http-ingest") },
      "max-file-age-ms": { type: "string", default: "10000" },
      "memory-budget": { type: "string" },
      "wait-ms": { type: "string", default: "250" },
      json: { type: "boolean", default: false },
    },
  });
  const number = (name: string, text: string | undefined) => {
    const n = Number(text);
    if (text === undefined || !Number.isInteger(n) || n < 0) {
      console.error(`http-ingest: --${name} must be a whole number >= 0, got ${text}`);
      process.exit(2);
    }
    return n;
  };
  const ingest = startIngest({
    outDir: values.out,
    port: number("port", values.port),
    hostname: values.host,
    maxFileAgeMs: number("max-file-age-ms", values["max-file-age-ms"]),
    memoryBudget: values["memory-budget"] === undefined ? undefined : number("memory-budget", values["memory-budget"]),
    waitMs: number("wait-ms", values["wait-ms"]),
  });
  console.log(`listening on ${ingest.server.url}`);

  let signals = 0;
  async function onSignal(signal: string) {
    // A second signal means "now": the files committed so far are whole; the rest is lost.
    if (++signals > 1) process.exit(130);
    console.error(`${signal}: no longer accepting; committing what is held`);
    const summary = await ingest.shutdown();
    console.log(values.json ? JSON.stringify(summary) : formatSummary(summary));
    process.exit(0);
  }
  process.on("SIGTERM", () => onSignal("SIGTERM"));
  process.on("SIGINT", () => onSignal("SIGINT"));
  // A run that fails (disk full) ends the service loudly.
  ingest.done.catch((error) => {
    console.error(`http-ingest: the pipeline failed: ${(error as Error).message}`);
    process.exit(1);
  });
}
