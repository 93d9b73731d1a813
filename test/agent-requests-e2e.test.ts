// Requests to agents through the compiled binaries: `navarch serve` with a local pool whose
// machines run the compiled navarch-node (on the fake libnvidia-ml) with an agent configuration
// file (--config), copied where no node_modules is. An operator asks a node, with `navarch nodes
// run-check --wait`, for a check its file defines (succeeded, with its output), for one it does
// not (refused, and nothing ran), and for one that hangs past its timeout (timed out, its
// process group killed). An agent that is stopped never gets its request: it expires, and the
// agent started again does not run it.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CompiledFleet, type Proc } from "./compiled.ts";
import { FAKE_NVML, buildFakeNvml } from "./fake-nvml/control.ts";
import { waitFor } from "./support.ts";

interface NodeView {
  id: string;
  state: string;
  lastHeartbeatAt: number | null;
}

let fleet: CompiledFleet;
let agentYaml = "";
const ran = () => join(fleet.dir, "ran");
const slowPid = () => join(fleet.dir, "slow.pid");
const list = async () => (await fleet.api<{ nodes: NodeView[] }>("/v1/nodes"))?.nodes ?? [];
const runCheck = (...args: string[]) =>
  fleet.run([fleet.navarch, "nodes", "run-check", ...args, "-s", fleet.url], { NAVARCH_AUTH_TOKEN: fleet.token, NAVARCH_ACTOR: "e2e@test" });

function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

beforeAll(async () => {
  buildFakeNvml();
  fleet = await CompiledFleet.create();
  agentYaml = join(fleet.dir, "agent.yaml");
  writeFileSync(
    agentYaml,
    [
      "checks:",
      "  dcgm-diag:",
      `    run: 'echo "$NAVARCH_CHECK $NAVARCH_REQUEST_ID: all tests passed"; echo "token=[\${NAVARCH_AUTH_TOKEN:-withheld}]"; echo x >> ${ran()}'`,
      "    timeout: 30s",
      "  slow:",
      `    run: 'sleep 300 & echo $! > ${slowPid()}; echo waiting; wait'`,
      "    timeout: 1s",
      "",
    ].join("\n"),
  );
  // The local provider starts this "agent binary": the compiled agent with its configuration.
  const agent = join(fleet.dir, "navarch-node-configured");
  writeFileSync(agent, `#!/bin/sh\nexec ${fleet.navarchNode} --config ${agentYaml} --infiniband-dir none --sysfs-root ${fleet.dir} "$@"\n`);
  chmodSync(agent, 0o755);
  fleet.writeConfig(
    `providers:\n  local:\n    agent_binary: ${agent}\n    nvml_library: ${FAKE_NVML.full}\n    nodes_dir: ${join(fleet.dir, "local-nodes")}\npools:\n  - name: gpu\n    provider: local\n    instance_type: local-4gpu\n    region: local\n    scaling:\n      min_nodes: 1\n      max_nodes: 1\n`,
  );
  fleet.startServer();
  await fleet.waitReady();
}, 240_000);

afterAll(async () => {
  fleet.stop();
  await fleet.terminateLocalNodes(join(fleet.dir, "local-nodes"));
});

describe("requests to agents with compiled binaries", () => {
  test("a defined check succeeds with its output; an undefined one is refused and nothing runs; one past its timeout is killed", async () => {
    const node = await waitFor("the local node ready", async () => (await list()).find((n) => n.state === "ready"), 90_000);
    const ok = await runCheck(node.id, "dcgm-diag", "--wait", "--reason", "acceptance");
    expect({ code: ok.code, stderr: ok.stderr }).toEqual({ code: 0, stderr: "" });
    expect(ok.stdout).toMatch(/^succeeded \(exit 0, ran \d+s\)$/m);
    expect(ok.stdout).toMatch(/^dcgm-diag req_[0-9a-f]{24}: all tests passed$/m);
    expect(ok.stdout).toContain("token=[withheld]");
    expect(readFileSync(ran(), "utf8")).toBe("x\n");

    const refused = await runCheck(node.id, "nccl-all-reduce", "--wait");
    expect(refused.code).toBe(1);
    expect(refused.stdout).toContain(`refused: check nccl-all-reduce is not defined in this machine's configuration (${agentYaml} defines dcgm-diag, slow)`);
    expect(readFileSync(ran(), "utf8")).toBe("x\n");

    const slow = await runCheck(node.id, "slow", "--wait", "-o", "json");
    expect(slow.code).toBe(1);
    const answer = JSON.parse(slow.stdout) as { state: string; signal: string | null; output: string; detail: string };
    expect(answer).toMatchObject({ state: "timed_out", signal: "SIGTERM", output: "waiting\n" });
    expect(answer.detail).toBe("check slow ran past its timeout of 1s; its process group was killed");
    const orphan = Number(readFileSync(slowPid(), "utf8"));
    await waitFor("the check's background process killed", () => (!alive(orphan) ? true : undefined), 5000);

    // What the operator did, and what the agent answered, is in the node's audit trail.
    const audit =
      (await fleet.api<{ audit: { actor: string; action: string; target: string; details: { state?: string } }[] }>("/v1/audit?limit=50"))?.audit ?? [];
    const mine = audit.filter((a) => a.target === node.id && a.action.startsWith("agent_request"));
    expect(mine.filter((a) => a.action === "agent_request").map((a) => a.actor)).toEqual(["e2e@test", "e2e@test", "e2e@test"]);
    expect(mine.filter((a) => a.action === "agent_request_done").map((a) => a.details.state)).toEqual(["timed_out", "refused", "succeeded"]);
  }, 150_000);

  test("an agent that is stopped: its request expires, and started again it does not run it", async () => {
    const start = (): Proc => fleet.startAgent("monitored-1", ["--config", agentYaml, "--nvml-library", join(fleet.dir, "no-nvml", "libnvidia-ml.so.1")]);
    let agent = start();
    await waitFor(
      "the monitored node registered",
      async () => ((await list()).find((n) => n.id === "monitored-1")?.lastHeartbeatAt ? true : undefined),
      30_000,
    );
    agent.kill("SIGTERM");
    expect(await agent.exited).toBe(0);
    const before = existsSync(ran()) ? readFileSync(ran(), "utf8") : "";
    const expired = await runCheck("monitored-1", "dcgm-diag", "--wait", "--deadline", "3s");
    expect(expired.code).toBe(1);
    expect(expired.stdout).toContain("expired: not delivered by its deadline: the node's agent did not heartbeat (stopped, or unreachable)");
    agent = start();
    const heartbeatAfter = Date.now();
    await waitFor(
      "heartbeats again",
      async () => {
        const n = (await list()).find((x) => x.id === "monitored-1");
        return n?.lastHeartbeatAt !== undefined && n.lastHeartbeatAt !== null && n.lastHeartbeatAt > heartbeatAfter + 2000 ? true : undefined;
      },
      30_000,
    );
    expect(fleet.output.get("monitored-1") ?? "").not.toContain("requests:");
    expect(existsSync(ran()) ? readFileSync(ran(), "utf8") : "").toBe(before);
    agent.kill("SIGTERM");
    await agent.exited;
  }, 90_000);
});
