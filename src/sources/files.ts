/**
 * Turns what a user names as input (a path, a glob, a list of them) into a sorted list of files.
 */
import { stat } from "node:fs/promises";
import { isAbsolute, join } from "node:path";

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
