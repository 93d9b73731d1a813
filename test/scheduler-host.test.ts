// The owner's side of the scheduler contract: node views, mapping records, and a human's
// return of a node to service in the scheduler, on the real loop and store.
import { afterEach, expect, test } from "bun:test";
import { storeSchedulerHost } from "../reconciler/schedulers/host.ts";
import { schedulerNode } from "../reconciler/schedulers/scheduler.ts";
import { closeFleets, FAST_SERVER, fleet, pool } from "./fleet-harness.ts";

afterEach(closeFleets);

test("views, mapping records, and an external uncordon that cancels, finds nothing to cancel, or does not know the node", async () => {
  const f = await fleet(`${FAST_SERVER}pools:\n${pool("host", 2, 2, "      unhealthy_threshold: 1\n      remediation: replace\n")}`);
  await f.until(async () => (await f.count("ready", "host")) === 2);
  const [a, b] = (await f.all()).map((n) => n.id);
  const host = storeSchedulerHost({ store: f.store, log: () => undefined, now: f.now });

  const views = await host.nodes();
  expect(views.map((view) => view.id).sort()).toEqual([a!, b!].sort());
  const view = views.find((x) => x.id === a)!;
  expect(view).toMatchObject({ id: a, hostname: a, pool: "host", mappedName: null, state: "ready", cordonedBy: null, incidentId: null });
  expect(view.instanceId).toStartWith("sim-");
  // A view carries nothing a plug-in could write back through.
  expect(Object.keys(schedulerNode(await f.node(a!), async () => [])).sort()).toEqual(
    ["cordonedBy", "hostname", "id", "incidentId", "instanceId", "lastHeartbeatAt", "mappedName", "pool", "readings", "state", "stateReason", "verdict"].sort(),
  );

  // A mapping is recorded without a state change (the loop's compare-and-set is untouched).
  const version = (await f.node(a!)).version;
  await host.recordMapping(a!, "gpu07");
  expect(await f.node(a!)).toMatchObject({ k8sNodeName: "gpu07", version });

  // Taken out by Navarch, then returned to service by a human in the scheduler.
  await f.agents.xid(a!, 79, 0);
  await f.until(async () => (await f.node(a!)).state === "draining" || (await f.node(a!)).state === "cordoned");
  const incidentId = (await f.node(a!)).incidentId;
  expect(await host.externalUncordon(a!, "slurm (scontrol update state=resume of node gpu07)")).toBe("cancelled");
  expect(await f.node(a!)).toMatchObject({ state: "ready", incidentId: null, cordonedBy: null });
  expect(incidentId).not.toBeNull();
  // In service already: nothing to cancel. Unknown: another reconciler's node.
  expect(await host.externalUncordon(b!, "slurm")).toBe("nothing_to_cancel");
  expect(await host.externalUncordon("not-ours", "slurm")).toBe("unknown_node");
});
