/**
 * Large JSON exports through schema validation into batched Parquet: Microsoft Graph `users`
 * exports (`{"@odata.context": ..., "value": [ ...users ]}`) streamed element by element,
 * validated with a nested valibot schema, partitioned by the year each account was created.
 *
 *   bun examples/json-export.ts [--out DIR] [--files N] [--users N] [--seed N]
 *
 * generates N export files (seeded, offline) into DIR/input, with about 2% defects (wrong types,
 * a malformed element, and the last file cut off mid-record, as an interrupted download leaves
 * it), then writes DIR/users/createdYear=YYYY/part-*.parquet and DIR/dead-letter/*.ndjson and
 * prints the summary. DIR defaults to out/json-export.
 */
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { parseArgs } from "node:util";
import * as v from "valibot";
import { formatSummary, fromJson, isoInstant, type RunSummary, run, toParquet } from "sluice";
import { deadLetter, enrich, validate } from "sluice/operators";
import { type Random, seededRandom } from "../src/generate/random.ts";

const uuid = v.pipe(v.string(), v.uuid());

/** One user as Microsoft Graph exports it (the fields this job keeps). Nothing is coerced. */
export const GraphUser = v.object({
  id: uuid,
  displayName: v.nullable(v.string()),
  mail: v.nullable(v.pipe(v.string(), v.email())),
  userPrincipalName: v.pipe(v.string(), v.minLength(1)),
  accountEnabled: v.boolean(),
  createdDateTime: isoInstant(),
  signInActivity: v.nullable(
    v.object({
      lastSignInDateTime: v.nullable(isoInstant()),
      lastNonInteractiveSignInDateTime: v.nullable(isoInstant()),
    }),
  ),
  assignedLicenses: v.array(v.object({ skuId: uuid })),
});
export type GraphUser = v.InferOutput<typeof GraphUser>;

/** A stored user: the export's fields and the year the account was created (the partition). */
export const StoredUser = v.object({ ...GraphUser.entries, createdYear: v.pipe(v.string(), v.regex(/^\d{4}$/)) });
export type StoredUser = v.InferOutput<typeof StoredUser>;

/** The stored form of a valid user. */
export function storedUser(user: GraphUser): StoredUser {
  return { ...user, createdYear: user.createdDateTime.slice(0, 4) };
}

/** Runs the job over `input` (a glob of export files) into `outDir`, replacing an earlier run's output. */
export function exportUsers(input: string, outDir: string): Promise<RunSummary> {
  return run(
    fromJson(input, { path: "value" }).pipe(
      validate(GraphUser),
      enrich(storedUser),
      deadLetter(join(outDir, "dead-letter"), { mode: "overwrite" }),
      toParquet(join(outDir, "users"), { schema: StoredUser, partitionBy: ["createdYear"], maxFileRows: 5_000, mode: "overwrite" }),
    ),
    { handleSignals: true },
  );
}

// ---------------------------------------------------------------------------------------------
// The seeded generator of Graph-like exports.

/** One element written into an export file, with what the job must make of it. */
export interface GeneratedUser {
  /** The export file (its name inside the input folder). */
  readonly file: string;
  /** 1-based index in the file's `value` array, and the element's byte offset in the file. */
  readonly index: number;
  readonly offset: number;
  /** The element's JSON text as written (cut short for the truncated one). */
  readonly text: string;
  /** Why it must be rejected, or undefined for a valid user. */
  readonly defect: Defect | undefined;
  /** The valid user, when there is no defect. */
  readonly user: GraphUser | undefined;
}

export type Defect =
  | "string_for_boolean"
  | "number_for_timestamp"
  | "bad_nested_timestamp"
  | "object_for_array"
  | "number_for_mail"
  | "missing_id"
  | "malformed_json"
  | "truncated";

const DEFECTS: readonly Exclude<Defect, "truncated">[] = [
  "string_for_boolean",
  "number_for_timestamp",
  "bad_nested_timestamp",
  "object_for_array",
  "number_for_mail",
  "missing_id",
  "malformed_json",
];

const FIRST = ["Ada", "Grace", "José", "Zoë", "Øyvind", "Mei", "李", "Ngozi", "Siobhán", "Andrés", "Chloé", "Ahmed"];
const LAST = ["Lovelace", "Hopper", "Müller", "O'Brien", "Nakamura", "王", "Okafor", "García", "Dubois", "Nowak"];
const SKUS = Array.from({ length: 5 }, (_, i) => `${String(i + 1).repeat(8)}-aaaa-4bbb-8ccc-${"d".repeat(11)}${i}`);

function uuidOf(random: Random): string {
  const hex = (n: number) => Array.from({ length: n }, () => "0123456789abcdef"[random.int(16)]).join("");
  return `${hex(8)}-${hex(4)}-4${hex(3)}-${"89ab"[random.int(4)]}${hex(3)}-${hex(12)}`;
}

function instantOf(random: Random, fromYear: number, years: number): string {
  const ms = Date.UTC(fromYear, 0, 1) + Math.floor(random.next() * years * 365 * 86_400) * 1000;
  return new Date(ms).toISOString().replace(".000Z", "Z");
}

function userOf(random: Random, n: number): GraphUser {
  const first = random.pick(FIRST);
  const last = random.pick(LAST);
  const ascii = (name: string) => name.normalize("NFD").replace(/[^A-Za-z0-9]/g, "").toLowerCase();
  const login = [ascii(first), ascii(last), String(n)].filter(Boolean).join(".");
  const neverSignedIn = random.next() < 0.2;
  return {
    id: uuidOf(random),
    displayName: random.next() < 0.03 ? null : `${first} ${last}`,
    mail: random.next() < 0.1 ? null : `${login}@contoso.com`,
    userPrincipalName: `${login}@contoso.onmicrosoft.com`,
    accountEnabled: random.next() < 0.85,
    createdDateTime: instantOf(random, 2016, 8),
    signInActivity: neverSignedIn
      ? null
      : {
          lastSignInDateTime: random.next() < 0.1 ? null : instantOf(random, 2024, 1),
          lastNonInteractiveSignInDateTime: random.next() < 0.3 ? null : instantOf(random, 2024, 1),
        },
    assignedLicenses: Array.from({ length: random.int(3) }, () => ({ skuId: random.pick(SKUS) })),
  };
}

/** The element text of a user with `defect` planted. */
function defective(user: GraphUser, defect: Exclude<Defect, "truncated">): string {
  const broken: Record<string, unknown> = { ...user };
  switch (defect) {
    case "string_for_boolean":
      broken.accountEnabled = String(user.accountEnabled);
      break;
    case "number_for_timestamp":
      broken.createdDateTime = Math.floor(Date.parse(user.createdDateTime) / 1000);
      break;
    case "bad_nested_timestamp":
      broken.signInActivity = { lastSignInDateTime: "yesterday", lastNonInteractiveSignInDateTime: null };
      break;
    case "object_for_array":
      broken.assignedLicenses = { skuId: SKUS[0] };
      break;
    case "number_for_mail":
      broken.mail = 42;
      break;
    case "missing_id":
      delete broken.id;
      break;
    case "malformed_json":
      return `${JSON.stringify(broken).slice(0, -1)},}`;
  }
  return JSON.stringify(broken);
}

/**
 * Generates the export files' contents: `files` files of `users` users each, deterministic for
 * `seed`, about 2% of them defective, the last file cut off in the middle of a user.
 */
export function generateUsersExport(options: { files?: number; users?: number; seed?: number } = {}) {
  const { files = 4, users = 25_000, seed = 42 } = options;
  const random = seededRandom(seed);
  const documents: { name: string; content: string }[] = [];
  const elements: GeneratedUser[] = [];
  let n = 0;
  for (let f = 0; f < files; f++) {
    const name = `users-${String(f).padStart(3, "0")}.json`;
    const last = f === files - 1;
    let content = `{"@odata.context":"https://graph.microsoft.com/v1.0/$metadata#users(id,displayName,mail,userPrincipalName,accountEnabled,createdDateTime,signInActivity,assignedLicenses)","value":[`;
    let bytes = Buffer.byteLength(content);
    // The last file is cut part-way through this user, as an interrupted download leaves it.
    const cutAt = last ? Math.floor(users * 0.9) : -1;
    for (let i = 1; i <= users; i++) {
      if (i > 1) {
        content += ",";
        bytes += 1;
      }
      const user = userOf(random, n++);
      const defect = random.next() < 0.02 ? random.pick(DEFECTS) : undefined;
      let text = defect ? defective(user, defect) : JSON.stringify(user);
      if (i === cutAt) {
        text = text.slice(0, Math.floor(text.length / 2));
        elements.push({ file: name, index: i, offset: bytes, text, defect: "truncated", user: undefined });
        content += text;
        break;
      }
      elements.push({ file: name, index: i, offset: bytes, text, defect, user: defect ? undefined : user });
      content += text;
      bytes += Buffer.byteLength(text);
    }
    if (!last) content += `],"@odata.nextLink":"https://graph.microsoft.com/v1.0/users?$skiptoken=${f + 1}"}`;
    documents.push({ name, content });
  }
  return { documents, elements };
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Bun.argv.slice(2),
    options: {
      out: { type: "string", default: join("out", "json-export") },
      files: { type: "string", default: "4" },
      users: { type: "string", default: "25000" },
      seed: { type: "string", default: "42" },
    },
  });
  const outDir = values.out as string;
  const input = join(outDir, "input");
  await rm(input, { recursive: true, force: true });
  await mkdir(input, { recursive: true });
  const { documents, elements } = generateUsersExport({ files: Number(values.files), users: Number(values.users), seed: Number(values.seed) });
  for (const document of documents) await Bun.write(join(input, document.name), document.content);
  const planted = elements.filter((e) => e.defect).length;
  console.log(`generated ${elements.length.toLocaleString("en-US")} users in ${documents.length} files into ${input} (${planted} defective, the last file truncated)`);

  const summary = await exportUsers(join(input, "*.json"), outDir);
  console.log(formatSummary(summary));
  console.log(`dataset: ${join(outDir, "users")}   dead letters: ${join(outDir, "dead-letter")}`);
}
