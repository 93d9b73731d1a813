// The local provider against a real reconciler: its instances are navarch-node processes run
// from source (`bun agent/main.ts`, what resolveAgentCommand() picks under `bun test`; the
// compiled binaries would be rebuilt whenever any source is newer, which costs far more than the
// agent's start-up here) with the fake libnvidia-ml. State on disk survives the provider object
// and the process that launched the agents (kill -9 included); a dead process is a terminated
// instance and is never resurrected; faults injected through the FIFO and the kernel-log file
// arrive as stored events.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { getNodeDetail } from "../reconciler/nodes/agent-reports.ts";
import { resolveAgentCommand } from "../reconciler/providers/local/agent-process.ts";
import { LocalNodesDir } from "../reconciler/providers/local/nodes-dir.ts";
import { LocalProvider, type LocalProviderOptions } from "../reconciler/providers/local/provider.ts";
import { ProviderError, TAG_MANAGED_BY, TAG_OPERATION, TAG_POOL, type LaunchRequest } from "../reconciler/providers/provider.ts";
import { startReconciler, type Reconciler } from "../reconciler/app/serve.ts";
import { FAKE_NVML, buildFakeNvml } from "./fake-nvml/control.ts";
import { BUN, tempDir, waitFor } from "./support.ts";

const TOKEN = "local-provider-test-token";
process.env.NAVARCH_LOCAL_PROVIDER_TEST_TOKEN = TOKEN;
const POOL = "lp";
const AGENT = resolveAgentCommand();

let rec: Reconciler;
let dataDir: string;
let nodesDir: string;
/** Every nodes_dir a test used: afterAll kills every process whose command line names one. */
const nodesDirs: string[] = [];
/** Launcher processes (the kill -9 test). */
const launchers: { kill: (signal?: number | NodeJS.Signals) => void }[] = [];

function options(extra: Partial<LocalProviderOptions> = {}): LocalProviderOptions {
  return {
    nodesDir,
    serverUrl: rec.url,
    authToken: TOKEN,
    agentCommand: AGENT,
    nvmlLibrary: FAKE_NVML.full,
    pollIntervalSeconds: 0.2,
    terminateGraceMs: 3000,
    ...extra,
  };
}

function request(name: string, instanceType = "local-4gpu", operation = `op_${name}`): LaunchRequest {
  return {
    name,
    idempotencyKey: operation,
    pool: POOL,
    instanceType,
    region: "local",
    tags: { [TAG_MANAGED_BY]: "navarch", [TAG_POOL]: POOL, [TAG_OPERATION]: operation },
  };
}

/** Live (not zombie) processes whose command line contains every one of `parts`. */
function processesWith(...parts: string[]): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let args: string[];
    try {
      args = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0");
    } catch {
      continue;
    }
    if (parts.every((p) => args.some((a) => a.includes(p)))) pids.push(Number(entry));
  }
  return pids.filter((pid) => pid !== process.pid);
}

/** The agent processes of one instance (matched by its node id and its directory). */
function agentPids(name: string, dir = nodesDir): number[] {
  return processesWith("--node-id", `${dir}/${name}/agent-state`);
}

function parentOf(pid: number): number | undefined {
  return statField(pid, 4);
}

async function providerError(p: Promise<unknown>): Promise<ProviderError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof ProviderError) return err;
    throw err;
  }
  throw new Error("expected a ProviderError");
}

const detail = (id: string) => getNodeDetail(rec.store.db, id, 1000);

async function registered(id: string, gpus: number) {
  return waitFor(
    `${id} registered with ${gpus} GPUs and checked`,
    async () => {
      const d = await detail(id);
      return d !== undefined && d.gpus.length === gpus && d.node.agentHealth !== null ? d : undefined;
    },
    20_000,
  );
}

beforeAll(async () => {
  buildFakeNvml();
  dataDir = tempDir("navarch-local-provider-");
  nodesDir = join(dataDir, "local-nodes");
  nodesDirs.push(nodesDir);
  rec = await startReconciler(
    {
      host: "127.0.0.1",
      port: 0,
      dataDir,
      databaseUrl: `file:${dataDir}/navarch.db`,
      authTokenEnv: "NAVARCH_LOCAL_PROVIDER_TEST_TOKEN",
      heartbeatIntervalSeconds: 1,
    },
    () => undefined,
  );
}, 60_000);

/** Field `index` (1-based, as in proc(5)) of /proc/PID/stat. */
function statField(pid: number, index: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[index - 3]);
  } catch {
    return undefined;
  }
}

/**
 * SIGKILLs every agent started under one of our nodes_dirs: processes whose command line names
 * the directory, and the pids the records hold (matched by start time: a process just spawned
 * may not have exec'd the agent yet), each with its process group.
 */
function killAgents(): void {
  const pids = new Set<number>();
  for (const dir of nodesDirs) {
    for (const pid of processesWith(dir)) pids.add(pid);
    const layout = new LocalNodesDir(dir);
    for (const name of layout.names()) {
      const r = layout.read(name, () => undefined);
      if (r?.pid !== undefined && statField(r.pid, 22) === r.startTime) pids.add(r.pid);
    }
  }
  for (const pid of pids) {
    for (const target of [-pid, pid]) {
      try {
        process.kill(target, "SIGKILL");
        break;
      } catch {
        // no such group (or process): try the process itself / already gone
      }
    }
  }
}

afterAll(async () => {
  for (const l of launchers) l.kill("SIGKILL");
  killAgents();
  await Bun.sleep(300);
  killAgents(); // anything a dying launcher was still starting
  await rec?.stop();
});

describe("local provider", () => {
  test("launch local-4gpu: the agent registers its 4 GPUs, list finds it, a relaunch starts no second process", async () => {
    const p = new LocalProvider(options());
    const inst = await p.launch(request("lp-a"));
    expect(inst).toMatchObject({ id: "lp-a", name: "lp-a", provider: "local", instanceType: "local-4gpu", state: "running", address: "127.0.0.1" });
    expect(inst.tags[TAG_OPERATION]).toBe("op_lp-a");

    const d = await registered("lp-a", 4);
    expect(d.node).toMatchObject({ pool: POOL, provider: "local", instanceType: "local-4gpu", nvmlAvailable: true, driverVersion: "570.86.15" });

    const files = p.files("lp-a");
    for (const f of [files.record, files.pidFile, files.nvmlState, files.nvmlControl, files.kmsg, files.stateDir, files.agentLog]) {
      expect(existsSync(f)).toBe(true);
    }
    const record = JSON.parse(readFileSync(files.record, "utf8")) as { pid: number; startTime: number; state: string };
    expect(record.state).toBe("running");
    expect(agentPids("lp-a")).toEqual([record.pid]);

    const listed = await p.list({ [TAG_MANAGED_BY]: "navarch", [TAG_POOL]: POOL });
    expect(listed.map((i) => i.id)).toContain("lp-a");
    expect(await p.list({ [TAG_POOL]: "another-pool" })).toEqual([]);

    const again = await p.launch(request("lp-a"));
    expect(again.id).toBe("lp-a");
    expect(again.state).toBe("running");
    await Bun.sleep(300);
    expect(agentPids("lp-a")).toEqual([record.pid]);

    // The same name under another operation is a collision, not the same instance.
    expect((await providerError(p.launch(request("lp-a", "local-4gpu", "op_other")))).kind).toBe("invalid");
  }, 40_000);

  test("a new provider over the same nodes_dir sees the running instance", async () => {
    const before = agentPids("lp-a");
    expect(before).toHaveLength(1);
    const restarted = new LocalProvider(options());
    const inst = await restarted.get("lp-a");
    expect(inst?.state).toBe("running");
    expect((await restarted.list({ [TAG_POOL]: POOL })).find((i) => i.id === "lp-a")?.state).toBe("running");
    expect(agentPids("lp-a")).toEqual(before);
  });

  test("the agent survives kill -9 of the process that launched it, and a new provider adopts it", async () => {
    // A separate launcher process (the reconciler, for this test): launch, print, wait to be killed.
    const script = `
      const { LocalProvider } = await import(process.env.LP_MODULE);
      const p = new LocalProvider(JSON.parse(process.env.LP_OPTIONS));
      const inst = await p.launch(JSON.parse(process.env.LP_REQUEST));
      console.log(JSON.stringify(inst));
      setInterval(() => {}, 1 << 30);
    `;
    const launcher = Bun.spawn([BUN, "-e", script], {
      env: {
        ...process.env,
        LP_MODULE: join(import.meta.dir, "../reconciler/providers/local/provider.ts"),
        LP_OPTIONS: JSON.stringify(options()),
        LP_REQUEST: JSON.stringify(request("lp-orphan", "local-2gpu")),
      },
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    });
    launchers.push(launcher);
    const reader = launcher.stdout.getReader();
    const first = await reader.read();
    const launched = JSON.parse(new TextDecoder().decode(first.value)) as { id: string; state: string };
    expect(launched).toMatchObject({ id: "lp-orphan", state: "running" });
    // The launcher returns once the process exists; its command line is the agent's once it has exec'd.
    const agentPid = await waitFor("the lp-orphan agent process", () => agentPids("lp-orphan")[0]);
    expect(parentOf(agentPid)).toBe(launcher.pid);

    launcher.kill("SIGKILL");
    await launcher.exited;
    expect(launcher.signalCode).toBe("SIGKILL");

    await registered("lp-orphan", 2);
    // Still heartbeating after its launcher died, no longer its child.
    const seen = (await detail("lp-orphan"))?.node.lastHeartbeatAt ?? 0;
    await waitFor(
      "a heartbeat after the launcher died",
      async () => (((await detail("lp-orphan"))?.node.lastHeartbeatAt ?? 0) > seen ? true : undefined),
      5000,
    );
    expect(agentPids("lp-orphan")).toEqual([agentPid]);
    expect(parentOf(agentPid)).not.toBe(launcher.pid);

    const adopted = new LocalProvider(options());
    expect((await adopted.get("lp-orphan"))?.state).toBe("running");
    expect((await adopted.launch(request("lp-orphan", "local-2gpu"))).state).toBe("running");
    expect(agentPids("lp-orphan")).toEqual([agentPid]);
    await adopted.terminate("lp-orphan");
    expect(agentPids("lp-orphan")).toEqual([]);
  }, 40_000);

  test("a crash between the spawn and the record: the pid file is adopted; a claim never spawned is finished", async () => {
    const p = new LocalProvider(options());
    await p.launch(request("lp-crash", "local-1gpu"));
    await registered("lp-crash", 1);
    const files = p.files("lp-crash");
    const layout = new LocalNodesDir(nodesDir);
    const running = layout.read("lp-crash", () => undefined);
    if (running?.pid === undefined) throw new Error("no pid recorded");
    const { pid: _pid, startTime: _start, ...unspawned } = running;

    // Died after Bun.spawn, before writing the pid: the shell's agent.pid names the agent.
    LocalNodesDir.write(files, { ...unspawned, state: "pending" });
    const restarted = new LocalProvider(options());
    expect((await restarted.get("lp-crash"))?.state).toBe("running");
    expect(layout.read("lp-crash", () => undefined)).toMatchObject({ state: "running", pid: running.pid, startTime: running.startTime });
    expect((await restarted.launch(request("lp-crash", "local-1gpu"))).state).toBe("running");
    expect(agentPids("lp-crash")).toEqual([running.pid]);

    // Died after claiming the name, before spawning: the retried launch spawns the agent.
    await restarted.terminate("lp-crash");
    rmSync(files.pidFile);
    LocalNodesDir.write(files, { ...unspawned, state: "pending" });
    expect((await restarted.get("lp-crash"))?.state).toBe("pending");
    expect((await restarted.launch(request("lp-crash", "local-1gpu"))).state).toBe("running");
    const again = await waitFor("a new lp-crash agent", () => agentPids("lp-crash")[0]);
    expect(again).not.toBe(running.pid);
    await restarted.terminate("lp-crash");
    expect(agentPids("lp-crash")).toEqual([]);
  }, 30_000);

  test("injected NVML and kernel-log faults are stored as events of that node", async () => {
    const p = new LocalProvider(options());
    await p.injectNvml("lp-a", "xid 0 79");
    const nvml = await waitFor("xid 79 stored", async () => (await detail("lp-a"))?.events.find((e) => e.check === "xid" && e.code === "79"), 10_000);
    expect(nvml).toMatchObject({ severity: "unhealthy", gpuIndex: 0 });

    // GPU 1 of the fake sits at 00000000:2A:00.0.
    await p.injectKmsg("lp-a", "NVRM: Xid (PCI:0000:2a:00): 48, pid=4242, name=python3, An uncorrectable double bit error (DBE) has been detected on GPU");
    const kmsg = await waitFor("xid 48 stored", async () => (await detail("lp-a"))?.events.find((e) => e.check === "xid" && e.code === "48"), 10_000);
    expect(kmsg.gpuIndex).toBe(1);
    expect(readFileSync(p.files("lp-a").kmsg, "utf8")).toMatch(/^3,0,\d+,-;NVRM: Xid \(PCI:0000:2a:00\): 48, /);

    expect(p.agentLog("lp-a")).toContain("navarch-node: starting");
    expect((await providerError(p.injectNvml("lp-nope", "xid 0 79"))).kind).toBe("not_found");
    expect((await providerError(p.injectNvml("lp-a", "xid 0 79\nxid 1 79"))).kind).toBe("invalid");
  }, 30_000);

  test("terminate: process gone, terminated, idempotent, and the same key never resurrects it", async () => {
    const p = new LocalProvider(options());
    const [pid] = agentPids("lp-a");
    expect(pid).toBeDefined();
    await p.terminate("lp-a");
    expect(agentPids("lp-a")).toEqual([]);
    expect((await p.get("lp-a"))?.state).toBe("terminated");
    const record = JSON.parse(readFileSync(p.files("lp-a").record, "utf8")) as { state: string; terminatedAt?: string };
    expect(record.state).toBe("terminated");
    expect(Date.parse(record.terminatedAt ?? "")).toBeGreaterThan(0);
    expect(p.agentLog("lp-a")).toContain("SIGTERM: stopping");

    await p.terminate("lp-a");
    await p.terminate("lp-never-existed");
    await p.terminate("../not-a-name");

    const relaunched = await p.launch(request("lp-a"));
    expect(relaunched.state).toBe("terminated");
    await Bun.sleep(300);
    expect(agentPids("lp-a")).toEqual([]);
    expect((await providerError(p.injectNvml("lp-a", "xid 0 79"))).message).toContain("is not running");

    // Tombstones stay until reaped.
    expect(await p.reap(60_000)).toEqual([]);
    expect(await p.reap(0)).toContain("lp-a");
    expect(await p.get("lp-a")).toBeUndefined();
  }, 30_000);

  test("a process killed behind the provider's back is a terminated instance", async () => {
    const p = new LocalProvider(options());
    await p.launch(request("lp-k", "local-1gpu"));
    await registered("lp-k", 1);
    const [pid] = agentPids("lp-k");
    expect(pid).toBeDefined();
    process.kill(pid ?? 0, "SIGKILL");
    await waitFor("lp-k terminated", async () => ((await p.get("lp-k"))?.state === "terminated" ? true : undefined), 5000);
    expect((await p.list({ [TAG_POOL]: POOL })).find((i) => i.id === "lp-k")?.state).toBe("terminated");
    expect((await p.launch(request("lp-k", "local-1gpu"))).state).toBe("terminated");
    expect(agentPids("lp-k")).toEqual([]);
    await p.terminate("lp-k");
  }, 30_000);

  test("capacity: launches beyond it fail with kind capacity; a relaunch of a live instance does not count", async () => {
    const dir = join(dataDir, "capacity-nodes");
    nodesDirs.push(dir);
    const p = new LocalProvider(options({ nodesDir: dir, capacity: 1 }));
    expect((await p.launch(request("cap-1", "local-1gpu"))).state).toBe("running");
    const err = await providerError(p.launch(request("cap-2", "local-1gpu")));
    expect(err.kind).toBe("capacity");
    expect(err.retryable).toBe(true);
    expect(existsSync(join(dir, "cap-2"))).toBe(false);
    expect((await p.launch(request("cap-1", "local-1gpu"))).state).toBe("running");
    await p.terminate("cap-1");
    expect((await p.launch(request("cap-2", "local-1gpu"))).state).toBe("running");
    await p.terminate("cap-2");
    expect(agentPids("cap-1", dir)).toEqual([]);
    expect(agentPids("cap-2", dir)).toEqual([]);
  }, 30_000);

  test("unknown instance types and bad names are invalid; instanceTypes lists the local types", async () => {
    const p = new LocalProvider(options());
    for (const type of ["p4d.24xlarge", "local-0gpu", "local-17gpu", "local-gpu", "local-4gpus"]) {
      const err = await providerError(p.launch(request("lp-bad", type)));
      expect(err.kind).toBe("invalid");
      expect(err.retryable).toBe(false);
    }
    expect((await providerError(p.launch(request("../escape")))).kind).toBe("invalid");
    expect(existsSync(join(nodesDir, "lp-bad"))).toBe(false);
    expect(await p.get("lp-bad")).toBeUndefined();
    expect((await p.instanceTypes()).map((t) => [t.name, t.gpus])).toEqual([
      ["local-1gpu", 1],
      ["local-2gpu", 2],
      ["local-4gpu", 4],
      ["local-8gpu", 8],
    ]);
  });

  test("without nvml_library the agent runs with no NVML and says so", async () => {
    const dir = join(dataDir, "no-nvml-nodes");
    nodesDirs.push(dir);
    const { nvmlLibrary: _lib, ...rest } = options({ nodesDir: dir });
    const p = new LocalProvider(rest);
    await p.launch(request("lp-nonvml", "local-2gpu"));
    const d = await waitFor(
      "lp-nonvml registered",
      async () => {
        const n = await detail("lp-nonvml");
        return n?.node.agentHealth ? n : undefined;
      },
      20_000,
    );
    expect(d.node.nvmlAvailable).toBe(false);
    expect(d.gpus).toEqual([]);
    expect(p.agentLog("lp-nonvml")).toContain("without NVML");
    expect((await providerError(p.injectNvml("lp-nonvml", "xid 0 79"))).kind).toBe("invalid");
    await p.terminate("lp-nonvml");
  }, 30_000);
});
