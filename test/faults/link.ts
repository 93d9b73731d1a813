// A TCP link between Navarch and a real part (kube-apiserver, slurmrestd, sqld, Prometheus),
// that a test can cut the way networks fail: `up` forwards both ways; `blackhole` accepts
// connections and never answers (a route removed, a firewall dropping packets: the client
// waits for its own deadline), and what was open goes silent too; `refuse` closes every
// connection at once (the part is down, the port closed). Going back `up` from a black hole
// closes the silenced connections: TCP would have timed them out by then.
import type { Socket, TCPSocketListener } from "bun";
import { freePort } from "../support.ts";

export type LinkMode = "up" | "blackhole" | "refuse";

interface End {
  peer?: Socket<End>;
  /** Bytes for this socket its buffer did not take yet. */
  queue: Uint8Array[];
  /** Bytes from this client that arrived before the upstream connection was open. */
  pending: Uint8Array[];
  /** Accepted while the link was a black hole: never connected upstream. */
  silenced: boolean;
}

export class FaultyLink {
  readonly port = freePort();
  private readonly listener: TCPSocketListener<End>;
  private readonly clients = new Set<Socket<End>>();
  private current: LinkMode;
  /** Connections made and bytes carried, for the test's own checks. */
  readonly seen = { connections: 0, bytes: 0 };

  constructor(
    private readonly target: { host?: string; port: number },
    mode: LinkMode = "up",
  ) {
    this.current = mode;
    this.listener = Bun.listen<End>({
      hostname: "127.0.0.1",
      port: this.port,
      socket: {
        open: (client) => {
          client.data = { queue: [], pending: [], silenced: false };
          this.seen.connections++;
          if (this.current === "refuse") {
            client.end();
            return;
          }
          this.clients.add(client);
          if (this.current === "blackhole") client.data.silenced = true;
          else void this.connect(client);
        },
        data: (client, chunk) => {
          if (this.current !== "up" || client.data.silenced) return; // dropped, as a black hole does
          this.seen.bytes += chunk.length;
          if (client.data.peer) send(client.data.peer, chunk);
          else client.data.pending.push(new Uint8Array(chunk));
        },
        drain: (client) => flush(client),
        close: (client) => {
          this.clients.delete(client);
          client.data.peer?.end();
        },
        error: (client) => void client.data.peer?.end(),
      },
    });
  }

  get mode(): LinkMode {
    return this.current;
  }

  /** `host:port` of the link. */
  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  set(mode: LinkMode): void {
    const before = this.current;
    this.current = mode;
    // Refused: everything open is closed. Back up from a black hole: the silenced connections
    // are closed (their clients reconnect through the link, which now forwards).
    if (mode === "refuse" || (mode === "up" && before === "blackhole")) {
      for (const c of this.clients) {
        c.data.peer?.end();
        c.end();
      }
      this.clients.clear();
    }
  }

  stop(): void {
    for (const c of this.clients) c.end();
    this.listener.stop(true);
  }

  private async connect(client: Socket<End>): Promise<void> {
    try {
      const upstream = await Bun.connect<End>({
        hostname: this.target.host ?? "127.0.0.1",
        port: this.target.port,
        socket: {
          open: (s) => void (s.data = { peer: client, queue: [], pending: [], silenced: false }),
          data: (_s, chunk) => {
            if (this.current !== "up") return;
            this.seen.bytes += chunk.length;
            send(client, chunk);
          },
          drain: (s) => flush(s),
          close: () => void client.end(),
          error: () => void client.end(),
        },
      });
      upstream.data = { peer: client, queue: [], pending: [], silenced: false };
      client.data.peer = upstream;
      for (const chunk of client.data.pending.splice(0)) send(upstream, chunk);
    } catch {
      client.end(); // the part itself refused: so does the link
    }
  }
}

/** Writes all of `chunk`, queueing what the socket's buffer does not take now. */
function send(to: Socket<End>, chunk: Uint8Array): void {
  if (to.data.queue.length > 0) {
    to.data.queue.push(new Uint8Array(chunk));
    return;
  }
  const written = to.write(chunk);
  if (written < chunk.length) to.data.queue.push(new Uint8Array(chunk.subarray(Math.max(written, 0))));
}

function flush(s: Socket<End>): void {
  while (s.data.queue.length > 0) {
    const chunk = s.data.queue[0]!;
    const written = s.write(chunk);
    if (written >= chunk.length) s.data.queue.shift();
    else {
      s.data.queue[0] = chunk.subarray(Math.max(written, 0));
      return;
    }
  }
}
