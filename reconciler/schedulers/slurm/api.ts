// What slurmrestd answers, checked at the edge: one valibot schema per data parser version
// Navarch speaks (v0.0.38, Slurm 22.05 and 23.x; v0.0.39, Slurm 23.02 to 24.05), each turned
// into the same small records. Only the fields Navarch reads are checked; others pass.
// v0.0.38 writes a node's state as a lowercase base state plus `state_flags`
// (`"allocated"`, `["DRAIN"]`) and features as one comma-separated string; v0.0.39 writes
// the state as a list (`["ALLOCATED", "DRAIN"]`) and features as a list.
import * as v from "valibot";
import { formatIssuePath } from "../../../schema/wire.ts";
import { SchedulerError } from "../scheduler.ts";
import { expandHostlist, HostlistError } from "./hostlist.ts";

export const API_VERSIONS = ["v0.0.39", "v0.0.38"] as const;
export type ApiVersion = (typeof API_VERSIONS)[number];

export interface SlurmNode {
  name: string;
  /** NodeHostname (defaults to NodeName). */
  hostname: string;
  /** Base state, lowercase: idle, allocated, mixed, down, future, unknown, … */
  state: string;
  /** Flags, uppercase: DRAIN, NOT_RESPONDING, COMPLETING, … */
  flags: string[];
  reason: string;
  /** Who set the reason; null when nobody did. */
  reasonSetBy: string | null;
  comment: string;
  features: string[];
}

export interface SlurmJob {
  id: number;
  /** Uppercase: PENDING, RUNNING, COMPLETING, … */
  state: string;
  /** The nodes it runs on (expanded); empty while pending. */
  nodes: string[];
  /** A pending job may name several partitions. */
  partitions: string[];
  /** Why it is pending (`Resources`, `JobHeldUser`, `Dependency`, …), or `None`. */
  reason: string;
  /** Whether Slurm may requeue it (`--no-requeue` says no). */
  requeue: boolean;
}

export interface SlurmPartition {
  name: string;
  nodes: string[];
}

/** What the cluster reports about itself in every answer. */
export interface SlurmMeta {
  release: string;
}

const Text = v.string();
const NullableText = v.nullish(v.string());

const Error38 = v.looseObject({
  error: v.optional(NullableText),
  errno: v.optional(v.number()),
  error_number: v.optional(v.number()),
  description: v.optional(NullableText),
});
const Meta = v.looseObject({ Slurm: v.optional(v.looseObject({ release: v.optional(NullableText) })) });
const Envelope = { meta: v.optional(Meta), errors: v.optional(v.array(Error38)) };

const Node38 = v.looseObject({
  name: Text,
  hostname: v.optional(NullableText),
  state: Text,
  state_flags: v.optional(v.array(Text)),
  reason: v.optional(NullableText),
  reason_set_by_user: v.optional(NullableText),
  comment: v.optional(NullableText),
  features: v.optional(NullableText),
});
const Node39 = v.looseObject({
  name: Text,
  hostname: v.optional(NullableText),
  state: v.array(Text),
  reason: v.optional(NullableText),
  reason_set_by_user: v.optional(NullableText),
  comment: v.optional(NullableText),
  features: v.optional(v.nullish(v.array(Text))),
});
const Job = v.looseObject({
  job_id: v.number(),
  job_state: Text,
  nodes: v.optional(NullableText),
  partition: v.optional(NullableText),
  state_reason: v.optional(NullableText),
  requeue: v.optional(v.boolean()),
});
const Partition38 = v.looseObject({ name: Text, nodes: v.optional(NullableText) });
const Partition39 = v.looseObject({ name: Text, nodes: v.optional(v.looseObject({ configured: v.optional(NullableText) })) });

const SCHEMAS = {
  "v0.0.38": {
    nodes: v.looseObject({ ...Envelope, nodes: v.array(Node38) }),
    partitions: v.looseObject({ ...Envelope, partitions: v.array(Partition38) }),
  },
  "v0.0.39": {
    nodes: v.looseObject({ ...Envelope, nodes: v.array(Node39) }),
    partitions: v.looseObject({ ...Envelope, partitions: v.array(Partition39) }),
  },
} as const;
const Jobs = v.looseObject({ ...Envelope, jobs: v.array(Job) });
/** Any answer: the envelope only (errors of a write, a ping). */
export const AnyAnswer = v.looseObject(Envelope);

/** The errors an answer carries, as one line; empty when none. */
export function answerErrors(body: unknown): string {
  const parsed = v.safeParse(AnyAnswer, body);
  if (!parsed.success) return "";
  return (parsed.output.errors ?? [])
    .map(
      (e) =>
        [e.error, e.description].filter((x) => x !== undefined && x !== null && x !== "").join(": ") +
        ((e.errno ?? e.error_number) ? ` (${e.errno ?? e.error_number})` : ""),
    )
    .filter((line) => line !== "")
    .join("; ");
}

export function parseMeta(body: unknown): SlurmMeta {
  const parsed = v.safeParse(AnyAnswer, body);
  return { release: (parsed.success ? parsed.output.meta?.Slurm?.release : undefined) ?? "unknown" };
}

export function parseNodes(version: ApiVersion, body: unknown): SlurmNode[] {
  if (version === "v0.0.38") {
    return check(SCHEMAS["v0.0.38"].nodes, body, "nodes").nodes.map((n) => ({
      name: n.name,
      hostname: n.hostname || n.name,
      state: n.state.toLowerCase(),
      flags: (n.state_flags ?? []).map((f) => f.toUpperCase()),
      reason: n.reason ?? "",
      reasonSetBy: n.reason_set_by_user || null,
      comment: n.comment ?? "",
      features: splitList(n.features ?? ""),
    }));
  }
  return check(SCHEMAS["v0.0.39"].nodes, body, "nodes").nodes.map((n) => ({
    name: n.name,
    hostname: n.hostname || n.name,
    state: (n.state[0] ?? "unknown").toLowerCase(),
    flags: n.state.slice(1).map((f) => f.toUpperCase()),
    reason: n.reason ?? "",
    reasonSetBy: n.reason_set_by_user || null,
    comment: n.comment ?? "",
    features: n.features ?? [],
  }));
}

/** Jobs read the same in both versions for the fields Navarch uses. */
export function parseJobs(body: unknown): SlurmJob[] {
  return check(Jobs, body, "jobs").jobs.map((j) => ({
    id: j.job_id,
    state: j.job_state.toUpperCase(),
    nodes: hostlist(j.nodes ?? "", `job ${j.job_id}`),
    partitions: splitList(j.partition ?? ""),
    reason: j.state_reason ?? "None",
    requeue: j.requeue ?? true,
  }));
}

export function parsePartitions(version: ApiVersion, body: unknown): SlurmPartition[] {
  if (version === "v0.0.38") {
    return check(SCHEMAS["v0.0.38"].partitions, body, "partitions").partitions.map((p) => ({
      name: p.name,
      nodes: hostlist(p.nodes ?? "", `partition ${p.name}`),
    }));
  }
  return check(SCHEMAS["v0.0.39"].partitions, body, "partitions").partitions.map((p) => ({
    name: p.name,
    nodes: hostlist(p.nodes?.configured ?? "", `partition ${p.name}`),
  }));
}

function check<S extends v.GenericSchema>(schema: S, body: unknown, what: string): v.InferOutput<S> {
  const parsed = v.safeParse(schema, body);
  if (parsed.success) return parsed.output;
  const issue = parsed.issues[0];
  const at = issue.path ? formatIssuePath(issue.path) : "";
  throw new SchedulerError("slurm", "invalid", `unexpected answer listing ${what}${at ? ` at ${at}` : ""}: ${issue.message}`);
}

function hostlist(expression: string, whose: string): string[] {
  try {
    return expandHostlist(expression);
  } catch (err) {
    if (err instanceof HostlistError) throw new SchedulerError("slurm", "invalid", `${whose}: ${err.message}`);
    throw err;
  }
}

function splitList(text: string): string[] {
  return text
    .split(",")
    .map((x) => x.trim())
    .filter((x) => x !== "");
}
