/**
 * `toSql`: the sink that loads records into a PostgreSQL, MySQL/MariaDB or SQLite table, in
 * batches, one transaction per batch, with the same guarantees as the Parquet sink: bounded
 * memory, nothing lost, nothing written twice under a checkpoint, errors naming the target.
 */
import { resolve } from "node:path";
import { Observable, type OperatorFunction } from "rxjs";
import type * as v from "valibot";
import type { CommitRange } from "../checkpoint/checkpoint.ts";
import { announceDurable, hold } from "../flow/durable.ts";
import { currentFlow, holdGate, joinFlow, observeCommitLatency, positionIn, sendToDeadLetter, withFlow } from "../flow/flow.ts";
import { countOutput, type Input, type Position } from "../flow/position.ts";
import { percentAdvice, scrub, secretsOf } from "../io/credentials.ts";
import { columnsOf, SchemaError } from "../schema/columns.ts";
import { fieldOf, inheritedName } from "../schema/fields.ts";
import {
  canonicalValue,
  type Dialect,
  describeUrl,
  type LedgerContents,
  LINEAGE_COLUMNS,
  Mismatch,
  messageOf,
  partitionKeyOf,
  type SqlColumn,
  type SqlMode,
  SqlWriteError,
} from "./sql/dialect.ts";
import { Ranges } from "./ledger.ts";
import { ClickHouseDialect } from "./sql/clickhouse.ts";
import { MysqlDialect } from "./sql/mysql.ts";
import { PostgresDialect } from "./sql/postgres.ts";
import { SqliteDialect } from "./sql/sqlite.ts";

export { SqlWriteError, type SqlMode } from "./sql/dialect.ts";

/** Options of {@link toSql}. */
export interface SqlSinkOptions<T> {
  /** The valibot object schema of the records: it decides the columns and their types. */
  readonly schema: v.GenericSchema<unknown, T>;
  /**
   * `insert` adds every row (a row the table's keys refuse is a dead letter); `upsert` inserts or
   * replaces by `key`; `replace-partition` deletes, the first time the run meets a value of
   * `partitionBy`, every row of the table holding it, then inserts: a re-run of a day replaces that day.
   */
  readonly mode: SqlMode;
  /** The columns that identify a row (required for `upsert`; the primary key when `create` makes the table). */
  readonly key?: readonly (keyof T & string)[];
  /** The columns whose values name a partition (required for `replace-partition`). */
  readonly partitionBy?: readonly (keyof T & string)[];
  /** Create the table from the schema when it does not exist (default false: it must exist). */
  readonly create?: boolean;
  /** Rows per batch and transaction (default 10,000). At most three batches are in memory (one filling, two being written). */
  readonly batchRows?: number;
  /** A batch is written after at most this long, even when not full (default 5,000 ms). */
  readonly maxBatchAgeMs?: number;
  /** Add `_sluice_run_id`, `_sluice_input` and `_sluice_line` columns naming where each row came from. */
  readonly lineage?: boolean;
}

/** A committed batch, emitted once its transaction has committed. */
export interface SqlCommit {
  /** The database, without credentials (`postgres://host:5432/db`, `sqlite:path`). */
  readonly target: string;
  readonly table: string;
  /** Rows the batch wrote (inserted, updated or, in an upsert, superseded by a later row of the batch). */
  readonly rows: number;
  /** Rows the database refused: each one is a dead letter at stage `write`. */
  readonly refused: number;
  /** Rows an earlier run of the same checkpoint had already committed: not written again. */
  readonly skipped: number;
  /**
   * For each input, ranges of lines: every record of that input whose line is in a range is in
   * the table, from this batch or an earlier one. The same ranges are in `_sluice_commits`.
   */
  readonly sources: readonly CommitRange[];
}

interface Batch {
  readonly rows: unknown[][];
  readonly records: unknown[];
  readonly positions: Position[];
  /** Lowest and highest line of each input in the batch. */
  readonly spans: Map<Input, { first: number; last: number }>;
  /** Partition values by key, in the order first met (replace-partition). */
  readonly partitions: Map<string, unknown[]>;
  readonly openedAt: number;
}

function newBatch(): Batch {
  return { rows: [], records: [], positions: [], spans: new Map(), partitions: new Map(), openedAt: Date.now() };
}

/**
 * The batches each sink of a run holds, by the table it writes (target and name). Two sinks of one
 * run writing one table share its ledger: a batch of one must not claim lines the other holds,
 * settled (handed to a sink) but not committed, or a redelivery after a crash skips them as written.
 */
const sinksByTable = new WeakMap<object, Map<string, Set<() => Batch[]>>>();

/**
 * The dialect a URL names. A database URL its client cannot read (Bun's says only "URI error" or
 * "Invalid URL") fails with a {@link SqlWriteError} naming the target, without the password.
 */
function dialectOf(url: string, table: string): Dialect {
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(url)?.[1]?.toLowerCase();
  const open = (Kind: new (url: string) => Dialect): Dialect => {
    try {
      return new Kind(url);
    } catch (error) {
      throw new SqlWriteError(describeUrl(url), table, `cannot use the URL (${scrub(messageOf(error), secretsOf(url))})${percentAdvice(error)}`, error);
    }
  };
  if (scheme === "postgres" || scheme === "postgresql") return open(PostgresDialect);
  if (scheme === "mysql" || scheme === "mariadb") return open(MysqlDialect);
  if (scheme === "clickhouse") return open(ClickHouseDialect);
  if (scheme === undefined || scheme === "sqlite" || scheme === "file") return new SqliteDialect(url);
  throw new Error(`toSql: unsupported database URL scheme "${scheme}:" (use postgres://, mysql://, mariadb://, clickhouse://, sqlite: or a file path)`);
}

/**
 * Loads records into the table `table` of the database at `url` and emits a {@link SqlCommit}
 * per committed batch.
 *
 * `url` is `postgres://user:password@host:port/db`, `mysql://` or `mariadb://...`, or
 * `sqlite:path` (also a plain file path). Columns come from the schema as in `toParquet`: text,
 * bigint, double, boolean, timestamp (UTC, microseconds), date, and JSON for nested values; with
 * `create: true` the table is made from them (key columns become its primary key). Records are
 * gathered into batches of `batchRows`; each batch is one transaction that also records its line
 * ranges in the table `_sluice_commits` (created beside it), so the database itself knows what
 * landed. While a batch is being written the next one fills; when it is full the sources wait.
 * Insert batches into PostgreSQL or MySQL/MariaDB are written two at a time on two connections
 * (their order does not matter); upserts and partition replacement one at a time.
 *
 * A value that does not fit its column (a string in an integer column, a missing required field)
 * is a dead letter at stage `write` before anything is sent. A row the database refuses (NOT NULL,
 * CHECK, UNIQUE in `insert` mode, a value out of the range of the table's own column type) is a
 * dead letter at stage `write` with the database's message, and the rest of its batch lands: the
 * batch is split in halves inside savepoints until the refused rows stand alone.
 *
 * With `run(..., { checkpoint })`, a run resumed after a crash skips every record of a resumed
 * input (a file source) whose line an earlier run of that checkpoint committed (read from
 * `_sluice_commits`), so each row is written once even in `insert` mode; sources that read
 * everything again (`fromHttp`, `fromPush`...) are written again. Under a fresh checkpoint the ledger rows of an older checkpoint of
 * the same path are forgotten. Broker sources acknowledge a message once its batch has committed.
 *
 * Completes after the last batch has committed and the connection is closed. Errors with a
 * {@link SqlWriteError} naming the target (never its password) and the table when the database
 * cannot be reached, the table is missing a column, or a batch fails for another reason than a
 * row's data; batches committed before stay. Unsubscribing drops the batch being filled and lets
 * the one in flight finish.
 *
 * @example
 * fromNdjson("orders.ndjson").pipe(
 *   validate(Order),
 *   deadLetter("out/dead-letter"),
 *   toSql("postgres://app@db:5432/shop", "orders", { schema: Order, mode: "upsert", key: ["order_id"], create: true }),
 * );
 */
export function toSql<T>(url: string, table: string, options: SqlSinkOptions<T>): OperatorFunction<T, SqlCommit> {
  const fields = columnsOf(options.schema as v.GenericSchema);
  // Which fields are read as the row's own only (a "constructor" column): decided once, not per cell.
  const ownOnly = fields.map((field) => inheritedName(field.name));
  const key: readonly string[] = options.key ?? [];
  const partitionBy: readonly string[] = options.partitionBy ?? [];
  for (const [option, names] of [["key", key], ["partitionBy", partitionBy]] as const) {
    for (const name of names) {
      const field = fields.find((f) => f.name === name);
      if (!field) {
        throw new SchemaError(name, `toSql ${table}: ${option} names it, but the schema has no such field (its fields: ${fields.map((f) => f.name).join(", ")})`);
      }
      if (field.kind === "list" || field.kind === "struct" || field.kind === "json") {
        throw new SchemaError(name, `toSql ${table}: a ${field.kind} column cannot be in ${option}`);
      }
    }
  }
  if (options.mode === "upsert" && key.length === 0) throw new Error(`toSql ${table}: mode "upsert" needs key: the columns that identify a row`);
  if (options.mode === "replace-partition" && partitionBy.length === 0) {
    throw new Error(`toSql ${table}: mode "replace-partition" needs partitionBy: the columns whose values name a partition`);
  }
  const columns: SqlColumn[] = fields.map((f) => ({
    name: f.name,
    kind: f.kind,
    nullable: f.nullable && !key.includes(f.name),
    key: key.includes(f.name),
    indexed: key.includes(f.name) || partitionBy.includes(f.name),
  }));
  if (options.lineage) {
    for (const lineage of LINEAGE_COLUMNS) {
      if (fields.some((f) => f.name === lineage.name)) throw new SchemaError(lineage.name, "is a lineage column name; rename the field or leave lineage off");
      columns.push(lineage);
    }
  }
  // Only replace-partition empties partitions: under insert and upsert, partitionBy only indexes.
  const partitionIndexes = options.mode === "replace-partition" ? partitionBy.map((name) => fields.findIndex((f) => f.name === name)) : [];
  const batchRows = Math.max(1, Math.floor(options.batchRows ?? 10_000));
  const maxBatchAgeMs = options.maxBatchAgeMs ?? 5_000;

  return function sqlSink(source) {
    return new Observable<SqlCommit>((subscriber) => {
      const flow = currentFlow(subscriber);
      let dialect: Dialect;
      try {
        dialect = dialectOf(url, table);
      } catch (error) {
        subscriber.error(error);
        return;
      }
      const held = () => [pending, ...full, ...inflight];
      let byTable = sinksByTable.get(flow);
      if (!byTable) sinksByTable.set(flow, (byTable = new Map()));
      const tableKey = `${dialect.target}\u0000${table}`;
      let sameTable = byTable.get(tableKey);
      if (!sameTable) byTable.set(tableKey, (sameTable = new Set()));
      sameTable.add(held);
      const checkpoint = flow.checkpoint;
      const checkpointName = checkpoint ? resolve(checkpoint.path) : null;
      let ledger: LedgerContents = { ranges: new Map(), replaced: new Set() };
      // The checkpoint's ranges of each input, as looked up.
      const resumed = new Map<string, Ranges>();
      // What the table holds of records a broker delivered again, by input: read when such a
      // record came after the last read (see Position.redelivered), as toParquet's ledger does.
      const delivered = new Map<string, Ranges>();
      let deliveredLookedAt = Number.NEGATIVE_INFINITY;
      // The last read, which a batch written beside the one that started it waits for too.
      let deliveredRead: Promise<void> = Promise.resolve();
      // Whether the ledger's rows of earlier runs can be believed: not when the table is empty.
      let earlierRuns = true;
      const ready = (async () => {
        await dialect.prepare({ table, columns, mode: options.mode, key, partitionBy, create: options.create ?? false });
        // The ledger outlives the rows it claims: a table dropped (and made again), truncated or
        // emptied keeps its _sluice_commits rows. An empty table holds none of what they claim, so
        // only this run's own commits are looked up in it.
        earlierRuns = await dialect.hasRows();
        if (checkpoint && checkpointName) {
          // A fresh checkpoint is a new load: what older runs under the same path recorded does not apply.
          if (checkpoint.fresh) await dialect.clearLedger(checkpointName);
          else if (earlierRuns) ledger = await dialect.readLedger(checkpointName);
        }
      })();
      ready.catch((error) => fail(error));

      // The batch filling; full batches waiting their turn (more than one only when a source's
      // chunk outran the gate); the batch being written.
      let pending = newBatch();
      const full: Batch[] = [];
      const inflight = new Set<Batch>();
      // Inserts commute, so two batches may be written at once on two connections: each one's
      // round trips wait for the event loop, which the sources keep busy parsing. Upserts and
      // partition replacement depend on the order of their batches: one at a time.
      const parallel = options.mode === "insert" ? dialect.parallel : 1;
      let release: (() => void) | undefined;
      let completing = false;
      let failed = false;
      let closed = false;
      let lastSave = 0;
      // Partitions this run (or an earlier run of its checkpoint) has emptied already.
      const replaced = new Set<string>();
      // Lines the database refused, by input: a later batch's range must not claim them.
      const refusedLines = new Map<Input, number[]>();

      const stopHolding = hold(flow, (note) => {
        for (const batch of [pending, ...full, ...inflight]) {
          for (const [input, span] of batch.spans) note(input.name, span.first);
        }
      });

      function fail(error: unknown) {
        if (failed) return;
        failed = true;
        release?.();
        release = undefined;
        subscriber.error(error);
      }

      function append(record: T) {
        const position = positionIn(flow, record);
        if (!position || typeof record !== "object" || record === null) {
          reject(record, position, `a row must be an object, got ${record === null ? "null" : typeof record}`);
          return;
        }
        const row = record as Record<string, unknown>;
        const values: unknown[] = new Array(columns.length);
        for (let i = 0; i < fields.length; i++) {
          const field = fields[i] as (typeof fields)[number];
          const value = canonicalValue(field, fieldOf(row, field.name, ownOnly[i] as boolean), dialect.storesNonFinite);
          if (value instanceof Mismatch) {
            reject(record, position, value.message);
            return;
          }
          const refusal = value === null ? undefined : dialect.refuse?.(field.kind, value);
          if (refusal !== undefined) {
            reject(record, position, `column "${field.name}": ${refusal}`);
            return;
          }
          values[i] = value;
        }
        if (partitionIndexes.length > 0) {
          const parts = partitionIndexes.map((i) => values[i]);
          const partitionKey = partitionKeyOf(parts);
          if (!pending.partitions.has(partitionKey)) pending.partitions.set(partitionKey, parts);
        }
        for (let i = 0; i < fields.length; i++) values[i] = dialect.encode((fields[i] as (typeof fields)[number]).kind, values[i]);
        if (options.lineage) {
          values[fields.length] = dialect.encode("utf8", flow.runId);
          values[fields.length + 1] = dialect.encode("utf8", position.input.name);
          values[fields.length + 2] = dialect.encode("int64", position.line);
        }
        pending.rows.push(values);
        pending.records.push(record);
        pending.positions.push(position);
        const span = pending.spans.get(position.input);
        if (!span) pending.spans.set(position.input, { first: position.line, last: position.line });
        else if (position.line < span.first) span.first = position.line;
        else if (position.line > span.last) span.last = position.line;
        position.input.settle(position.line);
        flow.stats.buffered++;
        if (pending.rows.length >= batchRows) {
          full.push(pending);
          pending = newBatch();
          if (inflight.size < parallel) next();
          else release ??= holdGate(flow);
        }
      }

      /** Sends a row the sink or the database refused to the dead letter; a batch's ranges leave its line out. */
      function reject(record: unknown, position: Position | undefined, problem: string) {
        if (position) {
          const lines = refusedLines.get(position.input);
          if (!lines) refusedLines.set(position.input, [position.line]);
          else {
            lines.push(position.line);
            // Only a batch reaching back below lines it already passed (reordered records) needs old ones.
            if (lines.length > 10_000) lines.splice(0, lines.length - 10_000);
          }
        }
        try {
          sendToDeadLetter(flow, "write", problem, record, position);
        } catch (error) {
          fail(error);
        }
      }

      /** Starts writing a batch; the source may read on once no full batch waits. */
      function send(batch: Batch) {
        if (release && full.length === 0) {
          release();
          release = undefined;
        }
        inflight.add(batch);
        const started = performance.now();
        const write = ready
          .then(() => writeBatch(batch))
          .then(
            (commit) => {
              inflight.delete(batch);
              flow.stats.buffered -= batch.rows.length;
              flow.stats.written += commit.rows;
              observeCommitLatency(flow.stats, (performance.now() - started) / 1000);
              announceDurable(flow);
              saveCheckpointSoon();
              if (!failed) subscriber.next(commit);
              next();
            },
            (error) => {
              inflight.delete(batch);
              fail(error instanceof SqlWriteError ? error : new SqlWriteError(dialect.target, table, (error as Error)?.message ?? String(error), error));
            },
          )
          .finally(() => flow.settling.delete(write));
        flow.settling.add(write);
      }

      /** While fewer than `parallel` batches are in flight: the next full one, or at the end the last one; then the end itself. */
      function next() {
        if (failed || closed) return;
        while (inflight.size < parallel) {
          const batch = full.shift();
          if (batch) send(batch);
          else if (completing && pending.rows.length > 0) {
            const last = pending;
            pending = newBatch();
            send(last);
          } else break;
        }
        if (completing && inflight.size === 0) finish();
      }

      async function writeBatch(batch: Batch): Promise<SqlCommit> {
        const checkpointed = checkpoint !== undefined && ledger.ranges.size > 0;
        await lookUpDelivered(batch);
        const keep: number[] = [];
        let skipped = 0;
        for (let i = 0; i < batch.rows.length; i++) {
          const position = batch.positions[i] as Position;
          // Only an input the checkpoint resumes is the same input again: another source's line N
          // on this run may be a record no run has written (fromHttp on tomorrow's data).
          if (checkpointed && checkpoint.resumes(position.input.name) && inLedger(position.input.name, position.line)) skipped++;
          else if (isRedelivered(position) && delivered.get(position.input.name)?.has(position.line)) skipped++;
          else keep.push(i);
        }
        const fresh = [...batch.partitions].filter(([partitionKey]) => !replaced.has(partitionKey) && !ledger.replaced.has(partitionKey));
        const rows = keep.map((i) => batch.rows[i] as unknown[]);
        const refusals = await dialect.write({
          rows,
          replace: fresh.map(([, values]) => values),
          ledger: {
            runId: flow.runId,
            checkpoint: checkpointName,
            // Asked for once the refused rows are known, so the ledger never claims them.
            ranges: (refused) => rangesOf(batch, refused.map((r) => keep[r.index] as number)),
            replaced: fresh.length > 0 ? JSON.stringify(fresh.map(([partitionKey]) => partitionKey)) : null,
          },
        });
        for (const [partitionKey] of fresh) replaced.add(partitionKey);
        flow.stats.skipped += skipped;
        // Each row's output: skipped or written here, a refused one as its dead letter below.
        const refused = new Set(refusals.map((r) => keep[r.index] as number));
        for (let i = 0; i < batch.rows.length; i++) if (!refused.has(i)) countOutput(batch.positions[i] as Position);
        for (const { index, message } of refusals) {
          const i = keep[index] as number;
          const position = batch.positions[i] as Position;
          reject(batch.records[i], position, `${dialect.target} table "${table}" refused the row: ${message}`);
        }
        return {
          target: dialect.target,
          table,
          rows: rows.length - refusals.length,
          refused: refusals.length,
          skipped,
          sources: rangesOf(batch, refusals.map((r) => keep[r.index] as number)),
        };
      }

      /**
       * A broker source's record may be in the table already when the broker delivered it before
       * (to a reader that crashed between its commit and its acknowledgement, or that the broker
       * forgot): such records carry the moment by which any earlier commit of them was made. Not
       * for a distributed run's splits, whose inputs are paths: the ledger rows do not say which
       * job wrote them, and another job may have read another file at the same path.
       */
      function isRedelivered(position: Position): boolean {
        return position.redelivered !== undefined && flow.distribution === undefined;
      }

      /** Reads the ledger rows of the batch's redelivered inputs when one of its records came after the last read. */
      async function lookUpDelivered(batch: Batch): Promise<void> {
        let latest = Number.NEGATIVE_INFINITY;
        const sources = new Set<string>();
        for (const position of batch.positions as Position[]) {
          if (!isRedelivered(position)) continue;
          sources.add(position.input.name);
          if ((position.redelivered as number) > latest) latest = position.redelivered as number;
        }
        if (sources.size === 0) return;
        if (latest < deliveredLookedAt && [...sources].every((source) => delivered.has(source))) return deliveredRead;
        deliveredLookedAt = performance.now();
        const previous = deliveredRead;
        deliveredRead = (async () => {
          // Reads answer in order of their start: a later one never lands before an earlier one.
          await previous.catch(() => {});
          // A run that empties partitions deletes what earlier runs committed in them, before or
          // after the record comes: only its own commits are surely still in the table.
          const read = await dialect.readSources([...sources], earlierRuns && partitionIndexes.length === 0 ? undefined : flow.runId);
          for (const source of sources) delivered.set(source, linesOf(read, source));
        })();
        return deliveredRead;
      }

      function inLedger(source: string, line: number): boolean {
        let ranges = resumed.get(source);
        if (!ranges) resumed.set(source, (ranges = linesOf(ledger, source)));
        return ranges.has(line);
      }

      /**
       * The line ranges a batch claims: each input's span less the lines that are not in the table
       * (still in flight elsewhere in the pipeline, or refused here).
       */
      function rangesOf(batch: Batch, refusedIndexes: readonly number[]): CommitRange[] {
        const ranges: CommitRange[] = [];
        const refusedHere = new Map<Input, number[]>();
        for (const i of refusedIndexes) {
          const position = batch.positions[i] as Position;
          const list = refusedHere.get(position.input);
          if (list) list.push(position.line);
          else refusedHere.set(position.input, [position.line]);
        }
        for (const [input, span] of batch.spans) {
          const holes = input.unsettledIn(span.first, span.last);
          for (const other of sameTable as Set<() => Batch[]>) {
            if (other === held) continue;
            for (const { positions } of other()) {
              for (const position of positions) if (position.input === input && position.line >= span.first && position.line <= span.last) holes.push(position.line);
            }
          }
          for (const line of [...(refusedLines.get(input) ?? []), ...(refusedHere.get(input) ?? [])]) {
            if (line >= span.first && line <= span.last) holes.push(line);
          }
          holes.sort((a, b) => a - b);
          let first = span.first;
          for (const hole of holes) {
            if (hole > first) ranges.push({ source: input.name, firstLine: first, lastLine: hole - 1 });
            if (hole >= first) first = hole + 1;
          }
          if (first <= span.last) ranges.push({ source: input.name, firstLine: first, lastLine: span.last });
        }
        return ranges;
      }

      function saveCheckpointSoon() {
        const now = Date.now();
        if (!checkpoint || now - lastSave < 1000) return;
        lastSave = now;
        checkpoint.save().catch((error) => fail(new Error(`checkpoint ${checkpoint.path}: could not save resume points: ${(error as Error).message}`, { cause: error })));
      }

      function finish() {
        if (closed) return;
        closed = true;
        sameTable?.delete(held);
        stopHolding();
        // A run that wrote no batch (every record rejected before the sink, or none at all) has
        // not waited for the table check yet: a missing table or column must still fail it.
        ready.then(
          () =>
            dialect.close().then(
              () => subscriber.complete(),
              (error) => fail(error),
            ),
          (error) => {
            dialect.close().catch(() => {});
            fail(error);
          },
        );
      }

      const ageTimer = setInterval(
        () => {
          if (inflight.size < parallel && full.length === 0 && pending.rows.length > 0 && Date.now() - pending.openedAt >= maxBatchAgeMs) {
            const aged = pending;
            pending = newBatch();
            send(aged);
          }
        },
        Math.max(10, Math.min(maxBatchAgeMs / 4, 1000)),
      );

      const subscription = withFlow(flow, () =>
        source.subscribe(joinFlow(flow, {
          next(record) {
            if (!failed) append(record);
          },
          error: (error) => fail(error),
          complete() {
            completing = true;
            next();
          },
        })),
      );

      return () => {
        clearInterval(ageTimer);
        subscription.unsubscribe();
        release?.();
        release = undefined;
        if (!closed) {
          closed = true;
          sameTable?.delete(held);
          const end = () => {
            stopHolding();
            dialect.close().catch(() => {});
          };
          if (inflight.size > 0) Promise.allSettled([...flow.settling]).then(end);
          else end();
        }
      };
    });
  };
}

/** Options of {@link toClickHouse}: those of {@link toSql}, in `insert` mode; `key` is the table's ORDER BY. */
export type ClickHouseSinkOptions<T> = Omit<SqlSinkOptions<T>, "mode" | "partitionBy">;

/**
 * Loads records into a ClickHouse table over its HTTP interface
 * (`clickhouse://user:password@host:8123/db`): {@link toSql} in `insert` mode, one
 * `INSERT ... FORMAT JSONEachRow` request per batch. With `create: true` the table is a
 * `MergeTree` ordered by `key` (or by nothing). Timestamps and dates are stored as ISO-8601
 * strings (ClickHouse 18.16 has no DateTime64). A batch is atomic, but its ledger row is a second
 * request, so a run killed between the two and resumed writes that batch again: at least once
 * after a crash. Completes, errors and unsubscribes as {@link toSql}.
 *
 * @example
 * fromNdjson("events.ndjson").pipe(
 *   validate(Event),
 *   deadLetter("out/dead-letter"),
 *   toClickHouse("clickhouse://default@127.0.0.1:8123/default", "events", { schema: Event, key: ["event_id"], create: true }),
 * );
 */
export function toClickHouse<T>(url: string, table: string, options: ClickHouseSinkOptions<T>): OperatorFunction<T, SqlCommit> {
  if (!/^clickhouse:\/\//i.test(url)) throw new Error(`toClickHouse ${table}: expected a clickhouse:// URL`);
  return toSql(url, table, { ...options, mode: "insert" });
}

/** The ranges `contents` holds of input `source`, for lookups. */
function linesOf(contents: LedgerContents, source: string): Ranges {
  const ranges = new Ranges();
  for (const [first, last] of contents.ranges.get(source) ?? []) ranges.add(first, last);
  return ranges;
}
