import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { take } from "rxjs";
import { deadLetter } from "../../operators/index.ts";
import type { DeadLetter } from "../../src/deadletter/entry.ts";
import { holdGate } from "../../src/flow/flow.ts";
import { run, type RunSummary } from "../../src/run/run.ts";
import { fromStdin } from "../../src/sources/stdin.ts";
import { bytes } from "../helpers/inputs.ts";

const FIXTURE = join(import.meta.dir, "..", "fixtures", "stdin-collect.ts");

interface Collected {
  values: unknown[];
  entries: DeadLetter[];
  summary: RunSummary;
}

/** Pipes `input` into a child process's real standard input and returns what `fromStdin` read there. */
async function pipeInto(input: Uint8Array, chunkBytes?: number): Promise<Collected> {
  const child = Bun.spawn(["bun", FIXTURE, ...(chunkBytes ? [String(chunkBytes)] : [])], {
    stdin: "pipe",
    stdout: "pipe",
    stderr: "pipe",
  });
  child.stdin.write(input);
  await child.stdin.end();
  const [out, err, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
  if (code !== 0) throw new Error(`fixture exited with ${code}: ${err}`);
  const collected = JSON.parse(out) as Collected;
  // The accounting every caller relies on: each line is emitted or dead-lettered, once.
  expect(collected.summary.in).toBe(collected.values.length + collected.entries.length);
  expect(collected.summary.bytesRead).toBe(input.length);
  return collected;
}

const brief = (entries: readonly DeadLetter[]) => entries.map((e) => [e.source, e.line, e.stage, e.error]);

/** A stream that hands out `chunks` one per pull and records whether it was cancelled. */
function pulledStream(chunks: Uint8Array[], endless = false) {
  const state = { pulls: 0, cancelled: false };
  let i = 0;
  const stream = new ReadableStream<Uint8Array>(
    {
      pull(controller) {
        state.pulls++;
        if (i < chunks.length) controller.enqueue(chunks[i++]);
        else if (endless) controller.enqueue(new TextEncoder().encode(`{"n":${i++}}\n`));
        else controller.close();
      },
      cancel() {
        state.cancelled = true;
      },
    },
    { highWaterMark: 0 },
  );
  return { stream, state };
}

describe("fromStdin", () => {
  test("reads piped NDJSON with bad lines, CRLF, invalid UTF-8 and no final newline, naming each reject by line", async () => {
    const input = bytes(
      '{"a":1}\r\n',
      "not json\r\n",
      "\n",
      '{"s":"日本😀"}\n',
      '{"s":"',
      [0xff, 0xfe],
      '"}\n',
      '{"a":',
      "\n",
      '[1,{"b":null}]\n',
      '{"a":"last"}',
    );
    for (const chunkBytes of [undefined, 5]) {
      const { values, entries, summary } = await pipeInto(input, chunkBytes);
      expect(values).toEqual([{ a: 1 }, { s: "日本😀" }, [1, { b: null }], { a: "last" }]);
      expect(brief(entries)).toEqual([
        ["stdin", 2, "parse", expect.stringMatching(/^malformed JSON: /)],
        ["stdin", 3, "parse", "blank line"],
        ["stdin", 5, "parse", "line is not valid UTF-8"],
        ["stdin", 6, "parse", expect.stringMatching(/^malformed JSON: /)],
      ]);
      expect(entries.map((e) => e.raw)).toEqual(["not json", "", expect.any(String), '{"a":']);
      expect(Buffer.from(entries[2].rawBase64 ?? "", "base64")).toEqual(Buffer.from(bytes('{"s":"', [0xff, 0xfe], '"}')));
      expect(summary.in).toBe(8);
    }
  });

  test("dead-letters a number a 64-bit float cannot hold, as fromNdjson does", async () => {
    const { values, entries } = await pipeInto(bytes('{"n":1}\n{"n":1e400}\n{"id":12345678901234567890}'));
    expect(values).toEqual([{ n: 1 }]);
    expect(brief(entries)).toEqual([
      ["stdin", 2, "parse", expect.stringMatching(/^number 1e400 at n \(line 2, column 6\) is too large for a 64-bit float/)],
      ["stdin", 3, "parse", expect.stringMatching(/^number 12345678901234567890 at id \(line 3, column 7\) has more digits/)],
    ]);
  });

  test("completes with no records on empty input", async () => {
    const { values, entries, summary } = await pipeInto(new Uint8Array(0));
    expect(values).toEqual([]);
    expect(entries).toEqual([]);
    expect(summary.in).toBe(0);
  });

  test("dead-letters a last line cut in the middle of a character and of the JSON", async () => {
    const { values, entries } = await pipeInto(bytes('{"n":1}\n{"s":"', [0xe2, 0x82]));
    expect(values).toEqual([{ n: 1 }]);
    expect(brief(entries)).toEqual([["stdin", 2, "parse", "line is not valid UTF-8"]]);
  });

  test("reads many lines that cross chunk boundaries, in order", async () => {
    const lines = Array.from({ length: 5000 }, (_, i) => JSON.stringify({ i, s: "é".repeat(i % 17) }));
    const { values, entries } = await pipeInto(bytes(`\ufeff${lines.join("\n")}\n`), 1000);
    expect(entries).toEqual([]);
    expect(values).toEqual(lines.map((l) => JSON.parse(l)));
  });

  test("emits wrong types as they are: deciding them is validation's job", async () => {
    const { values } = await pipeInto(bytes('{"n":"123"}\n{"n":123}\n{"n":null}\n'));
    expect(values).toEqual([{ n: "123" }, { n: 123 }, { n: null }]);
  });

  test("stops reading while the sink holds the gate and goes on when it is released", async () => {
    const chunks = Array.from({ length: 20 }, (_, i) => bytes(`{"n":${i}}\n`));
    const { stream, state } = pulledStream(chunks);
    let release = () => {};
    const values: unknown[] = [];
    const done = run(fromStdin({ stream, chunkBytes: 8 }).pipe(deadLetter(() => {})), {
      handleSignals: false,
      onStart: (flow) => {
        release = holdGate(flow);
      },
      onValue: (value) => values.push(value),
    });
    await Bun.sleep(30);
    // One chunk read, then the source waits on the gate instead of draining the stream.
    expect(state.pulls).toBeLessThanOrEqual(2);
    expect(values.length).toBeLessThanOrEqual(1);
    release();
    const summary = await done;
    expect(values).toEqual(chunks.map((_, n) => ({ n })));
    expect(summary.in).toBe(20);
  });

  test("cancels the stream when the subscriber unsubscribes early", async () => {
    const { stream, state } = pulledStream([], true);
    const values: unknown[] = [];
    const summary = await run(fromStdin({ stream }).pipe(take(3)), { handleSignals: false, onValue: (v) => values.push(v) });
    expect(values).toEqual([{ n: 0 }, { n: 1 }, { n: 2 }]);
    await Bun.sleep(5);
    expect(state.cancelled).toBe(true);
    expect(summary.emitted).toBe(3);
  });

  test("errors naming stdin when the stream fails", async () => {
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(bytes('{"n":1}\n'));
        controller.error(new Error("broken pipe"));
      },
    });
    const run1 = run(fromStdin({ stream }).pipe(deadLetter(() => {})), { handleSignals: false });
    await expect(run1).rejects.toThrow(/fromStdin: cannot read stdin: broken pipe/);
  });

  test("takes another source name for a stream that is not stdin", async () => {
    const entries: DeadLetter[] = [];
    const { stream } = pulledStream([bytes("oops\n")]);
    await run(fromStdin({ stream, name: "socket" }).pipe(deadLetter((e) => entries.push(e))), { handleSignals: false });
    expect(brief(entries)).toEqual([["socket", 1, "parse", expect.stringMatching(/^malformed JSON/)]]);
  });
});
