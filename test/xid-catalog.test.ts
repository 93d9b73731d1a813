import { describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { parseKmsgText } from "../agent/kmsg/parser.ts";
import { ACTIONS, SEVERITIES } from "../schema/wire.ts";
import {
  applyXidOverrides,
  classifyNvlink5,
  classifyXid,
  classifyXidOccurrence,
  knownXidCodes,
  lookupXid,
  nvlink5SubCode,
  XID_CATALOG,
  XID_CATEGORIES,
  XID_PERSISTENCES,
  XID154_RECOVERY_ACTIONS,
  XidOverrideError,
  type XidCatalogEntry,
} from "../schema/xid-catalog.ts";

const DAY_MS = 24 * 3_600_000;

/** Every code docs/gpu-health.md names (NVIDIA's catalog and the public agents' lists), plus NVML's 999. */
const DOC_CODES = [
  8, 13, 31, 32, 43, 45, 48, 54, 61, 62, 63, 64, 68, 69, 74, 79, 92, 94, 95, 109, 110, 119, 120, 121, 123, 136, 137, 140, 143, 144, 145, 146, 147, 148, 149,
  150, 154, 155, 156, 158,
  // k8s-dp, GKE, aznhc, healthagent lists
  56, 57, 58, 65, 66, 73, 80, 81,
  // imbue's hardware ranges: 48, 56–58, 62–64, 68–77, 79–86, 88–89, 92, 94–105, 110–120, 122–125
  70, 71, 72, 75, 76, 77, 82, 83, 84, 85, 86, 88, 89, 96, 97, 98, 99, 100, 101, 102, 103, 104, 105, 111, 112, 113, 114, 115, 116, 117, 118, 122, 124, 125, 999,
];

function fixtureXidCodes(): number[] {
  const dir = path.join(import.meta.dir, "fixtures", "kmsg");
  const codes = new Set<number>();
  for (const file of fs.readdirSync(dir)) {
    if (file.endsWith(".json") || file.endsWith(".md")) continue;
    for (const f of parseKmsgText(fs.readFileSync(path.join(dir, file), "utf8"))) {
      if (f.xid !== undefined) codes.add(f.xid);
    }
  }
  return [...codes].sort((a, b) => a - b);
}

function snapshot(entries: Iterable<XidCatalogEntry>): string {
  return JSON.stringify([...entries]);
}

describe("the base catalog", () => {
  test("lists every code the design doc names", () => {
    const known = new Set(knownXidCodes());
    const missing = DOC_CODES.filter((c) => !known.has(c));
    expect(missing).toEqual([]);
  });

  test("every Xid in the kmsg fixtures is known", () => {
    const codes = fixtureXidCodes();
    expect(codes.length).toBeGreaterThan(15);
    for (const code of codes) expect({ code, known: lookupXid(code).known }).toEqual({ code, known: true });
  });

  test("every entry is well formed", () => {
    for (const [code, e] of XID_CATALOG.entries) {
      expect(e.code).toBe(code);
      expect(e.known).toBe(true);
      expect(e.ignored).toBe(false);
      expect(e.override).toBeUndefined();
      expect(SEVERITIES).toContain(e.severity);
      expect(ACTIONS).toContain(e.action);
      expect(XID_PERSISTENCES).toContain(e.persistence);
      expect(XID_CATEGORIES).toContain(e.category);
      expect(e.name).toMatch(/^[A-Z0-9_]+$/);
      expect(e.meaning.length).toBeGreaterThan(3);
      if (e.escalate) {
        expect(e.escalate.count).toBeGreaterThanOrEqual(2);
        expect(e.escalate.windowMs).toBeGreaterThan(0);
        expect(SEVERITIES).toContain(e.escalate.severity);
      }
      // A transient, app-caused code never starts out unhealthy.
      if (e.appCaused) expect(e.severity).not.toBe("unhealthy");
      if (e.severity === "healthy") expect(e.action).toBe("none");
    }
  });

  test.each([79, 48, 64, 74, 95, 119, 120, 140])("Xid %d is unhealthy and not transient", (code) => {
    const e = lookupXid(code);
    expect(e.severity).toBe("unhealthy");
    expect(e.persistence).not.toBe("transient");
    expect(e.appCaused).toBe(false);
    expect(e.action).not.toBe("none");
  });

  test("79 and a row-remap failure (64) never clear by themselves", () => {
    expect(lookupXid(79).persistence).toBe("fatal");
    expect(lookupXid(64).persistence).toBe("fatal");
    expect(lookupXid(48).persistence).toBe("reboot");
  });

  test.each([13, 31])("Xid %d is app-caused: degraded, with a repeat rule", (code) => {
    const e = lookupXid(code);
    expect(e.severity).toBe("degraded");
    expect(e.appCaused).toBe(true);
    expect(e.persistence).toBe("transient");
    expect(e.escalate).toEqual({ count: 3, windowMs: DAY_MS, severity: "unhealthy", action: "contact_support" });
  });

  test("43 is app-caused too; 45 has no repeat rule (NVSentinel #1710)", () => {
    expect(lookupXid(43)).toMatchObject({ severity: "degraded", appCaused: true });
    expect(lookupXid(43).escalate).toBeDefined();
    expect(lookupXid(45)).toMatchObject({ severity: "degraded", appCaused: true });
    expect(lookupXid(45).escalate).toBeUndefined();
  });

  test("NVIDIA's buckets are kept where the doc records them", () => {
    expect(lookupXid(79).nvidia).toEqual({ immediate: "RESTART_BM", investigatory: "CONTACT_SUPPORT" });
    expect(lookupXid(48).nvidia).toEqual({ immediate: "WORKFLOW_XID_48" });
    expect(lookupXid(149)).toMatchObject({ nvlink5Unit: "NETIR", nvidia: { immediate: "WORKFLOW_NVLINK5_ERR" } });
  });

  test("repeat rule: escalates at its count", () => {
    const e = lookupXid(31);
    expect(classifyXidOccurrence(e, 1)).toEqual({ severity: "degraded", action: "restart_app", escalated: false });
    expect(classifyXidOccurrence(e, 2)).toMatchObject({ escalated: false });
    expect(classifyXidOccurrence(e, 3)).toEqual({ severity: "unhealthy", action: "contact_support", escalated: true });
    expect(classifyXidOccurrence(lookupXid(79), 100)).toEqual({ severity: "unhealthy", action: "reboot", escalated: false });
  });

  test("unknown codes get a conservative default flagged known: false", () => {
    const e = lookupXid(4242);
    expect(e).toMatchObject({ code: 4242, known: false, severity: "degraded", action: "contact_support", ignored: false });
    expect(classifyXid(e).basis).toBe("unknown Xid");
  });

  test("the base catalog cannot be changed at run time", () => {
    const entry = lookupXid(79);
    expect(() => {
      (entry as { severity: string }).severity = "healthy";
    }).toThrow();
    expect(() => (XID_CATALOG.entries as Map<number, XidCatalogEntry>).set(1, entry)).toThrow();
    expect(() => (XID_CATALOG.entries as Map<number, XidCatalogEntry>).delete(79)).toThrow();
    expect(lookupXid(79).severity).toBe("unhealthy");
  });
});

describe("NVLink5 decode", () => {
  test("subcode is intrinfo bits 20–25", () => {
    expect(nvlink5SubCode(0x004505c6)).toBe(4);
    expect(nvlink5SubCode(0x00086226)).toBe(0);
    expect(nvlink5SubCode(0x0409a0c2)).toBe(0);
    expect(nvlink5SubCode(0xffffffff)).toBe(0x3f);
  });

  test("rule, then the kernel's token, then the catalog default", () => {
    const e = lookupXid(149);
    expect(classifyNvlink5(e, { intrinfo: 0x004505c6, errorStatus: 0, fatal: true })).toMatchObject({
      severity: "unhealthy",
      action: "contact_support",
      persistence: "fatal",
      subCode: 4,
    });
    expect(classifyNvlink5(e, { intrinfo: 0x000fe406, errorStatus: 0, fatal: true })).toMatchObject({ severity: "unhealthy", action: "reset_gpu" });
    expect(classifyNvlink5(e, { intrinfo: 0x00086226, errorStatus: 1, fatal: false })).toMatchObject({
      severity: "degraded",
      action: "none",
      persistence: "transient",
    });
    expect(classifyNvlink5(e, { intrinfo: 0, errorStatus: 0 })).toMatchObject({ severity: e.severity, action: e.action });
    // A subcode rule for 149 does not apply to 145.
    expect(classifyNvlink5(lookupXid(145), { intrinfo: 0x004505c6, errorStatus: 0, fatal: false })).toMatchObject({ severity: "degraded" });
  });

  test("an override beats the decode", () => {
    const catalog = applyXidOverrides({ "149": { severity: "degraded", action: "none" } });
    expect(classifyNvlink5(lookupXid(149, catalog), { intrinfo: 0x004505c6, errorStatus: 0, fatal: true })).toMatchObject({
      severity: "degraded",
      action: "none",
    });
  });
});

describe("Xid 154 recovery actions", () => {
  test("the driver's verdict is reported verbatim", () => {
    const e = lookupXid(154);
    expect(classifyXid(e, { recoveryActionTo: 1 })).toMatchObject({ severity: "unhealthy", action: "reset_gpu" });
    expect(classifyXid(e, { recoveryActionTo: 2 })).toMatchObject({ severity: "unhealthy", action: "reboot" });
    expect(classifyXid(e, { recoveryActionTo: 3 })).toMatchObject({ severity: "degraded" });
    expect(classifyXid(e, { recoveryActionTo: 0 })).toMatchObject({ severity: "healthy", action: "none" });
    expect(classifyXid(e, { recoveryActionTo: 99 })).toMatchObject({ severity: e.severity, action: e.action });
    expect([...XID154_RECOVERY_ACTIONS.keys()]).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  });
});

describe("applyXidOverrides", () => {
  test("applies severity, action, persistence, ignore and repeat rules to a new catalog", () => {
    const before = snapshot(XID_CATALOG.entries.values());
    const catalog = applyXidOverrides({
      "79": { severity: "degraded" },
      "94": { ignore: true },
      "13": { escalate: false },
      "31": { escalate: { count: 2, window_ms: 3_600_000 } },
      "43": { action: "reset_gpu", persistence: "reboot" },
      "500": { severity: "unhealthy", action: "replace" },
    });
    expect(lookupXid(79, catalog)).toMatchObject({ severity: "degraded", action: "reboot", override: { severity: "degraded" } });
    expect(lookupXid(94, catalog).ignored).toBe(true);
    expect(lookupXid(13, catalog).escalate).toBeUndefined();
    expect(lookupXid(31, catalog).escalate).toEqual({ count: 2, windowMs: 3_600_000, severity: "unhealthy", action: "contact_support" });
    expect(lookupXid(43, catalog)).toMatchObject({ action: "reset_gpu", persistence: "reboot", severity: "degraded" });
    expect(lookupXid(500, catalog)).toMatchObject({ known: false, severity: "unhealthy", action: "replace" });
    expect(lookupXid(48, catalog)).toBe(lookupXid(48));

    // The base table is untouched.
    expect(snapshot(XID_CATALOG.entries.values())).toBe(before);
    expect(lookupXid(79).severity).toBe("unhealthy");
    expect(lookupXid(94).ignored).toBe(false);
    expect(lookupXid(13).escalate).toBeDefined();
    expect(XID_CATALOG.entries.has(500)).toBe(false);
  });

  test("overrides stack on an overridden catalog", () => {
    const a = applyXidOverrides({ "79": { severity: "degraded" } });
    const b = applyXidOverrides({ "79": { action: "replace" } }, a);
    expect(lookupXid(79, b)).toMatchObject({ severity: "degraded", action: "replace", override: { severity: "degraded", action: "replace" } });
    expect(lookupXid(79, a).action).toBe("reboot");
  });

  test("nothing to apply returns the base", () => {
    expect(applyXidOverrides(undefined)).toBe(XID_CATALOG);
    expect(applyXidOverrides(null)).toBe(XID_CATALOG);
    expect(lookupXid(79, applyXidOverrides({}))).toEqual(lookupXid(79));
  });

  function issuesOf(input: unknown, opts?: { path?: string }): string[] {
    try {
      applyXidOverrides(input, XID_CATALOG, opts);
    } catch (err) {
      expect(err).toBeInstanceOf(XidOverrideError);
      return (err as XidOverrideError).issues.map((i) => `${i.path}: ${i.message}`);
    }
    throw new Error("expected a validation error");
  }

  test("a bad severity names the code, the field and the value", () => {
    const [issue] = issuesOf({ "79": { severity: "fatal" } });
    expect(issue).toContain('xid_overrides["79"].severity');
    expect(issue).toContain('"fatal"');
    expect(issue).toContain("healthy, degraded, unhealthy");
    try {
      applyXidOverrides({ "79": { severity: "fatal" } });
    } catch (err) {
      expect((err as Error).message).toContain('xid_overrides["79"].severity: must be one of healthy, degraded, unhealthy (got "fatal")');
    }
  });

  test.each([
    [{ "48": { action: "rma" } }, 'xid_overrides["48"].action', '"rma"'],
    [{ "48": { persistence: "forever" } }, 'xid_overrides["48"].persistence', '"forever"'],
    [{ "48": { ignore: "yes" } }, 'xid_overrides["48"].ignore', '"yes"'],
    [{ "48": { sevrity: "degraded" } }, 'xid_overrides["48"].sevrity', "unknown field"],
    [{ "48": "unhealthy" }, 'xid_overrides["48"]', '"unhealthy"'],
    [{ xid79: {} }, 'xid_overrides["xid79"]', "not an Xid code"],
    [{ "0": {} }, 'xid_overrides["0"]', "not an Xid code"],
    [{ "31": { escalate: { count: 0, window_ms: 1000 } } }, 'xid_overrides["31"].escalate.count', "0"],
    [{ "31": { escalate: { count: 2 } } }, 'xid_overrides["31"].escalate.window_ms', "undefined"],
    [{ "31": { escalate: true } }, 'xid_overrides["31"].escalate', "true"],
    [[{ "79": {} }], "xid_overrides", "Array"],
    ["79=fatal", "xid_overrides", '"79=fatal"'],
  ])("%p is rejected at %p", (input, where, mentions) => {
    const issues = issuesOf(input);
    expect(issues.length).toBeGreaterThan(0);
    const hit = issues.find((i) => i.startsWith(`${where}:`));
    expect(hit ?? issues.join("\n")).toContain(mentions);
  });

  test("every problem is reported at once, under the caller's key path", () => {
    const issues = issuesOf({ "79": { severity: "fatal", action: "rma" }, "13": { ignore: 1 } }, { path: "pools[0].health.xid_overrides" });
    expect(issues.length).toBe(3);
    expect(issues.every((i) => i.startsWith("pools[0].health.xid_overrides["))).toBe(true);
  });

  test("a rejected override leaves everything as it was", () => {
    const before = snapshot(XID_CATALOG.entries.values());
    expect(() => applyXidOverrides({ "79": { severity: "degraded" }, "13": { severity: "bad" } })).toThrow(XidOverrideError);
    expect(snapshot(XID_CATALOG.entries.values())).toBe(before);
  });
});
