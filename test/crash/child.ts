// A reconciler process for the crash tests. It runs passes on virtual time over a
// libSQL file, with a simulated cloud whose state lives in a JSON file (the cloud
// outlives the reconciler), and kills itself with SIGKILL the first time it
// reaches the crash point given, right after the cloud or scheduler acted.
//   bun test/crash/child.ts DIR CRASH_POINT UNTIL MAX_PASSES
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseConfig } from "../../reconciler/config/load.ts";
import { defaultHealthPolicy } from "../../reconciler/health/compile-policy.ts";
import { Reconciler } from "../../reconciler/lifecycle/loop.ts";
import { NO_SCHEDULER, type SchedulerMirror } from "../../reconciler/schedulers/scheduler.ts";
import type { Provider } from "../../reconciler/providers/provider.ts";
import { SimulatedCloud, type SimulatedCloudState } from "../../reconciler/providers/simulated.ts";
import { SimulatedAgents } from "../../reconciler/sim/agents.ts";
import { openStore } from "../../reconciler/store/store.ts";
import { nodes } from "../../schema/db.ts";
import type { CrashPoint } from "./points.ts";

const [dir = ".", point = "none", until = "ready3", maxPasses = "200", remediation = "replace"] = process.argv.slice(2);
const clockFile = join(dir, "clock");
const cloudFile = join(dir, "cloud.json");
let clock = existsSync(clockFile) ? Number(readFileSync(clockFile, "utf8")) : Date.parse("2026-11-21T00:00:00Z");
const now = () => clock;

const cloud = new SimulatedCloud({ name: "local", now, launchLatencyMs: 10_000, rebootLatencyMs: 30_000 });
if (existsSync(cloudFile)) cloud.restore(JSON.parse(readFileSync(cloudFile, "utf8")) as SimulatedCloudState);
const save = () => {
  writeFileSync(cloudFile, JSON.stringify(cloud.snapshot()));
  writeFileSync(clockFile, String(clock));
};
const crash = (at: CrashPoint) => {
  if (at !== point) return;
  save();
  writeFileSync(join(dir, "crashed-at"), at);
  process.kill(process.pid, "SIGKILL");
};

const provider: Provider = {
  name: "local",
  async launch(req) {
    crash("before-launch");
    const i = await cloud.launch(req);
    crash("after-launch");
    return i;
  },
  async terminate(id) {
    crash("before-terminate");
    await cloud.terminate(id);
    crash("after-terminate");
  },
  async get(id) {
    const i = await cloud.get(id);
    if (i?.state === "terminated") crash("after-confirm-gone");
    return i;
  },
  ...(remediation === "reboot_first"
    ? {
        async reboot(id: string) {
          crash("before-reboot");
          await cloud.reboot(id);
          crash("after-reboot");
        },
      }
    : {}),
  list: (tags) => cloud.list(tags),
  instanceTypes: () => cloud.instanceTypes(),
};
const scheduler: SchedulerMirror = {
  name: "crash-test",
  async cordon(node, reason, incident) {
    await NO_SCHEDULER.cordon(node, reason, incident);
    crash("after-cordon");
  },
  uncordon: (node) => NO_SCHEDULER.uncordon(node),
  async drain(node, deadline, at) {
    const progress = await NO_SCHEDULER.drain(node, deadline, at);
    crash("during-drain");
    return progress;
  },
};

const parsed = parseConfig(
  `server:\n  heartbeat_interval: 10s\n  health_check_interval: 10s\npools:\n  - name: train\n    provider: local\n    instance_type: local-8gpu\n    region: local\n    scaling:\n      min_nodes: 3\n      max_nodes: 3\n    health:\n      drain_timeout: 5m\n      remediation: ${remediation}\n`,
  "crash-test",
);
if (!parsed.ok) throw new Error(JSON.stringify(parsed.problems));
const store = await openStore({ url: `file:${join(dir, "navarch.db")}` });
const agents = new SimulatedAgents(store.db, cloud, now);
const reconciler = new Reconciler({ store, config: parsed.config, providers: new Map([["local", provider]]), scheduler, policy: defaultHealthPolicy(), now });

const done = async () => {
  const rows = await store.db.select().from(nodes);
  const ready = rows.filter((n) => n.state === "ready").length;
  if (until === "ready3") return ready === 3;
  // "rebooted": three ready nodes, one of them back from a reboot, and none replaced.
  if (until === "rebooted") return ready === 3 && rows.every((n) => n.incidentId === null) && cloud.calls.reboot > 0;
  // "replaced": three ready nodes and the faulty one terminated.
  return ready === 3 && rows.some((n) => n.state === "terminated");
};
for (let i = 0; i < Number(maxPasses) && !(await done()); i++) {
  clock += 5000;
  await agents.tick();
  const report = await reconciler.pass();
  save();
  // Killed while the machine reboots, with the reconciler waiting for its new boot.
  if (
    report.transitions.some((t) => t.to === "rebooting") ||
    (await store.db.select().from(nodes)).some((n) => n.state === "rebooting" && cloud.calls.reboot > 0)
  )
    crash("while-rebooting");
}
save();
const finished = await done();
store.close();
process.exit(finished ? 0 : 3);
