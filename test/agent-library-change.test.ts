// The compiled agent survives its libnvidia-ml changing under it, as a driver upgrade does it:
// `cp` or `truncate` over the file it loaded once killed it with SIGBUS (exit 135), because the
// mapping read pages the file no longer had. Now it maps a sealed private copy, sees the file
// change (NVML unavailable, reloading), and loads the new one once it is complete. A path that is
// not a regular file (a FIFO hung `check --once` and the daemon forever; a device) is refused.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, mkdirSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CompiledFleet, type Proc } from "./compiled.ts";
import { FAKE_NVML, buildFakeNvml } from "./fake-nvml/control.ts";
import { waitFor } from "./support.ts";

let fleet: CompiledFleet;

interface Detail {
  node: { nvmlAvailable: boolean; nvmlError: string | null; lastHeartbeatAt: number | null };
  gpus: unknown[];
}
const detail = (id: string) => fleet.api<Detail>(`/v1/nodes/${id}`);

beforeAll(async () => {
  buildFakeNvml();
  fleet = await CompiledFleet.create();
  fleet.writeConfig();
  fleet.startServer();
  await fleet.waitReady();
}, 240_000);

afterAll(() => fleet.stop());

/** An agent on its own copy of the fake library, polling often (each poll calls into it). */
function agentOnCopy(nodeId: string): { proc: Proc; lib: string } {
  const dir = join(fleet.dir, nodeId);
  mkdirSync(dir, { recursive: true });
  const lib = join(dir, "libnvidia-ml.so.1");
  copyFileSync(FAKE_NVML.full, lib);
  const state = join(dir, "nvml-state");
  writeFileSync(state, "count 2\ndriver 570.86.15\n");
  const proc = fleet.startAgent(nodeId, ["--nvml-library", lib, "--kmsg-path", "none", "--poll-interval", "0.2"], { FAKE_NVML_STATE: state });
  return { proc, lib };
}

async function nvmlAvailable(nodeId: string, available: boolean, since = 0): Promise<Detail> {
  return waitFor(
    `${nodeId}: a heartbeat with NVML ${available ? "available" : "unavailable"}`,
    async () => {
      const d = await detail(nodeId);
      return d && d.node.nvmlAvailable === available && (d.node.lastHeartbeatAt ?? 0) > since ? d : undefined;
    },
    20_000,
  );
}

describe("the library file changes while the agent runs", () => {
  test("truncated under it: the agent lives, says NVML is unavailable and reloading, and loads the file once it is whole again", async () => {
    const { proc, lib } = agentOnCopy("lib-truncate");
    await nvmlAvailable("lib-truncate", true);
    const at = Date.now();
    truncateSync(lib, 20_000);
    const down = await nvmlAvailable("lib-truncate", false, at).catch((err) => {
      throw new Error(`${err} (the agent: exit ${proc.exitCode}, signal ${proc.signalCode})`);
    });
    expect(down.node.nvmlError).toContain("reloading");
    expect(down.node.nvmlError).toContain(lib);
    await Bun.sleep(2000); // polls keep calling NVML meanwhile
    expect({ exit: proc.exitCode, signal: proc.signalCode }).toEqual({ exit: null, signal: null });
    // The upgrade finishes: the whole library is back.
    const back = Date.now();
    copyFileSync(FAKE_NVML.full, lib);
    const up = await nvmlAvailable("lib-truncate", true, back);
    expect(up.gpus.length).toBe(2);
    expect({ exit: proc.exitCode, signal: proc.signalCode }).toEqual({ exit: null, signal: null });
    proc.kill("SIGKILL");
  }, 60_000);

  test("cp of another build over it: the agent lives and reloads the new library", async () => {
    const { proc, lib } = agentOnCopy("lib-cp");
    await nvmlAvailable("lib-cp", true);
    const at = Date.now();
    copyFileSync(FAKE_NVML.r535, lib);
    await waitFor(
      "lib-cp: NVML reloaded after the copy",
      async () => ((fleet.output.get("lib-cp") ?? "").match(/NVML (re)?loaded/g)?.length ? true : undefined),
      20_000,
    );
    await nvmlAvailable("lib-cp", true, at);
    await Bun.sleep(2000);
    expect({ exit: proc.exitCode, signal: proc.signalCode }).toEqual({ exit: null, signal: null });
    proc.kill("SIGKILL");
  }, 60_000);
});

describe("--nvml-library that is not a regular file", () => {
  test("a FIFO or a device: check --once answers at once, saying what the path is; the daemon refuses it at start", async () => {
    const fifo = join(fleet.dir, "nvml-fifo");
    expect(Bun.spawnSync(["mkfifo", fifo]).exitCode).toBe(0);
    for (const [path, what] of [
      [fifo, "a FIFO"],
      ["/dev/null", "a character device"],
    ] as const) {
      const started = Date.now();
      const once = await fleet.run([fleet.navarchNode, "check", "--once", "--nvml-library", path, "--kmsg-path", "none"]);
      expect(Date.now() - started).toBeLessThan(10_000);
      expect({ path, code: once.code }).toEqual({ path, code: 64 });
      expect(once.stderr).toContain(`--nvml-library: ${path} is ${what}, not a regular file`);
      const daemon = await fleet.run([fleet.navarchNode, "--server", fleet.url, "--node-id", "fifo", "--nvml-library", path], {
        NAVARCH_AUTH_TOKEN: fleet.token,
      });
      expect({ path, code: daemon.code }).toEqual({ path, code: 64 });
      expect(daemon.stderr).toContain(`--nvml-library: ${path} is ${what}, not a regular file`);
    }
  }, 60_000);
});
