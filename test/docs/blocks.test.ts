/**
 * Every code block in README.md and docs/ runs.
 *
 * - ```ts / ```typescript blocks are type-checked together by one `tsc --noEmit` run, each block
 *   its own module under test/docs/.blocks/ (gitignored), `sluice` and `sluice/operators`
 *   resolved through the repository's tsconfig paths. A block marked runnable (info string
 *   ```ts run, or a first line `// runs`) is also executed with bun in a fresh temporary working
 *   folder: it makes its own small inputs.
 * - ```sh blocks run line by line (`a && b` as two commands) with bash in a working folder that
 *   looks like a fresh clone after the quick start (the repository's code linked in, and the
 *   clickstream example already run: out/events, out/dead-letter, out/clickstream.ndjson), one
 *   such folder per document, blocks in document order; `sluice` on PATH is `bun src/cli/main.ts`.
 *   The example runs once (README.md's own quick start command is that run, in a fresh clone);
 *   each folder gets a copy of its out/ (its paths are relative), so a document that changes out/
 *   changes only its own.
 *   A command matching SKIP is not run; each entry says why.
 * - A ```text output block right after an ```sh block is the last command's expected output: each
 *   of its lines must appear in that output, in order (a line holding only `…` stands for lines
 *   left out). Stale output fails.
 *
 * A block that starts with `// src/<folder>/<file>.ts` or `// operators/<file>.ts` is a file of the
 * repository: its `../` imports are rewritten to where they point from there.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { cpSync, existsSync, mkdtempSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";

const ROOT = join(import.meta.dir, "..", "..");
// A folder of this process's own: two runs of this test at once (two checkouts' CI, a developer and
// a watcher) must not delete each other's modules.
const BLOCKS = join(import.meta.dir, ".blocks", String(process.pid));

/** Commands the test does not run, and why. Matched against one command (a line, or one side of `&&`). */
const SKIP: readonly { readonly pattern: RegExp; readonly reason: string }[] = [
  { pattern: /^bun install\b/, reason: "network: installs packages (the test runs on the repository's installed node_modules)" },
  { pattern: /^bun add\b/, reason: "network: adds a dependency to an app's package.json" },
  { pattern: /^bun link\b/, reason: "registers the clone in Bun's global link folder, outside the test's temporary folder" },
  { pattern: /^bun run check\b/, reason: "runs the whole suite, this test included (minutes, and recursive)" },
  { pattern: /^bun run bench\b/, reason: "the benchmark takes minutes and needs DuckDB and Polars runs" },
  { pattern: /^PORT=\d+ bun examples\/http-ingest\.ts/, reason: "starts a long-running HTTP server in the background (its own test covers it: test/examples/http-ingest.test.ts)" },
  { pattern: /^sleep\b/, reason: "waits for the HTTP server the test does not start" },
  { pattern: /^curl\b/, reason: "needs the HTTP server the test does not start" },
  { pattern: /^(kill|wait)\b/, reason: "signals or waits for the HTTP server the test does not start" },
];

interface Block {
  readonly doc: string;
  readonly line: number;
  readonly lang: string;
  readonly info: string;
  readonly code: string;
}

function docFiles(): string[] {
  const docs = [...new Bun.Glob("docs/**/*.md").scanSync({ cwd: ROOT })].sort();
  return ["README.md", ...docs];
}

function blocksOf(doc: string): Block[] {
  const lines = readFileSync(join(ROOT, doc), "utf8").split("\n");
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\w*)\s*(.*)$/.exec(lines[i] as string);
    if (!open) continue;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && !(lines[i] as string).startsWith("```"); i++) body.push(lines[i] as string);
    if (i >= lines.length) throw new Error(`${doc}:${start + 1}: code block never closed`);
    blocks.push({ doc, line: start + 1, lang: open[1] ?? "", info: open[2] ?? "", code: body.join("\n") });
  }
  return blocks;
}

const all = docFiles().flatMap(blocksOf);
const isTs = (b: Block) => b.lang === "ts" || b.lang === "typescript";
const tsBlocks = all.filter(isTs);
const runnable = (b: Block) => /\brun\b/.test(b.info) || b.code.startsWith("// runs");
const fileName = (b: Block) => `${b.doc.replace(/[^A-Za-z0-9]+/g, "_")}_L${b.line}.ts`;
const where = (b: Block) => `${b.doc}:${b.line}`;

/** The block as a module: `../` imports of a repository file point at src/; `export {}` makes it a module. */
function moduleText(b: Block): string {
  let code = b.code;
  if (/^\/\/ src\//.test(code)) code = code.replace(/(from |import\()"\.\.\//g, `$1"${join(ROOT, "src")}/`);
  if (/^\/\/ operators\//.test(code)) code = code.replace(/(from |import\()"\.\.\//g, `$1"${ROOT}/`);
  return `${code}\nexport {};\n`;
}

mkdirSync(BLOCKS, { recursive: true });
writeFileSync(join(BLOCKS, "tsconfig.json"), JSON.stringify({ extends: "../../../../tsconfig.json", include: ["*.ts"] }));
for (const b of tsBlocks) writeFileSync(join(BLOCKS, fileName(b)), moduleText(b));

// tsc takes tens of seconds of one core: it starts now and checks while the blocks run on the other.
const typeCheck = (() => {
  const proc = Bun.spawn(["bun", "x", "tsc", "--noEmit", "--pretty", "false", "-p", join(BLOCKS, "tsconfig.json")], {
    cwd: ROOT,
    stdout: "pipe",
    stderr: "pipe",
  });
  return Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]).then(([out, err]) => ({ out, err, exitCode: proc.exitCode }));
})();

const temps: string[] = [];
afterAll(async () => {
  await typeCheck;
  for (const dir of temps) rmSync(dir, { recursive: true, force: true });
  rmSync(BLOCKS, { recursive: true, force: true });
});

function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  temps.push(dir);
  return dir;
}

test("the documents have code blocks, and every one is ts, sh, or text/json/plain output", () => {
  expect(tsBlocks.length).toBeGreaterThan(20);
  for (const b of all) expect([where(b), ["ts", "typescript", "sh", "text", "json", ""].includes(b.lang)]).toEqual([where(b), true]);
});

/** GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens. */
function anchorsOf(file: string): Set<string> {
  const text = readFileSync(file, "utf8").replace(/```[\s\S]*?```/g, "");
  const slugs = [...text.matchAll(/^#+\s+(.*)$/gm)].map(([, h]) =>
    (h as string)
      .toLowerCase()
      .replace(/[^\p{L}\p{N} _-]/gu, "")
      .replace(/ /g, "-"),
  );
  return new Set(slugs);
}

test("every relative link in the documents names a file and a heading that exist", () => {
  const broken: string[] = [];
  for (const doc of [...docFiles(), "CHANGELOG.md"]) {
    const text = readFileSync(join(ROOT, doc), "utf8").replace(/```[\s\S]*?```/g, "");
    for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      const [path = "", anchor] = (target as string).split("#");
      if (/^[a-z]+:/.test(path)) continue;
      const file = path === "" ? join(ROOT, doc) : join(ROOT, dirname(doc), path);
      if (!existsSync(file)) broken.push(`${doc}: ${target}`);
      else if (anchor && file.endsWith(".md") && !anchorsOf(file).has(anchor)) broken.push(`${doc}: ${target} (no such heading)`);
    }
  }
  expect(broken).toEqual([]);
});

describe("runnable TypeScript blocks run", () => {
  for (const b of tsBlocks.filter(runnable)) {
    test(where(b), async () => {
      const cwd = tempDir("sluice-doc-ts-");
      const proc = Bun.spawn(["bun", join(BLOCKS, fileName(b))], { cwd, stdout: "pipe", stderr: "pipe" });
      const [out, err] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
      await proc.exited;
      expect({ block: where(b), exitCode: proc.exitCode, err: proc.exitCode === 0 ? "" : `${out}\n${err}` }).toEqual({
        block: where(b),
        exitCode: 0,
        err: "",
      });
      // 60 s: a block loading DuckDB took over 30 s on a saturated machine.
    }, 60_000);
  }
});

/** A folder with the repository's code linked in, as a fresh clone has it, and `sluice` on PATH. */
function linkedClone(): { cwd: string; env: Record<string, string> } {
  const cwd = tempDir("sluice-doc-sh-");
  for (const name of ["src", "operators", "examples", "test", "node_modules", "package.json", "tsconfig.json", "bunfig.toml"]) {
    symlinkSync(join(ROOT, name), join(cwd, name));
  }
  const bin = join(cwd, ".bin");
  mkdirSync(bin);
  writeFileSync(join(bin, "sluice"), `#!/bin/sh\nexec bun "${join(ROOT, "src/cli/main.ts")}" "$@"\n`, { mode: 0o755 });
  const env = { ...(process.env as Record<string, string>), PATH: `${bin}:${process.env.PATH}`, NO_COLOR: "1" };
  return { cwd, env };
}

/** The quick start's command: README.md runs it in a fresh clone; every other document starts from its out/. */
const QUICK_START = "bun examples/clickstream.ts";

/** Runs one command with bash in a folder; resolves with its exit code and output. */
async function runCommand(place: { cwd: string; env: Record<string, string> }, command: string) {
  const proc = Bun.spawn(["bash", "-c", command], { cwd: place.cwd, env: place.env, stdout: "pipe", stderr: "pipe" });
  const [out, err] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  return { exitCode: await proc.exited, output: `${out}${err}` };
}

interface QuickStartRun {
  readonly cwd: string;
  readonly exitCode: number;
  readonly output: string;
}

/** Runs the quick start in `place` (a fresh clone). */
async function runQuickStart(place: { cwd: string; env: Record<string, string> }): Promise<QuickStartRun> {
  return { cwd: place.cwd, ...(await runCommand(place, QUICK_START)) };
}

/**
 * The out/ folder of the quick start run once: by README.md's test when it meets the command in
 * a fresh clone (its run is the README's), or here when another document needs it first. A copy
 * is kept, so that what a document runs later in its own folder never reaches another's.
 */
let quickStartOut: Promise<string> | undefined;
function quickStart(ran?: Promise<QuickStartRun>): Promise<string> {
  quickStartOut ??= (async () => {
    const { cwd, exitCode, output } = await (ran ?? runQuickStart(linkedClone()));
    if (exitCode !== 0) throw new Error(`the quick start in ${cwd} failed: ${output}`);
    const kept = join(tempDir("sluice-doc-quick-start-"), "out");
    cpSync(join(cwd, "out"), kept, { recursive: true });
    return kept;
  })();
  return quickStartOut;
}

/** A working folder like a fresh clone after `bun examples/clickstream.ts`, with `sluice` on PATH. */
async function cloneLike(): Promise<{ cwd: string; env: Record<string, string> }> {
  const out = await quickStart();
  const place = linkedClone();
  cpSync(out, join(place.cwd, "out"), { recursive: true });
  return place;
}

/** The commands of an sh block: comments and blank lines dropped, `a && b` split. */
function commandsOf(b: Block): string[] {
  return b.code
    .split("\n")
    .map((l) => l.replace(/\s{2,}#.*$/, "").replace(/^\s*#.*$/, "").trim())
    .filter((l) => l !== "")
    .flatMap((l) => l.split(/\s+&&\s+/));
}

const skipped: { block: string; command: string; reason: string }[] = [];

describe("sh blocks run (those that are safe and local)", () => {
  const docs = [...new Set(all.filter((b) => b.lang === "sh").map((b) => b.doc))];
  for (const doc of docs) {
    test(doc, async () => {
      const blocks = all.filter((b) => b.doc === doc);
      let place: Awaited<ReturnType<typeof cloneLike>> | undefined;
      for (const [i, b] of blocks.entries()) {
        if (b.lang !== "sh") continue;
        let lastOutput = "";
        for (const command of commandsOf(b)) {
          const skip = SKIP.find((s) => s.pattern.test(command));
          if (skip) {
            skipped.push({ block: where(b), command, reason: skip.reason });
            continue;
          }
          let result: { exitCode: number; output: string };
          if (command === QUICK_START && place === undefined && quickStartOut === undefined) {
            // The quick start as a fresh clone runs it, once for the whole file: its out/ is every document's start.
            place = linkedClone();
            const ran = runQuickStart(place);
            await quickStart(ran).catch(() => {});
            result = await ran;
          } else {
            place ??= await cloneLike();
            result = await runCommand(place, command);
          }
          lastOutput = result.output;
          expect({ block: where(b), command, exitCode: result.exitCode, output: result.exitCode === 0 ? "" : lastOutput }).toEqual({
            block: where(b),
            command,
            exitCode: 0,
            output: "",
          });
        }
        const next = blocks[i + 1];
        if (next && next.lang === "text" && /\boutput\b/.test(next.info)) {
          expect({ block: where(next), missing: missingLines(next.code, lastOutput) }).toEqual({ block: where(next), missing: [] });
        }
      }
    }, 60_000);
  }
});

/** The expected lines not found, in order, in the output (whitespace runs compared as one space). */
function missingLines(expected: string, output: string): string[] {
  const squash = (s: string) => s.replace(/\s+/g, " ").trim();
  const got = output.split("\n").map(squash);
  const missing: string[] = [];
  let from = 0;
  for (const line of expected.split("\n").map(squash)) {
    if (line === "" || line === "…") continue;
    const at = got.findIndex((g, j) => j >= from && g.includes(line));
    if (at < 0) missing.push(line);
    else from = at + 1;
  }
  return missing;
}

// Last, so that tsc (started above) checked while the blocks ran.
test("every TypeScript block type-checks", async () => {
  const { out, err, exitCode } = await typeCheck;
  // Name the document and line each error comes from.
  const byFile = new Map(tsBlocks.map((b) => [fileName(b), b]));
  const errors = `${out}${err}`
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => {
      const m = /([^/\s]+\.ts)\((\d+),\d+\)/.exec(l);
      const b = m ? byFile.get(m[1] as string) : undefined;
      return b ? `${b.doc}:${b.line + Number(m?.[2])}: ${l.replace(/^.*?error /, "error ")}` : l;
    });
  expect(errors).toEqual([]);
  expect(exitCode).toBe(0);
}, 60_000);

test("every skipped command has a reason (listed for the record)", () => {
  for (const s of skipped) expect(s.reason.length).toBeGreaterThan(10);
  if (skipped.length) console.log(skipped.map((s) => `skipped ${s.block} \`${s.command}\`: ${s.reason}`).join("\n"));
  expect(relative(ROOT, dirname(BLOCKS))).toBe(join("test", "docs", ".blocks"));
});
