/**
 * `bun test/bench/threads.ts <input.ndjson> <outdir> [tree]`: runs the clickstream example (of
 * this checkout, or of another one such as a `git worktree` of an older commit) and prints its
 * wall seconds and the CPU seconds of each thread that used more than 0.2 s: the main thread, the
 * encoder worker ("Worker") and the runtime's own (garbage collector helpers, JIT, allocator).
 * Linux only: it reads /proc/self/task. Run it under `/usr/bin/time -v` for the peak RSS.
 */
import { readdirSync, readFileSync } from "node:fs";
import { resolve } from "node:path";

const [input, outDir, tree = resolve(import.meta.dir, "../..")] = Bun.argv.slice(2);
if (!input || !outDir) throw new Error("usage: bun test/bench/threads.ts <input.ndjson> <outdir> [tree]");
const { clickstream } = await import(resolve(tree, "examples/clickstream.ts"));

// Clock ticks a second in /proc's stat files (USER_HZ, 100 on Linux).
const HZ = 100;
const seconds = new Map<string, { name: string; cpu: number }>();
function sample() {
  for (const tid of readdirSync("/proc/self/task")) {
    try {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, "utf8");
      const name = tid === String(process.pid) ? "main" : stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      // utime and stime, fields 14 and 15 of the stat line.
      seconds.set(tid, { name, cpu: (Number(fields[11]) + Number(fields[12])) / HZ });
    } catch {
      // A thread that ended between the listing and the read: its last sample stays.
    }
  }
}
// Sampled while running too, since a worker's thread is gone once it is terminated.
const timer = setInterval(sample, 100);
const started = performance.now();
const summary = await clickstream(input, outDir);
sample();
clearInterval(timer);
const threads = [...seconds.values()].filter((t) => t.cpu > 0.2).sort((a, b) => b.cpu - a.cpu);
console.log(
  `wall ${((performance.now() - started) / 1000).toFixed(2)} s, ${summary.written} rows; CPU s by thread: ${threads.map((t) => `${t.name} ${t.cpu.toFixed(2)}`).join(", ")}`,
);
