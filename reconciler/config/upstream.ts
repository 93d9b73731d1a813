// Upstream Navarch's config file: recognising it (check and serve then say "run `navarch config
// migrate`" in one line instead of a list of unknown keys) and turning it into ours.
//
// What the migration keeps, and what it cannot (each a note, printed and written as a comment
// at the top of the result):
// - pools: a mapping keyed by name → our list; min_nodes, max_nodes, cooldown → scaling.*;
//   autoscaling (scale_up_at/scale_down_at, jobs_per_node, schedule of whole hours, predictive
//   lookback counted in autoscale intervals, composite) → scaling.autoscaler; health
//   (unhealthy_after → unhealthy_threshold); ssh_keys → ssh_key_names; defaults: applied per
//   pool as upstream did (health replaces a pool's missing health block whole).
// - providers: a mapping of names to `type:`; ours are keyed by type, so a pool names its
//   provider's type. `fake` (simulated GPUs in the reconciler) becomes `local` (agents on this
//   machine, GPUs from a fake libnvidia-ml) with local-<gpu_count>gpu instances.
// - a pool with several providers: ours launches one instance_type in one region on each
//   provider of its failover list, so providers whose instance type or region differ from the
//   first (by priority) are left out, with a note saying how to keep them (another pool).
// - upstream's abstract instance types (h100-8x, …) are resolved per provider.
// - server: ":50051" (every interface) → 0.0.0.0:50051; health_policy → health_policy_path
//   (upstream's policy format loads as it is); external_address → public_url; notifier: none.
import * as v from "valibot";
import { Scalar, stringify } from "yaml";
import { formatDuration, isLoopbackIp, parseAddress, type ProviderType } from "../../schema/config.ts";
import { isRecord } from "../../schema/shapes.ts";
import {
  UPSTREAM_KEYS,
  UpstreamConfigSchema,
  isUpstreamPolicy,
  type UpstreamAutoscaling,
  type UpstreamConfig,
  type UpstreamHealth,
  type UpstreamPool,
  type UpstreamPoolProvider,
  type UpstreamProvider,
} from "../../schema/upstream.ts";
import { formatIssuePath } from "../../schema/wire.ts";
import { sortProblems, type PathKey, type Problem, type YamlSource } from "./yaml-source.ts";

// ───────────────────────────── recognising the format ─────────────────────────────

/** Keys only upstream's format has, at the top of a pool (ours has them under scaling). */
const UPSTREAM_POOL_KEYS = ["min_nodes", "max_nodes", "cooldown", "autoscaling", "strategy", "ssh_keys"];

/**
 * What marks `raw` as upstream's config format, or undefined when it is not. Pools as a mapping
 * or a `defaults:` section are enough. Pools as a list are ours: upstream's keys in them get
 * their own errors with suggestions (the file is mostly ours already). Without pools, upstream's
 * other keys (a provider's `type:`, its server keys) count from two on, so one misspelt key in
 * a file of ours (`server.health_policy`) still gets its own error.
 */
export function upstreamConfigEvidence(raw: unknown): string[] | undefined {
  if (!isRecord(raw)) return undefined;
  const certain: string[] = [];
  if (isRecord(raw.pools)) certain.push("pools as a mapping of names");
  if ("defaults" in raw) certain.push("a defaults: section");
  const likely: string[] = [];
  if (isRecord(raw.providers)) {
    for (const [name, provider] of Object.entries(raw.providers)) if (isRecord(provider) && "type" in provider) likely.push(`providers.${name}.type`);
  }
  if (isRecord(raw.server)) {
    for (const key of ["health_policy", "external_address", "notifier"]) if (key in raw.server) likely.push(`server.${key}`);
  }
  for (const [name, pool] of isRecord(raw.pools) ? Object.entries(raw.pools) : []) {
    if (!isRecord(pool)) continue;
    for (const key of UPSTREAM_POOL_KEYS) if (key in pool) likely.push(`pools.${name}.${key}`);
    if (isRecord(pool.health) && "unhealthy_after" in pool.health) likely.push(`pools.${name}.health.unhealthy_after`);
  }
  if (certain.length > 0) return [...certain, ...likely];
  return raw.pools === undefined && likely.length >= 2 ? likely : undefined;
}

/** The one line check and serve print for a file in upstream's format. */
export function upstreamConfigMessage(source: string, evidence: readonly string[]): string {
  const shown = evidence.length > 3 ? [...evidence.slice(0, 3), "…"] : evidence;
  return `this is upstream Navarch's config format (${shown.join(", ")}); run \`navarch config migrate ${source}\` to turn it into this one`;
}

// ───────────────────────────── facts carried over ─────────────────────────────

/** Upstream's abstract instance types and what each provider calls them. */
export const ABSTRACT_INSTANCE_TYPES: Readonly<Record<string, Readonly<Partial<Record<ProviderType, string>>>>> = {
  "h100-8x": { lambda: "gpu_8x_h100_sxm5", gcp: "a3-highgpu-8g", aws: "p5.48xlarge" },
  "h100-1x": { lambda: "gpu_1x_h100_pcie", gcp: "a3-highgpu-1g", aws: "p5.xlarge" },
  "a100-8x": { lambda: "gpu_8x_a100", gcp: "a2-highgpu-8g", aws: "p4d.24xlarge" },
  "a100-4x": { lambda: "gpu_4x_a100", gcp: "a2-highgpu-4g", aws: "p4de.24xlarge" },
  "a100-1x": { lambda: "gpu_1x_a100", gcp: "a2-highgpu-1g" },
  "a10-1x": { lambda: "gpu_1x_a10", gcp: "g2-standard-4", aws: "g5.xlarge" },
  "l4-1x": { gcp: "g2-standard-4", aws: "g6.xlarge" },
};

/** Upstream's defaults where they differ from ours (or where ours has none). */
const UPSTREAM_DEFAULTS = {
  address: ":50051",
  autoscaleIntervalMs: 30_000,
  unhealthyAfter: 2,
  jobsPerNode: 10,
  lookbackSamples: 10,
  growthFactor: 1.2,
  fakeGpuCount: 8,
  sshUser: "ubuntu",
} as const;

const PROVIDER_OF_TYPE: ReadonlyMap<string, ProviderType> = new Map([
  ["lambda", "lambda"],
  ["gcp", "gcp"],
  ["aws", "aws"],
  ["fake", "local"],
]);

// ───────────────────────────── migrating ─────────────────────────────

export type MigrateResult = { ok: true; yaml: string; notes: string[]; pools: number } | { ok: false; problems: Problem[] };

/** A YAML mapping in the order it is printed. */
type Out = Record<string, unknown>;

/** `HH:MM`, quoted: a YAML 1.1 reader takes a bare 12:00 for the number 720. */
function clock(hhmm: string): Scalar {
  const scalar = new Scalar(hhmm);
  scalar.type = "QUOTE_DOUBLE";
  return scalar;
}

/** `pools.training.providers[0].name` */
function pathOf(keys: readonly PathKey[]): string {
  return keys.reduce<string>((path, key) => (typeof key === "number" ? `${path}[${key}]` : path ? `${path}.${key}` : key), "");
}

class Migration {
  readonly notes: string[] = [];
  readonly problems: Problem[] = [];

  constructor(
    private readonly yaml: YamlSource,
    private readonly input: UpstreamConfig,
  ) {}

  note(path: string, text: string): void {
    this.notes.push(path ? `${path}: ${text}` : text);
  }

  problem(keys: readonly PathKey[], message: string): void {
    this.problems.push(this.yaml.problemAt(pathOf(keys), keys, message));
  }

  run(): Out {
    const out: Out = {};
    this.unknownKeys();
    const server = this.server();
    if (Object.keys(server).length > 0) out.server = server;
    const { providers, typeOf } = this.providers();
    const pools = Object.entries(this.input.pools ?? {});
    if (pools.length === 0) this.problem(["pools"], "upstream required at least one pool, and there is none");
    const migrated = pools.map(([name, pool]) => this.pool(name, pool, typeOf, providers));
    if (Object.keys(providers).length > 0) out.providers = providers;
    out.pools = migrated;
    return out;
  }

  private server(): Out {
    const s = this.input.server ?? {};
    const out: Out = {};
    // Upstream listened on every interface unless told otherwise; ours defaults to loopback.
    const address = s.address ?? UPSTREAM_DEFAULTS.address;
    out.address = address.startsWith(":") ? `0.0.0.0${address}` : address;
    if (s.address === undefined)
      this.note("server.address", `not set: upstream listened on ${UPSTREAM_DEFAULTS.address} (every interface), kept as ${String(out.address)}`);
    // Upstream spoke plain HTTP; here that is served off loopback with a warning at every start.
    const host = parseAddress(String(out.address))?.host;
    if (host !== undefined && !isLoopbackIp(host)) {
      this.note(
        "server.address",
        `${String(out.address)} serves plain HTTP on a network address, as upstream did, with a warning at start: tokens cross the network in the clear. Set server.tls (cert_file, key_file) for HTTPS, or keep the port on a private network`,
      );
    }
    for (const key of ["heartbeat_interval", "heartbeat_timeout", "health_check_interval", "autoscale_interval"] as const) {
      const ms = s[key];
      if (ms !== undefined) out[key] = this.duration(ms, ["server", key]);
    }
    if (s.health_policy !== undefined) {
      out.health_policy_path = s.health_policy;
      this.note("server.health_policy", `→ health_policy_path; a policy in upstream's format (version, rules with condition) loads as it is`);
    }
    if (s.external_address !== undefined) {
      out.public_url = /^https?:\/\//.test(s.external_address) ? s.external_address : `http://${s.external_address}`;
      this.note("server.external_address", `→ public_url ${String(out.public_url)}`);
    }
    if (s.notifier !== undefined) {
      this.note("server.notifier", "left out: there are no webhooks here; a kubernetes: section mirrors cordons and drains into a cluster (see the README)");
    }
    return out;
  }

  private providers(): { providers: Out; typeOf: Map<string, ProviderType> } {
    const providers: Out = {};
    const typeOf = new Map<string, ProviderType>();
    const firstOfType = new Map<ProviderType, { name: string; settings: Out }>();
    for (const [name, p] of Object.entries(this.input.providers ?? {})) {
      const type = PROVIDER_OF_TYPE.get(p.type);
      if (type === undefined) {
        this.problem(["providers", name, "type"], `unknown provider type ${JSON.stringify(p.type)} (upstream knew lambda, gcp, aws and fake)`);
        continue;
      }
      typeOf.set(name, type);
      const settings = this.providerSettings(name, p, type);
      const first = firstOfType.get(type);
      if (first === undefined) {
        firstOfType.set(type, { name, settings });
        providers[type] = settings;
      } else if (JSON.stringify(first.settings) !== JSON.stringify(settings)) {
        this.problem(
          ["providers", name],
          `a second ${p.type} provider with other settings than providers.${first.name}; here each provider type has one set of settings: merge them, or keep one`,
        );
      }
      if (name !== type && type !== "local") this.note(`providers.${name}`, `→ providers.${type} (providers are keyed by type here; pools name ${type})`);
    }
    return { providers, typeOf };
  }

  private providerSettings(name: string, p: UpstreamProvider, type: ProviderType): Out {
    const out: Out = {};
    const at = `providers.${name}`;
    switch (type) {
      case "lambda":
        if (p.api_key_env !== undefined) out.api_key_env = p.api_key_env;
        break;
      case "gcp":
        if (p.project !== undefined) out.project = p.project;
        if (p.zone !== undefined) this.note(`${at}.zone`, `${p.zone} → the zones of the pools in its region (a GCP provider here has no zone of its own)`);
        this.note(at, "give it credentials_env or credentials_file (upstream used the machine's default credentials)");
        break;
      case "aws":
        if (p.region !== undefined) out.region = p.region;
        break;
      case "local":
        this.note(
          at,
          `type fake (GPUs simulated inside the reconciler) → providers.local: each node is a navarch-node process on this machine; set providers.local.nvml_library to the fake libnvidia-ml (npm run build makes one) for it to see GPUs`,
        );
        break;
    }
    return out;
  }

  private pool(name: string, pool: UpstreamPool, typeOf: ReadonlyMap<string, ProviderType>, providers: Out): Out {
    const at = `pools.${name}`;
    const defaults = this.input.defaults ?? {};
    const out: Out = { name: this.poolName(name) };

    // Providers in failover order, with the instance type and region each one launches.
    const entries: (UpstreamPoolProvider & { index?: number })[] =
      pool.providers !== undefined ? pool.providers.map((p, index) => ({ ...p, index })) : pool.provider !== undefined ? [{ name: pool.provider }] : [];
    if (pool.provider !== undefined && pool.providers !== undefined)
      this.problem(["pools", name, "providers"], "upstream refused provider and providers together");
    if (entries.length === 0) this.problem(["pools", name, "provider"], "is required (or providers), as upstream required");
    const ordered = [...entries].sort((a, b) => (a.priority ?? 0) - (b.priority ?? 0));
    if (pool.providers !== undefined && ordered.some((p, i) => p !== entries[i]))
      this.note(`${at}.providers`, `in priority order: ${ordered.map((p) => p.name).join(", ")}`);
    if (pool.strategy !== undefined && pool.strategy !== "priority") {
      this.note(`${at}.strategy`, `${pool.strategy} has no equivalent: providers are tried in the order listed (priority)`);
    }
    const launches = ordered.flatMap((entry) => {
      const keys: PathKey[] = entry.index === undefined ? ["pools", name, "provider"] : ["pools", name, "providers", entry.index, "name"];
      const type = typeOf.get(entry.name);
      if (type === undefined) {
        this.problem(keys, `unknown provider ${JSON.stringify(entry.name)} (not under providers:), which upstream refused`);
        return [];
      }
      if (providers[type] === undefined) providers[type] = {};
      if (entry.weight !== undefined) this.note(`${at}.providers.${entry.name}.weight`, "has no equivalent (no weighted spreading here)");
      const instanceType = this.instanceType(entry.instance_type ?? pool.instance_type, type, entry.name, at);
      const regions = entry.regions ?? (pool.region !== undefined && pool.region !== "" ? [pool.region] : type === "local" ? ["local"] : []);
      return [{ entry, type, instanceType, regions }];
    });
    const first = launches[0];
    if (pool.instance_type === undefined || pool.instance_type === "") this.problem(["pools", name, "instance_type"], "is required, as upstream required");
    if (first !== undefined) {
      const region = first.regions[0];
      if (region === undefined) this.problem(["pools", name, "region"], `is required here: which region should ${first.entry.name} launch in?`);
      if (first.regions.length > 1) {
        this.note(
          `${at}`,
          `one region per pool here: ${first.entry.name} launches in ${String(region)}, not in ${first.regions.slice(1).join(", ")} (add a pool per region to keep them)`,
        );
      }
      const kept = launches.filter((l) => l === first || (l.instanceType === first.instanceType && l.regions.includes(String(region))));
      for (const l of launches) {
        if (kept.includes(l)) continue;
        this.note(
          `${at}.providers.${l.entry.name}`,
          `left out: this pool launches ${String(first.instanceType)} in ${String(region)} on each of its providers, and ${l.entry.name} launches ${String(l.instanceType)} in ${l.regions.join(", ") || "no region"}; add a pool for it to keep it`,
        );
      }
      const types = [...new Set(kept.map((l) => l.type))];
      if (types.length === 1) out.provider = types[0];
      else out.providers = types;
      out.instance_type = first.instanceType;
      if (region !== undefined) out.region = region;
      const zones = pool.zones ?? this.gcpZones(first.type, region);
      if (zones !== undefined && zones.length > 0) out.zones = zones;
    }

    const scaling: Out = {};
    const min = pool.min_nodes ?? 0;
    if (pool.max_nodes === undefined || pool.max_nodes <= 0)
      this.problem(["pools", name, "max_nodes"], `must be > 0, as upstream required, got ${pool.max_nodes ?? "nothing"}`);
    if (min < 0) this.problem(["pools", name, "min_nodes"], `must be ≥ 0, as upstream required, got ${min}`);
    scaling.min_nodes = min;
    if (pool.max_nodes !== undefined) scaling.max_nodes = pool.max_nodes;
    if (pool.cooldown !== undefined) scaling.cooldown_period = this.duration(pool.cooldown, ["pools", name, "cooldown"]);
    if (pool.autoscaling !== undefined) scaling.autoscaler = this.autoscaler(pool.autoscaling, ["pools", name, "autoscaling"]);
    out.scaling = scaling;

    const health = this.health(pool.health, defaults.health, at);
    if (health !== undefined) out.health = health;
    if (pool.labels !== undefined && Object.keys(pool.labels).length > 0) out.labels = pool.labels;

    const sshKeys = pool.ssh_keys !== undefined && pool.ssh_keys.length > 0 ? pool.ssh_keys : defaults.ssh_keys;
    if (sshKeys !== undefined && sshKeys.length > 0) {
      // Lambda's launch call takes exactly one key name; upstream sent them all and got HTTP 400.
      out.ssh_key_names = [sshKeys[0]];
      if (sshKeys.length > 1)
        this.note(
          `${at}.ssh_keys`,
          `→ ssh_key_names [${sshKeys[0]}]: Lambda's launch call takes exactly one SSH key name, so the first is kept and ${sshKeys.slice(1).join(", ")} left out`,
        );
    }
    const sshUser = pool.ssh_user || defaults.ssh_user || UPSTREAM_DEFAULTS.sshUser;
    const keyPath = pool.ssh_private_key_path || defaults.ssh_private_key_path;
    const commands = pool.setup_commands ?? [];
    if (commands.length > 0) {
      if (keyPath === undefined || keyPath === "")
        this.problem(["pools", name, "ssh_private_key_path"], "is required with setup_commands, as upstream required (here or under defaults:)");
      if (sshUser !== UPSTREAM_DEFAULTS.sshUser) out.ssh_user = sshUser;
      if (keyPath) {
        out.ssh_private_key_path = keyPath;
        if (keyPath.startsWith("~")) this.note(`${at}.ssh_private_key_path`, `${keyPath}: ~ is not expanded here; write the full path`);
      }
      out.setup_commands = commands;
      if (commands.some((c) => /navarch-node/.test(c) && /github\.com|releases/.test(c))) {
        this.note(
          `${at}.setup_commands`,
          "install upstream's agent, which does not speak this reconciler's API; this reconciler serves its own: curl -fsSL {{.ControlPlane}}/install.sh | sudo NAVARCH_BOOTSTRAP_TOKEN={{.BootstrapToken}} sh -s -- --node-id {{.NodeID}}",
        );
      }
    }
    return out;
  }

  private poolName(name: string): string {
    if (/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(name)) return name;
    const fixed =
      name
        .toLowerCase()
        .replace(/[^a-z0-9-]+/g, "-")
        .replace(/^-+|-+$/g, "")
        .slice(0, 63)
        .replace(/-+$/, "") || "pool";
    this.note(`pools.${name}`, `named ${fixed} (pool names are DNS labels here)`);
    return fixed;
  }

  private instanceType(written: string | undefined, type: ProviderType, providerName: string, at: string): string | undefined {
    if (written === undefined) return undefined;
    if (type === "local") {
      const gpus = this.input.providers?.[providerName]?.gpu_count || UPSTREAM_DEFAULTS.fakeGpuCount;
      const local = `local-${gpus}gpu`;
      this.note(`${at}.instance_type`, `${written} on the fake provider → ${local} (${gpus} fake GPUs)`);
      return local;
    }
    const mapped = Object.hasOwn(ABSTRACT_INSTANCE_TYPES, written) ? ABSTRACT_INSTANCE_TYPES[written]![type] : undefined;
    if (mapped === undefined) return written;
    this.note(`${at}.instance_type`, `${written} (upstream's abstract type) → ${mapped} on ${type}`);
    return mapped;
  }

  /** A GCP provider's zone becomes the zones of a pool in its region. */
  private gcpZones(type: ProviderType, region: string | undefined): string[] | undefined {
    if (type !== "gcp" || region === undefined) return undefined;
    const zone = Object.values(this.input.providers ?? {}).find((p) => p.type === "gcp")?.zone;
    return zone !== undefined && zone.startsWith(`${region}-`) ? [zone] : undefined;
  }

  private health(own: UpstreamHealth | undefined, fallback: UpstreamHealth | undefined, at: string): Out | undefined {
    // Upstream used defaults.health only for a pool with no health block at all.
    const health = own ?? fallback;
    // No health block anywhere: upstream's defaults, which are ours (2, replace).
    if (health === undefined) return undefined;
    const out: Out = { unhealthy_threshold: health.unhealthy_after || UPSTREAM_DEFAULTS.unhealthyAfter };
    // Upstream read a health block without auto_replace as auto_replace: false.
    out.auto_replace = health.auto_replace ?? false;
    if (health.auto_replace === undefined)
      this.note(`${at}.health.auto_replace`, "not set, which upstream read as false: kept false (set true to replace unhealthy nodes)");
    return out;
  }

  private autoscaler(a: UpstreamAutoscaling, keys: PathKey[]): Out {
    const at = pathOf(keys);
    switch (a.type) {
      case "reactive":
        return {
          type: "reactive",
          ...(a.scale_up_at !== undefined ? { scale_up_threshold: a.scale_up_at } : {}),
          ...(a.scale_down_at !== undefined ? { scale_down_threshold: a.scale_down_at } : {}),
        };
      case "queue":
        if (a.jobs_per_node === undefined) this.note(`${at}.jobs_per_node`, `not set: upstream's default ${UPSTREAM_DEFAULTS.jobsPerNode}, written out`);
        this.note(at, "a queue autoscaler counts pods labelled navarch.dev/pool through a kubernetes: section; without one it holds the pool's size");
        return { type: "queue", jobs_per_node: a.jobs_per_node ?? UPSTREAM_DEFAULTS.jobsPerNode };
      case "scheduled": {
        const windows = (a.schedule ?? []).flatMap((w, i) => this.window(w, [...keys, "schedule", i]));
        this.note(at, "windows are read in UTC (upstream used the reconciler's local time): set timezone to yours");
        if (windows.length === 0) this.problem([...keys, "schedule"], "no window can be carried over (a scheduled autoscaler here needs at least one)");
        return { type: "scheduled", timezone: "UTC", windows, ...(a.fallback ? { fallback: this.autoscaler(a.fallback, [...keys, "fallback"]) } : {}) };
      }
      case "predictive": {
        const samples = a.lookback_window ?? UPSTREAM_DEFAULTS.lookbackSamples;
        const interval = this.input.server?.autoscale_interval ?? UPSTREAM_DEFAULTS.autoscaleIntervalMs;
        const wanted = samples * interval;
        const lookback = Math.min(Math.max(wanted, 60_000), 168 * 3_600_000);
        this.note(
          `${at}.lookback_window`,
          `${samples} autoscale intervals of ${formatDuration(interval)} → ${formatDuration(lookback)}${lookback !== wanted ? ` (${formatDuration(wanted)} is outside 1m to 168h)` : ""}`,
        );
        return {
          type: "predictive",
          lookback_window: formatDuration(lookback),
          growth_factor: a.growth_factor ?? UPSTREAM_DEFAULTS.growthFactor,
          ...(a.fallback ? { fallback: this.autoscaler(a.fallback, [...keys, "fallback"]) } : {}),
        };
      }
      case "composite":
        return {
          type: "composite",
          mode: a.mode === "min" || a.mode === "avg" ? a.mode : "max",
          autoscalers: (a.autoscalers ?? []).map((child, i) => this.autoscaler(child, [...keys, "autoscalers", i])),
        };
    }
  }

  /** Whole hours [start, end) on some days → our HH:MM windows (end 24 is midnight). */
  private window(w: { days?: string[]; start?: number; end?: number; min_nodes?: number; max_nodes?: number }, keys: PathKey[]): Out[] {
    const at = pathOf(keys);
    const [start, end] = [w.start ?? 0, w.end ?? 0];
    if (start < 0 || start > 23 || end < 0 || end > 24 || end <= start) {
      this.note(at, `hours ${start} to ${end} never matched upstream (start inclusive 0–23, end exclusive up to 24): left out`);
      return [];
    }
    const known = new Set(["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "mon", "tue", "wed", "thu", "fri", "sat", "sun"]);
    const written = w.days ?? [];
    const days = written.filter((d) => known.has(d.toLowerCase())).map((d) => d.toLowerCase());
    const ignored = written.filter((d) => !known.has(d.toLowerCase()));
    if (ignored.length > 0) this.note(`${at}.days`, `${ignored.join(", ")} ignored, as upstream ignored them`);
    // Upstream matched every day when none (that it knew) was listed.
    const allDays = days.length > 0 ? days : ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    const hh = (h: number) => `${String(h % 24).padStart(2, "0")}:00`;
    // Both bounds, always: upstream replaced both with the window's (0 when not written).
    const bounds = { min_nodes: w.min_nodes ?? 0, max_nodes: w.max_nodes ?? 0 };
    // A whole day (0 to 24) cannot be one window here (start = end); two halves are the same.
    if (start === 0 && end === 24) {
      return [
        { days: [...allDays], start: clock("00:00"), end: clock("12:00"), ...bounds },
        { days: [...allDays], start: clock("12:00"), end: clock("00:00"), ...bounds },
      ];
    }
    return [{ days: allDays, start: clock(hh(start)), end: clock(hh(end)), ...bounds }];
  }

  /** Our duration text for upstream's, which may be finer than a millisecond. */
  private duration(ms: number, keys: PathKey[]): string {
    const rounded = Math.round(ms);
    if (rounded !== ms) this.note(pathOf(keys), `${ms} ms rounded to ${rounded} ms`);
    return formatDuration(rounded);
  }

  /** Keys upstream did not know (it ignored them): listed, then dropped. */
  private unknownKeys(): void {
    const raw = this.yaml.raw;
    const unknown = (value: unknown, known: readonly string[], path: string) => {
      if (!isRecord(value)) return;
      for (const key of Object.keys(value))
        if (!known.includes(key)) this.note(path ? `${path}.${key}` : key, "not a key of upstream's format (upstream ignored it): left out");
    };
    const autoscaling = (value: unknown, path: string): void => {
      unknown(value, UPSTREAM_KEYS.autoscaling, path);
      if (!isRecord(value)) return;
      if (Array.isArray(value.schedule)) value.schedule.forEach((w, i) => unknown(w, UPSTREAM_KEYS.window, `${path}.schedule[${i}]`));
      if (value.fallback !== undefined) autoscaling(value.fallback, `${path}.fallback`);
      if (Array.isArray(value.autoscalers)) value.autoscalers.forEach((child, i) => autoscaling(child, `${path}.autoscalers[${i}]`));
    };
    if (!isRecord(raw)) return;
    unknown(raw, UPSTREAM_KEYS.top, "");
    unknown(raw.server, UPSTREAM_KEYS.server, "server");
    unknown(raw.defaults, UPSTREAM_KEYS.defaults, "defaults");
    if (isRecord(raw.defaults)) unknown(raw.defaults.health, UPSTREAM_KEYS.health, "defaults.health");
    if (isRecord(raw.providers)) for (const [name, p] of Object.entries(raw.providers)) unknown(p, UPSTREAM_KEYS.provider, `providers.${name}`);
    if (isRecord(raw.pools)) {
      for (const [name, pool] of Object.entries(raw.pools)) {
        unknown(pool, UPSTREAM_KEYS.pool, `pools.${name}`);
        if (!isRecord(pool)) continue;
        unknown(pool.health, UPSTREAM_KEYS.health, `pools.${name}.health`);
        if (Array.isArray(pool.providers)) pool.providers.forEach((p, i) => unknown(p, UPSTREAM_KEYS.poolProvider, `pools.${name}.providers[${i}]`));
        if (pool.autoscaling !== undefined) autoscaling(pool.autoscaling, `pools.${name}.autoscaling`);
      }
    }
  }
}

/**
 * Turns a parsed upstream config into ours: the YAML text (with the notes as a comment at the
 * top) and the notes, or every problem that keeps it from being carried over (each with its key
 * path in the upstream file). The result is not validated here; `navarch config migrate` checks
 * it like any config.
 */
export function migrateUpstreamConfig(yaml: YamlSource, source: string): MigrateResult {
  if (isUpstreamPolicy(yaml.raw)) {
    return {
      ok: false,
      problems: [
        { path: "", message: "this is a health policy, not a config: server.health_policy_path loads upstream's policy format as it is", value: undefined },
      ],
    };
  }
  const parsed = v.safeParse(UpstreamConfigSchema, yaml.raw);
  if (!parsed.success) {
    const keys = (issue: v.BaseIssue<unknown>) => (issue.path ?? []).map((item) => item.key as PathKey);
    return { ok: false, problems: sortProblems(parsed.issues.map((issue) => yaml.problemAt(formatIssuePath(issue.path), keys(issue), issue.message))) };
  }
  const migration = new Migration(yaml, parsed.output);
  const out = migration.run();
  if (migration.problems.length > 0) return { ok: false, problems: sortProblems(migration.problems) };
  const header = [
    `# Migrated from upstream Navarch's format (${source}) by \`navarch config migrate\`.`,
    "# Check it with `navarch config check FILE`.",
    ...(migration.notes.length > 0 ? ["# What changed, and what could not be carried over:", ...migration.notes.map((n) => `#   - ${n}`)] : []),
  ];
  const pools = Array.isArray(out.pools) ? out.pools.length : 0;
  // No anchors: each pool reads on its own, even where upstream's defaults gave several the same list.
  return { ok: true, yaml: `${header.join("\n")}\n${stringify(out, { lineWidth: 0, aliasDuplicateObjects: false })}`, notes: migration.notes, pools };
}
