import { describe, expect, test } from "bun:test";
import { lastValueFrom, map, take, toArray } from "rxjs";
import { TestScheduler } from "rxjs/testing";
import * as v from "valibot";
import { ClickEvent } from "../../examples/clickstream.ts";
import { deadLetter, validate } from "../../operators/index.ts";
import type { DeadLetter } from "../../src/deadletter/entry.ts";
import { holdGate } from "../../src/flow/flow.ts";
import { run } from "../../src/run/run.ts";
import { clickstreamProducer, fromGenerator, type Producer } from "../../src/sources/generator.ts";
import { plain } from "../helpers/plain.ts";

const label = (name: string): Producer<string> => ({
  name,
  rate: { events: 1, perMs: 1 },
  make: (_random, i, time) => `${name}${i}@${time}`,
});

const testScheduler = () => new TestScheduler((actual, expected) => expect(actual).toEqual(expected));

describe("fromGenerator", () => {
  test("releases each producer's events at its own rate, merged in time order, and completes at durationMs", () => {
    testScheduler().run(({ expectObservable }) => {
      const source = fromGenerator({
        producers: [
          { ...label("A"), rate: { events: 1, perMs: 10 } },
          { ...label("B"), rate: { events: 2, perMs: 50 } },
        ],
        durationMs: 60,
        batchMs: 0,
      });
      expectObservable(source).toBe("(ab) 6ms c 9ms d 4ms e 4ms f 9ms g 9ms (hi) 6ms |", {
        a: "A0@0",
        b: "B0@0",
        c: "A1@10",
        d: "A2@20",
        e: "B1@25",
        f: "A3@30",
        g: "A4@40",
        h: "A5@50",
        i: "B2@50",
      });
    });
  });

  test("releases a fast producer in batches of batchMs, each event keeping its own scheduled time", () => {
    testScheduler().run(({ expectObservable }) => {
      const source = fromGenerator({ producers: [{ ...label("A"), rate: { events: 1, perMs: 4 } }], durationMs: 20, batchMs: 10, startTime: 1000 });
      expectObservable(source).toBe("a 9ms (bc) 6ms (de|)", {
        a: "A0@1000",
        b: "A1@1004",
        c: "A2@1008",
        d: "A3@1012",
        e: "A4@1016",
      });
    });
  });

  test("completes after count events in all", () => {
    testScheduler().run(({ expectObservable }) => {
      const source = fromGenerator({
        producers: [
          { ...label("A"), rate: { events: 1, perMs: 10 } },
          { ...label("B"), rate: { events: 1, perMs: 20 } },
        ],
        count: 5,
        batchMs: 0,
      });
      expectObservable(source).toBe("(ab) 6ms c 9ms (de|)", { a: "A0@0", b: "B0@0", c: "A1@10", d: "A2@20", e: "B1@20" });
    });
  });

  test("gives the same events for the same seed and different ones for another seed", async () => {
    const producers: Producer<number[]>[] = [
      { name: "x", rate: { events: 1000, perMs: 10 }, make: (r) => [r.next(), r.int(100)] },
      { name: "y", rate: { events: 300, perMs: 10 }, make: (r) => [r.next(), r.int(100)] },
    ];
    const events = (seed: number) => lastValueFrom(fromGenerator({ producers, seed, count: 3000, startTime: 0 }).pipe(map(plain), toArray()));
    const first = await events(5);
    expect(first).toHaveLength(3000);
    expect(await events(5)).toEqual(first);
    expect(await events(6)).not.toEqual(first);
    // Values come from a real random stream, not a constant.
    expect(new Set(first.map((e) => e[1])).size).toBeGreaterThan(90);
  });

  test("keeps a producer's values when another producer is added", async () => {
    const make = (r: { next(): number }, i: number) => `${i}:${r.next()}`;
    const alone = await lastValueFrom(
      fromGenerator({ producers: [{ name: "x", rate: { events: 1, perMs: 0.01 }, make }], count: 500 }).pipe(toArray()),
    );
    const both = await lastValueFrom(
      fromGenerator({
        producers: [
          { name: "w", rate: { events: 3, perMs: 0.01 }, make: (r) => `w${r.next()}` },
          { name: "x", rate: { events: 1, perMs: 0.01 }, make },
        ],
        count: 2000,
      }).pipe(toArray()),
    );
    expect(both.filter((e) => !e.startsWith("w")).slice(0, 500)).toEqual(alone);
  });

  test("names each event by producer and position, so a dead letter says which producer made it", async () => {
    const entries: DeadLetter[] = [];
    const summary = await run(
      fromGenerator({
        producers: [
          { name: "good", rate: { events: 2, perMs: 1 }, make: (_r, i): { n: unknown } => ({ n: i }) },
          { name: "bad", rate: { events: 1, perMs: 1 }, make: (_r, i): { n: unknown } => ({ n: `#${i}` }) },
        ],
        count: 30,
        batchMs: 1,
      }).pipe(validate(v.object({ n: v.number() })), deadLetter((e) => entries.push(e))),
      { handleSignals: false },
    );
    expect(summary.in).toBe(30);
    expect(entries.map((e) => [e.source, e.line, e.raw])).toEqual(
      Array.from({ length: 10 }, (_, i) => ["bad", i + 1, JSON.stringify({ n: `#${i}` })]),
    );
    expect(summary.emitted).toBe(20);
  });

  test("stops releasing while the sink holds the gate, then catches up at most maxLagMs at once", async () => {
    let release = () => {};
    const released: number[] = [];
    const times: number[] = [];
    const done = run(
      fromGenerator({
        producers: [{ name: "p", rate: { events: 1, perMs: 1 }, make: (_r, i, t) => ({ i, t }) }],
        count: 400,
        maxLagMs: 50,
        // Long enough that the burst after the gate opens is alone in the window measured below.
        batchMs: 100,
        startTime: 0,
      }),
      {
        handleSignals: false,
        onStart: (flow) => {
          release = holdGate(flow);
        },
        onValue: (value) => {
          released.push(performance.now());
          times.push((value as { t: number }).t);
        },
      },
    );
    await Bun.sleep(200);
    // The gate was held from the start: nothing went out.
    expect(released).toHaveLength(0);
    const opened = performance.now();
    release();
    await Bun.sleep(20);
    // 200 ms behind at 1 event/ms, yet only about maxLagMs of events burst out.
    const burst = released.filter((at) => at >= opened).length;
    expect(burst).toBeGreaterThanOrEqual(40);
    expect(burst).toBeLessThanOrEqual(60);
    await done;
    // The schedule is not cut: event k is still due at k ms, whatever the pause did to pacing.
    expect(times).toEqual(Array.from({ length: 400 }, (_, k) => k));
  });

  test("completes when the run is stopped, with the events so far", async () => {
    const controller = new AbortController();
    let made = 0;
    const done = run(
      fromGenerator({ producers: [{ name: "slow", rate: { events: 1, perMs: 10_000 }, make: () => ++made }] }).pipe(take(10)),
      { handleSignals: false, signal: controller.signal },
    );
    await Bun.sleep(30);
    controller.abort();
    const summary = await done;
    expect(summary.stopped).toBe(true);
    expect(made).toBe(1);
    expect(summary.in).toBe(1);
  });

  test("stops making events when unsubscribed", async () => {
    let made = 0;
    const first = await lastValueFrom(
      fromGenerator({ producers: [{ name: "p", rate: { events: 1, perMs: 1 }, make: (_r, i) => {
        made++;
        return i;
      } }], batchMs: 1 }).pipe(
        take(5),
        toArray(),
      ),
    );
    expect(first).toEqual([0, 1, 2, 3, 4]);
    await Bun.sleep(30);
    expect(made).toBe(5);
  });

  test("errors naming the producer and event when make throws", async () => {
    const source = fromGenerator({
      producers: [
        {
          name: "buggy",
          rate: { events: 1, perMs: 1 },
          make: (_r, i) => {
            if (i === 3) throw new Error("no such field");
            return i;
          },
        },
      ],
      batchMs: 0,
    });
    await expect(lastValueFrom(source.pipe(toArray()))).rejects.toThrow('fromGenerator: producer "buggy" threw making event 4: no such field');
  });

  test.each([
    [{ events: 0, perMs: 1000 }],
    [{ events: 10, perMs: 0 }],
    [{ events: Number.NaN, perMs: 1000 }],
    [{ events: Number.POSITIVE_INFINITY, perMs: 1000 }],
  ])("refuses a rate that is not positive and finite: %p", (rate) => {
    expect(() => fromGenerator({ producers: [{ name: "p", rate, make: () => 1 }] })).toThrow(/needs a positive, finite rate/);
  });

  test("refuses two producers with the same name", () => {
    expect(() => fromGenerator({ producers: [label("p"), label("p")] })).toThrow('two producers are named "p"');
  });

  test("completes at once with no producers and a duration", () => {
    testScheduler().run(({ expectObservable }) => {
      expectObservable(fromGenerator({ producers: [], durationMs: 100 })).toBe("|");
    });
  });
});

describe("clickstreamProducer", () => {
  test("makes valid clickstream events stamped with their scheduled time when no defects are asked for", async () => {
    const events = await lastValueFrom(
      fromGenerator({
        producers: [clickstreamProducer({ name: "web", rate: { events: 100, perMs: 1 }, defectRate: 0 })],
        count: 500,
        startTime: Date.parse("2024-05-01T00:00:00Z"),
      }).pipe(toArray()),
    );
    for (const [k, event] of events.entries()) {
      const parsed = v.parse(ClickEvent, event);
      expect(parsed.event_id).toBe(`web-${k}`);
      // Event k is due at k/100 ms; the stamp is that millisecond (plus generated microseconds).
      expect(parsed.timestamp.slice(0, 23)).toBe(new Date(Date.parse("2024-05-01T00:00:00Z") + Math.floor(k / 100)).toISOString().slice(0, 23));
    }
  });

  test("plants defects that validation rejects, at about the rate asked for", async () => {
    const entries: DeadLetter[] = [];
    const summary = await run(
      fromGenerator({
        producers: [clickstreamProducer({ name: "web", rate: { events: 1000, perMs: 1 }, defectRate: 0.2 })],
        count: 3000,
      }).pipe(validate(ClickEvent), deadLetter((e) => entries.push(e))),
      { handleSignals: false },
    );
    expect(summary.in).toBe(3000);
    expect(entries.length).toBeGreaterThan(450);
    expect(entries.length).toBeLessThan(750);
    expect(summary.emitted + entries.length).toBe(3000);
    // A truncated-JSON defect arrives as its text, a string where an object belongs.
    expect(entries.some((e) => typeof JSON.parse(e.raw) === "string")).toBe(true);
  });
});
