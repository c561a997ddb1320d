/**
 * A stand-in checkpoint for source tests: it resumes where it is told and records the marks a
 * source sets (each a place a later run could resume from), with only what sources call.
 */
import type { Checkpoint } from "../../src/checkpoint/checkpoint.ts";

export function recordingCheckpoint(start?: { line: number; byteOffset: number }): { marks: [number, number][]; checkpoint: Checkpoint } {
  const marks: [number, number][] = [];
  const checkpoint = {
    startOf: () => start,
    mark: (_source: string, line: number, byteOffset: number) => marks.push([line, byteOffset]),
    ended: () => {},
    track: () => {},
    alreadyDeadLettered: () => false,
    finish: async () => {},
    close: () => {},
    beforeSave: () => () => {},
    setPending: () => {},
    loadDeadLetters: () => {},
    save: async () => {},
  };
  return { marks, checkpoint: checkpoint as unknown as Checkpoint };
}
