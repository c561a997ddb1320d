import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { tempDir } from "../helpers/duckdb.ts";

const MAIN = join(import.meta.dir, "../../src/generate/main.ts");

/** Runs `bun src/generate/main.ts ...args` as `bun run gen` does. */
async function gen(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = Bun.spawn(["bun", MAIN, ...args], { stdout: "pipe", stderr: "pipe" });
  const [code, stdout, stderr] = await Promise.all([child.exited, new Response(child.stdout).text(), new Response(child.stderr).text()]);
  return { code, stdout, stderr };
}

describe("bun run gen", () => {
  test.each([[["--help"]], [["-h"]], [["out.ndjson", "--help"]]])("prints its usage and exits 0 for %p", async (args) => {
    const { code, stdout, stderr } = await gen(...args);
    expect(code).toBe(0);
    expect(stdout).toStartWith("usage: bun run gen <file.ndjson>");
    expect(stdout).toContain("--defect-rate R");
    expect(stderr).toBe("");
  });

  test.each([
    [[], "no output file given"],
    [["a.ndjson", "b.ndjson"], "one output file expected, got 2"],
    [["x.ndjson", "--colour"], "Unknown option '--colour'"],
    [["x.ndjson", "--count"], "argument missing"],
    [["x.ndjson", "--count", "ten"], "--count must be a whole number of events, not ten"],
    [["x.ndjson", "--count=-5"], "--count must be a whole number of events, not -5"],
    [["x.ndjson", "--count="], "--count must be a whole number of events"],
    [["x.ndjson", "--seed", "1.5"], "--seed must be an integer, not 1.5"],
    [["x.ndjson", "--defect-rate", "2"], "--defect-rate must be between 0 and 1, not 2"],
  ])("exits 2 with the problem and its usage, no stack trace, for %p", async (args, problem) => {
    const { code, stdout, stderr } = await gen(...args);
    expect(code).toBe(2);
    expect(stdout).toBe("");
    expect(stderr).toContain(problem);
    expect(stderr).toContain("usage: bun run gen <file.ndjson>");
    expect(stderr).not.toContain("    at ");
  });

  test("writes the events asked for, the same ones for the same seed", async () => {
    const dir = await tempDir("sluice-gen-");
    try {
      const first = join(dir.path, "nested", "a.ndjson");
      const second = join(dir.path, "b.ndjson");
      expect((await gen(first, "--count", "250", "--seed", "7", "--defect-rate", "0.1")).code).toBe(0);
      expect((await gen(second, "--count=250", "--seed=7", "--defect-rate=0.1")).code).toBe(0);
      const text = await Bun.file(first).text();
      expect(text.split("\n").filter(Boolean)).toHaveLength(250);
      expect(await Bun.file(second).text()).toBe(text);
    } finally {
      await dir.remove();
    }
  });
});
