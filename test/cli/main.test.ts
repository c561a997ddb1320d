import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import pkg from "../../package.json";
import { COMMANDS } from "../../src/cli/main.ts";

const ROOT = join(import.meta.dir, "..", "..");

async function sluice(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = Bun.spawn(["bun", "src/cli/main.ts", ...args], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
  return { code, stdout, stderr };
}

describe("sluice", () => {
  test("--version prints the package.json version and exits 0", async () => {
    const { code, stdout, stderr } = await sluice(["--version"]);
    expect(stderr).toBe("");
    expect(code).toBe(0);
    expect(stdout.trim()).toBe(pkg.version);
  });

  test("every command and dead-letter subcommand prints its usage for --help and exits 0", async () => {
    const lines = [...COMMANDS.map((c) => [c]), ["dead-letter", "summarize"], ["dead-letter", "replay"]];
    expect(COMMANDS).toContain("dead-letter");
    for (const line of lines) {
      for (const flag of ["--help", "-h"]) {
        const { code, stdout, stderr } = await sluice([...line, flag]);
        expect({ line, flag, code, stderr }).toEqual({ line, flag, code: 0, stderr: "" });
        expect(stdout).toStartWith(`usage: sluice ${line.join(" ")}`);
      }
    }
  });

  test("no command, an unknown command or a missing dead-letter subcommand exits 2 with the usage", async () => {
    for (const args of [[], ["nope"], ["dead-letter"], ["dead-letter", "nope"]]) {
      const { code, stdout, stderr } = await sluice(args);
      expect(code).toBe(2);
      expect(`${stdout}${stderr}`).toContain("usage: sluice");
    }
  });
});
