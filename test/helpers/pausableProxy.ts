/**
 * A TCP proxy in front of a real local broker whose replies can be held back: while paused,
 * what the broker sends is kept (not lost) and delivered on resume. Requests still reach the
 * broker, so it stores what it is sent; only its acknowledgements are late. A slow broker for
 * backpressure tests, without a mock of the broker.
 */
import type { Socket, TCPSocketListener } from "bun";

interface Pipe {
  pending: Uint8Array[];
  socket: Socket<unknown> | undefined;
}

/** Writes what is pending as far as the socket takes it; the rest waits for `drain`. */
function flush(pipe: Pipe): void {
  const socket = pipe.socket;
  if (!socket) return;
  while (pipe.pending.length > 0) {
    const chunk = pipe.pending[0] as Uint8Array;
    const written = socket.write(chunk);
    if (written < chunk.byteLength) {
      pipe.pending[0] = chunk.subarray(Math.max(0, written));
      return;
    }
    pipe.pending.shift();
  }
}

export interface PausableProxy {
  readonly port: number;
  /** Bytes the broker has sent so far (delivered or held back): above 0 once a client's handshake was answered. */
  readonly received: number;
  /** Holds back everything the broker sends from now on. */
  pause(): void;
  /** Delivers what was held back and forwards again. */
  resume(): void;
  close(): void;
}

export function pausableProxy(upstreamPort: number): PausableProxy {
  let paused = false;
  let received = 0;
  const toClients = new Set<Pipe>();
  const listener: TCPSocketListener<{ up: Pipe; down: Pipe }> = Bun.listen<{ up: Pipe; down: Pipe }>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(client) {
        const up: Pipe = { pending: [], socket: undefined };
        const down: Pipe = { pending: [], socket: client as Socket<unknown> };
        client.data = { up, down };
        toClients.add(down);
        Bun.connect({
          hostname: "127.0.0.1",
          port: upstreamPort,
          socket: {
            open(server) {
              up.socket = server as Socket<unknown>;
              flush(up);
            },
            data(_server, bytes) {
              received += bytes.byteLength;
              down.pending.push(new Uint8Array(bytes));
              if (!paused) flush(down);
            },
            drain: () => flush(up),
            close() {
              client.end();
            },
            error() {
              client.end();
            },
          },
        }).catch(() => {
          client.end();
        });
      },
      data(client, bytes) {
        client.data.up.pending.push(new Uint8Array(bytes));
        flush(client.data.up);
      },
      drain(client) {
        if (!paused) flush(client.data.down);
      },
      close(client) {
        toClients.delete(client.data.down);
        client.data.up.socket?.end();
      },
    },
  });
  return {
    port: listener.port,
    get received() {
      return received;
    },
    pause() {
      paused = true;
    },
    resume() {
      paused = false;
      for (const pipe of toClients) flush(pipe);
    },
    close() {
      listener.stop(true);
    },
  };
}
