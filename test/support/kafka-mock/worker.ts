/**
 * A pipeline process for the Kafka crash test: fromKafka → validate → dead letters → Parquet in
 * small files, until SIGTERM (a clean stop) or SIGKILL (a crash). Configured by the environment:
 * BROKERS, TOPIC, GROUP, OUT.
 */
import * as v from "valibot";
import { deadLetter, validate } from "../../../operators/index.ts";
import { fromKafka, run, toParquet } from "../../../src/index.ts";

const { BROKERS, TOPIC, GROUP, OUT } = process.env;
if (!BROKERS || !TOPIC || !GROUP || !OUT) throw new Error("worker.ts needs BROKERS, TOPIC, GROUP and OUT");
const Entry = v.object({ id: v.number(), zone: v.picklist(["a", "b", "c"]), n: v.number() });
const summary = await run(
  fromKafka({ brokers: BROKERS, topic: TOPIC, group: GROUP, from: "start", sessionTimeoutMs: 6000 }).pipe(
    validate(Entry),
    deadLetter(`${OUT}/dead`, { maxFileAgeMs: 50 }),
    toParquet(`${OUT}/events`, { schema: Entry, partitionBy: ["zone"], maxFileRows: 40, maxFileAgeMs: 200, mode: "append" }),
  ),
  { handleSignals: true },
);
console.log(JSON.stringify(summary));
