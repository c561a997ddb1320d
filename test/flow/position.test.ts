import { describe, expect, test } from "bun:test";
import { createFlow } from "../../src/flow/flow.ts";
import { Input, MAX_IN_FLIGHT } from "../../src/flow/position.ts";

describe("Input", () => {
  test("follows lines in flight whatever order they settle in", () => {
    const input = new Input(createFlow(), "f");
    for (let line = 1; line <= 6; line++) input.at(line);
    input.settle(2);
    input.settle(1);
    expect(input.lowestUnsettled()).toBe(3);
    input.settle(5);
    expect(input.unsettledIn(1, 6)).toEqual([3, 4, 6]);
    input.settle(3);
    input.settle(4);
    expect(input.lowestUnsettled()).toBe(6);
    input.settle(6);
    expect(input.lowestUnsettled()).toBeUndefined();
    expect(input.flow.stats.in).toBe(6);
  });

  test("keeps memory bounded when records never settle: the oldest is taken to be gone past MAX_IN_FLIGHT", () => {
    const input = new Input(createFlow(), "f");
    // Every other record is removed by a filter and never settles.
    const total = MAX_IN_FLIGHT * 3;
    for (let line = 1; line <= total; line++) {
      input.at(line);
      if (line % 2 === 0) input.settle(line);
    }
    const lowest = input.lowestUnsettled() as number;
    expect(lowest).toBeGreaterThan(total - 2 * MAX_IN_FLIGHT - 2);
    expect(input.unsettledIn(1, total).length).toBeLessThanOrEqual(MAX_IN_FLIGHT);
  });
});
