// A load balancer in front of several reconcilers, as a Service or a VIP would be: each
// TCP connection goes to the first backend that accepts it. Agents and the CLI talk to the
// front and never learn which reconciler answered.
import type { Socket, TCPSocketListener } from "bun";
import { freePort } from "../support.ts";

interface Pair {
  peer?: Socket<Pair>;
  /** The backend port the connection goes to. */
  backend?: number;
  /** Bytes that arrived before the backend connection was open. */
  pending: Uint8Array[];
}

export class TcpFront {
  readonly port = freePort();
  private readonly listener: TCPSocketListener<Pair>;
  private readonly clients = new Set<Socket<Pair>>();

  constructor(private readonly backends: () => readonly number[]) {
    this.listener = Bun.listen<Pair>({
      hostname: "127.0.0.1",
      port: this.port,
      socket: {
        open: (client) => {
          client.data = { pending: [] };
          this.clients.add(client);
          void this.connect(client);
        },
        data: (client, chunk) => {
          if (client.data.peer) client.data.peer.write(chunk);
          else client.data.pending.push(new Uint8Array(chunk));
        },
        close: (client) => {
          this.clients.delete(client);
          client.data.peer?.end();
        },
        error: (client) => void client.data.peer?.end(),
      },
    });
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Closes the connections that go to `port` (its health check failed): clients reconnect elsewhere. */
  drop(port: number): void {
    for (const c of this.clients) {
      if (c.data.backend !== port) continue;
      c.data.peer?.end();
      c.end();
    }
  }

  stop(): void {
    this.listener.stop(true);
  }

  private async connect(client: Socket<Pair>): Promise<void> {
    for (const port of this.backends()) {
      try {
        const upstream = await Bun.connect<Pair>({
          hostname: "127.0.0.1",
          port,
          socket: {
            open: (s) => void (s.data = { peer: client, pending: [] }),
            data: (_s, chunk) => void client.write(chunk),
            close: () => void client.end(),
            error: () => void client.end(),
          },
        });
        upstream.data = { peer: client, pending: [] };
        client.data.peer = upstream;
        client.data.backend = port;
        for (const chunk of client.data.pending.splice(0)) upstream.write(chunk);
        return;
      } catch {
        // refused: the next backend
      }
    }
    client.end();
  }
}
