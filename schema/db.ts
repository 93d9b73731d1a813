// The reconciler's tables (drizzle, SQLite dialect: libSQL embedded file or sqld).
// Migrations are generated from this file by `bun run db:generate` into
// reconciler/store/migrations/ and embedded in the binary.
//
// Times are integer milliseconds since the epoch (UTC) so that comparisons and
// deadlines (`next_action_at`) are plain integer arithmetic in SQL.
import { index, integer, primaryKey, real, sqliteTable, text, uniqueIndex } from "drizzle-orm/sqlite-core";
import { NODE_STATES } from "./lifecycle.ts";
import { REQUEST_KINDS, REQUEST_STATES } from "./wire.ts";

export const pools = sqliteTable("pools", {
  name: text("name").primaryKey(),
  /** Where the pool is defined: the config file or a Kubernetes custom resource. */
  source: text("source", { enum: ["config", "crd"] }).notNull(),
  /** The normalised pool spec as JSON, exactly as validated. */
  spec: text("spec", { mode: "json" }).notNull(),
  paused: integer("paused", { mode: "boolean" }).notNull().default(false),
  pausedReason: text("paused_reason"),
  /** Last scaling action (cooldown_period counts from it); replacements are not scaling. */
  lastScaleAt: integer("last_scale_at"),
  lastScaleDirection: text("last_scale_direction", { enum: ["up", "down"] }),
  /** Launches that failed in a row (a success resets it); the pool backs off while it grows. */
  launchFailures: integer("launch_failures").notNull().default(0),
  /** No launch in this pool before this time (ms). */
  launchRetryAt: integer("launch_retry_at"),
  /** The last launch failure, as the provider said it, and whether retrying can help. */
  launchError: text("launch_error"),
  launchErrorKind: text("launch_error_kind", { enum: ["permanent", "transient"] }),
  /** When the current run of failures began. */
  launchFailingSince: integer("launch_failing_since"),
  /** Why the last autoscale tick lacked an input its metrics source should have given (null: it had them all). */
  metricsError: text("metrics_error"),
  /**
   * Machines of the pool that did not register (deadline passed, bootstrap failed) since the
   * last one that did; past health.max_registration_failures the pool is held (nodes/registration-deadlines.ts).
   */
  registrationFailures: integer("registration_failures").notNull().default(0),
  /** When the last of those failed (a registration after it resets the count). */
  registrationFailedAt: integer("registration_failed_at"),
  /** While held: why no machine is launched (the pattern, and what to change); null when launching. */
  registrationHold: text("registration_hold"),
  registrationHeldAt: integer("registration_held_at"),
  /** The size an operator asked for (`navarch pools scale`), held within the bounds while the pool has no autoscaler. */
  requestedNodes: integer("requested_nodes"),
  /** Who asked for it, for reasons and the audit log. */
  requestedBy: text("requested_by"),
  createdAt: integer("created_at").notNull(),
  updatedAt: integer("updated_at").notNull(),
});

/** What a provider has (or we asked it for); reconciled against `nodes`. */
export const instances = sqliteTable(
  "instances",
  {
    /** Our deterministic name for it, derived from the operation that created it. */
    name: text("name").primaryKey(),
    provider: text("provider").notNull(),
    /** The provider's own id once known. */
    providerId: text("provider_id"),
    pool: text("pool").notNull(),
    instanceType: text("instance_type").notNull(),
    region: text("region"),
    state: text("state", { enum: ["pending", "running", "stopping", "terminated", "unknown"] }).notNull(),
    address: text("address"),
    operationKey: text("operation_key"),
    /** When a sweep first found it running with no live node to own it, and how many sweeps in a row did (reaped after two and a heartbeat timeout). */
    orphanSince: integer("orphan_since"),
    orphanSweeps: integer("orphan_sweeps").notNull().default(0),
    createdAt: integer("created_at").notNull(),
    updatedAt: integer("updated_at").notNull(),
  },
  (t) => [index("instances_pool").on(t.pool), uniqueIndex("instances_provider_id").on(t.provider, t.providerId)],
);

/**
 * One row per machine we run or know of, from the moment it is requested (id = the
 * instance name the provider gets, which is also the agent's --node-id) or, for a
 * machine we did not create, from its agent's first registration.
 */
export const nodes = sqliteTable(
  "nodes",
  {
    id: text("id").primaryKey(),
    /**
     * `launched`: Navarch asked a provider for it; pool, provider and instance type are
     * Navarch's record, counted in the pool's size. `registered`: its agent registered
     * without a launch (a DaemonSet, a machine someone else runs): monitored (health,
     * cordon, drain), never counted, never scaled down, replaced only if a provider can.
     */
    origin: text("origin", { enum: ["launched", "registered"] })
      .notNull()
      .default("launched"),
    pool: text("pool"),
    provider: text("provider"),
    instanceType: text("instance_type"),
    /** The instance (what the provider has) behind this node, once launched. */
    instanceName: text("instance_name"),
    state: text("state", { enum: NODE_STATES }).notNull(),
    /** Bumped on every write; transitions are `UPDATE … WHERE version = ?`. */
    version: integer("version").notNull().default(0),
    stateReason: text("state_reason"),
    stateChangedAt: integer("state_changed_at").notNull(),
    /** When the reconciler must look at this node again (deadlines live here, not in timers). */
    nextActionAt: integer("next_action_at"),
    requestedAt: integer("requested_at"),
    /** The node this one replaces, for replacements. */
    replacementOf: text("replacement_of"),
    /**
     * When the provider accepted its launch, or when a sweep adopted its instance (no node row
     * knew it: a lost database): the registration deadline counts from here.
     */
    launchedAt: integer("launched_at"),
    /** Set when an inventory sweep adopted the instance (its launch time is not Navarch's to know). */
    adoptedAt: integer("adopted_at"),
    /** When it first entered service (ready or suspect); null for a machine that never served. */
    servedAt: integer("served_at"),
    /** GPUs the machine has: its instance type's, as the provider lists it, or what its agent registered. */
    gpuCount: integer("gpu_count"),
    // What the agent reported (null until it registers).
    hostname: text("hostname"),
    bootId: text("boot_id"),
    agentVersion: text("agent_version"),
    driverVersion: text("driver_version"),
    cudaVersion: text("cuda_version"),
    nvmlAvailable: integer("nvml_available", { mode: "boolean" }).notNull().default(false),
    nvmlError: text("nvml_error"),
    /** The agent's own verdict from its last heartbeat (null until its first full check). */
    agentHealth: text("agent_health", { enum: ["healthy", "degraded", "unhealthy"] }),
    registeredAt: integer("registered_at"),
    lastHeartbeatAt: integer("last_heartbeat_at"),
    /**
     * The last heartbeat's GPU readings summed up (GPUs reported, hottest, utilisation sum and
     * count, physically possible readings only): /metrics' pool aggregates read these, not
     * every GPU's JSON (800,000 of them at 100,000 nodes).
     */
    gpuReadings: integer("gpu_readings"),
    gpuTemperatureMaxC: real("gpu_temperature_max_c"),
    gpuUtilizationSum: real("gpu_utilization_sum"),
    gpuUtilizationCount: integer("gpu_utilization_count"),
    /** Highest health-event seq stored for this node, and the agent spool it came from. */
    lastEventSeq: integer("last_event_seq").notNull().default(0),
    spoolId: text("spool_id"),
    // The reconciler's health judgement.
    /** Open findings (policy results per incident key), as JSON. */
    findings: text("findings", { mode: "json" }).notNull().default([]),
    /** Consecutive failed health evaluations (health.unhealthy_threshold). */
    consecutiveFailures: integer("consecutive_failures").notNull().default(0),
    /** Highest health_events.id already evaluated for this node. */
    evaluatedEventId: integer("evaluated_event_id").notNull().default(0),
    verdict: text("verdict", { enum: ["healthy", "degraded", "unhealthy"] }),
    /** The open incident, while there is one. */
    incidentId: integer("incident_id"),
    /** Who cordoned it (`navarch` or a human), so we only undo our own cordons. */
    cordonedBy: text("cordoned_by"),
    /** Replacement attempts for this node's slot (then Held); also launch attempts while requested. */
    attempts: integer("attempts").notNull().default(0),
    /** Why the node is on its way out once drained: replaced (health) or removed (scale down). */
    removal: text("removal", { enum: ["replace", "scale_down"] }),
    updatedAt: integer("updated_at").notNull(),
    /** The Kubernetes Node this node maps to (kubernetes.node_mapping), once the mirror has found it. */
    k8sNodeName: text("k8s_node_name"),
  },
  // The pool's counts each pass (lifecycle/scale.ts) read only this index: at 50,000 nodes the
  // table lookups for origin and removal were 40 ms of a pass.
  (t) => [index("nodes_pool_state").on(t.pool, t.state, t.origin, t.removal), index("nodes_next_action").on(t.nextActionAt)],
);

/** One per unhealthy episode of a node, with the clock of each step (for the timing metrics). */
export const incidents = sqliteTable(
  "incidents",
  {
    id: integer("id").primaryKey({ autoIncrement: true }),
    nodeId: text("node_id").notNull(),
    pool: text("pool"),
    reason: text("reason").notNull(),
    /**
     * What the episode is counted under in goodput's lost GPU-hours (schema/fault-causes.ts): the
     * deciding finding's class (`memory`, `pcie`, `infiniband`, …), or `maintenance`, `no_heartbeat`,
     * `agent_unhealthy`. Null on incidents recorded before it was (counted as `other`).
     */
    cause: text("cause"),
    /** When the first unhealthy finding of this episode happened on the node. */
    faultAt: integer("fault_at").notNull(),
    openedAt: integer("opened_at").notNull(),
    cordonedAt: integer("cordoned_at"),
    drainedAt: integer("drained_at"),
    terminatedAt: integer("terminated_at"),
    replacementNodeId: text("replacement_node_id"),
    replacementReadyAt: integer("replacement_ready_at"),
    /**
     * The first rung of the remediation: `reboot` (the fault's recommended action is a GPU reset
     * or a reboot, and the pool reboots first) or `replace`. A reboot that does not help turns it
     * into `replace`.
     */
    remedy: text("remedy", { enum: ["reboot", "replace"] }),
    /** When the reboot was asked of the provider, the boot it left, and when the node came back with a new one. */
    rebootedAt: integer("rebooted_at"),
    rebootFromBoot: text("reboot_from_boot"),
    backAt: integer("back_at"),
    /** What the reconciler is doing or refused to do, and why (e.g. the rail that blocks it). */
    status: text("status").notNull(),
    closedAt: integer("closed_at"),
    outcome: text("outcome", { enum: ["replaced", "recovered", "rebooted", "cancelled", "held", "terminated"] }),
  },
  (t) => [index("incidents_node").on(t.nodeId), index("incidents_open").on(t.closedAt)],
);

/**
 * What each autoscale tick saw of a pool, for autoscalers that read a trend (predictive).
 * Bounded per pool: samples older than the longest lookback_window in its autoscaler are
 * deleted, and they are spaced so that a window holds at most MAX_HISTORY_SAMPLES.
 */
export const poolSamples = sqliteTable(
  "pool_samples",
  {
    pool: text("pool").notNull(),
    at: integer("at").notNull(),
    /** In-service nodes (utilisation is averaged over them). */
    ready: integer("ready").notNull(),
    /** Average GPU utilisation, 0–100; null when unknown. */
    utilization: real("utilization"),
    /** Pending + running jobs; null when unknown. */
    queueDepth: integer("queue_depth"),
  },
  (t) => [primaryKey({ columns: [t.pool, t.at] })],
);

/**
 * Since when each in-service node of an autoscaled pool has had no work: no GPU busy and no
 * compute process on any GPU, as the autoscale ticks saw its readings. No row: busy, or not
 * in service. The idle autoscaler counts these; scale-down takes the longest idle first.
 */
export const nodeIdle = sqliteTable(
  "node_idle",
  {
    nodeId: text("node_id").primaryKey(),
    pool: text("pool").notNull(),
    idleSince: integer("idle_since").notNull(),
  },
  (t) => [index("node_idle_pool").on(t.pool)],
);

/**
 * How long launched machines took from launch to their agent's registration, per pool, provider
 * and instance type: the recent ones teach the pool its registration deadline
 * (nodes/registration-deadlines.ts). Bounded: only the latest REGISTRATION_SAMPLES per key are kept.
 */
export const registrations = sqliteTable(
  "registrations",
  {
    id: integer("id").primaryKey({ autoIncrement: true }),
    pool: text("pool").notNull(),
    provider: text("provider").notNull(),
    instanceType: text("instance_type").notNull(),
    nodeId: text("node_id").notNull(),
    launchedAt: integer("launched_at").notNull(),
    registeredAt: integer("registered_at").notNull(),
    /** The machine had been given up when its agent registered (adopted back into its pool). */
    late: integer("late", { mode: "boolean" }).notNull().default(false),
  },
  (t) => [index("registrations_key").on(t.pool, t.provider, t.instanceType, t.registeredAt), index("registrations_pool").on(t.pool, t.registeredAt)],
);

/** Circuit breakers per pool and fleet-wide (scope "fleet" or "pool:<name>"). */
export const breakers = sqliteTable("breakers", {
  scope: text("scope").primaryKey(),
  trippedAt: integer("tripped_at").notNull(),
  reason: text("reason").notNull(),
  /** Set by a human reset; a tripped breaker stays tripped until then. */
  resetAt: integer("reset_at"),
  resetBy: text("reset_by"),
});

export const gpus = sqliteTable(
  "gpus",
  {
    nodeId: text("node_id")
      .notNull()
      .references(() => nodes.id, { onDelete: "cascade" }),
    index: integer("gpu_index").notNull(),
    uuid: text("uuid").notNull(),
    pciBusId: text("pci_bus_id").notNull(),
    name: text("name").notNull(),
    memoryTotalBytes: integer("memory_total_bytes"),
    updatedAt: integer("updated_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.nodeId, t.index] })],
);

/**
 * The latest heartbeat's GPU readings of each node: one row per node, the readings (GpuSnapshot,
 * each with its index) as one JSON array. One row, not one per GPU: a heartbeat writes it, and
 * at 10,000 heartbeats a second eight row updates each cost twice the CPU of one.
 */
export const gpuReadings = sqliteTable("gpu_readings", {
  nodeId: text("node_id")
    .primaryKey()
    .references(() => nodes.id, { onDelete: "cascade" }),
  readings: text("readings", { mode: "json" }).notNull(),
  updatedAt: integer("updated_at").notNull(),
});

/**
 * Which nodes changed what a pass reads of every node (lifecycle/live-nodes.ts), in commit order.
 * Written only by triggers (migration 0010): every writer (the loop, the API, the ingest
 * worker's connection, the simulator) is caught, and a heartbeat that changes nothing but its
 * time writes nothing here. The leader prunes what it has read.
 */
export const nodeChanges = sqliteTable("node_changes", {
  seq: integer("seq").primaryKey({ autoIncrement: true }),
  nodeId: text("node_id").notNull(),
});

/** Append-only log of every health finding an agent reported. */
export const healthEvents = sqliteTable(
  "health_events",
  {
    id: integer("id").primaryKey({ autoIncrement: true }),
    nodeId: text("node_id").notNull(),
    seq: integer("seq").notNull(),
    bootId: text("boot_id").notNull(),
    time: integer("time").notNull(),
    receivedAt: integer("received_at").notNull(),
    check: text("check").notNull(),
    code: text("code"),
    severity: text("severity", { enum: ["healthy", "degraded", "unhealthy"] }).notNull(),
    action: text("action").notNull(),
    gpuIndex: integer("gpu_index"),
    gpuUuid: text("gpu_uuid"),
    gpuPciBusId: text("gpu_pci_bus_id"),
    message: text("message").notNull(),
    count: integer("count").notNull().default(1),
  },
  (t) => [uniqueIndex("health_events_node_seq").on(t.nodeId, t.seq), index("health_events_time").on(t.time)],
);

/** Every side effect, written before it is attempted, keyed for idempotency. */
export const operations = sqliteTable(
  "operations",
  {
    key: text("key").primaryKey(),
    kind: text("kind").notNull(),
    nodeId: text("node_id"),
    pool: text("pool"),
    state: text("state", { enum: ["pending", "running", "succeeded", "failed", "cancelled"] }).notNull(),
    attempts: integer("attempts").notNull().default(0),
    payload: text("payload", { mode: "json" }),
    result: text("result", { mode: "json" }),
    error: text("error"),
    createdAt: integer("created_at").notNull(),
    updatedAt: integer("updated_at").notNull(),
  },
  (t) => [index("operations_state").on(t.state)],
);

/** Who did what, when: humans through the API and the reconciler itself. */
export const auditLog = sqliteTable(
  "audit_log",
  {
    id: integer("id").primaryKey({ autoIncrement: true }),
    at: integer("at").notNull(),
    actor: text("actor").notNull(),
    action: text("action").notNull(),
    target: text("target").notNull(),
    details: text("details", { mode: "json" }),
  },
  (t) => [index("audit_log_at").on(t.at)],
);

/**
 * What the reconciler asked of a node's agent (schema/wire.ts, AgentRequest): delivered in
 * heartbeat answers until the agent answers, then its answer. One not answered with a final
 * state by `deadline_at` is `expired`.
 */
export const agentRequests = sqliteTable(
  "agent_requests",
  {
    /** `req_` and 24 random lowercase hex digits. */
    id: text("id").primaryKey(),
    nodeId: text("node_id").notNull(),
    kind: text("kind", { enum: REQUEST_KINDS }).notNull(),
    /** The kind's arguments as validated (RunCheckArgs for run_check). */
    args: text("args", { mode: "json" }).notNull(),
    state: text("state", { enum: REQUEST_STATES }).notNull(),
    /** Who asked, as the caller said (NAVARCH_ACTOR), and the token it asked with. */
    requestedBy: text("requested_by").notNull(),
    token: text("token").notNull(),
    reason: text("reason").notNull(),
    createdAt: integer("created_at").notNull(),
    deadlineAt: integer("deadline_at").notNull(),
    /** First sent in a heartbeat answer; the agent said it started; it ended (or expired). */
    deliveredAt: integer("delivered_at"),
    startedAt: integer("started_at"),
    finishedAt: integer("finished_at"),
    exitCode: integer("exit_code"),
    signal: text("signal"),
    /** The last 64 KiB of what it printed, how many bytes it printed in all, and whether output is only their end. */
    output: text("output"),
    outputBytes: integer("output_bytes"),
    outputCut: integer("output_cut", { mode: "boolean" }),
    /** How long it ran, by the agent's clock. */
    durationMs: integer("duration_ms"),
    /** Why it ended so: the agent's reason (a refusal), or why it expired. */
    detail: text("detail"),
  },
  (t) => [index("agent_requests_node").on(t.nodeId, t.createdAt), index("agent_requests_state").on(t.state)],
);

// ───────────────────────────── SSH bootstrap and node credentials ─────────────────────────────

/**
 * One-time bootstrap tokens, stored as sha256 only. Each lets the one node it was minted
 * for register once; that registration returns the node's own credential (node_credentials).
 */
export const bootstrapTokens = sqliteTable(
  "bootstrap_tokens",
  {
    tokenHash: text("token_hash").primaryKey(),
    nodeId: text("node_id").notNull(),
    /** `navarch` (minted for an SSH bootstrap) or the operator who asked for it. */
    createdBy: text("created_by").notNull(),
    createdAt: integer("created_at").notNull(),
    expiresAt: integer("expires_at").notNull(),
    /** Set by the one registration it allowed; a used token is refused. */
    usedAt: integer("used_at"),
  },
  (t) => [index("bootstrap_tokens_node").on(t.nodeId)],
);

/** Per-node credentials (sha256 only): valid for calls about this node id and no other. */
export const nodeCredentials = sqliteTable(
  "node_credentials",
  {
    nodeId: text("node_id").primaryKey(),
    tokenHash: text("token_hash").notNull(),
    issuedAt: integer("issued_at").notNull(),
  },
  (t) => [uniqueIndex("node_credentials_token").on(t.tokenHash)],
);

/**
 * API tokens minted by `navarch tokens create` (sha256 only): a role (schema/roles.ts), and
 * for `enroll` the one pool it registers nodes into. Expired and revoked ones are refused.
 */
export const apiTokens = sqliteTable(
  "api_tokens",
  {
    /** Public id (`tok_…`), for `tokens list` and `tokens revoke`; not the secret. */
    id: text("id").primaryKey(),
    tokenHash: text("token_hash").notNull(),
    name: text("name").notNull(),
    role: text("role", { enum: ["admin", "operator", "viewer", "enroll"] }).notNull(),
    pool: text("pool"),
    createdBy: text("created_by").notNull(),
    createdAt: integer("created_at").notNull(),
    expiresAt: integer("expires_at").notNull(),
    revokedAt: integer("revoked_at"),
  },
  (t) => [uniqueIndex("api_tokens_hash").on(t.tokenHash)],
);

/**
 * SSH host keys pinned per instance: the provider's fingerprints, or the key seen on first
 * contact; every later connection to that instance must present the same key.
 */
export const hostKeys = sqliteTable("host_keys", {
  /** `<provider>:<provider's instance id>`. */
  instance: text("instance").primaryKey(),
  nodeId: text("node_id").notNull(),
  /** `host:port` as last connected to. */
  address: text("address").notNull(),
  /** OpenSSH form, `SHA256:<base64>`. */
  fingerprint: text("fingerprint").notNull(),
  source: text("source", { enum: ["provider", "first_contact"] }).notNull(),
  firstSeenAt: integer("first_seen_at").notNull(),
  lastSeenAt: integer("last_seen_at").notNull(),
});

/** One row per SSH bootstrap of a node: each setup command's output and exit code, secrets masked. */
export const bootstrapRuns = sqliteTable(
  "bootstrap_runs",
  {
    id: integer("id").primaryKey({ autoIncrement: true }),
    nodeId: text("node_id").notNull(),
    /** `<provider>:<provider's instance id>`. */
    instance: text("instance"),
    /** `host:port` connected to, and as whom. */
    address: text("address").notNull(),
    user: text("user").notNull(),
    state: text("state", { enum: ["running", "succeeded", "failed"] }).notNull(),
    startedAt: integer("started_at").notNull(),
    finishedAt: integer("finished_at"),
    hostKeyFingerprint: text("host_key_fingerprint"),
    /** Why it failed, in one line (the failing step's output is in `steps`). */
    error: text("error"),
    /** BootstrapStep[] (bootstrap/ssh.ts) as JSON. */
    steps: text("steps", { mode: "json" }).notNull().default([]),
  },
  (t) => [index("bootstrap_runs_node").on(t.nodeId)],
);

/**
 * One row that the store's readiness probe rewrites (store/writable.ts): a tiny real write
 * that proves the database can still commit, without touching any fleet table.
 */
export const storeProbe = sqliteTable("store_probe", {
  id: integer("id").primaryKey(),
  probedAt: integer("probed_at").notNull(),
});

/**
 * Leadership: one row per lease. The reconciler holding `leader` runs the loop; every
 * write it makes checks that it still holds the lease with the same epoch (fencing), so
 * a paused leader that lost the lease cannot act when it wakes.
 */
export const leases = sqliteTable("leases", {
  name: text("name").primaryKey(),
  /** `host/pid/start`: who holds it; empty when released. */
  holder: text("holder").notNull(),
  /** Bumped at every change of holder. */
  epoch: integer("epoch").notNull(),
  /** The holder's address, for "who leads" answers. */
  address: text("address"),
  acquiredAt: integer("acquired_at").notNull(),
  /** Rewritten by every renewal; a standby that sees it unchanged for the lease's duration takes over. */
  renewedAt: integer("renewed_at").notNull(),
});
