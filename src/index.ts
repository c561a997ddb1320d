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
  type DeadLetterStore,
  type DeadLetterStoreOptions,
  type DeadLetterMode,
} from "./deadletter/store.ts";
export { columnsOf, SchemaError, type ColumnSpec, type ColumnKind } from "./schema/columns.ts";
export { isoInstant, parseIsoMicros, parseIsoMicrosExact, parseIsoDays, civilFromDays, daysFromCivil } from "./schema/instant.ts";
export { compileCheck, INVALID, type CompiledCheck } from "./schema/compile.ts";
export { ParquetWriteError } from "./parquet/errors.ts";
export { partitionSegment, NULL_PARTITION } from "./parquet/partition.ts";
export type { Flow, FlowStats } from "./flow/flow.ts";
export { carry, positionOf, stamp, Input, POSITION, type Position } from "./flow/position.ts";
export { LockedError, type LockHolder } from "./io/lock.ts";
export {
  deleteKey,
  deleteManifestEntry,
  listKeys,
  type ManifestEntry,
  ObjectStorageError,
  openObject,
  parseS3Url,
  readManifest,
  type ObjectReadOptions,
  resolveObjects,
  type S3ListOptions,
  type S3Object,
  type S3Options,
  statObject,
  type S3UploadOptions,
  uploadFile,
  writeManifestEntry,
} from "./io/s3.ts";
export {
  fromHttp,
  HttpSourceError,
  type HttpOptions,
  type Pagination,
  type NoPagination,
  type PagePagination,
  type OffsetPagination,
  type CursorPagination,
  type NextPagination,
  type PageReader,
  type Backoff,
} from "./sources/http.ts";
export {
  readDeadLetters,
  streamDeadLetters,
  listDeadLetterFiles,
  fileLines,
  type StoredDeadLetter,
  type StreamDeadLettersOptions,
  type ListDeadLetterFilesOptions,
} from "./deadletter/read.ts";
export { listDeadLetters, type ListDeadLettersOptions, type ListedDeadLetter } from "./deadletter/list.ts";
export {
  summarizeDeadLetters,
  formatDeadLetterSummary,
  errorPattern,
  type SummarizeOptions,
  type DeadLetterSummary,
  type DeadLetterGroup,
  type DeadLetterErrorGroup,
  type DeadLetterSample,
} from "./deadletter/summarize.ts";
export {
  replayDeadLetters,
  recoverReplay,
  readReplayState,
  ReplayFailedError,
  REPLAY_LOCK,
  type ReplayOptions,
  type ReplayFilter,
  type ReplayResult,
  type ReplayRollback,
  type ReplayState,
} from "./deadletter/replay.ts";
export { openCheckpoint, type Checkpoint, type CommitRange } from "./checkpoint/checkpoint.ts";
export { fileSource, resolveInputs, type FileSourceOptions, type FileReading, type StartPoint } from "./sources/files.ts";
export { collect, collectTable, type CollectOptions } from "./notebook/collect.ts";
export { formatCount, formatTable, type FormatTableOptions } from "./notebook/table.ts";
export { formatPreview, type PreviewOptions, withPreview } from "./notebook/view.ts";
export { type CountRow, countBy } from "./notebook/countBy.ts";
export { type ColumnDescription, type DescribeOptions, describe } from "./notebook/describe.ts";
export {
  type Aggregation,
  count,
  type GroupRow,
  groupBy,
  max,
  mean,
  min,
  sum,
  type ValueCount,
  type ValueCountsOptions,
  valueCounts,
} from "./notebook/groupBy.ts";
export { type Histogram, type HistogramBin, type HistogramOptions, histogram } from "./notebook/histogram.ts";
export type { ReadOptions, Tabular } from "./notebook/input.ts";
export { type SqlTable, sql } from "./notebook/sql.ts";
export {
  readDataset,
  readDatasetBatches,
  type ReadDatasetOptions,
  type PartitionMatch,
  type PartitionValue,
  type FilterValue,
  type RowCondition,
  type ScanReport,
} from "./dataset/read.ts";
export {
  inspectDataset,
  type DatasetSummary,
  type ColumnSummary,
  type PartitionSummary,
  type FileSummary,
  type SchemaField,
  type StatValue,
} from "./parquet/metadata.ts";
export { fromCsv, type CsvOptions, type ExtraColumns } from "./sources/csv.ts";
export {
  definePipeline,
  isPipeline,
  parseSchedule,
  runPipeline,
  type Pipeline,
  type PipelineContext,
  type Schedule,
  type ScheduleSpec,
} from "./run/pipeline.ts";
export {
  type Clock,
  ManualClock,
  scheduledRunId,
  type ScheduledPipeline,
  type ScheduleEvent,
  Scheduler,
  type SchedulerOptions,
  systemClock,
  upcomingRuns,
} from "./run/schedule.ts";
export {
  BackfillError,
  backfillPipeline,
  type BackfillOptions,
  type BackfillPipelineOptions,
  type BackfillResult,
  type BackfillState,
  type DateOutcome,
  MAX_BACKFILL_DAYS,
  parseDateRange,
  runBackfill,
} from "./run/backfill.ts";
export { discoverPipelines, loadPipeline, PipelineLoadError, type DiscoveredPipeline } from "./run/discover.ts";
export {
  metrics,
  snapshotMetrics,
  serveMetrics,
  formatPrometheus,
  addInputTotal,
  setLag,
  deleteLag,
  type LagWhere,
  PROMETHEUS_CONTENT_TYPE,
  type MetricsSnapshot,
  type MetricsServer,
  type RunOutcome,
} from "./run/metrics.ts";
export { createLogger, type Logger, type LogFormat, type LogLevel } from "./run/log.ts";
export { redactArgs, redactText } from "./run/redact.ts";
export { checkRunId, isRunId, newRunId } from "./flow/runId.ts";
export { fromPostgres, type PostgresOptions } from "./sources/postgres.ts";
export {
  fromGenerator,
  clickstreamProducer,
  type GeneratorOptions,
  type Producer,
  type Rate,
  type ClickstreamProducerOptions,
} from "./sources/generator.ts";
export { fromStdin, type StdinOptions } from "./sources/stdin.ts";
export { fromJson, type JsonOptions } from "./sources/json.ts";
export { fromPush, PushSource, type PushOptions, type PushPosition } from "./sources/push.ts";
export { parseJson, type ParsedJson } from "./sources/json/numbers.ts";
export { fromRedisStream, type RedisStreamOptions } from "./sources/redis.ts";
export { fromJetStream, type JetStreamOptions } from "./sources/jetstream.ts";
export {
  toSql,
  toClickHouse,
  SqlWriteError,
  type SqlCommit,
  type SqlMode,
  type SqlSinkOptions,
  type ClickHouseSinkOptions,
} from "./sinks/toSql.ts";
export {
  fromKafka,
  type KafkaSourceOptions,
  type KafkaConnectionOptions,
  type KafkaMessageInfo,
  type KafkaBytesRecord,
} from "./sources/kafka.ts";
export { toJetStream, type ToJetStreamOptions, type JetStreamTarget } from "./sinks/toJetStream.ts";
export { toRedisStream, type ToRedisStreamOptions, type RedisStreamTarget } from "./sinks/toRedisStream.ts";
export { toKafka, type ToKafkaOptions, type KafkaPublished } from "./sinks/toKafka.ts";
export { encodeJson, type Published, type PublishLimits, type PublishOptions, type RetryOptions } from "./sinks/publish.ts";
