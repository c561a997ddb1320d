/**
 * A committed file is never replaced (issue 12): two writers that chose the same name once lost
 * rows silently, because the second rename replaced the first file. Commits link the name instead,
 * which fails when it exists.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { from } from "rxjs";
import * as v from "valibot";
import { openDeadLetterStore } from "../../src/deadletter/store.ts";
import { run, toParquet } from "../../src/index.ts";
import { commitFile } from "../../src/parquet/encode.ts";
import { ParquetWriteError } from "../../src/parquet/errors.ts";
import { dataset, query, tempDir } from "../helpers/duckdb.ts";

const Row = v.object({ id: v.number() });

let dir: { path: string; remove: () => Promise<void> };
beforeAll(async () => {
  dir = await tempDir("sluice-commit-");
});
afterAll(() => dir.remove());

describe("an existing file name is never overwritten", () => {
  test("commitFile refuses a name that exists (EEXIST), keeps that file's bytes and leaves no temporary file", async () => {
    const folder = join(dir.path, "plain");
    const path = join(folder, "a.txt");
    await commitFile(path, join(folder, ".a.txt.tmp"), Buffer.from("first"));
    const error = await commitFile(path, join(folder, ".a.txt.tmp"), Buffer.from("second")).catch((e) => e);
    expect(error).toBeInstanceOf(Error);
    expect(error.code).toBe("EEXIST");
    expect(error.message).toContain(`${path} already exists and sluice never replaces a committed file`);
    expect(readFileSync(path, "utf8")).toBe("first");
    expect(readdirSync(folder)).toEqual(["a.txt"]);
  });

  test("a run id used twice in append mode fails the second run at its first file, and the first run's rows stay", async () => {
    const out = join(dir.path, "same-run-id");
    await run(from([{ id: 1 }, { id: 2 }, { id: 3 }]).pipe(toParquet(out, { schema: Row, mode: "append" })), { runId: "twice" });
    const error = await run(from([{ id: 4 }]).pipe(toParquet(out, { schema: Row, mode: "append" })), { runId: "twice" }).catch((e) => e);
    expect(error).toBeInstanceOf(ParquetWriteError);
    expect(error.code).toBe("EEXIST");
    expect(error.path).toBe(join(out, "part-twice-000000000000.parquet"));
    expect(await query(`SELECT id FROM ${dataset(out)} ORDER BY id`)).toEqual([{ id: 1 }, { id: 2 }, { id: 3 }]);
    expect(readdirSync(out)).toEqual(["part-twice-000000000000.parquet"]);
  });

  test("the dead-letter store does not replace a committed file either", async () => {
    const folder = join(dir.path, "dead-letter");
    const entry = (line: number) => ({ stage: "validate", source: "in", line, raw: "{}", error: "e", at: "", runId: "twice" });
    const first = await openDeadLetterStore(folder, "twice");
    first.add(entry(1));
    await first.close();
    const before = readFileSync(join(folder, "dead-letter-twice-00000.ndjson"), "utf8");
    const second = await openDeadLetterStore(folder, "twice");
    second.add(entry(2));
    await expect(second.close()).rejects.toThrow("already exists and sluice never replaces a committed file");
    expect(readFileSync(join(folder, "dead-letter-twice-00000.ndjson"), "utf8")).toBe(before);
    // The store let go of the folder even though its last commit failed.
    await (await openDeadLetterStore(folder, "third")).close();
  });
});
