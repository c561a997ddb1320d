/**
 * URL and body helpers of `fromHttp`: redacting credentials from the URLs that end up in dead
 * letters, errors and commits; reading a dot path out of a parsed body; parsing `Link` headers.
 */
import { isCredentialName } from "../../run/redact.ts";

/** What replaces a credential in a URL that is shown to anyone. */
export const REDACTED = "REDACTED";

/**
 * The URL as it may be shown: user info removed, and the values of query parameters that look
 * like credentials (or are named in `secretParams`) replaced by `REDACTED`. The URL sent to the
 * server is never changed.
 */
export function redactUrl(url: string | URL, secretParams: ReadonlySet<string> = new Set()): string {
  const shown = new URL(url);
  if (shown.username || shown.password) {
    shown.username = "";
    shown.password = "";
  }
  const params = [...shown.searchParams];
  const secret = ([name]: [string, string]) => secretParams.has(name) || isCredentialName(name);
  // Rewritten only when needed: re-serializing can change the encoding of the other values.
  if (params.some(secret)) {
    shown.search = new URLSearchParams(params.map((param): [string, string] => (secret(param) ? [param[0], REDACTED] : param))).toString();
  }
  return shown.toString();
}

/** A copy of `url` with `params` set (replacing any value already there). */
export function withParams(url: string | URL, params: Readonly<Record<string, string | number | boolean | undefined>>): URL {
  const next = new URL(url);
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined) next.searchParams.set(name, String(value));
  }
  return next;
}

/** Sentinel for a dot path that does not resolve (distinct from a resolved `undefined`). */
export const MISSING: unique symbol = Symbol("missing");

/**
 * The value at a dot path such as `data.items` or `results.0.rows` (the empty path is the body
 * itself), or {@link MISSING} when a step does not exist.
 */
export function atPath(body: unknown, path: string): unknown {
  if (path === "") return body;
  let value = body;
  for (const key of path.split(".")) {
    if (value === null || typeof value !== "object" || !Object.hasOwn(value, key)) return MISSING;
    value = (value as Record<string, unknown>)[key];
  }
  return value;
}

/** The type of a JSON value in words, for messages ("an object", "null", "a string"). */
export function describeType(value: unknown): string {
  if (value === MISSING) return "missing";
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  const type = typeof value;
  return type === "object" ? "an object" : `a ${type}`;
}

/**
 * The target of the `rel="next"` link of an RFC 8288 `Link` header, resolved against `base`, or
 * undefined when there is none. Handles several links in one header and quoted, multi-valued rels.
 */
export function nextFromLinkHeader(header: string | null, base: string): string | undefined {
  if (!header) return undefined;
  // Split on commas that start a new link (a comma inside <...> or quotes does not).
  const links = header.match(/<[^>]*>(?:\s*;\s*[^,;=]+(?:=(?:"[^"]*"|[^,;]*))?)*/g) ?? [];
  for (const link of links) {
    const target = /^<([^>]*)>/.exec(link)?.[1];
    if (target === undefined) continue;
    for (const param of link.matchAll(/;\s*rel\s*=\s*(?:"([^"]*)"|([^,;\s]+))/gi)) {
      const rels = (param[1] ?? param[2] ?? "").toLowerCase().split(/\s+/);
      if (rels.includes("next")) return new URL(target, base).toString();
    }
  }
  return undefined;
}

/** The first `chars` characters of a body, for messages; control characters shown escaped. */
export function preview(text: string, chars = 200): string {
  const head = text.length > chars ? `${text.slice(0, chars)}…` : text;
  return JSON.stringify(head);
}
