/**
 * S3-compatible object storage through Bun's built-in `S3Client`: `s3://bucket/key` URLs, a
 * client from options and the standard environment variables, paged listings and globs over
 * keys, ranged reads, whole-file uploads, and a `_manifest/` of committed objects.
 *
 * Credentials never leave this module in a message: every error is an {@link ObjectStorageError}
 * naming the bucket and key and what to do, with any credential value scrubbed from the text the
 * server or Bun gave, and no `cause` (an S3 error object can carry request details).
 *
 * Uploads are whole finished files, one PUT each (atomic: a reader sees the old object or the new
 * one), streamed from disk through a presigned URL. Bun's `write` of a file above its part size
 * switches to a multipart upload on its own, and its multipart writer, told to abort
 * (`writer.end(error)`), completes the upload anyway (Bun 1.4.4): only a file above 5 GiB goes
 * through the multipart writer, with the key deleted when anything fails.
 */
import { closeSync, fsyncSync, ftruncateSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from "node:fs";
import { stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { readFooter } from "../parquet/footer.ts";
import { redactText, scrubText, secretForms } from "../run/redact.ts";

/** A bucket and a key (or key prefix) inside it. */
export interface S3Location {
  readonly bucket: string;
  /** The key, without a leading `/`; `""` for the whole bucket. */
  readonly key: string;
}

/**
 * Where and how to reach the store. Every field falls back to the standard environment
 * variables: `S3_ENDPOINT` or `AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
 * `AWS_SESSION_TOKEN`, `AWS_REGION` or `AWS_DEFAULT_REGION` (then `us-east-1`).
 */
export interface S3Options {
  /** `https://s3.eu-west-1.amazonaws.com`, `http://127.0.0.1:9000` (MinIO), ... Default: AWS. */
  readonly endpoint?: string | undefined;
  readonly accessKeyId?: string | undefined;
  readonly secretAccessKey?: string | undefined;
  readonly sessionToken?: string | undefined;
  readonly region?: string | undefined;
  /** `https://bucket.host/key` rather than `https://host/bucket/key` (default false: path style). */
  readonly virtualHostedStyle?: boolean | undefined;
}

/** An object as a listing shows it. */
export interface S3Object {
  /** `s3://bucket/key` */
  readonly url: string;
  readonly bucket: string;
  readonly key: string;
  readonly size: number;
  /** The ETag, with its quotes, as the store gives it (changes whenever the object is replaced). */
  readonly etag: string;
}

/** Any failure to reach, list, read, write or delete an object. The message names bucket and key. */
export class ObjectStorageError extends Error {
  override readonly name = "ObjectStorageError";
  constructor(
    message: string,
    readonly bucket: string,
    readonly key: string,
    /** The store's error code (`NoSuchKey`, `NoSuchBucket`, `AccessDenied`, ...), when it gave one. */
    readonly code: string | undefined,
  ) {
    super(message);
  }
}

/** The largest object one PUT may create (S3's limit). */
export const MAX_SINGLE_PUT_BYTES = 5 * 1024 * 1024 * 1024;

/** True for an `s3://` URL. */
export function isS3Url(text: string): boolean {
  return /^s3:\/\//i.test(text);
}

/**
 * Splits `s3://bucket/some/key` into bucket and key. Throws, naming the URL, for a bucket name S3
 * would refuse (3-63 characters of lowercase letters, digits, `.` and `-`).
 *
 * @example
 * parseS3Url("s3://data/in/*.csv"); // { bucket: "data", key: "in/*.csv" }
 */
export function parseS3Url(url: string): S3Location {
  if (!isS3Url(url)) throw new Error(`${url} is not an s3:// URL (expected s3://bucket/key)`);
  const rest = url.slice(5);
  const slash = rest.indexOf("/");
  const bucket = slash < 0 ? rest : rest.slice(0, slash);
  const key = slash < 0 ? "" : rest.slice(slash + 1);
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) {
    throw new Error(`${url}: "${bucket}" is not a bucket name (3-63 lowercase letters, digits, "." and "-"); expected s3://bucket/key`);
  }
  if (key.includes("\u0000")) throw new Error(`${url}: a key cannot contain a NUL character`);
  return { bucket, key };
}

/** `s3://bucket/key` */
export function formatS3Url(bucket: string, key: string): string {
  return `s3://${bucket}/${key}`;
}

/** The options with every field the caller left out taken from `env`. */
export function resolveS3Options(options: S3Options = {}, env: Record<string, string | undefined> = process.env): S3Options {
  return {
    endpoint: options.endpoint ?? env["S3_ENDPOINT"] ?? env["AWS_ENDPOINT_URL_S3"] ?? env["AWS_ENDPOINT_URL"],
    accessKeyId: options.accessKeyId ?? env["AWS_ACCESS_KEY_ID"] ?? env["S3_ACCESS_KEY_ID"],
    secretAccessKey: options.secretAccessKey ?? env["AWS_SECRET_ACCESS_KEY"] ?? env["S3_SECRET_ACCESS_KEY"],
    sessionToken: options.sessionToken ?? env["AWS_SESSION_TOKEN"] ?? env["S3_SESSION_TOKEN"],
    region: options.region ?? env["AWS_REGION"] ?? env["AWS_DEFAULT_REGION"] ?? env["S3_REGION"] ?? "us-east-1",
    virtualHostedStyle: options.virtualHostedStyle ?? false,
  };
}

/** A client for one bucket, plus what its errors must not show. */
export interface BucketClient {
  readonly bucket: string;
  readonly client: Bun.S3Client;
  /** The endpoint without any user-info, for messages. */
  readonly endpoint: string;
  /** Forms of the credentials to scrub from any text shown. */
  readonly secrets: readonly string[];
}

/**
 * A client for `bucket`, from `options` and the environment (see {@link S3Options}). Throws,
 * naming the bucket and the variables to set, when no credentials are found.
 */
export function bucketClient(bucket: string, options: S3Options = {}): BucketClient {
  const o = resolveS3Options(options);
  if (!o.accessKeyId || !o.secretAccessKey) {
    throw new ObjectStorageError(
      `s3://${bucket}: no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and S3_ENDPOINT for a store other than AWS), or pass s3: { accessKeyId, secretAccessKey, endpoint }`,
      bucket,
      "",
      "MissingCredentials",
    );
  }
  const client = new Bun.S3Client({
    bucket,
    accessKeyId: o.accessKeyId,
    secretAccessKey: o.secretAccessKey,
    ...(o.sessionToken ? { sessionToken: o.sessionToken } : {}),
    ...(o.endpoint ? { endpoint: o.endpoint } : {}),
    ...(o.region ? { region: o.region } : {}),
    ...(o.virtualHostedStyle ? { virtualHostedStyle: true } : {}),
  });
  const secrets = secretForms([o.secretAccessKey, o.accessKeyId, ...(o.sessionToken ? [o.sessionToken] : [])]);
  const endpoint = o.endpoint ? redactText(o.endpoint).replace(/\/\/[^/@]*@/, "//") : `AWS (${o.region})`;
  return { bucket, client, endpoint, secrets };
}

/** Client for the bucket of `url`, and the key. */
function at(url: string, options: S3Options | undefined): BucketClient & { key: string; url: string } {
  const { bucket, key } = parseS3Url(url);
  return { ...bucketClient(bucket, options), key, url: formatS3Url(bucket, key) };
}

/**
 * An {@link ObjectStorageError} for `doing` (`read`, `list`, ...) on `key`, saying what the
 * store's answer means and what to do; credential values are scrubbed from whatever text came back.
 */
export function storageError(c: BucketClient, key: string, doing: string, error: unknown): ObjectStorageError {
  const code = typeof (error as { code?: unknown })?.code === "string" ? ((error as { code: string }).code as string) : undefined;
  const raw = scrubText(redactText(error instanceof Error ? error.message : String(error)), c.secrets);
  const where = formatS3Url(c.bucket, key);
  let what: string;
  switch (code) {
    case "NoSuchKey":
    case "NotFound":
      what = `no object with key ${JSON.stringify(key)} in bucket ${c.bucket}`;
      break;
    case "NoSuchBucket":
      what = `bucket ${c.bucket} does not exist at ${c.endpoint}`;
      break;
    case "InvalidAccessKeyId":
    case "SignatureDoesNotMatch":
    case "AccessDenied":
    case "Forbidden":
    case "ExpiredToken":
    case "InvalidToken":
      what = `access refused (${code}): check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN or the s3 options (not shown), and that they may ${doing} in bucket ${c.bucket}`;
      break;
    case "ConnectionRefused":
    case "ConnectionClosed":
    case "FailedToOpenSocket":
    case "ECONNREFUSED":
    case "ECONNRESET":
    case "ENOTFOUND":
    case "ETIMEDOUT":
      what = `cannot connect to ${c.endpoint} (${code}): is the endpoint right (S3_ENDPOINT) and the server up?`;
      break;
    case "InvalidRange":
      what = `the object is shorter than expected (${code}): it was replaced while it was read`;
      break;
    default:
      what = code ? `${code}: ${raw}` : raw;
  }
  return new ObjectStorageError(`${where}: cannot ${doing}: ${what}`, c.bucket, key, code);
}

/** Size and ETag of one object. Rejects with an {@link ObjectStorageError} naming it (missing key, missing bucket, access). */
export async function statObject(url: string, options?: S3Options): Promise<S3Object> {
  const c = at(url, options);
  try {
    const info = await c.client.stat(c.key);
    return { url: c.url, bucket: c.bucket, key: c.key, size: info.size, etag: info.etag };
  } catch (error) {
    // A HEAD answer has no body, so Bun can only guess its error: a missing bucket looks like a
    // missing key, refused credentials like an unknown error. A listing (with a body) tells them apart.
    let cause = error;
    await c.client.list({ maxKeys: 1 }).catch((listing) => (cause = listing));
    throw storageError(c, c.key, "read", cause);
  }
}

/** Options of {@link listKeys}. */
export interface S3ListOptions {
  /** Keys asked for per request (default 1000, the most S3 returns). */
  readonly pageSize?: number;
}

/**
 * Every object whose key begins with the key of `url` (`s3://bucket/prefix`), page by page in the
 * store's order (ascending UTF-8 bytes), without holding more than one page.
 */
export async function* listKeys(url: string, options?: S3Options & S3ListOptions): AsyncGenerator<S3Object> {
  const c = at(url, options);
  let continuationToken: string | undefined;
  do {
    let page: Awaited<ReturnType<Bun.S3Client["list"]>>;
    try {
      page = await c.client.list({
        prefix: c.key,
        maxKeys: options?.pageSize ?? 1000,
        ...(continuationToken ? { continuationToken } : {}),
      });
    } catch (error) {
      throw storageError(c, c.key, "list", error);
    }
    for (const object of page.contents ?? []) {
      yield { url: formatS3Url(c.bucket, object.key), bucket: c.bucket, key: object.key, size: object.size ?? 0, etag: object.eTag ?? "" };
    }
    continuationToken = page.isTruncated ? page.nextContinuationToken : undefined;
  } while (continuationToken);
}

const GLOB_MAGIC = /[*?[{]/;

/**
 * The objects an `s3://` input names, sorted by key: one object for a plain key (rejecting, naming
 * it, when it does not exist, or is a "folder": keys under it but none equal to it), every match
 * for a glob (`*` within one `/`-separated part, `**` across them, `?`, `[...]`, `{a,b}`; the
 * listing starts at the glob's literal prefix). A glob that matches nothing rejects.
 */
export async function resolveObjects(url: string, who: string, options?: S3Options & S3ListOptions): Promise<S3Object[]> {
  const { bucket, key } = parseS3Url(url);
  const magic = key.search(GLOB_MAGIC);
  if (magic < 0) {
    if (key === "" || key.endsWith("/")) throw new Error(`${who}: ${url} is a prefix; give an object or a glob such as ${url.replace(/\/?$/, "/")}*.csv`);
    try {
      return [await statObject(url, options)];
    } catch (error) {
      if ((error as ObjectStorageError).code !== "NoSuchKey") throw error;
      for await (const _ of listKeys(formatS3Url(bucket, `${key}/`), { ...options, pageSize: 1 })) {
        throw new Error(`${who}: ${url} is a prefix; give an object or a glob such as ${url}/*.csv`);
      }
      throw error;
    }
  }
  const glob = new Bun.Glob(key);
  const matched: S3Object[] = [];
  let named: S3Object | undefined;
  for await (const object of listKeys(formatS3Url(bucket, key.slice(0, magic)), options)) {
    if (glob.match(object.key)) matched.push(object);
    else if (object.key === key) named = object;
  }
  // As for local files: a pattern that matches nothing but names an object ("export[1].csv") is it.
  if (matched.length === 0 && named !== undefined) return [named];
  if (matched.length === 0) throw new Error(`${who}: no object matches ${url}`);
  return matched.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

/** Options of {@link openObject}. */
export interface ObjectReadOptions {
  /** Bytes one ranged GET fetches (default 8 MiB); the next range is fetched while this one is read. */
  readonly rangeBytes?: number;
  /**
   * Tries of a ranged GET the store answers with a transient error (503 SlowDown, 500, a reset
   * connection), waiting `retryDelayMs` (default 250), then twice as long, between them (default 4).
   */
  readonly attempts?: number;
  readonly retryDelayMs?: number;
}

/** Error codes a later try of the same request may not get. */
const TRANSIENT = new Set(["SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "ConnectionClosed", "ConnectionRefused", "ECONNRESET", "ETIMEDOUT", "UnknownError"]);

/**
 * Reads one object by ranges: `readAt` copies from the range in hand, or fetches the range that
 * begins at the position asked for (and starts fetching the one after it). At most two ranges are
 * held, whatever the object's size.
 *
 * Each range must arrive whole: a shorter one (the object was replaced by a smaller one while it
 * was read) rejects, naming the object.
 */
export class ObjectReader {
  readonly #c: BucketClient;
  readonly #rangeBytes: number;
  readonly #attempts: number;
  readonly #retryDelayMs: number;
  #current: { start: number; bytes: Uint8Array } | undefined;
  #next: { start: number; bytes: Promise<Uint8Array> } | undefined;

  constructor(
    c: BucketClient,
    /** The object as it was when opened: reads stay within its size. */
    readonly object: S3Object,
    options: ObjectReadOptions = {},
  ) {
    this.#c = c;
    this.#rangeBytes = Math.max(64 * 1024, Math.floor(options.rangeBytes ?? 8 * 1024 * 1024));
    this.#attempts = Math.max(1, Math.floor(options.attempts ?? 4));
    this.#retryDelayMs = Math.max(0, options.retryDelayMs ?? 250);
  }

  get size(): number {
    return this.object.size;
  }

  /** Reads `length` bytes at `position` into `buffer` at `offset` (fewer only at the end); 0 at the end. */
  async readAt(buffer: Uint8Array, offset: number, length: number, position: number): Promise<number> {
    let done = 0;
    while (done < length) {
      const n = await this.#readSome(buffer, offset + done, length - done, position + done);
      if (n === 0) break;
      done += n;
    }
    return done;
  }

  async #readSome(buffer: Uint8Array, offset: number, length: number, position: number): Promise<number> {
    if (position >= this.object.size || length <= 0) return 0;
    let range = this.#current;
    if (!range || position < range.start || position >= range.start + range.bytes.length) {
      range = { start: position, bytes: await this.#take(position) };
      this.#current = range;
      const after = position + range.bytes.length;
      this.#next = after < this.object.size ? { start: after, bytes: this.#fetch(after) } : undefined;
      // An unawaited prefetch that fails is reported when (if) it is read, not as unhandled.
      this.#next?.bytes.catch(() => {});
    }
    const from = position - range.start;
    const n = Math.min(length, range.bytes.length - from);
    buffer.set(range.bytes.subarray(from, from + n), offset);
    return n;
  }

  /** Lets go of the ranges held. */
  close(): void {
    this.#current = undefined;
    this.#next = undefined;
  }

  /** The range beginning at `start`: the prefetched one when it is that, else a new GET. */
  #take(start: number): Promise<Uint8Array> {
    const next = this.#next;
    this.#next = undefined;
    return next && next.start === start ? next.bytes : this.#fetch(start);
  }

  async #fetch(start: number): Promise<Uint8Array> {
    const end = Math.min(this.object.size, start + this.#rangeBytes);
    let bytes: Uint8Array | undefined;
    for (let attempt = 1; !bytes; attempt++) {
      try {
        bytes = await this.#c.client.file(this.object.key).slice(start, end).bytes();
      } catch (error) {
        const code = (error as { code?: unknown })?.code;
        // A busy or briefly unreachable store is asked again; anything else is an answer.
        if (attempt >= this.#attempts || typeof code !== "string" || !TRANSIENT.has(code)) {
          throw storageError(this.#c, this.object.key, `read bytes ${start}-${end - 1}`, error);
        }
        await Bun.sleep(this.#retryDelayMs * 2 ** (attempt - 1));
      }
    }
    if (bytes.length !== end - start) {
      throw new ObjectStorageError(
        `${this.object.url}: bytes ${start}-${end - 1} came back as ${bytes.length} bytes: the object was replaced while it was read (it had ${this.object.size} bytes, ETag ${this.object.etag})`,
        this.object.bucket,
        this.object.key,
        "Changed",
      );
    }
    return bytes;
  }
}

/**
 * Opens `url` for ranged reads (one HEAD to learn its size and ETag).
 *
 * @example
 * const object = await openObject("s3://data/in/big.ndjson");
 * const head = new Uint8Array(1024);
 * const n = await object.readAt(head, 0, head.length, 0);
 */
export async function openObject(url: string, options?: S3Options & ObjectReadOptions): Promise<ObjectReader> {
  const c = at(url, options);
  return new ObjectReader(c, await statObject(url, options), options);
}

/** Opens an object already listed (no HEAD). */
export function objectReader(object: S3Object, options?: S3Options & ObjectReadOptions): ObjectReader {
  return new ObjectReader(bucketClient(object.bucket, options), object, options);
}

/** Options of {@link uploadFile}. */
export interface S3UploadOptions {
  /** Above this size a file goes up in parts (default and most: 5 GiB, S3's single-PUT limit). */
  readonly singlePutLimit?: number;
  /** Part size of a multipart upload (default 64 MiB). */
  readonly partSize?: number;
  /** `Content-Type` of the object. */
  readonly type?: string;
}

/**
 * Uploads a finished local file to `url` and resolves the new object's size and ETag. Up to 5 GiB
 * it is one PUT, which S3 applies atomically: readers see the old object or the whole new one.
 * Above, it goes up in parts, and when anything fails the key is deleted (Bun's multipart writer
 * completes the upload even when told to abort), so no truncated object stays under the key.
 *
 * @example
 * await uploadFile("out/tmp/part-0.parquet", "s3://lake/events/date=2024-03-01/part-0.parquet");
 */
export async function uploadFile(localPath: string, url: string, options?: S3Options & S3UploadOptions): Promise<S3Object> {
  const c = at(url, options);
  if (c.key === "" || c.key.endsWith("/")) throw new Error(`uploadFile: ${url} names a prefix, not an object key`);
  let size: number;
  try {
    size = (await stat(localPath)).size;
  } catch (error) {
    throw new Error(`uploadFile: cannot read ${localPath}: ${(error as Error).message}`);
  }
  const limit = Math.min(options?.singlePutLimit ?? MAX_SINGLE_PUT_BYTES, MAX_SINGLE_PUT_BYTES);
  const type = options?.type ?? (c.key.endsWith(".parquet") ? "application/vnd.apache.parquet" : "application/octet-stream");
  try {
    if (size <= limit) {
      await putFile(c, localPath, type);
    } else {
      await uploadInParts(c, localPath, options?.partSize ?? 64 * 1024 * 1024, type);
    }
  } catch (error) {
    if (size > limit) await c.client.delete(c.key).catch(() => {});
    throw error instanceof ObjectStorageError ? error : storageError(c, c.key, "write", error);
  }
  const written = await statObject(c.url, options);
  if (written.size !== size) {
    await c.client.delete(c.key).catch(() => {});
    throw new ObjectStorageError(`${c.url}: uploaded ${written.size} of ${size} bytes of ${localPath}; the object was deleted`, c.bucket, c.key, "Incomplete");
  }
  return written;
}

/**
 * One PUT of a local file through a presigned URL, the body streamed from disk. Bun's own
 * `write(key, Bun.file(path))` switches to a multipart upload above 5 MiB, and with the part size
 * raised to keep it one PUT it reads the whole file into memory first (a 100 MiB file: 338 MiB peak
 * RSS, against 20 MiB here).
 */
async function putFile(c: BucketClient & { key: string }, localPath: string, type: string): Promise<void> {
  const url = c.client.presign(c.key, { method: "PUT", expiresIn: 3600 });
  // The URL carries the key id, the signature and any session token: never shown.
  const hidden = { ...c, secrets: secretForms([...c.secrets, url, ...new URL(url).searchParams.values()].filter((v) => v.length >= 8)) };
  let response: Response;
  try {
    response = await fetch(url, { method: "PUT", body: Bun.file(localPath), headers: { "content-type": type } });
  } catch (error) {
    throw storageError(hidden, c.key, "write", error);
  }
  if (response.ok) {
    await response.arrayBuffer();
    return;
  }
  // S3 answers an error with an XML body: <Error><Code>...</Code><Message>...</Message></Error>.
  const body = await response.text().catch(() => "");
  const code = /<Code>([^<]*)<\/Code>/.exec(body)?.[1] ?? `HTTP ${response.status}`;
  const message = /<Message>([^<]*)<\/Message>/.exec(body)?.[1] ?? response.statusText;
  throw storageError(hidden, c.key, "write", Object.assign(new Error(message), { code: code === "AccessDenied" || response.status !== 403 ? code : "AccessDenied" }));
}

async function uploadInParts(c: BucketClient & { key: string }, localPath: string, partSize: number, type: string): Promise<void> {
  const writer = c.client.file(c.key).writer({ partSize: Math.max(partSize, 5 * 1024 * 1024), queueSize: 2, retry: 3, type });
  const reader = Bun.file(localPath).stream().getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      writer.write(value);
      await writer.flush();
    }
    await writer.end();
  } catch (error) {
    // writer.end(error) would complete the upload with what it has: the caller deletes the key.
    reader.cancel().catch(() => {});
    throw error;
  }
}

/** Deletes the object at `url`. Deleting a key that does not exist succeeds (as S3 answers). */
export async function deleteKey(url: string, options?: S3Options): Promise<void> {
  const c = at(url, options);
  try {
    await c.client.delete(c.key);
  } catch (error) {
    throw storageError(c, c.key, "delete", error);
  }
}

/** Writes `bytes` (a small object: a manifest entry, a marker) to `url` in one PUT. */
export async function putObject(url: string, bytes: Uint8Array | string, options?: S3Options & { type?: string }): Promise<void> {
  const c = at(url, options);
  try {
    await c.client.write(c.key, bytes, { type: options?.type ?? "application/octet-stream" });
  } catch (error) {
    throw storageError(c, c.key, "write", error);
  }
}

/** Reads a whole small object (a manifest entry) into memory. */
export async function getObject(url: string, options?: S3Options): Promise<Uint8Array> {
  const c = at(url, options);
  try {
    return await c.client.file(c.key).bytes();
  } catch (error) {
    throw storageError(c, c.key, "read", error);
  }
}

/**
 * Copies an object to a local file, a range at a time (never the whole object in memory), under a
 * temporary name renamed into place when complete. Resolves the object as it was read.
 */
export async function downloadObject(object: S3Object, localPath: string, options?: S3Options & ObjectReadOptions): Promise<void> {
  const reader = objectReader(object, options);
  mkdirSync(dirname(localPath), { recursive: true });
  const temporary = `${localPath}.${process.pid}.download`;
  const fd = openSync(temporary, "w");
  try {
    const buffer = new Uint8Array(1024 * 1024);
    let position = 0;
    for (;;) {
      const n = await reader.readAt(buffer, 0, buffer.length, position);
      if (n === 0) break;
      writeSync(fd, buffer, 0, n, position);
      position += n;
    }
    fsyncSync(fd);
  } catch (error) {
    closeSync(fd);
    rmSync(temporary, { force: true });
    throw error;
  } finally {
    reader.close();
  }
  closeSync(fd);
  renameSync(temporary, localPath);
}

/**
 * Writes a local stand-in for a Parquet object that holds only its footer: a sparse file of the
 * object's size with the footer (and its length and magic) at the end, fetched with two ranged
 * reads. Footer readers (`readFooter`, `inspect`) read it as the object; its data pages read as zeros.
 */
export async function downloadParquetFooter(object: S3Object, localPath: string, options?: S3Options): Promise<void> {
  const c = bucketClient(object.bucket, options);
  if (object.size < 12) throw new ObjectStorageError(`${object.url}: ${object.size} bytes is too short for a Parquet file`, object.bucket, object.key, "NotParquet");
  const range = async (start: number, end: number) => {
    try {
      return await c.client.file(object.key).slice(start, end).bytes();
    } catch (error) {
      throw storageError(c, object.key, `read bytes ${start}-${end - 1}`, error);
    }
  };
  // The last 64 KiB hold the whole footer of most files: one GET; a longer footer takes a second.
  const tailStart = Math.max(0, object.size - 64 * 1024);
  let tail = await range(tailStart, object.size);
  const view = new DataView(tail.buffer, tail.byteOffset, tail.byteLength);
  const footerLength = view.getUint32(tail.length - 8, true);
  const magic = new TextDecoder().decode(tail.subarray(tail.length - 4));
  if (magic !== "PAR1" || footerLength + 8 > object.size) {
    throw new ObjectStorageError(`${object.url}: not a Parquet file (no PAR1 footer)`, object.bucket, object.key, "NotParquet");
  }
  let start = tailStart;
  if (footerLength + 8 > tail.length) {
    start = object.size - footerLength - 8;
    tail = await range(start, object.size);
  }
  mkdirSync(dirname(localPath), { recursive: true });
  const fd = openSync(localPath, "w");
  try {
    ftruncateSync(fd, object.size);
    writeSync(fd, new TextEncoder().encode("PAR1"), 0, 4, 0);
    writeSync(fd, tail, 0, tail.length, start);
  } finally {
    closeSync(fd);
  }
}

// ---- The manifest of a dataset written to a bucket ----

/** One committed object of a dataset, as its manifest entry records it. */
export interface ManifestEntry {
  /** The object's key relative to the dataset prefix (`date=2024-03-01/part-0.parquet`). */
  readonly path: string;
  readonly size: number;
  /** The ETag the upload returned: a reader can check it still reads the object that was committed. */
  readonly etag: string;
  readonly rows: number;
  /** The run that committed it. */
  readonly runId: string;
  /** ISO-8601 instant of the commit. */
  readonly committedAt: string;
}

/** The folder of manifest entries inside a dataset prefix. */
export const MANIFEST_FOLDER = "_manifest";

/** `s3://bucket/prefix` as a prefix ending in `/` (`""` for the bucket root). */
function prefixOf(key: string): string {
  return key === "" || key.endsWith("/") ? key : `${key}/`;
}

/** The key of the manifest entry of `path` (one flat, escaped name per committed file). */
export function manifestKeyOf(datasetKey: string, path: string): string {
  return `${prefixOf(datasetKey)}${MANIFEST_FOLDER}/${encodeURIComponent(path)}.json`;
}

/**
 * Records `entry` as committed in the dataset at `datasetUrl`: one small JSON object under
 * `_manifest/`, named after the entry's path, written in one PUT after the data object is uploaded.
 * Writing the same path again replaces its entry, so a re-run that commits the same file again
 * does not list it twice.
 *
 * @example
 * const object = await uploadFile(local, "s3://lake/events/date=2024-03-01/part-0.parquet");
 * await writeManifestEntry("s3://lake/events", { path: "date=2024-03-01/part-0.parquet", size: object.size, etag: object.etag, rows: 1000, runId, committedAt: new Date().toISOString() });
 */
export async function writeManifestEntry(datasetUrl: string, entry: ManifestEntry, options?: S3Options): Promise<void> {
  const { bucket, key } = parseS3Url(datasetUrl);
  checkEntry(entry, datasetUrl);
  await putObject(formatS3Url(bucket, manifestKeyOf(key, entry.path)), JSON.stringify(entry), { ...options, type: "application/json" });
}

/** Removes the manifest entry of `path` (before its object is deleted, so no reader is sent to a missing object). */
export async function deleteManifestEntry(datasetUrl: string, path: string, options?: S3Options): Promise<void> {
  const { bucket, key } = parseS3Url(datasetUrl);
  await deleteKey(formatS3Url(bucket, manifestKeyOf(key, path)), options);
}

/**
 * The committed objects of the dataset at `datasetUrl`, sorted by path; `undefined` when it has no
 * manifest (a dataset not written through one: list its objects instead). An entry that is not
 * JSON (hand-edited, cut short) rejects, naming its key; or, with `cutShort`, is handed to it and
 * left out (settling an interrupted run: a PUT cut short by a crash committed nothing).
 */
export async function readManifest(
  datasetUrl: string,
  options?: S3Options & S3ListOptions & { readonly cutShort?: (entryUrl: string) => void },
): Promise<ManifestEntry[] | undefined> {
  const { bucket, key } = parseS3Url(datasetUrl);
  const folder = `${prefixOf(key)}${MANIFEST_FOLDER}/`;
  const entries: ManifestEntry[] = [];
  let any = false;
  for await (const object of listKeys(formatS3Url(bucket, folder), options)) {
    if (!object.key.endsWith(".json")) continue;
    any = true;
    const text = new TextDecoder().decode(await getObject(object.url, options));
    let entry: unknown;
    try {
      entry = JSON.parse(text);
    } catch (error) {
      if (options?.cutShort) {
        options.cutShort(object.url);
        continue;
      }
      throw new Error(`manifest entry ${object.url} is not JSON (${(error as Error).message})`);
    }
    checkEntry(entry, object.url);
    entries.push(entry);
  }
  if (!any) return undefined;
  return entries.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

function checkEntry(entry: unknown, where: string): asserts entry is ManifestEntry {
  const e = entry as Record<string, unknown>;
  const ok =
    typeof e === "object" &&
    e !== null &&
    typeof e["path"] === "string" &&
    e["path"] !== "" &&
    !(e["path"] as string).startsWith("/") &&
    !(e["path"] as string).split("/").includes("..") &&
    Number.isSafeInteger(e["size"]) &&
    (e["size"] as number) >= 0 &&
    typeof e["etag"] === "string" &&
    Number.isSafeInteger(e["rows"]) &&
    (e["rows"] as number) >= 0 &&
    typeof e["runId"] === "string" &&
    typeof e["committedAt"] === "string";
  if (!ok) {
    throw new Error(
      `manifest entry ${where} is not one: expected { path (relative, no ".."), size, etag, rows, runId, committedAt }, got ${JSON.stringify(entry)?.slice(0, 200)}`,
    );
  }
}

// ---- Datasets and folders read from a bucket through local copies ----

/** A local folder holding copies of objects, removed by `dispose`. */
export interface LocalCopy {
  /** The folder (the objects at their paths relative to the prefix). */
  readonly root: string;
  /** The objects copied, relative path → object. */
  readonly objects: ReadonlyMap<string, S3Object>;
  dispose(): void;
}

/**
 * The Parquet objects of the dataset at `url` (a prefix, or one `.parquet` object): the manifest's
 * entries when the dataset has a manifest (so a half-written dataset is never read), else every
 * `*.parquet` key under it. Paths are relative to the prefix; hidden ones (`_`, `.`) are left out
 * as they are locally.
 */
export async function listDatasetObjects(url: string, options?: S3Options & S3ListOptions): Promise<Map<string, S3Object>> {
  const { bucket, key } = parseS3Url(url);
  const found = new Map<string, S3Object>();
  if (key.endsWith(".parquet")) {
    const object = await statObject(url, options);
    found.set(key.slice(key.lastIndexOf("/") + 1), object);
    return found;
  }
  const prefix = prefixOf(key);
  const manifest = await readManifest(url, options);
  if (manifest) {
    for (const entry of manifest) {
      found.set(entry.path, { url: formatS3Url(bucket, prefix + entry.path), bucket, key: prefix + entry.path, size: entry.size, etag: entry.etag });
    }
    return found;
  }
  for await (const object of listKeys(formatS3Url(bucket, prefix), options)) {
    const path = object.key.slice(prefix.length);
    const parts = path.split("/");
    const name = parts[parts.length - 1] as string;
    if (!name.endsWith(".parquet") || /^[._]/.test(name) || parts.slice(0, -1).some((p) => /^[._]/.test(p) && p.indexOf("=") <= 0)) continue;
    found.set(path, object);
  }
  if (found.size === 0) {
    // Nothing under it at all is a missing dataset; a bucket that is missing says so itself.
    let any = false;
    for await (const _ of listKeys(formatS3Url(bucket, prefix), { ...options, pageSize: 1 })) any = true;
    throw new Error(any ? `${url} holds no .parquet objects` : `${url} does not exist (no objects under it)`);
  }
  return found;
}

/**
 * Copies `objects` (relative path → object) into a new temporary folder: whole, or, with
 * `footersOnly`, as sparse stand-ins holding only their Parquet footers. A failure removes the folder.
 */
export async function copyToLocal(
  objects: ReadonlyMap<string, S3Object>,
  options?: S3Options & ObjectReadOptions & { footersOnly?: boolean; under?: string },
): Promise<LocalCopy> {
  const root = join(options?.under ?? tmpdir(), `sluice-s3-${process.pid}-${Math.random().toString(36).slice(2, 10)}`);
  mkdirSync(root, { recursive: true });
  const dispose = () => rmSync(root, { recursive: true, force: true });
  try {
    for (const [path, object] of objects) {
      const parts = path.split("/");
      // A key is any text: one that would climb out of the folder (`a/../../x`) is refused.
      if (parts.some((part) => part === "" || part === "." || part === "..")) {
        throw new ObjectStorageError(`${object.url}: its key has an empty, "." or ".." part, which cannot be copied to a local path`, object.bucket, object.key, "BadKey");
      }
      const local = join(root, ...parts);
      if (options?.footersOnly) await downloadParquetFooter(object, local, options);
      else await downloadObject(object, local, options);
    }
  } catch (error) {
    dispose();
    throw error;
  }
  return { root, objects, dispose };
}

/** A local copy of objects under a prefix (a dataset, a dead-letter folder), removed by `dispose`. */
export interface LocalDataset {
  /** The folder to read: the copy's root, or the one file of a `.parquet` object URL. */
  readonly path: string;
  /** The copy's root folder, to turn local paths in messages back into `s3://` ones. */
  readonly root: string;
  dispose(): void;
}

/**
 * Copies the Parquet objects of the dataset at `url` (see {@link listDatasetObjects}: its manifest
 * when it has one) into a temporary folder, so readers of local datasets read it:
 * - `footersOnly`: sparse stand-ins holding only each file's footer (`inspect`: two small ranged GETs a file);
 * - `rows`: whole files, in path order, only until they hold that many rows (`head -n`);
 * - neither: every file, whole.
 *
 * Files are copied a range at a time, never whole in memory.
 *
 * @example
 * const copy = await localDataset("s3://lake/events", { rows: 10 });
 * try { await readDataset(copy.path, { limit: 10 }); } finally { copy.dispose(); }
 */
export async function localDataset(url: string, options: { footersOnly?: boolean; rows?: number; s3?: S3Options } = {}): Promise<LocalDataset> {
  const objects = await listDatasetObjects(url, options.s3);
  const single = parseS3Url(url).key.endsWith(".parquet") ? [...objects.keys()][0] : undefined;
  let chosen: ReadonlyMap<string, S3Object> = objects;
  if (options.rows !== undefined && !options.footersOnly) {
    // Footers first (small), then the files whose rows are needed.
    const footers = await copyToLocal(objects, { ...options.s3, footersOnly: true });
    try {
      const needed = new Map<string, S3Object>();
      let rows = 0;
      for (const [path, object] of objects) {
        if (needed.size > 0 && rows >= options.rows) break;
        needed.set(path, object);
        rows += (await readFooter(join(footers.root, ...path.split("/")))).numRows;
      }
      chosen = needed;
    } finally {
      footers.dispose();
    }
  }
  const copy = await copyToLocal(chosen, { ...options.s3, footersOnly: options.footersOnly === true });
  return { path: single === undefined ? copy.root : join(copy.root, single), root: copy.root, dispose: copy.dispose };
}

/**
 * Copies every object under the prefix `url` (a dead-letter folder, with its hidden files) into a
 * temporary folder, a range at a time.
 */
export async function localFolder(url: string, options?: S3Options): Promise<LocalDataset> {
  const { bucket, key } = parseS3Url(url);
  const prefix = prefixOf(key);
  const objects = new Map<string, S3Object>();
  for await (const object of listKeys(formatS3Url(bucket, prefix), options)) objects.set(object.key.slice(prefix.length), object);
  const copy = await copyToLocal(objects, options);
  return { path: copy.root, root: copy.root, dispose: copy.dispose };
}

/** `message` with the local copy's folder named as the `s3://` URL it is a copy of. */
export function asRemote(message: string, copy: LocalDataset, url: string): string {
  const base = parseS3Url(url).key.endsWith(".parquet") ? url.slice(0, url.lastIndexOf("/")) : url.replace(/\/$/, "");
  return message.replaceAll(copy.root, base);
}
