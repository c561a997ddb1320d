/**
 * A broker process of a test's own (redis-server, nats-server) on a free port, stopped and started
 * again at will, so restarting it disturbs no one else's tests; and a NATS connection that waits
 * for the server to be up.
 */
import type { Subprocess } from "bun";
import { connect, type NatsConnection } from "@nats-io/transport-node";

/** A port nothing listens on now. */
export function freePort(): number {
  const server = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const { port } = server;
  server.stop(true);
  return port;
}

/** A broker process, stopped gracefully (its data stays) and started again at will. */
export class BrokerProcess {
  #child: Subprocess | undefined;
  constructor(readonly command: string[]) {}
  start(): void {
    this.#child = Bun.spawn(this.command, { stdout: "ignore", stderr: "ignore" });
  }
  /** Sends `signal` (SIGSTOP freezes it: connections stay open, nothing is answered; SIGCONT thaws it). */
  signal(signal: "SIGSTOP" | "SIGCONT"): void {
    this.#child?.kill(signal);
  }
  async stop(): Promise<void> {
    this.#child?.kill("SIGTERM");
    await this.#child?.exited;
  }
}

/** Connects to NATS, trying again until it answers (20 s at most). */
export async function connectWhenUp(servers: string): Promise<NatsConnection> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      return await connect({ servers });
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await Bun.sleep(50);
    }
  }
}
