/**
 * The ledgers of what is committed (src/sinks/ledger.ts) and what they rest on: a broker source's
 * runs of adjacent deliveries (src/sources/broker.ts), whose files claim exactly the messages they
 * hold even when the lines are sparse, large, and interleaved with another reader's; and the
 * shared lock that lets several writers append to one folder (src/io/lock.ts).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { tableFromArrays, tableToIPC } from "apache-arrow";
import * as pq from "parquet-wasm";
import { from, Observable } from "rxjs";
import * as v from "valibot";
import { deadLetter, validate } from "../../operators/index.ts";
import { currentFlow } from "../../src/flow/flow.ts";
import { stamp } from "../../src/flow/position.ts";
import { run, toParquet } from "../../src/index.ts";
import { acquireLock, acquireSharedLock, LockedError, lockPathOf } from "../../src/io/lock.ts";
import { DatasetLedger, DeadLetterLedger } from "../../src/sinks/ledger.ts";
import { HeldMessages } from "../../src/sources/broker.ts";
import { lineOfId } from "../../src/sources/redis.ts";
import { dataset, query, tempDir } from "../helpers/duckdb.ts";

const Row = v.object({ id: v.number(), day: v.nullable(v.string()) });

let dir: { path: string; remove: () => Promise<void> };
beforeAll(async () => {
  dir = await tempDir("sluice-ledger-");
});
afterAll(() => dir.remove());
let cases = 0;
const fresh = () => join(dir.path, `case-${cases++}`);

/** One message a fake broker delivers: its line, whether it follows the previous one, whether it came back. */
interface Fake {
  readonly line: number;
  readonly adjacent: boolean;
  readonly redelivered?: boolean;
  readonly record: unknown;
}

/** A broker source over `messages` built on HeldMessages, as fromRedisStream and fromJetStream are. */
function fakeBroker(name: string, messages: readonly Fake[], acked: number[]): Observable<v.InferOutput<typeof Row>> {
  return new Observable<v.InferOutput<typeof Row>>((subscriber) => {
    const flow = currentFlow();
    const held = new HeldMessages<number, number>(flow, name, async (lines) => {
      acked.push(...lines);
    });
    for (const m of messages) {
      const position = held.at(m.line, m.line, { line: m.line, adjacent: m.adjacent, redelivered: m.redelivered ? performance.now() : undefined, raw: JSON.stringify(m.record) });
      if (position) subscriber.next(stamp(m.record as v.InferOutput<typeof Row>, position));
    }
    subscriber.complete();
  });
}

describe("the dataset ledger", () => {
  test("a file claims exactly the messages it holds: another reader's lines between two runs are not claimed", async () => {
    const out = fresh();
    // Lines near 2^52, as Redis ids give: this reader got 1-10 and 21-30; 11-20 went to another reader.
    const base = lineOfId("1700000000000-0") as number;
    const mine = [...Array.from({ length: 10 }, (_, i) => base + 1 + i), ...Array.from({ length: 10 }, (_, i) => base + 21 + i)];
    const messages = mine.map((line, i) => ({ line, adjacent: i !== 0 && i !== 10, record: { id: line - base, day: "2024-03-01" } }));
    const acked: number[] = [];
    const summary = await run(fakeBroker("redis:events", messages, acked).pipe(toParquet(out, { schema: Row, partitionBy: ["day"], mode: "append" })));
    expect(summary.written).toBe(20);
    const ledger = new DatasetLedger(out);
    const key = JSON.stringify(["2024-03-01"]);
    for (let n = 1; n <= 30; n++) expect([n, ledger.has(key, "redis:events", base + n)]).toEqual([n, n <= 10 || n > 20]);
    expect(ledger.has(key, "redis:other", base + 1)).toBe(false);
    expect(ledger.has(JSON.stringify(["2024-03-02"]), "redis:events", base + 1)).toBe(false);
    // Acknowledged once durable, in order, every one.
    expect(acked).toEqual(mine);
  });

  test("a redelivered record a committed file holds is skipped (counted) and acknowledged; one no file holds is written", async () => {
    const out = fresh();
    const acked: number[] = [];
    const first = Array.from({ length: 50 }, (_, i) => ({ line: 1000 + i, adjacent: i > 0, record: { id: i, day: i % 2 ? "a/b" : null } }));
    await run(fakeBroker("jetstream:S", first, acked).pipe(toParquet(out, { schema: Row, partitionBy: ["day"], mode: "append" })));
    // Delivered again: 10 that are committed, 5 that never were (lines 2000+), in partitions with odd values.
    const again = [
      ...first.slice(20, 30).map((m) => ({ ...m, adjacent: false, redelivered: true })),
      ...Array.from({ length: 5 }, (_, i) => ({ line: 2000 + i, adjacent: false, redelivered: true, record: { id: 100 + i, day: null } })),
    ];
    const acked2: number[] = [];
    const summary = await run(fakeBroker("jetstream:S", again, acked2).pipe(toParquet(out, { schema: Row, partitionBy: ["day"], mode: "append" })));
    expect(summary).toMatchObject({ in: 15, written: 5, skipped: 10 });
    expect(acked2.sort((a, b) => a - b)).toEqual(again.map((m) => m.line).sort((a, b) => a - b));
    const [row] = await query(`SELECT count(*)::INT AS n, count(DISTINCT id)::INT AS d FROM ${dataset(out)}`);
    expect(row).toEqual({ n: 55, d: 55 });
  });

  test("finds files committed after its first look, and looks again only for a record received after its last look", async () => {
    const out = fresh();
    const ledger = new DatasetLedger(out);
    const key = "[]";
    // A record received before the ledger's look (taken first, so the order holds however slow the machine).
    const receivedBefore = performance.now();
    expect(ledger.has(key, "s", 1)).toBe(false);
    await run(from([{ id: 1, day: "x" }]).pipe(toParquet(out, { schema: Row, mode: "append" })));
    // Received before the last look: the ledger does not look again (the file was committed after).
    expect(ledger.has(key, "unnamed", 1, receivedBefore)).toBe(false);
    // Received after it: it looks, and finds the new file.
    expect(ledger.has(key, "unnamed", 1, performance.now())).toBe(true);
  });

  test("files it cannot read as sluice's claim nothing, and it does not throw", async () => {
    const out = fresh();
    mkdirSync(join(out, "day=x"), { recursive: true });
    writeFileSync(join(out, "day=x", "not-parquet.parquet"), "hello, this is text");
    writeFileSync(join(out, "day=x", "short.parquet"), "PAR1");
    writeFileSync(join(out, "day=x", "lying.parquet"), Buffer.concat([Buffer.from("PAR1"), Buffer.from([0xff, 0xff, 0xff, 0x7f]), Buffer.from("PAR1")]));
    const garbage = Buffer.alloc(64, 0xff);
    writeFileSync(join(out, "day=x", "garbage-footer.parquet"), Buffer.concat([Buffer.from("PAR1"), garbage, Buffer.from([64, 0, 0, 0]), Buffer.from("PAR1")]));
    // Real Parquet files whose sluice.sources is hostile: not JSON, not an array, wrong types, a reversed range, huge numbers.
    const hostile = ["not json", '{"source":"unnamed","firstLine":1,"lastLine":5}', '[{"source":"unnamed","firstLine":"1","lastLine":5}]', '[{"source":"unnamed","firstLine":9,"lastLine":2}]', '[{"source":"unnamed","firstLine":1,"lastLine":1e400}]', "[null, 1, []]"];
    for (const [i, value] of hostile.entries()) writeFileSync(join(out, "day=x", `hostile-${i}.parquet`), parquetWith(value));
    // A file without sluice's metadata (another writer's).
    writeFileSync(join(out, "day=x", "foreign.parquet"), parquetWith(undefined));
    // A hidden file (a temporary name) is not read even when it claims the line.
    writeFileSync(join(out, "day=x", ".part-1.parquet.tmp.parquet"), parquetWith('[{"source":"unnamed","firstLine":1,"lastLine":1}]'));
    const ledger = new DatasetLedger(out);
    expect(ledger.has('["x"]', "unnamed", 1)).toBe(false);
    expect(ledger.has('["x"]', "unnamed", 9)).toBe(false);
    // The control: a well-formed value is read.
    writeFileSync(join(out, "day=x", "good.parquet"), parquetWith('[{"source":"unnamed","firstLine":1,"lastLine":1}]'));
    expect(ledger.has('["x"]', "unnamed", 1)).toBe(true);
    expect(new DatasetLedger(join(out, "missing")).has("[]", "unnamed", 1)).toBe(false);
  });
});

/** A small Parquet file whose key-value metadata `sluice.sources` is `sources` (absent when undefined). */
function parquetWith(sources: string | undefined): Uint8Array {
  const table = pq.Table.fromIPCStream(tableToIPC(tableFromArrays({ id: Int32Array.from([1]) }), "stream"));
  let props = new pq.WriterPropertiesBuilder();
  if (sources !== undefined) props = props.setKeyValueMetadata(new Map([["sluice.sources", sources]]));
  return pq.writeParquet(table, props.build());
}

describe("the dead-letter ledger", () => {
  test("a redelivered message whose dead letter is committed is skipped at its source; one without is dead-lettered", async () => {
    const out = fresh();
    const dead = join(out, "dead");
    const bad = (line: number) => ({ line, adjacent: false, record: { id: "not a number", day: null } });
    await run(fakeBroker("redis:events", [bad(5), bad(9)], []).pipe(validate(Row), deadLetter(dead), toParquet(join(out, "data"), { schema: Row, mode: "append" })));
    const acked: number[] = [];
    const summary = await run(
      fakeBroker("redis:events", [{ ...bad(5), redelivered: true }, { ...bad(7), redelivered: true }], acked).pipe(
        validate(Row),
        deadLetter(dead),
        toParquet(join(out, "data"), { schema: Row, mode: "append" }),
      ),
    );
    expect(summary).toMatchObject({ in: 2, deadLettered: 1, skipped: 1 });
    expect(acked.sort()).toEqual([5, 7]);
    const ledger = new DeadLetterLedger(dead);
    expect([5, 7, 9].map((line) => ledger.has("redis:events", line))).toEqual([true, true, true]);
    expect(ledger.has("redis:events", 6)).toBe(false);
    const [row] = await query(`SELECT count(*)::INT AS n, count(DISTINCT line)::INT AS d FROM read_json('${dead}/*.ndjson', format = 'newline_delimited')`);
    expect(row).toEqual({ n: 3, d: 3 });
  });

  test("lines of a dead-letter file that are not entries are passed over", () => {
    const dead = join(fresh(), "dead");
    mkdirSync(dead, { recursive: true });
    const lines = ["not json", "[1,2]", "null", '{"source": 5, "line": 1}', '{"source": "s", "line": "2"}', '{"source": "s", "line": 1e300}', '{"source": "s", "line": 3}'];
    writeFileSync(join(dead, "dead-letter-x-00000.ndjson"), `${lines.join("\n")}\n`);
    const ledger = new DeadLetterLedger(dead);
    expect([1, 2, 3].map((line) => ledger.has("s", line))).toEqual([false, false, true]);
  });
});

describe("lineOfId", () => {
  test("grows with the id and is exact where it is defined; undefined elsewhere", () => {
    const ids = ["0-1", "0-2047", "1-0", "1700000000000-0", "1700000000000-1", "1700000000001-0", `${2 ** 42 - 1}-2047`];
    const lines = ids.map((id) => lineOfId(id) as number);
    for (let i = 1; i < lines.length; i++) expect(lines[i] as number).toBeGreaterThan(lines[i - 1] as number);
    for (const line of lines) expect(Number.isSafeInteger(line)).toBe(true);
    expect(lineOfId("1700000000000-3")).toBe(1700000000000 * 2048 + 3);
    for (const id of ["0-0", "0-2048", `${2 ** 42}-0`, "abc", "1-", "-1", "1-2-3", "99999999999999999999-0"]) expect([id, lineOfId(id)]).toEqual([id, undefined]);
  });
});

describe("shared locks", () => {
  test("several shared holders at once; an exclusive taker is refused while one lives, and they while it holds", () => {
    const path = lockPathOf(join(fresh(), "events"));
    const a = acquireSharedLock(path, { runId: "worker-a", what: "dataset folder events" });
    const b = acquireSharedLock(path, { runId: "worker-b", what: "dataset folder events" });
    let refused: unknown;
    try {
      acquireLock(path, { runId: "alone", what: "dataset folder events" });
    } catch (error) {
      refused = error;
    }
    expect(refused).toBeInstanceOf(LockedError);
    expect((refused as Error).message).toMatch(/dataset folder events is in use by run worker-[ab] .* and 1 more, appending to it together/);
    a.release();
    b.release();
    const alone = acquireLock(path, { runId: "alone", what: "dataset folder events" });
    expect(() => acquireSharedLock(path, { runId: "worker-c", what: "dataset folder events" })).toThrow("dataset folder events is in use by run alone");
    alone.release();
    acquireSharedLock(path, { runId: "worker-c", what: "dataset folder events" }).release();
  });

  test("a shared holder that died is passed over", async () => {
    const path = lockPathOf(join(fresh(), "events"));
    const child = Bun.spawn(["true"]);
    await child.exited;
    mkdirSync(`${path}.shared`, { recursive: true });
    writeFileSync(join(`${path}.shared`, "dead.json"), JSON.stringify({ pid: child.pid, host: hostname(), runId: "gone", since: "2024-01-01T00:00:00Z", token: "dead" }));
    acquireLock(path, { runId: "alone", what: "dataset folder events" }).release();
  });

  test("toParquet and deadLetter refuse shared: true outside mode append", async () => {
    const out = fresh();
    await expect(run(from([{ id: 1, day: null }]).pipe(toParquet(out, { schema: Row, shared: true })))).rejects.toThrow('shared: true needs mode "append"');
    await expect(
      run(from([{ id: 1, day: null }]).pipe(deadLetter(join(out, "dead"), { shared: true, mode: "overwrite" }), toParquet(join(out, "x"), { schema: Row }))),
    ).rejects.toThrow('shared: true needs mode "append"');
  });
});
