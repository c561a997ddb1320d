/**
 * Pipeline modules, as `sluice run`, `sluice list` and `sluice dead-letter replay` load them. They
 * live in run/pipeline.ts, beside `run`, since replaying dead letters runs them too; this path
 * stays for pipeline modules that import it.
 */
export { definePipeline, isPipeline, type Pipeline, type PipelineContext, runPipeline } from "../run/pipeline.ts";
