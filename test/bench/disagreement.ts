/**
 * `bun test/bench/disagreement.ts [input.ndjson]`: which lines sluice and duckdb-strict treat
 * differently, and what those lines (and the lines before them) hold. Runs both clickstream jobs
 * (test/bench/job.ts) into bench-data/disagreement/, then compares the event ids each wrote.
 * Default input: bench-data/clickstream-1000000.ndjson (what `bun run bench` generates).
 */
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { DuckDBInstance } from "@duckdb/node-api";

const input = Bun.argv[2] ?? "bench-data/clickstream-1000000.ndjson";
const root = "bench-data/disagreement";
await rm(root, { recursive: true, force: true });
for (const engine of ["sluice", "duckdb-strict"]) {
  const child = Bun.spawnSync(["bun", join(import.meta.dir, "job.ts"), engine, input, join(root, engine)], { stderr: "inherit" });
  console.log(`${engine}: ${child.stdout.toString().trim()}`);
  if (child.exitCode !== 0) process.exit(1);
}

const sq = (s: string) => `'${s.replaceAll("'", "''")}'`;
const c = await (await DuckDBInstance.create(":memory:")).connect();
// The input's lines with their numbers, read as text (as duckdb-checked reads them), and each
// line's event id where the line is an object holding one.
await c.run(`
  CREATE TEMP TABLE lines AS
  SELECT line_no, line, CASE WHEN json_valid(line) THEN line->>'$.event_id' END AS event_id
  FROM (
    SELECT row_number() OVER () AS line_no, line
    FROM read_csv(${sq(input)}, columns = {'line': 'VARCHAR'}, header = false, delim = E'\\x1F', quote = '', escape = '',
                  auto_detect = false, strict_mode = false, max_line_size = 100000000, comment = '')
  )`);
const ids = (engine: string) => `SELECT event_id FROM read_parquet(${sq(join(root, engine, "events", "**", "*.parquet"))})`;
const differences = await c.runAndReadAll(`
  WITH s AS (${ids("sluice")}), d AS (${ids("duckdb-strict")}),
  diff AS (
    SELECT 'kept by sluice only' AS what, event_id FROM (SELECT event_id FROM s EXCEPT ALL SELECT event_id FROM d)
    UNION ALL
    SELECT 'kept by duckdb-strict only', event_id FROM (SELECT event_id FROM d EXCEPT ALL SELECT event_id FROM s)
  )
  SELECT diff.what, l.line_no, left(l.line, 160), right(p.line, 160), p.line_no, json_valid(p.line), p.line
  FROM diff JOIN lines l USING (event_id) LEFT JOIN lines p ON p.line_no = l.line_no - 1
  ORDER BY l.line_no`);
const rows = differences.getRows();
const malformed = await c.runAndReadAll("SELECT count(*) FROM lines WHERE NOT json_valid(line)");
console.log(`\n${rows.length} lines treated differently; ${malformed.getRows()[0]?.[0]} lines of the input are not valid JSON`);
// Whether a line ends inside a string: an odd number of quotes that no backslash escapes.
const endsInString = (text: string) => (text.match(/(?<!\\)(?:\\\\)*"/g)?.length ?? 0) % 2 === 1;
const tally: Record<string, number> = {};
for (const [what, lineNo, line, previousEnd, previousNo, previousValid, previous] of rows) {
  const kind = previousValid === false ? (endsInString(String(previous)) ? "after a line cut inside a string" : "after a line cut outside a string") : "after a valid line";
  tally[`${what}, ${kind}`] = (tally[`${what}, ${kind}`] ?? 0) + 1;
  console.log(`\n${what}: line ${lineNo}: ${line}\n  line ${previousNo} before it (${kind.slice(6)}), its end: …${previousEnd}`);
}
console.log(`\n${JSON.stringify(tally, null, 1)}`);
// The truncated lines whose next line both engines still read, for comparison.
const cut = await c.runAndReadAll("SELECT line FROM lines WHERE NOT json_valid(line)");
let cutInString = 0;
for (const [line] of cut.getRows()) if (endsInString(String(line))) cutInString++;
console.log(`of the input's ${cut.getRows().length} lines that are not valid JSON, ${cutInString} end inside a string`);
