// InfiniBand / RoCE ports, from sysfs (/sys/class/infiniband/<device>/ports/<n>/): a port that was
// up and is not now, a port below its expected rate, and error counters as deltas (the link went
// down and up; symbol and receive errors above a rate). One finding per kind, naming every port
// it holds for, so a second port failing does not hide behind the first.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Finding } from "./finding.ts";
import { CheckMemory } from "./memory.ts";

export const DEFAULT_INFINIBAND_DIR = "/sys/class/infiniband";

/** Errors per minute above which a port is degraded. */
export const IB_ERRORS_PER_MINUTE = { symbol_error: 10, port_rcv_errors: 10 } as const;

export interface IbPort {
  /** "mlx5_0/1" */
  name: string;
  /** "4: ACTIVE" */
  state: string;
  /** "5: LinkUp" */
  physState: string;
  /** "400 Gb/sec (4X NDR)" */
  rate: string;
  rateGbps: number | undefined;
  /** "InfiniBand" or "Ethernet" (RoCE) */
  linkLayer: string;
  /** counters/<name> that exist and hold a number */
  counters: Partial<Record<"symbol_error" | "link_downed" | "port_rcv_errors", number>>;
}

function text(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8").trim();
  } catch {
    return undefined;
  }
}

function entries(dir: string): string[] {
  try {
    return readdirSync(dir).sort();
  } catch {
    return [];
  }
}

/** Every port under `dir`; none when the directory does not exist (no RDMA devices). */
export function readInfinibandPorts(dir: string): IbPort[] {
  const ports: IbPort[] = [];
  for (const device of entries(dir)) {
    for (const port of entries(join(dir, device, "ports"))) {
      const base = join(dir, device, "ports", port);
      const rate = text(join(base, "rate")) ?? "";
      const gbps = /^([\d.]+)\s*Gb\/sec/.exec(rate);
      const counters: IbPort["counters"] = {};
      for (const c of ["symbol_error", "link_downed", "port_rcv_errors"] as const) {
        const n = Number(text(join(base, "counters", c)));
        if (Number.isFinite(n) && n >= 0) counters[c] = n;
      }
      ports.push({
        name: `${device}/${port}`,
        state: text(join(base, "state")) ?? "",
        physState: text(join(base, "phys_state")) ?? "",
        rate,
        rateGbps: gbps ? Number(gbps[1]) : undefined,
        linkLayer: text(join(base, "link_layer")) ?? "",
        counters,
      });
    }
  }
  return ports;
}

const isUp = (p: IbPort) => /\bACTIVE\b/.test(p.state) && /\bLinkUp\b/.test(p.physState);

export interface InfinibandOptions {
  /** The rate every port should run at; default: the fastest any port of this node has run at. */
  expectedRateGbps?: number;
}

/** The check, with what it remembers between reads (ports seen up, counters, the fastest rate). */
export class InfinibandCheck {
  private readonly wasUp = new Set<string>();
  private readonly memory = new CheckMemory();
  private fastest = 0;

  constructor(private readonly options: InfinibandOptions = {}) {}

  evaluate(ports: readonly IbPort[], at: number): Finding[] {
    const down: string[] = [];
    const slow: string[] = [];
    const flapped: string[] = [];
    const errors: Record<keyof typeof IB_ERRORS_PER_MINUTE, string[]> = { symbol_error: [], port_rcv_errors: [] };
    for (const p of ports) {
      if (isUp(p)) {
        this.wasUp.add(p.name);
        if (p.rateGbps !== undefined) this.fastest = Math.max(this.fastest, p.rateGbps);
      } else if (this.wasUp.has(p.name)) {
        down.push(`${p.name} (${p.state || "?"}, ${p.physState || "?"})`);
      }
      const downed = p.counters.link_downed;
      if (downed !== undefined && this.memory.delta(`${p.name}:link_downed`, downed, at) > 0) flapped.push(p.name);
      for (const c of ["symbol_error", "port_rcv_errors"] as const) {
        const v = p.counters[c];
        const rate = v === undefined ? undefined : this.memory.rate(`${p.name}:${c}`, v, at, 60_000);
        if (rate !== undefined && rate > IB_ERRORS_PER_MINUTE[c]) errors[c].push(`${p.name} ${Math.round(rate)}/min`);
      }
    }
    const expected = this.options.expectedRateGbps ?? this.fastest;
    for (const p of ports) if (isUp(p) && p.rateGbps !== undefined && p.rateGbps < expected) slow.push(`${p.name} at ${p.rate}`);
    const out: Finding[] = [];
    const list = (names: string[]) => names.join(", ");
    if (down.length > 0) {
      out.push({
        check: "infiniband",
        code: "port_down",
        severity: "unhealthy",
        action: "contact_support",
        message: `InfiniBand ${down.length === 1 ? "port" : "ports"} down after being up: ${list(down)}`,
      });
    }
    if (slow.length > 0) {
      out.push({
        check: "infiniband",
        code: "rate",
        severity: "degraded",
        action: "contact_support",
        message: `InfiniBand below the expected ${expected} Gb/sec: ${list(slow)}`,
      });
    }
    if (flapped.length > 0) {
      out.push({
        check: "infiniband",
        code: "link_downed",
        severity: "degraded",
        action: "none",
        message: `InfiniBand link went down and up again: ${list(flapped)}`,
      });
    }
    if (errors.symbol_error.length > 0) {
      out.push({
        check: "infiniband",
        code: "symbol_errors",
        severity: "degraded",
        action: "none",
        message: `InfiniBand symbol errors above ${IB_ERRORS_PER_MINUTE.symbol_error}/min: ${list(errors.symbol_error)}`,
      });
    }
    if (errors.port_rcv_errors.length > 0) {
      out.push({
        check: "infiniband",
        code: "rcv_errors",
        severity: "degraded",
        action: "none",
        message: `InfiniBand receive errors above ${IB_ERRORS_PER_MINUTE.port_rcv_errors}/min: ${list(errors.port_rcv_errors)}`,
      });
    }
    return out;
  }
}
