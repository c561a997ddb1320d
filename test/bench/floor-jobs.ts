/**
 * The least one JavaScript thread must do for the clickstream job, measured like any engine
 * (`bun run bench --engines sluice,duckdb-strict,floor-parse,floor-operators`): how far under a
 * peer's wall time the single-threaded part of any sluice pipeline can go in this runtime.
 *
 * - floor-parse: read the file as a stream, cut lines, decode each (one-byte text for ASCII,
 *   the decoder for the rest) and `JSON.parse` it; nothing is kept or written.
 * - floor-operators: the same, then the example's own per-record work, which a user's pipeline
 *   runs on the main thread whatever sluice does: the schema check (sluice's compiled check of
 *   `ClickEvent`, as `validate` runs it) and `enrichEvent` (the example's spread and derived fields).
 *
 * Neither writes a file, keeps a position or a dead letter, or builds a column: everything they
 * leave out is work sluice does on top, on this thread or another.
 */
import type * as v from "valibot";
import type { JobReport } from "./harness.ts";

const NEWLINE = 10;

/** Calls `onLine` with the text of each line of `input` (the last one may lack its newline). */
async function eachLine(input: string, onLine: (text: string) => void): Promise<void> {
  const decoder = new TextDecoder();
  let rest: Uint8Array = new Uint8Array(0);
  for await (const chunk of Bun.file(input).stream()) {
    const bytes = rest.length === 0 ? chunk : Buffer.concat([rest, chunk]);
    const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    let from = 0;
    for (;;) {
      const newline = bytes.indexOf(NEWLINE, from);
      if (newline < 0) break;
      onLine(textOf(buffer, decoder, from, newline));
      from = newline + 1;
    }
    rest = bytes.subarray(from);
  }
  if (rest.length > 0) onLine(decoder.decode(rest));
}

function textOf(buffer: Buffer, decoder: TextDecoder, from: number, to: number): string {
  for (let i = from; i < to; i++) if ((buffer[i] as number) > 0x7f) return decoder.decode(buffer.subarray(from, to));
  return (buffer as unknown as { latin1Slice(start: number, end: number): string }).latin1Slice(from, to);
}

function parsed(text: string): { ok: true; value: unknown } | { ok: false } {
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch {
    return { ok: false };
  }
}

export async function floorParse(input: string): Promise<JobReport> {
  let rows = 0;
  let rejected = 0;
  await eachLine(input, (text) => {
    if (parsed(text).ok) rows++;
    else rejected++;
  });
  return { rows, rejected };
}

export async function floorOperators(input: string): Promise<JobReport> {
  const [{ compileCheck, INVALID }, { ClickEvent, enrichEvent }] = await Promise.all([import("../../src/schema/compile.ts"), import("../../examples/clickstream.ts")]);
  const check = compileCheck(ClickEvent as v.GenericSchema);
  if (!check) throw new Error("floor-operators: the example's schema did not compile");
  let rows = 0;
  let rejected = 0;
  await eachLine(input, (text) => {
    const result = parsed(text);
    const checked = result.ok ? check(result.value) : INVALID;
    if (checked === INVALID) {
      rejected++;
      return;
    }
    try {
      enrichEvent(checked as Parameters<typeof enrichEvent>[0]);
      rows++;
    } catch {
      rejected++;
    }
  });
  return { rows, rejected };
}
