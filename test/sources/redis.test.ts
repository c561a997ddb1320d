import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { RedisClient, SQL } from "bun";
import { Database } from "bun:sqlite";
import { existsSync, readdirSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { EMPTY, filter, lastValueFrom, merge, type Observable, type OperatorFunction, share, Subject, take, tap, toArray } from "rxjs";
import * as v from "valibot";
import { deadLetter, validate } from "../../operators/index.ts";
import { readDeadLettersSync } from "../../src/deadletter/read.ts";
import { type Flow, holdGate } from "../../src/flow/flow.ts";
import { fromRedisStream, run, toClickHouse, toParquet, toSql } from "../../src/index.ts";
import { lineOfId } from "../../src/sources/redis.ts";
import { dataset, query, tempDir } from "../helpers/duckdb.ts";

const URL = "redis://127.0.0.1:6379";
const Entry = v.object({ id: v.number(), zone: v.picklist(["a", "b", "c"]), n: v.number() });
const ZONES = ["a", "b", "c"];

/** What entry `i` (from 1) holds: a valid record, text that is not JSON, no `data` field, or a record validation rejects. */
function entryAt(i: number): { kind: "valid" | "notJson" | "noField" | "invalid"; fields: string[] } {
  if (i % 500 === 7) return { kind: "notJson", fields: ["data", `{"id": ${i}, oops`] };
  if (i % 500 === 13) return { kind: "noField", fields: ["other", `x${i}`] };
  if (i % 500 === 29) return { kind: "invalid", fields: ["data", JSON.stringify({ id: i, zone: "z", n: i })] };
  return { kind: "valid", fields: ["data", JSON.stringify({ id: i, zone: ZONES[i % 3], n: i * 2 })] };
}

const valid = (from: number, to: number) => {
  let n = 0;
  for (let i = from; i <= to; i++) if (entryAt(i).kind === "valid") n++;
  return n;
};

let redis: RedisClient;
let dir: { path: string; remove: () => Promise<void> };
const streams: string[] = [];
let serial = 0;

/** A stream and group name no other test (or earlier run) uses; deleted after the tests. */
function names(): { stream: string; group: string } {
  const stream = `sluice-test-${process.pid}-${Date.now()}-${++serial}`;
  streams.push(stream);
  return { stream, group: "lake" };
}

/** Adds entries `from..to` to the stream, pipelined. */
async function produce(stream: string, from: number, to: number): Promise<void> {
  const sent: Promise<unknown>[] = [];
  for (let i = from; i <= to; i++) sent.push(redis.send("XADD", [stream, "*", ...entryAt(i).fields]));
  await Promise.all(sent);
}

/** Entries of the group read and not acknowledged, in all and by consumer. */
async function pending(stream: string, group: string): Promise<{ total: number; by: Record<string, number> }> {
  const reply = (await redis.send("XPENDING", [stream, group])) as [number, unknown, unknown, [string, string][] | null];
  const by: Record<string, number> = {};
  for (const [consumer, count] of reply[3] ?? []) by[consumer] = Number(count);
  return { total: Number(reply[0]), by };
}

/** The group's consumers by name (XINFO CONSUMERS). */
async function consumersOf(stream: string, group: string): Promise<string[]> {
  const rows = (await redis.send("XINFO", ["CONSUMERS", stream, group])) as Record<string, unknown>[];
  return rows.map((r) => String(r.name));
}

/** Entries of the stream not yet delivered to the group. */
async function lag(stream: string, group: string): Promise<number> {
  const groups = (await redis.send("XINFO", ["GROUPS", stream])) as Record<string, unknown>[];
  const info = groups.find((g) => g.name === group);
  return Number(info?.lag ?? Number.NaN);
}

async function until(what: string, ok: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await ok())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(10);
  }
}

/**
 * Runs stream → validate → dead letters under `out` → `sink` (default: Parquet by zone under
 * `out`, appending) until `count` entries are read, then stops it.
 */
async function readUntil(
  out: string,
  stream: string,
  group: string,
  count: number,
  { started, sink, batchSize = 700 }: { started?: (flow: Flow) => void; sink?: OperatorFunction<v.InferOutput<typeof Entry>, unknown>; batchSize?: number } = {},
) {
  const stop = new AbortController();
  let flow: Flow | undefined;
  const running = run(
    fromRedisStream({ url: URL, stream, group, from: "start", batchSize }).pipe(
      validate(Entry),
      deadLetter(join(out, "dead"), { maxFileAgeMs: 100 }),
      sink ?? toParquet(join(out, "events"), { schema: Entry, partitionBy: ["zone"], maxFileRows: 400, mode: "append" }),
    ),
    {
      signal: stop.signal,
      onStart: (f) => {
        flow = f;
        started?.(f);
      },
    },
  );
  await until(`${count} entries read`, () => (flow?.stats.in ?? 0) >= count);
  stop.abort();
  return running;
}

const parquetFiles = (folder: string) =>
  existsSync(folder) ? readdirSync(folder, { recursive: true }).map(String).filter((f) => f.endsWith(".parquet")).length : 0;

beforeAll(async () => {
  redis = new RedisClient(URL);
  await redis.connect();
  dir = await tempDir("sluice-redis-");
});

afterAll(async () => {
  if (streams.length > 0) await redis.send("DEL", streams);
  redis.close();
  await dir.remove();
});

describe("fromRedisStream", () => {
  test("writes every valid entry exactly once, dead-letters every bad one, and leaves nothing pending", async () => {
    const { stream, group } = names();
    const COUNT = 5000;
    await produce(stream, 1, COUNT);
    const out = join(dir.path, "all");
    const summary = await readUntil(out, stream, group, COUNT);
    expect(summary.in).toBe(COUNT);
    const [row] = await query(`SELECT count(*) AS n, count(DISTINCT id) AS d, min(n = id * 2) AS ok FROM ${dataset(join(out, "events"))}`);
    expect(row).toEqual({ n: String(valid(1, COUNT)), d: String(valid(1, COUNT)), ok: true });
    const bad = [...readDeadLettersSync(join(out, "dead"))].map((d) => d.entry);
    const expected = Array.from({ length: COUNT }, (_, i) => i + 1).filter((i) => entryAt(i).kind !== "valid");
    expect(bad.length).toBe(expected.length);
    const parse = bad.filter((d) => d.stage === "parse");
    expect(parse.length).toBe(expected.filter((i) => entryAt(i).kind !== "invalid").length);
    for (const d of parse) {
      expect(d.source).toBe(`redis:${stream}`);
      expect(d.error).toContain(stream);
      expect(d.error).toMatch(/entry \d+-\d+/);
    }
    const notJson = parse.find((d) => d.error.includes("not JSON"));
    expect(notJson?.raw).toMatch(/^\{"id": \d+, oops$/);
    expect(parse.some((d) => d.error.includes('no field "data"') && d.raw?.includes('"other"'))).toBe(true);
    expect((await pending(stream, group)).total).toBe(0);
  });

  test("a group set back to the start (XGROUP SETID, or a Redis that lost its state) hands every entry out again as new: each is skipped, none written twice", async () => {
    const { stream, group } = names();
    const COUNT = 3000;
    await produce(stream, 1, COUNT);
    const out = join(dir.path, "set-back");
    const first = await readUntil(out, stream, group, COUNT);
    expect(first.written + first.deadLettered).toBe(COUNT);
    expect((await pending(stream, group)).total).toBe(0);
    // The group's last delivered id set back: Redis hands every entry out again with XREADGROUP's
    // ">", as new, with nothing to say it was delivered before.
    await redis.send("XGROUP", ["SETID", stream, group, "0"]);
    const again = await readUntil(out, stream, group, COUNT);
    expect(again).toMatchObject({ in: COUNT, written: 0, deadLettered: 0, skipped: COUNT });
    const [row] = await query(`SELECT count(*) AS n, count(DISTINCT id) AS d FROM ${dataset(join(out, "events"))}`);
    expect(row).toEqual({ n: String(valid(1, COUNT)), d: String(valid(1, COUNT)) });
    expect([...readDeadLettersSync(join(out, "dead"))].length).toBe(COUNT - valid(1, COUNT));
    expect((await pending(stream, group)).total).toBe(0);
  });

  // The table and its ledger in each database sluice writes to, read back with Bun's own clients.
  for (const db of ["sqlite", "postgres", "mariadb", "clickhouse"] as const) {
    test(`into ${db}: entries handed out again (a group set back) are found in the ledger table and skipped, none inserted twice; after the table is dropped, all are written again`, async () => {
      const { stream, group } = names();
      const COUNT = 2000;
      await produce(stream, 1, COUNT);
      const out = join(dir.path, `sql-set-back-${db}`);
      const file = join(out, "events.db");
      const table = `set_back_${process.pid}_${serial}`;
      const url = {
        sqlite: `sqlite:${file}`,
        postgres: "postgres://postgres@127.0.0.1:5432/test",
        mariadb: "mysql://root@127.0.0.1:3306/test",
        clickhouse: "clickhouse://default@127.0.0.1:8123/default",
      }[db];
      const sink = () =>
        db === "clickhouse"
          ? toClickHouse(url, table, { schema: Entry, key: ["id"], create: true, batchRows: 250 })
          : toSql(url, table, { schema: Entry, mode: "insert", create: true, batchRows: 250 });
      const readIntoTable = () => readUntil(out, stream, group, COUNT, { sink: sink(), batchSize: 300 });
      // The table read back with each database's own client: counts as numbers.
      const sqlite = () => new Database(file);
      const pool = db === "postgres" || db === "mariadb" ? new SQL(url) : undefined;
      const ch = (query: string) => fetch("http://127.0.0.1:8123/?database=default", { method: "POST", body: query }).then((r) => r.text());
      const counts = async (): Promise<number[]> => {
        const query = `SELECT count(*) AS n, count(DISTINCT id) AS d FROM ${table}`;
        if (db === "clickhouse") return (await ch(`${query} FORMAT TSV`)).trim().split("\t").map(Number);
        if (pool) {
          const [row] = await pool.unsafe(query);
          return [Number(row.n), Number(row.d)];
        }
        const handle = sqlite();
        try {
          const row = handle.query(query).get() as { n: number; d: number };
          return [row.n, row.d];
        } finally {
          handle.close();
        }
      };
      const drop = async () => {
        if (db === "clickhouse") await ch(`DROP TABLE ${table}`);
        else if (pool) await pool.unsafe(`DROP TABLE ${table}`);
        else {
          const handle = sqlite();
          handle.run(`DROP TABLE ${table}`);
          handle.close();
        }
      };
      try {
        const first = await readIntoTable();
        expect(first.written + first.deadLettered).toBe(COUNT);
        await redis.send("XGROUP", ["SETID", stream, group, "0"]);
        const again = await readIntoTable();
        expect(again).toMatchObject({ in: COUNT, written: 0, deadLettered: 0, skipped: COUNT });
        expect(await counts()).toEqual([valid(1, COUNT), valid(1, COUNT)]);

        // The table dropped (its ledger rows stay) and the stream read again: an empty table holds
        // none of what the ledger claims, so every entry is written again; the dead letters are
        // still in their folder.
        await drop();
        await redis.send("XGROUP", ["SETID", stream, group, "0"]);
        const reloaded = await readIntoTable();
        expect(reloaded).toMatchObject({ in: COUNT, written: valid(1, COUNT), deadLettered: 0, skipped: COUNT - valid(1, COUNT) });
        expect(await counts()).toEqual([valid(1, COUNT), valid(1, COUNT)]);
      } finally {
        await drop().catch(() => {});
        if (db === "clickhouse") await ch(`ALTER TABLE _sluice_commits DELETE WHERE table_name = '${table}'`);
        await pool?.close();
      }
      expect((await pending(stream, group)).total).toBe(0);
    });
  }

  test("each branch of a merge of two streams sends its parse errors to its own dead-letter folder, not to the one subscribed last", async () => {
    const branches = [names(), names()];
    const COUNT = 1000;
    for (const { stream } of branches) await produce(stream, 1, COUNT);
    const out = join(dir.path, "merge-branches");
    const stop = new AbortController();
    let flow: Flow | undefined;
    const running = run(
      merge(
        ...branches.map(({ stream, group }, i) =>
          fromRedisStream({ url: URL, stream, group, from: "start" }).pipe(validate(Entry), deadLetter(join(out, `dead-${i}`), { maxFileAgeMs: 100 })),
        ),
      ).pipe(toParquet(join(out, "events"), { schema: Entry })),
      { signal: stop.signal, onStart: (f) => (flow = f) },
    );
    await until("both streams read", () => (flow?.stats.in ?? 0) >= 2 * COUNT);
    stop.abort();
    await running;
    const bad = Array.from({ length: COUNT }, (_, i) => i + 1).filter((i) => entryAt(i).kind !== "valid");
    for (const [i, { stream }] of branches.entries()) {
      const letters = [...readDeadLettersSync(join(out, `dead-${i}`))].map(({ entry }) => entry);
      // Parse errors (not JSON, no data field) and validation rejects alike, of this branch's stream only.
      expect(new Set(letters.map((e) => e.source))).toEqual(new Set([`redis:${stream}`]));
      expect(letters.length).toBe(bad.length);
    }
  });

  test("into replace-partition: entries handed out again are written again, since the run empties their partitions", async () => {
    const { stream, group } = names();
    const COUNT = 1200;
    await produce(stream, 1, COUNT);
    const out = join(dir.path, "sql-replace-set-back");
    const file = join(out, "events.db");
    const sink = () => toSql(`sqlite:${file}`, "events", { schema: Entry, mode: "replace-partition", partitionBy: ["zone"], create: true, batchRows: 250 });
    const first = await readUntil(out, stream, group, COUNT, { sink: sink(), batchSize: 300 });
    expect(first.written).toBe(valid(1, COUNT));
    await redis.send("XGROUP", ["SETID", stream, group, "0"]);
    // Each zone's first batch deletes the zone's rows of the first run: skipped as committed, they would be lost.
    const again = await readUntil(out, stream, group, COUNT, { sink: sink(), batchSize: 300 });
    expect(again.written).toBe(valid(1, COUNT));
    const sqlite = new Database(file, { readonly: true });
    try {
      expect(sqlite.query("SELECT count(*) AS n, count(DISTINCT id) AS d FROM events").get()).toEqual({ n: valid(1, COUNT), d: valid(1, COUNT) });
    } finally {
      sqlite.close();
    }
    expect((await pending(stream, group)).total).toBe(0);
  });

  test("two sinks of one run into one table: a batch of one never claims the entries the other still holds", async () => {
    const { stream, group } = names();
    const COUNT = 1000;
    await produce(stream, 1, COUNT);
    const out = join(dir.path, "sql-two-sinks");
    const file = join(out, "events.db");
    const rows = () => {
      const sqlite = new Database(file, { readonly: true });
      try {
        return sqlite.query("SELECT count(*) AS n, count(DISTINCT id) AS d FROM events").get() as { n: number; d: number };
      } finally {
        sqlite.close();
      }
    };
    // Even ids go to a sink that commits every 50 rows, odd ones to one that holds them (a long
    // batch age) until the run fails: its entries are then delivered again, uncommitted.
    const readInto = (holdOdd: boolean, crash: Observable<never>) => {
      let flow: Flow | undefined;
      const shared = fromRedisStream({ url: URL, stream, group, from: "start", batchSize: 100 }).pipe(validate(Entry), share());
      const sink = (batchRows: number, maxBatchAgeMs: number) => toSql(`sqlite:${file}`, "events", { schema: Entry, mode: "insert", create: true, batchRows, maxBatchAgeMs });
      const stop = new AbortController();
      const running = run(
        merge(
          shared.pipe(filter((e) => e.id % 2 === 0), sink(50, 100)),
          shared.pipe(filter((e) => e.id % 2 === 1), holdOdd ? sink(100_000, 600_000) : sink(50, 100)),
          crash,
        ).pipe(deadLetter(join(out, "dead"), { maxFileAgeMs: 100 })),
        { signal: stop.signal, onStart: (f) => (flow = f) },
      );
      return { running, stop, flow: () => flow };
    };
    const evens = Array.from({ length: COUNT }, (_, i) => i + 1).filter((i) => i % 2 === 0 && entryAt(i).kind === "valid").length;
    const crash = new Subject<never>();
    const first = readInto(true, crash);
    await until("the even entries committed", () => (first.flow()?.stats.written ?? 0) >= evens);
    crash.error(new Error("crash"));
    expect(await first.running.catch((e: Error) => e.message)).toBe("crash");
    expect(rows()).toEqual({ n: evens, d: evens });
    await redis.send("XGROUP", ["SETID", stream, group, "0"]);
    const again = readInto(false, EMPTY);
    await until("every entry read", () => (again.flow()?.stats.in ?? 0) >= COUNT);
    await until("every valid entry written or skipped", () => {
      const stats = again.flow()?.stats;
      return (stats?.written ?? 0) + (stats?.skipped ?? 0) >= valid(1, COUNT);
    });
    again.stop.abort();
    await again.running;
    expect(rows()).toEqual({ n: valid(1, COUNT), d: valid(1, COUNT) });
  });

  test("reads the committed files once connected, before it holds an entry", async () => {
    const { stream, group } = names();
    await produce(stream, 1, 500);
    const looks: number[] = [];
    await readUntil(join(dir.path, "ledger-first"), stream, group, 500, { started: (flow) => {
      flow.ledgers.add({ refresh: () => void looks.push(flow.stats.in) });
    } });
    expect(looks).toEqual([0]);
  });

  test("acknowledges nothing before the files holding the entries are committed", async () => {
    const { stream, group } = names();
    await produce(stream, 1, 300);
    const out = join(dir.path, "late");
    const stop = new AbortController();
    let flow: Flow | undefined;
    const running = run(
      fromRedisStream({ url: URL, stream, group, from: "start", batchSize: 50 }).pipe(
        validate(Entry),
        deadLetter(join(out, "dead"), { maxFileAgeMs: 600_000 }),
        toParquet(join(out, "events"), { schema: Entry, partitionBy: ["zone"], maxFileRows: 1_000_000, maxFileAgeMs: 600_000 }),
      ),
      { signal: stop.signal, onStart: (f) => (flow = f) },
    );
    await until("every entry read", () => (flow?.stats.in ?? 0) >= 300);
    await Bun.sleep(300);
    expect(parquetFiles(join(out, "events"))).toBe(0);
    expect((await pending(stream, group)).total).toBe(300);
    stop.abort();
    const summary = await running;
    expect(summary.files).toBe(3);
    expect((await pending(stream, group)).total).toBe(0);
  });

  test("stops reading while maxUnacked entries wait for their files, and goes on once they are acknowledged", async () => {
    const { stream, group } = names();
    await produce(stream, 1, 600);
    const out = join(dir.path, "bounded");
    const stop = new AbortController();
    let flow: Flow | undefined;
    const running = run(
      fromRedisStream({ url: URL, stream, group, from: "start", batchSize: 50, maxUnacked: 200 }).pipe(
        validate(Entry),
        deadLetter(join(out, "dead"), { maxFileAgeMs: 50 }),
        toParquet(join(out, "events"), { schema: Entry, partitionBy: ["zone"], maxFileRows: 1_000_000, maxFileAgeMs: 700 }),
      ),
      { signal: stop.signal, onStart: (f) => (flow = f) },
    );
    await until("the first entries read", () => (flow?.stats.in ?? 0) >= 200);
    await Bun.sleep(300);
    // Nothing is committed yet (the files roll at 700 ms): reading stopped at the bound.
    expect(flow?.stats.in).toBe(200);
    expect((await pending(stream, group)).total).toBe(200);
    // The age limit commits them; their acknowledgements let reading go on, to the end.
    await until("every entry read", () => (flow?.stats.in ?? 0) >= 600);
    stop.abort();
    await running;
    expect((await pending(stream, group)).total).toBe(0);
    const [row] = await query(`SELECT count(*) AS n, count(DISTINCT id) AS d FROM ${dataset(join(out, "events"))}`);
    expect(row).toEqual({ n: String(valid(1, 600)), d: String(valid(1, 600)) });
  });

  test("a run stopped while its next read is on the way acknowledges only what it emitted; a restart writes each entry once", async () => {
    const { stream, group } = names();
    const COUNT = 4000;
    await produce(stream, 1, COUNT);
    const out = join(dir.path, "ahead");
    const once = (signal: AbortSignal, onStart: (flow: Flow) => void) =>
      run(
        fromRedisStream({ url: URL, stream, group, consumer: "w", from: "start", batchSize: 100, blockMs: 50 }).pipe(
          validate(Entry),
          deadLetter(join(out, "dead"), { maxFileAgeMs: 50 }),
          toParquet(join(out, "events"), { schema: Entry, partitionBy: ["zone"], mode: "append", maxFileAgeMs: 100 }),
        ),
        { signal, onStart },
      );
    const stop = new AbortController();
    let flow: Flow | undefined;
    const first = once(stop.signal, (f) => (flow = f));
    await until("a quarter of the entries read", () => (flow?.stats.in ?? 0) >= 1000);
    stop.abort();
    const emitted = (await first).in;
    expect(emitted).toBeLessThan(COUNT);
    // Entries Redis handed out to a read that was still on its way stay pending on "w"; everything emitted is acknowledged.
    const delivered = COUNT - (await lag(stream, group));
    const left = await pending(stream, group);
    expect(left.total).toBe(delivered - emitted);
    if (left.total > 0) expect(left.by).toEqual({ w: left.total });
    const again = new AbortController();
    const second = once(again.signal, () => {});
    await until("every entry acknowledged", async () => (await lag(stream, group)) === 0 && (await pending(stream, group)).total === 0, 30_000);
    again.abort();
    await second;
    const [row] = await query(`SELECT count(*) AS n, count(DISTINCT id) AS d FROM ${dataset(join(out, "events"))}`);
    expect(row).toEqual({ n: String(valid(1, COUNT)), d: String(valid(1, COUNT)) });
    const letters = [...readDeadLettersSync(join(out, "dead"))].map((d) => d.entry.line);
    expect(letters.length).toBe(COUNT - valid(1, COUNT));
    expect(new Set(letters).size).toBe(letters.length);
  });

  test("acknowledges while running as files commit, not only at the end", async () => {
    const { stream, group } = names();
    await produce(stream, 1, 2000);
    const out = join(dir.path, "rolling");
    const stop = new AbortController();
    let flow: Flow | undefined;
    const running = run(
      fromRedisStream({ url: URL, stream, group, from: "start", batchSize: 100 }).pipe(
        validate(Entry),
        deadLetter(join(out, "dead"), { maxFileAgeMs: 50 }),
        toParquet(join(out, "events"), { schema: Entry, partitionBy: ["zone"], maxFileRows: 100_000, maxFileAgeMs: 100 }),
      ),
      { signal: stop.signal, onStart: (f) => (flow = f) },
    );
    await until("every entry read", () => (flow?.stats.in ?? 0) >= 2000);
    // The age limit commits the open files while the source waits for more entries.
    await until("every entry acknowledged while the run goes on", async () => (await pending(stream, group)).total === 0);
    expect(flow?.stopping).toBe(false);
    stop.abort();
    await running;
  });

  test("reads its own pending entries first after a restart, then takes over a dead consumer's idle ones", async () => {
    const { stream, group } = names();
    await redis.send("XGROUP", ["CREATE", stream, group, "0", "MKSTREAM"]);
    await produce(stream, 1, 30);
    // Two consumers that read and died without acknowledging: "me" (this reader, before a restart) and "gone".
    await redis.send("XREADGROUP", ["GROUP", group, "me", "COUNT", "10", "STREAMS", stream, ">"]);
    await redis.send("XREADGROUP", ["GROUP", group, "gone", "COUNT", "10", "STREAMS", stream, ">"]);
    const started = Date.now();
    const records: unknown[] = await lastValueFrom(
      // A claim idle time a busy machine's stalls stay well inside (a live reader that cannot renew
      // its entries for most of it fails its run: see "lost hold" in docs/brokers.md).
      fromRedisStream({ url: URL, stream, group, consumer: "me", claimIdleMs: 1500, blockMs: 50 }).pipe(
        deadLetter(() => {}),
        take(28),
        toArray(),
      ),
    );
    const ids = records.map((r) => (r as { id: number }).id);
    // Its own 10 first (entries 1-10, two of them bad), then the 10 new ones, then "gone"'s after 1,500 ms idle.
    expect(ids.slice(0, 9)).toEqual([1, 2, 3, 4, 5, 6, 8, 9, 10]);
    expect(new Set(ids)).toEqual(new Set(Array.from({ length: 30 }, (_, i) => i + 1).filter((i) => entryAt(i).kind !== "notJson" && entryAt(i).kind !== "noField")));
    expect(Date.now() - started).toBeGreaterThanOrEqual(1450);
    // No record was made durable: the 28 stay pending, now all on "me". (A dead letter handed to a
    // function counts as durable, so a bad entry may be acknowledged.)
    const left = await pending(stream, group);
    expect(left.by).toEqual({ me: left.total });
    expect(left.total).toBeGreaterThanOrEqual(28);
  });

  test("keeps held entries from being taken over while it holds them", async () => {
    const { stream, group } = names();
    await produce(stream, 1, 100);
    const out = join(dir.path, "held");
    const stop = new AbortController();
    let flow: Flow | undefined;
    const running = run(
      fromRedisStream({ url: URL, stream, group, consumer: "holder", from: "start", claimIdleMs: 1500 }).pipe(
        validate(Entry),
        deadLetter(join(out, "dead"), { maxFileAgeMs: 600_000 }),
        toParquet(join(out, "events"), { schema: Entry, partitionBy: ["zone"], maxFileAgeMs: 600_000 }),
      ),
      { signal: stop.signal, onStart: (f) => (flow = f) },
    );
    await until("every entry read", () => (flow?.stats.in ?? 0) >= 100);
    await Bun.sleep(4500);
    // Three times claimIdleMs later, another consumer's XAUTOCLAIM finds nothing idle enough.
    const claimed = (await redis.send("XAUTOCLAIM", [stream, group, "thief", "1500", "0-0", "COUNT", "1000"])) as [string, unknown[]];
    expect(claimed[1].length).toBe(0);
    stop.abort();
    await running;
    expect((await pending(stream, group)).total).toBe(0);
  });

  test("an entry read while the sink's gate is closed, after an empty read, is held and kept alive at once: no other consumer takes it over", async () => {
    const { stream, group } = names();
    await produce(stream, 1, 5);
    const out = join(dir.path, "gate-in-flight");
    const stop = new AbortController();
    let flow: Flow | undefined;
    let release: (() => void) | undefined;
    // batchSize 5: the first read takes all five; the reads sent before they are emitted find
    // nothing for blockMs, and the next one is still blocked in Redis when the sixth is added.
    const running = run(
      fromRedisStream({ url: URL, stream, group, consumer: "gated", from: "start", batchSize: 5, blockMs: 1000, claimIdleMs: 4000, keepAliveMs: 500 }).pipe(
        tap(() => {
          // The sink's memory budget is spent from the first record on.
          if (flow && !release) release = holdGate(flow);
        }),
        validate(Entry),
        toParquet(join(out, "events"), { schema: Entry, partitionBy: ["zone"], maxFileAgeMs: 600_000 }),
      ),
      { signal: stop.signal, onStart: (f) => (flow = f) },
    );
    try {
      await until("the first five read", () => (flow?.stats.in ?? 0) >= 5);
      // After the empty read timed out (blockMs), while the one behind it waits in Redis.
      await Bun.sleep(1500);
      await produce(stream, 6, 6);
      await until("the sixth delivered to the reader", async () => (await pending(stream, group)).total === 6);
      // Past claimIdleMs: a held entry has had its idle time reset meanwhile.
      await Bun.sleep(4500);
      const claimed = (await redis.send("XAUTOCLAIM", [stream, group, "thief", "4000", "0-0", "COUNT", "10"])) as [string, [string, unknown][]];
      expect(claimed[1].map(([id]) => id)).toEqual([]);
    } finally {
      release?.();
      stop.abort();
      await running.catch(() => {});
    }
  });

  test("decodes entries with a custom decoder, and dead-letters the entries it throws on", async () => {
    const { stream, group } = names();
    await redis.send("XADD", [stream, "*", "user", "u1", "amount", "12.5"]);
    const second = (await redis.send("XADD", [stream, "*", "user", "u2", "amount", "lots"])) as string;
    const letters: { stage: string; error: string; line: number }[] = [];
    const records: unknown[] = await lastValueFrom(
      fromRedisStream({
        url: URL,
        stream,
        group,
        from: "start",
        decode: (fields) => {
          const amount = Number(fields.amount);
          if (Number.isNaN(amount)) throw new Error(`amount "${fields.amount}" is not a number`);
          return { user: fields.user, amount };
        },
      }).pipe(
        deadLetter((entry) => letters.push(entry)),
        take(1),
        toArray(),
      ),
    );
    await until("the second entry dead-lettered", () => letters.length === 1);
    expect(JSON.parse(JSON.stringify(records))).toEqual([{ user: "u1", amount: 12.5 }]);
    expect(letters[0]?.stage).toBe("parse");
    // The line is the entry id's (ms × 2048 + seq), the same for every reader.
    expect(letters[0]?.line).toBe(lineOfId(second) as number);
    expect(letters[0]?.error).toContain('decode threw: amount "lots" is not a number');
  });

  test("entries whose ids have no exact line (explicit ids with a huge sequence) are still written, numbered in their run", async () => {
    const { stream, group } = names();
    // 5-4096 and 5-99999999 are beyond 2048 entries a millisecond; 2^42 ms is beyond the year 2109.
    const ids = ["1-1", "5-4096", "5-99999999", `${2 ** 42}-0`, `${2 ** 42}-1`];
    for (const [i, id] of ids.entries()) {
      const fields = i === 2 ? ["data", "{oops"] : ["data", JSON.stringify({ id: i + 1, zone: "a", n: (i + 1) * 2 })];
      await redis.send("XADD", [stream, id, ...fields]);
    }
    const out = join(dir.path, "odd-ids");
    const stop = new AbortController();
    let flow: Flow | undefined;
    const running = run(
      fromRedisStream({ url: URL, stream, group, from: "start", blockMs: 50 }).pipe(
        validate(Entry),
        deadLetter(join(out, "dead"), { maxFileAgeMs: 50 }),
        toParquet(join(out, "events"), { schema: Entry, mode: "append" }),
      ),
      { signal: stop.signal, onStart: (f) => (flow = f), runId: "odd-ids" },
    );
    await until("every entry read", () => (flow?.stats.in ?? 0) >= ids.length);
    stop.abort();
    expect(await running).toMatchObject({ in: 5, written: 4, deadLettered: 1 });
    const [row] = await query(`SELECT count(*)::INT AS n, count(DISTINCT id)::INT AS d FROM ${dataset(join(out, "events"))}`);
    expect(row).toEqual({ n: 4, d: 4 });
    const [letter] = [...readDeadLettersSync(join(out, "dead"))].map((d) => d.entry);
    // Its id has no exact line: it is numbered in this run's own input.
    expect(letter?.source).toBe(`redis:${stream}~odd-ids`);
    expect(letter?.error).toContain("entry 5-99999999");
    expect((await pending(stream, group)).total).toBe(0);
  });

  test("two sources with the default consumer name get names of their own, and both receive entries", async () => {
    // Under one name (hostname-pid, the old default, also what two containers on the host network
    // running as pid 1 share) the two would share one pending-entries list.
    const { stream, group } = names();
    await produce(stream, 100, 129);
    const stop = new AbortController();
    const flows: Flow[] = [];
    const start = (side: string) =>
      run(
        // maxUnacked holds each reader to 10 entries (plus one read ahead) until its file commits at the stop.
        fromRedisStream({ url: URL, stream, group, from: "start", batchSize: 10, maxUnacked: 10, blockMs: 50 }).pipe(
          validate(Entry),
          deadLetter(join(dir.path, `names-${side}`, "dead")),
          toParquet(join(dir.path, `names-${side}`, "events"), { schema: Entry, maxFileRows: 1_000_000 }),
        ),
        { signal: stop.signal, onStart: (f) => flows.push(f) },
      );
    const running = [start("a"), start("b")];
    // The readers create the group: until then XPENDING finds none.
    await until("both readers holding entries", async () => Object.keys((await pending(stream, group).catch(() => ({ by: {} }))).by).length === 2);
    await until("every read entry counted", async () => (await pending(stream, group)).total === flows.reduce((n, f) => n + f.stats.in, 0));
    const held = await pending(stream, group);
    const consumers = Object.keys(held.by);
    for (const consumer of consumers) {
      expect(consumer.slice(0, -7)).toBe(`${hostname()}-${process.pid}`);
      expect(consumer.slice(-7)).toMatch(/^-[0-9a-f]{6}$/);
      expect(held.by[consumer]).toBeGreaterThanOrEqual(10);
    }
    stop.abort();
    const summaries = await Promise.all(running);
    expect((await pending(stream, group)).total).toBe(0);
    const [row] = await query(
      `SELECT count(*) AS n, count(DISTINCT id) AS d, min(id) >= 100 AND max(id) <= 129 AS ok FROM ${dataset(join(dir.path, "names-*", "events"))}`,
    );
    const read = summaries.reduce((n, s) => n + s.in, 0);
    expect(read).toBe(held.total);
    expect(row).toEqual({ n: String(read), d: String(read), ok: true });
    // With nothing pending, each left the group: a default name is never used again.
    await until("both readers gone from the group", async () => (await consumersOf(stream, group)).length === 0);
  });

  test("a reader under a name of its own stays in the group after a clean stop", async () => {
    const { stream, group } = names();
    await produce(stream, 1, 20);
    const stop = new AbortController();
    let flow: Flow | undefined;
    const running = run(
      fromRedisStream({ url: URL, stream, group, from: "start", consumer: "worker-a", blockMs: 50 }).pipe(
        validate(Entry),
        deadLetter(join(dir.path, "named", "dead")),
        toParquet(join(dir.path, "named", "events"), { schema: Entry }),
      ),
      { signal: stop.signal, onStart: (f) => (flow = f) },
    );
    await until("every entry read", () => (flow?.stats.in ?? 0) >= 20);
    stop.abort();
    await running;
    await until("nothing pending", async () => (await pending(stream, group)).total === 0);
    await Bun.sleep(200);
    expect(await consumersOf(stream, group)).toEqual(["worker-a"]);
  });

  test("refuses timings under which held entries could be taken over: keep-alives too rare, or reads blocking too long for the lease", () => {
    expect(() => fromRedisStream({ stream: "s", group: "g", claimIdleMs: 1000, keepAliveMs: 600 })).toThrow("keepAliveMs (600) must be at most half of claimIdleMs (1000)");
    // Reads queue behind a blocking one: what the last brings counts as held since it was sent.
    expect(() => fromRedisStream({ stream: "s", group: "g", claimIdleMs: 60_000, blockMs: 25_000 })).toThrow("blockMs (25000) must be less than 25000 ms with claimIdleMs 60000 and keepAliveMs 10000");
    expect(() => fromRedisStream({ stream: "s", group: "g", claimIdleMs: 60_000, blockMs: 24_999 })).not.toThrow();
    // Left to its default, blockMs shortens to fit a short claimIdleMs.
    expect(() => fromRedisStream({ stream: "s", group: "g", claimIdleMs: 1500 })).not.toThrow();
  });

  test("a Redis that cannot be reached fails the run, naming the URL without its password", async () => {
    const { stream, group } = names();
    const error = await run(fromRedisStream({ url: "redis://app:s3cr3t-pw@127.0.0.1:1", stream, group }).pipe(toArray())).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(error?.message).toContain("redis://app:***@127.0.0.1:1");
    expect(error?.message).toContain(stream);
    expect(JSON.stringify({ message: error?.message, stack: error?.stack, cause: String(error?.cause) })).not.toContain("s3cr3t");
  });

  test("survives being killed mid-stream: every valid entry lands exactly once, a restart re-reads its pending entries, another consumer takes over", async () => {
    const { stream, group } = names();
    const TOTAL = 6000;
    const out = join(dir.path, "crash");
    const events = join(out, "events");
    const fixture = join(import.meta.dir, "../fixtures/redis-to-parquet.ts");
    const start = (consumer: string) =>
      Bun.spawn(["bun", fixture, stream, group, consumer, out, "3000"], { stdout: "pipe", stderr: "pipe" });
    // Entries keep arriving while the readers run and die.
    const producing = (async () => {
      for (let from = 1; from <= TOTAL; from += 300) {
        await produce(stream, from, from + 299);
        await Bun.sleep(40);
      }
    })();

    const first = start("a");
    await until("a first file", () => parquetFiles(events) >= 3);
    first.kill("SIGKILL");
    await first.exited;
    const afterFirst = parquetFiles(events);

    const second = start("a");
    await until("more files after the restart", () => parquetFiles(events) >= afterFirst + 3);
    second.kill("SIGKILL");
    await second.exited;
    const leftOnA = (await pending(stream, group)).by.a ?? 0;
    expect(leftOnA).toBeGreaterThan(0);

    await producing;
    const third = start("b");
    await until("every entry delivered and a's pending ones taken over", async () => {
      const p = await pending(stream, group);
      return (await lag(stream, group)) === 0 && (p.by.a ?? 0) === 0;
    });
    third.kill("SIGTERM");
    expect(await third.exited).toBe(0);
    const summary = JSON.parse((await new Response(third.stdout).text()).trim().split("\n").at(-1) as string);
    expect(summary.stopped).toBe(true);

    expect((await pending(stream, group)).total).toBe(0);
    const [row] = await query(`SELECT count(*) AS n, count(DISTINCT id) AS d FROM ${dataset(events)}`);
    // Nothing lost, nothing twice: entries committed before a kill and not yet acknowledged come back
    // redelivered, and the ledger (the committed files' footers) skips them.
    expect(Number(row?.d)).toBe(valid(1, TOTAL));
    expect(Number(row?.n)).toBe(Number(row?.d));
    const [bad] = await query(`SELECT count(*) AS n FROM ${dataset(events)} WHERE n <> id * 2`);
    expect(bad?.n).toBe("0");
    const letters = [...readDeadLettersSync(join(out, "dead-letter"))].map((d) => d.entry.raw);
    expect(new Set(letters).size).toBe(TOTAL - valid(1, TOTAL));
    expect(letters.length).toBe(TOTAL - valid(1, TOTAL));
    console.log(`redis crash test: ${Number(row?.n) - Number(row?.d)} duplicate rows of ${row?.d} (${leftOnA} entries left pending on the killed consumer)`);
  });
});
