import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { tableFromArrays } from "apache-arrow";
import { from } from "rxjs";
import * as v from "valibot";
import { readDataset } from "../../src/dataset/read.ts";
import { collect, collectTable } from "../../src/notebook/collect.ts";
import { formatTable } from "../../src/notebook/table.ts";
import { formatPreview, withPreview } from "../../src/notebook/view.ts";
import { sampleDataset } from "../helpers/sample.ts";

describe("the compact view of tables and arrays in a REPL", () => {
  const sample = sampleDataset();

  test("a table from readDataset prints its first 10 rows and its size, not Arrow's internals", async () => {
    const table = await readDataset(sample.folder, { columns: ["id", "name", "score"] });
    const printed = Bun.inspect(table);
    expect(printed).toBe(`${formatTable(table, undefined, { limit: 10, width: 100 })}\n400 rows × 3 columns`);
    expect(printed.split("\n")).toHaveLength(2 + 10 + 1 + 1);
    expect(printed).toContain("… 390 more rows");
    expect(printed).not.toContain("Vector");
  });

  test("a table too wide for the width prints its rows as column │ value blocks", async () => {
    const table = await readDataset(sample.folder);
    const printed = formatPreview(table, { width: 80 });
    expect(printed.split("\n")[0]).toStartWith("─[ row 1 ]─");
    for (const line of printed.split("\n")) expect(Bun.stringWidth(line)).toBeLessThanOrEqual(80);
    expect(printed.split("\n").at(-1)).toBe("400 rows × 12 columns");
  });

  test("an empty result and a one-row table say so", async () => {
    expect(Bun.inspect(await readDataset(sample.folder, { where: { region: "nowhere" }, columns: ["id"] })).split("\n").at(-1)).toBe("0 rows × 1 column");
    expect(Bun.inspect(await readDataset(sample.folder, { limit: 1, columns: ["id"] })).split("\n").at(-1)).toBe("1 row × 1 column");
  });

  test("collect and collectTable results print compactly too; the values are otherwise untouched", async () => {
    const Row = v.object({ id: v.number(), kind: v.string() });
    const rows = Array.from({ length: 25 }, (_, i) => ({ id: i, kind: i % 2 ? "odd" : "even" }));
    const values = await collect(from(rows));
    expect(Bun.inspect(values).split("\n").slice(-2)).toEqual(["… 15 more rows", "25 rows"]);
    expect(values).toEqual(rows);
    expect(Object.keys(values)).toHaveLength(25);
    expect(JSON.stringify(values)).toBe(JSON.stringify(rows));
    const table = await collectTable(from(rows), Row);
    expect(Bun.inspect(table).split("\n").at(-1)).toBe("25 rows × 2 columns");
    expect(table.getChild("id")?.toArray().length).toBe(25);
    expect(Bun.inspect(await collect(from([1, 2, 3]))).split("\n").at(-1)).toBe("3 values");
  });

  test("only the returned value gets the view: Arrow's prototypes and derived tables are left alone", () => {
    const table = withPreview(tableFromArrays({ a: Int32Array.from([1, 2, 3]) }));
    expect(Bun.inspect(table)).toEndWith("3 rows × 1 column");
    const other = tableFromArrays({ a: Int32Array.from([1, 2, 3]) });
    expect(Bun.inspect(other)).not.toEndWith("3 rows × 1 column");
    expect(Bun.inspect(table.slice(0, 2))).not.toEndWith("rows × 1 column");
  });

  test("console.log in a bun process and bun repl show the same compact view", async () => {
    const code = `const { tableFromArrays } = await import("apache-arrow"); const { withPreview } = await import("${join(import.meta.dir, "../../src/notebook/view.ts")}"); const t = withPreview(tableFromArrays({ n: Int32Array.from([7, 8]) }));`;
    const script = Bun.spawn(["bun", "-e", `${code} console.log(t)`], { stdout: "pipe", stderr: "pipe", cwd: join(import.meta.dir, "../..") });
    expect((await new Response(script.stdout).text()).trim()).toBe(["n", "─", "7", "8", "2 rows × 1 column"].join("\n"));
    const repl = Bun.spawn(["bun", "repl"], { stdin: new TextEncoder().encode(`${code}\nt\n`), stdout: "pipe", stderr: "pipe", env: { ...process.env, NO_COLOR: "1" }, cwd: join(import.meta.dir, "../..") });
    const out = await new Response(repl.stdout).text();
    await repl.exited;
    expect(out).toContain("2 rows × 1 column");
    expect(out).not.toContain("Vector");
  }, 20_000);
});
