// What this process counts as it goes, beside what the store says: heartbeats and health events
// accepted, the ingest worker's group commits and checkpoints, certificate reloads refused, and
// whether a listener serves plain HTTP off loopback. Each reconciler exposes its own.
import { Counter, Gauge, Histogram, type Registry } from "prom-client";

export interface ProcessMetrics {
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
}

/** `plainHttp`: whether a listener serves plain HTTP off loopback (config/exposure.ts). */
export function registerProcessMetrics(registry: Registry, plainHttp: boolean): ProcessMetrics {
  const heartbeats = new Counter({ name: "navarch_heartbeats_total", help: "Agent heartbeats accepted", registers: [registry] });
  new Gauge({
    name: "navarch_server_plain_http",
    help: "1 when the API or /metrics is served as plain HTTP off loopback (no server.tls): tokens cross the network in the clear",
    registers: [registry],
  }).set(plainHttp ? 1 : 0);
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
  return { heartbeats, healthEvents, ingestGroup, ingestCheckpoint, ingestCheckpointBeside, tlsReloadRefusals };
}
