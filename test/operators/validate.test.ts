import { describe, expect, expectTypeOf, test } from "bun:test";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { concat, config, from, Observable, Subject, take, tap, throwError } from "rxjs";
import * as v from "valibot";
import { deadLetter, validate } from "../../operators/index.ts";
import type { DeadLetter } from "../../src/deadletter/entry.ts";
import { run, type RunSummary } from "../../src/run/run.ts";
import { fromNdjson } from "../../src/sources/ndjson.ts";
import { toParquet } from "../../src/sinks/toParquet.ts";
import { dataset, query, tempDir } from "../helpers/duckdb.ts";
import { plain } from "../helpers/plain.ts";

const Click = v.object({
  user_id: v.string(),
  duration_ms: v.pipe(v.number(), v.integer(), v.minValue(0)),
  kind: v.picklist(["click", "view"]),
  tags: v.array(v.string()),
  price: v.nullish(v.number()),
});

const good = (i: number) => ({ user_id: `u${i}`, duration_ms: i, kind: "click", tags: ["a"] });

/** Runs `source` through validate and a collecting dead letter; resolves with what came out. */
async function validateAll(
  source: Observable<unknown>,
  schema: v.GenericSchema = Click,
  stage?: string,
): Promise<{ values: unknown[]; entries: DeadLetter[]; summary: RunSummary }> {
  const values: unknown[] = [];
  const entries: DeadLetter[] = [];
  const summary = await run(
    source.pipe(
      validate(schema, stage === undefined ? {} : { stage }),
      deadLetter((entry) => entries.push(entry)),
    ),
    { handleSignals: false, onValue: (value) => values.push(value) },
  );
  return { values, entries, summary };
}

describe("validate", () => {
  test("completes with nothing emitted and nothing dead-lettered when the source is empty", async () => {
    const { values, entries, summary } = await validateAll(from([]));
    expect(values).toEqual([]);
    expect(entries).toEqual([]);
    expect(summary.deadLettered).toBe(0);
  });

  test("passes one valid record on as valibot's output", async () => {
    const { values, entries } = await validateAll(from([good(1)]));
    expect(values).toEqual([{ user_id: "u1", duration_ms: 1, kind: "click", tags: ["a"] }]);
    expect(entries).toEqual([]);
  });

  test("passes many valid records on in order and routes each bad one to the dead letter", async () => {
    const inputs = Array.from({ length: 300 }, (_, i) => (i % 3 === 2 ? { ...good(i), duration_ms: String(i) } : good(i)));
    const { values, entries, summary } = await validateAll(from(inputs));
    expect(values).toEqual(inputs.filter((_, i) => i % 3 !== 2));
    expect(entries).toHaveLength(100);
    expect(entries.map((e) => JSON.parse(e.raw).user_id)).toEqual(inputs.filter((_, i) => i % 3 === 2).map((r) => r.user_id));
    expect(summary.deadLetteredByStage).toEqual({ validate: 100 });
    expect(summary.emitted).toBe(200);
  });

  test.each([
    ["a string of digits for a number", { duration_ms: "123" }, "duration_ms", "number", '"123"'],
    ["a number for a string", { user_id: 42 }, "user_id", "string", "42"],
    ["null for a string", { user_id: null }, "user_id", "string", "null"],
    ["a boolean for a number", { duration_ms: true }, "duration_ms", "number", "true"],
    ["NaN for a number", { duration_ms: Number.NaN }, "duration_ms", "number", "NaN"],
    ["a value outside the picklist", { kind: "purchase" }, "kind", '("click" | "view")', '"purchase"'],
    ["a picklist value in the wrong case", { kind: "Click" }, "kind", '("click" | "view")', '"Click"'],
    ["a fraction for an integer", { duration_ms: 1.5 }, "duration_ms", null, "1.5"],
    ["a negative duration", { duration_ms: -1 }, "duration_ms", ">=0", "-1"],
    ["a string for an array", { tags: "a,b" }, "tags", "Array", '"a,b"'],
    ["a string for a nullish number", { price: "9.99" }, "price", "number", '"9.99"'],
  ])("rejects %s and never coerces it", async (_name, patch, path, expected, received) => {
    const record = { ...good(1), ...patch };
    const { values, entries } = await validateAll(from([record]));
    expect(values).toEqual([]);
    expect(entries).toHaveLength(1);
    const [entry] = entries;
    expect(entry.stage).toBe("validate");
    expect(entry.issues).toHaveLength(1);
    const issue = entry.issues![0];
    expect(issue.path).toBe(path);
    expect(issue.expected).toBe(expected);
    expect(issue.received).toBe(received);
    expect(issue.message.length).toBeGreaterThan(0);
    expect(entry.error).toBe(`1 issue: ${path}: ${issue.message}`);
    expect(JSON.parse(entry.raw)).toEqual(JSON.parse(JSON.stringify(record)));
  });

  test("names a missing required field by its key", async () => {
    const { user_id: _, ...record } = good(1);
    const { entries } = await validateAll(from([record]));
    expect(entries[0].issues).toEqual([
      {
        path: "user_id",
        expected: '"user_id"',
        received: "undefined",
        message: 'Invalid key: Expected "user_id" but received undefined',
      },
    ]);
  });

  test("gives every issue a dot path into arrays and nested objects", async () => {
    const Nested = v.object({
      tags: v.array(v.string()),
      user: v.object({ address: v.object({ city: v.string() }) }),
    });
    const { entries } = await validateAll(from([{ tags: ["a", 2, "c", false], user: { address: { city: 7 } } }]), Nested);
    expect(entries[0].issues?.map((i) => [i.path, i.expected, i.received])).toEqual([
      ["tags.1", "string", "2"],
      ["tags.3", "string", "false"],
      ["user.address.city", "string", "7"],
    ]);
    expect(entries[0].error).toBe(
      "3 issues: tags.1: Invalid type: Expected string but received 2; tags.3: Invalid type: Expected string but received false; user.address.city: Invalid type: Expected string but received 7",
    );
  });

  test("summarizes more than three issues with a count", async () => {
    const { entries } = await validateAll(from([{ user_id: 1, duration_ms: "1", kind: 1, tags: 1, price: "1" }]));
    expect(entries[0].issues).toHaveLength(5);
    expect(entries[0].error).toStartWith("5 issues: user_id: ");
    expect(entries[0].error).toEndWith("; and 2 more");
  });

  test("reports a record that is not an object with an empty path", async () => {
    const { entries } = await validateAll(from(["not an object", null, [1]]));
    expect(entries.map((e) => e.issues?.map((i) => [i.path, i.expected, i.received]))).toEqual([
      [["", "Object", '"not an object"']],
      [["", "Object", "null"]],
      [["", "Object", "Array"]],
    ]);
    // valibot alone reads an array as an object with every key missing.
    expect(entries[2]?.error).toBe("1 issue: Invalid type: Expected Object but received Array");
  });

  test("refuses an array for an object whose keys are all optional, which valibot alone passes as an empty row", async () => {
    const Loose = v.object({ a: v.optional(v.string()), b: v.nullish(v.number()) });
    expect(v.safeParse(Loose, [1, 2]).success).toBe(true);
    const { values, entries } = await validateAll(from([[1, 2], [], { a: "x" }, {}]), Loose);
    expect(values).toEqual([{ a: "x" }, {}]);
    expect(entries.map((e) => [e.error, e.raw])).toEqual([
      ["1 issue: Invalid type: Expected Object but received Array", "[1,2]"],
      ["1 issue: Invalid type: Expected Object but received Array", "[]"],
    ]);
  });

  test("strips unknown keys at every level, as valibot does, without touching the input", async () => {
    const Nested = v.object({ id: v.string(), inner: v.object({ x: v.number() }), list: v.array(v.object({ y: v.string() })) });
    const input = { id: "a", extra: 1, inner: { x: 1, z: 2 }, list: [{ y: "y", w: 3 }] };
    const { values } = await validateAll(from([input]), Nested);
    expect(values).toStrictEqual([{ id: "a", inner: { x: 1 }, list: [{ y: "y" }] }]);
    expect(values[0]).not.toBe(input);
    expect(input).toEqual({ id: "a", extra: 1, inner: { x: 1, z: 2 }, list: [{ y: "y", w: 3 }] });
  });

  test("emits valibot's output for a schema the fast path does not compile (a transform)", async () => {
    const Length = v.object({ name: v.pipe(v.string(), v.transform((s: string) => s.length)), extra: v.optional(v.string(), "default") });
    const { values, entries } = await validateAll(from([{ name: "abcd", junk: 1 }, { name: 4 }]), Length);
    expect(values).toStrictEqual([{ name: 4, extra: "default" }]);
    expect(entries.map((e) => e.issues?.[0].path)).toEqual(["name"]);
  });

  test("writes the stage it is given on dead letters", async () => {
    const { entries, summary } = await validateAll(from([{}]), Click, "schema-v2");
    expect(entries[0].stage).toBe("schema-v2");
    expect(summary.deadLetteredByStage).toEqual({ "schema-v2": 1 });
  });

  test("gives a dead letter from a file the path, the line and the line's raw text", async () => {
    const dir = await tempDir();
    try {
      const path = join(dir.path, "clicks.ndjson");
      await writeFile(path, `${JSON.stringify(good(1))}\n{"user_id": 7}\n${JSON.stringify(good(3))}\n`);
      const { values, entries, summary } = await validateAll(fromNdjson(path));
      expect(values).toHaveLength(2);
      expect(entries).toHaveLength(1);
      expect(entries[0]).toMatchObject({ stage: "validate", source: path, line: 2, raw: '{"user_id": 7}', runId: summary.runId });
      expect(summary.in).toBe(3);
      expect(summary.in).toBe(summary.emitted + summary.deadLettered);
    } finally {
      await dir.remove();
    }
  });

  test("passes a source error on", async () => {
    const values: unknown[] = [];
    const failing = concat(from([good(1)]), throwError(() => new Error("disk gone")));
    const result = run(failing.pipe(validate(Click), deadLetter(() => {})), {
      handleSignals: false,
      onValue: (value) => values.push(value),
    });
    await expect(result).rejects.toThrow("disk gone");
    expect(values).toHaveLength(1);
  });

  test("passes a source error on when it is subscribed directly", async () => {
    const error = await new Promise<unknown>((resolve) => {
      throwError(() => new Error("broker gone"))
        .pipe(validate(Click))
        .subscribe({ error: resolve });
    });
    expect((error as Error).message).toBe("broker gone");
  });

  test("stops listening to a never-ending source when unsubscribed early", async () => {
    const source = new Subject<unknown>();
    const values: unknown[] = [];
    const entries: DeadLetter[] = [];
    let completed = false;
    source
      .pipe(
        validate(Click),
        deadLetter((entry) => entries.push(entry)),
        take(2),
      )
      .subscribe({ next: (value) => values.push(plain(value)), complete: () => (completed = true) });
    expect(source.observed).toBe(true);
    source.next({ bad: true });
    source.next(good(1));
    source.next(good(2));
    expect(completed).toBe(true);
    expect(source.observed).toBe(false);
    source.next({ bad: true });
    expect(values).toHaveLength(2);
    expect(entries).toHaveLength(1);
  });

  test("unsubscribes from its source when its subscriber unsubscribes", () => {
    const source = new Subject<unknown>();
    const subscription = source.pipe(validate(Click), deadLetter(() => {})).subscribe();
    expect(source.observed).toBe(true);
    subscription.unsubscribe();
    expect(source.observed).toBe(false);
  });

  test("errors with a message naming the stage when there is no dead-letter target", async () => {
    const values: unknown[] = [];
    const result = run(from([good(1), { user_id: 1 }, good(3)]).pipe(validate(Click)), {
      handleSignals: false,
      onValue: (value) => values.push(value),
    });
    await expect(result).rejects.toThrow(/failed at stage "validate" \(.*user_id.*\) but this pipeline has no dead-letter target: add deadLetter/);
    expect(values).toHaveLength(1);
  });

  test("errors with a message naming the file and line when there is no dead-letter target", async () => {
    const dir = await tempDir();
    try {
      const path = join(dir.path, "clicks.ndjson");
      await writeFile(path, `${JSON.stringify(good(1))}\n${JSON.stringify(good(2))}\n{"user_id": "u3"}\n`);
      const result = run(fromNdjson(path).pipe(validate(Click)), { handleSignals: false });
      await expect(result).rejects.toThrow(`a record from ${path} line 3 failed at stage "validate"`);
    } finally {
      await dir.remove();
    }
  });

  test("errors when the dead-letter target itself throws", async () => {
    const result = run(
      from([good(1), {}]).pipe(
        validate(Click),
        deadLetter(() => {
          throw new Error("dead-letter disk full");
        }),
      ),
      { handleSignals: false },
    );
    await expect(result).rejects.toThrow("dead-letter disk full");
  });

  test("types its output as the schema's output", () => {
    const out = from([] as unknown[]).pipe(validate(Click));
    expectTypeOf(out).toEqualTypeOf<Observable<v.InferOutput<typeof Click>>>();
  });

  test("stops pulling from a synchronous source once the consumer has unsubscribed", async () => {
    const entries: DeadLetter[] = [];
    await run(
      from([good(1), { bad: 1 }, { bad: 2 }]).pipe(
        validate(Click),
        take(1),
        deadLetter((entry) => entries.push(entry)),
      ),
      { handleSignals: false },
    );
    expect(entries).toEqual([]);

    let pulled = 0;
    const endless = new Observable<unknown>((subscriber) => {
      // Bounded so the bug cannot hang the test run; a correct operator stops after 3.
      while (!subscriber.closed && pulled < 10_000) subscriber.next(good(pulled++));
    });
    await run(endless.pipe(validate(Click), take(3)), { handleSignals: false });
    expect(pulled).toBe(3);
  });

  test("accounts for a record whose schema check throws", async () => {
    const unhandled: unknown[] = [];
    const previous = config.onUnhandledError;
    config.onUnhandledError = (error) => unhandled.push(error);
    try {
      const Even = v.pipe(
        v.number(),
        v.check((n: number) => {
          if (n === 2) throw new Error("check blew up");
          return n % 2 === 1;
        }),
      );
      const entries: DeadLetter[] = [];
      const outcome = await run(from([1, 2, 3]).pipe(validate(Even), deadLetter((entry) => entries.push(entry))), {
        handleSignals: false,
      }).then(
        (summary) => ({ summary }),
        (error: Error) => ({ error }),
      );
      await new Promise((resolve) => setTimeout(resolve, 5));
      expect(unhandled).toEqual([]);
      if ("error" in outcome) {
        expect(outcome.error.message).toContain("check blew up");
      } else {
        expect(outcome.summary.emitted).toBe(2);
        expect(entries.map((e) => [e.stage, e.error])).toEqual([["validate", expect.stringContaining("check blew up")]]);
      }
    } finally {
      config.onUnhandledError = previous;
    }
  });
});

describe("fields named like what every object inherits (constructor, toString, __proto__)", () => {
  // A Formula 1 results table has a "constructor" column; JSON lets any key be "__proto__".
  const Result = v.object({
    driver: v.string(),
    constructor: v.optional(v.string()),
    toString: v.nullish(v.string()),
    valueOf: v.optional(v.number()),
    // Computed: a plain `__proto__:` in an object literal sets the literal's prototype.
    ["__proto__"]: v.optional(v.string()),
  });
  const LINES = [
    '{"driver":"a","constructor":"Ferrari","toString":"t","valueOf":1,"__proto__":"p"}',
    '{"driver":"b"}',
    '{"driver":"c","__proto__":{"polluted":true}}',
    '{"driver":"d","constructor":42}',
    '{"driver":"e","toString":null}',
  ];

  async function through(schema: v.GenericSchema<unknown, v.InferOutput<typeof Result>>) {
    const dir = await tempDir("sluice-inherited-");
    try {
      const input = join(dir.path, "results.ndjson");
      await writeFile(input, `${LINES.join("\n")}\n`);
      const letters: DeadLetter[] = [];
      const summary = await run(
        fromNdjson(input).pipe(
          validate(schema),
          deadLetter((entry) => letters.push(entry)),
          toParquet(join(dir.path, "out"), { schema: Result, mode: "overwrite" }),
        ),
      );
      // Each column under a plain alias: an object key "__proto__" would not survive the row objects.
      const found = await query(`SELECT driver, "constructor" AS ctor, "toString" AS str, "valueOf" AS val, "__proto__" AS proto FROM ${dataset(join(dir.path, "out"))} ORDER BY driver`);
      const rows = found.map((row) => [row.driver, row.ctor, row.str, row.val === null ? null : Number(row.val), row.proto]);
      return { summary, rows, letters: letters.map((e) => [e.line, e.stage, e.error]) };
    } finally {
      await dir.remove();
    }
  }

  const expected = {
    rows: [
      ["a", "Ferrari", "t", 1, "p"],
      ["b", null, null, null, null],
      ["e", null, null, null, null],
    ],
    letters: [
      [3, "validate", "1 issue: __proto__: Invalid type: Expected string but received null"],
      [4, "validate", "1 issue: constructor: Invalid type: Expected string but received 42"],
    ],
  };

  test("are read as the record's own fields: a record without one is not taken to hold Object's member, and __proto__ is a field (DuckDB reads back each value)", async () => {
    const found = await through(Result);
    expect({ rows: found.rows, letters: found.letters }).toEqual(expected);
    expect(found.summary.written).toBe(3);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  test("the same through valibot itself (a schema the fast check does not compile: a transform), __proto__ kept", async () => {
    // valibot writes its output with `out[key] = value`, which for __proto__ sets the prototype:
    // validate has it check a renamed copy, so the field is kept and issues still name it.
    const found = await through(v.pipe(Result, v.transform((r) => r)));
    expect({ rows: found.rows, letters: found.letters }).toEqual(expected);
  });

  test("a nested __proto__ beside a transformed field is kept, and a missing one is named in the dead letter", async () => {
    const Inner = v.object({ ["__proto__"]: v.string(), n: v.pipe(v.string(), v.transform(Number)) });
    const Outer = v.object({ id: v.string(), inner: Inner });
    const letters: DeadLetter[] = [];
    const outputs: unknown[] = [];
    const records = [
      JSON.parse('{"id":"a","inner":{"__proto__":"kept","n":"7"}}'),
      JSON.parse('{"id":"b","inner":{"n":"8"}}'),
      JSON.parse('{"id":"c","inner":{"__proto__":5,"n":"9"}}'),
    ];
    await run(from(records).pipe(validate(Outer), deadLetter((entry) => letters.push(entry)), tap((r) => outputs.push(r))));
    expect(outputs).toHaveLength(1);
    const inner = (outputs[0] as { inner: Record<string, unknown> }).inner;
    expect([Object.hasOwn(inner, "__proto__"), inner.__proto__, inner.n, Object.getPrototypeOf(inner)]).toEqual([true, "kept", 7, Object.prototype]);
    expect(letters.map((e) => e.issues?.map((i) => [i.path, i.message]))).toEqual([
      [["inner.__proto__", 'Invalid key: Expected "__proto__" but received undefined']],
      [["inner.__proto__", "Invalid type: Expected string but received 5"]],
    ]);
  });
});
