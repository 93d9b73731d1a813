import { describe, expect, test } from "bun:test";
import type { Finding } from "../agent/checks/finding.ts";
import { IncidentTracker, incidentKey } from "../agent/checks/incident-tracker.ts";

const gpu = { index: 2, uuid: "GPU-2", pciBusId: "00000000:3B:00.0" };
const xid = (code: number, message = ""): Finding => ({ check: "xid", code: String(code), severity: "unhealthy", action: "reset_gpu", gpu, message });

describe("incident tracker", () => {
  test("a flood of one Xid is one event, then one count update per repeat window", () => {
    const t = new IncidentTracker({ repeatReportMs: 1000 });
    expect(t.occur({ finding: xid(48), source: "nvml_event", at: 0, sticky: true })).toMatchObject({ code: "48" });
    for (let i = 1; i < 500; i++) expect(t.occur({ finding: xid(48), source: "nvml_event", at: i, sticky: true })).toBeUndefined();
    expect(t.due(500)).toEqual([]);
    const update = t.due(1000);
    expect(update).toHaveLength(1);
    expect(update[0]).toMatchObject({ code: "48", count: 500 });
    expect(t.due(5000)).toEqual([]);
  });

  test("the same fault from NVML and the kernel log is one incident, counted once", () => {
    const t = new IncidentTracker();
    expect(t.occur({ finding: xid(79), source: "nvml_event", at: 0, sticky: true })).toBeDefined();
    expect(
      t.occur({ finding: xid(79, "NVRM: Xid (PCI:0000:3b:00): 79, pid=1, GPU has fallen off the bus."), source: "kmsg", at: 5, sticky: true }),
    ).toBeUndefined();
    expect(t.due(60_000)).toEqual([]);
    expect(t.current()).toHaveLength(1);
    expect(t.current()[0]?.count).toBeUndefined();
  });

  test("different GPUs or codes are different incidents", () => {
    expect(incidentKey(xid(79))).not.toBe(incidentKey({ ...xid(79), gpu: { ...gpu, pciBusId: "00000000:86:00.0" } }));
    expect(incidentKey(xid(79))).not.toBe(incidentKey(xid(48)));
  });

  test("a transient Xid closes after a quiet period; repeats escalate within the window", () => {
    const t = new IncidentTracker({ quietMs: 60_000 });
    const rule = { count: 3, windowMs: 24 * 3_600_000, severity: "unhealthy" as const, action: "contact_support" as const };
    const app = (at: number) =>
      t.occur({ finding: { ...xid(13), severity: "degraded", action: "restart_app" }, source: "kmsg", at, sticky: false, escalate: rule });
    expect(app(0)?.severity).toBe("degraded");
    expect(app(3_600_000)?.severity).toBe("degraded"); // quiet for an hour: a new incident
    const third = app(7_200_000);
    expect(third?.severity).toBe("unhealthy");
    expect(third?.message).toContain("3 times within 24 h");
  });

  test("a level condition that clears reports healthy; a sticky one never does", () => {
    const t = new IncidentTracker();
    const hot: Finding = { check: "thermal", code: "slowdown", severity: "degraded", action: "none", gpu, message: "GPU 2: 91°C" };
    const remap: Finding = { check: "row_remap", code: "failed", severity: "unhealthy", action: "replace", gpu, message: "failed" };
    const sticky = (f: Finding) => f.check === "row_remap";
    expect(t.poll([hot, remap], 0, sticky)).toHaveLength(2);
    expect(t.poll([{ ...hot, message: "GPU 2: 93°C" }, remap], 1, sticky)).toEqual([]);
    const cleared = t.poll([], 2, sticky);
    expect(cleared).toEqual([{ ...hot, message: "recovered: GPU 2: 93°C", severity: "healthy", action: "none" }]);
    expect(t.current().map((f) => f.check)).toEqual(["row_remap"]);
  });
});
