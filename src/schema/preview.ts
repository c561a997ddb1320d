/**
 * The message for text a column cannot store: it holds a lone surrogate, which has no UTF-8 form
 * (a writer would put U+FFFD in its place). "expects a string, got string" would leave the reader
 * guessing.
 */
export function notWellFormed(column: string, text: string): string {
  return `column "${column}" is not well-formed Unicode (it holds a lone surrogate, which has no UTF-8 form): ${JSON.stringify(text).slice(0, 200)}`;
}

/**
 * A value as a message about a wrong type shows it: its kind, then its JSON text cut to 80
 * characters (`string "abc"`, `array [1,2]`, `bigint 12n`).
 */
export function previewValue(value: unknown): string {
  const kind = Array.isArray(value) ? "array" : value instanceof Date ? "Date" : typeof value;
  let text: string;
  try {
    text = typeof value === "bigint" ? `${value}n` : (JSON.stringify(value) ?? String(value));
  } catch (error) {
    // Too deep to serialise (the stack overflows) or a cycle: String() would recurse the same way.
    text = `(not shown: ${error instanceof Error ? error.message : "cannot be serialised"})`;
  }
  return `${kind} ${text.length > 80 ? `${text.slice(0, 77)}...` : text}`;
}
