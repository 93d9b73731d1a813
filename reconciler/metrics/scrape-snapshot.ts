// What one scrape reads from the store, all at once: nodes by pool and state, pools, GPU
// readings (per pool always, per GPU when server.metrics_per_gpu lets them), heartbeats,
// breakers, incidents, remediations, idle nodes, provider errors, registrations, bootstrap runs,
// machines that never served, the incident step histograms and goodput's lost GPU-hours. Every collector of one scrape
// shares one snapshot (prom-client collects metrics in parallel), so a number is never a stale
// in-memory copy and a restart (or a standby taking over) exposes the same values.
import type { MetricsPerGpu } from "../../schema/config.ts";
import { STATES } from "../../schema/lifecycle.ts";
import type { GoodputLedger, GoodputTotals } from "../goodput/ledger.ts";
import { neverServed, type NeverServed } from "../pools/never-served.ts";
import type { Db } from "../store/store.ts";
import type { HistoryCounters } from "./history-counters.ts";
import { incidentSpanRows } from "./incident-spans.ts";
import { poolLabel } from "./labels.ts";
import { num, sqlList, str, type Row, type RowQuery } from "./store-rows.ts";

/** `auto` exports per-GPU series while the fleet has at most this many GPUs with readings (5,000 nodes of 8). */
export const PER_GPU_AUTO_LIMIT = 40_000;

export interface Snapshot {
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
  /** Goodput's totals up to the scrape's time: GPU-hours lost, seconds out of service. */
  goodput: GoodputTotals;
}

/** Operation kinds that are provider API calls. */
const PROVIDER_OPERATIONS = ["launch", "terminate", "reap", "reboot"];
/** States whose agent's readings are shown (its machine is there): watched, held, lost. */
const AGENT_STATES = sqlList([...STATES.watched, "held", "lost"]);
/** States in which a node's agent is expected to heartbeat. */
const WATCHED_STATES = sqlList(STATES.watched);

/**
 * The snapshot of the scrape under way, or a new one: every collect() of one scrape shares one
 * computation. History counters advance first, so their collectors see the same rows.
 */
export function snapshotReader(
  db: Db,
  query: RowQuery,
  perGpuSetting: MetricsPerGpu,
  counters: HistoryCounters,
  goodput: { ledger: GoodputLedger; now: () => number },
): () => Promise<Snapshot> {
  async function compute(): Promise<Snapshot> {
    await counters.advance();
    await goodput.ledger.advance();
    const goodputTotals = goodput.ledger.totals(goodput.now());
    const histograms = await incidentSpanRows(query);
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
      goodput: goodputTotals,
    };
  }

  let inflight: Promise<Snapshot> | undefined;
  return (): Promise<Snapshot> => {
    inflight ??= compute().finally(() => {
      inflight = undefined;
    });
    return inflight;
  };
}

/** Every pool a scrape knows: configured (or a GpuPool resource), or holding a node. */
export const poolNames = (s: Snapshot) => new Set([...s.pools.map((p) => str(p.name)), ...s.byState.map((r) => str(r.pool)).filter((p) => p !== "")]);
