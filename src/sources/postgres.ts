/**
 * `fromPostgres`: a query's rows, streamed through Bun's built-in SQL client with a server-side
 * cursor, Postgres types mapped to values the sink stores faithfully.
 *
 * Bun's own value parsing is not used: it turns timestamps into `Date`s (dropping microseconds,
 * and `infinity` into the number `Infinity`) and int8 into strings. Rows are fetched in Postgres's
 * text format (`.raw()`) and each column is decoded here by its type OID, so every conversion is
 * either exact or refused.
 */
import { type SQL, SQL as Client } from "bun";
import { Observable } from "rxjs";
import { currentFlow, deadLetterBelow, sendToDeadLetter, waitForGate } from "../flow/flow.ts";
import { Input, stamp } from "../flow/position.ts";
import { percentAdvice, scrub, secretsOf, sqlClientLogin } from "../io/credentials.ts";
import { daysFromCivil } from "../schema/instant.ts";

/** Options of {@link fromPostgres}. */
export interface PostgresOptions {
  /**
   * Where to connect (`postgres://user:password@host:port/database`). A connection of its own is
   * opened and closed with the stream. Default: Bun's default (`DATABASE_URL`, `PGHOST`, ...).
   */
  readonly url?: string;
  /** A client of the app's own to use instead of `url`: one of its connections is reserved for the stream and given back. */
  readonly sql?: SQL;
  /** Values of `$1`, `$2`, ... in the query, sent separately from its text. */
  readonly params?: readonly unknown[];
  /** Rows fetched at a time (default 1000): with the sink's budget, what bounds memory. */
  readonly batchSize?: number;
  /**
   * How int8 (bigint) values arrive: `"bigint"` (default, exact; a `v.bigint()` field is an int64
   * column), `"number"` (when within ±2^53; a larger value dead-letters the row) or `"string"`.
   */
  readonly int8?: "bigint" | "number" | "string";
  /**
   * How numeric (decimal) values arrive: `"string"` (default, exact text such as `"1.10"`) or
   * `"number"` (when the float64 prints back as the same decimal; otherwise the row is dead-lettered).
   */
  readonly numeric?: "string" | "number";
  /**
   * How timestamp and timestamptz values arrive: `"string"` (default), ISO-8601 UTC with six
   * fraction digits (`"2024-03-01T12:00:00.123456Z"`, for `isoInstant()`), or `"date"`, a `Date`
   * (for `v.date()`; a value with microseconds is dead-lettered rather than truncated).
   */
  readonly timestamps?: "string" | "date";
  /** The source name on dead letters and commits (default `postgres://host:port/db: <query start>`). */
  readonly name?: string;
}

/**
 * Streams the rows of a query as objects keyed by column name.
 *
 * The query runs as a server-side cursor inside a transaction (`DECLARE ... NO SCROLL CURSOR`,
 * then `FETCH batchSize`), so only one batch is in memory; between batches it waits while the
 * sink's memory budget is spent. Each row moves the flow's cursor: `source` names the server and
 * the query (never the password), position is the row number from 1.
 *
 * Types: int2/int4/oid → number; int8 → bigint (see `int8`); numeric → exact string (see
 * `numeric`); float8 → number, float4 → its exact value as a number (NaN and ±Infinity included); bool → boolean; text, varchar,
 * char, uuid, enums, interval (ISO 8601, `P1DT2H`), time, money, network and geometric types →
 * their Postgres text; timestamptz and timestamp → ISO-8601 UTC string or Date (see
 * `timestamps`; a timestamp without time zone is read as UTC); date → `"YYYY-MM-DD"`;
 * json/jsonb → the parsed value; bytea → `Uint8Array`; arrays (of any of these, nested, with
 * NULL elements) → arrays; domains → their base type; NULL → null. A value with no faithful form
 * (`infinity` or a BC timestamp, a year past 9999, an int8 too big for `int8: "number"`) sends
 * its row to the dead letter at stage `parse`, naming the column, with the row's text values as raw.
 *
 * Completes after the last row, closing the cursor and, for `url`, the connection. Errors, naming
 * the server and the query, when the server cannot be reached, refuses the login, rejects the
 * query, or the connection drops; also when two columns share a name. Unsubscribing (or
 * SIGINT/SIGTERM under `run`) stops after the batch being fetched and closes the cursor and
 * connection.
 *
 * @example
 * fromPostgres("SELECT id, amount, created_at FROM orders WHERE created_at >= $1", {
 *   url: "postgres://app@db:5432/shop",
 *   params: ["2024-01-01"],
 * }).pipe(validate(Order), deadLetter("out/dead-letter"), toParquet("out/orders", { schema: Order }))
 */
export function fromPostgres(query: string, options: PostgresOptions = {}): Observable<Record<string, unknown>> {
  const batchSize = Math.max(1, Math.floor(options.batchSize ?? 1000));
  const text = query.trim().replace(/;+\s*$/, "");
  const modes: Modes = {
    int8: options.int8 ?? "bigint",
    numeric: options.numeric ?? "string",
    timestamps: options.timestamps ?? "string",
  };

  return new Observable<Record<string, unknown>>((subscriber) => {
    const flow = currentFlow(subscriber);
    let unsubscribed = false;
    const stopped = () => unsubscribed || subscriber.closed || flow.stopping;
    // Resolves on unsubscribe or stop, so a wait on the gate never outlives the subscriber.
    const { promise: interrupted, resolve: interrupt } = Promise.withResolvers<void>();
    flow.onStop.add(interrupt);

    let client: SQL;
    let own: SQL | undefined;
    let target = "postgres";
    // What messages must not show: the URL's password, and the one the client resolved (the
    // app's client, PGPASSWORD, DATABASE_URL), in their forms.
    let secrets = secretsOf(options.url ? [options.url] : []);
    try {
      if (options.sql) {
        client = options.sql;
      } else {
        client = own = options.url ? new Client({ url: options.url, max: 1 }) : new Client({ max: 1 });
      }
      target = describe(client);
      secrets = secretsOf([...(options.url ? [options.url] : []), sqlClientLogin(client)]);
    } catch (error) {
      subscriber.error(new Error(`fromPostgres: cannot use the connection settings (${scrub((error as Error).message, secrets)})${percentAdvice(error)}`, { cause: error }));
      return;
    }
    const head = oneLine(text).slice(0, 60);
    const source = options.name ?? `${target}: ${head}`;

    // Wraps a failure of the server or the connection; errors thrown downstream pass through as they are.
    class PostgresFailure extends Error {}
    // The first failure inside the transaction: when the connection is gone, the ROLLBACK that
    // follows fails too, and that second error must not hide the first.
    let failure: PostgresFailure | undefined;
    const fail = (what: string, error: unknown, advice: string) =>
      (failure ??= new PostgresFailure(`fromPostgres: ${what} (${scrub(reasonOf(error), secrets)}), ${target}, query "${head}"${advice ? `: ${advice}` : ""}`, {
        cause: error,
      }));

    async function stream(): Promise<void> {
      let connected = false;
      // Rows emitted so far, and whether the cursor is open: together what the stream was doing,
      // for an error that arrives on the transaction rather than on a statement. A connection the
      // server ends rejects the transaction at once, even while the loop below waits on the sink,
      // so the message is worked out when the error arrives, not before each fetch.
      let position = 0;
      let reading = false;
      const doing = () => (reading ? `reading rows after row ${position} failed` : "the query failed");
      await client
        .begin(async (tx) => {
          connected = true;
          try {
            // Output formats this decoder reads; they change how values print, not what the query means.
            await tx.unsafe(
              "SELECT set_config('DateStyle', 'ISO', true), set_config('IntervalStyle', 'iso_8601', true), set_config('extra_float_digits', '3', true), set_config('bytea_output', 'hex', true)",
            );
            await tx.unsafe(`DECLARE sluice_cursor NO SCROLL CURSOR FOR ${text}`, [...(options.params ?? [])]);
          } catch (error) {
            throw fail("the query failed", error, "check the query and its parameters");
          }
          reading = true;
          let decoders: Decoder[] | undefined;
          let names: string[] = [];
          const input = new Input(flow, source);
          // Its parse errors go to the folder below this source (see deadLetterBelow).
          input.deadLetterTarget = deadLetterBelow(subscriber);
          for (;;) {
            if (stopped()) break;
            if (flow.gate) await Promise.race([waitForGate(flow), interrupted]);
            if (stopped()) break;
            let batch: RawBatch;
            try {
              batch = (await tx.unsafe(`FETCH ${batchSize} FROM sluice_cursor`).raw()) as unknown as RawBatch;
            } catch (error) {
              throw fail(doing(), error, "");
            }
            if (!decoders) {
              names = batch.columns.map((c) => c.name);
              const duplicate = names.find((name, i) => names.indexOf(name) !== i);
              if (duplicate !== undefined) {
                throw (failure = new PostgresFailure(
                  `fromPostgres: the query returns two columns named "${duplicate}", ${target}, query "${head}": give each column its own name with AS`,
                ));
              }
              try {
                decoders = await decodersFor(tx, batch.columns, modes);
              } catch (error) {
                throw fail("looking up the column types failed", error, "");
              }
            }
            for (const row of batch) {
              if (stopped()) break;
              position++;
              emitRow(input, position, row, names, decoders, subscriber);
            }
            if (batch.length < batchSize) break;
          }
          await tx.unsafe("CLOSE sluice_cursor").catch(() => {});
        })
        .catch((error: unknown) => {
          if (error instanceof PostgresFailure) throw error;
          if (failure) throw failure;
          if (!connected) throw fail("cannot connect to the server", error, "check that the server is running and the URL, user and password");
          // Thrown by a subscriber downstream (a sink, a dead-letter target): not the server's doing.
          if (!isPostgresError(error)) throw error;
          throw fail(doing(), error, "");
        });
    }

    stream()
      .then(
        () => subscriber.complete(),
        (error) => subscriber.error(error),
      )
      .finally(() => {
        flow.onStop.delete(interrupt);
        own?.close().catch(() => {});
      });

    return function stopPostgres() {
      unsubscribed = true;
      interrupt();
    };
  });
}

type Decoder = (cell: Uint8Array) => unknown;

// The server sends UTF-8 (Bun's client asks for it); a TextDecoder is the cheapest way to a string.
const utf8 = new TextDecoder();

interface Modes {
  readonly int8: "bigint" | "number" | "string";
  readonly numeric: "string" | "number";
  readonly timestamps: "string" | "date";
}

/** A FETCH result in raw mode: rows of text cells (null for NULL) and the columns' descriptions. */
type RawBatch = (Uint8Array | null)[][] & { columns: { name: string; type: number }[] };

/** A value that has no faithful form: its row goes to the dead letter. */
class ValueError extends Error {}

function emitRow(
  input: Input,
  position: number,
  row: (Uint8Array | null)[],
  names: readonly string[],
  decoders: readonly Decoder[],
  subscriber: { next(value: Record<string, unknown>): void },
): void {
  let bytes = 0;
  const flow = input.flow;
  const record: Record<string, unknown> = {};
  for (let i = 0; i < decoders.length; i++) {
    const cell = row[i];
    const name = names[i] as string;
    if (cell === null || cell === undefined) {
      record[name] = null;
      continue;
    }
    bytes += cell.length;
    try {
      record[name] = (decoders[i] as Decoder)(cell);
    } catch (error) {
      if (!(error instanceof ValueError)) throw error;
      flow.stats.bytesRead += bytes;
      // The row as Postgres printed it, so the dead letter shows what the server held.
      const raw: Record<string, string | null> = {};
      for (let j = 0; j < names.length; j++) raw[names[j] as string] = row[j] == null ? null : utf8.decode(row[j] as Uint8Array);
      sendToDeadLetter(flow, "parse", `column "${names[i]}": ${error.message}`, undefined, input.at(position, JSON.stringify(raw)));
      return;
    }
  }
  flow.stats.bytesRead += bytes;
  subscriber.next(stamp(record, input.at(position)));
}

// Type OIDs of the built-in types decoded specially; any other type is kept as its text.
const INT = new Set([21, 23, 26, 28, 29]); // int2, int4, oid, xid, cid
const INT8 = 20;
const NUMERIC = 1700;
const FLOAT4 = 700;
const FLOAT8 = 701;
const BOOL = 16;
const JSON_TYPES = new Set([114, 3802]);
const TIMESTAMP = 1114;
const TIMESTAMPTZ = 1184;
const DATE = 1082;
const BYTEA = 17;
/** Array type OID → element type OID, for the built-in arrays. */
const ARRAYS = new Map([
  [1005, 21], [1007, 23], [1028, 26], [1016, 20], [1231, 1700], [1021, 700], [1022, 701], [1000, 16],
  [199, 114], [3807, 3802], [1115, 1114], [1185, 1184], [1182, 1082], [1001, 17], [1009, 25],
  [1015, 1043], [1014, 1042], [1003, 19], [2951, 2950],
]);
const KNOWN_SCALARS = new Set([...INT, INT8, NUMERIC, FLOAT4, FLOAT8, BOOL, ...JSON_TYPES, TIMESTAMP, TIMESTAMPTZ, DATE, BYTEA, 25, 1043, 1042, 19, 2950]);

interface TypeInfo {
  readonly oid: number;
  readonly category: string;
  readonly kind: string;
  readonly elem: number;
  readonly base: number;
  readonly delim: string;
}

/**
 * Decoders for the columns of a result. Types that are not built in (enums, domains, arrays of
 * them) are looked up in pg_type, following domains to their base type and arrays to their element.
 */
async function decodersFor(tx: SQL, columns: readonly { type: number }[], modes: Modes): Promise<Decoder[]> {
  const info = new Map<number, TypeInfo>();
  let missing = columns.map((c) => c.type).filter((oid) => !KNOWN_SCALARS.has(oid) && !ARRAYS.has(oid));
  // Each round resolves one level (domain → base, array → element); types nest only a few deep.
  for (let round = 0; missing.length > 0 && round < 8; round++) {
    const rows = (await tx.unsafe(
      "SELECT oid::int4 AS oid, typcategory AS category, typtype AS kind, typelem::int4 AS elem, typbasetype::int4 AS base, typdelim AS delim FROM pg_type WHERE oid = ANY($1::int4[])",
      [[...new Set(missing)]],
    )) as TypeInfo[];
    for (const row of rows) info.set(row.oid, row);
    missing = rows
      .flatMap((row) => (row.kind === "d" ? [row.base] : row.category === "A" ? [row.elem] : []))
      .filter((oid) => !KNOWN_SCALARS.has(oid) && !ARRAYS.has(oid) && !info.has(oid));
  }
  return columns.map((c) => decoderFor(c.type, info, modes));
}

function decoderFor(oid: number, info: ReadonlyMap<number, TypeInfo>, modes: Modes): Decoder {
  const element = ARRAYS.get(oid);
  if (element !== undefined) return arrayDecoder(scalarFor(element, info, modes), ",");
  const type = info.get(oid);
  if (type?.kind === "d") return decoderFor(type.base, info, modes);
  if (type?.category === "A" && type.elem) {
    const item = info.get(type.elem);
    return arrayDecoder(scalarFor(type.elem, info, modes), item?.delim ?? type.delim ?? ",");
  }
  if (INT.has(oid)) return decodeInteger;
  if (oid === BOOL) return (cell) => cell[0] === 116; // "t"
  return bytesDecoder(textDecoder(oid, modes));
}

// An array element arrives as text already unquoted; a scalar column as bytes.
function scalarFor(oid: number, info: ReadonlyMap<number, TypeInfo>, modes: Modes): (text: string) => unknown {
  const type = info.get(oid);
  if (type?.kind === "d") return scalarFor(type.base, info, modes);
  return textDecoder(oid, modes);
}

/** An int2/int4/oid from its digits, without making a string first. */
function decodeInteger(cell: Uint8Array): number {
  let i = 0;
  let sign = 1;
  if (cell[0] === 45) {
    sign = -1;
    i = 1;
  }
  let value = 0;
  for (; i < cell.length; i++) value = value * 10 + ((cell[i] as number) - 48);
  return sign * value;
}

function bytesDecoder(decode: (text: string) => unknown): Decoder {
  return (cell) => decode(utf8.decode(cell));
}

function textDecoder(oid: number, modes: Modes): (text: string) => unknown {
  if (INT.has(oid)) return Number;
  if (oid === INT8) {
    if (modes.int8 === "string") return (text) => text;
    if (modes.int8 === "number") return int8AsNumber;
    return BigInt;
  }
  if (oid === NUMERIC) return modes.numeric === "number" ? numericAsNumber : (text) => text;
  // Postgres prints a float4 as the shortest decimal that reads back as the same float32; rounding
  // that to float32 gives its exact value (what `real::float8` gives), not a nearby float64.
  if (oid === FLOAT4) return (text) => Math.fround(Number(text));
  if (oid === FLOAT8) return Number;
  if (oid === BOOL) return (text) => text === "t";
  if (JSON_TYPES.has(oid)) return JSON.parse;
  if (oid === TIMESTAMPTZ || oid === TIMESTAMP) return modes.timestamps === "date" ? timestampAsDate : timestampAsIso;
  if (oid === DATE) return dateText;
  if (oid === BYTEA) return (text) => new Uint8Array(Buffer.from(text.slice(2), "hex"));
  return (text) => text;
}

function int8AsNumber(text: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value)) throw new ValueError(`int8 ${text} is beyond ±2^53, where a number is no longer exact: use int8: "bigint"`);
  return value;
}

/** A numeric as a number, only when the number prints back as the same decimal. */
function numericAsNumber(text: string): number {
  const value = Number(text);
  if (Number.isNaN(value) || !Number.isFinite(value)) return value;
  if (normalizeDecimal(text) !== normalizeDecimal(plainDecimal(value))) {
    throw new ValueError(`numeric ${text} has no exact float64 form: use numeric: "string"`);
  }
  return value;
}

/** A number's shortest decimal without exponent notation. */
function plainDecimal(value: number): string {
  const text = String(value);
  const e = text.indexOf("e");
  if (e < 0) return text;
  const negative = text.startsWith("-");
  const mantissa = text.slice(negative ? 1 : 0, e);
  const exponent = Number(text.slice(e + 1));
  const [whole = "", fraction = ""] = mantissa.split(".");
  const digits = whole + fraction;
  const point = whole.length + exponent;
  const out = point <= 0 ? `0.${"0".repeat(-point)}${digits}` : point >= digits.length ? digits + "0".repeat(point - digits.length) : `${digits.slice(0, point)}.${digits.slice(point)}`;
  return (negative ? "-" : "") + out;
}

function normalizeDecimal(text: string): string {
  let [whole = "", fraction = ""] = text.replace(/^-/, "").split(".");
  whole = whole.replace(/^0+(?=\d)/, "");
  fraction = fraction.replace(/0+$/, "");
  const sign = text.startsWith("-") && (whole !== "0" || fraction !== "") ? "-" : "";
  return `${sign}${whole}${fraction ? `.${fraction}` : ""}`;
}

const TIMESTAMP_TEXT = /^(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?(?:([+-])(\d\d)(?::(\d\d))?(?::(\d\d))?)?$/;

/** UTC milliseconds and the microseconds below them, from Postgres's ISO output. */
function timestampParts(text: string): { ms: number; micros: number } {
  const m = TIMESTAMP_TEXT.exec(text);
  if (!m) throw new ValueError(`timestamp "${text}" has no ISO-8601 form (infinity, BC, or a year past 9999)`);
  const fraction = (m[7] ?? "").padEnd(6, "0");
  const offset = m[8] ? (m[8] === "-" ? -1 : 1) * (Number(m[9]) * 3600 + Number(m[10] ?? 0) * 60 + Number(m[11] ?? 0)) : 0;
  const seconds = daysFromCivil(Number(m[1]), Number(m[2]), Number(m[3])) * 86_400 + Number(m[4]) * 3600 + Number(m[5]) * 60 + Number(m[6]) - offset;
  const ms = seconds * 1000 + Number(fraction.slice(0, 3));
  // An offset can carry an instant out of the years ISO-8601 strings (and the sink) can hold.
  if (ms < -62_135_596_800_000 || ms > 253_402_300_799_999) {
    throw new ValueError(`timestamp "${text}" is outside years 0001-9999 in UTC`);
  }
  return { ms, micros: Number(fraction.slice(3)) };
}

function timestampAsIso(text: string): string {
  // Fast path: a value already in UTC ("+00", or no zone for a timestamp) with a four-digit year
  // is rewritten as text, without any date arithmetic.
  if (text.length >= 19 && text.charCodeAt(4) === 45 && text.charCodeAt(10) === 32) {
    let at = 19;
    let fraction = "";
    if (text.charCodeAt(19) === 46) {
      at = 20;
      while (at < text.length && text.charCodeAt(at) >= 48 && text.charCodeAt(at) <= 57) at++;
      fraction = text.slice(20, at);
    }
    if (at === text.length || (at === text.length - 3 && text.endsWith("+00"))) {
      return `${text.slice(0, 10)}T${text.slice(11, 19)}.${fraction.padEnd(6, "0")}Z`;
    }
  }
  const { ms, micros } = timestampParts(text);
  return `${new Date(ms).toISOString().slice(0, 23)}${String(micros).padStart(3, "0")}Z`;
}

function timestampAsDate(text: string): Date {
  const { ms, micros } = timestampParts(text);
  if (micros !== 0) throw new ValueError(`timestamp "${text}" has microseconds a Date cannot hold: use timestamps: "string"`);
  return new Date(ms);
}

function dateText(text: string): string {
  if (!/^\d{4}-\d\d-\d\d$/.test(text)) throw new ValueError(`date "${text}" has no ISO-8601 form (infinity, BC, or a year past 9999)`);
  return text;
}

/**
 * Parses Postgres's array text (`{1,2}`, `{{1,2},{3,4}}`, `{"a b",NULL,"q\"uote"}`), decoding each
 * element with `item`. Explicit bounds (`[0:1]={...}`) are dropped: a JavaScript array starts at 0.
 */
function arrayDecoder(item: (text: string) => unknown, delimiter: string): Decoder {
  return function decodeArray(cell) {
    let text = utf8.decode(cell);
    if (text.startsWith("[")) text = text.slice(text.indexOf("=") + 1);
    let at = 0;
    function parse(): unknown[] {
      const out: unknown[] = [];
      at++; // "{"
      if (text[at] === "}") {
        at++;
        return out;
      }
      for (;;) {
        if (text[at] === "{") {
          out.push(parse());
        } else if (text[at] === '"') {
          let value = "";
          at++;
          while (text[at] !== '"') {
            if (text[at] === "\\") at++;
            value += text[at++];
          }
          at++;
          out.push(item(value));
        } else {
          let end = at;
          while (text[end] !== delimiter && text[end] !== "}") end++;
          const raw = text.slice(at, end);
          at = end;
          out.push(raw === "NULL" ? null : item(raw));
        }
        if (text[at] === delimiter) {
          at++;
          continue;
        }
        at++; // "}"
        return out;
      }
    }
    return parse();
  };
}

function isPostgresError(error: unknown): boolean {
  return error instanceof Error && (error.name === "PostgresError" || String((error as { code?: unknown }).code ?? "").startsWith("ERR_POSTGRES"));
}

function reasonOf(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const code = (error as { errno?: unknown; code?: unknown }).errno ?? (error as { code?: unknown }).code;
  return code ? `${error.message}; ${code}` : error.message;
}

/** The server and database a client talks to, without user or password. */
function describe(client: SQL): string {
  const o = (client as unknown as { options?: { hostname?: string; port?: number; database?: string; path?: string } }).options ?? {};
  return `postgres://${o.hostname ?? o.path ?? "localhost"}${o.port ? `:${o.port}` : ""}/${o.database ?? ""}`;
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, " ");
}
