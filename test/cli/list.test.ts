import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { discoverPipelines, isPipelineFileName, loadPipeline } from "../../src/run/discover.ts";
import { tempDir } from "../helpers/duckdb.ts";

const root = join(import.meta.dir, "../..");
const main = join(root, "src/cli/main.ts");
const pipelineImport = JSON.stringify(join(root, "src/cli/pipeline.ts"));

const good = (description: string) => `import { definePipeline } from ${pipelineImport};
export default definePipeline({ description: ${JSON.stringify(description)}, source: () => { throw new Error("not run"); }, process: (r) => r });
`;

async function sluiceList(args: string[]) {
  const child = Bun.spawn(["bun", main, "list", ...args], { cwd: root, stdout: "pipe", stderr: "pipe" });
  const [code, stdout, stderr] = await Promise.all([child.exited, new Response(child.stdout).text(), new Response(child.stderr).text()]);
  return { code, stdout, stderr };
}

describe("sluice list", () => {
  let dir: { path: string; remove: () => Promise<void> };
  let folder: string;

  beforeAll(async () => {
    dir = await tempDir("sluice-cli-list-");
    folder = join(dir.path, "pipelines");
    await mkdir(join(folder, "shared"), { recursive: true });
    await Bun.write(join(folder, "orders.ts"), good("orders from the shop's export → Parquet"));
    await Bun.write(join(folder, "events.ts"), good("événements: unicode descriptions are kept"));
    await Bun.write(join(folder, "syntax.ts"), "export default definePipeline({ description: \n");
    await Bun.write(join(folder, "throws.ts"), 'throw new Error("DATABASE_URL is not set");\n');
    await Bun.write(join(folder, "noDefault.ts"), "export const x = 1;\n");
    await Bun.write(join(folder, "wrongShape.ts"), 'export default { description: "no functions" };\n');
    // Skipped: helpers, tests, declarations, other files and subfolders.
    await Bun.write(join(folder, "_helpers.ts"), 'throw new Error("must not be imported");\n');
    await Bun.write(join(folder, "orders.test.ts"), 'throw new Error("must not be imported");\n');
    await Bun.write(join(folder, "types.d.ts"), "export type X = 1;\n");
    await Bun.write(join(folder, "README.md"), "# pipelines\n");
    await Bun.write(join(folder, "shared", "nested.ts"), good("nested modules are not listed"));
  });
  afterAll(() => dir.remove());

  test("lists the pipelines with their descriptions and the broken modules with their reasons, exiting 1", async () => {
    const { code, stdout } = await sluiceList([folder]);
    expect(code).toBe(1);
    expect(stdout).toContain("2 pipelines in");
    expect(stdout).toMatch(/^ {2}events\s+événements: unicode descriptions are kept$/m);
    expect(stdout).toMatch(/^ {2}orders\s+orders from the shop's export → Parquet$/m);
    expect(stdout).toContain("4 modules could not be used");
    expect(stdout).toMatch(/^ {2}syntax\s+cannot import/m);
    expect(stdout).toMatch(/^ {2}throws\s+cannot import .*DATABASE_URL is not set/m);
    expect(stdout).toMatch(/^ {2}noDefault\s+.*is not a pipeline: it has no default export/m);
    expect(stdout).toMatch(/^ {2}wrongShape\s+.*is not a pipeline: its default export is an object without source, process/m);
    expect(stdout).not.toContain("must not be imported");
    expect(stdout).not.toContain("nested");
    expect(stdout).not.toContain("README");
  });

  test("--json gives one object per module, in name order", async () => {
    const { code, stdout } = await sluiceList([folder, "--json"]);
    expect(code).toBe(1);
    const rows = JSON.parse(stdout) as { name: string; ok: boolean; description?: string; reason?: string }[];
    expect(rows.map((r) => r.name)).toEqual(["events", "noDefault", "orders", "syntax", "throws", "wrongShape"]);
    expect(rows.filter((r) => r.ok).map((r) => r.description)).toEqual([
      "événements: unicode descriptions are kept",
      "orders from the shop's export → Parquet",
    ]);
    expect(Object.fromEntries(rows.filter((r) => !r.ok).map((r) => [r.name, r.reason]))).toEqual({
      noDefault: "shape",
      syntax: "import",
      throws: "import",
      wrongShape: "shape",
    });
  });

  test("exits 0 for a folder of good pipelines and for an empty folder, 2 for a missing folder", async () => {
    const clean = join(dir.path, "clean");
    await Bun.write(join(clean, "only.ts"), good("the only one"));
    const ok = await sluiceList([clean]);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain("1 pipeline in");
    expect(ok.stdout).toContain("sluice run");

    const empty = join(dir.path, "empty");
    await mkdir(empty);
    const none = await sluiceList([empty]);
    expect(none.code).toBe(0);
    expect(none.stdout).toContain("no pipeline modules");

    const missing = await sluiceList([join(dir.path, "nowhere")]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("does not exist");
  });

  test("defaults to the pipelines/ folder of the current directory", async () => {
    const child = Bun.spawn(["bun", main, "list"], { cwd: dir.path, stdout: "pipe", stderr: "pipe" });
    const [code, stdout] = await Promise.all([child.exited, new Response(child.stdout).text()]);
    expect(code).toBe(1);
    expect(stdout).toContain("2 pipelines in pipelines");
  });
});

describe("discoverPipelines and loadPipeline", () => {
  test("the pipelines of examples/platform are found and loaded", async () => {
    const found = await discoverPipelines(join(root, "examples/platform"));
    expect(found.map((p) => [p.name, p.ok])).toEqual([
      ["clickstream", true],
      ["daily", true],
    ]);
  });

  test("loadPipeline reports a module whose import never finishes instead of waiting for it", async () => {
    const dir = await tempDir("sluice-cli-load-");
    try {
      const hanging = join(dir.path, "hangs.ts");
      await Bun.write(hanging, "await new Promise(() => {});\nexport default {};\n");
      await expect(loadPipeline(hanging, { timeoutMs: 200 })).rejects.toMatchObject({ reason: "timeout" });
    } finally {
      await dir.remove();
    }
  });

  test("file names: modules count, helpers and tests do not", () => {
    expect(["a.ts", "a.mts", "a.js", "a.mjs"].every(isPipelineFileName)).toBe(true);
    expect(["_a.ts", ".a.ts", "a.test.ts", "a.spec.js", "a.d.ts", "a.json", "a.md"].some(isPipelineFileName)).toBe(false);
  });
});
