/**
 * Input files for source tests: a temporary folder for the test file's lifetime, and byte
 * strings built from text and raw bytes (for invalid UTF-8, BOMs, binary garbage).
 */
import { afterAll, beforeAll } from "bun:test";
import { mkdir, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { tempDir } from "./duckdb.ts";

/**
 * A temporary folder created before the test file's tests and removed after them. `file` writes
 * `content` to a fresh file in it (named `input-<n><extension>` unless named) and returns its path;
 * `unique` names a fresh path in it.
 */
export function inputFolder(prefix: string, extension: string) {
  let dir: { path: string; remove: () => Promise<void> } | undefined;
  let counter = 0;
  beforeAll(async () => {
    dir = await tempDir(prefix);
  });
  afterAll(async () => {
    await dir?.remove();
  });
  return {
    get path(): string {
      if (!dir) throw new Error("inputFolder: used outside a test");
      return dir.path;
    },
    async file(content: string | Uint8Array, name = `input-${counter++}${extension}`): Promise<string> {
      const path = join(this.path, name);
      await mkdir(dirname(path), { recursive: true });
      await writeFile(path, content);
      return path;
    },
    /** A path in the folder no other call returned: `<name>-<n>` (not created). */
    unique(name: string): string {
      return join(this.path, `${name}-${counter++}`);
    },
  };
}

/** Bytes from text (UTF-8) and raw byte values, concatenated. */
export const bytes = (...parts: (string | number[] | Uint8Array)[]): Uint8Array =>
  Buffer.concat(parts.map((part) => (typeof part === "string" ? Buffer.from(part, "utf8") : Buffer.from(part))));
