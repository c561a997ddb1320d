/**
 * `sluice list [folder] [--json]`: the pipeline modules in a folder with their descriptions.
 */
import { relative } from "node:path";
import { discoverPipelines } from "../run/discover.ts";
import type { Schedule } from "../run/pipeline.ts";
import { parseOptions } from "./args.ts";

const USAGE = "usage: sluice list [folder] [--json]   (folder defaults to pipelines/)";

/**
 * Lists the pipelines in a folder (default `pipelines/`): name, description and the command
 * that runs each. Modules that fail to import or are not pipelines are listed with the reason.
 *
 * Resolves to 0 when every module is a pipeline, 1 when some are broken (so CI can catch them;
 * they are still listed), 2 when the folder cannot be read or the arguments are wrong.
 *
 * @example
 * process.exitCode = await command(["pipelines", "--json"]);
 */
export async function command(args: string[]): Promise<number> {
  const parsed = parseOptions("list", USAGE, args, { json: { type: "boolean" } });
  if (typeof parsed === "number") return parsed;
  const { values, positionals } = parsed;
  if (positionals.length > 1) {
    console.error(`sluice list: one folder at most\n${USAGE}`);
    return 2;
  }
  const folder = positionals[0] ?? "pipelines";
  let found: Awaited<ReturnType<typeof discoverPipelines>>;
  try {
    found = await discoverPipelines(folder);
  } catch (error) {
    console.error(`sluice list: ${(error as Error).message.replace(/^discoverPipelines: /, "")}`);
    return 2;
  }
  const broken = found.filter((p) => !p.ok);

  if (values.json) {
    const rows = found.map((p) =>
      p.ok
        ? { name: p.name, path: p.path, ok: true, description: p.description, schedule: p.schedule ? scheduleRow(p.schedule) : null }
        : { name: p.name, path: p.path, ok: false, reason: p.reason, error: p.error },
    );
    console.log(JSON.stringify(rows, null, 2));
    return broken.length > 0 ? 1 : 0;
  }

  const good = found.filter((p) => p.ok);
  const width = Math.max(4, ...found.map((p) => p.name.length));
  if (found.length === 0) {
    console.log(`no pipeline modules in ${folder} (a pipeline is a .ts/.js file whose default export is definePipeline({...}))`);
    return 0;
  }
  console.log(`${good.length} pipeline${good.length === 1 ? "" : "s"} in ${folder}:`);
  for (const p of good) {
    console.log(`  ${p.name.padEnd(width)}  ${p.ok ? p.description : ""}`);
    // sluice schedule runs it: say when it runs next.
    if (p.ok && p.schedule) console.log(`  ${" ".repeat(width)}  schedule ${p.schedule.cron} (${p.schedule.timezone}), next run ${scheduleRow(p.schedule).next ?? "never"}`);
  }
  if (good.length > 0) console.log(`\nrun one with: sluice run ${relative(".", good[0]!.path) || good[0]!.path} [args]`);
  if (broken.length > 0) {
    console.log(`\n${broken.length} module${broken.length === 1 ? "" : "s"} could not be used:`);
    for (const p of broken) console.log(`  ${p.name.padEnd(width)}  ${p.ok ? "" : p.error}`);
  }
  return broken.length > 0 ? 1 : 0;
}

function scheduleRow(schedule: Schedule): { cron: string; timezone: string; next: string | null } {
  return { cron: schedule.cron, timezone: schedule.timezone, next: schedule.next(new Date())?.toISOString() ?? null };
}
