// The reconciler's Prometheus metrics (prom-client), on a registry of its own so
// that tests and several servers in one process never share counters.
//
// Almost everything is read from the store at scrape time, so a number is never a
// stale in-memory copy, and a restart (or a standby taking over) exposes the same
// values. Counters derived from append-only tables (health_events, audit_log) keep
// an id cursor and add only the rows since the last scrape; the incident histograms
// are computed from the incidents table as a whole (each completed step counted
// exactly once, however often it is scraped, across restarts). Only the loop's
// pass durations, the heartbeat/event counters and the dependencies' gauges (each
// reconciler's own view of what it can reach) live in this process.
//
// Cardinality: labels are pools (from the config), lifecycle states, rails, Xid
// codes of the catalog (anything else is "other"), operation kinds and providers,
// breaker scopes (fleet and one per pool). navarch_node_last_heartbeat_timestamp_seconds has
// one series per watched node, the per-GPU gauges (navarch_node_gpu_*{node,gpu}) one per
// live GPU: bounded by the fleet's size; nodes that are terminated or failed drop out. The
// per-GPU ones are what a scrape of a large fleet spends its time on (at 100,000 nodes, 1.6
// million series), so server.metrics_per_gpu leaves them out above PER_GPU_AUTO_LIMIT GPUs
// (or always); the pool aggregates (navarch_pool_gpu_*) are always there.
//
// Nothing non-finite is ever exported: values come from the store, and an old database
// (or a hand edit) may hold NaN, ±Infinity or a reading no GPU can have; such a sample
// is left out rather than rendered as NaN, +Inf or 1e+308.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import { sql } from "drizzle-orm";
import type { DependencyStatus } from "../../schema/admin.ts";
import type { MetricsPerGpu } from "../../schema/config.ts";
import { NODE_STATES, STATES, isIn, type NodeState } from "../../schema/lifecycle.ts";
import { READING_RANGES } from "../../schema/wire.ts";
import { withinRange } from "../../schema/reading-ranges.ts";
import { lookupXid } from "../../schema/xid-catalog.ts";
import { isCheckName } from "../../schema/checks.ts";

/**
 * The `check` label of an agent's event: a check of the catalog, else "other". Agents name
 * their checks; a counter labelled with whatever they send would grow a series per name.
 */
export function checkLabel(check: string): string {
  return isCheckName(check) ? check : "other";
}
import type { Db } from "../store/store.ts";
import { neverServed, type NeverServed } from "../pools/never-served.ts";

export interface PassObservation {
  durationMs: number;
  transitions: readonly { to: NodeState }[];
  blocked: readonly unknown[];
}

export interface Metrics {
  readonly registry: Registry;
  readonly contentType: string;
  readonly heartbeats: Counter;
  readonly healthEvents: Counter<"check" | "severity">;
  /** Heartbeats and event batches written per transaction (ingest/group-commit.ts). */
  readonly ingestGroup: Histogram;
  /** How long the ingest worker's checkpoints between groups took (ingest/writer.ts). */
  readonly ingestCheckpoint: Histogram;
  /** How long the copy part of those checkpoints took, beside the writes. */
  readonly ingestCheckpointBeside: Histogram;
  /** Certificate reloads refused (the files changed but will not do: expired, mismatched, half written). */
  readonly tlsReloadRefusals: Counter;
  /** Records one reconcile pass (each report once, however many callers awaited it). */
  observePass(report: PassObservation): void;
  render(): Promise<string>;
}

/** Incident step durations (seconds): from seconds (automatic cordon) to hours (drains, slow providers). */
export const INCIDENT_BUCKETS = [1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 43200];
export const PASS_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const RAILS = ["dry_run", "paused", "unhealthy_budget", "in_flight_pool", "in_flight_fleet", "cordon_rate", "breaker", "partition_freeze", "max_attempts"];
/** Operation kinds that are provider API calls. */
const PROVIDER_OPERATIONS = ["launch", "terminate", "reap", "reboot"];
/** Lifecycle states in which a node's agent is expected to heartbeat and report GPUs. */
/** States whose agent's readings are shown (its machine is there): watched, held, lost. */
const AGENT_STATES = sqlList([...STATES.watched, "held", "lost"]);
const WATCHED_STATES = sqlList(STATES.watched);

/**
 * A row's pool as a label value: the pool when it is one the store knows (configured, or a
 * GpuPool resource), else "". A monitored node's pool is what its agent said; as a label it
 * would be agent text, and a series per made-up name.
 */
const poolLabel = (column: string) => `(case when ${column} in (select name from pools) then ${column} else '' end)`;

function sqlList(states: readonly string[]): string {
  return `(${states.map((s) => `'${s}'`).join(", ")})`;
}

type Row = Record<string, unknown>;

/** `auto` exports per-GPU series while the fleet has at most this many GPUs with readings (5,000 nodes of 8). */
export const PER_GPU_AUTO_LIMIT = 40_000;

export interface MetricsOptions {
  /** server.metrics_per_gpu (default auto). */
  perGpu?: MetricsPerGpu;
  /** Whether a listener serves plain HTTP off loopback (config/exposure.ts): navarch_server_plain_http. */
  plainHttp?: boolean;
  /** The reconciler's dependencies as they are now (reconciler/dependencies/status.ts): navarch_dependency_*. */
  dependencies?: () => readonly DependencyStatus[];
}

interface Snapshot {
  byState: Row[];
  pools: Row[];
  /** Per pool: GPUs with readings, hottest, mean utilisation (physically possible readings only). */
  gpuPools: Row[];
  /** Per GPU; empty when per-GPU series are off. */
  gpus: Row[];
  perGpu: boolean;
  heartbeats: Row[];
  breakers: Row[];
  openIncidents: Row[];
  remediations: Row[];
  idle: Row[];
  providerErrors: Row[];
  registered: number;
  bootstrapRuns: Map<string, number>;
  neverServed: NeverServed[];
  histograms: Map<string, Row[]>;
}

/** The incident steps measured, as SQL over the incidents table. */
const INCIDENT_SPANS: { name: string; help: string; from: string; to: string }[] = [
  {
    name: "navarch_incident_fault_to_cordon_seconds",
    help: "Time from a node's first unhealthy finding to its cordon, per completed cordon (from the incidents table)",
    from: "fault_at",
    to: "cordoned_at",
  },
  {
    name: "navarch_incident_cordon_to_drained_seconds",
    help: "Time from cordon to drained (or the drain deadline), per completed drain",
    from: "cordoned_at",
    to: "drained_at",
  },
  {
    name: "navarch_incident_fault_to_replacement_ready_seconds",
    help: "Time from the first unhealthy finding to the replacement node being Ready, per completed replacement",
    from: "fault_at",
    to: "replacement_ready_at",
  },
  {
    name: "navarch_incident_reboot_seconds",
    help: "Time from a remediation's reboot to the node back with a new boot, per completed reboot",
    from: "rebooted_at",
    to: "back_at",
  },
];

export function createMetrics(db: Db, opts: MetricsOptions = {}): Metrics {
  const perGpuSetting = opts.perGpu ?? "auto";
  const registry = new Registry();
  // The process and runtime series under our prefix: navarch_process_cpu_user_seconds_total, navarch_nodejs_….
  collectDefaultMetrics({ register: registry, prefix: "navarch_" });
  /** Raw SQL with `?` placeholders, rows as objects. */
  const query = async (text: string, args: (string | number)[] = []): Promise<Row[]> => {
    const parts = text.split("?");
    let q = sql.raw(parts[0] ?? "");
    args.forEach((arg, i) => {
      q = sql`${q}${arg}${sql.raw(parts[i + 1] ?? "")}`;
    });
    return db.all<Row>(q);
  };
  const num = (x: unknown): number => (typeof x === "number" ? x : typeof x === "bigint" ? Number(x) : typeof x === "string" ? Number(x) : 0);
  const str = (x: unknown): string => (x === null || x === undefined ? "" : String(x));
  /** A GPU reading within its physical range (the wire's), else undefined. */
  const reading = (x: unknown, range: { min: number; max: number }): number | undefined =>
    x === null || x === undefined ? undefined : withinRange(num(x), range);

  const heartbeats = new Counter({ name: "navarch_heartbeats_total", help: "Agent heartbeats accepted", registers: [registry] });
  new Gauge({
    name: "navarch_server_plain_http",
    help: "1 when the API or /metrics is served as plain HTTP off loopback (no server.tls): tokens cross the network in the clear",
    registers: [registry],
  }).set(opts.plainHttp === true ? 1 : 0);
  const tlsReloadRefusals = new Counter({
    name: "navarch_tls_reload_refusals_total",
    help: "Changed certificate files not loaded (expired or not yet valid, a key that does not match, half written): the served certificate stays",
    registers: [registry],
  });
  const ingestGroup = new Histogram({
    name: "navarch_ingest_group_requests",
    help: "Heartbeats and event batches written in one transaction (group commit): about 1 when quiet, more under load",
    buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000],
    registers: [registry],
  });
  const ingestCheckpoint = new Histogram({
    name: "navarch_ingest_checkpoint_seconds",
    help: "WAL checkpoints while heartbeats arrive (at most every 250 ms): the part the next group waits for, what was written while the rest was copied beside the writes",
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
    registers: [registry],
  });
  const ingestCheckpointBeside = new Histogram({
    name: "navarch_ingest_checkpoint_beside_seconds",
    help: "WAL checkpoints while heartbeats arrive: the copy made by a thread of its own while groups go on being written",
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
    registers: [registry],
  });
  const healthEvents = new Counter({
    name: "navarch_health_events_total",
    help: "Health events stored (duplicates excluded), by check and severity",
    labelNames: ["check", "severity"] as const,
    registers: [registry],
  });

  // ── cursor counters over append-only tables (monotonic across restarts: they equal the table's totals) ──
  const xidCounts = new Map<string, number>();
  const railCounts = new Map<string, number>();
  const breakerTrips = new Map<string, number>();
  const registrationTimeouts = { n: 0 };
  const quarantinedValues = { n: 0 };
  const cursors = { events: 0, audit: 0 };

  async function advanceCursors(): Promise<void> {
    const [top] = await query("select coalesce((select max(id) from health_events), 0) as e, coalesce((select max(id) from audit_log), 0) as a");
    const eventsTop = num(top?.e);
    const auditTop = num(top?.a);
    if (eventsTop > cursors.events) {
      const rows = await query("select code, count(*) as n from health_events where id > ? and id <= ? and \"check\" = 'xid' group by code", [
        cursors.events,
        eventsTop,
      ]);
      for (const r of rows) {
        const label = xidLabel(str(r.code));
        xidCounts.set(label, (xidCounts.get(label) ?? 0) + num(r.n));
      }
      cursors.events = eventsTop;
    }
    if (auditTop > cursors.audit) {
      const rows = await query(
        `select action,
                case action when 'blocked' then json_extract(details, '$.rail') when 'breaker_tripped' then target else '' end as label,
                count(*) as n
         from audit_log
         where id > ? and id <= ?
           and (action in ('blocked', 'breaker_tripped', 'text_quarantined')
                or (action = 'transition' and json_extract(details, '$.to') = 'failed'
                    and json_extract(details, '$.reason') like 'agent did not register%'))
         group by 1, 2`,
        [cursors.audit, auditTop],
      );
      for (const r of rows) {
        const action = str(r.action);
        const label = str(r.label);
        if (action === "blocked") {
          const rail = RAILS.includes(label) ? label : "other";
          railCounts.set(rail, (railCounts.get(rail) ?? 0) + num(r.n));
        } else if (action === "breaker_tripped") breakerTrips.set(label, (breakerTrips.get(label) ?? 0) + num(r.n));
        else if (action === "text_quarantined") quarantinedValues.n += num(r.n);
        else registrationTimeouts.n += num(r.n);
      }
      cursors.audit = auditTop;
    }
  }

  async function compute(): Promise<Snapshot> {
    await advanceCursors();
    const histograms = new Map<string, Row[]>();
    const bucketSql = INCIDENT_BUCKETS.map((b, i) => `sum(case when d <= ${b} then 1 else 0 end) as b${i}`).join(", ");
    const spans = await Promise.all(
      INCIDENT_SPANS.map((s) =>
        query(
          `select pool, count(*) as n, coalesce(sum(d), 0) as s, ${bucketSql}
           from (select ${poolLabel("pool")} as pool, max(0, (${s.to} - ${s.from}) / 1000.0) as d from incidents where ${s.to} is not null and ${s.from} is not null)
           group by 1`,
        ),
      ),
    );
    INCIDENT_SPANS.forEach((s, i) => histograms.set(s.name, spans[i] ?? []));
    const [byState, poolRows, gpuPools, heartbeatRows, breakerRows, openIncidents, remediations, idle, providerErrors, registered, bootstrapRuns, wasted] =
      await Promise.all([
        query(
          `select ${poolLabel("pool")} as pool, state, count(*) as n,
                sum(case when origin = 'registered' then 1 else 0 end) as monitored,
                sum(case when state = 'ready' and verdict = 'healthy' and origin = 'launched' then 1 else 0 end) as healthy,
                sum(case when verdict = 'unhealthy' or state = 'lost' then 1 else 0 end) as unhealthy
         from nodes group by 1, 2`,
        ),
        query(
          "select name, paused, json_extract(spec, '$.scaling.min_nodes') as min, json_extract(spec, '$.scaling.max_nodes') as max, launch_failures, launch_error_kind, metrics_error, registration_failures, registration_hold from pools",
        ),
        query(
          // Each node's summary of its last heartbeat (nodes.gpu_*), not every GPU's JSON readings.
          `select ${poolLabel("pool")} as pool, coalesce(sum(gpu_readings), 0) as n, max(gpu_temperature_max_c) as temp_max,
                sum(gpu_utilization_sum) / nullif(sum(gpu_utilization_count), 0) as util_mean
         from nodes where state in ${AGENT_STATES} and gpu_readings > 0
         group by 1`,
        ),
        query(
          `select id as node, ${poolLabel("pool")} as pool, last_heartbeat_at as at from nodes where state in ${WATCHED_STATES} and last_heartbeat_at is not null`,
        ),
        query("select scope from breakers where reset_at is null"),
        query(`select ${poolLabel("pool")} as pool, count(*) as n from incidents where closed_at is null group by 1`),
        query(
          `select case when outcome = 'rebooted' then 'rebooted_recovered'
                     when rebooted_at is not null then 'rebooted_then_replaced'
                     else 'replaced' end as outcome, count(*) as n
         from incidents where outcome in ('rebooted', 'replaced') group by 1`,
        ),
        // Idle as the last autoscale tick recorded it, of the nodes still in service and staying.
        query(
          `select i.pool as pool, count(*) as n from node_idle i join nodes n on n.id = i.node_id
         where n.state in ${sqlList(STATES.inService)} and n.removal is null group by 1`,
        ),
        // Every attempt of a provider call that did not succeed. A launch key is launch:<node>:<provider>,
        // a reap key reap:<provider>:<id>; a terminate takes the node's provider.
        query(
          `select o.kind as kind,
                case o.kind
                  when 'launch' then substr(o.key, length('launch:' || coalesce(o.node_id, '') || ':') + 1)
                  when 'reap' then substr(substr(o.key, 6), 1, instr(substr(o.key, 6), ':') - 1)
                  else coalesce(n.provider, '') end as provider,
                sum(o.attempts - case when o.state in ('succeeded', 'running') then 1 else 0 end) as n
         from operations o left join nodes n on n.id = o.node_id
         where o.kind in (${PROVIDER_OPERATIONS.map((k) => `'${k}'`).join(", ")}) and o.attempts > 0
         group by 1, 2`,
        ),
        query("select count(*) as n from nodes where requested_at is not null and registered_at is not null"),
        // SSH bootstrap runs, where this reconciler records them (bootstrap_runs).
        query("select count(*) as n from sqlite_master where type = 'table' and name = 'bootstrap_runs'").then((t) =>
          num(t[0]?.n) > 0 ? query("select state, count(*) as n from bootstrap_runs where state in ('succeeded', 'failed') group by state") : [],
        ),
        neverServed(db),
      ]);
    const gpuTotal = gpuPools.reduce((t, r) => t + num(r.n), 0);
    const perGpu = perGpuSetting === "on" || (perGpuSetting === "auto" && gpuTotal <= PER_GPU_AUTO_LIMIT);
    const gpuRows = perGpu
      ? await query(
          `select n.id as node, ${poolLabel("n.pool")} as pool, r.value->>'index' as gpu,
                r.value->>'temperatureC' as temp, r.value->>'utilizationPct' as util
         from gpu_readings gr join nodes n on n.id = gr.node_id, json_each(gr.readings) r
         where n.state in ${AGENT_STATES}`,
        )
      : [];
    return {
      byState,
      pools: poolRows,
      gpuPools,
      gpus: gpuRows,
      perGpu,
      heartbeats: heartbeatRows,
      breakers: breakerRows,
      openIncidents,
      remediations,
      idle,
      providerErrors,
      registered: num(registered[0]?.n),
      bootstrapRuns: new Map(bootstrapRuns.map((r) => [str(r.state), num(r.n)])),
      neverServed: wasted,
      histograms,
    };
  }

  // Every collect() of one scrape shares one computation (prom-client collects metrics in parallel).
  let inflight: Promise<Snapshot> | undefined;
  const snapshot = (): Promise<Snapshot> => {
    inflight ??= compute().finally(() => {
      inflight = undefined;
    });
    return inflight;
  };

  const gauge = <L extends string>(name: string, help: string, labelNames: readonly L[], fill: (g: FiniteGauge<L>, s: Snapshot) => void) =>
    new Gauge<L>({
      name,
      help,
      labelNames,
      registers: [registry],
      async collect() {
        const s = await snapshot();
        this.reset();
        fill({ set: (labels, value) => (Number.isFinite(value) ? this.set(labels, value) : undefined) }, s);
      },
    });
  const counter = <L extends string>(
    name: string,
    help: string,
    labelNames: readonly L[],
    fill: (set: (labels: Partial<Record<L, string>>, value: number) => void, s: Snapshot) => void,
  ) =>
    new Counter<L>({
      name,
      help,
      labelNames,
      registers: [registry],
      async collect() {
        const s = await snapshot();
        this.reset();
        fill((labels, value) => {
          if (value > 0 && Number.isFinite(value)) this.inc(labels, value);
          else this.inc(labels, 0);
        }, s);
      },
    });

  // ── nodes ──
  const poolNames = (s: Snapshot) => new Set([...s.pools.map((p) => str(p.name)), ...s.byState.map((r) => str(r.pool)).filter((p) => p !== "")]);
  const inPool = (state: string) => (NODE_STATES as readonly string[]).includes(state) && isIn("inPool", state as NodeState);
  const perPool = (s: Snapshot, pick: (r: Row) => number) => {
    const totals = new Map<string, number>();
    for (const p of poolNames(s)) totals.set(p, 0);
    for (const r of s.byState) if (inPool(str(r.state)) && str(r.pool) !== "") totals.set(str(r.pool), (totals.get(str(r.pool)) ?? 0) + pick(r));
    return totals;
  };
  gauge(
    "navarch_nodes_total",
    "Nodes Navarch launched that make up each pool (live: requested through held, not terminating, terminated or failed); monitored nodes are navarch_nodes_monitored",
    ["pool"],
    (g, s) => {
      for (const [pool, n] of perPool(s, (r) => num(r.n) - num(r.monitored))) g.set({ pool }, n);
    },
  );
  gauge(
    "navarch_nodes_monitored",
    "Live nodes of each pool that registered on their own (a DaemonSet's): watched, never counted in its size",
    ["pool"],
    (g, s) => {
      for (const [pool, n] of perPool(s, (r) => num(r.monitored))) g.set({ pool }, n);
    },
  );
  gauge("navarch_nodes_healthy", "Nodes Navarch launched of each pool that are Ready and judged healthy (of navarch_nodes_total)", ["pool"], (g, s) => {
    for (const [pool, n] of perPool(s, (r) => num(r.healthy))) g.set({ pool }, n);
  });
  gauge("navarch_nodes_unhealthy", "Nodes of each pool judged unhealthy (whatever their state) or Lost, monitored ones included", ["pool"], (g, s) => {
    for (const [pool, n] of perPool(s, (r) => num(r.unhealthy))) g.set({ pool }, n);
  });
  gauge("navarch_nodes_by_state", "Nodes by pool and lifecycle state (terminated and failed included)", ["pool", "state"], (g, s) => {
    for (const r of s.byState) g.set({ pool: str(r.pool), state: str(r.state) }, num(r.n));
  });
  gauge("navarch_node_gpu_temperature_celsius", "Latest GPU temperature per node and GPU index (live nodes)", ["pool", "node", "gpu"], (g, s) => {
    for (const r of s.gpus) {
      const temp = reading(r.temp, READING_RANGES.temperatureC);
      if (temp !== undefined) g.set({ pool: str(r.pool), node: str(r.node), gpu: str(r.gpu) }, temp);
    }
  });
  gauge("navarch_node_gpu_utilization_percent", "Latest GPU utilisation per node and GPU index (live nodes)", ["pool", "node", "gpu"], (g, s) => {
    for (const r of s.gpus) {
      const util = reading(r.util, READING_RANGES.utilizationPct);
      if (util !== undefined) g.set({ pool: str(r.pool), node: str(r.node), gpu: str(r.gpu) }, util);
    }
  });
  gauge("navarch_pool_gpus", "GPUs with readings of each pool's live nodes (always exported, whatever server.metrics_per_gpu)", ["pool"], (g, s) => {
    for (const r of s.gpuPools) g.set({ pool: str(r.pool) }, num(r.n));
  });
  gauge("navarch_pool_gpu_temperature_max_celsius", "Hottest GPU of each pool's live nodes", ["pool"], (g, s) => {
    for (const r of s.gpuPools) if (r.temp_max !== null) g.set({ pool: str(r.pool) }, num(r.temp_max));
  });
  gauge("navarch_pool_gpu_utilization_mean_percent", "Mean GPU utilisation over each pool's live nodes", ["pool"], (g, s) => {
    for (const r of s.gpuPools) if (r.util_mean !== null) g.set({ pool: str(r.pool) }, num(r.util_mean));
  });
  gauge(
    "navarch_metrics_per_gpu_series",
    "1 when this scrape has the per-GPU series (navarch_node_gpu_*), 0 when server.metrics_per_gpu left them out",
    [],
    (g, s) => g.set({}, s.perGpu ? 1 : 0),
  );
  gauge(
    "navarch_node_last_heartbeat_timestamp_seconds",
    "When each watched node's agent last heartbeated (validating through draining)",
    ["pool", "node"],
    (g, s) => {
      for (const r of s.heartbeats) g.set({ pool: str(r.pool), node: str(r.node) }, num(r.at) / 1000);
    },
  );

  // ── pools, rails, incidents ──
  gauge("navarch_pool_min_nodes", "The pool's scaling.min_nodes", ["pool"], (g, s) => {
    for (const p of s.pools) if (p.min !== null && p.min !== undefined) g.set({ pool: str(p.name) }, num(p.min));
  });
  gauge("navarch_pool_max_nodes", "The pool's scaling.max_nodes", ["pool"], (g, s) => {
    for (const p of s.pools) if (p.max !== null && p.max !== undefined) g.set({ pool: str(p.name) }, num(p.max));
  });
  gauge("navarch_pool_paused", "1 while the pool is paused by an operator", ["pool"], (g, s) => {
    for (const p of s.pools) g.set({ pool: str(p.name) }, num(p.paused) ? 1 : 0);
  });
  gauge(
    "navarch_pool_launch_failures",
    "Launches of the pool that failed in a row (0 once one succeeds); the pool backs off while it grows",
    ["pool", "kind"],
    (g, s) => {
      for (const p of s.pools) {
        g.set({ pool: str(p.name), kind: "permanent" }, str(p.launch_error_kind) === "permanent" ? num(p.launch_failures) : 0);
        g.set({ pool: str(p.name), kind: "transient" }, str(p.launch_error_kind) === "transient" ? num(p.launch_failures) : 0);
      }
    },
  );
  gauge(
    "navarch_pool_registration_failures",
    "Machines of the pool in a row whose agent did not register (deadline passed, bootstrap failed); 0 once one registers",
    ["pool"],
    (g, s) => {
      for (const p of s.pools) g.set({ pool: str(p.name) }, num(p.registration_failures));
    },
  );
  gauge(
    "navarch_pool_registration_held",
    "1 while the pool launches nothing because its last machines did not register (health.max_registration_failures); `navarch pools resume` lifts it",
    ["pool"],
    (g, s) => {
      for (const p of s.pools) g.set({ pool: str(p.name) }, p.registration_hold === null || p.registration_hold === undefined ? 0 : 1);
    },
  );
  counter(
    "navarch_machines_never_served_total",
    "Machines Navarch launched and terminated without their ever entering service, by pool and provider",
    ["pool", "provider"],
    (set, s) => {
      for (const r of s.neverServed) set({ pool: r.pool, provider: r.provider }, r.machines);
    },
  );
  counter(
    "navarch_machines_never_served_gpu_hours_total",
    "GPU-hours of those machines, from their launch to their terminate call",
    ["pool", "provider"],
    (set, s) => {
      for (const r of s.neverServed) set({ pool: r.pool, provider: r.provider }, r.gpuHours);
    },
  );
  gauge(
    "navarch_pool_idle_nodes",
    "In-service nodes of the pool with no work on their GPUs (none busy, no compute process), as the last autoscale tick saw them; pools with an autoscaler",
    ["pool"],
    (g, s) => {
      for (const p of s.pools) g.set({ pool: str(p.name) }, num(s.idle.find((r) => str(r.pool) === str(p.name))?.n));
    },
  );
  gauge(
    "navarch_pool_metrics_source_failing",
    "1 while the pool's last autoscale tick could not read an input its metrics source should give (Prometheus down, a query failing): its autoscaler holds what it cannot see",
    ["pool"],
    (g, s) => {
      for (const p of s.pools) g.set({ pool: str(p.name) }, p.metrics_error === null || p.metrics_error === undefined ? 0 : 1);
    },
  );
  gauge("navarch_breaker_tripped", "1 while the circuit breaker of the scope (fleet, pool:<name>) is tripped", ["scope"], (g, s) => {
    g.set({ scope: "fleet" }, 0);
    for (const p of s.pools) g.set({ scope: `pool:${str(p.name)}` }, 0);
    for (const b of s.breakers) g.set({ scope: str(b.scope) }, 1);
  });
  gauge("navarch_incidents_open", "Open incidents (unhealthy episodes being handled) per pool", ["pool"], (g, s) => {
    for (const p of poolNames(s)) g.set({ pool: p }, 0);
    for (const r of s.openIncidents) g.set({ pool: str(r.pool) }, num(r.n));
  });
  counter(
    "navarch_remediations_total",
    "Health remediations that ended, by outcome: rebooted and back in service, rebooted and then replaced, or replaced",
    ["outcome"],
    (set, s) => {
      for (const outcome of ["rebooted_recovered", "rebooted_then_replaced", "replaced"])
        set({ outcome }, num(s.remediations.find((r) => str(r.outcome) === outcome)?.n));
    },
  );
  counter("navarch_xid_errors_total", 'GPU Xid events reported by agents, by Xid code (codes outside the catalog are "other")', ["code"], (set) => {
    for (const [code, n] of xidCounts) set({ code }, n);
  });
  counter(
    "navarch_rail_blocks_total",
    "Actions a safety rail refused, by rail (each distinct refusal of a node once, as the audit log records it)",
    ["rail"],
    (set) => {
      for (const rail of RAILS) set({ rail }, railCounts.get(rail) ?? 0);
      const other = railCounts.get("other");
      if (other !== undefined) set({ rail: "other" }, other);
    },
  );
  counter(
    "navarch_store_quarantined_values_total",
    "Stored values that were not UTF-8 (unreadable) and were repaired when the store opened; each one's bytes are in the audit log (text_quarantined)",
    [],
    (set) => set({}, quarantinedValues.n),
  );
  counter("navarch_breaker_trips_total", "Circuit breaker trips, by scope", ["scope"], (set) => {
    for (const [scope, n] of breakerTrips) set({ scope }, n);
  });
  counter(
    "navarch_provider_errors_total",
    "Provider API calls that failed (every failed attempt), by provider and operation",
    ["provider", "operation"],
    (set, s) => {
      for (const r of s.providerErrors) if (num(r.n) > 0) set({ provider: str(r.provider), operation: str(r.kind) }, num(r.n));
    },
  );
  counter(
    "navarch_bootstrap_outcomes_total",
    "Bringing up machines: SSH bootstrap runs that succeeded or failed, and launched machines whose agent registered or did not within health.registration_timeout",
    ["outcome"],
    (set, s) => {
      set({ outcome: "succeeded" }, s.bootstrapRuns.get("succeeded") ?? 0);
      set({ outcome: "failed" }, s.bootstrapRuns.get("failed") ?? 0);
      set({ outcome: "registered" }, s.registered);
      set({ outcome: "registration_timeout" }, registrationTimeouts.n);
    },
  );
  for (const span of INCIDENT_SPANS) {
    registry.registerMetric(new RowHistogram(span.name, span.help, INCIDENT_BUCKETS, async () => (await snapshot()).histograms.get(span.name) ?? []));
  }

  // ── the reconcile loop (in process) ──
  const passDuration = new Histogram({
    name: "navarch_reconcile_pass_duration_seconds",
    help: "Duration of one reconcile pass",
    buckets: PASS_BUCKETS,
    registers: [registry],
  });
  // Dependencies live in this process (each reconciler's own view of what it can reach).
  const dependencies = opts.dependencies;
  new Gauge({
    name: "navarch_dependency_up",
    help: "1 while a dependency answers (the database, the scheduler's API, Prometheus, each provider's API), 0 while it is down or not reached yet",
    labelNames: ["dependency"],
    registers: [registry],
    collect() {
      this.reset();
      for (const d of dependencies?.() ?? []) this.set({ dependency: d.name }, d.state === "up" ? 1 : 0);
    },
  });
  new Gauge({
    name: "navarch_dependency_queued_actions",
    help: "Actions only this dependency can carry out, waiting for it (a cordon for the scheduler, a launch for a provider)",
    labelNames: ["dependency"],
    registers: [registry],
    collect() {
      this.reset();
      for (const d of dependencies?.() ?? []) this.set({ dependency: d.name }, d.queuedCount);
    },
  });
  const lastPass = new Gauge({
    name: "navarch_reconcile_last_pass_timestamp_seconds",
    help: "When the last reconcile pass finished (wall clock)",
    registers: [registry],
  });
  const transitions = new Counter({
    name: "navarch_node_transitions_total",
    help: "Lifecycle transitions made by the reconciler, by the state entered",
    labelNames: ["to"] as const,
    registers: [registry],
  });
  for (const state of NODE_STATES) transitions.inc({ to: state }, 0);
  const seen = new WeakSet<object>();

  return {
    registry,
    contentType: registry.contentType,
    heartbeats,
    tlsReloadRefusals,
    healthEvents,
    ingestGroup,
    ingestCheckpoint,
    ingestCheckpointBeside,
    observePass(report) {
      if (seen.has(report)) return;
      seen.add(report);
      passDuration.observe(report.durationMs / 1000);
      lastPass.set(Date.now() / 1000);
      for (const t of report.transitions) transitions.inc({ to: t.to });
    },
    render: () => registry.metrics(),
  };
}

/** Wraps a reconcile loop's pass() so that every pass it runs is observed (serve.ts). */
export function observeLoop(loop: { pass(): Promise<PassObservation> }, metrics: Metrics): void {
  const pass = loop.pass.bind(loop);
  loop.pass = async () => {
    const report = await pass();
    metrics.observePass(report);
    return report;
  };
}

function xidLabel(code: string): string {
  if (!/^\d{1,4}$/.test(code)) return "other";
  return lookupXid(Number(code)).known ? String(Number(code)) : "other";
}

/** A gauge's set(), dropping non-finite values. */
interface FiniteGauge<L extends string> {
  set(labels: Partial<Record<L, string>>, value: number): void;
}

/** One exported sample, as prom-client's text exposition reads it. */
interface Sample {
  metricName: string;
  labels: Record<string, string>;
  sharedLabels: Record<string, string>;
  value: number;
}

/**
 * A histogram whose buckets are computed from rows (count, sum and cumulative bucket
 * counts per pool) rather than observed in process: restarts and repeated scrapes
 * give the same numbers. prom-client's registry reads getForPromString() for the
 * text format (and get() builds on it), so that is the one method replaced.
 */
class RowHistogram extends Histogram<"pool"> {
  constructor(
    private readonly metricName: string,
    private readonly helpText: string,
    private readonly bounds: number[],
    private readonly rows: () => Promise<Row[]>,
  ) {
    // Registered by the caller on its own registry (never the global one).
    super({ name: metricName, help: helpText, labelNames: ["pool"], buckets: bounds, registers: [] });
  }

  async getForPromString(): Promise<{ name: string; help: string; type: "histogram"; values: Sample[]; aggregator: "sum" }> {
    const values: Sample[] = [];
    const n = (x: unknown) => {
      const value = typeof x === "number" ? x : Number(x ?? 0);
      return Number.isFinite(value) ? value : 0;
    };
    const sample = (suffix: string, labels: Record<string, string>, value: number) =>
      values.push({ metricName: `${this.metricName}${suffix}`, labels, sharedLabels: {}, value });
    for (const r of await this.rows()) {
      const pool = String(r.pool ?? "");
      this.bounds.forEach((le, i) => sample("_bucket", { pool, le: String(le) }, n(r[`b${i}`])));
      sample("_bucket", { pool, le: "+Inf" }, n(r.n));
      sample("_sum", { pool }, n(r.s));
      sample("_count", { pool }, n(r.n));
    }
    return { name: this.metricName, help: this.helpText, type: "histogram", values, aggregator: "sum" };
  }
}
