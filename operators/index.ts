/**
 * sluice's RxJS operators, one per file. Each is an ordinary `OperatorFunction`: mix them with
 * RxJS's own.
 */
export { validate, type ValidateOptions } from "./validate.ts";
export { enrich, type EnrichOptions } from "./enrich.ts";
export { deadLetter, type DeadLetterTarget, type DeadLetterOptions, type DeadLetterPublish } from "./deadLetter.ts";
export { preview, type PreviewOptions } from "./preview.ts";
export { enrichBatch, type EnrichBatchOptions } from "./enrichBatch.ts";
