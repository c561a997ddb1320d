/**
 * File inputs: what a user names as input (a path, a glob, a list of them) turned into a sorted
 * list of files, and the frame every file source is built on.
 */
import { type FileHandle, open, stat } from "node:fs/promises";
import { isAbsolute, join } from "node:path";
import { Observable } from "rxjs";
import type { StartPoint } from "../checkpoint/checkpoint.ts";
import { currentFlow, type Flow, waitForGate } from "../flow/flow.ts";
import { Input } from "../flow/position.ts";
import type { ReadBytes } from "./lines.ts";

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
    if (matched.length === 0) throw new Error(`${who}: no file matches ${pattern}`);
    files.push(...matched.sort());
  }
  return files;
}

/** Options every file source shares. */
export interface FileSourceOptions {
  /** Files read at the same time (default 1). They share the sink's one memory budget. */
  readonly concurrency?: number;
}

export type { StartPoint };

/** What a file source's per-file reader gets. */
export interface FileReading {
  readonly flow: Flow;
  /** The file's path, as the source names it on dead letters and commits. */
  readonly path: string;
  /** The file as an input of the run: `input.at(line, raw)` gives each record's position. */
  readonly input: Input;
  /** The file's size when it was opened. */
  readonly size: number;
  /** Where to begin: `{ line: 0, byteOffset: 0 }` unless a checkpoint resumes the file. */
  readonly start: StartPoint;
  /** Reads the file sequentially from `start.byteOffset`; counts bytes read. Resolves 0 at the end. */
  readonly read: ReadBytes;
  /** Reads at an absolute position (a header before the resume point, say) without moving `read`. */
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
}

/**
 * The frame of every file source: expands the input, reads up to `concurrency` files at once
 * with `readFile`, consults the run's checkpoint (skipping finished files, resuming partly read
 * ones), and reports errors naming the file. Completes after the last file.
 */
export function fileSource(
  who: string,
  input: string | readonly string[],
  options: FileSourceOptions,
  readFile: (reading: FileReading) => Promise<void>,
): Observable<unknown> {
  const concurrency = Math.max(1, Math.floor(options.concurrency ?? 1));
  return new Observable<unknown>((subscriber) => {
    const flow = currentFlow();
    let unsubscribed = false;
    const handles = new Set<FileHandle>();
    const stopped = () => unsubscribed || subscriber.closed || flow.stopping;

    async function readOne(path: string): Promise<void> {
      if (stopped()) return;
      let handle: FileHandle;
      try {
        handle = await open(path, "r");
      } catch (error) {
        throw new Error(`${who}: cannot open ${path}: ${(error as Error).message}`, { cause: error });
      }
      handles.add(handle);
      try {
        const size = (await handle.stat()).size;
        const resume = flow.checkpoint?.startOf(path, size);
        // What a resume skips is not read: the progress total shrinks by it.
        flow.stats.bytesTotal -= resume === "done" ? size : (resume?.byteOffset ?? 0);
        if (resume === "done") return;
        const start = resume ?? { line: 0, byteOffset: 0 };
        let position = start.byteOffset;
        const readAt = async (buffer: Uint8Array, offset: number, length: number, at: number) => {
          try {
            const { bytesRead } = await handle.read(buffer, offset, length, at);
            flow.stats.bytesRead += bytesRead;
            return bytesRead;
          } catch (error) {
            throw new Error(`${who}: cannot read ${path}: ${(error as Error).message}`, { cause: error });
          }
        };
        await readFile({
          flow,
          path,
          input: new Input(flow, path),
          size,
          start,
          read: async (buffer, offset, length) => {
            const n = await readAt(buffer, offset, length, position);
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
          mark: (line, byteOffset) => flow.checkpoint?.mark(path, line, byteOffset),
        });
        if (!stopped()) flow.checkpoint?.ended(path, size);
      } finally {
        handles.delete(handle);
        await handle.close();
      }
    }

    (async () => {
      const paths = await resolveInputs(input, who);
      // Progress bars and ETAs need the total before the first byte is read.
      for (const path of paths) flow.stats.bytesTotal += (await stat(path).catch(() => ({ size: 0 }))).size;
      let next = 0;
      // Each lane takes the next file when it finishes one, so `concurrency` files are open at most.
      const lane = async () => {
        while (next < paths.length && !stopped()) await readOne(paths[next++] as string);
      };
      await Promise.all(Array.from({ length: Math.min(concurrency, paths.length) }, lane));
    })().then(
      () => subscriber.complete(),
      (error) => subscriber.error(error),
    );

    return () => {
      unsubscribed = true;
      for (const handle of handles) handle.close().catch(() => {});
    };
  });
}
