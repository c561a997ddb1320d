/**
 * A pipeline process for the Kafka crash test: fromKafka → validate → dead letters → Parquet in
 * small files, pausing 25 ms every 100 records, until SIGTERM (a clean stop) or SIGKILL (a crash). Configured by the environment:
 * BROKERS, TOPIC, GROUP, OUT.
 */
import { concatMap } from "rxjs";
import * as v from "valibot";
import { deadLetter, validate } from "../../../operators/index.ts";
import { fromKafka, run, toParquet } from "../../../src/index.ts";

const { BROKERS, TOPIC, GROUP, OUT } = process.env;
if (!BROKERS || !TOPIC || !GROUP || !OUT) throw new Error("worker.ts needs BROKERS, TOPIC, GROUP and OUT");
const Entry = v.object({ id: v.number(), zone: v.picklist(["a", "b", "c"]), n: v.number() });
const summary = await run(
  fromKafka({ brokers: BROKERS, topic: TOPIC, group: GROUP, from: "start", sessionTimeoutMs: 6000 }).pipe(
    // A pause every 100 records (order kept): the crash test's kill lands while there is input left,
    // however fast the machine.
    concatMap(async (record, i) => {
      if (i % 100 === 99) await Bun.sleep(25);
      return record;
    }),
    validate(Entry),
    deadLetter(`${OUT}/dead`, { maxFileAgeMs: 50 }),
    toParquet(`${OUT}/events`, { schema: Entry, partitionBy: ["zone"], maxFileRows: 40, maxFileAgeMs: 200, mode: "append" }),
  ),
  { handleSignals: true },
);
console.log(JSON.stringify(summary));
