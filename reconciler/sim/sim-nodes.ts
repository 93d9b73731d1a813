// The simulator's own view of the nodes: each row the reconciler creates gets a name
// (`<pool>-<N>`, N counting the pool's nodes in creation order), a rack and a zone, and a
// flag for whether it is in service (Ready or Suspect). Names replace the random node ids
// in the report (so two runs read the same), and scripted events pick nodes by them
// (targets: a name, or pool / rack / zone filters with an index, a random few, or all).
import type { PoolConfig } from "../../schema/config.ts";
import type { Scenario } from "../../schema/scenario.ts";
import type { Target } from "../../schema/scenario/targets.ts";
import type { Store } from "../store/store.ts";
import { nodeType } from "./node-types.ts";
import type { Random } from "./random.ts";

/** A node as the simulator names it: `<pool>-<N>`, N counting the pool's nodes in creation order. */
export interface SimNode {
  id: string;
  name: string;
  pool: string;
  ordinal: number;
  rack: number;
  zone: string;
  gpus: number;
  inService: boolean;
}

const NODE_ID = /[a-z0-9][a-z0-9-]*-[0-9a-f]{8}\b/g;

export class SimNodes {
  private readonly byId = new Map<string, SimNode>();
  private readonly byName = new Map<string, string>();
  private readonly ordinals = new Map<string, number>();
  private lastRowid = 0;

  constructor(
    private readonly scenario: Scenario,
    /** Whether a node's agent is running (a node without one is no candidate for events). */
    private readonly hasAgent: (id: string) => boolean,
  ) {}

  /** Names the rows created since the last look, in creation order (rowid). */
  async discover(store: Store): Promise<void> {
    const rows = await store.client.execute({
      sql: "SELECT rowid AS r, id, pool, instance_type FROM nodes WHERE rowid > ? ORDER BY rowid",
      args: [this.lastRowid],
    });
    const perRack = this.scenario.fleet.nodes_per_rack;
    for (const row of rows.rows) {
      this.lastRowid = Number(row.r);
      const id = String(row.id);
      if (this.byId.has(id)) continue;
      const pool = row.pool === null ? "-" : String(row.pool);
      const ordinal = this.ordinals.get(pool) ?? 0;
      this.ordinals.set(pool, ordinal + 1);
      const poolConfig = this.pool(pool);
      const zones = poolConfig ? (poolConfig.zones.length > 0 ? poolConfig.zones : [poolConfig.region]) : ["-"];
      const rack = Math.floor(ordinal / perRack);
      const type = row.instance_type === null ? poolConfig?.instance_type : String(row.instance_type);
      const node: SimNode = {
        id,
        name: `${pool}-${ordinal}`,
        pool,
        ordinal,
        rack,
        zone: zones[rack % zones.length]!,
        gpus: (type ? nodeType(type, this.scenario.node_types)?.gpus : undefined) ?? 8,
        inService: false,
      };
      this.byId.set(id, node);
      this.byName.set(node.name, id);
    }
  }

  get(id: string): SimNode | undefined {
    return this.byId.get(id);
  }

  has(id: string): boolean {
    return this.byId.has(id);
  }

  /** Every node named so far, in creation order. */
  all(): IterableIterator<SimNode> {
    return this.byId.values();
  }

  /** A pool of the scenario's config by name. */
  pool(name: string | undefined): PoolConfig | undefined {
    return name === undefined ? undefined : this.scenario.config.pools.find((p) => p.name === name);
  }

  nameOf(id: string): string {
    return this.byId.get(id)?.name ?? id;
  }

  /** Replaces raw node ids (random per run) by the simulator's names. */
  rename(text: string): string {
    return text.replace(NODE_ID, (id) => this.byId.get(id)?.name ?? id);
  }

  /** Nodes with a live agent, in creation order; `inService` only for Ready/Suspect ones. */
  candidates(inService: boolean): SimNode[] {
    const out: SimNode[] = [];
    for (const n of this.byId.values()) if (this.hasAgent(n.id) && (!inService || n.inService)) out.push(n);
    return out.sort((a, b) => (a.pool < b.pool ? -1 : a.pool > b.pool ? 1 : a.ordinal - b.ordinal));
  }

  /** Nodes a target picks among `candidates` (in creation order); `random` picks draw from `random`. */
  resolve(target: Target, candidates: SimNode[], random: Random): SimNode[] {
    if (target.pick.kind === "node") {
      const id = this.byName.get(target.pick.name);
      const node = id === undefined ? undefined : this.byId.get(id);
      return node !== undefined && candidates.includes(node) ? [node] : [];
    }
    const matching = candidates.filter(
      (n) =>
        (target.pool === undefined || n.pool === target.pool) &&
        (target.rack === undefined || n.rack === target.rack) &&
        (target.zone === undefined || n.zone === target.zone),
    );
    switch (target.pick.kind) {
      case "index": {
        const n = matching[target.pick.index];
        return n === undefined ? [] : [n];
      }
      case "random":
        return random.sample(matching, target.pick.count).sort((a, b) => a.ordinal - b.ordinal);
      case "all":
        return matching;
    }
  }
}
