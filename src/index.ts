/**
 * sluice: sources, sinks and running. Operators are in `sluice/operators`.
 */
export { fromNdjson, type NdjsonOptions } from "./sources/ndjson.ts";
export {
  toParquet,
  type Commit,
  type ParquetSinkOptions,
  type WriteMode,
} from "./sinks/toParquet.ts";
export { run, formatSummary, formatBytes, type RunOptions, type RunSummary } from "./run/run.ts";
export type { DeadLetter, DeadLetterIssue } from "./deadletter/entry.ts";
export {
  openDeadLetterStore,
  readDeadLetters,
  type DeadLetterStore,
  type DeadLetterStoreOptions,
  type DeadLetterMode,
} from "./deadletter/store.ts";
export { columnsOf, SchemaError, type ColumnSpec, type ColumnKind } from "./schema/columns.ts";
export { isoInstant, parseIsoMicros, parseIsoDays, civilFromDays, daysFromCivil } from "./schema/instant.ts";
export { compileCheck, INVALID, type CompiledCheck } from "./schema/compile.ts";
export { ParquetWriteError } from "./parquet/errors.ts";
export { partitionSegment, NULL_PARTITION } from "./parquet/partition.ts";
export type { Flow, FlowStats } from "./flow/flow.ts";
