/**
 * Keeping credentials out of what sluice writes for people to read: log lines, error messages,
 * dead letters and the raw zone of `fromHttp`.
 *
 * Two ways, because two things are known. Command-line arguments are redacted by their shape
 * (a URL's password, the value of an option named like a credential): sluice does not know the
 * pipeline's secrets. `fromHttp` knows the exact values it was configured with, so it removes
 * those values, in the forms a server is likely to echo them (as sent, URL-encoded,
 * JSON-escaped), from every text it writes.
 */

/** What replaces a credential in logged arguments. */
export const MASK = "***";

/**
 * Names that mark a value as a credential: query parameters (`api_key`, `token`, `sig`) and
 * command-line options (`--password`, `--api-key`, `--GITHUB_TOKEN`, `--client-secret`).
 */
const CREDENTIAL_NAME = /token|key|secret|password|passwd|pwd|auth|signature|^sig$|credential|session|cookie/i;

/** True when `name` (a query parameter, an option without its dashes, a variable) names a credential. */
export function isCredentialName(name: string): boolean {
  return CREDENTIAL_NAME.test(name);
}

// scheme://user:password@ (the password runs to the last "@" before the path, so "p@ss" is covered).
const USER_INFO = /\b([a-z][a-z0-9+.-]*:\/\/)([^\s/?#@:"'<>]*):([^\s/?#"'<>]*)@/gi;
// A query parameter inside a URL: its name and value.
const QUERY_PARAM = /([?&;])([^=&#\s]+)=([^&#\s"']*)/g;

/**
 * `text` with the password of every URL in it masked (`postgres://app:***@db:5432/x`) and the
 * values of URL query parameters named like credentials masked (`?api_key=***`).
 *
 * @example
 * redactText("postgres://app:Pa55w0rd@db/x"); // "postgres://app:***@db/x"
 */
export function redactText(text: string): string {
  if (!text.includes("://")) return text;
  let out = text.replace(USER_INFO, (_m, scheme: string, user: string) => `${scheme}${user}:${MASK}@`);
  out = out.replace(/\b[a-z][a-z0-9+.-]*:\/\/[^\s"'<>]+/gi, (url) =>
    url.replace(QUERY_PARAM, (whole, sep: string, name: string) => (isCredentialName(decodeName(name)) ? `${sep}${name}=${MASK}` : whole)),
  );
  return out;
}

function decodeName(name: string): string {
  try {
    return decodeURIComponent(name);
  } catch {
    return name;
  }
}

/**
 * Command-line arguments as they may be logged: the value of an option named like a credential
 * masked (`--password x`, `--api-key=x`, `--DB_PASSWORD x`, `GITHUB_TOKEN=x`), and URL passwords
 * and credential query values masked everywhere (see {@link redactText}). A value is taken to
 * follow a credential option unless it starts with `--` (then the option was a flag).
 *
 * @example
 * redactArgs(["--url", "postgres://app:pw@db/x", "--token", "abc", "--out", "o"]);
 * // ["--url", "postgres://app:***@db/x", "--token", "***", "--out", "o"]
 */
export function redactArgs(args: readonly string[]): string[] {
  const shown: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    const option = /^(-{1,2})([^=]+)(=(.*))?$/s.exec(arg);
    if (option && option[2] !== undefined && isCredentialName(option[2])) {
      if (option[3] !== undefined) {
        shown.push(`${option[1]}${option[2]}=${MASK}`);
      } else {
        shown.push(arg);
        const next = args[i + 1];
        if (next !== undefined && !next.startsWith("--")) {
          shown.push(MASK);
          i++;
        }
      }
      continue;
    }
    const assignment = /^([A-Za-z_][A-Za-z0-9_.-]*)=/.exec(arg);
    if (!option && assignment && isCredentialName(assignment[1] as string)) {
      shown.push(`${assignment[1]}=${MASK}`);
      continue;
    }
    shown.push(redactText(arg));
  }
  return shown;
}

/** Secrets shorter than this are not scrubbed from texts: they would match ordinary words and numbers. */
export const MIN_SECRET_CHARS = 4;

/**
 * The forms in which known secret values may appear in a text a server sends back or an error
 * quotes: as given, URL-encoded (both `%20` and `+` for spaces), JSON-escaped (with and without
 * `\/`), and for a header value such as `Bearer abc` or `Basic dXNlcjpwdw==` the credential part
 * (and a Basic pair decoded). Longest first, so a whole value is masked before its parts; values
 * shorter than {@link MIN_SECRET_CHARS} are left out.
 *
 * @example
 * const forms = secretForms(["Bearer s3cret-token"]);
 * scrubText('{"error":"bad token s3cret-token"}', forms); // '{"error":"bad token ***"}'
 */
export function secretForms(values: Iterable<string>): readonly string[] {
  const forms = new Set<string>();
  const add = (value: string) => {
    if (value.length < MIN_SECRET_CHARS) return;
    const json = JSON.stringify(value).slice(1, -1);
    for (const form of [value, encodeURIComponent(value), new URLSearchParams({ v: value }).toString().slice(2), json, json.replaceAll("/", "\\/")]) {
      if (form.length >= MIN_SECRET_CHARS) forms.add(form);
    }
  };
  for (const value of values) {
    add(value);
    const scheme = /^([A-Za-z][A-Za-z0-9._-]*)\s+(\S.*)$/s.exec(value.trim());
    if (!scheme) continue;
    const credential = scheme[2] as string;
    add(credential);
    if (scheme[1]?.toLowerCase() === "basic") {
      const pair = Buffer.from(credential, "base64").toString("utf8");
      const colon = pair.indexOf(":");
      if (colon >= 0) {
        add(pair);
        add(pair.slice(colon + 1));
      }
    }
  }
  return [...forms].sort((a, b) => b.length - a.length);
}

/**
 * `text` with every occurrence of each form (from {@link secretForms}) replaced by `mask`.
 * Returns `text` itself when there is nothing to replace.
 */
export function scrubText(text: string, forms: readonly string[], mask = MASK): string {
  let out = text;
  for (const form of forms) if (out.includes(form)) out = out.replaceAll(form, mask);
  return out;
}

/**
 * `bytes` with every occurrence of each form's UTF-8 bytes replaced by `mask`'s, leaving every
 * other byte as it was (a body that is not UTF-8 stays byte for byte). Returns `bytes` itself
 * when there is nothing to replace.
 */
export function scrubBytes(bytes: Uint8Array, forms: readonly string[], mask = MASK): Uint8Array {
  let current = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let changed = false;
  const replacement = Buffer.from(mask);
  for (const form of forms) {
    const needle = Buffer.from(form);
    let at = current.indexOf(needle);
    if (at < 0) continue;
    const parts: Buffer[] = [];
    let from = 0;
    while (at >= 0) {
      parts.push(current.subarray(from, at), replacement);
      from = at + needle.length;
      at = current.indexOf(needle, from);
    }
    parts.push(current.subarray(from));
    current = Buffer.concat(parts);
    changed = true;
  }
  return changed ? current : bytes;
}
