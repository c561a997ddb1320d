/**
 * Broker sources number records by the broker's sequence (a Redis id's line is near 2^52): lines
 * of one input are increasing but sparse and large. What is in flight, what is durable and what a
 * range leaves out must stay exact for them.
 */
import { describe, expect, test } from "bun:test";
import { durableUpTo, hold, watchDurable, announceDurable } from "../../src/flow/durable.ts";
import { createFlow } from "../../src/flow/flow.ts";
import { Input } from "../../src/flow/position.ts";

const BASE = 1700000000000 * 2048;
const LINES = [BASE + 1, BASE + 5, BASE + 9, BASE + 2048, BASE + 2 ** 20];

describe("an input with sparse, large lines", () => {
  test("follows what is in flight and what is durable exactly", () => {
    const flow = createFlow();
    const input = new Input(flow, "redis:s");
    for (const line of LINES) input.at(line);
    expect(input.lastLine).toBe(BASE + 2 ** 20);
    // Settled out of order: the lowest in flight is the first line still out.
    input.settle(BASE + 9);
    input.settle(BASE + 1);
    expect(input.lowestUnsettled()).toBe(BASE + 5);
    expect(input.unsettledIn(BASE, BASE + 3000)).toEqual([BASE + 5, BASE + 2048]);
    expect(durableUpTo(input)).toBe(BASE + 4);
    // A stage holding BASE + 9 uncommitted keeps it from being durable once the rest settles.
    let holding = true;
    hold(flow, (note) => {
      if (holding) note("redis:s", BASE + 9);
    });
    for (const line of LINES) input.settle(line);
    expect(input.lowestUnsettled()).toBeUndefined();
    expect(durableUpTo(input)).toBe(BASE + 8);
    holding = false;
    expect(durableUpTo(input)).toBe(BASE + 2 ** 20);
  });

  test("tells a watcher each durable line exactly, without walking the gaps", () => {
    const flow = createFlow();
    const input = new Input(flow, "jetstream:s");
    const told: number[] = [];
    watchDurable(input, (upTo) => told.push(upTo));
    // Gaps of about 2^40 between lines: a walk line by line would never end.
    const lines = [1, 2 ** 40, 2 ** 41, 2 ** 52];
    for (const line of lines) input.at(line);
    input.settle(1);
    announceDurable(flow);
    input.settle(2 ** 41);
    input.settle(2 ** 40);
    announceDurable(flow);
    input.settle(2 ** 52);
    announceDurable(flow);
    expect(told).toEqual([2 ** 40 - 1, 2 ** 52 - 1, 2 ** 52]);
  });
});
