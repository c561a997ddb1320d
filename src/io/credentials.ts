/**
 * Credentials in broker URLs (`redis://:pw@host`, `nats://user:pw@host`, `nats://token@host`):
 * how such a URL may be shown, and what to remove from any message a client library produces,
 * since those sometimes quote the URL they were given.
 */

/** How a URL's credentials are read: NATS puts a token in the user name, so it hides that too. */
export interface CredentialOptions {
  /** The scheme a bare `host:port` is read with (default: none, such a text is unparsable). */
  readonly scheme?: string;
  /** Hide the user name as well as the password. */
  readonly hideUser?: boolean;
}

function parse(url: string, scheme: string | undefined): URL {
  return new URL(scheme !== undefined && !url.includes("://") ? `${scheme}://${url}` : url);
}

/** The URL as it may be shown: its password (and user name, with `hideUser`) as `***`. */
export function safeUrl(url: string, options: CredentialOptions = {}): string {
  try {
    const parsed = parse(url, options.scheme);
    if (options.hideUser && parsed.username) parsed.username = "***";
    if (parsed.password) parsed.password = "***";
    return parsed.toString().replace(/\/$/, "");
  } catch {
    return "(an unparsable URL)";
  }
}

/**
 * The credentials in a URL (or in each of several), as written and decoded, longest first: what
 * {@link scrub} removes. A part that is not valid percent-encoding is kept as written.
 */
export function secretsOf(urls: string | readonly string[], options: CredentialOptions = {}): string[] {
  const found = new Set<string>();
  for (const url of typeof urls === "string" ? [urls] : urls) {
    let parts: string[];
    try {
      const { username, password } = parse(url, options.scheme);
      parts = [password, options.hideUser ? username : ""];
    } catch {
      // A URL that does not parse has no credentials to find.
      continue;
    }
    for (const part of parts) {
      if (part.length === 0) continue;
      found.add(part);
      try {
        found.add(decodeURIComponent(part));
      } catch {
        // Not percent-encoded text: the part as written is enough.
      }
    }
  }
  return [...found].filter((s) => s.length > 0).sort((a, b) => b.length - a.length);
}

/** `text` with every one of `secrets` replaced by `***`. */
export function scrub(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const secret of secrets) out = out.replaceAll(secret, "***");
  return out;
}
