// Logs and terminals cannot be forged, through the compiled binaries. A node's pool, a GPU's
// PCI bus id and an event's message are outside text: newlines in them once printed whole
// lines of their own in the reconciler's log (`… navarch: FORGED: gpu-a-1 terminated by
// admin`), and `nodes get` printed them raw. Now every log line is one line, and every human
// output of the CLI (table, JSON, YAML, each command) shows such text escaped.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { CompiledFleet } from "./compiled.ts";
import { heartbeat, registration, xidEvent } from "./agent-bodies.ts";
import { waitFor } from "./support.ts";

let fleet: CompiledFleet;

const NODE = "gpu-a-1";
const BOOT = "boot-forge";
const forged = (what: string) => `\n${new Date().toISOString()} navarch: FORGED: ${what}`;
const HOSTILE = {
  pool: `a${forged("gpu-a-1 terminated by admin (pool)")}`,
  pciBusId: `00000000:3B:00.0${forged("pci")}\r`,
  hostname: `host${forged("hostname")}\x1b[2J`,
  driver: `570${forged("driver")}`,
  agent: `0.1.0${forged("agent")}`,
  nvml: `gone${forged("nvml")}\u2028${forged("line separator")}`,
  message: `fallen off the bus${forged("gpu-a-1 terminated by admin")}\x1b]0;pwned\x07\u202e`,
  reason: `because${forged("cordoned by")}`,
  actor: `ops${forged("actor")}`,
};

const post = (path: string, body: unknown) =>
  fetch(`${fleet.url}${path}`, {
    method: "POST",
    headers: { Authorization: `Bearer ${fleet.token}`, "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });

/** A line that starts with what a log line starts with, but says FORGED: the attack. */
const FORGED_LINE = /^(\s*[-|]?\s*)?\d{4}-\d\d-\d\dT[^ ]* navarch: FORGED/m;
/** Anything a terminal acts on instead of showing, a newline aside. */
const RAW_CONTROL = /[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

/** A node registered with the hostile texts; `nvmlError`: it heartbeats with NVML unavailable for that reason. */
async function hostileNode(nodeId: string, nvmlError?: string): Promise<void> {
  const gpu = { index: 0, uuid: `GPU-${nodeId}`, pciBusId: HOSTILE.pciBusId };
  const reg = await post(
    "/v1/register",
    registration(nodeId, BOOT, {
      pool: HOSTILE.pool,
      hostname: HOSTILE.hostname,
      driverVersion: HOSTILE.driver,
      agentVersion: HOSTILE.agent,
      gpus: [{ ...gpu, name: "H100" }],
    }),
  );
  expect(reg.status).toBe(200);
  const nvml = nvmlError === undefined ? { available: true } : { available: false, error: nvmlError };
  const beat = await post("/v1/heartbeat", heartbeat(nodeId, BOOT, { nvml, gpus: [{ index: 0, temperatureC: 50 }] }));
  expect(beat.status).toBe(200);
}

beforeAll(async () => {
  fleet = await CompiledFleet.create();
  // Heartbeats are sent by hand here: no node goes Lost while the test runs.
  fleet.writeConfig("", "1m");
  fleet.startServer();
  await fleet.waitReady();
  await hostileNode(NODE);
  await hostileNode("gpu-a-2", HOSTILE.nvml);
  const gpu = { index: 0, uuid: `GPU-${NODE}`, pciBusId: HOSTILE.pciBusId };
  const events = await post("/v1/events", { nodeId: NODE, events: [xidEvent(NODE, 1, BOOT, { gpu, message: HOSTILE.message })] });
  expect(events.status).toBe(200);
  // The loop logs the node's transition, whose reason quotes the event.
  await waitFor(
    "gpu-a-1's transition logged with the event's message",
    () => (/ gpu-a-1: \w+ → \w+: [\s\S]*fallen off the bus/.test(fleet.output.get("navarch") ?? "") ? true : undefined),
    20_000,
  );
  const cordon = await post("/v1/nodes/gpu-a-2/cordon", { actor: HOSTILE.actor, reason: HOSTILE.reason });
  expect(cordon.status).toBe(200);
}, 240_000);

afterAll(() => fleet.stop());

describe("hostile text from agents and operators", () => {
  test("the reconciler's log: every line is a log line, the hostile text shown escaped", () => {
    const log = fleet.output.get("navarch") ?? "";
    expect(log).not.toMatch(FORGED_LINE);
    expect(RAW_CONTROL.test(log)).toBe(false);
    for (const line of log.trimEnd().split("\n")) expect({ line, ok: /^\d{4}-\d\d-\d\dT\S+ navarch: /.test(line) }).toEqual({ line, ok: true });
    // What it says is still there, escaped.
    expect(log).toContain("fallen off the bus\\n");
    expect(log).toContain("navarch: FORGED: gpu-a-1 terminated by admin\\x1b]0;pwned\\x07\\u202e");
  });

  test("every CLI command and output format shows it escaped: no forged line, no raw control character", async () => {
    const env = { NAVARCH_SERVER: fleet.url, NAVARCH_AUTH_TOKEN: fleet.token };
    const commands = [["nodes", "list"], ["nodes", "get", NODE], ["nodes", "get", "gpu-a-2"], ["events"], ["incidents"], ["pools", "list"]];
    for (const command of commands) {
      for (const format of ["table", "json", "yaml"]) {
        const args = [...command, "-o", format];
        const r = await fleet.run([fleet.navarch, ...args], env);
        expect({ args, code: r.code, stderr: r.stderr }).toEqual({ args, code: 0, stderr: "" });
        expect({ args, forged: FORGED_LINE.test(r.stdout), raw: RAW_CONTROL.test(r.stdout) }).toEqual({ args, forged: false, raw: false });
      }
    }
    // The incident's reason quotes the event's message: on its line, escaped.
    const faulty = await fleet.run([fleet.navarch, "nodes", "get", NODE], env);
    const incident = faulty.stdout.split("\n").find((l) => l.startsWith("Incident "));
    expect(incident).toContain("fallen off the bus\\n");
    const get = await fleet.run([fleet.navarch, "nodes", "get", "gpu-a-2"], env);
    for (const [label, value] of [
      ["Pool:", HOSTILE.pool],
      ["Hostname:", HOSTILE.hostname],
      ["Driver:", HOSTILE.driver],
      ["Agent:", HOSTILE.agent],
      ["NVML:", HOSTILE.nvml],
      ["Cordoned by:", `human:${HOSTILE.actor}`],
    ]) {
      const line = get.stdout.split("\n").find((l) => l.startsWith(label!));
      expect({ label, line: line?.includes(value!.replaceAll("\n", "\\n").replace("\x1b", "\\x1b").replace("\u2028", "\\u2028")) }).toEqual({
        label,
        line: true,
      });
    }
  }, 60_000);
});
