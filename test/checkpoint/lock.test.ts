/**
 * One run at a time on a checkpoint (issue 12): two runs sharing one used to resume from the same
 * point, and the second crashed on SQLITE_BUSY after committing files, leaving duplicates.
 */
import { Database } from "bun:sqlite";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { throwError } from "rxjs";
import * as v from "valibot";
import { validate } from "../../operators/index.ts";
import { fromNdjson, fromPush, run, toParquet } from "../../src/index.ts";
import { LockedError } from "../../src/io/lock.ts";
import { dataset, query, tempDir } from "../helpers/duckdb.ts";

const Row = v.object({ id: v.number() });

let dir: { path: string; remove: () => Promise<void> };
beforeAll(async () => {
  dir = await tempDir("sluice-checkpoint-lock-");
});
afterAll(() => dir.remove());

describe("two runs sharing a checkpoint", () => {
  test("the second is refused before it reads its input or writes anything; the checkpoint is free once the first ends", async () => {
    const checkpoint = join(dir.path, "state", "checkpoint.sqlite");
    const input = join(dir.path, "in.ndjson");
    writeFileSync(input, `${Array.from({ length: 50 }, (_, id) => JSON.stringify({ id })).join("\n")}\n`);
    const pushed = fromPush<{ id: number }>({ name: "first" });
    const first = run(pushed.pipe(toParquet(join(dir.path, "first"), { schema: Row })), { runId: "first", checkpoint });
    pushed.push({ id: 1 });

    let read = 0;
    const second = await run(fromNdjson(input).pipe(validate(Row), toParquet(join(dir.path, "second"), { schema: Row })), {
      runId: "second",
      checkpoint,
      onStart: (flow) => (read = flow.stats.in),
    }).catch((e) => e);
    expect(second).toBeInstanceOf(LockedError);
    expect(second.message).toContain(`checkpoint ${checkpoint} is in use by run first (pid ${process.pid}`);
    expect(read).toBe(0);
    expect(existsSync(join(dir.path, "second"))).toBe(false);

    pushed.end();
    await first;
    const db = new Database(checkpoint, { readonly: true });
    expect(db.query("SELECT run_id FROM runs").all()).toEqual([{ run_id: "first" }]);
    db.close();

    // Free again after a run that completed, after one that failed, and after one whose onStart threw.
    await expect(run(throwError(() => new Error("broker gone")), { runId: "fails", checkpoint })).rejects.toThrow("broker gone");
    const refused = run(fromNdjson(input), {
      runId: "hook",
      checkpoint,
      onStart: () => {
        throw new Error("metrics server not reachable");
      },
    });
    await expect(refused).rejects.toThrow("metrics server not reachable");
    const third = await run(fromNdjson(input).pipe(validate(Row), toParquet(join(dir.path, "third"), { schema: Row })), { runId: "third", checkpoint });
    expect(third.written).toBe(50);
    expect((await query(`SELECT count(*)::INT AS n FROM ${dataset(join(dir.path, "third"))}`))[0]?.n).toBe(50);
  });
});
