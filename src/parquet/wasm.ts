/**
 * parquet-wasm, loaded on first use. Its module and WebAssembly memory take about 35 MB in every
 * thread that loads it; the sink encodes on worker threads, so a main thread that only writes
 * datasets never needs it.
 */
import type * as Wasm from "parquet-wasm";

let loading: Promise<typeof Wasm> | undefined;

/** The parquet-wasm module (the Node build under Bun: ready at import, no `init()`). */
export function parquetWasm(): Promise<typeof Wasm> {
  loading ??= import("parquet-wasm");
  return loading;
}
