/**
 * sluice's operators outside `run()`: subscribed by hand on RxJS's `TestScheduler`, as RxJS tests
 * its own operators. Each piece opens a flow of its own when no run is around, so a pipeline of
 * operators and a `deadLetter` with a function target needs nothing else.
 *
 * `enrichBatch` calls a Promise-returning function, and its results leave on later microtasks,
 * after the scheduler's synchronous flush: marbles check its error and unsubscribe frames, and its
 * time-based batching is checked by moving the virtual clock one frame at a time with ordinary
 * awaits in between.
 */
import { describe, expect, test } from "bun:test";
import { map, merge, NEVER, type Observable, timer } from "rxjs";
import { TestScheduler } from "rxjs/testing";
import * as v from "valibot";
import { deadLetter, enrich, enrichBatch, validate } from "../../operators/index.ts";
import type { DeadLetter } from "../../src/deadletter/entry.ts";
import { createFlow } from "../../src/flow/flow.ts";
import { Input, stamp } from "../../src/flow/position.ts";
import { plain } from "../helpers/plain.ts";

/** Marble values compared as user code sees them: without the position sluice attaches. */
function withoutPositions(messages: unknown): unknown {
  if (!Array.isArray(messages)) return messages;
  return messages.map((m) => {
    const n = (m as { notification?: { kind: string; value?: unknown } }).notification;
    return n?.kind === "N" ? { ...m, notification: { ...n, value: plain(n.value) } } : m;
  });
}

function testScheduler(): TestScheduler {
  return new TestScheduler((actual, expected) => expect(withoutPositions(actual)).toEqual(expected));
}

/** A dead letter's fields that name the record, with the virtual frame it arrived at. */
interface Caught {
  readonly frame: number;
  readonly stage: string;
  readonly source: string;
  readonly line: number;
  readonly raw: string;
}

/** A deadLetter function target that notes each entry and the frame it arrived at. */
function catcher(scheduler: TestScheduler): { caught: Caught[]; entries: DeadLetter[]; target: (entry: DeadLetter) => void } {
  const caught: Caught[] = [];
  const entries: DeadLetter[] = [];
  return {
    caught,
    entries,
    target(entry) {
      entries.push(entry);
      caught.push({ frame: scheduler.now(), stage: entry.stage, source: entry.source, line: entry.line, raw: entry.raw });
    },
  };
}

const Reading = v.object({ id: v.number(), celsius: v.number() });
type Reading = v.InferOutput<typeof Reading>;

/** Records as a file source hands them on: each carries its file, line and raw text. */
function fromFile(name: string, records: readonly unknown[]): unknown[] {
  const input = new Input(createFlow(), name);
  let offset = 0;
  return records.map((record, i) => {
    const raw = JSON.stringify(record);
    const stamped = stamp(record, input.at(i + 1, raw, offset));
    offset += raw.length + 1;
    return stamped;
  });
}

describe("validate on the TestScheduler", () => {
  test("passes an empty source's completion on at its frame", () => {
    testScheduler().run(({ cold, expectObservable }) => {
      expectObservable(cold<unknown>("---|").pipe(validate(Reading))).toBe("---|");
    });
  });

  test("passes valid records on at the frames they arrived, and completes with the source", () => {
    testScheduler().run(({ cold, expectObservable, expectSubscriptions }) => {
      const source = cold<unknown>("-a-b--c-|", { a: { id: 1, celsius: 20 }, b: { id: 2, celsius: -4.5 }, c: { id: 3, celsius: 0 } });
      expectObservable(source.pipe(validate(Reading))).toBe("-a-b--c-|", {
        a: { id: 1, celsius: 20 },
        b: { id: 2, celsius: -4.5 },
        c: { id: 3, celsius: 0 },
      });
      expectSubscriptions(source.subscriptions).toBe("^-------!");
    });
  });

  test("passes a source error on at its frame, after the values before it", () => {
    testScheduler().run(({ cold, expectObservable, expectSubscriptions }) => {
      const source = cold<unknown>("-a--#", { a: { id: 1, celsius: 20 } }, new Error("disk gone"));
      expectObservable(source.pipe(validate(Reading))).toBe("-a--#", { a: { id: 1, celsius: 20 } }, new Error("disk gone"));
      expectSubscriptions(source.subscriptions).toBe("^---!");
    });
  });

  test("stops listening to a never-ending source when unsubscribed early", () => {
    testScheduler().run(({ hot, expectObservable, expectSubscriptions }) => {
      const source = hot<unknown>("-a-^-b-c-d-e-f-", { b: { id: 2, celsius: 1 }, c: { id: 3, celsius: 2 }, d: { id: 4, celsius: 3 } });
      expectObservable(source.pipe(validate(Reading)), "^----!").toBe("--b-c-", { b: { id: 2, celsius: 1 }, c: { id: 3, celsius: 2 } });
      expectSubscriptions(source.subscriptions).toBe("^----!");
    });
  });

  test("drops invalid records from the stream and hands them, with their file and line, to a deadLetter function below at the frame they arrived", () => {
    const scheduler = testScheduler();
    const { caught, entries, target } = catcher(scheduler);
    const [a, b, c, d] = fromFile("readings.ndjson", [
      { id: 1, celsius: 20 },
      { id: "2", celsius: 21 },
      { id: 3, celsius: 22 },
      { id: 4 },
    ]);
    scheduler.run(({ cold, expectObservable }) => {
      const source = cold<unknown>("-a-b-c-d---", { a, b, c, d });
      // Unsubscribed before the end: completion through deadLetter is checked below.
      expectObservable(source.pipe(validate(Reading), deadLetter(target)), "^---------!").toBe("-a---c----", {
        a: { id: 1, celsius: 20 },
        c: { id: 3, celsius: 22 },
      });
    });
    expect(caught).toEqual([
      { frame: 3, stage: "validate", source: "readings.ndjson", line: 2, raw: '{"id":"2","celsius":21}' },
      { frame: 7, stage: "validate", source: "readings.ndjson", line: 4, raw: '{"id":4}' },
    ]);
    expect(entries[0]?.issues).toEqual([{ path: "id", expected: "number", received: '"2"', message: 'Invalid type: Expected number but received "2"' }]);
    expect(entries[1]?.offset).toBe(68);
  });

  test("numbers records without a position in the order they arrived, under the input unnamed", () => {
    const scheduler = testScheduler();
    const { caught, target } = catcher(scheduler);
    scheduler.run(({ cold, expectObservable }) => {
      const source = cold<unknown>("ab-c-", { a: { id: 1, celsius: 1 }, b: { id: 2, celsius: 2 }, c: { id: 3, celsius: "hot" } });
      expectObservable(source.pipe(validate(Reading), deadLetter(target)), "^---!").toBe("ab--", {
        a: { id: 1, celsius: 1 },
        b: { id: 2, celsius: 2 },
      });
    });
    expect(caught).toEqual([{ frame: 3, stage: "validate", source: "unnamed", line: 3, raw: '{"id":3,"celsius":"hot"}' }]);
  });

  test("errors at the frame of a rejected record when no deadLetter is there to take it", () => {
    testScheduler().run(({ cold, expectObservable }) => {
      const source = cold<unknown>("-a-b-c|", { a: { id: 1, celsius: 1 }, b: { id: "x" }, c: { id: 3, celsius: 3 } });
      expectObservable(source.pipe(validate(Reading))).toBe(
        "-a-#",
        { a: { id: 1, celsius: 1 } },
        expect.objectContaining({ message: expect.stringContaining('failed at stage "validate"') }),
      );
    });
  });

  test("passes completion and a source error through a deadLetter function target at their frames", () => {
    const scheduler = testScheduler();
    const { target } = catcher(scheduler);
    scheduler.run(({ cold, expectObservable }) => {
      const values = { a: { id: 1, celsius: 1 }, b: { id: "x" } };
      expectObservable(cold<unknown>("-a-b-|", values).pipe(validate(Reading), deadLetter(target))).toBe("-a---|", { a: values.a });
      expectObservable(cold<unknown>("-a-b-#", values).pipe(validate(Reading), deadLetter(target))).toBe("-a---#", { a: values.a });
    });
  });
});

describe("enrich on the TestScheduler", () => {
  const celsiusToF = (r: Reading, index: number) => {
    if (r.celsius < -273.15) throw new Error(`below absolute zero: ${r.celsius}`);
    return { ...r, fahrenheit: r.celsius * 1.8 + 32, index };
  };

  test("maps records at the frames they arrived and completes with the source", () => {
    testScheduler().run(({ cold, expectObservable }) => {
      const source = cold<Reading>("a--b|", { a: { id: 1, celsius: 0 }, b: { id: 2, celsius: 100 } });
      expectObservable(source.pipe(enrich(celsiusToF))).toBe("a--b|", {
        a: { id: 1, celsius: 0, fahrenheit: 32, index: 0 },
        b: { id: 2, celsius: 100, fahrenheit: 212, index: 1 },
      });
    });
  });

  test("dead-letters a record whose function throws, with its position and the thrown message, and goes on", () => {
    const scheduler = testScheduler();
    const { caught, entries, target } = catcher(scheduler);
    const [a, b, c] = fromFile("sensors.ndjson", [
      { id: 1, celsius: 10 },
      { id: 2, celsius: -300 },
      { id: 3, celsius: 20 },
    ]) as Reading[];
    scheduler.run(({ cold, expectObservable }) => {
      const source = cold<Reading>("a-b-c---", { a, b, c });
      expectObservable(source.pipe(enrich(celsiusToF), deadLetter(target)), "^------!").toBe("a---c--", {
        a: { id: 1, celsius: 10, fahrenheit: 50, index: 0 },
        c: { id: 3, celsius: 20, fahrenheit: 68, index: 2 },
      });
    });
    expect(caught).toEqual([{ frame: 2, stage: "enrich", source: "sensors.ndjson", line: 2, raw: '{"id":2,"celsius":-300}' }]);
    expect(entries[0]?.error).toBe("below absolute zero: -300");
  });

  test("passes a source error on at its frame", () => {
    testScheduler().run(({ cold, expectObservable }) => {
      const source = cold<Reading>("a-#", { a: { id: 1, celsius: 0 } });
      expectObservable(source.pipe(enrich(celsiusToF))).toBe("a-#", { a: { id: 1, celsius: 0, fahrenheit: 32, index: 0 } });
    });
  });

  test("lets go of its source and stops calling the function when unsubscribed early", () => {
    let calls = 0;
    testScheduler().run(({ hot, expectObservable, expectSubscriptions }) => {
      const source = hot<Reading>("a-b-c-d-e-", {
        a: { id: 1, celsius: 0 },
        b: { id: 2, celsius: 0 },
        c: { id: 3, celsius: 0 },
        d: { id: 4, celsius: 0 },
        e: { id: 5, celsius: 0 },
      });
      const counted = enrich((r: Reading) => {
        calls++;
        return r.id;
      });
      expectObservable(source.pipe(counted), "^--!").toBe("a-b-", { a: 1, b: 2 });
      expectSubscriptions(source.subscriptions).toBe("^--!");
    });
    expect(calls).toBe(2);
  });
});

describe("dead-letter routing on the TestScheduler", () => {
  test("sends each stage's rejects to the nearest deadLetter below it", () => {
    const scheduler = testScheduler();
    const afterValidate = catcher(scheduler);
    const afterEnrich = catcher(scheduler);
    const [a, b, c, d] = fromFile("mixed.ndjson", [
      { id: 1, celsius: 5 },
      { id: 2, celsius: "warm" },
      { id: 3, celsius: -500 },
      { id: 4, celsius: 15 },
    ]);
    scheduler.run(({ cold, expectObservable }) => {
      const pipeline = cold<unknown>("-a-b-c-d---", { a, b, c, d }).pipe(
        validate(Reading),
        deadLetter(afterValidate.target),
        enrich((r: Reading) => {
          if (r.celsius < -273.15) throw new Error("below absolute zero");
          return { id: r.id, kelvin: r.celsius + 273.15 };
        }),
        deadLetter(afterEnrich.target),
      );
      expectObservable(pipeline, "^---------!").toBe("-a-----d--", { a: { id: 1, kelvin: 278.15 }, d: { id: 4, kelvin: 288.15 } });
    });
    expect(afterValidate.caught).toEqual([{ frame: 3, stage: "validate", source: "mixed.ndjson", line: 2, raw: '{"id":2,"celsius":"warm"}' }]);
    // enrich built a new object field by field: the record still names its own line.
    expect(afterEnrich.caught).toEqual([{ frame: 5, stage: "enrich", source: "mixed.ndjson", line: 3, raw: '{"id":3,"celsius":-500}' }]);
  });

  test("gives two subscriptions of one pipeline flows of their own", () => {
    const scheduler = testScheduler();
    const { entries, target } = catcher(scheduler);
    scheduler.run(({ cold, expectObservable }) => {
      const pipeline = cold<unknown>("ab--", { a: { id: "x" }, b: { id: 1, celsius: 1 } }).pipe(validate(Reading), deadLetter(target));
      expectObservable(pipeline, "^--!").toBe("-b-", { b: { id: 1, celsius: 1 } });
      expectObservable(pipeline, "^--!").toBe("-b-", { b: { id: 1, celsius: 1 } });
    });
    expect(entries.map((e) => [e.line, e.source])).toEqual([
      [1, "unnamed"],
      [1, "unnamed"],
    ]);
    expect(entries[0]?.runId).not.toBe(entries[1]?.runId);
  });
});

describe("enrichBatch on the TestScheduler", () => {
  const upper = async (xs: string[]) => xs.map((x) => x.toUpperCase());

  /** Lets the Promise callbacks that run enrichBatch's calls and emit their results settle. */
  const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

  /**
   * Moves the virtual clock to `frame`, running what is due, then lets promises settle. An empty
   * action due at `frame` moves the clock there even when nothing else is due.
   */
  async function advanceTo(scheduler: TestScheduler, frame: number): Promise<void> {
    scheduler.schedule(() => {}, frame - scheduler.now());
    scheduler.maxFrames = frame;
    scheduler.flush();
    await settle();
  }

  /** Emits each value at its frame on `scheduler`'s clock, and never completes. */
  function at<T>(scheduler: TestScheduler, schedule: readonly (readonly [number, T])[]): Observable<T> {
    return merge(...schedule.map(([frame, value]) => timer(frame, scheduler).pipe(map(() => value))), NEVER);
  }

  test("sends a batch when it reaches size, and a partial batch maxWaitMs of virtual time after its first record", async () => {
    const scheduler = new TestScheduler((a, b) => expect(a).toEqual(b));
    const calls: { frame: number; records: string[] }[] = [];
    const out: { frame: number; value: string }[] = [];
    const source = at(scheduler, [
      [0, "a"],
      [2, "b"], // does not restart a's timer
      [15, "c"],
      [16, "d"],
      [17, "e"], // fills the batch: sent now, c's timer cancelled
      [30, "f"],
      [52, "g"],
    ]);
    const subscription = source
      .pipe(
        enrichBatch(
          async (records: string[]) => {
            calls.push({ frame: scheduler.now(), records });
            return upper(records);
          },
          { size: 3, maxWaitMs: 10, scheduler },
        ),
      )
      .subscribe((value) => out.push({ frame: scheduler.now(), value }));
    for (let frame = 0; frame <= 70; frame++) await advanceTo(scheduler, frame);
    subscription.unsubscribe();
    expect(calls).toEqual([
      { frame: 10, records: ["a", "b"] },
      { frame: 17, records: ["c", "d", "e"] },
      { frame: 40, records: ["f"] },
      { frame: 62, records: ["g"] },
    ]);
    expect(out).toEqual([
      { frame: 10, value: "A" },
      { frame: 10, value: "B" },
      { frame: 17, value: "C" },
      { frame: 17, value: "D" },
      { frame: 17, value: "E" },
      { frame: 40, value: "F" },
      { frame: 62, value: "G" },
    ]);
  });

  test("sends the last partial batch on complete without waiting for maxWaitMs, then completes", async () => {
    const scheduler = new TestScheduler((a, b) => expect(a).toEqual(b));
    const calls: { frame: number; records: string[] }[] = [];
    let completedAt: number | undefined;
    const out: string[] = [];
    const source = merge(timer(1, scheduler).pipe(map(() => "a")), timer(3, scheduler).pipe(map(() => "b")));
    source
      .pipe(
        enrichBatch(
          async (records: string[]) => {
            calls.push({ frame: scheduler.now(), records });
            return upper(records);
          },
          { size: 10, maxWaitMs: 100, scheduler },
        ),
      )
      .subscribe({ next: (x) => out.push(x), complete: () => (completedAt = scheduler.now()) });
    for (let frame = 0; frame <= 5; frame++) await advanceTo(scheduler, frame);
    expect(calls).toEqual([{ frame: 3, records: ["a", "b"] }]);
    expect(out).toEqual(["A", "B"]);
    expect(completedAt).toBe(3);
  });

  test("sends each result that is an Error, with its record's position, to the deadLetter below at its batch's frame", async () => {
    const scheduler = new TestScheduler((a, b) => expect(a).toEqual(b));
    const { caught, target } = catcher(scheduler);
    const [a, b, c] = fromFile("ids.ndjson", [{ id: 1 }, { id: 2 }, { id: 3 }]) as { id: number }[];
    const out: unknown[] = [];
    const subscription = at(scheduler, [
      [1, a],
      [2, b],
      [4, c],
    ] as const)
      .pipe(
        enrichBatch(async (records: { id: number }[]) => records.map((r) => (r.id === 2 ? new Error("no such id") : { ...r, ok: true })), {
          size: 10,
          maxWaitMs: 5,
          scheduler,
        }),
        deadLetter(target),
      )
      .subscribe((x) => out.push(plain(x)));
    for (let frame = 0; frame <= 12; frame++) await advanceTo(scheduler, frame);
    subscription.unsubscribe();
    expect(out).toEqual([
      { id: 1, ok: true },
      { id: 3, ok: true },
    ]);
    expect(caught).toEqual([{ frame: 6, stage: "enrich", source: "ids.ndjson", line: 2, raw: '{"id":2}' }]);
  });

  test("passes a source error on at its frame and drops the batch that was filling", async () => {
    let calls = 0;
    testScheduler().run(({ cold, expectObservable, expectSubscriptions }) => {
      const source = cold<string>("-a-b-#", undefined, new Error("broker gone"));
      const result = source.pipe(
        enrichBatch(
          async (xs: string[]) => {
            calls++;
            return xs;
          },
          { size: 10, maxWaitMs: 50 },
        ),
      );
      expectObservable(result).toBe("-----#", undefined, new Error("broker gone"));
      expectSubscriptions(source.subscriptions).toBe("^----!");
    });
    await settle();
    expect(calls).toBe(0);
  });

  test("lets go of a never-ending source and its timer when unsubscribed early, and never calls for the dropped batch", async () => {
    let calls = 0;
    const scheduler = testScheduler();
    scheduler.run(({ hot, expectObservable, expectSubscriptions }) => {
      const source = hot<string>("-a-b-c-d-e-f-g-");
      const result = source.pipe(
        enrichBatch(
          async (xs: string[]) => {
            calls++;
            return xs;
          },
          { size: 10, maxWaitMs: 4, scheduler },
        ),
      );
      expectObservable(result, "^--!").toBe("----");
      expectSubscriptions(source.subscriptions).toBe("^--!");
    });
    await settle();
    expect(calls).toBe(0);
  });
});
