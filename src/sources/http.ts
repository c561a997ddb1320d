/**
 * `fromHttp`: the records of a paginated JSON REST API as an observable.
 *
 * Each page is fetched with retries (see `http/retry.ts`), optionally archived byte for byte,
 * and its records are emitted one by one with the flow's cursor pointing at the page URL and the
 * record's number in the whole extraction. A page whose body cannot be used becomes one dead
 * letter when the next page can still be found without it, and an error when it cannot.
 */
import { join } from "node:path";
import { Observable } from "rxjs";
import { currentFlow, deadLetterBelow, type Flow, recordText, sendToDeadLetter, waitForGate } from "../flow/flow.ts";
import { Input, stamp } from "../flow/position.ts";
import { isS3Url, putObject, type S3Options } from "../io/s3.ts";
import { commitFile } from "../parquet/encode.ts";
import { isCredentialName, scrubBytes, scrubText, secretForms } from "../run/redact.ts";
import { changedNumberAt, recordLosses } from "./http/numbers.ts";
import {
  type Backoff,
  backoffWithDefaults,
  Cancelled,
  type PageResponse,
  type RequestContext,
  RequestFailure,
  requestPage,
} from "./http/retry.ts";
import { atPath, describeType, MISSING, nextFromLinkHeader, preview, REDACTED, redactUrl, withParams } from "./http/url.ts";
import { describeNumberLoss } from "./json/numbers.ts";

export type { Backoff } from "./http/retry.ts";

/** Reads something (a cursor, a next URL) out of a parsed page body or its headers. */
export type PageReader = (body: unknown, headers: Headers) => string | null | undefined;

/** A single request: the URL answers with all the records (the default). */
export interface NoPagination {
  readonly type: "none";
}

/**
 * Numbered pages: `?page=1`, `?page=2`, ... until a page has no records. Pages can be fetched
 * `concurrency` at a time.
 */
export interface PagePagination {
  readonly type: "page";
  /** Query parameter holding the page number (default `page`). */
  readonly param?: string;
  /** Number of the first page (default 1). */
  readonly start?: number;
  /** Query parameter for the page size, sent when `size` is given (default `per_page`). */
  readonly sizeParam?: string;
  readonly size?: number;
}

/**
 * Offsets: `?offset=0&limit=100`, `?offset=100&limit=100`, ... until a page has no records.
 * Pages can be fetched `concurrency` at a time. A page longer than `size`, or a short page
 * followed by a non-empty one, is an error: the server does not page the way the offsets assume,
 * and records would be skipped or repeated.
 */
export interface OffsetPagination {
  readonly type: "offset";
  /** Query parameter holding the offset (default `offset`). */
  readonly param?: string;
  /** Offset of the first page (default 0). */
  readonly start?: number;
  /** Query parameter for the page size (default `limit`). */
  readonly sizeParam?: string;
  /** Records per page; the offset advances by it. */
  readonly size: number;
}

/**
 * Cursors: the first request has no cursor; each response names the cursor of the next page
 * (`from`: a dot path into the body, or a function of body and headers); ends when it is
 * missing, null or empty. Sequential: a page's cursor is known only once it has arrived.
 */
export interface CursorPagination {
  readonly type: "cursor";
  /** Query parameter the cursor is sent in (default `cursor`). */
  readonly param?: string;
  readonly from: string | PageReader;
}

/**
 * Next links: each response names the URL of the next page, in the `Link` header's
 * `rel="next"` (when `from` is not given), at a dot path into the body, or as a function's
 * result. Relative links are resolved against the page's URL. Ends when there is none.
 */
export interface NextPagination {
  readonly type: "next";
  readonly from?: string | PageReader;
}

/** How `fromHttp` finds the pages. */
export type Pagination = NoPagination | PagePagination | OffsetPagination | CursorPagination | NextPagination;

/** Options of {@link fromHttp}. */
export interface HttpOptions {
  /** The first page's URL. Its query parameters are kept on every page. */
  readonly url: string | URL;
  /**
   * Where the records are in a page: a dot path such as `data.items`, or a function of the
   * parsed body. Default: the body itself must be an array. Anything that is not an array makes
   * the page a dead letter.
   */
  readonly records?: string | ((body: unknown) => unknown);
  /** Default `{ type: "none" }`: one request. */
  readonly pagination?: Pagination;
  /** Query parameters added to the URL. */
  readonly query?: Readonly<Record<string, string | number | boolean>>;
  /**
   * Query parameters whose values come from environment variables, such as
   * `{ api_key: "API_KEY" }` (a variable name) or `{ key: "v1:$KEY" }` (a template). Their
   * values are redacted wherever a URL is shown.
   */
  readonly queryFromEnv?: Readonly<Record<string, string>>;
  /** Request headers. Values are sent, never shown. */
  readonly headers?: Readonly<Record<string, string>>;
  /**
   * Request headers whose values come from environment variables: a variable name
   * (`{ "X-Api-Key": "API_KEY" }`) or a template where `$NAME` and `${NAME}` are replaced
   * (`{ Authorization: "Bearer $API_TOKEN" }`).
   * A variable that is not set (or empty) errors the source, naming the variable.
   */
  readonly headersFromEnv?: Readonly<Record<string, string>>;
  /** Pages requested at the same time for `page` and `offset` pagination (default 1). */
  readonly concurrency?: number;
  /** Attempts after the first for a network error, timeout, 408, 429, 5xx or non-JSON body (default 5). */
  readonly retries?: number;
  /** Waits between attempts: exponential with full jitter; `Retry-After` is honoured. */
  readonly backoff?: Backoff;
  /** Time allowed for one attempt, headers and body together (default 30 s). */
  readonly timeoutMs?: number;
  /** Stop (and complete) after this many pages (default: no limit). */
  readonly maxPages?: number;
  /** A response larger than this errors the source (default 64 MiB). */
  readonly maxPageBytes?: number;
  /** This many dead-lettered pages in a row error the source (default 3). */
  readonly maxBadPages?: number;
  /**
   * A folder for the raw zone: every response body is written as received to
   * `<folder>/YYYY-MM-DD/<runId>-<page>.json` (UTC day of the response; `.txt` when the body is
   * not JSON), atomically, with the credentials' values replaced by `REDACTED`. An
   * `s3://bucket/prefix` archive puts each body with one PUT (atomic), endpoint and credentials from
   * `archiveS3` or the environment.
   */
  readonly archive?: string;
  /** For an `s3://` archive: endpoint and credentials (default: the environment's). */
  readonly archiveS3?: S3Options;
}

/** The source failed for good: a page that could not be fetched or used, with where it stopped. */
export class HttpSourceError extends Error {
  constructor(
    message: string,
    /** The page's URL, credentials redacted. */
    readonly url: string,
    /** The page's number in the extraction (1-based). */
    readonly page: number,
    /** Records (and dead-lettered pages) emitted before the failure. */
    readonly position: number,
    /** The HTTP status, when the server answered. */
    readonly status: number | undefined,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = "HttpSourceError";
  }
}

/** How much of a bad page's body a dead letter keeps (the archive keeps all of it). */
const DEAD_LETTER_BODY_CHARS = 65_536;

/**
 * Reads the records of a JSON REST API: one request, or every page with page-number, offset,
 * cursor or next-link pagination. Emits each record (the items of `records` in every page)
 * with the flow's cursor at the page's URL (credentials redacted) and the record's number in
 * the whole extraction (1-based).
 *
 * Network errors, timeouts, 408, 429, 5xx and bodies that are not JSON are retried `retries`
 * times with exponential backoff and full jitter; `Retry-After` (seconds or an HTTP date) is
 * honoured and pauses every concurrent request. Other 4xx fail at once. With `page`/`offset`
 * pagination, up to `concurrency` pages are requested ahead, but records are emitted in page
 * order and no more than `concurrency` pages are held; the next requests wait on the sink's gate.
 *
 * A page that is still not JSON after the retries (HTML, truncated, empty), or whose records are
 * not an array, becomes one dead letter (stage `parse`, the body's first 64 KiB as `raw`, the
 * URL as source) and the extraction goes on, as long as the next page can be found without that
 * body (`page`, `offset`, `next` through the `Link` header). When the next page's cursor or link
 * is in the body, it errors instead. `maxBadPages` bad pages in a row also error.
 *
 * Completes after a page with no records (`page`, `offset`), or when there is no cursor or next
 * link, or after `maxPages`. Errors with an {@link HttpSourceError} naming the page, its URL and
 * how many records came before it, when a request fails for good or the server pages
 * inconsistently (the same body twice, the same cursor twice). Header and credential values
 * never appear in errors, dead letters, commits or the archive, even when the server echoes
 * them: they are replaced by `REDACTED` there. Unsubscribing aborts the requests in flight
 * and the waits; on SIGINT/SIGTERM under `run` it finishes the page being emitted and completes.
 *
 * @example
 * fromHttp({
 *   url: "https://api.example.com/v1/orders",
 *   records: "data",
 *   pagination: { type: "page", param: "page", sizeParam: "per_page", size: 100 },
 *   headersFromEnv: { Authorization: "Bearer $API_TOKEN" },
 *   concurrency: 4,
 *   archive: "out/raw",
 * }).pipe(validate(Order), deadLetter("out/dead-letter"), toParquet("out/orders", { schema: Order }))
 */
export function fromHttp(input: string | URL | HttpOptions): Observable<unknown> {
  const options: HttpOptions = typeof input === "string" || input instanceof URL ? { url: input } : input;
  const pagination = options.pagination ?? { type: "none" };
  checkOptions(options, pagination);
  return new Observable<unknown>((subscriber) => {
    const flow = currentFlow(subscriber);
    const cancel = new AbortController();
    // A stop request ends waits and requests in flight; the page being emitted is finished first.
    const wake = () => cancel.abort();
    flow.onStop.add(wake);
    extract(options, pagination, flow, subscriber, cancel.signal).then(
      () => subscriber.complete(),
      (error) => (error instanceof Cancelled ? subscriber.complete() : subscriber.error(error)),
    );
    return () => {
      flow.onStop.delete(wake);
      cancel.abort();
    };
  });
}

function checkOptions(options: HttpOptions, pagination: Pagination): void {
  new URL(options.url); // throws a TypeError naming the bad URL now, not at subscribe
  const positive = (name: string, value: number | undefined, min = 1) => {
    if (value !== undefined && !(Number.isInteger(value) && value >= min)) {
      throw new TypeError(`fromHttp: ${name} must be an integer ≥ ${min}, got ${value}`);
    }
  };
  positive("concurrency", options.concurrency);
  positive("retries", options.retries, 0);
  positive("timeoutMs", options.timeoutMs);
  positive("maxPages", options.maxPages);
  positive("maxPageBytes", options.maxPageBytes);
  positive("maxBadPages", options.maxBadPages);
  if (pagination.type === "offset" || pagination.type === "page") positive("pagination.size", pagination.size);
  if (pagination.type === "offset" && pagination.size === undefined) {
    throw new TypeError("fromHttp: offset pagination needs a size (the records per page the offset advances by)");
  }
  if (!["none", "page", "offset", "cursor", "next"].includes(pagination.type)) {
    throw new TypeError(`fromHttp: unknown pagination type ${JSON.stringify(pagination.type)}`);
  }
}

const VARIABLE_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Resolves `{ name: "VAR" }`, `{ name: "Bearer $VAR" }` or `{ name: "Bearer ${VAR}" }` from the environment. */
function fromEnv(spec: Readonly<Record<string, string>>, what: string): Record<string, string> {
  const resolved: Record<string, string> = {};
  const lookup = (variable: string, name: string) => {
    const value = process.env[variable];
    if (value === undefined || value === "") {
      throw new Error(`fromHttp: environment variable ${variable} (for ${what} ${name}) is not set`);
    }
    return value;
  };
  for (const [name, ref] of Object.entries(spec)) {
    resolved[name] = VARIABLE_NAME.test(ref)
      ? lookup(ref, name)
      : ref.replace(/\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))/g, (_m, braced?: string, bare?: string) => lookup((braced ?? bare) as string, name));
  }
  return resolved;
}

// Headers that describe the request rather than who sends it: their values are not secrets.
const PLAIN_HEADERS = new Set(["accept", "accept-encoding", "accept-language", "cache-control", "content-type", "pragma", "user-agent"]);

/**
 * The credential values of an extraction, which must never be written anywhere: the headers'
 * values (but those of {@link PLAIN_HEADERS}), the query parameters named like credentials, and
 * the URL's password (or its user name, when that is the token).
 */
function credentialValues(headers: Readonly<Record<string, string>>, base: URL): string[] {
  const values = Object.entries(headers)
    .filter(([name]) => !PLAIN_HEADERS.has(name.toLowerCase()))
    .map(([, value]) => value);
  for (const [name, value] of base.searchParams) if (isCredentialName(name)) values.push(value);
  const user = base.password || base.username;
  if (user) values.push(decodeURIComponent(user));
  return values;
}

/** What one page gave: its number of records, or undefined when it was dead-lettered. */
type PageOutcome = number | undefined;

async function extract(
  options: HttpOptions,
  pagination: Pagination,
  flow: Flow,
  subscriber: { next(value: unknown): void; readonly closed: boolean },
  signal: AbortSignal,
): Promise<void> {
  const queryCredentials = fromEnv(options.queryFromEnv ?? {}, "query parameter");
  const headers = { ...options.headers, ...fromEnv(options.headersFromEnv ?? {}, "header") };
  const secretParams = new Set(Object.keys(queryCredentials));
  const base = withParams(withParams(options.url, options.query ?? {}), queryCredentials);
  // A server may echo a credential back (an error body quoting the token, a page listing the
  // request): it is scrubbed from every text this source writes, error, dead letter and archive.
  const secrets = secretForms([...credentialValues(headers, base), ...Object.values(queryCredentials)]);
  const scrub = (text: string) => scrubText(text, secrets, REDACTED);
  const ctx: RequestContext = {
    headers,
    credentialNames: [...Object.keys(headers).map((h) => `header ${h}`), ...[...secretParams].map((p) => `query parameter ${p}`)],
    retries: options.retries ?? 5,
    backoff: backoffWithDefaults(options.backoff),
    timeoutMs: options.timeoutMs ?? 30_000,
    maxPageBytes: options.maxPageBytes ?? 64 * 1024 * 1024,
    signal,
    pacing: { pause: undefined, until: 0 },
    onBytes: (bytes) => {
      flow.stats.bytesRead += bytes;
    },
  };
  const maxPages = options.maxPages ?? Number.POSITIVE_INFINITY;
  const maxBadPages = options.maxBadPages ?? 3;
  const shown = (url: string | URL) => scrub(redactUrl(url, secretParams));
  const stopped = () => subscriber.closed || flow.stopping || signal.aborted;

  let position = 0;
  let badInARow = 0;
  // Each page URL is an input of the run; record numbers run on across pages.
  const inputs = new Map<string, Input>();
  const inputOf = (source: string) => {
    let input = inputs.get(source);
    if (!input) {
      input = new Input(flow, source);
      // Its parse errors go to the folder below this source (see deadLetterBelow).
      input.deadLetterTarget = deadLetterBelow(subscriber);
      inputs.set(source, input);
    }
    return input;
  };
  let previousHash: number | bigint | undefined;

  function fail(page: number, url: string | URL, problem: string, status?: number, cause?: unknown): HttpSourceError {
    const before = position === 0 ? "no records came before it" : `records 1-${position} came before it`;
    return new HttpSourceError(scrub(`fromHttp: page ${page} (${shown(url)}) ${problem}; ${before}`), shown(url), page, position, status, cause ? { cause: shownCause(cause) } : undefined);
  }

  /** The cause as it may be shown: its message, stack and URL scrubbed (they may quote the server or the request). */
  function shownCause(cause: unknown): unknown {
    if (cause instanceof RequestFailure) {
      const copy = new RequestFailure(scrub(cause.message), shown(cause.url), cause.status, cause.attempts);
      copy.stack = scrub(cause.stack ?? "");
      return copy;
    }
    if (cause instanceof Error) {
      cause.message = scrub(cause.message);
      if (cause.stack) cause.stack = scrub(cause.stack);
    }
    return cause;
  }

  /** Turns a failed request into an error naming the page and position; cancellations pass. */
  function failed(error: unknown, page: number, url: string | URL): unknown {
    if (error instanceof RequestFailure) return fail(page, url, error.message, error.status, error);
    return error;
  }

  async function archive(page: number, response: PageResponse): Promise<string | undefined> {
    if (!options.archive || response.noContent) return undefined;
    const day = new Date().toISOString().slice(0, 10);
    const name = `${flow.runId}-${String(page).padStart(6, "0")}.${response.invalid ? "txt" : "json"}`;
    const inBucket = isS3Url(options.archive);
    const path = inBucket ? `${options.archive.replace(/\/+$/, "")}/${day}/${name}` : join(options.archive, day, name);
    try {
      const bytes = scrubBytes(response.bytes, secrets, REDACTED);
      if (inBucket) await putObject(path, bytes, { ...options.archiveS3, type: response.invalid ? "text/plain" : "application/json" });
      else await commitFile(path, join(options.archive, day, `.${name}.${process.pid}.tmp`), bytes);
    } catch (error) {
      throw fail(page, response.url, `could not be archived to ${path}: ${(error as Error).message}`, response.status, error);
    }
    return path;
  }

  function recordsOf(response: PageResponse): unknown[] | string {
    if (response.noContent) return [];
    if (response.invalid !== undefined) {
      return `${response.invalid} (after ${response.attempts} attempt${response.attempts === 1 ? "" : "s"}); first bytes: ${preview(response.text)}`;
    }
    const records = options.records ?? "";
    let value: unknown;
    try {
      value = typeof records === "function" ? records(response.body) : atPath(response.body, records);
    } catch (error) {
      return `the records function threw: ${(error as Error).message}`;
    }
    if (Array.isArray(value)) return value;
    const where = typeof records === "function" ? "the records function returned" : records === "" ? "the body is" : `"${records}" is`;
    return `${where} ${describeType(value)}, not an array of records`;
  }

  /**
   * Archives a page, then emits its records or dead-letters it. `check` sees the page's record
   * count before any of them is emitted: a page it throws for reaches neither the sink nor the
   * error's count of records that came before it.
   */
  async function emitPage(page: number, response: PageResponse, check?: (count: number) => void): Promise<PageOutcome> {
    const archived = await archive(page, response);
    const source = shown(response.url);
    const records = recordsOf(response);
    if (typeof records === "string") {
      position++;
      const at = inputOf(source).at(position, scrub(response.text).slice(0, DEAD_LETTER_BODY_CHARS));
      const details = response.invalid?.includes("UTF-8") ? { rawBase64: Buffer.from(scrubBytes(response.bytes, secrets, REDACTED).subarray(0, DEAD_LETTER_BODY_CHARS)).toString("base64") } : {};
      const kept = archived ? `the whole body is archived at ${archived}` : `raw holds its first ${DEAD_LETTER_BODY_CHARS} characters`;
      sendToDeadLetter(flow, "parse", scrub(`page ${page} was not used: ${records}; its records are not in the dataset (${kept})`), undefined, at, details);
      if (++badInARow >= maxBadPages) {
        throw fail(page, response.url, `is the ${badInARow}th unusable page in a row (maxBadPages ${maxBadPages}): the API is not answering with records`, response.status);
      }
      return undefined;
    }
    badInARow = 0;
    if (records.length > 0) {
      // A server that ignores the page parameter answers the same page forever.
      const hash = Bun.hash(response.bytes);
      if (hash === previousHash) {
        throw fail(page, response.url, "has exactly the same body as the page before it: does the server read the pagination parameter?", response.status);
      }
      previousHash = hash;
    }
    check?.(records.length);
    // Nearly always undefined, decided by one cheap walk over the page.
    const losses = recordLosses(response.text, response.body, records);
    for (let i = 0; i < records.length; i++) {
      // Under a stop request the page is finished; after an unsubscribe nothing more is emitted.
      if (subscriber.closed) return records.length;
      position++;
      const loss = losses?.get(i);
      if (loss !== undefined) {
        const where = `record ${i + 1} of page ${page}, ${source}`;
        sendToDeadLetter(flow, "parse", scrub(describeNumberLoss(loss, where)), undefined, inputOf(source).at(position, scrub(loss.raw)));
        continue;
      }
      const record = records[i];
      subscriber.next(stamp(record, inputOf(source).at(position, scrub(recordText(record)))));
    }
    return records.length;
  }

  if (pagination.type === "page" || pagination.type === "offset") {
    await pagedExtraction(pagination);
  } else {
    await linkedExtraction(pagination);
  }

  /** `page` and `offset`: page URLs are known in advance, so several are requested at once. */
  async function pagedExtraction(p: PagePagination | OffsetPagination): Promise<void> {
    const concurrency = options.concurrency ?? 1;
    const isOffset = p.type === "offset";
    const param = p.param ?? (isOffset ? "offset" : "page");
    const sizeParam = p.sizeParam ?? (isOffset ? "limit" : "per_page");
    const start = p.start ?? (isOffset ? 0 : 1);
    const urlOf = (index: number) =>
      withParams(base, { [param]: isOffset ? start + index * (p.size as number) : start + index, [sizeParam]: p.size });

    interface Slot {
      readonly page: number;
      readonly url: URL;
      readonly response: Promise<PageResponse>;
      readonly cancel: AbortController;
    }
    const ahead: Slot[] = [];
    let requested = 0;
    let previousCount: number | undefined;
    try {
      for (;;) {
        while (ahead.length < concurrency && requested < maxPages && !stopped()) {
          const url = urlOf(requested++);
          const cancel = new AbortController();
          const response = requestPage(url.toString(), ctx, AbortSignal.any([signal, cancel.signal]));
          response.catch(() => {}); // awaited in page order below; this only avoids an unhandled rejection meanwhile
          ahead.push({ page: requested, url, response, cancel });
        }
        const slot = ahead.shift();
        if (!slot) return;
        let response: PageResponse;
        try {
          response = await slot.response;
        } catch (error) {
          throw failed(error, slot.page, slot.url);
        }
        if (subscriber.closed) return;
        // Offsets are checked before the page's records go out: a capped page's records would land
        // after a hole, and an overlong page's would be read again at the next offset.
        const checkOffsets = (count: number) => {
          const size = p.size as number;
          if (count === 0) return;
          if (count > size) {
            throw fail(slot.page, slot.url, `returned ${count} records for ${sizeParam}=${size}: the server ignores the page size, so the next offset would repeat records`);
          }
          if (previousCount !== undefined && previousCount < size) {
            throw fail(slot.page, slot.url, `has records after a page of only ${previousCount} (${sizeParam}=${size}): the server caps the page size, so offsets skip records; set size to ${previousCount}`);
          }
        };
        const count = await emitPage(slot.page, response, isOffset ? checkOffsets : undefined);
        if (count === 0) return;
        previousCount = count;
        if (flow.stopping || subscriber.closed) return;
        if (flow.gate) await waitForGate(flow);
      }
    } finally {
      for (const slot of ahead) slot.cancel.abort();
    }
  }

  /** `none`, `cursor` and `next`: each page says where the next one is, so one at a time. */
  async function linkedExtraction(p: NoPagination | CursorPagination | NextPagination): Promise<void> {
    const seen = new Set<string>();
    let url: URL | undefined = base;
    for (let page = 1; url && page <= maxPages && !stopped(); page++) {
      let response: PageResponse;
      try {
        response = await requestPage(url.toString(), ctx, signal);
      } catch (error) {
        throw failed(error, page, url);
      }
      const next = nextUrl(p, page, url, response);
      if (subscriber.closed) return;
      await emitPage(page, response);
      if (next !== undefined) {
        if (seen.has(next.toString())) {
          throw fail(page, url, `points to a next page already read (${shown(next)}): the server's pagination loops`);
        }
        seen.add(next.toString());
      }
      url = next;
      if (url && flow.gate) await waitForGate(flow);
    }
  }

  /**
   * A cursor as the server wrote it. A number JSON parsing changed (an id-like cursor past 2^53:
   * `1234567890123456789` parses to ...800) would ask for another page than the one that comes
   * next: read at a dot path, its digits are taken from the body's text; from a function, which
   * gets the parsed body, such a number errors the source.
   */
  function cursorText(value: string | number, p: CursorPagination, page: number, url: URL, response: PageResponse): string {
    if (typeof value === "string") return value;
    const written = typeof p.from === "string" ? changedNumberAt(response.text, p.from) : undefined;
    if (written !== undefined && Object.is(Number(written), value)) return written;
    if (!Number.isFinite(value) || (Number.isInteger(value) && !Number.isSafeInteger(value))) {
      throw fail(
        page,
        url,
        `gives the number ${value} as the next cursor, which a 64-bit float may not hold as the server wrote it (past 2^53): following it could read another page than the next. Read the cursor at a dot path (from: "next_cursor"), or return the API's text form of it`,
        response.status,
      );
    }
    return String(value);
  }

  /** Where the page after `response` is, or undefined at the end. Errors when it cannot be known. */
  function nextUrl(p: NoPagination | CursorPagination | NextPagination, page: number, url: URL, response: PageResponse): URL | undefined {
    if (p.type === "none" || response.noContent) return undefined;
    const fromBody = p.type === "cursor" || p.from !== undefined;
    if (fromBody && response.invalid !== undefined) {
      throw fail(
        page,
        url,
        `${response.invalid} (after ${response.attempts} attempts), and the ${p.type === "cursor" ? "cursor" : "link"} to the next page is in that body, so the extraction cannot go on; first bytes: ${preview(response.text)}`,
        response.status,
      );
    }
    let value: unknown;
    if (p.type === "next" && p.from === undefined) {
      value = nextFromLinkHeader(response.headers.get("link"), response.url);
    } else {
      const from = p.from as string | PageReader;
      try {
        value = typeof from === "function" ? from(response.body, response.headers) : atPath(response.body, from);
      } catch (error) {
        throw fail(page, url, `could not be read for its next ${p.type}: ${(error as Error).message}`, response.status, error);
      }
    }
    if (value === MISSING || value === undefined || value === null || value === "") return undefined;
    if (typeof value !== "string" && typeof value !== "number") {
      throw fail(page, url, `gives ${describeType(value)} as the next ${p.type}, not a string`, response.status);
    }
    if (p.type === "cursor") return withParams(base, { [p.param ?? "cursor"]: cursorText(value, p, page, url, response) });
    const next = new URL(String(value), response.url);
    if (next.origin !== base.origin) {
      if (ctx.credentialNames.length > 0) {
        throw fail(page, url, `links to another origin (${next.origin}) for the next page; credentials are not sent there: read that API with its own fromHttp if it is trusted`, response.status);
      }
      return next;
    }
    // Same origin: the credentials in the query go along, as on the first page.
    return withParams(next, queryCredentials);
  }
}
