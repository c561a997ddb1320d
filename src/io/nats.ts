/**
 * The NATS client, loaded when a JetStream source, sink or distributed run first connects: a
 * process that never talks to NATS does not pay for loading it at start-up.
 */
type JetStreamModule = typeof import("@nats-io/jetstream");
type TransportModule = typeof import("@nats-io/transport-node");

/** The two modules of the NATS client sluice uses. */
export interface Nats {
  readonly js: JetStreamModule;
  readonly transport: TransportModule;
}

let loading: Promise<Nats> | undefined;

/** Loads the NATS client (once per process). */
export function loadNats(): Promise<Nats> {
  loading ??= Promise.all([import("@nats-io/jetstream"), import("@nats-io/transport-node")]).then(([js, transport]) => ({ js, transport }));
  return loading;
}
