/**
 * File inputs: what a user names as input (a path, a glob, a list of them) turned into a sorted
 * list of files, and the frame every file source is built on.
 *
 * Besides plain files, the frame reads two kinds of input that can only be read front to back:
 * - compressed files (gzip, zstd), recognised by their first bytes whatever their name, and
 *   decompressed as a stream, so memory stays bounded however large they are. Readers see the
 *   decompressed bytes, and offsets (dead letters, checkpoint resume points) count those;
 * - named pipes and other files that are not regular (`mkfifo p; producer > p &`, `<(zcat x)`),
 *   read as they arrive. Opening a pipe waits for its writer; that wait, like a read waiting for
 *   data, ends when the run is stopped, so a stop never hangs on a pipe nobody writes to.
 *
 * Inputs may also be objects in S3-compatible storage (`s3://bucket/prefix/*.csv`, see
 * src/io/s3.ts): listed and matched like a glob, read by ranged GETs (a range or two in memory,
 * whatever the object's size), named `s3://bucket/key` in positions, and resumed under a
 * checkpoint with a ranged read from the byte offset it recorded.
 */
import type { Stats } from "node:fs";
import { type FileHandle, open, stat } from "node:fs/promises";
import { isAbsolute, join, resolve } from "node:path";
import { Observable } from "rxjs";
import type { StartPoint } from "../checkpoint/checkpoint.ts";
import { currentFlow, deadLetterBelow, type Flow, waitForGate } from "../flow/flow.ts";
import { Input } from "../flow/position.ts";
import { type Split, shortHash } from "../distribute/queue.ts";
import { isS3Url, parseS3Url, ObjectStorageError, objectReader, type ObjectReadOptions, resolveObjects, type S3Object, type S3Options, statObject } from "../io/s3.ts";
import type { ReadBytes } from "./lines.ts";
import { cutSplits, fileVersion, type ReadSplits, readSplits, type SplitRule } from "./splits.ts";

const GLOB_MAGIC = /[*?[{]/;

/**
 * Expands globs with `Bun.Glob` and checks plain paths exist. Files matched by a glob are sorted
 * by name so every run reads them in the same order. Throws, naming the input, when a plain path
 * does not exist or a glob matches nothing: an empty run because of a typo is a failure.
 */
export async function resolveInputs(input: string | readonly string[], who: string): Promise<string[]> {
  const patterns = typeof input === "string" ? [input] : [...input];
  if (patterns.length === 0) throw new Error(`${who}: no input given`);
  const files: string[] = [];
  for (const pattern of patterns) {
    if (!GLOB_MAGIC.test(pattern)) {
      try {
        const info = await stat(pattern);
        if (info.isDirectory()) throw new Error(`${who}: ${pattern} is a folder; give a file or a glob such as ${join(pattern, "*.ndjson")}`);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "ENOENT") throw new Error(`${who}: input ${pattern} does not exist`);
        throw error;
      }
      files.push(pattern);
      continue;
    }
    const matched: string[] = [];
    const absolute = isAbsolute(pattern);
    const glob = new Bun.Glob(absolute ? pattern.slice(1) : pattern);
    for await (const path of glob.scan({ cwd: absolute ? "/" : ".", onlyFiles: true, dot: false })) {
      matched.push(absolute ? `/${path}` : path);
    }
    if (matched.length === 0) {
      // As a shell does, a pattern that matches nothing is taken as written: "export[1].csv" as a
      // glob matches only "export1.csv", and the file named so would be "not found".
      if (await stat(pattern).then((info) => info.isFile(), () => false)) {
        files.push(pattern);
        continue;
      }
      throw new Error(`${who}: no file matches ${pattern}`);
    }
    files.push(...matched.sort());
  }
  return files;
}

/** Options every file source shares. */
export interface FileSourceOptions {
  /** Files read at the same time (default 1). They share the sink's one memory budget. */
  readonly concurrency?: number;
  /**
   * For `s3://` inputs: endpoint and credentials (each defaults to its environment variable:
   * `S3_ENDPOINT`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, ...) and `rangeBytes`, the bytes
   * one ranged GET fetches (default 8 MiB).
   */
  readonly s3?: S3Options & ObjectReadOptions;
}

/** The inputs of a file source, in reading order: local paths and objects in a bucket. */
export async function resolveTargets(input: string | readonly string[], who: string, s3?: S3Options): Promise<(string | S3Object)[]> {
  const patterns = typeof input === "string" ? [input] : [...input];
  if (patterns.length === 0) throw new Error(`${who}: no input given`);
  const targets: (string | S3Object)[] = [];
  for (const pattern of patterns) {
    if (isS3Url(pattern)) targets.push(...(await resolveObjects(pattern, who, s3).catch((error) => Promise.reject(named(who, error)))));
    else targets.push(...(await resolveInputs(pattern, who)));
  }
  return targets;
}

/** An object-storage error with the source's name in front (its message already names bucket and key). */
function named(who: string, error: unknown): Error {
  return error instanceof ObjectStorageError ? new ObjectStorageError(`${who}: ${error.message}`, error.bucket, error.key, error.code) : (error as Error);
}

export type { StartPoint, SplitRule };

/** Per run, how many times a distributed file source with the same queue key subscribed. */
const subscriptions = new WeakMap<Flow, Map<string, number>>();

/** A split of a distributed run being read: its records' input, where it begins, where it ends. */
interface Part {
  readonly input: Input;
  readonly start: StartPoint;
  /** The byte after the split's last (the file's size for a whole file). */
  readonly end: number;
  /** The input's version when the job was listed: a file changed since fails the run. */
  readonly version: string;
}

/** What a file source's per-file reader gets. */
export interface FileReading {
  readonly flow: Flow;
  /** The file's path, as the source names it on dead letters and commits. */
  readonly path: string;
  /** The file as an input of the run: `input.at(line, raw)` gives each record's position. */
  readonly input: Input;
  /** The file's size on disk when it was opened (compressed, for a compressed file; 0 for a pipe). */
  readonly size: number;
  /** Where to begin: `{ line: 0, byteOffset: 0 }` unless a checkpoint resumes the file. */
  readonly start: StartPoint;
  /** Reads the file sequentially from `start.byteOffset`; counts bytes read. Resolves 0 at the end. */
  readonly read: ReadBytes;
  /**
   * Reads at an absolute position (a header before the resume point, say) without moving `read`.
   * On a compressed file, going back decompresses again from the start; a pipe cannot go back.
   */
  readonly readAt: (buffer: Uint8Array, offset: number, length: number, position: number) => Promise<number>;
  /** Emits a record; stamp it with its position first (`stamp(value, input.at(line, raw))`). */
  readonly emit: (value: unknown) => void;
  /** True once the subscriber unsubscribed or the run is stopping: stop emitting. */
  readonly stopped: () => boolean;
  /**
   * Call between chunks: waits while the sink's budget is spent, then resolves `false` when
   * reading should stop.
   */
  readonly pause: () => Promise<boolean>;
  /**
   * Tells the checkpoint that every record up to and including `line` has been emitted and the
   * next one begins at `byteOffset`: a place a re-run can resume from. Call it at chunk ends.
   */
  readonly mark: (line: number, byteOffset: number) => void;
  /**
   * True for a regular, uncompressed file read under a checkpoint: it may still be written to, so
   * a last line (or record) without its line ending may be one being appended. Readers leave it
   * for the next run, which takes it whole. False for a compressed file (not written to while it
   * is read; its offsets count decompressed bytes) and a pipe (read whole on every run).
   */
  readonly mayGrow: boolean;
}

/** A compression a file source reads through, and the first bytes that give it away. */
const COMPRESSIONS = [
  { format: "gzip", magic: [0x1f, 0x8b] },
  { format: "zstd", magic: [0x28, 0xb5, 0x2f, 0xfd] },
] as const;

type Compression = (typeof COMPRESSIONS)[number]["format"];

/**
 * Compressions read nowhere in sluice, recognised so that such a file is refused by name instead
 * of being read as text (a run that ends "successfully" with every line a dead letter).
 */
const UNREADABLE = [
  { format: "xz", magic: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00], tool: "xz -dc" },
  // "BZh" is text too: only with its block size digit and block magic ("BZh91AY&SY") is it bzip2.
  { format: "bzip2", magic: [0x42, 0x5a, 0x68], tool: "bzip2 -dc", needs: 10 },
  { format: "lz4", magic: [0x04, 0x22, 0x4d, 0x18], tool: "lz4 -dc" },
  { format: "zip", magic: [0x50, 0x4b, 0x03, 0x04], tool: "unzip -p" },
] as const;

/**
 * Byte order marks of text sluice does not read (it reads UTF-8), so that such a file (Windows
 * PowerShell's `>` writes UTF-16) is refused by name instead of read as every line a dead letter.
 * UTF-32LE's comes first: it begins with UTF-16LE's.
 */
const UNREADABLE_TEXT = [
  { encoding: "UTF-32", magic: [0xff, 0xfe, 0x00, 0x00] },
  { encoding: "UTF-32", magic: [0x00, 0x00, 0xfe, 0xff] },
  { encoding: "UTF-16", magic: [0xff, 0xfe] },
  { encoding: "UTF-16", magic: [0xfe, 0xff] },
] as const;

/** Bytes needed to tell the formats above apart. */
const HEAD_BYTES = 10;

const startsWith = (head: Uint8Array, magic: readonly number[]) => head.length >= magic.length && magic.every((byte, i) => head[i] === byte);

/** True while `head` is too short to rule out every format above: more bytes are needed to decide. */
function undecided(head: Uint8Array): boolean {
  return [...COMPRESSIONS, ...UNREADABLE, ...UNREADABLE_TEXT].some(
    (format) => head.length < ("needs" in format ? format.needs : format.magic.length) && head.every((byte, i) => i >= format.magic.length || format.magic[i] === byte),
  );
}

/**
 * The compression `head` (a file's first bytes) shows, if any. Throws, naming `path`, the format
 * and how to read it, for one sluice cannot decompress.
 */
function compressionOf(head: Uint8Array, who: string, path: string): Compression | undefined {
  const known = COMPRESSIONS.find(({ magic }) => startsWith(head, magic));
  if (known) return known.format;
  const unreadable = UNREADABLE.find(({ format, magic }) => startsWith(head, magic) && (format !== "bzip2" || /^BZh[1-9]1AY&SY/.test(String.fromCharCode(...head))));
  if (unreadable) {
    throw new Error(
      `${who}: ${path} is ${unreadable.format}-compressed, which sluice does not read (it reads gzip and zstd): decompress it first, or read it through a named pipe (mkfifo p; ${unreadable.tool} ${path} > p &, then read p)`,
    );
  }
  const text = UNREADABLE_TEXT.find(({ magic }) => startsWith(head, magic));
  if (text) {
    const convert = `iconv -f ${text.encoding} -t UTF-8 ${path}`;
    throw new Error(
      `${who}: ${path} is ${text.encoding} text (its first bytes are a byte order mark), which sluice does not read (it reads UTF-8): convert it first (${convert} > out), or read it through a named pipe (mkfifo p; ${convert} > p &, then read p)`,
    );
  }
  return undefined;
}

/** Bytes decompressed files are read from disk at a time. */
const COMPRESSED_CHUNK_BYTES = 256 * 1024;

/**
 * The frame of every file source: expands the input, reads up to `concurrency` files at once
 * with `readFile`, consults the run's checkpoint (skipping finished files, resuming partly read
 * ones), and reports errors naming the file. Completes after the last file.
 *
 * Compressed files (gzip, zstd) and pipes reach `readFile` as their bytes, read front to back
 * (see the module comment). Under a checkpoint a compressed file resumes by decompressing from
 * its start and skipping, unparsed, the bytes before its resume point; one an earlier run
 * finished is skipped. A pipe is read whole on every run, as standard input is.
 */
export function fileSource(
  who: string,
  input: string | readonly string[],
  options: FileSourceOptions,
  readFile: (reading: FileReading) => Promise<void>,
  /** Where a distributed run may cut an input into splits (default: whole inputs only). */
  rule: SplitRule = { kind: "whole" },
): Observable<unknown> {
  const concurrency = Math.max(1, Math.floor(options.concurrency ?? 1));
  return new Observable<unknown>((subscriber) => {
    const flow = currentFlow(subscriber);
    // The folder below this source takes its parse errors, whichever `deadLetter` subscribed last.
    const deadLetterTarget = deadLetterBelow(subscriber);
    let unsubscribed = false;
    const handles = new Set<FileHandle>();
    const streams = new Set<ByteReader>();
    const readers = new Set<{ close(): void }>();
    const stopped = () => unsubscribed || subscriber.closed || flow.stopping;
    const count = (n: number) => {
      flow.stats.bytesRead += n;
    };

    /** What every reader gets, around the way this file's bytes are read. */
    function reading(
      path: string,
      size: number,
      start: StartPoint,
      readAt: FileReading["readAt"],
      mark: FileReading["mark"],
      mayGrow = false,
      part?: Part,
    ): FileReading {
      let position = start.byteOffset;
      const end = part?.end ?? Number.POSITIVE_INFINITY;
      const input = part?.input ?? new Input(flow, path);
      input.deadLetterTarget ??= deadLetterTarget;
      return {
        flow,
        path,
        input,
        size,
        start,
        read: async (buffer, offset, length) => {
          // A split ends where the next begins: on a record boundary, found when the job was listed.
          if (position >= end) return 0;
          const n = await readAt(buffer, offset, Math.min(length, end - position), position);
          position += n;
          return n;
        },
        readAt,
        emit: (value) => subscriber.next(value),
        stopped,
        async pause() {
          if (stopped()) return false;
          if (flow.gate) await waitForGate(flow);
          return !stopped();
        },
        mark,
        mayGrow,
      };
    }

    async function readOne(target: string | S3Object, part?: Part): Promise<void> {
      if (stopped()) return;
      if (typeof target !== "string") return readObject(target, part);
      const path = target;
      let info: Stats;
      try {
        info = await stat(path);
      } catch (error) {
        throw new Error(`${who}: cannot open ${path}: ${(error as Error).message}`, { cause: error });
      }
      // Opening a pipe blocks until a writer opens it: only a regular file is opened here.
      if (!info.isFile()) return readPipe(path);
      if (part && fileVersion(info) !== part.version) {
        throw new Error(`${who}: ${path} changed since the distributed job was listed (${part.version}, now ${fileVersion(info)}, as modification time:size); run the job again under a new name to read it as it is now`);
      }
      let handle: FileHandle;
      try {
        handle = await open(path, "r");
      } catch (error) {
        throw new Error(`${who}: cannot open ${path}: ${(error as Error).message}`, { cause: error });
      }
      handles.add(handle);
      try {
        const size = (await handle.stat()).size;
        const head = new Uint8Array(HEAD_BYTES);
        const { bytesRead } = await handle.read(head, 0, head.length, 0);
        const compression = compressionOf(head.subarray(0, bytesRead), who, path);
        if (compression) await readCompressed(path, (buffer, position) => handle.read(buffer, 0, buffer.length, position).then((r) => r.bytesRead), size, compression, undefined, part);
        else await readPlain(path, handle, size, part);
      } finally {
        handles.delete(handle);
        await handle.close();
      }
    }

    async function readPlain(path: string, handle: FileHandle, size: number, part?: Part): Promise<void> {
      // A split starts where the job's listing put it; the checkpoint and the progress total are not its.
      const resume = part ? undefined : flow.checkpoint?.startOf(path, size);
      // What a resume skips is not read: the progress total shrinks by it.
      flow.stats.bytesTotal -= resume === "done" ? size : (resume?.byteOffset ?? 0);
      if (resume === "done") return;
      const readAt = async (buffer: Uint8Array, offset: number, length: number, at: number) => {
        try {
          const { bytesRead } = await handle.read(buffer, offset, length, at);
          count(bytesRead);
          return bytesRead;
        } catch (error) {
          throw new Error(`${who}: cannot read ${path}: ${(error as Error).message}`, { cause: error });
        }
      };
      if (part) return readFile(reading(path, size, part.start, readAt, () => {}, false, part));
      const mark = (line: number, byteOffset: number) => flow.checkpoint?.mark(path, line, byteOffset);
      await readFile(reading(path, size, resume ?? { line: 0, byteOffset: 0 }, readAt, mark, flow.checkpoint !== undefined));
      if (!stopped()) flow.checkpoint?.ended(path, size);
    }

    /**
     * An object in a bucket: plain, by ranged reads at any position (a resume starts at its byte
     * offset); compressed, as a stream of ranges from its start. Once read, its ETag is asked
     * again: an object replaced while it was read fails the run rather than mixing two versions.
     */
    async function readObject(object: S3Object, part?: Part): Promise<void> {
      const reader = objectReader(object, options.s3);
      readers.add(reader);
      const readRange = async (buffer: Uint8Array, position: number) => {
        try {
          return await reader.readAt(buffer, 0, buffer.length, position);
        } catch (error) {
          throw named(who, error);
        }
      };
      try {
        const head = new Uint8Array(HEAD_BYTES);
        const compression = compressionOf(head.subarray(0, await readRange(head, 0)), who, object.url);
        if (compression) await readCompressed(object.url, readRange, object.size, compression, object.etag, part);
        else await readPlainObject(object, readRange, part);
        if (stopped()) return;
        const now = await statObject(object.url, options.s3).catch((error) => Promise.reject(named(who, error)));
        if (now.etag !== object.etag || now.size !== object.size) {
          throw new ObjectStorageError(
            `${who}: ${object.url} was replaced while it was read (ETag ${object.etag}, ${object.size} bytes, then ${now.etag}, ${now.size} bytes); run again to read the new object`,
            object.bucket,
            object.key,
            "Changed",
          );
        }
      } finally {
        readers.delete(reader);
        reader.close();
      }
    }

    async function readPlainObject(object: S3Object, readRange: (buffer: Uint8Array, position: number) => Promise<number>, part?: Part): Promise<void> {
      const path = object.url;
      const resume = part ? undefined : flow.checkpoint?.startOf(path, object.size, object.etag);
      flow.stats.bytesTotal -= resume === "done" ? object.size : (resume?.byteOffset ?? 0);
      if (resume === "done") return;
      const readAt = async (buffer: Uint8Array, offset: number, length: number, at: number) => {
        const n = await readRange(buffer.subarray(offset, offset + length), at);
        count(n);
        return n;
      };
      if (part) return readFile(reading(path, object.size, part.start, readAt, () => {}, false, part));
      const mark = (line: number, byteOffset: number) => flow.checkpoint?.mark(path, line, byteOffset);
      // An object is replaced whole, never appended to: its last line is complete as it is.
      await readFile(reading(path, object.size, resume ?? { line: 0, byteOffset: 0 }, readAt, mark, false));
      if (!stopped()) flow.checkpoint?.ended(path, object.size);
    }

    async function readCompressed(
      path: string,
      readRange: (buffer: Uint8Array, position: number) => Promise<number>,
      size: number,
      compression: Compression,
      /** An object's ETag: the checkpoint refuses to resume one that was replaced. */
      version?: string,
      /** A distributed run's split: always the whole file, from its start. */
      part?: Part,
    ): Promise<void> {
      const checkpoint = part ? undefined : flow.checkpoint;
      let resume: StartPoint | "done" | undefined;
      if (checkpoint) {
        // The checkpoint checks an input's size against how far earlier runs read it, but here
        // offsets count decompressed bytes, whose total is known only at the end. So it is asked
        // with no limit first, then with the size it recorded: "done" only for a finished file.
        resume = checkpoint.startOf(path, Number.MAX_SAFE_INTEGER, version);
        if (resume !== undefined && resume !== "done") resume = checkpoint.startOf(path, resume.byteOffset, version);
      }
      // A resume reads the compressed bytes again from the start: only a finished file shrinks the total.
      if (resume === "done") {
        flow.stats.bytesTotal -= size;
        return;
      }
      const start = resume ?? { line: 0, byteOffset: 0 };
      const decompressed = () => {
        const bytes = new ByteReader(decompress(fileBytes(readRange, count), compression));
        streams.add(bytes);
        return bytes;
      };
      let cursor = decompressed();
      const readAt = async (buffer: Uint8Array, offset: number, length: number, at: number) => {
        try {
          // Behind the cursor (a header before the resume point): decompress again from the start.
          if (at < cursor.position) {
            streams.delete(cursor);
            cursor.cancel();
            cursor = decompressed();
          }
          const ahead = at - cursor.position;
          const reached = ahead <= 0 || (await cursor.skip(ahead)) === ahead;
          // Past the end is the end, except before the resume point: the file lost what was read.
          if (reached || at > start.byteOffset) return await cursor.read(buffer, offset, length);
        } catch (error) {
          throw new Error(
            `${who}: cannot decompress ${path} (${compression}): ${(error as Error).message} after byte ${cursor.position} of the decompressed text; the file is damaged or incomplete`,
            { cause: error },
          );
        }
        throw new Error(
          `${who}: ${path} decompresses to ${cursor.position} bytes but an earlier run already read ${start.byteOffset} bytes of it; it was replaced or truncated. Remove the checkpoint file to read everything again.`,
        );
      };
      const mark = (line: number, byteOffset: number) => checkpoint?.mark(path, line, byteOffset);
      try {
        await readFile(reading(path, size, start, readAt, mark, false, part));
        if (stopped() || !checkpoint) return;
        // The checkpoint records the input as finished at its decompressed size; a reader may stop
        // before the end (a JSON document's last bracket), so the rest is counted, not parsed.
        const end = new Uint8Array(64 * 1024);
        while ((await readAt(end, 0, end.length, cursor.position)) > 0);
        checkpoint.ended(path, cursor.position);
      } finally {
        streams.delete(cursor);
        cursor.cancel();
      }
    }

    async function readPipe(path: string): Promise<void> {
      let raw: ByteReader | undefined;
      let bytes: ByteReader | undefined;
      // A stop ends the wait for a writer, or for data, at once; what was read so far is kept.
      const interrupt = () => {
        raw?.cancel();
        bytes?.cancel();
      };
      flow.onStop.add(interrupt);
      try {
        // Bun opens a pipe without blocking and waits for its writer on the event loop.
        raw = new ByteReader(Bun.file(path).stream(), count);
        streams.add(raw);
        if (stopped()) return;
        let head: Uint8Array;
        try {
          // As few bytes as tell the format: a writer that sends one short record and waits must
          // not have it held back until more arrive.
          head = await raw.peek(1);
          while (undecided(head)) {
            const more = await raw.peek(head.length + 1);
            if (more.length === head.length) break;
            head = more;
          }
        } catch (error) {
          throw new Error(`${who}: cannot read ${path}: ${(error as Error).message}`, { cause: error });
        }
        const compression = compressionOf(head, who, path);
        bytes = compression ? new ByteReader(decompress(raw.rest(), compression)) : raw;
        streams.add(bytes);
        const from = bytes;
        const readAt = async (buffer: Uint8Array, offset: number, length: number, at: number) => {
          if (at < from.position) throw new Error(`${who}: cannot read ${path} again from byte ${at}: it is a pipe, which can be read only once`);
          try {
            if (at > from.position) await from.skip(at - from.position);
            return await from.read(buffer, offset, length);
          } catch (error) {
            const what = compression ? `cannot decompress ${path} (${compression})` : `cannot read ${path}`;
            const where = compression ? ` after byte ${from.position} of the decompressed text` : ` after byte ${from.position}`;
            throw new Error(`${who}: ${what}: ${(error as Error).message}${where}`, { cause: error });
          }
        };
        // Not resumable: a pipe's bytes are gone once read, and the next run reads new ones.
        await readFile(reading(path, 0, { line: 0, byteOffset: 0 }, readAt, () => {}));
      } finally {
        flow.onStop.delete(interrupt);
        for (const stream of [raw, bytes]) {
          if (!stream) continue;
          streams.delete(stream);
          stream.cancel();
        }
      }
    }

    /** Reads one split a distributed run took from its work queue. */
    function readSplit(split: Split, splitInput: Input): Promise<void> {
      // A whole split (a compressed file) is read to its end: its offsets count decompressed bytes.
      const end = split.whole ? Number.POSITIVE_INFINITY : split.end;
      const part: Part = { input: splitInput, start: { line: split.line, byteOffset: split.start }, end, version: split.version };
      if (!isS3Url(split.input)) return readOne(split.input, part);
      const { bucket, key } = parseS3Url(split.input);
      return readOne({ url: split.input, bucket, key, size: split.size, etag: split.version }, part);
    }

    /** A distributed run: splits from the job's work queue instead of every input. */
    async function distributed(): Promise<void> {
      const distribution = flow.distribution as NonNullable<Flow["distribution"]>;
      // Local inputs by their absolute path: a worker started in another folder names them the same
      // and can open them (on positions they are named so too).
      const patterns = (typeof input === "string" ? [input] : [...input]).map((p) => (isS3Url(p) ? p : resolve(p)));
      // The same in every worker: the source and what it was given to read, and which subscription
      // of such a source this is (a source used by two branches reads its inputs twice, as one
      // process does: each subscription needs its own queue). Counted before any await, so in
      // the order the pipeline subscribes, which is the same in every worker.
      const base = `${who}.${shortHash(JSON.stringify([who, patterns]))}`;
      const seen = subscriptions.get(flow) ?? new Map<string, number>();
      subscriptions.set(flow, seen);
      const nth = (seen.get(base) ?? 0) + 1;
      seen.set(base, nth);
      const key = nth === 1 ? base : `${base}.${nth}`;
      let lost: Error | undefined;
      const queue = await distribution.open(key);
      queue.onLost = (error) => {
        lost ??= error;
        subscriber.error(error);
      };
      // No file commits once this worker may have lost a split to another (see checkLeases).
      const leased = () => queue.assertHeld();
      flow.leases.add(leased);
      const splits: ReadSplits = { read: new Map(), unfinished: new Set() };
      flow.onEnd.add((completed) => {
        flow.leases.delete(leased);
        // Completed: every record of the splits read has reached its end (committed, dead-lettered,
        // or dropped by an operator), so those not yet acknowledged are now. Nothing more commits
        // here: the splits read only in part (a stop), and after a failure the rest too, go back to
        // the queue for another worker at once (what was committed of them is in the ledgers).
        if (completed) for (const ack of [...splits.read.values()]) ack();
        // The pipeline let go of this source before it was done (take, first): no further round.
        if (completed && unsubscribed && splits.unfinished.size > 0) distribution.endedEarly = true;
        const giveBack = [...splits.unfinished, ...(completed ? [] : splits.read.keys())];
        splits.unfinished.clear();
        splits.read.clear();
        for (const taken of giveBack) {
          const released = queue.release(taken);
          flow.settling.add(released);
          released.finally(() => flow.settling.delete(released));
        }
      });
      await readSplits(
        queue,
        {
          flow,
          who,
          concurrency,
          stopped: () => stopped() || lost !== undefined,
          list: async function* () {
            yield* cutSplits(who, await resolveTargets(patterns, who, options.s3), rule, distribution.splitBytes, options.s3);
          },
          // The progress has no total: how much of the job this worker reads is not known.
          read: readSplit,
        },
        splits,
      );
    }

    (flow.distribution ? distributed() : readAll()).then(
      () => subscriber.complete(),
      (error) => subscriber.error(error),
    );

    async function readAll(): Promise<void> {
      const paths = await resolveTargets(input, who, options.s3);
      // Progress bars and ETAs need the total before the first byte is read.
      for (const path of paths) flow.stats.bytesTotal += typeof path === "string" ? (await stat(path).catch(() => ({ size: 0 }))).size : path.size;
      let next = 0;
      // Each lane takes the next file when it finishes one, so `concurrency` files are open at most.
      const lane = async () => {
        while (next < paths.length && !stopped()) await readOne(paths[next++] as string | S3Object);
      };
      await Promise.all(Array.from({ length: Math.min(concurrency, paths.length) }, lane));
    }

    return () => {
      unsubscribed = true;
      for (const reader of readers) reader.close();
      for (const stream of streams) stream.cancel();
      for (const handle of handles) handle.close().catch(() => {});
    };
  });
}

/**
 * A regular file's (or an object's) bytes from its start as a stream, `COMPRESSED_CHUNK_BYTES` at
 * a time, counted by `count`. `readRange` fills a buffer from a position and resolves the bytes read.
 */
function fileBytes(readRange: (buffer: Uint8Array, position: number) => Promise<number>, count: (n: number) => void): ReadableStream<Uint8Array> {
  let position = 0;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        const buffer = new Uint8Array(COMPRESSED_CHUNK_BYTES);
        const bytesRead = await readRange(buffer, position);
        if (bytesRead === 0) {
          controller.close();
          return;
        }
        position += bytesRead;
        count(bytesRead);
        controller.enqueue(buffer.subarray(0, bytesRead));
      },
    },
    // Read only when the decompressor asks: one chunk ahead at most.
    { highWaterMark: 0 },
  );
}

/** `bytes` decompressed, as Bun's DecompressionStream does it: bounded chunks, concatenated members or frames, a cut-short input an error. */
function decompress(bytes: ReadableStream<Uint8Array>, compression: Compression): ReadableStream<Uint8Array> {
  // Bun's types do not list "zstd" among the formats, nor give the pair Uint8Array on both sides.
  const decompressor = new DecompressionStream(compression as ConstructorParameters<typeof DecompressionStream>[0]) as unknown as ReadableWritablePair<Uint8Array, Uint8Array>;
  return bytes.pipeThrough(decompressor);
}

const EMPTY = new Uint8Array(0);

/**
 * A stream of bytes (a pipe, a decompressor's output) behind the reads a file gives: the part of
 * a chunk that did not fit waits for the next read, and `position` counts the bytes handed out.
 * It holds at most one chunk (a peek, at most the few bytes asked for on top).
 */
class ByteReader {
  readonly #reader: { read(): Promise<{ done: boolean; value?: Uint8Array | undefined }>; cancel(): Promise<void> };
  readonly #count: ((n: number) => void) | undefined;
  #pending: Uint8Array = EMPTY;
  #ended = false;
  /** Bytes read or skipped so far. */
  position = 0;

  constructor(stream: ReadableStream<Uint8Array>, count?: (n: number) => void) {
    this.#reader = stream.getReader();
    this.#count = count;
  }

  /** The first `n` bytes not yet read (fewer at the end), without reading them. */
  async peek(n: number): Promise<Uint8Array> {
    while (this.#pending.length < n) {
      const chunk = await this.#next();
      if (!chunk) break;
      this.#pending = this.#pending.length === 0 ? chunk : Buffer.concat([this.#pending, chunk]);
    }
    return this.#pending.subarray(0, n);
  }

  /** Reads up to `length` bytes into `buffer` at `offset`; resolves 0 at the end (or once cancelled). */
  async read(buffer: Uint8Array, offset: number, length: number): Promise<number> {
    if (!(await this.#fill())) return 0;
    const n = Math.min(length, this.#pending.length);
    buffer.set(this.#pending.subarray(0, n), offset);
    this.#pending = this.#pending.subarray(n);
    this.position += n;
    return n;
  }

  /** Passes over up to `n` bytes without copying them; resolves how many there were. */
  async skip(n: number): Promise<number> {
    let skipped = 0;
    while (skipped < n && (await this.#fill())) {
      const step = Math.min(n - skipped, this.#pending.length);
      this.#pending = this.#pending.subarray(step);
      skipped += step;
    }
    this.position += skipped;
    return skipped;
  }

  /** The bytes not yet read, as a stream to pipe through a decompressor. This reader is done with. */
  rest(): ReadableStream<Uint8Array> {
    return new ReadableStream<Uint8Array>(
      {
        pull: async (controller) => {
          const chunk = (await this.#fill()) ? this.#pending : undefined;
          this.#pending = EMPTY;
          if (chunk) controller.enqueue(chunk);
          else controller.close();
        },
        cancel: () => this.cancel(),
      },
      { highWaterMark: 0 },
    );
  }

  /** Ends the stream: a read waiting for data resolves 0, and so does every later one. */
  cancel(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#pending = EMPTY;
    this.#reader.cancel().catch(() => {});
  }

  /** Makes sure a chunk waits; false at the end. Empty chunks are passed over, not taken for the end. */
  async #fill(): Promise<boolean> {
    while (this.#pending.length === 0) {
      const chunk = await this.#next();
      if (!chunk) return false;
      this.#pending = chunk;
    }
    return true;
  }

  async #next(): Promise<Uint8Array | undefined> {
    if (this.#ended) return undefined;
    const { done, value } = await this.#reader.read();
    if (done || !value || this.#ended) {
      this.#ended = true;
      return undefined;
    }
    this.#count?.(value.length);
    return value;
  }
}
