// `navarch demo` as `npm start` runs it (the compiled binary, the fake libnvidia-ml named), on a
// port of its own (--port) and for a duration written as the help says (--duration 10m): the
// pool comes up, the demo breaks GPU 3 of one node (Xid 79), and the node is cordoned, drained,
// rebooted and back in service with no new machine. Fault injection refuses a command the fake
// library does not know instead of saying "fault injected".
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { FAKE_NVML_COMMANDS } from "../reconciler/providers/local/fake-nvml.ts";
import { CompiledFleet, type Proc } from "./compiled.ts";
import { FAKE_NVML, buildFakeNvml } from "./fake-nvml/control.ts";
import { REPO_ROOT, freePort, waitFor } from "./support.ts";

let fleet: CompiledFleet;
let demo: Proc;
const port = freePort();
const url = `http://127.0.0.1:${port}`;
const dataDir = () => join(fleet.dir, "demo-data");
const cli = (...args: string[]) =>
  fleet.run([fleet.navarch, ...args, "-s", url], { NAVARCH_AUTH_TOKEN: readFileSync(join(dataDir(), "auth-token"), "utf8").trim() });
const out = () => fleet.output.get("demo") ?? "";

beforeAll(async () => {
  buildFakeNvml();
  fleet = await CompiledFleet.create();
  demo = fleet.start("demo", [
    fleet.navarch,
    "demo",
    "--nvml-library",
    FAKE_NVML.full,
    "--port",
    String(port),
    "--duration",
    "10m",
    "--data-dir",
    join(fleet.dir, "demo-data"),
  ]);
}, 240_000);

afterAll(async () => {
  demo?.kill("SIGKILL");
  await fleet?.terminateLocalNodes(join(dataDir(), "local-nodes"));
  fleet?.stop();
}, 90_000);

describe("navarch demo", () => {
  test("on --port, for --duration 10m: the broken node is rebooted and back in service with no new machine", async () => {
    await waitFor("the demo listening on its --port", () => (out().includes(`reconciler listening on ${url}`) ? true : undefined), 20_000);
    const back = await waitFor(
      "the broken node back in service after its reboot",
      () => (out().includes("first full health check passed after a reboot; back in service") ? true : undefined),
      90_000,
    ).catch((err: unknown) => {
      throw new Error(`${String(err)}\n${out().slice(-3000)}`);
    });
    expect(back).toBe(true);
    for (const step of ["cordoned", "draining", "rebooting", "validating"])
      expect(out()).toMatch(new RegExp(`local-[0-9a-f]+\\s+local\\s+launched\\s+${step}\\s`));
    const nodes = JSON.parse((await cli("nodes", "list", "-o", "json")).stdout).nodes as { id: string; state: string }[];
    expect(nodes.filter((n) => n.state === "ready")).toHaveLength(2);
    expect(nodes).toHaveLength(2); // rebooted, not replaced
  }, 120_000);

  test("fault inject refuses a fake NVML command the library does not know; a known one is injected", async () => {
    const nodes = JSON.parse((await cli("nodes", "list", "-o", "json")).stdout).nodes as { id: string }[];
    const bogus = await cli("fault", "inject", nodes[0]!.id, "--nvml", "BOGUS");
    expect(bogus.code).toBe(1);
    expect(bogus.stderr).toContain("nvml: expected one line: a fake NVML command (one of reset, count,");
    expect(bogus.stdout).not.toContain("fault injected");
    const known = await cli("fault", "inject", nodes[0]!.id, "--nvml", "temp 1 45");
    expect(known).toMatchObject({ code: 0, stdout: `${nodes[0]!.id}: fault injected\n` });
  }, 30_000);

  test("bad --duration and --port are usage errors naming the flag", async () => {
    const duration = await fleet.run([fleet.navarch, "demo", "--duration", "10x"]);
    expect(duration).toMatchObject({ code: 2 });
    expect(duration.stderr).toContain('--duration: expected a duration from 1s to 7d, like 90s or 10m, got "10x"');
    const badPort = await fleet.run([fleet.navarch, "demo", "--port", "70000"]);
    expect(badPort.code).toBe(2);
    expect(badPort.stderr).toContain('--port: expected a port from 1 to 65535, got "70000"');
  });

  test("Ctrl-C stops it at once, its local nodes terminated (a pending --duration once kept it alive for the rest of it)", async () => {
    demo.kill("SIGINT");
    const code = await Promise.race([demo.exited, Bun.sleep(20_000).then(() => "still running")]);
    expect(code, out().slice(-1500)).toBe(0);
    expect(out().match(/local: terminating local-[0-9a-f]+/g)).toHaveLength(2);
  }, 30_000);

  test("the commands fault injection accepts are the ones the fake library reads", () => {
    const source = readFileSync(join(REPO_ROOT, "test/fake-nvml/fake_nvml.c"), "utf8");
    const inC = new Set([...source.matchAll(/strcmp\(cmd, "([a-z]+)"\)/g)].map((m) => m[1]!));
    expect([...FAKE_NVML_COMMANDS].sort() as string[]).toEqual([...inC].sort());
  });
});
