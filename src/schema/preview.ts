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
