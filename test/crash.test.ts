// kill -9 the reconciler at each step of a replacement and restart it: exactly one
// replacement exists, no instance leaks, nothing is terminated twice.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { appendEvents } from "../reconciler/nodes/agent-reports.ts";
import type { SimulatedCloudState } from "../reconciler/providers/simulated.ts";
import { openStore } from "../reconciler/store/store.ts";
import { nodes } from "../schema/db.ts";
import { CRASH_POINTS, REBOOT_CRASH_POINTS } from "./crash/points.ts";
import { BUN, REPO_ROOT, tempDir } from "./support.ts";

function child(dir: string, point: string, until: string, remediation = "replace") {
  const r = Bun.spawnSync([BUN, join(REPO_ROOT, "test/crash/child.ts"), dir, point, until, "200", remediation], { stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode, signal: r.signalCode, output: r.stdout.toString() + r.stderr.toString() };
}

describe("crash safety: kill -9 during a replacement", () => {
  for (const point of CRASH_POINTS) {
    test(`crash ${point}`, async () => {
      const dir = tempDir("navarch-crash-");
      expect(child(dir, "none", "ready3").code).toBe(0);

      // A fatal fault on one node, as its agent would push it.
      const store = await openStore({ url: `file:${join(dir, "navarch.db")}` });
      const [victim] = await store.db.select().from(nodes).limit(1);
      const clock = Number(readFileSync(join(dir, "clock"), "utf8"));
      await appendEvents(
        store.db,
        {
          nodeId: victim!.id,
          events: [
            {
              seq: 1,
              time: new Date(clock).toISOString(),
              bootId: victim!.bootId!,
              check: "xid",
              code: "79",
              severity: "unhealthy",
              action: "replace",
              message: "GPU has fallen off the bus",
            },
          ],
        },
        () => clock,
      );
      store.close();

      const crashed = child(dir, point, "replaced");
      expect({ point, signal: crashed.signal, output: crashed.output.slice(-2000) }).toMatchObject({ point, signal: "SIGKILL" });
      expect(readFileSync(join(dir, "crashed-at"), "utf8")).toBe(point);
      const resumed = child(dir, "none", "replaced");
      expect({ code: resumed.code, output: resumed.output.slice(-2000) }).toMatchObject({ code: 0 });

      const after = await openStore({ url: `file:${join(dir, "navarch.db")}` });
      const rows = await after.db.select().from(nodes);
      after.close();
      const cloud = JSON.parse(readFileSync(join(dir, "cloud.json"), "utf8")) as SimulatedCloudState;
      const live = cloud.records.filter((r) => r.instance.state !== "terminated");
      // Exactly one replacement of the faulty node.
      expect(rows.filter((n) => n.replacementOf === victim!.id)).toHaveLength(1);
      // No leak: every running instance belongs to a live node, and there are exactly three.
      const liveNodes = rows.filter((n) => n.state === "ready");
      expect(liveNodes).toHaveLength(3);
      expect(live.map((r) => r.instance.id).sort()).toEqual(liveNodes.map((n) => n.instanceName!).sort());
      // Nothing terminated twice; only the faulty node's instance terminated.
      const terminated = cloud.records.filter((r) => r.terminateCalls > 0);
      expect(terminated.map((r) => [r.instance.name, r.terminateCalls])).toEqual([[victim!.id, 1]]);
      // No duplicate launch: one instance per node that was ever launched.
      expect(cloud.records).toHaveLength(4);
    }, 60_000);
  }
});

describe("crash safety: kill -9 at each rung of a reboot", () => {
  for (const point of REBOOT_CRASH_POINTS) {
    test(`crash ${point}`, async () => {
      const dir = tempDir("navarch-crash-reboot-");
      expect(child(dir, "none", "ready3", "reboot_first").code).toBe(0);
      const store = await openStore({ url: `file:${join(dir, "navarch.db")}` });
      const [victim] = await store.db.select().from(nodes).limit(1);
      const clock = Number(readFileSync(join(dir, "clock"), "utf8"));
      // Xid 79: the catalog recommends a reboot.
      await appendEvents(
        store.db,
        {
          nodeId: victim!.id,
          events: [
            {
              seq: 1,
              time: new Date(clock).toISOString(),
              bootId: victim!.bootId!,
              check: "xid",
              code: "79",
              severity: "unhealthy",
              action: "reboot",
              message: "GPU has fallen off the bus",
            },
          ],
        },
        () => clock,
      );
      store.close();

      const crashed = child(dir, point, "rebooted", "reboot_first");
      expect({ point, signal: crashed.signal, output: crashed.output.slice(-2000) }).toMatchObject({ point, signal: "SIGKILL" });
      const resumed = child(dir, "none", "rebooted", "reboot_first");
      expect({ code: resumed.code, output: resumed.output.slice(-2000) }).toMatchObject({ code: 0 });

      const after = await openStore({ url: `file:${join(dir, "navarch.db")}` });
      const rows = await after.db.select().from(nodes);
      after.close();
      const cloud = JSON.parse(readFileSync(join(dir, "cloud.json"), "utf8")) as SimulatedCloudState;
      // The same machine is back in service: no replacement, nothing terminated, one reboot.
      expect(
        rows
          .filter((n) => n.state === "ready")
          .map((n) => n.id)
          .sort(),
      ).toEqual(rows.map((n) => n.id).sort());
      expect(rows.find((n) => n.id === victim!.id)?.bootId).not.toBe(victim!.bootId);
      expect(cloud.records).toHaveLength(3);
      expect(cloud.records.filter((r) => r.terminateCalls > 0)).toEqual([]);
      expect(cloud.calls.reboot).toBe(1);
    }, 60_000);
  }
});
