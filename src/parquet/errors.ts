/** An infrastructure failure while writing the dataset (disk full, permission denied, encoder crash). */
export class ParquetWriteError extends Error {
  /** The file that could not be written. */
  readonly path: string;
  readonly code: string | undefined;
  constructor(path: string, cause: unknown) {
    const code = (cause as NodeJS.ErrnoException | undefined)?.code;
    super(`cannot write Parquet file ${path}: ${(cause as Error)?.message ?? String(cause)}`, { cause });
    this.name = "ParquetWriteError";
    this.path = path;
    this.code = code;
  }
}
