/**
 * Derives Arrow/Parquet column types from a valibot object schema, so one schema is the single
 * source of truth for the TypeScript type, the validation and the stored columns.
 *
 * This is the one walker of a schema's shape: the sink's columns ({@link columnsOf}) and the CSV
 * source's cell conversions ({@link schemaFields}) both read it, so they cannot disagree on which
 * roots are objects, which wrappers make a field nullable, or what a field's type is.
 *
 * The mapping is deliberately strict: a schema shape that has no faithful column type (a
 * transform whose output type cannot be seen, a union of unrelated types) is rejected when the
 * sink is created, naming the field, instead of being written as something else.
 */
import type * as v from "valibot";

/** The column types sluice writes. Timestamps are microseconds in UTC; dates are days. */
export type ColumnKind =
  | "utf8"
  | "float64"
  | "int64"
  | "bool"
  | "timestamp"
  | "date"
  | "list"
  | "struct"
  | "json";

/** One column (or nested field) derived from a schema entry. */
export interface ColumnSpec {
  readonly name: string;
  readonly kind: ColumnKind;
  /** `true` when the schema admits null or a missing value. */
  readonly nullable: boolean;
  /** The element of a `list` column. */
  readonly item?: ColumnSpec;
  /** The fields of a `struct` column. */
  readonly fields?: readonly ColumnSpec[];
}

/** Thrown when a schema has no faithful column mapping. */
export class SchemaError extends Error {
  readonly path: string;
  constructor(path: string, message: string) {
    super(`schema field "${path}": ${message}`);
    this.name = "SchemaError";
    this.path = path;
  }
}

// valibot schemas are plain objects; these are the parts of them the mapping reads.
interface SchemaNode {
  readonly type: string;
  readonly wrapped?: SchemaNode;
  readonly entries?: Record<string, SchemaNode>;
  readonly item?: SchemaNode;
  readonly options?: readonly unknown[];
  readonly enum?: Record<string, unknown>;
  readonly literal?: unknown;
  readonly pipe?: readonly { readonly type: string; readonly kind: string }[];
}

const WRAPPERS = new Set(["optional", "nullable", "nullish", "exact_optional", "undefinedable"]);
/** The wrappers that admit `null`; the others admit only a missing (`undefined`) value. */
const NULLING = new Set(["nullable", "nullish"]);
/**
 * Roots whose entries become columns. A `looseObject` root lets keys it does not name through
 * validation; they have no column, so they are not stored, as `object` strips them. (Nested, a
 * `looseObject` is one JSON column instead, which keeps those keys.)
 */
const OBJECT_ROOTS = new Set(["object", "strict_object", "loose_object"]);

/** A top-level entry of an object schema, as the schema reads it and as it is stored. */
export interface SchemaField {
  readonly name: string;
  /** The valibot type under the optional/nullable wrappers (`string`, `number`, `bigint`, `date`, ...). */
  readonly type: string;
  /** The types of the actions in that schema's pipe (`integer`, `iso_date`, `transform`, ...). */
  readonly actions: ReadonlySet<string>;
  /** `true` when a wrapper admits a missing value. */
  readonly nullable: boolean;
  /** `true` when a wrapper admits `null` (`nullable`, `nullish`); otherwise a missing value is `undefined`. */
  readonly admitsNull: boolean;
  /** The field's column, or the error saying why it has none (a transform, a union of different types). */
  readonly column: ColumnSpec | SchemaError;
}

/**
 * Returns the columns of a valibot object schema (`object`, `strictObject` or `looseObject`), in
 * entry order. Throws a {@link SchemaError} naming the first field that has no column type.
 *
 * @example
 * columnsOf(v.object({ id: v.string(), n: v.optional(v.pipe(v.number(), v.integer())) }))
 * // [{ name: "id", kind: "utf8", nullable: false }, { name: "n", kind: "int64", nullable: true }]
 */
export function columnsOf(schema: v.GenericSchema): ColumnSpec[] {
  return schemaFields(schema).map((field) => {
    if (field.column instanceof SchemaError) throw field.column;
    return field.column;
  });
}

/**
 * Returns the top-level fields of a valibot object schema (`object`, `strictObject` or
 * `looseObject`), in entry order: each one's type and pipe under its wrappers, whether it admits
 * null or only a missing value, and its column or the reason it has none. For readers that need
 * more than the column (the CSV source reads a `transform`ed field by the type it starts from).
 * Throws a {@link SchemaError} when the root is not an object schema.
 *
 * @example
 * schemaFields(v.looseObject({ at: v.optional(v.date()) }))
 * // [{ name: "at", type: "date", actions: Set {}, nullable: true, admitsNull: false,
 * //    column: { name: "at", kind: "timestamp", nullable: true } }]
 */
export function schemaFields(schema: v.GenericSchema): SchemaField[] {
  const node = schema as unknown as SchemaNode;
  if (!OBJECT_ROOTS.has(node.type) || !node.entries) {
    throw new SchemaError("(root)", `expected an object schema, got "${node.type}"`);
  }
  return Object.entries(node.entries).map(([name, entry]) => {
    const { inner, nullable, admitsNull } = unwrap(entry);
    let column: ColumnSpec | SchemaError;
    try {
      column = columnOf(name, entry, name);
    } catch (error) {
      if (!(error instanceof SchemaError)) throw error;
      column = error;
    }
    return { name, type: inner.type, actions: actionsOf(inner), nullable, admitsNull, column };
  });
}

/** The schema under the optional/nullable wrappers, and what they admit. */
function unwrap(node: SchemaNode): { inner: SchemaNode; nullable: boolean; admitsNull: boolean } {
  let inner = node;
  let nullable = false;
  let admitsNull = false;
  while (WRAPPERS.has(inner.type) && inner.wrapped) {
    nullable = true;
    if (NULLING.has(inner.type)) admitsNull = true;
    inner = inner.wrapped;
  }
  return { inner, nullable, admitsNull };
}

function actionsOf(node: SchemaNode): Set<string> {
  return new Set((node.pipe ?? []).map((a) => a.type));
}

function fieldsOf(node: SchemaNode, prefix: string): ColumnSpec[] {
  const fields: ColumnSpec[] = [];
  for (const [name, entry] of Object.entries(node.entries ?? {})) {
    fields.push(columnOf(name, entry, prefix ? `${prefix}.${name}` : name));
  }
  return fields;
}

function columnOf(name: string, node: SchemaNode, path: string): ColumnSpec {
  const { inner, nullable } = unwrap(node);
  for (const action of inner.pipe ?? []) {
    if (action.kind === "transformation" && action.type === "transform") {
      throw new SchemaError(
        path,
        "a transform changes the output type, so its column type cannot be derived; validate the stored shape instead",
      );
    }
  }
  const actions = actionsOf(inner);
  switch (inner.type) {
    case "string":
      if (actions.has("iso_timestamp") || actions.has("iso_date_time")) {
        return { name, kind: "timestamp", nullable };
      }
      if (actions.has("iso_date")) return { name, kind: "date", nullable };
      return { name, kind: "utf8", nullable };
    case "number":
      return {
        name,
        kind: actions.has("integer") || actions.has("safe_integer") ? "int64" : "float64",
        nullable,
      };
    case "bigint":
      return { name, kind: "int64", nullable };
    case "boolean":
      return { name, kind: "bool", nullable };
    case "date":
      return { name, kind: "timestamp", nullable };
    case "picklist":
    case "enum":
      return { name, kind: kindOfLiterals(inner.options ?? Object.values(inner.enum ?? {}), path), nullable };
    case "literal":
      return { name, kind: kindOfLiterals([inner.literal], path), nullable };
    case "array":
      if (!inner.item) throw new SchemaError(path, "array schema without an item schema");
      return { name, kind: "list", nullable, item: columnOf("item", inner.item, `${path}[]`) };
    case "object":
    case "strict_object":
      return { name, kind: "struct", nullable, fields: fieldsOf(inner, path) };
    case "union":
    case "variant": {
      const options = (inner.options ?? []) as SchemaNode[];
      const kinds = options.map((o, i) => columnOf(name, o, `${path}|${i}`));
      const first = kinds[0];
      if (!first || kinds.some((k) => k.kind !== first.kind || k.kind === "list" || k.kind === "struct")) {
        throw new SchemaError(path, "a union of different types has no single column type");
      }
      return { name, kind: first.kind, nullable: nullable || kinds.some((k) => k.nullable) };
    }
    case "any":
    case "unknown":
    case "record":
    case "loose_object":
      // Kept whole as JSON text rather than dropping keys the schema does not name.
      return { name, kind: "json", nullable: true };
    default:
      throw new SchemaError(path, `valibot "${inner.type}" has no column type in sluice`);
  }
}

function kindOfLiterals(values: readonly unknown[], path: string): ColumnKind {
  if (values.length > 0 && values.every((x) => typeof x === "string")) return "utf8";
  if (values.length > 0 && values.every((x) => typeof x === "number")) {
    return values.every((x) => Number.isInteger(x)) ? "int64" : "float64";
  }
  if (values.length > 0 && values.every((x) => typeof x === "boolean")) return "bool";
  throw new SchemaError(path, "options of mixed types have no single column type");
}
