/**
 * One JSON document holding a large array of clickstream events, for the JSON-document
 * benchmark: the events of {@link generateClickstream}, minus the truncated ones (a truncated
 * element would damage the document itself, after which no reader goes on), so every defect left
 * is one a schema catches (wrong types, missing fields, unknown values, impossible timestamps).
 */
import { rm } from "node:fs/promises";
import { generateClickstream } from "./clickstream.ts";

/** Bytes an event takes on average in the generated NDJSON, used to size a document. */
const BYTES_PER_EVENT = 356;

/** How many events make a document of about `bytes` bytes. */
export const eventsForBytes = (bytes: number): number => Math.max(1, Math.round(bytes / BYTES_PER_EVENT));

/**
 * Writes `[` event `,` event ... `]` (one event a line) to `path`, flushing as it goes so memory
 * stays flat; returns the number of elements and how many carry each defect.
 *
 * @example
 * await writeClickstreamDocument("data/events.json", { count: 3_000_000, seed: 7 });
 */
export async function writeClickstreamDocument(
  path: string,
  options: { count: number; seed?: number; defectRate?: number },
): Promise<{ elements: number; defects: Record<string, number> }> {
  // A file writer does not truncate: old bytes would survive past the new end.
  await rm(path, { force: true });
  const writer = Bun.file(path).writer({ highWaterMark: 1 << 20 });
  const defects: Record<string, number> = {};
  let elements = 0;
  let pending: string[] = [];
  let size = 0;
  // Each chunk after the first starts with the comma that separates it from the one before.
  const flush = () => writer.write(`${elements > pending.length ? ",\n" : ""}${pending.join(",\n")}`);
  writer.write("[\n");
  for (const { text, defect } of generateClickstream(options)) {
    if (defect === "malformed_json") continue;
    if (defect) defects[defect] = (defects[defect] ?? 0) + 1;
    pending.push(text);
    size += text.length;
    elements++;
    if (size > 1 << 20) {
      flush();
      await writer.flush();
      pending = [];
      size = 0;
    }
  }
  if (pending.length > 0) flush();
  writer.write("\n]\n");
  await writer.end();
  return { elements, defects };
}
