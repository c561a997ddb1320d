import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { parseListen, parseRunArgs } from "../../src/cli/run.ts";
import { writeClickstream } from "../../src/generate/clickstream.ts";
import { dataset, query, tempDir } from "../helpers/duckdb.ts";

const root = join(import.meta.dir, "../..");
const main = join(root, "src/cli/main.ts");
const clickstreamModule = join(root, "examples/platform/clickstream.ts");
const dailyModule = join(root, "examples/platform/daily.ts");

/** A child's output as it arrives, so a test can wait for a line while the run goes on. */
function collect(stream: ReadableStream<Uint8Array>) {
  let text = "";
  const done = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) text += decoder.decode(chunk, { stream: true });
  })();
  return {
    get text() {
      return text;
    },
    done,
    async waitFor(pattern: RegExp, timeoutMs = 20_000): Promise<RegExpExecArray> {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const match = pattern.exec(text);
        if (match) return match;
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${pattern}; got:\n${text}`);
        await Bun.sleep(20);
      }
    },
  };
}

function start(args: string[]) {
  const child = Bun.spawn(["bun", main, "run", ...args], { cwd: root, stdout: "pipe", stderr: "pipe", env: { ...process.env, NO_COLOR: "1" } });
  return { child, out: collect(child.stdout), err: collect(child.stderr) };
}

async function sluiceRun(args: string[]) {
  const { child, out, err } = start(args);
  const code = await child.exited;
  await Promise.all([out.done, err.done]);
  return { code, stdout: out.text, stderr: err.text };
}

/** A figure from the summary table, such as "written 19,600". */
const figure = (text: string, label: string) => {
  const match = new RegExp(`^${label}\\s+([\\d,]+)`, "m").exec(text);
  if (!match) throw new Error(`no "${label}" in:\n${text}`);
  return Number(match[1].replaceAll(",", ""));
};

/** Dead letters the clickstream job gives for the generator's defects, by stage. */
function expectedDeadLetters(defects: Record<string, number>) {
  const total = Object.values(defects).reduce((a, b) => a + b, 0);
  const parse = defects.malformed_json ?? 0;
  return { total, parse, validate: total - parse };
}

describe("sluice run", () => {
  let dir: { path: string; remove: () => Promise<void> };
  let input: string;
  let defects: Record<string, number>;
  const COUNT = 6000;

  beforeAll(async () => {
    dir = await tempDir("sluice-cli-run-");
    input = join(dir.path, "events.ndjson");
    defects = await writeClickstream(input, { count: COUNT, seed: 21, defectRate: 0.05 });
  });
  afterAll(() => dir.remove());

  test("exits 0 when bad records were dead-lettered, printing plain progress lines and the summary", async () => {
    const out = join(dir.path, "ok");
    const { code, stdout, stderr } = await sluiceRun([clickstreamModule, "--input", input, "--out", out, "--progress-interval", "0.05"]);
    expect(code).toBe(0);
    const dead = expectedDeadLetters(defects);
    expect(figure(stdout, "records in")).toBe(COUNT);
    expect(figure(stdout, "dead-lettered")).toBe(dead.total);
    expect(stdout).toContain(`validate ${dead.validate.toLocaleString("en-US")}`);
    expect(stdout).toContain(`parse ${dead.parse.toLocaleString("en-US")}`);
    const written = figure(stdout, "written");
    expect(written).toBe(COUNT - dead.total);
    expect(stdout).toMatch(/^status\s+finished$/m);
    const [{ n }] = await query(`SELECT count(*) AS n FROM ${dataset(join(out, "events"))}`);
    expect(Number(n)).toBe(written);

    // Not a terminal: no escape codes, but plain lines whose counts only grow and never pass the input.
    expect(stderr).not.toContain("\x1b[");
    const progress = [...stderr.matchAll(/progress.*?: in ([\d,]+) /g)].map((m) => Number(m[1].replaceAll(",", "")));
    expect(progress.length).toBeGreaterThan(0);
    expect(progress).toEqual([...progress].sort((a, b) => a - b));
    expect(Math.max(...progress)).toBeLessThanOrEqual(COUNT);
  });

  test("--log-format json writes only JSON lines, each with the run id, ending with the summary", async () => {
    const out = join(dir.path, "json");
    const { code, stdout } = await sluiceRun([
      "--log-format",
      "json",
      "--run-id",
      "nightly-42",
      clickstreamModule,
      "--input",
      input,
      "--out",
      out,
      "--progress-interval=0.05",
    ]);
    expect(code).toBe(0);
    const lines = stdout.trim().split("\n").map((line) => JSON.parse(line));
    for (const line of lines) {
      expect(line.runId).toBe("nightly-42");
      expect(Number.isNaN(Date.parse(line.time))).toBe(false);
      expect(["debug", "info", "warn", "error"]).toContain(line.level);
    }
    expect(lines[0].message).toBe("run started");
    expect(lines.some((line) => line.message === "progress" && typeof line.in === "number")).toBe(true);
    const finished = lines.at(-1);
    const dead = expectedDeadLetters(defects);
    expect(finished).toMatchObject({ message: "run finished", in: COUNT, deadLettered: dead.total, written: COUNT - dead.total, exitCode: 0 });
    expect(finished.deadLetteredByStage).toEqual({ validate: dead.validate, parse: dead.parse });
    // The files carry the same run id as the log lines.
    const [{ run_id }] = await query(
      `SELECT DISTINCT value::VARCHAR AS run_id FROM parquet_kv_metadata('${join(out, "events")}/**/*.parquet') WHERE key::VARCHAR = 'sluice.run_id'`,
    );
    expect(run_id).toBe("nightly-42");
  });

  test("exits 1 naming the input when it does not exist or is a folder", async () => {
    const missing = await sluiceRun([clickstreamModule, "--input", join(dir.path, "nope.ndjson"), "--out", join(dir.path, "o1")]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("run failed");
    expect(missing.stderr).toContain(`${join(dir.path, "nope.ndjson")} does not exist`);
    expect(missing.stdout).toBe("");

    const folder = await sluiceRun([clickstreamModule, "--input", dir.path, "--out", join(dir.path, "o2")]);
    expect(folder.code).toBe(1);
    expect(folder.stderr).toContain("is a folder");
  });

  test("while --metrics-linger serves after a failed run, /health says failed, with the error and exit code", async () => {
    const missing = join(dir.path, "gone.ndjson");
    const { child, err } = start(["--metrics", "127.0.0.1:0", "--metrics-linger", "30", "--progress", "none", clickstreamModule, "--input", missing, "--out", join(dir.path, "o0")]);
    try {
      const url = (await err.waitFor(/metrics on (http:\/\/127\.0\.0\.1:\d+\/metrics)/))[1];
      await err.waitFor(/run failed/);
      const health = (await (await fetch(url.replace("/metrics", "/health"))).json()) as Record<string, unknown>;
      expect(health).toMatchObject({ status: "failed", exitCode: 1, in: 0, written: 0 });
      expect(String(health.error)).toContain(`${missing} does not exist`);
      child.kill("SIGINT");
      expect(await child.exited).toBe(1);
    } finally {
      child.kill("SIGKILL");
    }
  });

  test("exits 1 with a clear message when the output folder cannot be created", async () => {
    const file = join(dir.path, "a-file");
    await Bun.write(file, "not a folder");
    const { code, stderr, stdout } = await sluiceRun([clickstreamModule, "--input", input, "--out", join(file, "out")]);
    expect(code).toBe(1);
    expect(stderr).toContain("run failed");
    expect(stderr).toContain("not a directory");
    expect(stderr).toContain("choose another output folder");
    expect(stdout).toBe("");
  });

  test("exits 2 for a missing module, a module that is not a pipeline, one that does not import, and bad pipeline arguments", async () => {
    const missing = await sluiceRun([join(dir.path, "missing.ts")]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("does not exist");

    const notPipeline = join(dir.path, "not-a-pipeline.ts");
    await Bun.write(notPipeline, "export default { description: 'half', source: () => null };\n");
    const shape = await sluiceRun([notPipeline]);
    expect(shape.code).toBe(2);
    expect(shape.stderr).toContain("is not a pipeline");
    expect(shape.stderr).toContain("without process");

    const broken = join(dir.path, "broken.ts");
    await Bun.write(broken, "export default definePipeline({ description: 'x' \n");
    const syntax = await sluiceRun([broken]);
    expect(syntax.code).toBe(2);
    expect(syntax.stderr).toContain("cannot import");

    const args = await sluiceRun([clickstreamModule, "--out", join(dir.path, "o3")]);
    expect(args.code).toBe(2);
    expect(args.stderr).toContain("--input <file or glob> is required");

    const usage = await sluiceRun(["--progress", "sometimes", clickstreamModule]);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain("--progress must be auto, tty, plain or none");
  });

  test("SIGINT stops reading, commits what was buffered, prints the summary and exits 130", async () => {
    const out = join(dir.path, "sigint");
    const { child, out: stdout, err } = start([
      dailyModule,
      "--from",
      "2024-03-01",
      "--to",
      "2024-03-30",
      "--per-day",
      "40000",
      "--out",
      out,
      "--progress-interval",
      "0.1",
    ]);
    await err.waitFor(/progress .*in [1-9]/);
    child.kill("SIGINT");
    const code = await child.exited;
    await Promise.all([stdout.done, err.done]);
    expect(code).toBe(130);
    expect(err.text).toContain("SIGINT received");
    expect(stdout.text).toMatch(/^status\s+stopped by SIGINT/m);
    expect(stdout.text).toContain("stopped early");
    const read = figure(stdout.text, "records in");
    const written = figure(stdout.text, "written");
    expect(read).toBeGreaterThan(0);
    expect(read).toBeLessThan(30 * 40_000);
    expect(written + figure(stdout.text, "dead-lettered")).toBe(read);
    const [{ n }] = await query(`SELECT count(*) AS n FROM ${dataset(join(out, "events"))}`);
    expect(Number(n)).toBe(written);
  });

  test("--progress tty redraws a block in place with a bar and an ETA when the input size is known", async () => {
    const out = join(dir.path, "tty");
    const { code, stdout, stderr } = await sluiceRun([dailyModule, "--date", "2024-03-05", "--per-day", "30000", "--out", out, "--progress", "tty"]);
    expect(code).toBe(0);
    expect(stderr).toContain("\x1b[?25l"); // cursor hidden while drawing
    expect(stderr.trimEnd().endsWith("\x1b[?25h")).toBe(true); // and shown again at the end
    expect(stderr).toMatch(/\[#*-*\]\s+\d+\.\d%\s+ETA /);
    expect(stderr).toContain("of 30,000 records");
    expect(stderr).toContain("\r\x1b[J"); // redrawn in place
    expect(figure(stdout, "records in")).toBe(30_000);
  });

  describe("with --metrics", () => {
    let fixture: string;
    let first: string;
    let second: string;
    let firstDefects: Record<string, number>;

    beforeAll(async () => {
      first = join(dir.path, "first.ndjson");
      second = join(dir.path, "second.ndjson");
      firstDefects = await writeClickstream(first, { count: 3000, seed: 5, defectRate: 0.05 });
      await writeClickstream(second, { count: 2000, seed: 6, defectRate: 0.05 });
      // A pipeline whose source reads one file, waits for a "go" file, then reads another:
      // the test scrapes while it waits, when every figure is still.
      fixture = join(dir.path, "paused.ts");
      await Bun.write(
        fixture,
        `import { Observable } from ${JSON.stringify(Bun.resolveSync("rxjs", root))};
import { join } from "node:path";
import { fromNdjson, toParquet } from ${JSON.stringify(join(root, "src/index.ts"))};
import { deadLetter, enrich, validate } from ${JSON.stringify(join(root, "operators/index.ts"))};
import { definePipeline } from ${JSON.stringify(join(root, "src/cli/pipeline.ts"))};
import { currentFlow, withFlow } from ${JSON.stringify(join(root, "src/flow/flow.ts"))};
import { ClickEvent, EnrichedEvent, enrichEvent } from ${JSON.stringify(join(root, "examples/clickstream.ts"))};

function pausedSource(a, go, b) {
  return new Observable((subscriber) => {
    const flow = currentFlow();
    let inner;
    let timer;
    const readB = () => { inner = withFlow(flow, () => fromNdjson(b).subscribe(subscriber)); };
    inner = withFlow(flow, () => fromNdjson(a).subscribe({
      next: (value) => subscriber.next(value),
      error: (error) => subscriber.error(error),
      complete: () => {
        timer = setInterval(async () => {
          if (await Bun.file(go).exists()) { clearInterval(timer); readB(); }
        }, 20);
      },
    }));
    return () => { clearInterval(timer); inner?.unsubscribe(); };
  });
}

export default definePipeline({
  description: "two files with a pause between them",
  source: ({ args }) => pausedSource(args[0], args[1], args[2]),
  process: (records, { args }) => records.pipe(
    validate(ClickEvent),
    enrich(enrichEvent),
    deadLetter(join(args[3], "dead-letter")),
    toParquet(join(args[3], "events"), { schema: EnrichedEvent, partitionBy: ["event_date"], maxFileAgeMs: 100 }),
  ),
});
`,
      );
    });

    test("serves /metrics during a paused run with figures that add up, and the last scrape equals the summary", async () => {
      const out = join(dir.path, "metrics");
      const go = join(dir.path, "go");
      const { child, out: stdout, err } = start([
        "--metrics",
        "127.0.0.1:0",
        "--metrics-linger",
        "30",
        "--progress",
        "none",
        fixture,
        first,
        go,
        second,
        out,
      ]);
      try {
        const url = (await err.waitFor(/metrics on (http:\/\/127\.0\.0\.1:\d+\/metrics)/))[1];
        const scrape = async () => {
          const text = await (await fetch(url)).text();
          const value = (name: string, labels = "") => {
            const match = new RegExp(`^${name}${labels.replace(/[{}"]/g, "\\$&")} (\\S+)$`, "m").exec(text);
            return match ? Number(match[1]) : undefined;
          };
          return { text, value };
        };
        // Wait for the pause: the first file read and every buffered row committed by age.
        let paused: Awaited<ReturnType<typeof scrape>> | undefined;
        const deadline = Date.now() + 20_000;
        while (Date.now() < deadline) {
          const m = await scrape().catch(() => undefined);
          if (m && m.value("sluice_records_read_total") === 3000 && m.value("sluice_buffered_rows") === 0 && (m.value("sluice_records_written_total") ?? 0) > 0) {
            paused = m;
            break;
          }
          await Bun.sleep(50);
        }
        if (!paused) throw new Error("the run never paused with everything committed");
        const dead = expectedDeadLetters(firstDefects);
        expect(paused.value("sluice_records_dead_lettered_total", '{stage="parse"}')).toBe(dead.parse);
        expect(paused.value("sluice_records_dead_lettered_total", '{stage="validate"}')).toBe(dead.validate);
        expect(paused.value("sluice_records_written_total")).toBe(3000 - dead.total);
        expect(paused.value("sluice_open_partition_writers")).toBe(0);
        expect(paused.value("sluice_commit_latency_seconds_count")).toBe(paused.value("sluice_files_written_total"));
        expect(paused.text).toMatch(/^sluice_commit_latency_seconds_bucket\{le="\+Inf"\} \d+$/m);
        const health = (await (await fetch(url.replace("/metrics", "/health"))).json()) as { status: string };
        expect(health.status).toBe("ok");

        await Bun.write(go, "");
        await stdout.waitFor(/^status\s+finished$/m);
        const last = await scrape();
        expect(last.value("sluice_records_read_total")).toBe(figure(stdout.text, "records in"));
        expect(last.value("sluice_records_read_total")).toBe(5000);
        expect(last.value("sluice_records_written_total")).toBe(figure(stdout.text, "written"));
        const deadTotal = [...last.text.matchAll(/^sluice_records_dead_lettered_total\{stage="[^"]+"\} (\d+)$/gm)].reduce((a, m) => a + Number(m[1]), 0);
        expect(deadTotal).toBe(figure(stdout.text, "dead-lettered"));
        expect(last.value("sluice_files_written_total")).toBe(figure(stdout.text, "files"));
        expect(last.value("sluice_buffered_rows")).toBe(0);
        // Lingering, /health says the run is over and with what figures.
        const ended = (await (await fetch(url.replace("/metrics", "/health"))).json()) as Record<string, unknown>;
        expect(ended).toMatchObject({
          status: "finished",
          exitCode: 0,
          in: 5000,
          written: figure(stdout.text, "written"),
          deadLettered: figure(stdout.text, "dead-lettered"),
          files: figure(stdout.text, "files"),
        });

        // A signal during the linger ends it; the run itself had finished, so the code stays 0.
        child.kill("SIGINT");
        expect(await child.exited).toBe(0);
      } finally {
        child.kill("SIGKILL");
      }
    });

    test("exits 2 when the metrics port is taken, before reading anything", async () => {
      const taken = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("") });
      try {
        const out = join(dir.path, "busy");
        await mkdir(out, { recursive: true });
        const { code, stderr } = await sluiceRun(["--metrics", String(taken.port), clickstreamModule, "--input", input, "--out", out]);
        expect(code).toBe(2);
        expect(stderr).toContain(`cannot serve metrics on 127.0.0.1:${taken.port}`);
      } finally {
        taken.stop(true);
      }
    });
  });
});

describe("sluice run's arguments", () => {
  test("takes sluice's options before and after the module path, and everything after -- as the pipeline's", () => {
    const parsed = parseRunArgs(["--log-format", "json", "job.ts", "--date", "2024-03-01", "--metrics=0.0.0.0:9100", "--", "--metrics", "x"]);
    expect(parsed.modulePath).toBe("job.ts");
    expect(parsed.logFormat).toBe("json");
    expect(parsed.metrics).toEqual({ hostname: "0.0.0.0", port: 9100 });
    expect(parsed.pipelineArgs).toEqual(["--date", "2024-03-01", "--metrics", "x"]);
  });

  test("reads [host:]port for --metrics, defaulting to 127.0.0.1, and refuses anything else", () => {
    expect(parseListen("9464")).toEqual({ hostname: "127.0.0.1", port: 9464 });
    expect(parseListen(":0")).toEqual({ hostname: "127.0.0.1", port: 0 });
    expect(parseListen("[::1]:9464")).toEqual({ hostname: "::1", port: 9464 });
    expect(() => parseListen("localhost")).toThrow("[host:]port");
    expect(() => parseListen("70000")).toThrow();
  });

  test("refuses a missing module, an unknown option before it and a negative interval", () => {
    expect(() => parseRunArgs([])).toThrow("module is missing");
    expect(() => parseRunArgs(["--fast", "job.ts"])).toThrow("unknown option --fast");
    expect(() => parseRunArgs(["job.ts", "--progress-interval", "-1"])).toThrow("--progress-interval");
    expect(parseRunArgs(["job.ts", "--no-progress"]).progress).toBe("none");
  });
});
