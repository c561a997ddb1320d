/**
 * The `path` option of `fromJson`: where, inside each document, the array of records is.
 */

/** One step of a path: a key of an object, or (when it is a whole number) also an index of an array. */
export interface PathStep {
  readonly key: string;
  /** The UTF-8 bytes of `key`, to compare with keys in the file without decoding them. */
  readonly bytes: Uint8Array;
  /** Set when the step can index an array: a number, or a key made only of digits. */
  readonly index: number | undefined;
}

/**
 * Turns the option into steps: a dot path (`"value"`, `"data.items"`, `"results.0.rows"`) or a
 * list of keys and indices (`["data", "items"]`, for keys that hold dots). Empty or undefined:
 * the top-level value is the array. Throws on an empty key or a negative or fractional index.
 */
export function parsePath(path: string | readonly (string | number)[] | undefined): PathStep[] {
  if (path === undefined || path === "") return [];
  const parts = typeof path === "string" ? path.split(".") : path;
  const encoder = new TextEncoder();
  return parts.map((part) => {
    if (typeof part === "number") {
      if (!Number.isInteger(part) || part < 0) throw new Error(`fromJson: path ${JSON.stringify(path)} has ${part}, which is not an array index`);
      return { key: String(part), bytes: encoder.encode(String(part)), index: part };
    }
    if (part === "" && typeof path === "string") throw new Error(`fromJson: path ${JSON.stringify(path)} has an empty step; write keys with dots as a list: ["a.b", "c"]`);
    return { key: part, bytes: encoder.encode(part), index: /^(0|[1-9]\d{0,14})$/.test(part) ? Number(part) : undefined };
  });
}

/** The first `depth` steps as a message names them: `"data.items"`, or `the top level`. */
export function pathName(steps: readonly PathStep[], depth = steps.length): string {
  if (depth === 0) return "the top level";
  return JSON.stringify(steps.slice(0, depth).map((step) => step.key).join("."));
}
