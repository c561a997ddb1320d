import { filter, map, Observable, type OperatorFunction, type Subscriber } from "rxjs";
import * as v from "valibot";
import type { DeadLetterIssue } from "../src/deadletter/entry.ts";
import { currentFlow, deadLetterRoute, positionIn, sendToDeadLetter, withFlow } from "../src/flow/flow.ts";
import { stamp } from "../src/flow/position.ts";
import { compileCheck, INVALID } from "../src/schema/compile.ts";
import { inheritedNamesOf, ownViewer, protoSafe } from "../src/schema/fields.ts";

export interface ValidateOptions {
  /** Stage name written on dead letters (default `validate`). */
  readonly stage?: string;
}

/**
 * Passes on records that satisfy a valibot schema (as the schema's output: unknown keys of
 * `v.object` are dropped, as valibot does) and sends the rest to the dead letter with every
 * issue: dot path, expected, received and message. Nothing is coerced: `"123"` is not a number.
 *
 * A schema whose own code throws (a `v.check` predicate) rejects the record with the thrown
 * message. Completes, errors and unsubscribes with its source.
 *
 * @example
 * const Click = v.object({ user_id: v.string(), duration_ms: v.pipe(v.number(), v.integer()) });
 * fromNdjson("events.ndjson").pipe(validate(Click), deadLetter("out/dead-letter"));
 */
export function validate<TSchema extends v.GenericSchema>(
  schema: TSchema,
  options: ValidateOptions = {},
): OperatorFunction<unknown, v.InferOutput<TSchema>> {
  const stage = options.stage ?? "validate";
  // The generated check only ever says "valid" when valibot would; every rejection is confirmed
  // (and explained) by valibot itself.
  const check = compileCheck(schema);
  const objectSchema = OBJECT_SCHEMAS.has(schema.type);
  // valibot finds a key with `in`: a field named `constructor` would be "present" in every record.
  const inherited = inheritedNamesOf(schema);
  const view = inherited.size > 0 ? ownViewer(inherited) : undefined;
  // valibot would set a `__proto__` entry as its output's prototype: it checks a renamed copy.
  const proto = protoSafe(schema, inherited);
  return function validateOperator(source) {
    return new Observable<v.InferOutput<TSchema>>((subscriber) => {
      const flow = currentFlow(subscriber);
      const route = deadLetterRoute(flow, subscriber);
      function judge(record: unknown): unknown {
        // The output is a new object (valibot copies the known keys): it takes the record's position.
        const position = positionIn(flow, record);
        // valibot takes an array for an object (with every key missing): one whose keys are all
        // optional would pass as an empty row. A wrong type is refused, never coerced.
        if (objectSchema && Array.isArray(record)) {
          const issues = [ARRAY_FOR_OBJECT];
          sendToDeadLetter(flow, stage, summarize(issues), record, position, { issues }, route);
          return REJECTED;
        }
        let result: v.SafeParseResult<TSchema>;
        try {
          if (check) {
            const output = check(record);
            if (output !== INVALID) return output === record || !position ? output : stamp(output, position);
          }
          result = proto ? v.safeParse(proto.schema as TSchema, proto.input(record)) : v.safeParse(schema, view ? view(record) : record);
        } catch (error) {
          // The schema's own code threw (a v.check predicate, a custom action): the record is
          // rejected with that message rather than lost.
          sendToDeadLetter(flow, stage, `the schema check threw: ${messageOf(error)}`, record, position, {}, route);
          return REJECTED;
        }
        if (result.success) {
          const output = proto ? proto.output(result.output) : result.output;
          return output === record || !position ? output : stamp(output, position);
        }
        const issues = result.issues.map(toIssue);
        if (proto) for (const [i, issue] of issues.entries()) issues[i] = { path: proto.text(issue.path), expected: issue.expected === null ? null : proto.text(issue.expected), received: proto.text(issue.received), message: proto.text(issue.message) };
        sendToDeadLetter(flow, stage, summarize(issues), record, position, { issues }, route);
        return REJECTED;
      }
      // Built from RxJS's own operators and subscribed with the downstream subscriber itself, so
      // unsubscribing downstream closes the chain at once, even under a synchronous source. A
      // throw from sendToDeadLetter (no dead-letter target) errors the stream.
      return withFlow(flow, () =>
        source
          .pipe(
            map(judge),
            filter((output) => output !== REJECTED),
          )
          .subscribe(subscriber as Subscriber<unknown>),
      );
    });
  };
}

const REJECTED: unique symbol = Symbol("rejected");

const OBJECT_SCHEMAS = new Set(["object", "loose_object", "strict_object", "object_with_rest"]);
const ARRAY_FOR_OBJECT: DeadLetterIssue = { path: "", expected: "Object", received: "Array", message: "Invalid type: Expected Object but received Array" };

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function toIssue(issue: v.BaseIssue<unknown>): DeadLetterIssue {
  return {
    path: v.getDotPath(issue) ?? "",
    expected: issue.expected,
    received: issue.received,
    message: issue.message,
  };
}

function summarize(issues: readonly DeadLetterIssue[]): string {
  const first = issues
    .slice(0, 3)
    .map((i) => (i.path ? `${i.path}: ${i.message}` : i.message))
    .join("; ");
  const more = issues.length > 3 ? `; and ${issues.length - 3} more` : "";
  return `${issues.length} issue${issues.length === 1 ? "" : "s"}: ${first}${more}`;
}
