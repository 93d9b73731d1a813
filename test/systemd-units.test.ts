// The systemd units (systemd/navarch-node.service, systemd/navarch.service): what they
// promise (restart policy, ordering, environment files, least privilege), checked by
// reading them, and `systemd-analyze verify` on both (ExecStart pointed at an executable
// that exists, as verify checks it). systemd-analyze is installed when missing.
import { beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { NODE_UNIT, renderInstaller } from "../bootstrap/installer.ts";
import { REPO_ROOT, tempDir } from "./support.ts";

const UNITS = ["navarch-node.service", "navarch.service"] as const;
const ENSURE = join(REPO_ROOT, "test/systemd/ensure-systemd-analyze.sh");
let dir: string;
let systemdVersion = 0;

/** key → every value it has in a section (repeated keys accumulate), comments dropped. */
function parseUnit(text: string): Map<string, Map<string, string[]>> {
  const sections = new Map<string, Map<string, string[]>>();
  let current: Map<string, string[]> | undefined;
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const section = /^\[(.+)\]$/.exec(line);
    if (section) {
      current = new Map();
      sections.set(section[1]!, current);
      continue;
    }
    const eq = line.indexOf("=");
    if (current === undefined || eq < 0) throw new Error(`not a unit-file line: ${raw}`);
    const key = line.slice(0, eq).trim();
    current.set(key, [...(current.get(key) ?? []), line.slice(eq + 1).trim()]);
  }
  return sections;
}

const unitText = (name: string) => readFileSync(join(REPO_ROOT, "systemd", name), "utf8");
const get = (unit: Map<string, Map<string, string[]>>, section: string, key: string) => unit.get(section)?.get(key) ?? [];

function analyze(args: string[]): { code: number; out: string } {
  const r = Bun.spawnSync(["systemd-analyze", ...args], {
    cwd: dir,
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, SYSTEMD_COLORS: "0", SYSTEMD_PAGER: "" },
  });
  return { code: r.exitCode ?? -1, out: `${r.stdout.toString()}${r.stderr.toString()}`.trim() };
}

/** Writes the unit with its /usr/local/bin program replaced by an executable stub that exists. */
function stubbed(name: string, text = unitText(name)): string {
  const bin = join(dir, "bin");
  mkdirSync(bin, { recursive: true });
  const program = name.replace(/\.service$/, "");
  writeFileSync(join(bin, program), "#!/bin/sh\nexit 0\n");
  chmodSync(join(bin, program), 0o755);
  const path = join(dir, name);
  writeFileSync(path, text.replaceAll(`/usr/local/bin/${program} `, `${join(bin, program)} `));
  return path;
}

/** Warnings systemd older than 254 prints for the restart backoff keys (ignored there). */
function unexpectedOutput(out: string): string[] {
  return out
    .split("\n")
    .filter((l) => l.trim() !== "")
    .filter((l) => !(systemdVersion < 254 && /Unknown key '(RestartSteps|RestartMaxDelaySec)' in section \[Service\], ignoring\./.test(l)));
}

beforeAll(() => {
  const r = Bun.spawnSync(["sh", ENSURE], { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`test/systemd/ensure-systemd-analyze.sh failed: ${r.stdout.toString()}${r.stderr.toString()}`);
  const version = Bun.spawnSync(["systemd-analyze", "--version"], { stdout: "pipe" }).stdout.toString();
  systemdVersion = Number(/systemd (\d+)/.exec(version)?.[1] ?? 0);
  dir = tempDir("navarch-units-");
}, 180_000);

describe("unit files", () => {
  test("both restart forever with a delay, start after the network is online, and read secrets from an environment file", () => {
    for (const name of UNITS) {
      const unit = parseUnit(unitText(name));
      expect({ name, restart: get(unit, "Service", "Restart") }).toEqual({ name, restart: ["always"] });
      expect(get(unit, "Service", "RestartSec")).toEqual(["2s"]);
      expect(get(unit, "Service", "RestartMaxDelaySec")).toEqual(["1min"]);
      expect(get(unit, "Unit", "StartLimitIntervalSec")).toEqual(["0"]);
      expect(get(unit, "Unit", "After").join(" ")).toContain("network-online.target");
      expect(get(unit, "Unit", "Wants").join(" ")).toContain("network-online.target");
      expect(get(unit, "Service", "EnvironmentFile")[0]).toMatch(/^\/etc\/navarch\/.+\.env$/);
      expect(get(unit, "Install", "WantedBy")).toEqual(["multi-user.target"]);
      for (const key of ["NoNewPrivileges", "ProtectHome", "PrivateTmp", "ProtectKernelModules", "ProtectKernelTunables", "RestrictSUIDSGID"]) {
        expect({ name, key, value: get(unit, "Service", key) }).toEqual({ name, key, value: ["yes"] });
      }
      expect(get(unit, "Service", "ProtectSystem")).toEqual(["strict"]);
      // No token in a unit file: only in the 0600 environment file.
      expect(unitText(name)).not.toMatch(/Environment=.*TOKEN/);
    }
  });

  test("the agent gets only what it needs: NVIDIA devices, the kernel log read-only, its state directory, CAP_SYSLOG", () => {
    const unit = parseUnit(unitText("navarch-node.service"));
    const service = (key: string) => get(unit, "Service", key);
    expect(service("ExecStart")[0]).toBe(
      "/usr/local/bin/navarch-node --server ${NAVARCH_SERVER} --node-id ${NAVARCH_NODE_ID} --state-dir /var/lib/navarch-node $NAVARCH_NODE_ARGS",
    );
    expect(service("DevicePolicy")).toEqual(["closed"]);
    expect(service("DeviceAllow").sort()).toEqual(["/dev/kmsg r", "char-nvidia* rw"]);
    expect(service("StateDirectory")).toEqual(["navarch-node"]);
    expect(service("CapabilityBoundingSet")).toEqual(["CAP_SYSLOG"]);
    // What it must not have: these would hide /dev/nvidia* or /dev/kmsg from it.
    expect(service("PrivateDevices")).toEqual([]);
    expect(service("ProtectKernelLogs")).toEqual([]);
    // And the installer writes this very unit.
    expect(NODE_UNIT).toBe(unitText("navarch-node.service"));
    expect(renderInstaller({ serverUrl: "http://r:1", agentSha256: "" })).toContain(unitText("navarch-node.service"));
  });

  test("the reconciler runs as a dynamic user with no capabilities and no devices", () => {
    const unit = parseUnit(unitText("navarch.service"));
    expect(get(unit, "Service", "ExecStart")[0]).toBe("/usr/local/bin/navarch serve --config /etc/navarch/navarch.yaml");
    expect(get(unit, "Service", "DynamicUser")).toEqual(["yes"]);
    expect(get(unit, "Service", "CapabilityBoundingSet")).toEqual([""]);
    expect(get(unit, "Service", "PrivateDevices")).toEqual(["yes"]);
    expect(get(unit, "Service", "StateDirectory")).toEqual(["navarch"]);
  });
});

describe("systemd-analyze", () => {
  test("verify passes on both units", () => {
    // A control first: if verify cannot run here at all, say so plainly (the checks above still ran).
    const control = stubbed("control.service", "[Unit]\nDescription=control\n[Service]\nExecStart=/usr/local/bin/control --flag\n");
    const probe = analyze(["verify", "--man=no", control]);
    if (probe.code !== 0 || unexpectedOutput(probe.out).length > 0) {
      console.warn(`systemd-analyze verify cannot run in this environment (control unit: exit ${probe.code}: ${probe.out}); only the static unit checks ran`);
      expect(probe.out).toMatch(/./); // keeps the reason in the report
      return;
    }
    for (const name of UNITS) {
      const result = analyze(["verify", "--man=no", stubbed(name)]);
      expect({ name, code: result.code, unexpected: unexpectedOutput(result.out) }).toEqual({ name, code: 0, unexpected: [] });
    }
    // verify really checks: a unit whose program is missing fails it.
    const missing = join(dir, "missing.service");
    writeFileSync(missing, unitText("navarch-node.service"));
    const bad = analyze(["verify", "--man=no", missing]);
    expect(bad.code).not.toBe(0);
    expect(bad.out).toContain("/usr/local/bin/navarch-node");
  }, 60_000);

  test("the sandboxing rates as OK in systemd-analyze security", () => {
    if (systemdVersion < 250) {
      console.warn(`systemd ${systemdVersion} has no 'systemd-analyze security --offline'; exposure not rated`);
      return;
    }
    for (const name of UNITS) {
      const result = analyze(["security", "--offline=true", "--no-pager", stubbed(name)]);
      const score = Number(/Overall exposure level for \S+: ([\d.]+)/.exec(result.out)?.[1]);
      expect({ name, score: Number.isFinite(score) ? score : result.out }).toEqual({ name, score: expect.any(Number) });
      // 0 is a perfect sandbox, 10 none; "OK" is below 5 (the reconciler lower: it needs no devices).
      expect({ name, under: score < (name === "navarch.service" ? 4 : 5) }).toEqual({ name, under: true });
    }
  }, 60_000);
});
