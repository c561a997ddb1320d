/**
 * `fromCsv`: CSV files (RFC 4180) as an observable of records whose cells are converted to the
 * types a valibot schema expects.
 */
import type { Observable } from "rxjs";
import type * as v from "valibot";
import { sendToDeadLetter } from "../flow/flow.ts";
import { stamp } from "../flow/position.ts";
import { type ConvertOptions, type CsvPlan, fieldsOf, planRecords, UNCONVERTED } from "./csv/convert.ts";
import { type CsvDialect, type RecordLimits, splitRecords } from "./csv/records.ts";
import { type FileReading, type FileSourceOptions, fileSource } from "./files.ts";

export type { ExtraColumns } from "./csv/convert.ts";

/** Options of {@link fromCsv}. */
export interface CsvOptions extends FileSourceOptions, RecordLimits, ConvertOptions {
  /**
   * The valibot object schema the records are meant for: it decides what each column's cells
   * become (numbers, bigints, booleans, null, parsed JSON, or text). Without it every cell is a
   * string, or null for a null value. Pipe `validate(schema)` after the source for the checks.
   */
  readonly schema?: v.GenericSchema;
  /**
   * `true` (default): the first record of each file names the columns. A list of names: the
   * files have no header line and these are their columns. `false`: no header line, the columns
   * are the schema's fields in order.
   */
  readonly header?: boolean | readonly string[];
  /** One ASCII character between fields (default `,`; `;` and `\t` are common). */
  readonly delimiter?: string;
  /** One ASCII character around fields holding delimiters, quotes or line breaks (default `"`). */
  readonly quote?: string;
}

/**
 * Reads CSV files (a path, a glob such as `exports/*.csv`, or a list of either) record by record
 * with Bun's file I/O and emits each record as an object keyed by column name, its cells
 * converted to the types the schema's fields take.
 *
 * Parsing follows RFC 4180: fields in quotes may hold delimiters, doubled quotes and line breaks
 * (CRLF kept as written); `\r\n` or `\n` ends a record; a UTF-8 byte order mark is skipped; a
 * quote character inside an unquoted field is an ordinary character. Conversion is strict:
 * integers are digits with an optional sign (`1.0`, `1e3` and numbers beyond ±2^53 are refused,
 * unless the field is `v.bigint()`); numbers follow a plain decimal grammar (no `1,5`, `NaN`,
 * spaces); booleans are `true`/`false`/`1`/`0` (and `TRUE`, `True`, ...); an unquoted empty
 * cell is null (a quoted `""` is the empty string); JSON columns (arrays, objects) are parsed.
 * Text, timestamps and dates stay strings for `validate(schema)` to check (a `v.date()` field
 * becomes a `Date`).
 *
 * A record that cannot be read becomes a dead letter at stage `parse`, with the file, the line
 * where it begins and its raw text: a wrong number of fields, a cell that does not convert
 * (naming the column), a required cell that is empty, broken quoting, bytes that are not UTF-8
 * (kept as `rawBase64`), a record longer than `maxRecordBytes`, and a quoted field left open at
 * the end of the input (a truncated file). Other records are read as usual.
 *
 * Reading pauses while the sink's memory budget is spent; files are taken in name order,
 * `concurrency` at a time; a checkpointed run resumes a partly read file after its header. Under
 * a checkpoint, since a file may still be written to, a last record without its line ending (in a
 * regular, uncompressed file) is not read but left for the next run, which takes it whole
 * (without a checkpoint it is read: a run reads the file as it is).
 * Completes after the last file. Errors, naming the file, when an input is missing or unreadable,
 * when a header lacks a column the schema requires or names one twice. Unsubscribing stops the
 * read and closes the files.
 *
 * @example
 * const Tx = v.object({ id: v.string(), amount: v.number(), at: isoInstant(), note: v.nullable(v.string()) });
 * fromCsv("drop/*.csv", { schema: Tx, delimiter: ";" }).pipe(validate(Tx), deadLetter("out/dead-letter"))
 */
export function fromCsv(input: string | readonly string[], options: CsvOptions = {}): Observable<Record<string, unknown>> {
  const dialect: CsvDialect = { delimiter: options.delimiter ?? ",", quote: options.quote ?? '"' };
  for (const [name, char] of Object.entries(dialect)) {
    if (char.length !== 1 || char.charCodeAt(0) > 127 || char === "\n" || char === "\r") {
      throw new Error(`fromCsv: ${name} must be one ASCII character other than a line break, got ${JSON.stringify(char)}`);
    }
  }
  if (dialect.delimiter === dialect.quote) throw new Error("fromCsv: the delimiter and the quote must differ");
  const fields = options.schema ? fieldsOf(options.schema) : undefined;
  const header = options.header ?? true;
  let givenNames: readonly string[] | undefined;
  if (Array.isArray(header)) givenNames = header;
  else if (header === false) {
    if (!fields) throw new Error("fromCsv: header: false takes the column names from the schema; give a schema or the names");
    givenNames = fields.map((f) => f.name);
  }
  // Given names are checked now, so a mistake fails before any file is opened.
  const givenPlan = givenNames ? planRecords(givenNames, fields, options, "fromCsv: the given header") : undefined;

  const rule = { kind: "csv", delimiter: dialect.delimiter.charCodeAt(0), quote: dialect.quote.charCodeAt(0) } as const;
  return fileSource("fromCsv", input, options, (file) => readCsv(file, dialect, fields, givenPlan, options), rule) as Observable<
    Record<string, unknown>
  >;
}

async function readCsv(
  file: FileReading,
  dialect: CsvDialect,
  fields: ReturnType<typeof fieldsOf> | undefined,
  givenPlan: CsvPlan | undefined,
  options: CsvOptions,
): Promise<void> {
  const { flow, path, input, start, emit, stopped } = file;
  let plan = givenPlan;
  const headerOf = (names: string[]) => planRecords(names, fields, options, `fromCsv: ${path}`);
  if (!plan && start.byteOffset > 0) plan = headerOf(await readHeader(file, dialect, options));

  await splitRecords(
    file.read,
    dialect,
    {
      record(cells, _quoted, line, raw) {
        if (stopped()) return false;
        if (!plan) {
          // Blank lines before the header carry no data: the header is the first line that is not.
          if (cells.length === 1 && raw === "") return true;
          refuseBareCr(path, line, cells, _quoted);
          plan = headerOf(cells);
          return true;
        }
        const position = input.at(line, raw);
        if (cells.length !== plan.width) {
          const blank = cells.length === 1 && raw === "";
          sendToDeadLetter(flow, "parse", blank ? "blank line" : `${cells.length} fields, expected ${plan.width}`, undefined, position);
          return true;
        }
        const record = plan.build(cells, _quoted);
        if (record === UNCONVERTED) sendToDeadLetter(flow, "parse", plan.error, undefined, position, { issues: plan.issues });
        else emit(stamp(record, position));
        return true;
      },
      bad(line, error, raw, bytes) {
        if (stopped()) return false;
        if (!plan) throw new Error(`fromCsv: the header of ${path} (line ${line}) cannot be read: ${error}`);
        sendToDeadLetter(flow, "parse", error, undefined, input.at(line, raw), bytes ? { rawBase64: Buffer.from(bytes).toString("base64") } : {});
        return true;
      },
      chunkDone(line, offset) {
        file.mark(line, offset);
        return file.pause();
      },
      ...(file.mayGrow ? { unfinished: () => true } : {}),
    },
    options,
    { line: start.line, offset: start.byteOffset },
  );
}

/**
 * Refuses a header whose unquoted names hold a CR. A bare CR is not a line ending here, so a file
 * of classic Mac OS line endings is one header record; with a schema whose fields are all nullable
 * (or none), it would read as no records without a word.
 */
function refuseBareCr(path: string, line: number, names: readonly string[], quoted: readonly boolean[] | undefined): void {
  const index = names.findIndex((name, i) => !quoted?.[i] && name.includes("\r"));
  if (index < 0) return;
  throw new Error(
    `fromCsv: the header of ${path} (line ${line}) holds a carriage return in the column name ${JSON.stringify(names[index])}: its lines seem to end with a bare CR (classic Mac OS), which fromCsv does not take for a line ending. Convert the file first (tr '\\r' '\\n' < in.csv > out.csv), or quote the name if the CR belongs to it`,
  );
}

/** The header of a file whose reading resumes past it: its first record, read from offset 0. */
async function readHeader(file: FileReading, dialect: CsvDialect, options: CsvOptions): Promise<string[]> {
  let position = 0;
  let names: string[] | undefined;
  let problem: string | undefined;
  await splitRecords(
    async (buffer, offset, length) => {
      const n = await file.readAt(buffer, offset, Math.min(length, file.start.byteOffset - position), position);
      position += n;
      return n;
    },
    dialect,
    {
      record(cells, _quoted, _line, raw) {
        if (cells.length === 1 && raw === "") return true;
        names = cells;
        return false;
      },
      bad(_line, error) {
        problem = error;
        return false;
      },
      chunkDone: () => true,
    },
    { chunkBytes: 64 * 1024, maxRecordBytes: options.maxRecordBytes },
  );
  if (!names) throw new Error(`fromCsv: the header of ${file.path} cannot be read again to resume: ${problem ?? "no header"}`);
  return names;
}
