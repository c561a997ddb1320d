/**
 * Turns the text cells of a CSV record into the JavaScript values a valibot schema's input
 * expects (numbers, bigints, booleans, null, strings, parsed JSON), strictly: a cell that is not
 * exactly a value of its column's type is reported, never rounded, trimmed or guessed.
 *
 * The checks that need no conversion (a string matching a pattern, a timestamp naming a real
 * instant, a number in range) are left to `validate(schema)`, which runs after the source.
 */
import type * as v from "valibot";
import type { DeadLetterIssue } from "../../deadletter/entry.ts";
import { type ColumnKind, SchemaError, type SchemaField, schemaFields } from "../../schema/columns.ts";
import { parseIsoMicros } from "../../schema/instant.ts";
import { describeNumberLoss, numberLoss, problemOf } from "../json/numbers.ts";

/** What a column's cells become. */
type Conversion = "text" | "integer" | "bigint" | "number" | "boolean" | "date" | "array" | "object" | "json";

/** What to do with header columns the schema does not name. */
export type ExtraColumns = "keep" | "drop" | "error";

/** How cells are read, beside the schema. */
export interface ConvertOptions {
  /** Unquoted cells that mean "no value" (default `[""]`). A quoted cell is never null. */
  readonly nullValues?: readonly string[];
  /** Cells read as `true` in a boolean column (default `true`, `TRUE`, `True`, `1`). */
  readonly trueValues?: readonly string[];
  /** Cells read as `false` in a boolean column (default `false`, `FALSE`, `False`, `0`). */
  readonly falseValues?: readonly string[];
  /** Header columns the schema does not name: kept as strings (default), dropped, or an error. */
  readonly extraColumns?: ExtraColumns;
}

/** How one schema field is read. */
interface FieldSpec {
  readonly name: string;
  readonly conversion: Conversion;
  /** The schema admits a missing value: `null` for nullable/nullish, `undefined` for optional only. */
  readonly nullable: boolean;
  readonly empty: null | undefined;
}

interface Slot {
  readonly key: string;
  readonly convert: (text: string) => unknown;
  readonly expected: string;
  readonly nullable: boolean;
  readonly empty: null | undefined;
}

/** Returned by a converter for a cell it cannot read. */
const FAIL: unique symbol = Symbol("fail");

/** The answer of {@link CsvPlan.build} for a record with cells that do not convert. */
export const UNCONVERTED: unique symbol = Symbol("unconverted");

/** How the records of one file become objects. */
export interface CsvPlan {
  /** Fields every record must have. */
  readonly width: number;
  /** The record as an object, or {@link UNCONVERTED} (then `issues` and `error` say why). */
  build(fields: readonly string[], quoted: readonly boolean[] | undefined): Record<string, unknown> | typeof UNCONVERTED;
  /** The problems of the last record that did not convert. */
  issues: DeadLetterIssue[];
  error: string;
}

const KIND_CONVERSION: Record<ColumnKind, Conversion> = {
  utf8: "text",
  float64: "number",
  int64: "integer",
  bool: "boolean",
  timestamp: "text",
  date: "text",
  list: "array",
  struct: "object",
  json: "json",
};

/**
 * The fields of an object schema (`object`, `strictObject` or `looseObject`) and what each one's
 * cells become. The schema is read by {@link schemaFields}, the walker the sink's columns come
 * from; a field whose pipe ends in a transform (no column type) is read by the type its pipe
 * starts from, since that is the input the schema expects.
 */
export function fieldsOf(schema: v.GenericSchema): FieldSpec[] {
  return schemaFields(schema).map((field) => ({
    name: field.name,
    conversion: conversionOf(field),
    nullable: field.nullable,
    empty: field.admitsNull ? null : undefined,
  }));
}

const INPUT_CONVERSION: Readonly<Record<string, Conversion>> = { string: "text", number: "number", bigint: "bigint", boolean: "boolean" };

function conversionOf(field: SchemaField): Conversion {
  let conversion: Conversion;
  if (field.column instanceof SchemaError) {
    const input = INPUT_CONVERSION[field.type];
    if (!input) throw field.column;
    conversion = input;
  } else {
    conversion = KIND_CONVERSION[field.column.kind];
  }
  // The column kind says how a value is stored; the cell must become what the schema takes in.
  if (field.type === "bigint") return "bigint";
  if (field.type === "number") return field.actions.has("integer") || field.actions.has("safe_integer") ? "integer" : "number";
  if (field.type === "date") return "date";
  if (conversion === "json") return field.type === "any" || field.type === "unknown" ? "text" : "object";
  return conversion;
}

/**
 * Plans how the records of a file whose columns are `names` become objects. Throws, naming
 * `where`, when the file lacks a column the schema requires, names a column twice, or (with
 * `extraColumns: "error"`) has columns the schema does not name.
 */
export function planRecords(
  names: readonly string[],
  fields: readonly FieldSpec[] | undefined,
  options: ConvertOptions,
  where: string,
): CsvPlan {
  const seen = new Set<string>();
  for (const name of names) {
    if (seen.has(name)) throw new Error(`${where} names the column "${name}" twice`);
    seen.add(name);
  }
  const byName = new Map((fields ?? []).map((f) => [f.name, f]));
  const missing = (fields ?? []).filter((f) => !f.nullable && !seen.has(f.name)).map((f) => f.name);
  if (missing.length > 0) {
    throw new Error(
      `${where} has no column ${missing.map((m) => `"${m}"`).join(", ")}, which the schema requires (its columns: ${names.map((m) => `"${m}"`).join(", ")})`,
    );
  }
  const extra = fields ? names.filter((n) => !byName.has(n)) : [];
  const extraColumns = options.extraColumns ?? "keep";
  if (extra.length > 0 && extraColumns === "error") {
    throw new Error(
      `${where} has columns the schema does not name: ${extra.map((m) => `"${m}"`).join(", ")}; pass extraColumns: "drop" or "keep" to accept them`,
    );
  }

  const converters = makeConverters(options);
  const slots: (Slot | undefined)[] = names.map((name) => {
    const field = byName.get(name);
    if (!field) {
      if (fields && extraColumns === "drop") return undefined;
      return { key: name, convert: converters.text, expected: "text", nullable: true, empty: null };
    }
    return {
      key: name,
      convert: converters[field.conversion],
      expected: EXPECTED[field.conversion],
      nullable: field.nullable,
      empty: field.empty,
    };
  });
  // Nullable fields the file does not have: null (or absent, for optional ones) in every record.
  const absentNulls = (fields ?? []).filter((f) => f.nullable && f.empty === null && !seen.has(f.name)).map((f) => f.name);

  const nullValues = options.nullValues ?? [""];
  const onlyEmpty = nullValues.length === 1 && nullValues[0] === "";
  const nullSet = new Set(nullValues);
  const isNull = onlyEmpty ? (text: string) => text.length === 0 : (text: string) => nullSet.has(text);
  const width = names.length;

  const keep = (key: string, value: unknown, record: Record<string, unknown>) => {
    // A plain assignment to "__proto__" would set the prototype instead of a field.
    if (key === "__proto__") Object.defineProperty(record, key, { value, enumerable: true, writable: true, configurable: true });
    else record[key] = value;
  };

  // The explaining path: converts cell by cell and lists every problem. The generated builder
  // below hands a record here as soon as one of its cells fails.
  function explain(cells: readonly string[], quoted: readonly boolean[] | undefined): Record<string, unknown> | typeof UNCONVERTED {
    const record: Record<string, unknown> = {};
    let issues: DeadLetterIssue[] | undefined;
    for (let i = 0; i < width; i++) {
      const slot = slots[i];
      if (slot === undefined) continue;
      const text = cells[i] as string;
      if ((quoted === undefined || !quoted[i]) && isNull(text)) {
        if (slot.nullable) {
          if (slot.empty === null) keep(slot.key, null, record);
          continue;
        }
        issues ??= [];
        issues.push({
          path: slot.key,
          expected: slot.expected,
          received: JSON.stringify(text),
          message: `column "${slot.key}" is empty, but the schema requires a value (make the field nullable, or quote the cell for an empty string)`,
        });
        continue;
      }
      const value = slot.convert(text);
      if (value === FAIL) {
        issues ??= [];
        issues.push({
          path: slot.key,
          expected: slot.expected,
          received: JSON.stringify(text),
          message: `column "${slot.key}": ${describe(text)} ${numberProblem(slot.expected, text) ?? `is not ${slot.expected}`}`,
        });
        continue;
      }
      keep(slot.key, value, record);
    }
    if (issues) {
      plan.issues = issues;
      plan.error = issues.map((issue) => issue.message).join("; ");
      return UNCONVERTED;
    }
    for (const name of absentNulls) keep(name, null, record);
    return record;
  }

  const plan: CsvPlan = {
    width,
    issues: [],
    error: "",
    build: generateBuilder(slots, absentNulls, onlyEmpty, isNull, explain) ?? explain,
  };
  return plan;
}

/** Widest header read by a generated builder; wider ones are read by the explaining loop. */
const MAX_GENERATED_COLUMNS = 4096;

/**
 * Generates the builder of one file's records (with `new Function`): an object literal with the
 * column names as fixed keys and one converter per call site is several times faster than
 * assigning computed keys in a loop. Returns `undefined` when a key cannot be a literal key.
 */
function generateBuilder(
  slots: readonly (Slot | undefined)[],
  absentNulls: readonly string[],
  onlyEmpty: boolean,
  isNull: (text: string) => boolean,
  explain: CsvPlan["build"],
): CsvPlan["build"] | undefined {
  // A function of one local per column compiles in time that grows with the columns (15 s at
  // 300,000) and at about a million overflows the stack when called: a very wide header (often a
  // file that is not CSV at all) is read by the loop instead.
  if (slots.length > MAX_GENERATED_COLUMNS) return undefined;
  const keys = [...slots.flatMap((s) => (s ? [s.key] : [])), ...absentNulls];
  if (keys.includes("__proto__")) return undefined;
  const lines: string[] = [];
  const fields: string[] = [];
  const omit: string[] = [];
  const converters: ((text: string) => unknown)[] = [];
  slots.forEach((slot, i) => {
    if (!slot) return;
    const empty = slot.nullable ? (slot.empty === null ? "null" : "undefined") : "FAIL";
    const nullTest = onlyEmpty ? `t${i}.length === 0` : `isNull(t${i})`;
    const convert = slot.convert === TEXT ? `t${i}` : `c${converters.push(slot.convert) - 1}(t${i})`;
    lines.push(
      `const t${i} = cells[${i}];`,
      `const v${i} = ${nullTest} && (quoted === undefined || !quoted[${i}]) ? ${empty} : ${convert};`,
      `if (v${i} === FAIL) return explain(cells, quoted);`,
    );
    fields.push(`${JSON.stringify(slot.key)}: v${i}`);
    if (slot.nullable && slot.empty === undefined) omit.push(`if (v${i} === undefined) delete record[${JSON.stringify(slot.key)}];`);
  });
  for (const name of absentNulls) fields.push(`${JSON.stringify(name)}: null`);
  const body = `${lines.join("\n")}
const record = { ${fields.join(", ")} };
${omit.join("\n")}
return record;`;
  const names = converters.map((_, i) => `c${i}`);
  const make = new Function("FAIL", "isNull", "explain", ...names, `return function build(cells, quoted) {\n${body}\n};`);
  return make(FAIL, isNull, explain, ...converters) as CsvPlan["build"];
}

const EXPECTED: Record<Conversion, string> = {
  text: "text",
  integer: "an integer (digits with an optional sign, within ±2^53)",
  bigint: "an integer (digits with an optional sign)",
  number: "a decimal number (such as -12.5, 3, .5 or 1e-3)",
  boolean: "a boolean",
  date: "an ISO-8601 timestamp with at most millisecond precision",
  array: "a JSON array",
  object: "a JSON object",
  json: "JSON",
};

/** What each JSON cell conversion accepts, by the wording of what it expects. */
const JSON_KINDS: Readonly<Record<string, (value: unknown) => boolean>> = {
  [EXPECTED.array]: Array.isArray,
  [EXPECTED.object]: (value) => typeof value === "object" && value !== null && !Array.isArray(value),
  [EXPECTED.json]: () => true,
};

/**
 * Why a cell was refused when it is of the right kind but holds a number a float64 cannot hold: a
 * decimal for a number column, or a number (or nesting too deep) inside a JSON cell.
 */
function numberProblem(expected: string, text: string): string | undefined {
  if (expected === EXPECTED.number) return isDecimal(text) ? problemOf(text) : undefined;
  const accept = JSON_KINDS[expected];
  if (accept === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  const loss = accept(value) ? numberLoss(text, value) : undefined;
  return loss && `is refused: ${describeNumberLoss(loss, `character ${loss.index + 1} of the cell`)}`;
}

function describe(text: string): string {
  return text.length > 80 ? `${JSON.stringify(text.slice(0, 80))}…` : JSON.stringify(text);
}

const TEXT = (text: string): unknown => text;

function makeConverters(options: ConvertOptions): Record<Conversion, (text: string) => unknown> {
  // Short lists: comparing strings beats hashing them.
  const truths = [...(options.trueValues ?? ["true", "TRUE", "True", "1"])];
  const falsities = [...(options.falseValues ?? ["false", "FALSE", "False", "0"])];
  return {
    text: TEXT,
    integer: parseInteger,
    bigint: (text) => (isInteger(text) ? BigInt(text) : FAIL),
    number: parseDecimal,
    boolean: (text) => (truths.includes(text) ? true : falsities.includes(text) ? false : FAIL),
    date(text) {
      const micros = parseIsoMicros(text);
      // A Date holds milliseconds: finer digits would be lost, so they are refused.
      if (Number.isNaN(micros) || micros % 1000 !== 0) return FAIL;
      return new Date(micros / 1000);
    },
    array: (text) => parseJson(text, JSON_KINDS[EXPECTED.array] as (value: unknown) => boolean),
    object: (text) => parseJson(text, JSON_KINDS[EXPECTED.object] as (value: unknown) => boolean),
    json: (text) => parseJson(text, JSON_KINDS[EXPECTED.json] as (value: unknown) => boolean),
  };
}

function parseJson(text: string, accept: (value: unknown) => boolean): unknown {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return FAIL;
  }
  // JSON.parse reads every number as a float64 and nests without bound, as it does for an NDJSON
  // line: a cell holding 1e400 or 9007199254740993 would be written as Infinity or another number,
  // and one nested tens of thousands deep would overflow the stack where it is serialised. Such a
  // cell is refused as a JSON source refuses such a line.
  return accept(value) && numberLoss(text, value) === undefined ? value : FAIL;
}

const POWERS_OF_TEN = Array.from({ length: 23 }, (_, i) => 10 ** i);

/**
 * A decimal cell as a number, or FAIL. Plain decimals of up to 15 significant digits and 22
 * fraction digits are computed as mantissa / 10^k, which is exact division of two exact numbers
 * and so rounds exactly as `Number` would; anything else goes through the grammar and `Number`.
 */
function parseDecimal(text: string): unknown {
  const n = text.length;
  let i = 0;
  const first = text.charCodeAt(0);
  if (first === 43 || first === 45) i = 1;
  let mantissa = 0;
  let digits = 0;
  let fraction = -1;
  for (; i < n; i++) {
    const c = text.charCodeAt(i);
    const d = c - 48;
    if (d >= 0 && d <= 9) {
      mantissa = mantissa * 10 + d;
      digits++;
      if (fraction >= 0) fraction++;
    } else if (c === 46 && fraction < 0) {
      fraction = 0;
    } else {
      break;
    }
  }
  if (i === n && digits > 0 && digits <= 15 && fraction <= 22) {
    const value = fraction > 0 ? mantissa / (POWERS_OF_TEN[fraction] as number) : mantissa;
    return first === 45 ? -value : value;
  }
  if (!isDecimal(text)) return FAIL;
  // A decimal a float64 cannot hold (1e400, 12345678901234567890, 1e-400) is refused, never
  // rounded silently: `explain` says why.
  if (problemOf(text) !== undefined) return FAIL;
  const value = Number(text);
  return Number.isFinite(value) ? value : FAIL;
}

/** An integer cell as a number, or FAIL when it is not integer text or not a safe integer. */
function parseInteger(text: string): unknown {
  const n = text.length;
  let i = 0;
  const first = text.charCodeAt(0);
  if (first === 43 || first === 45) i = 1;
  // Up to 15 digits cannot leave the safe range: add them up directly instead of parsing twice.
  if (i >= n || n - i > 15) return isInteger(text) && Number.isSafeInteger(Number(text)) ? Number(text) : FAIL;
  let value = 0;
  for (; i < n; i++) {
    const d = text.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return FAIL;
    value = value * 10 + d;
  }
  return first === 45 ? -value : value;
}

/** `[+-]?[0-9]+`: no spaces, no decimal point, no exponent, no thousands separator. */
function isInteger(text: string): boolean {
  const n = text.length;
  let i = 0;
  const first = text.charCodeAt(0);
  if (first === 43 || first === 45) i = 1;
  if (i >= n) return false;
  for (; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
}

/** `[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?`: no spaces, `NaN`, `Infinity`, hex or commas. */
function isDecimal(text: string): boolean {
  const n = text.length;
  let i = 0;
  let c = text.charCodeAt(0);
  if (c === 43 || c === 45) c = text.charCodeAt(++i);
  let digits = 0;
  while (c >= 48 && c <= 57) {
    digits++;
    c = text.charCodeAt(++i);
  }
  if (c === 46) {
    c = text.charCodeAt(++i);
    while (c >= 48 && c <= 57) {
      digits++;
      c = text.charCodeAt(++i);
    }
  }
  if (digits === 0) return false;
  if (c === 101 || c === 69) {
    c = text.charCodeAt(++i);
    if (c === 43 || c === 45) c = text.charCodeAt(++i);
    let exponent = 0;
    while (c >= 48 && c <= 57) {
      exponent++;
      c = text.charCodeAt(++i);
    }
    if (exponent === 0) return false;
  }
  return i === n;
}
