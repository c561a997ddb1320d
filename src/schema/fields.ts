/**
 * Fields named like what every plain object inherits from `Object.prototype` (`constructor`,
 * `toString`, `valueOf`, `__proto__`, ...). Read as `record[name]`, a record without such a
 * field gives the inherited member (a function, or the prototype itself): a schema took it for a
 * value of the wrong type, and a sink for a cell. Written as `out[name] = value`, `__proto__`
 * sets the object's prototype instead of a field. So these names are read as own fields only, and
 * written as own properties. (A `constructor` column is ordinary data: Formula 1 results have one.)
 */
import * as v from "valibot";

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
export function ownViewer(hidden: ReadonlySet<string>, rename: (key: string) => string = (key) => key): (value: unknown) => unknown {
  const prototype = Object.create(null) as object;
  if (!hidden.has("constructor")) Object.defineProperty(prototype, "constructor", { value: Object });
  const view = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(view);
    if (typeof value !== "object" || value === null || Object.getPrototypeOf(value) !== Object.prototype) return value;
    const copy = Object.create(prototype) as Record<string, unknown>;
    for (const key of Object.keys(value)) setField(copy, rename(key), view((value as Record<string, unknown>)[key]));
    return copy;
  };
  return view;
}

/**
 * How `validate` has valibot check a schema with `__proto__` entries without losing them. valibot
 * writes its output with `output[key] = value`, which for `__proto__` sets the output's prototype
 * (a string is ignored) instead of a field: the field was gone from every record a schema with a
 * transform passed. So valibot checks a copy of the schema with each `__proto__` entry under a
 * stand-in key, on a copy of the record with the same renaming; the output gets `__proto__` back
 * as a field, and issues name it in their paths and messages.
 */
export interface ProtoSafe {
  /** The schema with `__proto__` entries renamed (nodes copied only where something below changed). */
  readonly schema: unknown;
  /** A record as valibot should see it: own fields only (see {@link ownViewer}), `__proto__` renamed. */
  readonly input: (value: unknown) => unknown;
  /** valibot's output with `__proto__` fields back, in their places. */
  readonly output: (value: unknown) => unknown;
  /** A path or message with the stand-in named `__proto__` again. */
  readonly text: (text: string) => string;
}

/** A {@link ProtoSafe} for `schema`, or undefined when it has no `__proto__` entry. */
export function protoSafe(schema: unknown, hidden: ReadonlySet<string>): ProtoSafe | undefined {
  if (!hidden.has(PROTO)) return undefined;
  // Not a name a record could hold by chance, and still readable in a message.
  const stand = `${PROTO}\u0000`;
  const view = ownViewer(hidden, (key) => (key === PROTO ? stand : key));
  const restore = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(restore);
    if (typeof value !== "object" || value === null) return value;
    const prototype = Object.getPrototypeOf(value);
    // Only the objects valibot built: a transform's Date or Map is its own.
    if (prototype !== Object.prototype && prototype !== null) return value;
    const copy: Record<string, unknown> = {};
    for (const key of Object.keys(value)) setField(copy, key === stand ? PROTO : key, restore((value as Record<string, unknown>)[key]));
    return copy;
  };
  return { schema: renameEntries(schema, PROTO, stand, new Map()), input: view, output: restore, text: (text) => text.replaceAll(stand, PROTO) };
}

const PROTO = "__proto__";

/** `schema` with the entries named `from` under `to`, at any depth; shared and cyclic parts handled once. */
function renameEntries(schema: unknown, from: string, to: string, done: Map<unknown, unknown>): unknown {
  if (typeof schema !== "object" || schema === null) return schema;
  if (done.has(schema)) return done.get(schema);
  done.set(schema, schema);
  const node = schema as Record<string, unknown>;
  const changes: Record<string, unknown> = {};
  const entries = node["entries"];
  if (typeof entries === "object" && entries !== null) {
    const renamed: Record<string, unknown> = {};
    let changed = false;
    for (const key of Object.keys(entries)) {
      const child = (entries as Record<string, unknown>)[key];
      const next = renameEntries(child, from, to, done);
      if (key === from || next !== child) changed = true;
      setField(renamed, key === from ? to : key, next);
    }
    if (changed) changes["entries"] = renamed;
  }
  for (const part of ["wrapped", "item", "rest", "key", "value"]) {
    const child = node[part];
    const next = renameEntries(child, from, to, done);
    if (next !== child) changes[part] = next;
  }
  for (const part of ["items", "options", "pipe"]) {
    const list = node[part];
    if (!Array.isArray(list)) continue;
    const next = list.map((child) => renameEntries(child, from, to, done));
    if (next.some((child, i) => child !== list[i])) changes[part] = next;
  }
  if (Object.keys(changes).length === 0) return schema;
  // A pipe runs the list it was made with (not `this.pipe`): made anew from the renamed list.
  if (changes["pipe"]) {
    const made = node["async"] ? v.pipeAsync(...(changes["pipe"] as [never])) : v.pipe(...(changes["pipe"] as [never]));
    done.set(schema, made);
    return made;
  }
  // Other schemas read their parts through `this` (`this.entries`, `this.wrapped`): a copy with
  // other parts runs with them. Getters (`~standard`) are kept as getters.
  const copy = Object.create(Object.getPrototypeOf(node), Object.getOwnPropertyDescriptors(node)) as Record<string, unknown>;
  for (const [part, value] of Object.entries(changes)) Object.defineProperty(copy, part, { value, writable: true, enumerable: true, configurable: true });
  done.set(schema, copy);
  return copy;
}
