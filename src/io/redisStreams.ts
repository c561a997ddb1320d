/**
 * Replies of Redis stream commands as Bun's `RedisClient` gives them (RESP3 maps, or RESP2 arrays
 * from an older server).
 */

/** A stream entry: its id and its fields, `[name, value, ...]` (null for an entry deleted since it was read). */
export type StreamEntry = [id: string, fields: string[] | null];

/** The entries of `stream` in an XREADGROUP/XREAD reply (a map by stream name; null when BLOCK timed out). */
export function entriesOf(reply: unknown, stream: string): StreamEntry[] {
  if (reply === null || reply === undefined) return [];
  if (Array.isArray(reply)) {
    // RESP2 form: [[stream, entries], ...].
    for (const item of reply as [string, StreamEntry[]][]) if (item[0] === stream) return item[1] ?? [];
    return [];
  }
  return (reply as Record<string, StreamEntry[]>)[stream] ?? [];
}
