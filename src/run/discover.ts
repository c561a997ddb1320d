/**
 * Finding and loading pipeline modules: a file whose default export is a `Pipeline` is a
 * pipeline, so adding a file to the folder is all it takes to add one.
 */
import { readdir, stat } from "node:fs/promises";
import { basename, extname, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { isPipeline, parseSchedule, type Pipeline, type Schedule } from "./pipeline.ts";

/** A module file that could not be used as a pipeline, and why. */
export class PipelineLoadError extends Error {
  /** The module's path as given. */
  readonly path: string;
  /**
   * `missing`: no such file; `import`: importing it threw; `shape`: its default export is not a
   * pipeline; `timeout`: importing it did not finish; `schedule`: its `schedule` is not a cron
   * expression sluice can run (see `parseSchedule`).
   */
  readonly reason: "missing" | "import" | "shape" | "timeout" | "schedule";
  constructor(path: string, reason: PipelineLoadError["reason"], message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "PipelineLoadError";
    this.path = path;
    this.reason = reason;
  }
}

/** Options of {@link loadPipeline} and {@link discoverPipelines}. */
export interface LoadOptions {
  /** How long importing one module may take (default 10 s): a module that never finishes its top-level await is reported, not waited for. */
  readonly timeoutMs?: number;
}

/**
 * Imports a pipeline module and returns its default export. Relative paths are resolved from
 * the current folder.
 *
 * Rejects with a {@link PipelineLoadError} saying what to do when the file does not exist, when
 * importing it throws (a syntax error, a missing dependency, a throw at top level), when it takes
 * longer than `timeoutMs`, when its default export is not a `Pipeline`, or when its `schedule` is
 * not a valid cron expression (reason `schedule`; the message names the module).
 *
 * @example
 * const pipeline = await loadPipeline("pipelines/clickstream.ts");
 * console.log(pipeline.description);
 */
export async function loadPipeline(path: string, options: LoadOptions = {}): Promise<Pipeline> {
  const absolute = resolve(path);
  try {
    if (!(await stat(absolute)).isFile()) throw new PipelineLoadError(path, "missing", `${path} is not a file; give a pipeline module such as pipelines/job.ts`);
  } catch (error) {
    if (error instanceof PipelineLoadError) throw error;
    throw new PipelineLoadError(path, "missing", `pipeline module ${path} does not exist`, { cause: error });
  }
  let module: { [name: string]: unknown; default?: unknown };
  const timeoutMs = options.timeoutMs ?? 10_000;
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    module = await Promise.race([
      import(pathToFileURL(absolute).href) as Promise<Record<string, unknown>>,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new PipelineLoadError(path, "timeout", `importing ${path} did not finish within ${timeoutMs} ms (a top-level await that never settles?)`)), timeoutMs);
      }),
    ]);
  } catch (error) {
    if (error instanceof PipelineLoadError) throw error;
    throw new PipelineLoadError(path, "import", `cannot import ${path}: ${(error as Error)?.message ?? String(error)}`, { cause: error });
  } finally {
    clearTimeout(timer);
  }
  const exported = module.default;
  if (!isPipeline(exported)) {
    const what = exported === undefined ? "it has no default export" : `its default export is ${describe(exported)}`;
    throw new PipelineLoadError(
      path,
      "shape",
      `${path} is not a pipeline: ${what}; write \`export default definePipeline({ description, source, process })\``,
    );
  }
  if (exported.schedule !== undefined) {
    try {
      parseSchedule(exported.schedule, path);
    } catch (error) {
      throw new PipelineLoadError(path, "schedule", (error as Error).message, { cause: error });
    }
  }
  return exported;
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (typeof value === "function") return "a function";
  if (typeof value !== "object") return `a ${typeof value}`;
  const keys = Object.keys(value as object);
  const missing = ["description", "source", "process"].filter((k) => !keys.includes(k));
  return missing.length > 0 ? `an object without ${missing.join(", ")}` : "an object whose description/source/process have the wrong types";
}

/** One module found in a pipelines folder: loaded, or with the reason it could not be. */
export type DiscoveredPipeline =
  | {
      readonly name: string;
      readonly path: string;
      readonly ok: true;
      readonly pipeline: Pipeline;
      readonly description: string;
      /** The pipeline's schedule, checked; undefined when it has none. */
      readonly schedule: Schedule | undefined;
    }
  | { readonly name: string; readonly path: string; readonly ok: false; readonly error: string; readonly reason: PipelineLoadError["reason"] };

const MODULE_EXTENSIONS = new Set([".ts", ".mts", ".js", ".mjs"]);

/** Whether a file name in a pipelines folder is taken as a pipeline module. */
export function isPipelineFileName(name: string): boolean {
  if (name.startsWith(".") || name.startsWith("_")) return false;
  if (/\.(test|spec)\.[mc]?[jt]s$/.test(name) || name.endsWith(".d.ts")) return false;
  return MODULE_EXTENSIONS.has(extname(name));
}

/**
 * Finds the pipeline modules directly inside `folder` (not in subfolders, which are the place
 * for shared code), imports each, and returns them sorted by name, the name being the file name
 * without its extension. Files named `_*`, `.*`, `*.test.ts`, `*.spec.ts` and `*.d.ts` are skipped.
 *
 * A module that cannot be imported or is not a pipeline is returned with `ok: false` and the
 * reason; it never stops the others from being listed. Rejects only when `folder` itself cannot
 * be read. Importing runs each module's top-level code, so pipeline modules should do their work
 * in `source`/`process`, not at import.
 *
 * @example
 * for (const found of await discoverPipelines("pipelines")) {
 *   console.log(found.name, found.ok ? found.description : `broken: ${found.error}`);
 * }
 */
export async function discoverPipelines(folder: string, options: LoadOptions = {}): Promise<DiscoveredPipeline[]> {
  let entries: import("node:fs").Dirent[];
  try {
    entries = await readdir(folder, { withFileTypes: true });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? "does not exist" : code === "ENOTDIR" ? "is not a folder" : (error as Error).message;
    throw new Error(`discoverPipelines: pipelines folder ${folder} ${why}`, { cause: error });
  }
  const files = entries
    .filter((entry) => (entry.isFile() || entry.isSymbolicLink()) && isPipelineFileName(entry.name))
    .map((entry) => entry.name)
    .sort();
  const found: DiscoveredPipeline[] = [];
  // One at a time: modules may share state at import, and the order of any side effects is then stable.
  for (const file of files) {
    const path = join(folder, file);
    const name = basename(file, extname(file));
    try {
      const pipeline = await loadPipeline(path, options);
      const schedule = pipeline.schedule === undefined ? undefined : parseSchedule(pipeline.schedule, path);
      found.push({ name, path, ok: true, pipeline, description: pipeline.description, schedule });
    } catch (error) {
      const reason = error instanceof PipelineLoadError ? error.reason : "import";
      found.push({ name, path, ok: false, error: (error as Error).message, reason });
    }
  }
  return found;
}
