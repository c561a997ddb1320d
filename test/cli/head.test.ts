import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { listDataset } from "../../src/dataset/files.ts";
import { query, tempDir } from "../helpers/duckdb.ts";
import { writeSample } from "../helpers/sample.ts";

const REPO = join(import.meta.dir, "../..");

async function sluice(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = Bun.spawn(["bun", "src/cli/main.ts", ...args], { cwd: REPO, stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
  return { code, stdout, stderr };
}

const sql = (text: string) => text.replaceAll("'", "''");

describe("sluice head", () => {
  let dir: { path: string; remove: () => Promise<void> };
  let folder: string;
  let firstFile: string;

  beforeAll(async () => {
    dir = await tempDir();
    folder = join(dir.path, "sample");
    await writeSample(folder);
    firstFile = (await listDataset(folder)).files[0].path;
  });
  afterAll(() => dir.remove());

  test("prints the first rows of the first file as NDJSON, the values DuckDB reads for the same rows", async () => {
    const { code, stdout, stderr } = await sluice("head", folder, "-n", "7", "--json");
    expect([code, stderr]).toEqual([0, ""]);
    const lines = stdout.trimEnd().split("\n").map((line) => JSON.parse(line));
    expect(lines).toHaveLength(7);
    const expected = await query(`
      SELECT id::INT AS id, name, score, big::VARCHAR AS big, strftime("at", '%Y-%m-%dT%H:%M:%S.%fZ') AS "at", "day"::VARCHAR AS "day",
             ok, tags, region, note, long_text, nested.a::INT AS a, nested.b AS b
      FROM read_parquet('${sql(firstFile)}', file_row_number = true) ORDER BY file_row_number LIMIT 7`);
    expect(
      lines.map((r) => ({ ...r, big: String(r.big), a: r.nested.a, b: r.nested.b, nested: undefined })).map(({ nested: _, ...rest }) => rest),
    ).toEqual(expected.map((r) => ({ ...r })));
    // 64-bit integers print as exact JSON numbers, not strings.
    expect(stdout).toContain(`"big":${expected[0].big}`);
  });

  test("prints a table: every column, null for nulls, ISO timestamps, JSON for nested values, long values cut with …", async () => {
    const { code, stdout } = await sluice("head", folder, "-n", "4", "--width", "1000");
    expect(code).toBe(0);
    const lines = stdout.trimEnd().split("\n");
    expect(lines).toHaveLength(2 + 4);
    const header = lines[0].split("│").map((h) => h.trim());
    expect(header).toEqual(["id", "name", "score", "big", "at", "day", "ok", "tags", "region", "note", "long_text", "nested"]);
    const [first] = await query(`SELECT strftime("at", '%Y-%m-%dT%H:%M:%S.%fZ') AS "at", long_text FROM read_parquet('${sql(firstFile)}', file_row_number = true) ORDER BY file_row_number LIMIT 1`);
    const cells = lines[2].split("│").map((c) => c.trim());
    expect(cells[4]).toBe(first.at as string);
    expect(cells[8]).toBe("null"); // the null partition's region
    expect(cells[10]).toBe(`${(first.long_text as string).slice(0, 39)}…`);
    expect(cells[11]).toMatch(/^\{"a":-?\d+,"b":("b\d"|null)\}$/);
    // Columns line up: every row's separators sit at the same terminal column as the header's
    // (an emoji takes two cells, so this counts display width, not characters).
    const offsets = (line: string) => {
      let column = 0;
      return [...line].flatMap((c) => {
        const at = column;
        column += Bun.stringWidth(c);
        return c === "│" ? [at] : [];
      });
    };
    for (const line of lines.slice(2)) expect(offsets(line)).toEqual(offsets(lines[0]));
  });

  test("reads only what it needs: a broken file later in the dataset is never opened", async () => {
    const broken = join(folder, "region=zz", "part-999.parquet");
    await Bun.write(broken, "this is not parquet");
    try {
      const few = await sluice("head", folder, "-n", "3", "--json");
      expect(few.code).toBe(0);
      expect(few.stdout.trimEnd().split("\n")).toHaveLength(3);
      const all = await sluice("head", folder, "-n", "100000", "--json");
      expect(all.code).toBe(1);
      expect(all.stderr).toContain(broken);
    } finally {
      await Bun.file(broken).delete();
    }
  });

  test("chooses columns and adds partition columns that only live in folder names", async () => {
    const duck = join(dir.path, "duck");
    await query(`COPY (SELECT i AS n, CASE WHEN i < 3 THEN 'x' ELSE 'y' END AS k FROM range(6) t(i)) TO '${sql(duck)}' (FORMAT parquet, PARTITION_BY (k))`);
    const { code, stdout } = await sluice("head", duck, "-n", "4", "--json", "--columns", "k,n");
    expect(code).toBe(0);
    expect(stdout.trimEnd().split("\n").map((l) => JSON.parse(l))).toEqual([
      { k: "x", n: 0 },
      { k: "x", n: 1 },
      { k: "x", n: 2 },
      { k: "y", n: 3 },
    ]);
  });

  test("folds rows that do not fit the width into one column │ value block per row, and keeps a table that fits", async () => {
    const [json, folded, fits, narrow] = await Promise.all([
      sluice("head", folder, "-n", "2", "--json"),
      // Not a terminal here: the default width is 100, and the sample's 12 columns are wider.
      sluice("head", folder, "-n", "2"),
      sluice("head", folder, "-n", "2", "--columns", "id,name", "--width", "30"),
      sluice("head", folder, "-n", "2", "--width", "50"),
    ]);
    const rows = json.stdout.trimEnd().split("\n").map((line) => JSON.parse(line));
    const lines = folded.stdout.trimEnd().split("\n");
    expect(folded.code).toBe(0);
    expect(lines[0]).toStartWith("─[ row 1 ]─");
    expect(lines).toHaveLength(2 * 13);
    expect(lines[13]).toStartWith("─[ row 2 ]─");
    const block = Object.fromEntries(lines.slice(1, 13).map((line) => line.split(" │ ").map((part) => part.trim())));
    expect(Object.keys(block)).toEqual(["id", "name", "score", "big", "at", "day", "ok", "tags", "region", "note", "long_text", "nested"]);
    expect(block.id).toBe(String(rows[0].id));
    expect(block.big).toBe(String(rows[0].big));
    expect(block.name).toBe(rows[0].name);
    for (const line of [...lines, ...narrow.stdout.trimEnd().split("\n")]) expect(Bun.stringWidth(line)).toBeLessThanOrEqual(100);
    for (const line of narrow.stdout.trimEnd().split("\n")) expect(Bun.stringWidth(line)).toBeLessThanOrEqual(50);
    expect(narrow.stdout).toContain("long_text │ ");
    expect(fits.stdout.split("\n")[0]).toMatch(/^id\s+│ name$/);
    expect(fits.stdout.trimEnd().split("\n")).toHaveLength(4);
  });

  test("shows data values as stored, without thousands separators, in the table and in the record view", async () => {
    const json = await sluice("head", folder, "-n", "1", "--json", "--columns", "big");
    const big = String(JSON.parse(json.stdout).big);
    expect(big.length).toBeGreaterThan(4);
    const table = await sluice("head", folder, "-n", "1", "--columns", "big");
    expect(table.stdout.trimEnd().split("\n")[2]?.trim()).toBe(big);
    const records = await sluice("head", folder, "-n", "1", "--width", "60");
    expect(records.stdout).toContain(`big       │ ${big}`);
  });

  test("fails with a clear message for a missing path, an unknown column or a bad -n", async () => {
    const missing = await sluice("head", join(dir.path, "nope"));
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(`${join(dir.path, "nope")} does not exist`);
    const column = await sluice("head", folder, "--columns", "id,wat");
    expect(column.code).toBe(1);
    expect(column.stderr).toContain('column "wat" is not in');
    const bad = await sluice("head", folder, "-n", "1.5");
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("-n must be a whole number");
  });
});
