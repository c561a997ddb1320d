/**
 * Credentials in connection settings (`redis://:pw@host`, `nats://user:pw@host`, `nats://token@host`,
 * `postgres://app@db/x?password=pw`, Kafka's SASL user name and password): how such a URL may be
 * shown, and what to remove from any message a client library or a server produces, since those
 * sometimes quote what they were given.
 */

/** How a URL's credentials are read: NATS puts a token in the user name, so it hides that too. */
export interface CredentialOptions {
  /** The scheme a bare `host:port` is read with (default: none, such a text is unparsable). */
  readonly scheme?: string;
  /** Hide the user name as well as the password. */
  readonly hideUser?: boolean;
}

/** How a NATS server URL's credentials are read: a user name may be a token, so it is hidden too. */
export const NATS_CREDENTIALS: CredentialOptions = { scheme: "nats", hideUser: true };

/**
 * What to add to a message when a client refused a URL with a `URIError` (Bun's says only "URI
 * error"): the usual cause is a "%" in a password that does not start an encoded byte. Empty
 * for any other error.
 */
export function percentAdvice(error: unknown): string {
  return error instanceof URIError ? ': a "%" that does not start a percent-encoded byte (%3A, %40, ...) must be written %25' : "";
}

/** A user name and password given as plain text rather than inside a URL (Kafka's SASL, a client's settings). */
export interface Login {
  readonly username?: string;
  readonly password?: string;
}

// Query parameters that carry a password: libpq and Bun's SQL read `password` from a
// connection URL's query as well as from its user info; libpq's `sslpassword` unlocks a key.
const PASSWORD_PARAM = /^(ssl)?password$/i;

function parse(url: string, scheme: string | undefined): URL {
  return new URL(scheme !== undefined && !url.includes("://") ? `${scheme}://${url}` : url);
}

/** The query's `name=value` pairs as written (not decoded). */
function queryPairs(url: URL): [string, string][] {
  if (url.search.length <= 1) return [];
  return url.search
    .slice(1)
    .split("&")
    .map((pair): [string, string] => {
      const eq = pair.indexOf("=");
      return eq < 0 ? [pair, ""] : [pair.slice(0, eq), pair.slice(eq + 1)];
    });
}

function decodeParam(text: string): string | undefined {
  try {
    return decodeURIComponent(text.replaceAll("+", " "));
  } catch {
    return undefined;
  }
}

/**
 * The URL as it may be shown: its password (and user name, with `hideUser`) and the value of a
 * `password` query parameter as `***`.
 */
export function safeUrl(url: string, options: CredentialOptions = {}): string {
  try {
    const parsed = parse(url, options.scheme);
    if (options.hideUser && parsed.username) parsed.username = "***";
    if (parsed.password) parsed.password = "***";
    const pairs = queryPairs(parsed);
    if (pairs.some(([name]) => PASSWORD_PARAM.test(decodeParam(name) ?? name))) {
      parsed.search = pairs.map(([name, value]) => (PASSWORD_PARAM.test(decodeParam(name) ?? name) ? `${name}=***` : value === "" ? name : `${name}=${value}`)).join("&");
    }
    return parsed.toString().replace(/\/$/, "");
  } catch {
    return "(an unparsable URL)";
  }
}

/**
 * The credentials in connection settings, longest first: what {@link scrub} removes. Each is a
 * URL (its password, a `password` query parameter, and with `hideUser` its user name) or a
 * {@link Login} (its password, and with `hideUser` its user name). A URL's part is taken as
 * written, decoded, and encoded again the way `encodeURIComponent` does (a driver may print
 * either); a part that is not valid percent-encoding is kept as written. A login's part is taken
 * as given and percent-encoded.
 */
export function secretsOf(from: string | Login | readonly (string | Login)[], options: CredentialOptions = {}): string[] {
  const found = new Set<string>();
  const plain = (part: string) => {
    if (part.length === 0) return;
    found.add(part);
    found.add(encodeURIComponent(part));
  };
  const written = (part: string, decode: (text: string) => string | undefined) => {
    if (part.length === 0) return;
    found.add(part);
    const decoded = decode(part);
    // Not percent-encoded text: the part as written is enough.
    if (decoded !== undefined) plain(decoded);
  };
  const decodeUserInfo = (text: string) => {
    try {
      return decodeURIComponent(text);
    } catch {
      return undefined;
    }
  };
  const list: readonly (string | Login)[] = typeof from === "string" || !Array.isArray(from) ? [from as string | Login] : from;
  for (const item of list) {
    if (typeof item !== "string") {
      plain(item.password ?? "");
      if (options.hideUser) plain(item.username ?? "");
      continue;
    }
    let url: URL;
    try {
      url = parse(item, options.scheme);
    } catch {
      // A URL that does not parse has no credentials to find.
      continue;
    }
    written(url.password, decodeUserInfo);
    if (options.hideUser) written(url.username, decodeUserInfo);
    for (const [name, value] of queryPairs(url)) if (PASSWORD_PARAM.test(decodeParam(name) ?? name)) written(value, decodeParam);
  }
  return [...found].sort((a, b) => b.length - a.length);
}

/**
 * The password a Bun `SQL` client resolved, from its URL, its own options or the environment
 * (`PGPASSWORD`, `DATABASE_URL`): one the caller may not have seen, to pass to {@link secretsOf}.
 */
export function sqlClientLogin(client: unknown): Login {
  const password = (client as { options?: { password?: unknown } } | undefined)?.options?.password;
  return typeof password === "string" ? { password } : {};
}

/** `text` with every one of `secrets` replaced by `***`. */
export function scrub(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const secret of secrets) out = out.replaceAll(secret, "***");
  return out;
}
