import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import * as v from "valibot";
import { deadLetter, validate } from "../../operators/index.ts";
import { fromNdjson, run, toParquet } from "../../src/index.ts";
import { tempDir } from "../helpers/duckdb.ts";

const Row = v.object({ id: v.number(), day: v.string() });

describe("a checkpoint that cannot be written", () => {
  let dir: { path: string; remove: () => Promise<void> };
  let input: string;
  beforeAll(async () => {
    dir = await tempDir();
    input = join(dir.path, "in.ndjson");
    const lines = Array.from({ length: 3000 }, (_, i) => JSON.stringify({ id: i, day: `2024-01-0${(i % 3) + 1}` }));
    await Bun.write(input, `${lines.join("\n")}\n`);
  });
  afterAll(() => dir.remove());

  for (const [step, method] of [
    ["record a file before committing it", "intent"],
    ["record that a file is committed", "committed"],
    ["record the end of the run", "finish"],
  ] as const) {
    test(`fails the run with an error naming the checkpoint when it cannot ${step} (a full disk), and leaves no partial file`, async () => {
      const out = join(dir.path, `out-${method}`);
      const checkpoint = join(dir.path, `${method}.sqlite`);
      const unhandled: unknown[] = [];
      const onUnhandled = (error: unknown) => unhandled.push(error);
      process.on("unhandledRejection", onUnhandled);
      process.on("uncaughtException", onUnhandled);
      let calls = 0;
      try {
        const error = await run(
          fromNdjson(input, { chunkBytes: 4096 }).pipe(
            validate(Row),
            deadLetter(() => {}),
            toParquet(out, { schema: Row, partitionBy: ["day"], maxFileRows: 200 }),
          ),
          {
            checkpoint,
            onStart(flow) {
              const target = flow.checkpoint as unknown as Record<string, (...args: unknown[]) => unknown>;
              const real = target[method] as (...args: unknown[]) => unknown;
              target[method] = (...args: unknown[]) => {
                // The first calls succeed; then the disk is full.
                if (++calls > (method === "finish" ? 0 : 2)) {
                  if (method === "finish") return Promise.reject(new Error("database or disk is full"));
                  throw new Error("database or disk is full");
                }
                return real.apply(target, args);
              };
            },
          },
        ).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(error).toBeInstanceOf(Error);
        expect((error as Error).message).toContain(`checkpoint ${checkpoint}`);
        expect((error as Error).message).toContain("database or disk is full");
        await Bun.sleep(50);
        expect(unhandled).toEqual([]);
        const names = readdirSync(out, { recursive: true }).map(String);
        expect(names.filter((n) => n.endsWith(".tmp"))).toEqual([]);
      } finally {
        process.off("unhandledRejection", onUnhandled);
        process.off("uncaughtException", onUnhandled);
      }
    });
  }
});
