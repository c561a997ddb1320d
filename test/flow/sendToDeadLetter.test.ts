import { describe, expect, test } from "bun:test";
import { open, readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { of } from "rxjs";
import * as v from "valibot";
import { deadLetter, validate } from "../../operators/index.ts";
import type { DeadLetter } from "../../src/deadletter/entry.ts";
import { DEAD_LETTER_RAW_BYTES } from "../../src/flow/flow.ts";
import { readDeadLetters } from "../../src/index.ts";
import { run } from "../../src/run/run.ts";
import { fromNdjson } from "../../src/sources/ndjson.ts";
import { bytes, inputFolder } from "../helpers/inputs.ts";

const dir = inputFolder("sluice-dead-letter-raw-", ".ndjson");
const FIXTURE = join(import.meta.dir, "../fixtures/ndjson-to-dead-letter.ts");
// 64 KiB, as the README says.
const KEPT = DEAD_LETTER_RAW_BYTES;

/** The dead letters of reading `content` as NDJSON. */
async function deadLettersOf(content: Uint8Array): Promise<DeadLetter[]> {
  const entries: DeadLetter[] = [];
  await run(fromNdjson(await dir.file(content)).pipe(deadLetter((e) => entries.push(e))), { handleSignals: false });
  return entries;
}

describe("sendToDeadLetter", () => {
  // Characters of every UTF-8 length, so a cut that split one would show as a replacement character.
  test.each([
    ["NUL bytes", "\u0000", 200_000],
    ["two-byte characters", "é", 50_000],
    ["three-byte characters", "€", 30_000],
    ["four-byte characters", "😀", 20_000],
    ["a mix", "a€😀é", 9_000],
  ])("cuts a long line of %s to its first 64 KiB at a character boundary and says how long it was", async (_name, unit, repeat) => {
    const line = unit.repeat(repeat);
    const length = Buffer.byteLength(line);
    const [entry, ...rest] = await deadLettersOf(bytes(`${line}\n{"ok":1}\n`));
    expect(rest).toEqual([]);
    expect(entry?.line).toBe(1);
    expect(entry?.raw.endsWith("…")).toBe(true);
    const kept = (entry?.raw ?? "").slice(0, -1);
    expect(line.startsWith(kept)).toBe(true);
    expect(Buffer.byteLength(kept)).toBeLessThanOrEqual(KEPT);
    // Nothing more fits: the next character would pass the limit.
    expect(Buffer.byteLength(line.slice(0, kept.length + ((line.codePointAt(kept.length) ?? 0) > 0xffff ? 2 : 1)))).toBeGreaterThan(KEPT);
    expect(entry?.error).toStartWith("malformed JSON: ");
    expect(entry?.error).toEndWith(` (raw cut to its first ${KEPT} of ${length} bytes)`);
  });

  test("keeps a line of exactly 64 KiB whole, with no note", async () => {
    const line = "x".repeat(KEPT);
    const [entry] = await deadLettersOf(bytes(`${line}\n`));
    expect(entry?.raw).toBe(line);
    expect(entry?.error).not.toContain("cut");
  });

  test("cuts the exact bytes of a long line that is not UTF-8 to their first 64 KiB too", async () => {
    const raw = new Uint8Array(100_000).map((_, i) => (i % 7 === 0 ? 0xff : 0x41 + (i % 26)));
    const [entry] = await deadLettersOf(bytes(raw, "\n"));
    expect(entry?.error).toBe(`line is not valid UTF-8 (raw cut to its first ${KEPT} of ${Buffer.byteLength(new TextDecoder().decode(raw))} bytes; rawBase64 cut to its first ${KEPT} of 100000 bytes)`);
    expect(Buffer.from(entry?.rawBase64 ?? "", "base64")).toEqual(Buffer.from(raw.subarray(0, KEPT)));
  });

  test("cuts a record without raw text, kept as JSON, the same way", async () => {
    const entries: DeadLetter[] = [];
    const big = { id: "x".repeat(100_000) };
    await run(of(big).pipe(validate(v.object({ id: v.number() })), deadLetter((e) => entries.push(e))), { handleSignals: false });
    expect(entries[0]?.raw).toBe(`${JSON.stringify(big).slice(0, KEPT)}…`);
    expect(entries[0]?.error).toEndWith(`(raw cut to its first ${KEPT} of ${JSON.stringify(big).length} bytes)`);
  });

  test("a 100 MB line of NUL bytes makes a dead letter of under 1 MB, read in under 1 GB of memory", async () => {
    // Before the cut: a 600 MB dead-letter file (each NUL is six characters as JSON) and 2.1 GB of memory.
    const input = dir.unique("nul.ndjson");
    const handle = await open(input, "w");
    await handle.write('{"ok":1}\n');
    await handle.write(new Uint8Array(100 * 1024 * 1024));
    await handle.write('\n{"ok":2}\n');
    await handle.close();
    const folder = dir.unique("dead-letter");
    const child = Bun.spawn(["bun", FIXTURE, input, folder], { stdout: "pipe", stderr: "pipe" });
    const [code, stdout, stderr] = await Promise.all([child.exited, new Response(child.stdout).text(), new Response(child.stderr).text()]);
    expect(stderr).toBe("started\n");
    expect(code).toBe(0);
    const result = JSON.parse(stdout) as { in: number; deadLettered: number; maxRssBytes: number };
    expect(result).toMatchObject({ in: 3, deadLettered: 1 });
    expect(result.maxRssBytes).toBeLessThan(1024 ** 3);
    let size = 0;
    for (const name of await readdir(folder)) size += (await stat(join(folder, name))).size;
    expect(size).toBeLessThan(1024 ** 2);
    const entries: DeadLetter[] = [];
    for await (const entry of readDeadLetters(folder)) entries.push(entry);
    expect(entries.map((e) => [e.line, e.raw.length, e.error.endsWith(`(raw cut to its first ${KEPT} of ${100 * 1024 * 1024} bytes)`)])).toEqual([
      [2, KEPT + 1, true],
    ]);
  }, 60_000);
});
