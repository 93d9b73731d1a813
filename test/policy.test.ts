import { describe, expect, test } from "bun:test";
import { DEFAULT_POLICY } from "../reconciler/health/default-policy.ts";
import { eventFromRow, PreparedHistory, type PolicyHistoryRow } from "../reconciler/health/history.ts";
import { closeFindings, trackFinding, type OpenFinding } from "../reconciler/health/findings.ts";
import { nodeVerdict } from "../reconciler/health/node-verdict.ts";
import { compilePolicy, defaultHealthPolicy } from "../reconciler/health/compile-policy.ts";
import type { HealthPolicy, PolicyEvaluation, PolicyNode } from "../reconciler/health/policy-evaluation.ts";
import { loadPolicyFile, parsePolicy } from "../reconciler/health/policy-file.ts";
import { validateHealthPolicy } from "../schema/health-policy.ts";
import type { HealthEvent } from "../schema/wire.ts";
import { lookupXid, XID_CATALOG } from "../schema/xid-catalog.ts";

const FIXTURES = new URL("./fixtures/policy/", import.meta.url).pathname;
const HOUR = 3_600_000;
const T0 = Date.parse("2025-03-01T00:00:00Z");
const GPU2 = { index: 2, uuid: "GPU-2", pciBusId: "00000000:3B:00.0" };
const GPU3 = { index: 3, uuid: "GPU-3", pciBusId: "00000000:86:00.0" };
const NODE: PolicyNode = { id: "gpu-node-1", pool: "training", bootId: "boot-1" };

let nextSeq = 1;
function ev(fields: Partial<HealthEvent> & { at?: number } = {}): HealthEvent {
  const { at = T0, ...rest } = fields;
  return {
    seq: nextSeq++,
    time: new Date(at).toISOString(),
    bootId: "boot-1",
    check: "xid",
    severity: "degraded",
    action: "restart_app",
    gpu: GPU2,
    message: "test event",
    ...rest,
  };
}
const xid = (code: number, at = T0, extra: Partial<HealthEvent> = {}): HealthEvent => {
  const entry = lookupXid(code);
  return ev({ code: String(code), severity: entry.severity, action: entry.action, message: `Xid ${code}`, at, ...extra });
};
function row(e: HealthEvent): PolicyHistoryRow {
  return {
    seq: e.seq,
    bootId: e.bootId,
    time: Date.parse(e.time),
    check: e.check,
    code: e.code ?? null,
    severity: e.severity,
    gpuIndex: e.gpu?.index ?? null,
    gpuUuid: e.gpu?.uuid ?? null,
    gpuPciBusId: e.gpu?.pciBusId ?? null,
    count: e.count ?? 1,
  };
}

function policyOf(yaml: string): HealthPolicy {
  const loaded = parsePolicy(yaml, "inline.yaml");
  if (!loaded.ok) throw new Error(loaded.problems.map((p) => `${p.path}: ${p.message}`).join("\n"));
  return loaded.policy;
}

describe("default policy (from the Xid catalog)", () => {
  const policy = defaultHealthPolicy();
  const judge = (e: HealthEvent, history: HealthEvent[] = [], node = NODE) => policy.evaluate({ event: e, node }, history.map(row), T0);

  test("Xid 79 is unhealthy and fatal", () => {
    const out = judge(xid(79));
    expect(out).toMatchObject({ result: "unhealthy", action: "reboot", persistence: "fatal", rule: "default/xid-79", source: "default" });
    expect(out.errors).toEqual([]);
  });

  test("Xid 13 once is degraded; three times in 24 h on one GPU is unhealthy (the catalog's repeat rule)", () => {
    const first = xid(13, T0);
    expect(judge(first)).toMatchObject({ result: "degraded", action: "restart_app", persistence: "transient", rule: "default/xid-13" });
    const second = xid(13, T0 + 5 * HOUR);
    expect(judge(second, [first]).result).toBe("degraded");
    const third = xid(13, T0 + 23 * HOUR);
    const rule = lookupXid(13).escalate!;
    expect(judge(third, [first, second])).toMatchObject({
      result: rule.severity,
      action: rule.action,
      persistence: "reboot",
      rule: "default/xid-13-repeated",
      source: "default",
    });
    // The history may already hold the event itself (stored first, then judged): not counted twice.
    expect(judge(third, [first, second, third]).rule).toBe("default/xid-13-repeated");
    expect(judge(second, [first, second]).result).toBe("degraded");
  });

  test("the repeat rule counts one GPU and one window only", () => {
    const other = xid(13, T0, { gpu: GPU3 });
    const third = xid(13, T0 + 2 * HOUR);
    expect(judge(third, [other, xid(13, T0 + HOUR, { gpu: GPU3 })]).result).toBe("degraded");
    const old = xid(13, T0 - 25 * HOUR);
    expect(judge(third, [old, xid(13, T0 + HOUR)]).result).toBe("degraded");
    // Rows after the event do not count for it.
    expect(judge(xid(13, T0), [xid(13, T0 + HOUR), xid(13, T0 + 2 * HOUR)]).result).toBe("degraded");
  });

  test("occurrences come from the rows' cumulative count; healthy rows are not occurrences", () => {
    const first = xid(13, T0);
    const update = xid(13, T0 + 60_000, { count: 3 }); // the agent re-reported the same incident: 3 so far
    expect(judge(update, [first]).rule).toBe("default/xid-13-repeated");
    const level = ev({ check: "thermal", code: "slowdown", severity: "degraded", action: "none" });
    const healthy = ev({ check: "thermal", code: "slowdown", severity: "healthy", action: "none", at: T0 + 1 });
    const p = policyOf(`rules: [{ name: count, when: 'count_events("thermal", "slowdown", duration("1h")) == 1', result: unhealthy }]`);
    expect(p.evaluate({ event: healthy, node: NODE }, [row(level), row(healthy)], T0).result).toBe("unhealthy");
  });

  test("a rows array judged again after rows were appended is re-read", () => {
    const history: PolicyHistoryRow[] = [];
    const third = xid(13, T0 + 2 * HOUR);
    expect(judge(third, []).result).toBe("degraded");
    expect(policy.evaluate({ event: third, node: NODE }, history, T0).result).toBe("degraded");
    history.push(row(xid(13, T0)), row(xid(13, T0 + HOUR)));
    expect(policy.evaluate({ event: third, node: NODE }, history, T0).rule).toBe("default/xid-13-repeated");
  });

  test("thermal slowdown is degraded and transient", () => {
    const out = judge(ev({ check: "thermal", code: "slowdown", severity: "degraded", action: "none", message: "GPU 2: 91°C" }));
    expect(out).toMatchObject({ result: "degraded", action: "none", persistence: "transient", rule: "default/thermal", reason: "GPU 2: 91°C" });
  });

  test("NVML findings with an Xid twin take its persistence; a healthy event is healthy", () => {
    const remap = ev({ check: "row_remap", code: "failed", severity: "unhealthy", action: "replace" });
    expect(judge(remap)).toMatchObject({ result: "unhealthy", action: "replace", persistence: lookupXid(64).persistence });
    expect(lookupXid(64).persistence).toBe("fatal");
    expect(judge(ev({ check: "gpu_lost", severity: "unhealthy", action: "reboot", code: undefined })).persistence).toBe("fatal");
    expect(judge(ev({ check: "thermal", code: "slowdown", severity: "healthy", action: "none" }))).toMatchObject({ result: "healthy", action: "none" });
  });

  test("DEFAULT_POLICY is the catalog's repeat rules, as data", () => {
    const withRepeat = [...XID_CATALOG.entries.values()].filter((e) => e.escalate && !e.ignored);
    expect(DEFAULT_POLICY.rules.map((r) => r.xid)).toEqual(withRepeat.map((e) => String(e.code)).sort((a, b) => Number(a) - Number(b)));
    for (const rule of DEFAULT_POLICY.rules) {
      const entry = lookupXid(Number(rule.xid));
      expect(rule.result).toBe(entry.escalate!.severity);
      expect(rule.action).toBe(entry.escalate!.action);
      expect(rule.when).toContain(`>= ${entry.escalate!.count}`);
    }
    expect(Object.isFrozen(DEFAULT_POLICY.rules)).toBe(true);
  });

  test("xid_overrides: ignore makes a code healthy, severity replaces the agent's, escalate changes the repeat rule", () => {
    const p = policyOf(`
xid_overrides:
  "94": { ignore: true }
  "79": { severity: degraded }
  "13": { escalate: { count: 2, window_ms: 3600000 } }
`);
    expect(p.evaluate({ event: xid(94), node: NODE }, [], T0)).toMatchObject({ result: "healthy", action: "none" });
    expect(p.evaluate({ event: xid(79), node: NODE }, [], T0)).toMatchObject({ result: "degraded", persistence: "fatal" });
    const first = xid(13, T0);
    expect(p.evaluate({ event: xid(13, T0 + 30 * 60_000), node: NODE }, [row(first)], T0).rule).toBe("default/xid-13-repeated");
    expect(p.evaluate({ event: xid(13, T0 + 2 * HOUR), node: NODE }, [row(first)], T0).result).toBe("degraded");
  });
});

describe("policy rules", () => {
  test("rules run in order and the first match wins", () => {
    const rules = (a: string, b: string) => `
rules:
  - { name: ${a}, when: 'event.check == "thermal"', result: ${a === "soft" ? "degraded" : "unhealthy"} }
  - { name: ${b}, when: 'event.check == "thermal"', result: ${b === "soft" ? "degraded" : "unhealthy"} }
`;
    const hot = ev({ check: "thermal", code: "slowdown", severity: "degraded", action: "none" });
    expect(policyOf(rules("soft", "hard")).evaluate({ event: hot, node: NODE }, [], T0)).toMatchObject({ rule: "soft", result: "degraded", source: "policy" });
    expect(policyOf(rules("hard", "soft")).evaluate({ event: hot, node: NODE }, [], T0)).toMatchObject({ rule: "hard", result: "unhealthy" });
  });

  test("the brief's two example rules", () => {
    const p = policyOf(`
rules:
  - name: xid13-repeats
    when: event.check == "xid" && event.code == "13" && count_events("xid", "13", duration("24h")) >= 3
    result: unhealthy
  - name: hot
    when: event.check == "thermal" && event.severity == "degraded"
    result: degraded
`);
    const a = xid(13, T0);
    const b = xid(13, T0 + HOUR);
    expect(p.evaluate({ event: xid(13, T0 + 2 * HOUR), node: NODE }, [row(a), row(b)], T0)).toMatchObject({
      rule: "xid13-repeats",
      result: "unhealthy",
      action: "restart_app", // no action in the rule: the event's own
      persistence: "transient", // none in the rule: the catalog's for Xid 13
    });
    const hot = ev({ check: "thermal", code: "slowdown", severity: "degraded", action: "none" });
    expect(p.evaluate({ event: hot, node: NODE }, [], T0)).toMatchObject({ rule: "hot", result: "degraded", persistence: "transient" });
  });

  test("count_events looks back over its window only", () => {
    const p = policyOf(`
rules:
  - name: twice-an-hour
    when: event.check == "ecc" && count_events("ecc", "sbe_rate", duration("1h")) >= 2
    result: unhealthy
    action: reset_gpu
    persistence: reboot
`);
    const sbe = (at: number) => ev({ check: "ecc", code: "sbe_rate", severity: "degraded", action: "none", at });
    const earlier = sbe(T0);
    expect(p.evaluate({ event: sbe(T0 + 30 * 60_000), node: NODE }, [row(earlier)], T0).rule).toBe("twice-an-hour");
    expect(p.evaluate({ event: sbe(T0 + 2 * HOUR), node: NODE }, [row(earlier)], T0).rule).toBe("default/ecc");
    expect(p.evaluate({ event: sbe(T0 + 30 * 60_000), node: NODE }, [row({ ...earlier, gpu: GPU3 })], T0).rule).toBe("default/ecc");
  });

  test("count_events_node counts every GPU of the node, and '*' any code", () => {
    const p = policyOf(`
rules:
  - name: storm
    when: event.check == "xid" && xid.app_caused && count_events_node("xid", "*", duration("1h")) >= 3
    result: unhealthy
    action: reboot
`);
    const history = [xid(13, T0, { gpu: GPU3 }), xid(31, T0 + 1000)].map(row);
    expect(p.evaluate({ event: xid(43, T0 + 2000), node: NODE }, history, T0).rule).toBe("storm");
    expect(p.evaluate({ event: xid(43, T0 + 2000), node: NODE }, history.slice(1), T0).rule).toBe("default/xid-43");
  });

  test("a rule on node.pool", () => {
    const p = policyOf(`
rules:
  - name: inference-strict
    when: node.pool == "inference" && event.severity == "degraded"
    result: unhealthy
    action: reset_gpu
`);
    const e = xid(13);
    expect(p.evaluate({ event: e, node: { ...NODE, pool: "inference" } }, [], T0)).toMatchObject({ rule: "inference-strict", result: "unhealthy" });
    expect(p.evaluate({ event: e, node: NODE }, [], T0).rule).toBe("default/xid-13");
    expect(p.evaluate({ event: e, node: { id: "n", bootId: "b" } }, [], T0).rule).toBe("default/xid-13");
  });

  test("the environment: gpu, time, now, xid fields", () => {
    const p = policyOf(`
rules:
  - name: everything
    when: >-
      event.gpu.index == 2 && event.gpu.pci_bus_id.startsWith("00000000:3B") &&
      event.time < now && now - event.time >= duration("1h") &&
      xid.code == 79 && xid.persistence == "fatal" && xid.category == "pcie" && !xid.app_caused &&
      event.count == 1 && node.boot_id == "boot-1" && event.message.contains("79")
    result: unhealthy
    reason: all fields visible
  - name: node-level
    when: event.gpu.index == -1 && xid.code == 0 && xid.name == ""
    result: degraded
`);
    expect(p.evaluate({ event: xid(79, T0 - HOUR), node: NODE }, [], T0)).toMatchObject({ rule: "everything", reason: "all fields visible" });
    expect(p.evaluate({ event: ev({ check: "gpu_count", gpu: undefined, severity: "unhealthy" }), node: NODE }, [], T0).rule).toBe("node-level");
  });

  test("the static check accepts ordinary CEL (macros, conversions, time, strings extension)", () => {
    const valid = [
      `has(event.gpu) && event.severity in ["degraded", "unhealthy"]`,
      `size(event.message) > 0 && event.message.size() > 0 && event.message.matches("^Xid")`,
      `int(event.code) >= 13 && event.code.startsWith("1") && event.count > 2.5 && event.count > 2u`,
      `xid.escalate.window > duration("1h") && now > event.time + duration("1h")`,
      `event.time.getHours() >= 9 && event.time.getHours("UTC") < 5 && event.time.getDayOfWeek() == 1`,
      `timestamp("2025-01-01T00:00:00Z") < event.time`,
      `[1, 2].exists_one(x, x == 1) && [1, 2].filter(x, x > 1).size() == 1 && [1, 2].map(x, x * 2).all(y, y > 0)`,
      `{"a": "b"}.a == "b" && {"13": 1}[event.code] > 0 && event.code in {"13": 1}`,
      `type(event.count) == int && dyn(event.code) == 13 && event.code != null`,
      `!(event.check == "xid") || (event.check != "xid" ? true : false)`,
      `"xid" + event.code == "xid13" && string(event.gpu.index) == "2" && double(event.count) / 2.0 > 1.0`,
      `-event.gpu.index < 0 && event.count % 2 == 0 && uint(event.count) > 1u && bytes(event.message) == b"x"`,
      `event.message.lowerAscii().contains("bus") && event.message.split(" ").size() > 1`,
      `count_events("xid", event.code, xid.escalate.window) >= xid.escalate.count && xid.escalate.count > 0`,
    ];
    const rules = valid.map((when, i) => ({ name: `r${i}`, when, result: "degraded" as const }));
    const compiled = compilePolicy({ rules, catalog: XID_CATALOG });
    expect(compiled.ok ? [] : compiled.issues).toEqual([]);
    // The generic form of the catalog's repeat rule works at run time too.
    const generic = policyOf(
      `rules: [{ name: generic, when: 'event.check == "xid" && xid.escalate.count > 0 && count_events("xid", event.code, xid.escalate.window) >= xid.escalate.count', result: unhealthy }]`,
    );
    const history = [row(xid(31, T0)), row(xid(31, T0 + HOUR))];
    expect(generic.evaluate({ event: xid(31, T0 + 2 * HOUR), node: NODE }, history, T0).rule).toBe("generic");
    expect(generic.evaluate({ event: xid(31, T0 + 2 * HOUR), node: NODE }, history.slice(1), T0).rule).toBe("default/xid-31");
  });

  test("a rule that fails at run time is skipped and reported", () => {
    const p = policyOf(`
rules:
  - { name: numeric-code, when: 'int(event.code) > 100', result: unhealthy }
  - { name: hot, when: 'event.check == "thermal"', result: degraded }
`);
    const out = p.evaluate({ event: ev({ check: "thermal", code: "slowdown", severity: "degraded", action: "none" }), node: NODE }, [], T0);
    expect(out.rule).toBe("hot");
    expect(out.errors).toHaveLength(1);
    expect(out.errors[0]!.rule).toBe("numeric-code");
  });

  test("the fixture policy loads and applies", async () => {
    const loaded = await loadPolicyFile(`${FIXTURES}valid.yaml`);
    if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
    const p = loaded.policy;
    expect(p.rules.map((r) => r.name)).toEqual(["inference-strict", "xid-31-twice", "thermal-slowdown", "node-wide-app-storm"]);
    const first = xid(31, T0);
    expect(p.evaluate({ event: xid(31, T0 + HOUR), node: NODE }, [row(first)], T0)).toMatchObject({ rule: "xid-31-twice", action: "contact_support" });
    expect(p.evaluate({ event: xid(94), node: NODE }, [], T0).result).toBe("healthy");
    // The override made Xid 13's repeat rule 2 within 1 h (window (t - 1 h, t]).
    expect(p.evaluate({ event: xid(13, T0 + 30 * 60_000), node: NODE }, [row(xid(13, T0))], T0).rule).toBe("default/xid-13-repeated");
    expect(p.evaluate({ event: xid(13, T0 + HOUR), node: NODE }, [row(xid(13, T0))], T0).rule).toBe("default/xid-13");
  });

  test("an empty file is the default policy", () => {
    const loaded = parsePolicy("", "empty.yaml");
    expect(loaded.ok).toBe(true);
    if (loaded.ok) expect(loaded.policy.rules).toEqual([]);
  });

  test("eventFromRow gives back the wire event", () => {
    const e = xid(48, T0, { count: 4 });
    const stored = { id: 1, nodeId: NODE.id, receivedAt: T0, message: e.message, action: e.action, ...row(e) };
    expect(eventFromRow(stored)).toEqual({ ...e, time: new Date(T0).toISOString() });
  });
});

describe("bad policy files are rejected whole, with key paths", () => {
  async function problems(file: string) {
    const loaded = await loadPolicyFile(`${FIXTURES}${file}`);
    expect(loaded.ok).toBe(false);
    expect("policy" in loaded).toBe(false); // nothing to apply, not even the good rules
    return loaded.ok ? [] : loaded.problems;
  }

  test("CEL syntax error: names rules[i].when and the position", async () => {
    const [p, ...rest] = await problems("bad-cel-syntax.yaml");
    expect(rest).toEqual([]);
    expect(p).toMatchObject({ path: "rules[1].when", line: 6 });
    expect(p!.message).toMatch(/^CEL syntax error at column 22: /);
  });

  test("unknown variable: a type-check error with a suggestion", async () => {
    const [p] = await problems("bad-cel-variable.yaml");
    expect(p).toMatchObject({ path: "rules[1].when", line: 6, column: 11 + 24 });
    expect(p!.message).toContain("CEL type error at column 25: undeclared reference to 'evnt' (did you mean 'event'?)");
  });

  test("type errors: a string compared with a number, a condition that is not a bool", async () => {
    const ps = await problems("bad-cel-type.yaml");
    expect(ps.map((p) => p.path)).toEqual(["rules[0].when", "rules[1].when"]);
    expect(ps[0]!.message).toContain("found no matching overload for '_==_' applied to '(string, int)'");
    expect(ps[1]!.message).toContain("must be a bool expression, but its type is int");
  });

  test("unknown keys, in a rule and at the top", async () => {
    const ps = await problems("bad-unknown-key.yaml");
    expect(ps.map((p) => [p.path, p.message])).toEqual([
      ["rules[0].reslt", 'unknown key "reslt" (did you mean "result"?)'],
      ["cordon", 'unknown key "cordon" (allowed: rules, xid_overrides)'],
    ]);
  });

  test("bad result and persistence values", async () => {
    const ps = await problems("bad-result.yaml");
    expect(ps.map((p) => [p.path, p.message, p.value])).toEqual([
      ["rules[0].result", 'expected one of healthy, degraded, unhealthy, got "fatal"', "fatal"],
      ["rules[1].persistence", 'expected one of fatal, reboot, transient, got "forever"', "forever"],
    ]);
  });

  test("bad xid overrides, reported by the catalog's applyXidOverrides", async () => {
    const ps = await problems("bad-xid-override.yaml");
    expect(ps.map((p) => [p.path, p.message])).toEqual([
      ['xid_overrides["79"].severity', 'must be one of healthy, degraded, unhealthy (got "fatal")'],
      ['xid_overrides["13"].escalate.count', "must be a whole number ≥ 1 (got 0)"],
    ]);
    expect(ps[0]!.line).toBe(6);
  });

  test("duplicate names; a healthy result with an action", async () => {
    const ps = await problems("bad-duplicate.yaml");
    expect(ps.map((p) => p.path)).toEqual(["rules[1].name", "rules[1].action"]);
    expect(ps[0]!.message).toBe('duplicate rule name "same" (rules[0] has it already)');
  });

  test("shape and CEL problems are reported in one run", () => {
    const loaded = parsePolicy(`rules:\n  - { name: a, when: "nope == 1", result: healthy }\n  - { name: b, when: "true", result: maybe }\n`, "mixed.yaml");
    expect(loaded.ok).toBe(false);
    if (!loaded.ok) expect(loaded.problems.map((p) => p.path)).toEqual(["rules[0].when", "rules[1].result"]);
  });

  test("YAML syntax errors and non-string conditions", () => {
    const yaml = parsePolicy("rules: [", "broken.yaml");
    expect(yaml.ok).toBe(false);
    if (!yaml.ok) expect(yaml.problems[0]!.message).toMatch(/^YAML syntax error at line 1/);
    const bool = validateHealthPolicy({ rules: [{ name: "x", when: true, result: "degraded" }] });
    expect(bool.ok).toBe(false);
    if (!bool.ok) expect(bool.issues[0]).toMatchObject({ path: "rules[0].when", message: 'expected a CEL expression (a string; quote it: "true"), got true' });
  });

  test("an unreadable file is a problem, not a throw", async () => {
    const loaded = await loadPolicyFile(`${FIXTURES}does-not-exist.yaml`);
    expect(loaded.ok).toBe(false);
    if (!loaded.ok) expect(loaded.problems[0]!.message).toContain("ENOENT");
  });

  test("compilePolicy is all or nothing", () => {
    const good = { name: "good", when: "true", result: "degraded" as const };
    const bad = { name: "bad", when: "event.nope", result: "degraded" as const };
    const out = compilePolicy({ rules: [good, bad], catalog: XID_CATALOG });
    expect(out.ok).toBe(false);
    if (!out.ok) expect(out.issues.map((i) => i.path)).toEqual(["rules[1].when"]);
  });
});

describe("findings and the node verdict", () => {
  const policy = defaultHealthPolicy();
  const judge = (e: HealthEvent): PolicyEvaluation => policy.evaluate({ event: e, node: NODE }, [], T0);
  const open = (...events: HealthEvent[]): OpenFinding[] => events.reduce<OpenFinding[]>((acc, e) => trackFinding(acc, e, judge(e)), []);
  const base = { unhealthyThreshold: 2, bootId: "boot-1" };

  // "Failed evaluation" = one nodeVerdict call (tick) that finds an open finding whose result is
  // unhealthy. With threshold 2: the first makes the node degraded, the second in a row unhealthy.
  test("threshold 2: two consecutive failed evaluations before unhealthy", () => {
    const findings = open(xid(48)); // unhealthy, persistence reboot (not fatal)
    const first = nodeVerdict(findings, { ...base, now: T0 });
    expect(first).toMatchObject({ verdict: "degraded", fatal: false, state: { consecutiveFailures: 1 } });
    expect(first.reason).toContain("1 of 2 consecutive failed evaluations");
    const second = nodeVerdict(findings, { ...base, now: T0 + 60_000, ...first.state });
    expect(second).toMatchObject({ verdict: "unhealthy", fatal: false, state: { consecutiveFailures: 2 } });
    expect(second.reason).toContain("2 of 2 consecutive failed evaluations");
  });

  test("a passing evaluation in between restarts the count", () => {
    const failing = open(xid(48));
    const one = nodeVerdict(failing, { ...base, now: T0 });
    const passing = nodeVerdict([], { ...base, now: T0 + 60_000, ...one.state });
    expect(passing).toMatchObject({ verdict: "healthy", state: { consecutiveFailures: 0 } });
    expect(nodeVerdict(failing, { ...base, now: T0 + 120_000, ...passing.state }).verdict).toBe("degraded");
    // A degraded-only evaluation is not a failure either.
    const degraded = nodeVerdict(open(xid(13)), { ...base, now: T0 + 60_000, ...one.state });
    expect(degraded).toMatchObject({ verdict: "degraded", state: { consecutiveFailures: 0 } });
  });

  test("threshold 1 is unhealthy at the first failed evaluation; tick: false does not count", () => {
    expect(nodeVerdict(open(xid(48)), { ...base, unhealthyThreshold: 1, now: T0 }).verdict).toBe("unhealthy");
    const extra = nodeVerdict(open(xid(48)), { ...base, now: T0, consecutiveFailures: 1, tick: false });
    expect(extra).toMatchObject({ verdict: "degraded", state: { consecutiveFailures: 1 } });
    expect(() => nodeVerdict([], { ...base, unhealthyThreshold: 0, now: T0 })).toThrow(RangeError);
  });

  test("a fatal finding is unhealthy at once, whatever the threshold", () => {
    const v = nodeVerdict(open(xid(13), xid(79, T0, { gpu: GPU3 })), { ...base, unhealthyThreshold: 5, now: T0 });
    expect(v).toMatchObject({ verdict: "unhealthy", fatal: true, decidedBy: { check: "xid", code: "79" } });
    expect(v.reason).toMatch(/^fatal: Xid 79 on GPU 3/);
  });

  test("a level condition recovers after the healthy delay", () => {
    const hot = ev({ check: "thermal", code: "slowdown", severity: "degraded", action: "none", at: T0 });
    let findings = open(hot);
    expect(findings[0]).toMatchObject({ persistence: "transient", edge: false });
    // Still hot an hour later (no recovery event): still open.
    expect(nodeVerdict(findings, { ...base, now: T0 + HOUR }).verdict).toBe("degraded");
    const cool = ev({ check: "thermal", code: "slowdown", severity: "healthy", action: "none", at: T0 + HOUR });
    findings = trackFinding(findings, cool, judge(cool));
    expect(findings[0]!.recoveredAt).toBe(T0 + HOUR);
    const delay = { healthyDelayMs: 10 * 60_000 };
    expect(nodeVerdict(findings, { ...base, ...delay, now: T0 + HOUR + 9 * 60_000 }).verdict).toBe("degraded");
    const later = nodeVerdict(findings, { ...base, ...delay, now: T0 + HOUR + 10 * 60_000 });
    expect(later.verdict).toBe("healthy");
    expect(later.closed).toMatchObject([{ why: "recovered" }]);
    // Hot again before the delay is over: the recovery is forgotten.
    const again = ev({ check: "thermal", code: "slowdown", severity: "degraded", action: "none", at: T0 + HOUR + 60_000 });
    const reopened = trackFinding(findings, again, judge(again));
    expect(reopened).toHaveLength(1);
    expect(reopened[0]!.recoveredAt).toBeUndefined();
  });

  test("a transient Xid closes after a quiet healthy delay", () => {
    const findings = open(xid(13, T0));
    expect(closeFindings(findings, { bootId: "boot-1", now: T0 + 5 * 60_000 }).closed).toEqual([]);
    expect(closeFindings(findings, { bootId: "boot-1", now: T0 + 10 * 60_000 }).closed).toMatchObject([{ why: "quiet" }]);
  });

  test("reboot-fixable findings clear on a new boot id, not with time", () => {
    const findings = open(xid(48));
    expect(findings[0]!.persistence).toBe("reboot");
    expect(closeFindings(findings, { bootId: "boot-1", now: T0 + 7 * 24 * HOUR }).open).toHaveLength(1);
    const rebooted = nodeVerdict(findings, { ...base, bootId: "boot-2", now: T0 + HOUR, consecutiveFailures: 3 });
    expect(rebooted).toMatchObject({ verdict: "healthy", closed: [{ why: "new_boot" }], state: { consecutiveFailures: 0 } });
  });

  test("fatal findings are not cleared by a new boot id, nor by time, nor by a healthy event", () => {
    const failed = xid(64); // row remapping failed: its remedy is hardware, not a reboot
    let findings = open(failed);
    const healthy = xid(64, T0 + 1, { severity: "healthy", action: "none" });
    findings = trackFinding(findings, healthy, judge(healthy));
    const v = nodeVerdict(findings, { ...base, bootId: "boot-9", now: T0 + 30 * 24 * HOUR });
    expect(v).toMatchObject({ verdict: "unhealthy", fatal: true, closed: [] });
  });

  test("a fatal finding whose remedy is a reboot is judged again in a new boot, never cleared in its own", () => {
    const fell = xid(79); // fallen off the bus: the catalog recommends a reboot
    const findings = open(fell);
    expect(nodeVerdict(findings, { ...base, now: T0 + 30 * 24 * HOUR })).toMatchObject({ verdict: "unhealthy", fatal: true, closed: [] });
    const rebooted = nodeVerdict(findings, { ...base, bootId: "boot-9", now: T0 + HOUR });
    expect(rebooted).toMatchObject({ verdict: "healthy", closed: [expect.objectContaining({ why: "new_boot" })] });
  });

  test("trackFinding keeps one finding per key; the worst result and persistence win", () => {
    let findings = open(xid(13, T0));
    const escalated: PolicyEvaluation = {
      result: "unhealthy",
      action: "contact_support",
      persistence: "reboot",
      rule: "default/xid-13-repeated",
      reason: "repeats",
      source: "default",
      errors: [],
    };
    findings = trackFinding(findings, xid(13, T0 + HOUR), escalated);
    findings = trackFinding(findings, xid(13, T0 + 2 * HOUR), judge(xid(13)));
    expect(findings).toHaveLength(1);
    expect(findings[0]).toMatchObject({
      result: "unhealthy",
      persistence: "reboot",
      rule: "default/xid-13-repeated",
      lastFailedAt: T0 + 2 * HOUR,
      openedAt: T0,
    });
    expect(trackFinding(findings, xid(13, T0, { gpu: GPU3 }), judge(xid(13)))).toHaveLength(2);
  });
});

describe("performance", () => {
  test("one event against a 20-rule policy with a 1,000-event history", () => {
    // Every rule calls a history function first (so none short-circuits before it), and none matches.
    const codes = [13, 31, 43, 48, 94, 79, 64, 45, 109, 119];
    const rules = Array.from({ length: 20 }, (_, i) => {
      const when =
        i % 2 === 0
          ? `count_events("xid", "${codes[i / 2]}", duration("${i + 1}h")) >= 1000 && event.check == "xid"`
          : `count_events_node("xid", "*", duration("${i}h")) > 5000 && node.pool == "pool-${i}"`;
      return `  - { name: r${i}, when: '${when}', result: unhealthy }`;
    });
    const p = policyOf(`rules:\n${rules.join("\n")}\n`);
    expect(p.rules).toHaveLength(20);
    const history: PolicyHistoryRow[] = [];
    for (let i = 0; i < 1000; i++) {
      const code = [13, 31, 43, 48, 94][i % 5]!;
      history.push(row(xid(code, T0 - (1000 - i) * 60_000, { gpu: i % 2 ? GPU2 : GPU3, count: 1 + (i % 3) })));
    }
    const event = xid(13, T0); // matches no rule: all 20 run, then the Xid 13 repeat rule, then the fallback
    const prepared = new PreparedHistory(history);

    const time = (runs: number, fn: () => unknown) => {
      for (let i = 0; i < 50; i++) fn();
      const start = Bun.nanoseconds();
      for (let i = 0; i < runs; i++) fn();
      return (Bun.nanoseconds() - start) / runs / 1000;
    };
    // A fresh copy of the rows each time: nothing cached, every count query scans the 1,000 rows.
    const copies = Array.from({ length: 550 }, () => [...history]);
    let next = 0;
    const cold = time(500, () => p.evaluate({ event, node: NODE }, copies[next++]!, T0));
    const warm = time(5000, () => p.evaluate({ event, node: NODE }, prepared, T0));
    const sameArray = time(5000, () => p.evaluate({ event, node: NODE }, history, T0));
    expect(p.evaluate({ event, node: NODE }, prepared, T0).rule).toBe("default/xid-13-repeated");
    console.log(
      `policy evaluation, 20 rules (each calls count_events), 1,000-event history: ` +
        `${warm.toFixed(1)} µs/event with a reused PreparedHistory, ${sameArray.toFixed(1)} µs/event reusing the same rows array, ` +
        `${cold.toFixed(1)} µs/event from fresh rows (11 distinct count queries, each a scan of the rows)`,
    );
  });
});
