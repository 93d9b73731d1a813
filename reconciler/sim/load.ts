// Reading a scenario file: YAML → schema/scenario.ts → the checks that span sections
// (a target's pool exists, an outage's provider is used by a pool, an event falls inside
// the run, a gang job fits its pool, …, for the file and for each `compare:` variant) →
// either the normalised scenario or every problem, each with its key path, message and
// value, exactly like reconciler/config/load.ts. A run may be cut short (`duration`): the
// scenario is read as if it said that duration, and the events after it are left out.
import * as v from "valibot";
import { formatDuration, type Millis } from "../../schema/config.ts";
import { ScenarioSchema, type Scenario } from "../../schema/scenario.ts";
import type { Check } from "../../schema/scenario/checks.ts";
import { DEFAULT_CLOUD } from "../../schema/scenario/clouds.ts";
import type { Target } from "../../schema/scenario/targets.ts";
import { closestMatch, isRecord } from "../../schema/shapes.ts";
import { formatIssuePath } from "../../schema/wire.ts";
import { YamlSource, readTextFile, sortProblems, type PathKey, type Problem } from "../config/yaml-source.ts";
import { knownNodeTypes, nodeType } from "./node-types.ts";

export type ScenarioLoadResult = { ok: true; scenario: Scenario; warnings: string[] } | { ok: false; problems: Problem[] };

export interface ParseOptions {
  /** Runs the scenario this long instead (its `at: end` moves there; later events are left out). */
  duration?: Millis;
}

export function parseScenario(text: string, source: string, options: ParseOptions = {}): ScenarioLoadResult {
  const parsed = YamlSource.parse(text);
  if (!parsed.ok) return parsed;
  const yaml = parsed.source;
  if (yaml.raw === null)
    return { ok: false, problems: [{ path: "", message: "the file is empty (expected a scenario with name, duration, fleet and events)", value: null }] };
  const raw = options.duration !== undefined && isRecord(yaml.raw) ? { ...yaml.raw, duration: formatDuration(options.duration) } : yaml.raw;
  const result = v.safeParse(ScenarioSchema, raw);
  if (!result.success) {
    const keys = (issue: v.BaseIssue<unknown>) => (issue.path ?? []).map((item) => item.key as PathKey);
    return { ok: false, problems: sortProblems(dedupe(result.issues.map((issue) => yaml.problemAt(formatIssuePath(issue.path), keys(issue), issue.message)))) };
  }
  const scenario = result.output;
  const warnings: string[] = [];
  if (options.duration !== undefined) {
    const kept = scenario.events.filter((e) => e.at <= scenario.duration);
    if (kept.length < scenario.events.length)
      warnings.push(`${source}: ${scenario.events.length - kept.length} event(s) after the shortened end (${formatDuration(scenario.duration)}) left out`);
    scenario.events = kept;
  }
  const problems = allCrossChecks(scenario).map(({ keys, message }) => yaml.problemAt(pathText(keys), keys, message));
  if (problems.length > 0) return { ok: false, problems: sortProblems(problems) };
  // Every provider a pool uses gets a cloud, described or not.
  for (const provider of new Set(scenario.config.pools.flatMap((p) => p.providers))) scenario.clouds[provider] ??= { ...DEFAULT_CLOUD };
  return { ok: true, scenario, warnings: [...yaml.warnings(source), ...warnings] };
}

export async function loadScenarioFile(path: string, options: ParseOptions = {}): Promise<ScenarioLoadResult> {
  const read = await readTextFile(path);
  return read.ok ? parseScenario(read.text, path, options) : read;
}

function dedupe(problems: Problem[]): Problem[] {
  const seen = new Set<string>();
  return problems.filter((p) => {
    const key = `${p.path}\n${p.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

function pathText(keys: readonly PathKey[]): string {
  let out = "";
  for (const key of keys) {
    if (typeof key === "number") out += `[${key}]`;
    else out += out ? `.${key}` : key;
  }
  return out;
}

interface Finding {
  keys: PathKey[];
  message: string;
}

/** The file's checks, and each variant's that the file does not have (at the variant, naming the key). */
function allCrossChecks(s: Scenario): Finding[] {
  const out = crossChecks(s);
  const known = new Set(out.map((f) => `${pathText(f.keys)}\n${f.message}`));
  s.compare.forEach((variant, i) => {
    for (const f of crossChecks({ ...s, config: variant.config, workload: variant.workload })) {
      if (!known.has(`${pathText(f.keys)}\n${f.message}`)) out.push({ keys: ["compare", i], message: `${pathText(f.keys)}: ${f.message}` });
    }
  });
  return out;
}

/** The rules that need more than one section of the file. */
function crossChecks(s: Scenario): Finding[] {
  const out: Finding[] = [];
  const report = (keys: PathKey[], message: string) => out.push({ keys, message });
  const pools = new Map(s.config.pools.map((p) => [p.name, p]));
  const poolNames = [...pools.keys()];
  const providers: string[] = [...new Set(s.config.pools.flatMap((p) => p.providers))];
  const types = knownNodeTypes(s.node_types);
  const jobNames = new Map<string, string>();
  const unknownPool = (name: string) => `unknown pool "${name}" (the fleet has ${poolNames.join(", ")})${hint(name, poolNames)}`;

  s.config.pools.forEach((pool, i) => {
    if (nodeType(pool.instance_type, s.node_types) === undefined) {
      report(
        ["fleet", "pools", i, "instance_type"],
        `unknown node type "${pool.instance_type}" (known: ${types.join(", ")}; add it under node_types)${hint(pool.instance_type, types)}`,
      );
    }
  });
  for (const [name, cloud] of Object.entries(s.clouds)) {
    if (!providers.includes(name)) {
      report(["clouds", name], `no pool uses provider "${name}" (the pools use ${providers.join(", ")})${hint(name, providers)}`);
      continue;
    }
    for (const type of Object.keys(cloud.capacity)) {
      if (nodeType(type, s.node_types) === undefined) report(["clouds", name, "capacity", type], `unknown node type "${type}"${hint(type, types)}`);
    }
  }
  for (const [name, w] of Object.entries(s.workload.pools)) {
    const pool = pools.get(name);
    if (pool === undefined) {
      report(["workload", "pools", name], unknownPool(name));
      continue;
    }
    const gpus = nodeType(pool.instance_type, s.node_types)?.gpus;
    if (gpus !== undefined && w.gpus_per_job > gpus)
      report(["workload", "pools", name, "gpus_per_job"], `must be ≤ the ${gpus} GPUs of a ${pool.instance_type} node, got ${w.gpus_per_job}`);
    w.jobs.forEach((job, i) => {
      const at: PathKey[] = ["workload", "pools", name, "jobs", i];
      const first = jobNames.get(job.name);
      if (first !== undefined) report([...at, "name"], `the job name ${job.name} is taken by ${first}`);
      else jobNames.set(job.name, pathText(at));
      if (job.nodes > pool.scaling.max_nodes)
        report([...at, "nodes"], `a gang of ${job.nodes} nodes never fits in pool ${name} (scaling.max_nodes ${pool.scaling.max_nodes}), got ${job.nodes}`);
      if (job.checkpoint_interval !== undefined && job.checkpoint_interval > job.work)
        report([...at, "checkpoint_interval"], `is longer than the job's work (${formatDuration(job.work)}): it would never checkpoint`);
    });
  }
  if (s.chaos) {
    s.chaos.pools.forEach((name, i) => {
      if (!pools.has(name)) report(["chaos", "pools", i], unknownPool(name));
    });
    if (s.chaos.until !== undefined && s.chaos.until <= s.chaos.from) report(["chaos", "until"], `must be later than from (${formatDuration(s.chaos.from)})`);
    if (s.chaos.from >= s.duration) report(["chaos", "from"], `must be before the end of the run (duration ${formatDuration(s.duration)})`);
    if (s.compare.length > 0 && s.chaos.failure_rate > 0 && s.chaos.trace === undefined)
      report(
        ["chaos", "trace"],
        "compare: variants replay one fault trace, drawn whatever the reconciler does: set trace: { nodes: N } (the node count the rate applies to)",
      );
  }

  for (const e of s.events) {
    const at: PathKey[] = ["events", e.index];
    if (e.at > s.duration) report([...at, "at"], `is after the end of the run (duration ${formatDuration(s.duration)}); use end for the last moment`);
    const body: PathKey[] = [...at, e.kind];
    switch (e.kind) {
      case "fault": {
        checkTarget(e.target, [...body, "target"]);
        const gpus = targetGpus(e.target);
        if (typeof e.gpu === "number" && gpus !== undefined && e.gpu >= gpus)
          report([...body, "gpu"], `must be below the ${gpus} GPUs of the target's nodes, got ${e.gpu}`);
        break;
      }
      case "recover":
      case "silence":
      case "vanish":
        checkTarget(e.target, [...body, "target"]);
        break;
      case "jobs": {
        const pool = pools.get(e.pool);
        if (pool === undefined) report([...body, "pool"], unknownPool(e.pool));
        const gpus = pool ? nodeType(pool.instance_type, s.node_types)?.gpus : undefined;
        if (e.gpus !== undefined && gpus !== undefined && e.gpus > gpus)
          report([...body, "gpus"], `must be ≤ the ${gpus} GPUs of a ${pool!.instance_type} node, got ${e.gpus}`);
        break;
      }
      case "outage":
        if (!providers.includes(e.provider))
          report([...body, "provider"], `no pool uses provider "${e.provider}" (the pools use ${providers.join(", ")})${hint(e.provider, providers)}`);
        if (e.instance_type !== undefined && nodeType(e.instance_type, s.node_types) === undefined)
          report([...body, "instance_type"], `unknown node type "${e.instance_type}"${hint(e.instance_type, types)}`);
        break;
      case "breaker_reset": {
        const scopes = ["fleet", ...poolNames.map((p) => `pool:${p}`)];
        if (!scopes.includes(e.scope))
          report([...body, "scope"], `unknown breaker scope "${e.scope}" (expected one of ${scopes.join(", ")})${hint(e.scope, scopes)}`);
        break;
      }
      case "pool_resume":
        if (!pools.has(e.pool)) report([...body, "pool"], unknownPool(e.pool));
        break;
      case "assert":
        e.checks.forEach((c, i) => checkCheck(c, [...body, i]));
        break;
      case "restart":
        break;
    }
  }
  return out;

  function targetGpus(t: Target): number | undefined {
    const poolName = t.pool ?? (t.pick.kind === "node" ? poolOfNodeName(t.pick.name) : undefined);
    const pool = poolName === undefined ? undefined : pools.get(poolName);
    return pool ? nodeType(pool.instance_type, s.node_types)?.gpus : undefined;
  }

  function poolOfNodeName(name: string): string | undefined {
    const m = /^(.*)-(\d+)$/.exec(name);
    return m?.[1];
  }

  function checkTarget(t: Target, keys: PathKey[]): void {
    if (t.pick.kind === "node") {
      const pool = poolOfNodeName(t.pick.name);
      if (pool === undefined || !pools.has(pool)) {
        report([...keys, "node"], `expected a simulator node name like ${poolNames[0]}-0 (pool name and creation number), got "${t.pick.name}"`);
      }
      return;
    }
    if (t.pool !== undefined && !pools.has(t.pool)) report([...keys, "pool"], unknownPool(t.pool));
    if (t.zone !== undefined) {
      const zones = [
        ...new Set((t.pool ? [pools.get(t.pool)] : [...pools.values()]).flatMap((p) => (p === undefined ? [] : p.zones.length > 0 ? p.zones : [p.region]))),
      ];
      if (zones.length > 0 && !zones.includes(t.zone))
        report(
          [...keys, "zone"],
          `unknown zone "${t.zone}" (the pools' zones are ${zones.join(", ")}; a pool without zones is one zone named after its region)${hint(t.zone, zones)}`,
        );
    }
  }

  function checkCheck(c: Check, keys: PathKey[]): void {
    const m = c.metric;
    const at = [...keys, m.kind];
    if ("pool" in m && m.pool !== undefined && !pools.has(m.pool)) report([...at, "pool"], unknownPool(m.pool));
    if ((m.kind === "nodes" || m.kind === "launches") && m.provider !== undefined && !providers.includes(m.provider)) {
      report([...at, "provider"], `no pool uses provider "${m.provider}" (the pools use ${providers.join(", ")})${hint(m.provider, providers)}`);
    }
    if (m.kind === "breaker" && m.scope !== undefined) {
      const scopes = ["fleet", ...poolNames.map((p) => `pool:${p}`)];
      if (!scopes.includes(m.scope))
        report([...at, "scope"], `unknown breaker scope "${m.scope}" (expected one of ${scopes.join(", ")})${hint(m.scope, scopes)}`);
    }
  }
}

function hint(word: string, candidates: readonly string[]): string {
  const match = closestMatch(word, candidates);
  return match === undefined || match === word ? "" : `; did you mean "${match}"?`;
}
