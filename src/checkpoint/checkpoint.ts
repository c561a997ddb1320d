import type { StartPoint } from "../sources/files.ts";

/** A run's checkpoint (placeholder while it is being written). */
export interface Checkpoint {
  startOf(source: string, size: number): StartPoint | "done" | undefined;
  mark(source: string, line: number, byteOffset: number): void;
  ended(source: string, size: number): void;
}
