import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { generateUsersExport } from "../../examples/json-export.ts";
import type { DeadLetter } from "../../src/deadletter/entry.ts";
import { readDeadLetters } from "../../src/index.ts";
import { dataset, query, tempDir } from "../helpers/duckdb.ts";

const FILES = 3;
const USERS = 3_000;
const SEED = 7;

/** Microseconds since the epoch of a generated `YYYY-MM-DDTHH:MM:SSZ`, or null. */
const micros = (iso: string | null) => (iso === null ? null : String(BigInt(Date.parse(iso)) * 1000n));

describe("the JSON export example", () => {
  let dir: { path: string; remove: () => Promise<void> };
  let out: string;
  let stdout: string;
  let exitCode: number;
  const { elements } = generateUsersExport({ files: FILES, users: USERS, seed: SEED });
  const valid = elements.filter((e) => !e.defect);
  const defective = elements.filter((e) => e.defect);

  beforeAll(async () => {
    dir = await tempDir("sluice-json-export-");
    out = join(dir.path, "export");
    const child = Bun.spawn(["bun", "examples/json-export.ts", "--out", out, "--files", String(FILES), "--users", String(USERS), "--seed", String(SEED)], {
      cwd: join(import.meta.dir, "../.."),
      stdout: "pipe",
      stderr: "pipe",
    });
    [stdout, exitCode] = await Promise.all([new Response(child.stdout).text(), child.exited]);
    if (exitCode !== 0) console.error(await new Response(child.stderr).text());
  });
  afterAll(() => dir.remove());

  test("plants every kind of defect and cuts the last file mid-user", () => {
    const kinds = new Set(defective.map((e) => e.defect));
    expect(kinds.size).toBe(8);
    expect(defective.filter((e) => e.defect === "truncated")).toHaveLength(1);
    expect(defective.length / elements.length).toBeGreaterThan(0.01);
    expect(defective.length / elements.length).toBeLessThan(0.04);
  });

  test("prints a summary accounting for every user read: written + dead-lettered = in", () => {
    expect(exitCode).toBe(0);
    const count = (label: string) => Number((new RegExp(`${label}\\s+([\\d,]+)`).exec(stdout)?.[1] ?? "").replaceAll(",", ""));
    expect(count("records in")).toBe(elements.length);
    expect(count("written")).toBe(valid.length);
    expect(count("dead-lettered")).toBe(defective.length);
  });

  test("DuckDB reads back every valid user exactly once with identical values, the nested struct included", async () => {
    const rows = await query(`
      SELECT id, displayName, mail, userPrincipalName, accountEnabled,
             epoch_us(createdDateTime) AS created, createdYear::VARCHAR AS createdYear,
             signInActivity IS NULL AS neverSignedIn,
             epoch_us(signInActivity.lastSignInDateTime) AS lastSignIn,
             epoch_us(signInActivity.lastNonInteractiveSignInDateTime) AS lastNonInteractive,
             assignedLicenses, typeof(signInActivity) AS activityType
      FROM ${dataset(join(out, "users"))}`);
    expect(rows).toHaveLength(valid.length);
    const byId = new Map(rows.map((row) => [row.id as string, row]));
    expect(byId.size).toBe(valid.length);
    for (const { user } of valid) {
      if (!user) throw new Error("a valid element without its user");
      expect(byId.get(user.id)).toEqual({
        id: user.id,
        displayName: user.displayName,
        mail: user.mail,
        userPrincipalName: user.userPrincipalName,
        accountEnabled: user.accountEnabled,
        created: micros(user.createdDateTime),
        createdYear: user.createdDateTime.slice(0, 4),
        neverSignedIn: user.signInActivity === null,
        lastSignIn: micros(user.signInActivity?.lastSignInDateTime ?? null),
        lastNonInteractive: micros(user.signInActivity?.lastNonInteractiveSignInDateTime ?? null),
        assignedLicenses: user.assignedLicenses,
        activityType: "STRUCT(lastSignInDateTime TIMESTAMP WITH TIME ZONE, lastNonInteractiveSignInDateTime TIMESTAMP WITH TIME ZONE)",
      });
    }
  });

  test("writes batched files into createdYear=YYYY partitions", async () => {
    const files = (await readdir(join(out, "users"), { recursive: true })).filter((p) => p.endsWith(".parquet")).sort();
    expect(files.every((p) => /^createdYear=20(1[6-9]|2[0-3])\/part-\d{12}\.parquet$/.test(p))).toBe(true);
    const years = await query(`SELECT createdYear::VARCHAR AS y, count(*)::INTEGER AS n FROM ${dataset(join(out, "users"))} GROUP BY ALL ORDER BY y`);
    const expected = new Map<string, number>();
    for (const { user } of valid) expected.set(user!.createdDateTime.slice(0, 4), (expected.get(user!.createdDateTime.slice(0, 4)) ?? 0) + 1);
    expect(years).toEqual([...expected].sort().map(([y, n]) => ({ y, n })));
  });

  test("dead-letters each defective user with its file, index, byte offset and raw text", async () => {
    const entries: DeadLetter[] = [];
    for await (const entry of readDeadLetters(join(out, "dead-letter"))) entries.push(entry);
    const key = (file: string, line: number) => `${file}#${line}`;
    const planted = new Map(defective.map((e) => [key(join(out, "input", e.file), e.index), e]));
    expect(entries).toHaveLength(planted.size);
    for (const entry of entries) {
      const element = planted.get(key(entry.source, entry.line));
      expect(element).toBeDefined();
      expect(entry.offset).toBe(element!.offset);
      expect(entry.raw).toBe(element!.text);
      const parse = element!.defect === "malformed_json" || element!.defect === "truncated";
      expect(entry.stage).toBe(parse ? "parse" : "validate");
      if (element!.defect === "truncated") expect(entry.error).toContain(`the file ends inside element ${element!.index}`);
      if (!parse) expect(entry.issues?.length).toBeGreaterThan(0);
      planted.delete(key(entry.source, entry.line));
    }
    expect(planted.size).toBe(0);
    const nested = entries.find((e) => e.issues?.some((issue) => issue.path === "signInActivity.lastSignInDateTime"));
    expect(nested).toBeDefined();
  });
});
