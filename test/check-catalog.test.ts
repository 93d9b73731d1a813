// The one catalog of checks (schema/checks.ts) and what is derived from it: the reconciler's
// edge checks and Xid twins, the agent's sticky findings. The two programs can no longer disagree
// by hand.
import { describe, expect, test } from "bun:test";
import { CHECKS, CHECK_NAMES, CHECK_XID_TWINS, EDGE_CHECKS, isSticky } from "../schema/checks.ts";
import { HealthEvent } from "../schema/wire.ts";
import { CHECK_XID_EQUIVALENTS } from "../reconciler/health/default-policy.ts";
import { EDGE_CHECKS as POLICY_EDGE_CHECKS } from "../reconciler/health/findings.ts";
import { defaultHealthPolicy } from "../reconciler/health/compile-policy.ts";
import { lookupXid } from "../schema/xid-catalog.ts";
import * as v from "valibot";

describe("the check catalog", () => {
  test("every name is a valid check name on the wire", () => {
    for (const check of CHECK_NAMES) {
      const event = { seq: 1, time: new Date().toISOString(), bootId: "b", check, severity: "degraded", action: "none", message: "m" };
      expect(v.safeParse(HealthEvent, event).success).toBe(true);
    }
  });

  test("edges are the one-off occurrences: Xids, SXids, crash dumps", () => {
    expect([...EDGE_CHECKS].sort()).toEqual(["gpu_crash_dump", "sxid", "xid"]);
    expect(POLICY_EDGE_CHECKS).toBe(EDGE_CHECKS);
  });

  test("the reconciler's Xid twins are the catalog's", () => {
    expect(CHECK_XID_EQUIVALENTS).toBe(CHECK_XID_TWINS);
    expect(CHECK_XID_TWINS.map((t) => `${t.check}/${t.code ?? "*"}→${t.xid}`)).toEqual([
      "gpu_lost/*→79",
      "ecc/dbe→48",
      "row_remap/failed→64",
      "row_remap/pending→63",
    ]);
    for (const twin of CHECK_XID_TWINS) expect(lookupXid(twin.xid).known).toBe(true);
  });

  test("a twin takes its Xid's persistence at the reconciler", () => {
    const policy = defaultHealthPolicy();
    const judge = (check: string, code: string) =>
      policy.evaluate(
        {
          event: { seq: 1, time: new Date().toISOString(), bootId: "b", check, code, severity: "unhealthy", action: "replace", message: "m" },
          node: { id: "n", bootId: "b" },
        },
        [],
        Date.now(),
      );
    expect(judge("gpu_lost", "lost").persistence).toBe(lookupXid(79).persistence);
    expect(judge("row_remap", "failed").persistence).toBe(lookupXid(64).persistence);
    expect(judge("thermal", "shutdown").persistence).toBe("transient");
  });

  test("sticky: the codes the catalog says, and anything that asks for a replacement", () => {
    expect(isSticky({ check: "gpu_lost", code: "lost" })).toBe(true);
    expect(isSticky({ check: "row_remap", code: "failed" })).toBe(true);
    expect(isSticky({ check: "row_remap", code: "pending" })).toBe(false);
    expect(isSticky({ check: "thermal", code: "shutdown" })).toBe(false);
    expect(isSticky({ check: "recovery_action", code: "unknown", action: "replace" })).toBe(true);
    expect(isSticky({ check: "not_a_check", code: "lost" })).toBe(false);
  });

  test("every level check but the open-ended ones lists its codes", () => {
    const openEnded = ["gpu_unreadable", "recovery_action", "fabric"];
    for (const name of CHECK_NAMES) {
      const spec = CHECKS[name];
      if (spec.kind === "level" && !openEnded.includes(name)) expect([name, "codes" in spec]).toEqual([name, true]);
    }
  });
});
