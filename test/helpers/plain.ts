import { POSITION } from "../../src/flow/position.ts";

/**
 * A record as user code compares it: without the position sluice attaches for its own use
 * (a symbol key that `toEqual` would otherwise compare). Returns a shallow copy of objects.
 */
export function plain<T>(value: T): T {
  if (typeof value !== "object" || value === null || !(POSITION in value)) return value;
  if (Array.isArray(value)) return [...value] as T;
  const { [POSITION]: _position, ...rest } = value as Record<PropertyKey, unknown>;
  return rest as T;
}
