/**
 * A fast path for valibot: a checker generated from the schema (with `new Function`) that
 * answers "valid, and here is valibot's output" or "not valid" for the common shapes.
 *
 * valibot's `safeParse` builds datasets, issue arrays and closures for every value (about
 * 1 M records/s for an 11-field object); a generated check runs several times faster. It never
 * decides alone that a record is bad: on "not valid" the caller runs `safeParse`, which both
 * confirms it and produces the issues. So the generated code must only never accept what valibot
 * rejects, and must return the same output valibot would. Any schema part it does not know (a
 * transform, a default, an unfamiliar action) means no fast path at all.
 */
import type * as v from "valibot";
import { inheritedName, setField } from "./fields.ts";

/** The answer of a compiled check for an invalid value. */
export const INVALID: unique symbol = Symbol("invalid");

/** A compiled check: valibot's output for a valid input, {@link INVALID} otherwise. */
export type CompiledCheck = (input: unknown) => unknown;

interface Node {
  readonly kind: string;
  readonly type: string;
  readonly wrapped?: Node;
  readonly default?: unknown;
  readonly fallback?: unknown;
  readonly entries?: Record<string, Node>;
  readonly item?: Node;
  readonly options?: readonly unknown[];
  readonly literal?: unknown;
  readonly requirement?: unknown;
  readonly pipe?: readonly Node[];
}

class Unsupported extends Error {}

// Validation actions whose whole behaviour is `requirement.test(value)`.
const REGEX_ACTIONS = new Set([
  "regex",
  "iso_date",
  "iso_date_time",
  "iso_time",
  "iso_time_second",
  "iso_timestamp",
  "iso_week",
  "email",
  "uuid",
  "digits",
  "hexadecimal",
]);

/**
 * Compiles a valibot schema into a fast check, or returns `undefined` when the schema uses
 * something the compiler does not know (then use `safeParse` alone).
 */
export function compileCheck(schema: v.GenericSchema): CompiledCheck | undefined {
  const constants: unknown[] = [];
  let counter = 0;
  const fresh = (prefix: string) => `${prefix}${counter++}`;
  const constant = (value: unknown) => {
    constants.push(value);
    return `k[${constants.length - 1}]`;
  };

  // Emits statements that check `value` against `node` and assign valibot's output to `out`;
  // they `return F` on the first failure.
  function emit(node: Node, value: string, out: string): string {
    if (node.fallback !== undefined) throw new Unsupported("fallback");
    if (node.pipe) {
      let code = "";
      let schemas = 0;
      for (const item of node.pipe) {
        // A schema later in a pipe checks the output of the one before it (an object without the
        // keys it dropped): left to valibot rather than compiled against the original input.
        if (item.kind === "schema" && schemas++ > 0) throw new Unsupported("a second schema in a pipe");
        if (item.kind === "schema") code += emit(item, value, out);
        else if (item.kind === "validation") code += emitAction(item, out);
        else if (item.kind !== "metadata") throw new Unsupported(item.type);
      }
      return code;
    }
    switch (node.type) {
      case "string":
        return `if (typeof ${value} !== "string") return F; ${out} = ${value};\n`;
      case "number":
        return `if (typeof ${value} !== "number" || ${value} !== ${value}) return F; ${out} = ${value};\n`;
      case "boolean":
        return `if (typeof ${value} !== "boolean") return F; ${out} = ${value};\n`;
      case "bigint":
        return `if (typeof ${value} !== "bigint") return F; ${out} = ${value};\n`;
      case "literal":
        return `if (${value} !== ${constant(node.literal)}) return F; ${out} = ${value};\n`;
      case "picklist":
        return `if (!${constant(new Set(node.options))}.has(${value})) return F; ${out} = ${value};\n`;
      case "optional":
      case "nullable":
      case "nullish":
      case "exact_optional":
      case "undefinedable": {
        if (node.default !== undefined || !node.wrapped) throw new Unsupported("default");
        // exact_optional lets the key be absent (handled by the object) but not be undefined.
        if (node.type === "exact_optional") return emit(node.wrapped, value, out);
        const empty =
          node.type === "nullable"
            ? `${value} === null`
            : node.type === "nullish"
              ? `(${value} === null || ${value} === undefined)`
              : `${value} === undefined`;
        return `if (${empty}) { ${out} = ${value}; } else {\n${emit(node.wrapped, value, out)}}\n`;
      }
      case "array": {
        if (!node.item) throw new Unsupported("array");
        const i = fresh("i");
        const item = fresh("v");
        const result = fresh("r");
        const copied = fresh("a");
        return (
          `if (!Array.isArray(${value})) return F;\n` +
          `const ${copied} = new Array(${value}.length);\n` +
          `for (let ${i} = 0; ${i} < ${value}.length; ${i}++) { const ${item} = ${value}[${i}]; let ${result};\n` +
          `${emit(node.item, item, result)}${copied}[${i}] = ${result}; }\n${out} = ${copied};\n`
        );
      }
      case "object":
      case "strict_object": {
        const object = fresh("o");
        let code = `if (!${value} || typeof ${value} !== "object") return F;\nconst ${object} = {};\n`;
        for (const [key, entry] of Object.entries(node.entries ?? {})) {
          const name = JSON.stringify(key);
          const field = fresh("f");
          const result = fresh("r");
          const optional = entry.type === "optional" || entry.type === "nullish" || entry.type === "exact_optional";
          // A name every object inherits (`constructor`) is present only as the record's own
          // field, and `__proto__` is written as a field, not as the output's prototype (fields.ts).
          const present = inheritedName(key) ? `Object.hasOwn(${value}, ${name})` : `${name} in ${value}`;
          const set = key === "__proto__" ? `${constant(setField)}(${object}, ${name}, ${result});` : `${object}[${name}] = ${result};`;
          code += `if (${present}) { const ${field} = ${value}[${name}]; let ${result};\n${emit(entry, field, result)}${set} }`;
          code += optional ? "\n" : " else return F;\n";
        }
        if (node.type === "strict_object") {
          const key = fresh("key");
          // hasOwn, not "in": a key such as "constructor" is not an entry. Rejecting is always safe here,
          // since valibot then decides.
          code += `for (const ${key} in ${value}) if (!Object.hasOwn(${constant(node.entries)}, ${key})) return F;\n`;
        }
        return `${code}${out} = ${object};\n`;
      }
      default:
        throw new Unsupported(node.type);
    }
  }

  function emitAction(action: Node, value: string): string {
    const req = () => constant(action.requirement);
    switch (action.type) {
      case "min_length":
        return `if (!(${value}.length >= ${req()})) return F;\n`;
      case "max_length":
        return `if (!(${value}.length <= ${req()})) return F;\n`;
      case "length":
        return `if (${value}.length !== ${req()}) return F;\n`;
      case "non_empty":
        return `if (${value}.length === 0) return F;\n`;
      case "min_value":
        return `if (!(${value} >= ${req()})) return F;\n`;
      case "max_value":
        return `if (!(${value} <= ${req()})) return F;\n`;
      case "integer":
        return `if (!Number.isInteger(${value})) return F;\n`;
      case "safe_integer":
        return `if (!Number.isSafeInteger(${value})) return F;\n`;
      case "finite":
        return `if (!Number.isFinite(${value})) return F;\n`;
      case "check":
        return `if (!${req()}(${value})) return F;\n`;
      default:
        if (REGEX_ACTIONS.has(action.type) && action.requirement instanceof RegExp) {
          return `if (!${req()}.test(${value})) return F;\n`;
        }
        throw new Unsupported(action.type);
    }
  }

  try {
    const body = `let out;\n${emit(schema as unknown as Node, "input", "out")}return out;`;
    const factory = new Function("k", "F", `return function compiledCheck(input) {\n${body}\n};`);
    return factory(constants, INVALID) as CompiledCheck;
  } catch (error) {
    if (error instanceof Unsupported) return undefined;
    throw error;
  }
}
