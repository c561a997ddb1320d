/**
 * One page request of `fromHttp`, with its retries: network errors, timeouts, 408, 429, 5xx and
 * bodies that are not JSON are tried again with exponential backoff and full jitter; a
 * `Retry-After` header is honoured and pauses every concurrent request, since the server is
 * rate-limiting the client, not one URL. Other 4xx fail at once: asking again will not help.
 */

import { preview } from "./url.ts";

/** How long to wait between attempts. All fields are optional. */
export interface Backoff {
  /** The first retry waits up to this long; each next one doubles it (default 250 ms). */
  readonly baseMs?: number;
  /** No backoff wait is longer than this (default 30 s). */
  readonly maxMs?: number;
  /** A `Retry-After` longer than this is cut to it (default 120 s). */
  readonly retryAfterMaxMs?: number;
  /** The jitter's random source, `[0, 1)` (default `Math.random`). */
  readonly random?: () => number;
  /**
   * Waits `ms` or until `signal` aborts (default: a timer). Tests pass a recorder that waits
   * less; every wait, `Retry-After` included, goes through it.
   */
  readonly sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
}

/** Everything a request needs, shared by the pages of one extraction. */
export interface RequestContext {
  /** Header values are sent, never shown: messages name only the header names. */
  readonly headers: Readonly<Record<string, string>>;
  /** Names of the headers and query parameters that carry credentials (for messages). */
  readonly credentialNames: readonly string[];
  readonly retries: number;
  readonly backoff: Required<Backoff>;
  readonly timeoutMs: number;
  readonly maxPageBytes: number;
  /** Aborted when the whole extraction ends: cancels the shared `Retry-After` pause. */
  readonly signal: AbortSignal;
  /** The pause a `Retry-After` asked for, shared by every request of the extraction. */
  readonly pacing: Pacing;
  readonly onBytes: (bytes: number) => void;
}

/** A server-requested pause: every request waits for `pause` while it is set. */
export interface Pacing {
  pause: Promise<void> | undefined;
  /** When the pause ends (epoch ms), so a shorter `Retry-After` does not cut a longer one. */
  until: number;
}

/** A 2xx response: its body parsed, or why it could not be (after the retries). */
export interface PageResponse {
  readonly url: string;
  readonly status: number;
  readonly headers: Headers;
  /** The body as received (empty for 204). */
  readonly bytes: Uint8Array;
  /** The body as text (BOM removed); the lenient decoding when it was not UTF-8. */
  readonly text: string;
  /** The parsed body; undefined when `invalid` is set or the response had no content (204/205). */
  readonly body: unknown;
  /** True for 204/205: an empty page. */
  readonly noContent: boolean;
  /** Why the body is not usable JSON, when it is not. */
  readonly invalid: string | undefined;
  readonly attempts: number;
}

/** A request that failed for good: the caller turns it into an error naming the page and position. */
export class RequestFailure extends Error {
  constructor(
    message: string,
    readonly url: string,
    readonly status: number | undefined,
    readonly attempts: number,
  ) {
    super(message);
    this.name = "RequestFailure";
  }
}

/** Thrown when the extraction was cancelled (unsubscribe, stop) while waiting or requesting. */
export class Cancelled extends Error {
  constructor() {
    super("cancelled");
    this.name = "Cancelled";
  }
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const MAX_REDIRECTS = 10;
const fatalUtf8 = new TextDecoder("utf-8", { fatal: true });
const lenientUtf8 = new TextDecoder("utf-8");

/** Waits `ms` or until `signal` aborts (then rejects with {@link Cancelled}). */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(new Cancelled());
    const timer = setTimeout(done, Math.max(0, ms));
    signal.addEventListener("abort", cancel, { once: true });
    function done() {
      signal.removeEventListener("abort", cancel);
      resolve();
    }
    function cancel() {
      clearTimeout(timer);
      reject(new Cancelled());
    }
  });
}

/** Fills in the defaults of {@link Backoff}. */
export function backoffWithDefaults(backoff: Backoff = {}): Required<Backoff> {
  return {
    baseMs: backoff.baseMs ?? 250,
    maxMs: backoff.maxMs ?? 30_000,
    retryAfterMaxMs: backoff.retryAfterMaxMs ?? 120_000,
    random: backoff.random ?? Math.random,
    sleep: backoff.sleep ?? sleep,
  };
}

/** The wait a `Retry-After` value asks for in ms (delay-seconds or an HTTP date), or undefined. */
export function parseRetryAfter(value: string | null, now = Date.now()): number | undefined {
  if (value === null) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const date = Date.parse(text);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/** Full jitter (AWS): a uniform wait between 0 and the capped exponential step. */
export function backoffDelay(retry: number, backoff: Required<Backoff>): number {
  const ceiling = Math.min(backoff.maxMs, backoff.baseMs * 2 ** retry);
  return Math.floor(backoff.random() * ceiling);
}

function retryableStatus(status: number): boolean {
  return status === 408 || status === 429 || (status >= 500 && status !== 501 && status !== 505);
}

/** One attempt's outcome: a usable response, or why to try again (with a server-given wait). */
type Attempt = { retry: false; response: PageResponse } | { retry: true; reason: string; retryAfterMs?: number | undefined; last?: PageResponse };

/**
 * GETs `url` until it answers with a 2xx whose body parses as JSON, or the retries run out.
 * Resolves with the response (with `invalid` set when the body was never JSON); rejects with a
 * {@link RequestFailure} for a 4xx, a response over `maxPageBytes` or when every attempt failed,
 * and with {@link Cancelled} when `signal` aborts (unsubscribe, stop, a page no longer needed).
 */
export async function requestPage(url: string, ctx: RequestContext, signal: AbortSignal): Promise<PageResponse> {
  for (let attempt = 1; ; attempt++) {
    while (ctx.pacing.pause) await untilAborted(ctx.pacing.pause, signal);
    if (signal.aborted) throw new Cancelled();
    const outcome = await attemptOnce(url, ctx, signal, attempt);
    if (!outcome.retry) return outcome.response;
    if (attempt > ctx.retries) {
      if (outcome.last) return outcome.last;
      throw new RequestFailure(`${outcome.reason} (gave up after ${attempt} attempts)`, url, undefined, attempt);
    }
    if (outcome.retryAfterMs !== undefined) {
      // Rate limiting applies to the client: hold every lane, not only this request.
      pauseAll(ctx, Math.min(outcome.retryAfterMs, ctx.backoff.retryAfterMaxMs));
    } else {
      await ctx.backoff.sleep(backoffDelay(attempt - 1, ctx.backoff), signal);
    }
  }
}

/**
 * Starts (or lengthens) the pause every request waits for. One sleep serves all lanes, so an
 * injected `sleep` sees each `Retry-After` once, and real time passes once.
 */
function pauseAll(ctx: RequestContext, wait: number): void {
  const until = Date.now() + wait;
  const pacing = ctx.pacing;
  if (pacing.pause && until <= pacing.until) return;
  pacing.until = until;
  const pause: Promise<void> = ctx.backoff.sleep(wait, ctx.signal).finally(() => {
    if (pacing.pause === pause) pacing.pause = undefined;
  });
  pause.catch(() => {}); // an abort ends the extraction; the waiting requests see their own signal
  pacing.pause = pause;
}

/** Waits for `promise`, or rejects with {@link Cancelled} as soon as `signal` aborts. */
function untilAborted(promise: Promise<void>, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.reject(new Cancelled());
  return new Promise((resolve, reject) => {
    const abort = () => reject(new Cancelled());
    signal.addEventListener("abort", abort, { once: true });
    promise.then(
      () => {
        signal.removeEventListener("abort", abort);
        resolve();
      },
      () => {
        signal.removeEventListener("abort", abort);
        reject(new Cancelled());
      },
    );
  });
}

async function attemptOnce(url: string, ctx: RequestContext, cancel: AbortSignal, attempt: number): Promise<Attempt> {
  const timeout = new AbortController();
  const timer = setTimeout(() => timeout.abort(), ctx.timeoutMs);
  const signal = AbortSignal.any([cancel, timeout.signal]);
  let target = url;
  try {
    let response: Response;
    for (let hops = 0; ; hops++) {
      response = await fetch(target, { headers: ctx.headers, signal, redirect: "manual" });
      const location = response.headers.get("location");
      if (!REDIRECTS.has(response.status) || location === null) break;
      await response.body?.cancel();
      const next = new URL(location, target);
      if (next.origin !== new URL(target).origin && ctx.credentialNames.length > 0) {
        throw new RequestFailure(
          `was redirected (HTTP ${response.status}) to another origin, ${next.origin}; credentials (${ctx.credentialNames.join(", ")}) are not sent there: use that URL directly if it is trusted`,
          url,
          response.status,
          attempt,
        );
      }
      if (hops >= MAX_REDIRECTS) throw new RequestFailure(`was redirected more than ${MAX_REDIRECTS} times`, url, response.status, attempt);
      target = next.toString();
    }
    const status = response.status;
    if (status >= 200 && status < 300) return await readBody(response, url, ctx, attempt);
    const text = await readText(response, ctx, 4096).catch(() => "");
    if (retryableStatus(status)) {
      return {
        retry: true,
        reason: `HTTP ${status} ${response.statusText}: ${preview(text)}`.replace(/: ""$/, ""),
        retryAfterMs: parseRetryAfter(response.headers.get("retry-after")),
      };
    }
    const hint =
      status === 401 || status === 403
        ? `; check the credentials${ctx.credentialNames.length ? ` (${ctx.credentialNames.join(", ")})` : ""}`
        : "";
    throw new RequestFailure(`HTTP ${status} ${response.statusText}: ${preview(text)}${hint}`, url, status, attempt);
  } catch (error) {
    if (error instanceof RequestFailure) throw error;
    if (cancel.aborted) throw new Cancelled();
    if (timeout.signal.aborted) return { retry: true, reason: `timed out after ${ctx.timeoutMs} ms` };
    return { retry: true, reason: `network error: ${(error as Error).message}` };
  } finally {
    clearTimeout(timer);
  }
}

/** Reads a 2xx body, bounded by `maxPageBytes`, and parses it. Not JSON: retried, kept as `last`. */
async function readBody(response: Response, url: string, ctx: RequestContext, attempt: number): Promise<Attempt> {
  const base = { url, status: response.status, headers: response.headers, attempts: attempt };
  if (response.status === 204 || response.status === 205) {
    await response.body?.cancel();
    return { retry: false, response: { ...base, bytes: new Uint8Array(0), text: "", body: undefined, noContent: true, invalid: undefined } };
  }
  const bytes = await readBytes(response, ctx, ctx.maxPageBytes, url, attempt);
  let text: string;
  let invalid: string | undefined;
  try {
    text = fatalUtf8.decode(bytes);
  } catch {
    text = lenientUtf8.decode(bytes);
    invalid = "the response body is not valid UTF-8";
  }
  let body: unknown;
  if (invalid === undefined) {
    if (text.trim() === "") {
      invalid = "the response body is empty (expected JSON)";
    } else {
      try {
        body = JSON.parse(text);
      } catch (error) {
        const type = response.headers.get("content-type");
        invalid = `the response is not JSON${type ? ` (content-type ${type})` : ""}: ${(error as Error).message}`;
      }
    }
  }
  const page: PageResponse = { ...base, bytes, text, body, noContent: false, invalid };
  // A proxy's HTML error page or a cut connection is often transient: ask again before giving up.
  return invalid === undefined ? { retry: false, response: page } : { retry: true, reason: invalid, last: page };
}

async function readBytes(response: Response, ctx: RequestContext, limit: number, url: string, attempt: number): Promise<Uint8Array> {
  const declared = Number(response.headers.get("content-length"));
  if (declared > limit) {
    await response.body?.cancel();
    throw new RequestFailure(`the response is ${declared} bytes, more than maxPageBytes (${limit}): ask for smaller pages or raise maxPageBytes`, url, response.status, attempt);
  }
  const reader = response.body?.getReader();
  if (!reader) return new Uint8Array(0);
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.length;
    ctx.onBytes(value.length);
    if (size > limit) {
      await reader.cancel();
      throw new RequestFailure(`the response is more than maxPageBytes (${limit}) bytes: ask for smaller pages or raise maxPageBytes`, url, response.status, attempt);
    }
    chunks.push(value);
  }
  return chunks.length === 1 ? (chunks[0] as Uint8Array) : Buffer.concat(chunks);
}

/** The first `limit` bytes of an error response's body, as text. */
async function readText(response: Response, ctx: RequestContext, limit: number): Promise<string> {
  const reader = response.body?.getReader();
  if (!reader) return "";
  const chunks: Uint8Array[] = [];
  let size = 0;
  while (size < limit) {
    const { done, value } = await reader.read();
    if (done) break;
    ctx.onBytes(value.length);
    chunks.push(value);
    size += value.length;
  }
  await reader.cancel().catch(() => {});
  return lenientUtf8.decode(Buffer.concat(chunks).subarray(0, limit));
}
