/**
 * The bulk acknowledgements and the delivery parse `fromJetStream` uses instead of the client's
 * per-message calls, checked against the local NATS server and against the client's own `msg.info`.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { AckPolicy, type JetStreamManager, type JsMsg, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { deliveryOf, sendAcks } from "../../src/sources/natsAcks.ts";
import { until } from "../helpers/brokers.ts";

let nc: NatsConnection;
let jsm: JetStreamManager;
const stream = `sluice-natsacks-${process.pid}-${Date.now()}`;

beforeAll(async () => {
  nc = await connect({ servers: "nats://127.0.0.1:4222" });
  jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: stream, subjects: [`${stream}.>`] });
  const js = jetstream(nc);
  await Promise.all(Array.from({ length: 1200 }, (_, i) => js.publish(`${stream}.x`, `{"i":${i + 1}}`)));
});
afterAll(async () => {
  await jsm.streams.delete(stream).catch(() => {});
  await nc.close();
});

async function pull(consumer: string, count: number): Promise<JsMsg[]> {
  const out: JsMsg[] = [];
  const source = await jetstream(nc).consumers.get(stream, consumer);
  for await (const msg of await source.fetch({ max_messages: count, expires: 5000 })) {
    out.push(msg);
    if (out.length === count) break;
  }
  return out;
}

const pending = async (consumer: string) => (await jsm.consumers.info(stream, consumer)).num_ack_pending;

describe("natsAcks", () => {
  test("deliveryOf reads what msg.info says, for first deliveries and deliveries again", async () => {
    await jsm.consumers.add(stream, { durable_name: "info", ack_policy: AckPolicy.Explicit, ack_wait: 60_000_000_000, max_ack_pending: 5000 });
    const first = await pull("info", 1000);
    expect(first.length).toBe(1000);
    for (const msg of first) {
      const { streamSequence, deliverySequence, redelivered } = msg.info;
      expect(deliveryOf(msg)).toEqual({ streamSequence, deliverySequence, redelivered });
    }
    // Given back, they come again with a delivery count of 2.
    for (const msg of first.slice(0, 50)) msg.nak();
    await nc.flush();
    const again = await pull("info", 50);
    expect(again.length).toBe(50);
    for (const msg of again) {
      expect(msg.info.redelivered).toBe(true);
      const { streamSequence, deliverySequence, redelivered } = msg.info;
      expect(deliveryOf(msg)).toEqual({ streamSequence, deliverySequence, redelivered });
    }
  });

  test("sendAcks acknowledges every message it is given, and no other; +WPI keeps them pending", async () => {
    await jsm.consumers.add(stream, { durable_name: "acks", ack_policy: AckPolicy.Explicit, ack_wait: 60_000_000_000, max_ack_pending: 5000 });
    const messages = await pull("acks", 1200);
    expect(messages.length).toBe(1200);
    sendAcks(nc, messages, "+WPI");
    await nc.flush();
    expect(await pending("acks")).toBe(1200);
    // Every other message, in one call: exactly those leave the pending list.
    sendAcks(
      nc,
      messages.filter((_, i) => i % 2 === 0),
      "+ACK",
    );
    await nc.flush();
    await until("the acks counted", async () => (await pending("acks")) === 600);
    const info = await jsm.consumers.info(stream, "acks");
    // The first message is acknowledged, the second is not: the floor stays at 1.
    expect(info.ack_floor.stream_seq).toBe(1);
    sendAcks(
      nc,
      messages.filter((_, i) => i % 2 === 1),
      "+ACK",
    );
    await nc.flush();
    await until("every message acknowledged", async () => (await pending("acks")) === 0);
    expect((await jsm.consumers.info(stream, "acks")).ack_floor.stream_seq).toBe(1200);
  });
});
