/**
 * A tiny logger for runs: a level, a message and fields, written as one line each, either for
 * people (`text`) or for log collectors (`json`, one object per line carrying the run id).
 */
import { redactText } from "./redact.ts";

/** How serious a log line is. Lines below the logger's level are not written. */
export type LogLevel = "debug" | "info" | "warn" | "error";

/** `text`: `2024-03-01T12:00:00.000Z info  message key=value`; `json`: one JSON object per line. */
export type LogFormat = "text" | "json";

/** Extra figures attached to a line. `bigint` is written as a string, an `Error` as its message. */
export type LogFields = Readonly<Record<string, unknown>>;

/** Options of {@link createLogger}. */
export interface LoggerOptions {
  /** Default `text`. */
  readonly format?: LogFormat;
  /** Written into every JSON line as `runId` (and nowhere in text lines, where it would be noise). */
  readonly runId?: string;
  /** The lowest level written (default `info`). */
  readonly level?: LogLevel;
  /** Receives each finished line, without its newline (default: standard error). */
  readonly write?: (line: string) => void;
  /** The clock (tests). */
  readonly now?: () => Date;
}

/** Writes log lines. Every method writes at most one line and never throws for odd fields. */
export interface Logger {
  readonly format: LogFormat;
  readonly runId: string | undefined;
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
}

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

// Keys a JSON line always has; a field of the same name is kept under "field.<name>".
const RESERVED = new Set(["time", "level", "runId", "message"]);

/**
 * Creates a logger. Lines are written synchronously in the order of the calls.
 *
 * In `json` format each line is `{"time","level","runId","message",...fields}`; fields whose
 * names collide with those four are written as `field.<name>`. In `text` format, fields follow
 * the message as `key=value` (strings with spaces are quoted as JSON strings). In both, URL
 * passwords and credential query values are masked (`postgres://app:***@db`), wherever they are:
 * an error message quoting a connection string must not put the password in the log.
 *
 * @example
 * const log = createLogger({ format: "json", runId: "20240301T120000Z-abc123" });
 * log.info("run finished", { in: 1000, written: 990 });
 * // {"time":"…","level":"info","runId":"20240301T120000Z-abc123","message":"run finished","in":1000,"written":990}
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  const format = options.format ?? "text";
  const threshold = RANK[options.level ?? "info"];
  const write = options.write ?? ((line: string) => process.stderr.write(`${line}\n`));
  const now = options.now ?? (() => new Date());

  function log(level: LogLevel, message: string, fields: LogFields | undefined) {
    if (RANK[level] < threshold) return;
    const time = now().toISOString();
    if (format === "json") {
      const line: Record<string, unknown> = { time, level, runId: options.runId, message };
      if (fields) for (const [key, value] of Object.entries(fields)) line[RESERVED.has(key) ? `field.${key}` : key] = plain(value);
      write(redactText(JSON.stringify(line)));
      return;
    }
    let line = `${time} ${level.padEnd(5)} ${message}`;
    if (fields) for (const [key, value] of Object.entries(fields)) line += ` ${key}=${textValue(plain(value))}`;
    write(redactText(line));
  }

  return {
    format,
    runId: options.runId,
    debug: (message, fields) => log("debug", message, fields),
    info: (message, fields) => log("info", message, fields),
    warn: (message, fields) => log("warn", message, fields),
    error: (message, fields) => log("error", message, fields),
  };
}

/** A value JSON can hold: bigint as text, errors as their message, cycles cut. */
function plain(value: unknown): unknown {
  if (typeof value === "bigint") return value.toString();
  if (value instanceof Error) return value.message;
  if (value === undefined) return null;
  if (typeof value === "object" && value !== null) {
    try {
      return JSON.parse(JSON.stringify(value, (_key, v) => (typeof v === "bigint" ? v.toString() : v)));
    } catch {
      return String(value);
    }
  }
  return value;
}

function textValue(value: unknown): string {
  if (typeof value === "string") return /^[^\s"=]+$/.test(value) ? value : JSON.stringify(value);
  return JSON.stringify(value) ?? String(value);
}
