/**
 * Fields named like what every plain object inherits from `Object.prototype` (`constructor`,
 * `toString`, `valueOf`, `__proto__`, ...). Read as `record[name]`, a record without such a
 * field gives the inherited member (a function, or the prototype itself): a schema took it for a
 * value of the wrong type, and a sink for a cell. Written as `out[name] = value`, `__proto__`
 * sets the object's prototype instead of a field. So these names are read as own fields only, and
 * written as own properties. (A `constructor` column is ordinary data: Formula 1 results have one.)
 */

/** True for a name every plain object inherits, which must be read with {@link ownField}. */
export function inheritedName(name: string): boolean {
  return name in Object.prototype;
}

/** The record's own field `name`, or undefined when the record has no such field of its own. */
export function ownField(record: object, name: string): unknown {
  return Object.hasOwn(record, name) ? (record as Record<string, unknown>)[name] : undefined;
}

/** Reads field `name` of a record: plain indexing, or {@link ownField} for an inherited name. */
export function fieldOf(record: object, name: string, inherited: boolean): unknown {
  return inherited ? ownField(record, name) : (record as Record<string, unknown>)[name];
}

/** Sets field `name` of `target` as an own property (also `__proto__`). */
export function setField(target: object, name: string, value: unknown): void {
  Object.defineProperty(target, name, { value, writable: true, enumerable: true, configurable: true });
}

/** The inherited names a valibot schema has as object entries, at any depth. */
export function inheritedNamesOf(schema: unknown, found = new Set<string>(), seen = new Set<unknown>()): Set<string> {
  if (typeof schema !== "object" || schema === null || seen.has(schema)) return found;
  seen.add(schema);
  const node = schema as {
    readonly entries?: unknown;
    readonly wrapped?: unknown;
    readonly item?: unknown;
    readonly items?: unknown;
    readonly options?: unknown;
    readonly pipe?: unknown;
    readonly key?: unknown;
    readonly value?: unknown;
    readonly rest?: unknown;
  };
  const entries = typeof node.entries === "object" && node.entries !== null ? (node.entries as Record<string, unknown>) : undefined;
  for (const key of Object.keys(entries ?? {})) if (inheritedName(key)) found.add(key);
  for (const part of [entries && Object.values(entries), node.wrapped, node.item, node.items, node.options, node.pipe, node.key, node.value, node.rest]) {
    for (const child of Array.isArray(part) ? part : [part]) inheritedNamesOf(child, found, seen);
  }
  return found;
}

/**
 * Makes copies of parsed values in which the names `hidden` (inherited names a schema has as
 * entries, see {@link inheritedNamesOf}) are present only where a value holds them itself: valibot
 * looks keys up with `in`, so a field named `constructor` was "present" in every record. The
 * copies' objects keep a `constructor` (valibot names a received object's kind by it) unless
 * that is hidden too.
 */
export function ownViewer(hidden: ReadonlySet<string>): (value: unknown) => unknown {
  const prototype = Object.create(null) as object;
  if (!hidden.has("constructor")) Object.defineProperty(prototype, "constructor", { value: Object });
  const view = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(view);
    if (typeof value !== "object" || value === null || Object.getPrototypeOf(value) !== Object.prototype) return value;
    const copy = Object.create(prototype) as Record<string, unknown>;
    for (const key of Object.keys(value)) setField(copy, key, view((value as Record<string, unknown>)[key]));
    return copy;
  };
  return view;
}
