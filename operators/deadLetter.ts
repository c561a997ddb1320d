import { catchError, concat, defer, EMPTY, from, ignoreElements, Observable, type OperatorFunction, throwError } from "rxjs";
import type { DeadLetter } from "../src/deadletter/entry.ts";
import {
  type DeadLetterStore,
  type DeadLetterStoreOptions,
  lockDeadLetterFolder,
  openDeadLetterStore,
  readBucketDeadLetters,
} from "../src/deadletter/store.ts";
import { isS3Url } from "../src/io/s3.ts";
import { acquireSharedLock, type Lock, lockPathOf } from "../src/io/lock.ts";
import { modeUnder } from "../src/checkpoint/checkpoint.ts";
import { announceDurable, checkLeases, hold } from "../src/flow/durable.ts";
import { currentFlow, type Flow, installDeadLetter, settleFlow, withFlow } from "../src/flow/flow.ts";
import { watchDeadLetters } from "../src/sinks/ledger.ts";
import { type Outgoing, Outbox, type Publisher, type PublishLimits } from "../src/sinks/publish.ts";
import { type JetStreamTarget, openJetStreamPublisher } from "../src/sinks/toJetStream.ts";
import { openRedisStreamPublisher, type RedisStreamTarget } from "../src/sinks/toRedisStream.ts";

/** Where dead letters go: a folder (NDJSON files), a store, or a function. */
export type DeadLetterTarget = string | DeadLetterStore | ((entry: DeadLetter) => void);

/**
 * A broker destination each dead letter is also published to, as the same JSON entry the folder
 * holds: a JetStream subject or a Redis stream, with the broker sinks' limits.
 */
export type DeadLetterPublish =
  | ({ readonly jetstream: JetStreamTarget } & PublishLimits)
  | ({ readonly redis: RedisStreamTarget } & PublishLimits);

/** Options of {@link deadLetter}: the folder store's, and where to publish each entry as well. */
export interface DeadLetterOptions extends DeadLetterStoreOptions {
  /**
   * Also publish every dead letter to a JetStream subject or a Redis stream. A dead letter is
   * durable only once it is in its folder file *and* acknowledged by the broker: a broker source
   * above acknowledges its message only then. A lost connection or a broker that cannot be
   * reached is retried as the broker sinks do (`retry`, default: an outage of up to 60 s); when
   * retries run out or the broker refuses for good, the run errors, naming the broker.
   */
  readonly publish?: DeadLetterPublish;
  /**
   * Let several pipelines (the workers of a broker's consumer group) append to the folder at once,
   * holding its lock shared (mode `append` only; each file is named with its run id).
   */
  readonly shared?: boolean;
}

/**
 * Sets where the records rejected above this point go: every sluice source and operator of the
 * pipeline (and the Parquet sink below it) sends its rejects here, with the stage, the error,
 * the raw input and its position.
 *
 * A folder target gathers entries in memory and commits a file once `fileBytes` (4 MiB) are
 * gathered or its oldest entry is `maxFileAgeMs` (60 s) old, so a pipeline that runs for days
 * makes a rare bad record durable within that bound.
 *
 * A folder target is locked for the whole run (`.<folder>.lock` beside it): a second pipeline
 * writing the same folder, in this process or another, errors at subscribe with a `LockedError`
 * naming the run that holds it, before anything is read. The lock is released on complete, error
 * and unsubscribe, once the folder's files are committed.
 *
 * Values pass through unchanged. On complete, the folder's files are committed before the
 * completion travels on; the folder stays open for the sink below (a database refuses rows of its
 * last batches only as it writes them) and is closed, its lock released, once the sink's writes
 * have settled, before `run()` resolves: when the run resolves every dead letter is durable. On error
 * or unsubscribe, what was gathered is still committed (best effort), except in mode
 * `overwrite` over earlier dead letters: those are replaced only when the run completes without
 * being stopped, and otherwise stay as they were, without this run's.
 *
 * With `publish`, each entry is also published (the same JSON as its folder line) to a JetStream
 * subject or a Redis stream, and counts as durable only once the broker acknowledged it too.
 * Completion waits for those acknowledgements; publishing is retried through a lost connection
 * (`publish.retry`), and a broker that stays out of reach longer, or refuses for good, errors the
 * pipeline, naming the broker without credentials.
 *
 * @example
 * fromNdjson("events.ndjson").pipe(
 *   validate(Event),
 *   deadLetter("out/dead-letter", { mode: "overwrite", publish: { jetstream: { subject: "events-dead.web" } } }),
 *   toParquet("out/events", { schema: Event }),
 * );
 */
export function deadLetter<T>(
  target: DeadLetterTarget,
  options: DeadLetterOptions = {},
): OperatorFunction<T, T> {
  const { publish, shared, ...storeOptions } = options;
  return function deadLetterOperator(source) {
    return new Observable<T>((subscriber) => {
      const flow = currentFlow(subscriber);
      let store: DeadLetterStore | undefined;
      let storeReady: Promise<DeadLetterStore> | undefined;
      // Entries that arrive before a folder store is open are held here (opening is async).
      const early: DeadLetter[] = [];

      let handler: (entry: DeadLetter) => void;
      // Entries this run sent to a folder, by stage: an overwrite that is cancelled takes them back.
      const taken: Record<string, number> = {};
      let stopHolding: (() => void) | undefined;
      if (typeof target === "function") {
        // What the function does with an entry is the caller's: sluice counts it durable once handed over.
        handler = (entry) => {
          target(entry);
          flow.stats.deadLetteredDurable++;
        };
      } else if (typeof target === "string") {
        // Taken before anything is read, so a second writer of the folder is refused at once.
        let lock: Lock;
        try {
          // The workers of a distributed run add to one folder together.
          const together = shared === true || flow.distribution !== undefined;
          if (together && (storeOptions.mode ?? "append") !== "append") {
            throw new Error(
              flow.distribution
                ? `deadLetter: a distributed run adds to ${target} from every worker: mode "${storeOptions.mode}" cannot be shared; use "append" (the default)`
                : `deadLetter: shared: true needs mode "append" (the folder ${target} is written by several pipelines at once)`,
            );
          }
          lock = together ? acquireSharedLock(lockPathOf(target), { runId: flow.runId, what: `dead-letter folder ${target}` }) : lockDeadLetterFolder(target, flow.runId);
          // A broker message delivered again whose dead letter is in the folder already is skipped at its source.
          watchDeadLetters(flow, target);
        } catch (error) {
          subscriber.error(error);
          return;
        }
        try {
          // Resuming: dead letters earlier runs made durable must not be written twice.
          flow.checkpoint?.loadDeadLetters(target);
        } catch (error) {
          lock.release();
          subscriber.error(error);
          return;
        }
        // In a bucket the earlier runs' dead letters are read asynchronously: entries that arrive
        // meanwhile wait in `early` and are checked against them before they are stored.
        const checkpoint = flow.checkpoint;
        const earlierRead = checkpoint && !checkpoint.fresh && isS3Url(target) ? checkpoint.loadDeadLettersFrom((runs) => readBucketDeadLetters(target, runs)) : undefined;
        const opening = () => openDeadLetterStore(target, flow.runId, {
          ...storeOptions,
          mode: modeUnder(flow.checkpoint, storeOptions.mode ?? "append"),
          // A checkpoint's later runs resume into the folder: they must find this run's files there.
          replace: flow.checkpoint ? "open" : "close",
          lock,
          // No dead letter lands once a broker source may have lost hold of its messages.
          beforeCommit: () => checkLeases(flow),
          onCommitted(entries) {
            // The oldest `entries` waiting are in a durable file now.
            waiting.splice(0, entries);
            flow.stats.deadLetteredDurable += entries;
            announceDurable(flow);
          },
        });
        storeReady = earlierRead
          ? earlierRead.then(opening, (error) => {
              lock.release();
              throw error;
            })
          : opening();
        storeReady.then(
          (opened) => {
            store = opened;
            for (const entry of early.splice(0)) {
              if (earlierRead && checkpoint?.alreadyDeadLettered(entry.source, entry.line)) unstore(entry);
              else opened.add(entry);
            }
          },
          (error) => subscriber.error(error),
        );
        // Entries not yet in a committed file, in the order the store commits them.
        const waiting: { source: string; line: number }[] = [];
        stopHolding = hold(flow, (note) => {
          for (const entry of waiting) note(entry.source, entry.line);
        });
        handler = (entry) => {
          waiting.push({ source: entry.source, line: entry.line });
          taken[entry.stage] = (taken[entry.stage] ?? 0) + 1;
          if (store) store.add(entry);
          else early.push(entry);
        };
        /** An entry an earlier run of the checkpoint committed already: skipped, as one known at once is. */
        function unstore(entry: DeadLetter) {
          const at = waiting.findIndex((w) => w.source === entry.source && w.line === entry.line);
          if (at >= 0) waiting.splice(at, 1);
          taken[entry.stage] = (taken[entry.stage] ?? 1) - 1;
          flow.stats.deadLettered[entry.stage] = (flow.stats.deadLettered[entry.stage] ?? 1) - 1;
          if (flow.stats.deadLettered[entry.stage] === 0) delete flow.stats.deadLettered[entry.stage];
          flow.stats.skipped++;
          announceDurable(flow);
        }
      } else {
        store = target;
        handler = (entry) => target.add(entry);
      }
      let outbox: Outbox | undefined;
      if (publish) {
        const opened = outboxOf(publish, (error) => {
          // The folder stays the record of what was rejected: what it gathered is committed before the error travels.
          (ending ?? end(false)).catch(() => {}).finally(() => subscriber.error(error));
        });
        outbox = opened;
        const stored = handler;
        handler = (entry) => {
          stored(entry);
          opened.add(outgoingOf(entry, (reason) => subscriber.error(new Error(`deadLetter: cannot publish the dead letter of ${entry.source}:${entry.line}: ${reason}`))));
        };
      }
      installDeadLetter(flow, handler, subscriber);

      /** An outbox to `publish`'s broker; its holder keeps entries not yet acknowledged from counting as durable. */
      function outboxOf(to: DeadLetterPublish, failed: (error: Error) => void): Outbox {
        const open: () => Promise<Publisher> =
          "jetstream" in to ? () => openJetStreamPublisher("deadLetter", to.jetstream) : () => openRedisStreamPublisher("deadLetter", to.redis);
        return new Outbox(flow, open, to, { acknowledged: () => {}, failed });
      }

      // `completed`: the source completed and the run was not stopped. Otherwise an overwrite of
      // the folder is cancelled, and its earlier dead letters stay.
      async function settle(completed: boolean): Promise<void> {
        removeHook?.();
        // Published entries are answered, then the connection closes; a failure is reported once the
        // folder is committed. After an error or an unsubscribe, they are published best effort.
        const drained = outbox ? (completed ? outbox.drain() : outbox.drain().catch(() => {})) : undefined;
        const published = drained ? drained.finally(() => outbox?.close()) : Promise.resolve();
        published.catch(() => {});
        try {
          const opened = store ?? (storeReady ? await storeReady : undefined);
          if (!opened) {
            // A function target: nothing to commit.
          } else if (typeof target !== "string") await opened.flush();
          else if (completed && !flow.stopping) await opened.close();
          else if (!opened.cancel) await opened.close();
          else if (await opened.cancel()) {
            // The folder keeps its earlier dead letters; this run's are counted as discarded, not dead-lettered.
            for (const [stage, count] of Object.entries(taken)) {
              flow.stats.deadLettered[stage] = (flow.stats.deadLettered[stage] ?? 0) - count;
              if (flow.stats.deadLettered[stage] === 0) delete flow.stats.deadLettered[stage];
              flow.stats.discarded += count;
            }
          }
        } finally {
          stopHolding?.();
        }
        await published;
      }

      let ending: Promise<void> | undefined;
      /** Ends the folder and the publishing once, whoever asks first. */
      function end(completed: boolean): Promise<void> {
        settled = true;
        ending ??= settle(completed);
        return ending;
      }

      // A checkpoint may only move past a dead letter once it is durable.
      const removeHook = flow.checkpoint?.beforeSave(async () => {
        const opened = store ?? (storeReady ? await storeReady : undefined);
        if (opened && !settled) await opened.flush();
      });

      let settled = false;
      // Completion (and an error) travel on only once the dead letters are durable. Built from
      // RxJS's operators and subscribed with the downstream subscriber, so unsubscribing
      // downstream closes the chain at once, even under a synchronous source.
      const durable = (orError: "report" | "ignore") =>
        defer(() => {
          if (settled) return EMPTY;
          // A function target holds nothing to commit: completion and errors pass at once.
          if (typeof target === "function" && !outbox) {
            settled = true;
            return EMPTY;
          }
          if (orError === "report") {
            // The source completed: what was gathered is committed before the completion travels
            // on, but the folder stays open for the sink below, which may still refuse rows of its
            // last batches (a database checks a row only as it writes it). It closes once the
            // sink's writes have settled (see the teardown below).
            completedAbove = true;
            return from(commitGathered()).pipe(ignoreElements());
          }
          // After an upstream error, that error is the one to report, not a failed commit.
          return from(end(false).catch(() => {})).pipe(ignoreElements());
        });

      /** Commits the entries gathered so far (and their publishing), keeping the folder open. */
      async function commitGathered(): Promise<void> {
        const opened = store ?? (storeReady ? await storeReady : undefined);
        await opened?.flush();
        await outbox?.drain();
      }

      let completedAbove = false;
      const subscription = withFlow(flow, () =>
        source
          .pipe(
            catchError((error) => concat(durable("ignore"), throwError(() => error))),
            (upstream) => concat(upstream, durable("report")),
          )
          .subscribe(subscriber),
      );
      return () => {
        subscription.unsubscribe();
        if (settled) return;
        if (!completedAbove) {
          // Unsubscribed before the end: what was gathered is still committed, best effort.
          end(false).catch(() => {});
          return;
        }
        // The completion has reached the sink below, which has started its last writes (in
        // `flow.settling`): the folder takes their refused rows, then closes. `run()` waits for the
        // closing and fails with its error.
        const closings = closingsOf(flow);
        const closing = (async () => {
          // The run failed below this folder (the sink's last commit, an error `run()` saw, or
          // some last work rejected): it ends as after a failure, so an overwrite keeps the
          // earlier dead letters, as the dataset keeps its earlier files.
          const failure = await settleFlow(flow, { skip: (work) => closings.has(work) });
          await end(failure === undefined && !flow.failed);
        })();
        closings.add(closing);
        flow.settling.add(closing);
        closing.then(
          () => flow.settling.delete(closing),
          () => {},
        );
      };
    });
  };
}

/**
 * The folders of a flow closing after their pipeline completed: each waits for the flow's other
 * work, not for another folder's closing (two `deadLetter`s would wait for each other).
 */
const closingFolders = new WeakMap<Flow, WeakSet<Promise<unknown>>>();
function closingsOf(flow: Flow): WeakSet<Promise<unknown>> {
  let closings = closingFolders.get(flow);
  if (!closings) closingFolders.set(flow, (closings = new WeakSet()));
  return closings;
}

/**
 * A dead letter as a message: the entry's JSON, as in the folder, with an id from its place, stage
 * and raw text, so a re-run inside JetStream's duplicate window does not publish it twice. When it
 * is larger than the broker takes (a huge list of validation issues), it shrinks to the entry
 * without `issues`, its error saying so; the folder keeps them.
 */
function outgoingOf(entry: DeadLetter, reject: (reason: string) => void): Outgoing {
  const payload = JSON.stringify(entry);
  const id = entry.line > 0 ? `${entry.source}:${entry.line}:${entry.stage}:${Bun.hash.wyhash(entry.raw + (entry.rawBase64 ?? "")).toString(16)}` : undefined;
  const message = { payload, bytes: Buffer.byteLength(payload), id, source: entry.source, line: entry.line, reject };
  const { issues, ...rest } = entry;
  if (!issues) return message;
  return {
    ...message,
    shrink() {
      const smaller = JSON.stringify({ ...rest, error: `${entry.error} (${issues.length} issues left out of the published entry: the dead-letter folder has them)` });
      return { ...message, payload: smaller, bytes: Buffer.byteLength(smaller) };
    },
  };
}
