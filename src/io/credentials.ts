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

/** The credentials in a URL, as written and decoded, longest first: what {@link scrub} removes. */
export function secretsOf(url: string, options: CredentialOptions = {}): string[] {
  try {
    const { username, password } = parse(url, options.scheme);
    const found = [password, options.hideUser ? username : ""].filter((s) => s.length > 0).flatMap((s) => [s, decodeURIComponent(s)]);
    return [...new Set(found)].filter((s) => s.length > 0).sort((a, b) => b.length - a.length);
  } catch {
    return [];
  }
}

/** `text` with every one of `secrets` replaced by `***`. */
export function scrub(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const secret of secrets) out = out.replaceAll(secret, "***");
  return out;
}
