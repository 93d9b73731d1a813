// The store's rows as the API answers them: incidents, tripped breakers, the audit log and
// pools. The admin API lists each (GET /v1/pools, /v1/incidents, /v1/breakers, /v1/audit) and
// the views embed them; the CLI validates what it reads with these shapes.
import * as v from "valibot";
import { Ms } from "./time.ts";

export const IncidentRow = v.object({
  id: v.number(),
  nodeId: v.string(),
  pool: v.nullable(v.string()),
  reason: v.string(),
  cause: v.nullable(
    v.pipe(
      v.string(),
      v.description(
        "what goodput counts the episode under: the deciding finding's fault class (memory, pcie, …), maintenance, no_heartbeat; null before it was recorded",
      ),
    ),
  ),
  faultAt: Ms,
  openedAt: Ms,
  cordonedAt: v.nullable(Ms),
  drainedAt: v.nullable(Ms),
  terminatedAt: v.nullable(Ms),
  replacementNodeId: v.nullable(v.string()),
  replacementReadyAt: v.nullable(Ms),
  remedy: v.nullable(v.pipe(v.picklist(["reboot", "replace"]), v.description("the remediation's rung: reboot first, or replace"))),
  rebootedAt: v.nullable(Ms),
  rebootFromBoot: v.nullable(v.string()),
  backAt: v.nullable(v.pipe(Ms, v.description("when the rebooted node came back with a new boot"))),
  status: v.pipe(v.string(), v.description("what the reconciler is doing about it, or which rail blocks it")),
  closedAt: v.nullable(Ms),
  outcome: v.nullable(v.picklist(["replaced", "recovered", "rebooted", "cancelled", "held", "terminated"])),
});
export type IncidentRow = v.InferOutput<typeof IncidentRow>;

export const BreakerRow = v.object({
  scope: v.pipe(v.string(), v.description('"fleet" or "pool:<name>"')),
  trippedAt: Ms,
  reason: v.string(),
  resetAt: v.nullable(Ms),
  resetBy: v.nullable(v.string()),
});

export const AuditRow = v.object({
  id: v.number(),
  at: Ms,
  actor: v.string(),
  action: v.pipe(v.string(), v.description("transition, blocked, scale, incident_opened, replace, terminate, reap, breaker_tripped, dry_run, cordon, …")),
  target: v.string(),
  details: v.unknown(),
});
export type AuditRow = v.InferOutput<typeof AuditRow>;

export const PoolRow = v.object({
  name: v.string(),
  source: v.picklist(["config", "crd"]),
  spec: v.pipe(v.unknown(), v.description("the normalised pool spec from the config, as validated")),
  paused: v.boolean(),
  pausedReason: v.nullable(v.string()),
  lastScaleAt: v.nullable(Ms),
  lastScaleDirection: v.nullable(v.picklist(["up", "down"])),
  launchFailures: v.pipe(v.number(), v.description("launches that failed in a row (0 once one succeeds)")),
  launchRetryAt: v.nullable(Ms),
  launchError: v.nullable(v.string()),
  launchErrorKind: v.nullable(v.picklist(["permanent", "transient"])),
  launchFailingSince: v.nullable(Ms),
  registrationFailures: v.pipe(v.number(), v.description("machines in a row whose agent did not register (0 once one registers)")),
  registrationFailedAt: v.nullable(Ms),
  registrationHold: v.nullable(
    v.pipe(v.string(), v.description("while the pool launches nothing because its machines did not register: the pattern, and what to change")),
  ),
  registrationHeldAt: v.nullable(Ms),
  requestedNodes: v.nullable(v.pipe(v.number(), v.description("the size an operator set with navarch pools scale (held while the pool has no autoscaler)"))),
  requestedBy: v.nullable(v.string()),
  createdAt: Ms,
  updatedAt: Ms,
});
export type PoolRow = v.InferOutput<typeof PoolRow>;

export const PoolList = v.object({ pools: v.array(PoolRow) });
export const IncidentList = v.object({ incidents: v.array(IncidentRow) });
export const BreakerList = v.object({ breakers: v.array(BreakerRow) });
export const AuditList = v.object({ audit: v.array(AuditRow) });
