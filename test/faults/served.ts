// The compiled `navarch serve` with a local pool of compiled navarch-node agents on the fake
// libnvidia-ml (test/compiled.ts), as the dependency-outage tests drive it: the nodes through
// the API, a GPU fault through the CLI, /readyz and GET /v1/status, and a stop by signal timed
// to its exit. What the reconciler printed is kept for the checks and for failure messages.
import { join } from "node:path";
import type { DependencyStatus, ReconcilerStatus } from "../../schema/admin.ts";
import { LocalProvider } from "../../reconciler/providers/local/provider.ts";
import { CompiledFleet, type Proc } from "../compiled.ts";
import { FAKE_NVML, buildFakeNvml } from "../fake-nvml/control.ts";
import { waitFor } from "../support.ts";

export interface ServedNode {
  id: string;
  state: string;
  stateReason: string | null;
  incidentId: number | null;
  cordonedBy: string | null;
}

export class ServedFleet {
  server: Proc | undefined;
  private constructor(
    readonly fleet: CompiledFleet,
    private readonly env: Record<string, string>,
  ) {}

  /**
   * A fleet whose config is the server section, `sections` (a scheduler), the local provider
   * and `providers` (more), and a local pool `gpu` of `size` nodes (plus `pools`, more entries).
   */
  static async create(
    opts: { sections?: string; providers?: string; size?: number; pools?: string; health?: string; env?: Record<string, string> } = {},
  ): Promise<ServedFleet> {
    buildFakeNvml();
    const fleet = await CompiledFleet.create();
    const size = opts.size ?? 2;
    fleet.writeConfig(
      `  health_check_interval: 1s\n${opts.sections ?? ""}providers:\n  local:\n    nvml_library: ${FAKE_NVML.full}\n    nodes_dir: ${join(fleet.dir, "local-nodes")}\n${opts.providers ?? ""}` +
        `pools:\n  - name: gpu\n    provider: local\n    instance_type: local-4gpu\n    region: local\n    scaling:\n      min_nodes: ${size}\n      max_nodes: ${size}\n    health:\n      unhealthy_threshold: 1\n      remediation: replace\n${opts.health ?? "      drain_timeout: 30m\n"}${opts.pools ?? ""}`,
    );
    return new ServedFleet(fleet, opts.env ?? {});
  }

  get url(): string {
    return this.fleet.url;
  }

  /** Starts `navarch serve` (again: on the same data directory); resolves once /readyz answers 200. */
  async start(): Promise<void> {
    this.fleet.output.set("navarch", "");
    this.server = this.fleet.start("navarch", [this.fleet.navarch, "serve", "--config", "navarch.yaml"], { NAVARCH_AUTH_TOKEN: this.fleet.token, ...this.env });
    await waitFor(
      "navarch serve ready",
      async () => {
        const res = await fetch(`${this.url}/readyz`).catch(() => undefined);
        return res?.status === 200 ? true : undefined;
      },
      30_000,
    );
  }

  log(): string {
    return this.fleet.output.get("navarch") ?? "";
  }

  async nodes(): Promise<ServedNode[]> {
    return (await this.fleet.api<{ nodes: ServedNode[] }>("/v1/nodes"))?.nodes ?? [];
  }

  async node(id: string): Promise<ServedNode | undefined> {
    return (await this.nodes()).find((n) => n.id === id);
  }

  /** `count` nodes of pool `gpu` ready; their ids, in the order listed. */
  async ready(count: number, timeoutMs = 90_000): Promise<string[]> {
    return waitFor(
      `${count} ready nodes`,
      async () => {
        const ready = (await this.nodes()).filter((n) => n.state === "ready");
        return ready.length >= count ? ready.map((n) => n.id) : undefined;
      },
      timeoutMs,
    );
  }

  /** Waits until the scheduler's mirror has mapped node `id` (its name there, in the node's details). */
  async mapped(id: string, timeoutMs = 30_000): Promise<string> {
    return waitFor(
      `${id} mapped to its scheduler's node`,
      async () => (await this.fleet.api<{ node: { k8sNodeName: string | null } }>(`/v1/nodes/${id}`))?.node.k8sNodeName ?? undefined,
      timeoutMs,
    );
  }

  async incident(id: number): Promise<{ status: string; outcome: string | null; closedAt: number | null } | undefined> {
    const list = await this.fleet.api<{ incidents: { id: number; status: string; outcome: string | null; closedAt: number | null }[] }>("/v1/incidents");
    return list?.incidents.find((i) => i.id === id);
  }

  async status(): Promise<ReconcilerStatus> {
    const status = await this.fleet.api<ReconcilerStatus>("/v1/status");
    if (status === undefined) throw new Error("GET /v1/status did not answer 200");
    return status;
  }

  async dependency(name: string): Promise<DependencyStatus | undefined> {
    return (await this.status()).dependencies.find((d) => d.name === name);
  }

  async readyz(): Promise<{ status: number; text: string }> {
    const res = await fetch(`${this.url}/readyz`);
    return { status: res.status, text: await res.text() };
  }

  /**
   * An Xid on one GPU of a local node (its fake library raises it): resolves with how long
   * (ms) until Navarch took the node out of service (its state left ready).
   */
  async xid(id: string, xid = 79): Promise<number> {
    const sent = performance.now();
    const injected = await this.fleet.run([this.fleet.navarch, "fault", "inject", id, "--xid", String(xid), "--gpu", "1", "-s", this.url], {
      NAVARCH_AUTH_TOKEN: this.fleet.token,
    });
    if (injected.code !== 0) throw new Error(`fault inject ${id}: ${injected.stderr}`);
    await waitFor(`${id} out of service`, async () => ((await this.node(id))?.state !== "ready" ? true : undefined), 30_000);
    return performance.now() - sent;
  }

  /** Sends SIGTERM (or SIGINT); resolves with the exit code and how long (ms) it took to exit. */
  async signal(signal: "SIGTERM" | "SIGINT" = "SIGTERM"): Promise<{ code: number; ms: number }> {
    const server = this.server!;
    const sent = performance.now();
    server.kill(signal);
    const code = await Promise.race([server.exited, Bun.sleep(30_000).then(() => -1)]);
    const ms = performance.now() - sent;
    if (code === -1) server.kill("SIGKILL");
    this.server = undefined;
    return { code, ms };
  }

  /** Lines that say this reconciler lost its own lease or stood by while alone (the flapping the issue saw). */
  leaseFlaps(): string[] {
    return this.log()
      .split("\n")
      .filter((l) => /standing by|standby|no longer holds the leader lease|took the leader lease over/.test(l));
  }

  async stop(): Promise<void> {
    this.fleet.stop();
    const local = new LocalProvider({
      nodesDir: join(this.fleet.dir, "local-nodes"),
      serverUrl: this.url,
      authToken: this.fleet.token,
      agentCommand: ["true"],
    });
    for (const i of await local.list({})) await local.terminate(i.id);
  }
}
