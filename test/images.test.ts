// The container images (scripts/images.ts) as OCI layouts, checked with umoci (Debian's
// package, a real OCI tool: it verifies every digest while it unpacks) and run the way a
// container runtime would without one being available here: each root file system unpacked,
// bind-mounted read-only in a private mount namespace, with what the chart mounts (the
// config, a data volume, /tmp; the driver root, /dev, the state directory) and chroot as
// the user the image and the chart name. The reconciler serves on its embedded database
// with the chart's own config and args; the agent from the node image, with the chart's
// args and env and an enroll token made with the reconciler's CLI inside its image,
// registers and gets its own credential; `check --once` finds the fake libnvidia-ml where
// the GPU Operator lays out the driver. Root is needed for chroot and mounts.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Subprocess } from "bun";
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import pkg from "../package.json" with { type: "json" };
import { freePort } from "./support.ts";
import { FAKE_NVML, buildFakeNvml } from "./fake-nvml/control.ts";
import { ensureBinaries } from "./prerequisites.ts";
import { BUN, REPO_ROOT, tempDir, waitFor } from "./support.ts";
import { ensureHelm, helmTemplate, parseObjects, runTool, type KubeObject } from "./kube/tools.ts";

const HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
interface ImageConfig {
  config: {
    User: string;
    Entrypoint: string[];
    Cmd?: string[];
    Env: string[];
    WorkingDir: string;
    Volumes?: Record<string, object>;
    ExposedPorts?: Record<string, object>;
  };
  rootfs: { diff_ids: string[] };
}
interface Image {
  layout: string;
  manifest: { layers: { digest: string; size: number }[]; config: { digest: string } };
  config: ImageConfig;
  rootfs: string;
  bytes: number;
}

let out: string;
const images: Record<"controlPlane" | "node", Image> = {} as never;
const procs: Subprocess[] = [];

function blob(layout: string, digest: string): Buffer {
  return readFileSync(join(layout, "blobs", "sha256", digest.replace(/^sha256:/, "")));
}

function readImage(layout: string, unpacked: string): Image {
  const index = JSON.parse(readFileSync(join(layout, "index.json"), "utf8")) as { manifests: { digest: string; annotations: Record<string, string> }[] };
  expect(index.manifests[0]?.annotations["org.opencontainers.image.ref.name"]).toBe(pkg.version);
  const manifest = JSON.parse(blob(layout, index.manifests[0]!.digest).toString()) as Image["manifest"];
  const config = JSON.parse(blob(layout, manifest.config.digest).toString()) as ImageConfig;
  return { layout, manifest, config, rootfs: join(unpacked, "rootfs"), bytes: manifest.layers.reduce((n, l) => n + l.size, 0) };
}

beforeAll(async () => {
  // Without root there is no chroot and no mount: say so rather than test less.
  if (process.getuid?.() !== 0)
    throw new Error("test/images.test.ts runs each image's root file system with chroot and bind mounts, which need root; run it as root");
  await ensureBinaries();
  // The tests read the chart through helm: built here (about 3 minutes cold), not inside a test's 30 s.
  await ensureHelm();
  buildFakeNvml();
  if ((await runTool(["sh", "-c", "command -v umoci"])).code !== 0) {
    const r = await runTool(["sh", "scripts/apt-install.sh", "test/images.test.ts", "umoci"], { env: { PATH: HOST_PATH } });
    if (r.code !== 0) throw new Error(r.stderr);
  }
  out = tempDir("navarch-images-");
  const started = performance.now();
  const built = await runTool([BUN, "run", "scripts/images.ts", "--out", out]);
  if (built.code !== 0) throw new Error(`scripts/images.ts failed:\n${built.stderr}`);
  console.log(`${built.stdout.trim()}\n(images built in ${((performance.now() - started) / 1000).toFixed(1)} s)`);
  for (const [key, name] of [
    ["controlPlane", "navarch-control-plane"],
    ["node", "navarch-node"],
  ] as const) {
    const unpacked = join(tempDir("navarch-unpacked-"), "bundle");
    const r = await runTool(["umoci", "unpack", "--image", `${join(out, name)}:${pkg.version}`, unpacked], { env: { PATH: HOST_PATH } });
    if (r.code !== 0) throw new Error(`umoci unpack ${name}: ${r.stderr}`);
    images[key] = readImage(join(out, name), unpacked);
  }
}, 10 * 60_000);

/** SIGTERM to what runs inside the image: unshare --fork ignores it itself and exits with its child. */
function terminate(proc: Subprocess): void {
  let children: string[] = [];
  try {
    children = readFileSync(`/proc/${proc.pid}/task/${proc.pid}/children`, "utf8")
      .trim()
      .split(/\s+/)
      .filter((c) => c !== "");
  } catch {
    // already gone
  }
  for (const child of children) {
    try {
      process.kill(Number(child), "SIGTERM");
    } catch {
      // gone meanwhile
    }
  }
}

afterAll(async () => {
  for (const p of procs) terminate(p);
  const gone = await Promise.race([Promise.all(procs.map((p) => p.exited)).then(() => true), Bun.sleep(10_000).then(() => false)]);
  if (!gone) for (const p of procs) p.kill("SIGKILL");
}, 20_000);

interface Mount {
  /** Host path (a directory), or "tmpfs". */
  src: string;
  /** Path inside the image's root. */
  dst: string;
  ro?: boolean;
}

/**
 * argv for a process run inside `rootfs` as a runtime would: a private mount namespace,
 * /proc, the mounts, the root itself read-only (readOnlyRootFilesystem), then chroot as `user`.
 */
function inImage(rootfs: string, user: string, mounts: Mount[], argv: string[]): string[] {
  const lines = ["set -e", 'R="$1"; shift', 'mount --bind "$R" "$R"', 'mount -t proc proc "$R/proc"'];
  for (const m of mounts) {
    mkdirSync(join(rootfs, m.dst), { recursive: true }); // the mount point, as a runtime makes it
    if (m.src === "tmpfs") lines.push(`mount -t tmpfs -o mode=1777 tmpfs "$R${m.dst}"`);
    else if (m.src === "/dev" || m.src === "/sys") lines.push(`mount --rbind ${m.src} "$R${m.dst}"`);
    else lines.push(`mount --bind '${m.src}' "$R${m.dst}"`);
    if (m.ro && m.src !== "tmpfs") lines.push(`mount -o remount,bind,ro "$R${m.dst}"`);
  }
  lines.push('mount -o remount,bind,ro "$R"', `exec chroot --userspec=${user} "$R" "$@"`);
  return ["unshare", "--mount", "--fork", "--kill-child=SIGTERM", "sh", "-c", lines.join("\n"), "sh", rootfs, ...argv];
}

async function runIn(argv: string[], env: Record<string, string> = {}) {
  return runTool(argv, { env: { PATH: HOST_PATH, ...env } });
}

function start(argv: string[], env: Record<string, string>): { proc: Subprocess; output: () => string } {
  let text = "";
  const proc = Bun.spawn(argv, { env: { PATH: HOST_PATH, ...env }, stdout: "pipe", stderr: "pipe" });
  procs.push(proc);
  for (const stream of [proc.stdout, proc.stderr]) {
    void (async () => {
      for await (const chunk of stream) text += new TextDecoder().decode(chunk);
    })();
  }
  return { proc, output: () => text };
}

const userOf = (image: Image) => image.config.config.User;
type Container = { args: string[]; env?: { name: string; value?: string }[]; volumeMounts: { name: string; mountPath: string }[] };
const containerOf = (o: KubeObject) =>
  (o as unknown as { spec: { template: { spec: { containers: Container[]; securityContext?: { runAsUser?: number; runAsGroup?: number } } } } }).spec.template
    .spec;

describe("entrypoint", () => {
  test("navarch --config FILE with no command is serve (the seed's Deployment args), and so is -c FILE", async () => {
    const { navarch } = await ensureBinaries();
    for (const flag of ["--config=FILE", "-c FILE"]) {
      const dir = tempDir("navarch-entry-");
      const port = freePort();
      writeFileSync(join(dir, "config.yaml"), `server:\n  address: 127.0.0.1:${port}\n  data_dir: ${dir}\npools: []\n`);
      const args = flag.replace("FILE", join(dir, "config.yaml")).split(" ");
      const { proc, output } = start([navarch, ...args], { NAVARCH_AUTH_TOKEN: "entry-token" });
      await waitFor(
        `${flag}: ready`,
        async () => ((await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined))?.ok ? true : undefined),
        20_000,
      ).catch((err: unknown) => {
        throw new Error(`${String(err)}\n${output()}`);
      });
      proc.kill("SIGTERM");
      await proc.exited;
    }
  }, 60_000);
});

describe("images", () => {
  test("OCI layouts umoci unpacks: the seed's entrypoint, a non-root reconciler with its data on a volume, one base layer shared, the same digests when built again", async () => {
    const cp = images.controlPlane.config.config;
    expect(cp.Entrypoint).toEqual(["/usr/local/bin/navarch"]);
    expect(cp.Cmd).toEqual(["--config=/etc/navarch/config.yaml"]);
    expect(cp.User).toBe("65532:65532");
    expect(cp.WorkingDir).toBe("/var/lib/navarch");
    expect(Object.keys(cp.Volumes ?? {})).toEqual(["/var/lib/navarch"]);
    expect(Object.keys(cp.ExposedPorts ?? {})).toEqual(["50051/tcp"]);
    const node = images.node.config.config;
    expect(node.Entrypoint).toEqual(["/usr/local/bin/navarch-node"]);
    expect(node.User).toBe("0:0");
    // The data directory is the reconciler's, in the image and so on a fresh volume.
    const data = statSync(join(images.controlPlane.rootfs, "var/lib/navarch"));
    expect([data.uid, data.gid, data.mode & 0o777]).toEqual([65532, 65532, 0o700]);
    expect(readFileSync(join(images.controlPlane.rootfs, "etc/passwd"), "utf8")).toContain("navarch:x:65532:65532:");
    const bundle = readFileSync(join(images.node.rootfs, "etc/ssl/certs/ca-certificates.crt"), "utf8");
    expect(bundle.match(/BEGIN CERTIFICATE/g)!.length).toBeGreaterThan(100);
    expect(images.controlPlane.manifest.layers[0]!.digest).toBe(images.node.manifest.layers[0]!.digest);
    // Small: the base is glibc and the CA bundle; the rest is the binary.
    const mib = (n: number) => n / 2 ** 20;
    console.log(
      `compressed: control plane ${mib(images.controlPlane.bytes).toFixed(1)} MiB, node ${mib(images.node.bytes).toFixed(1)} MiB; base layer ${mib(images.node.manifest.layers[0]!.size).toFixed(1)} MiB`,
    );
    expect(mib(images.node.manifest.layers[0]!.size)).toBeLessThan(5);
    for (const image of [images.controlPlane, images.node]) expect(image.bytes).toBeLessThan(statSync(join(REPO_ROOT, "dist/navarch")).size * 0.6);
    // Reproducible: built again, byte for byte the same image.
    const again = tempDir("navarch-images-again-");
    const r = await runTool([BUN, "run", "scripts/images.ts", "--out", again]);
    expect(r.code, r.stderr).toBe(0);
    for (const name of ["navarch-control-plane", "navarch-node"])
      expect(readFileSync(join(again, name, "index.json"), "utf8")).toBe(readFileSync(join(out, name, "index.json"), "utf8"));
  }, 120_000);

  test("both binaries print their version inside their images", async () => {
    for (const image of [images.controlPlane, images.node]) {
      // The reconciler unpacks the libSQL native module into /tmp: the chart mounts one (an emptyDir).
      const tmp: Mount[] = image === images.controlPlane ? [{ src: "tmpfs", dst: "/tmp" }] : [];
      const r = await runIn(inImage(image.rootfs, userOf(image), tmp, [...image.config.config.Entrypoint, "--version"]));
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.trim()).toBe(pkg.version);
    }
  }, 30_000);

  test("the agent's check --once finds the fake libnvidia-ml under the driver root the chart mounts", async () => {
    const ds = containerOf(parseObjects(await helmTemplate()).find((o) => o.kind === "DaemonSet")!);
    const driverRoot = ds.containers[0]!.env!.find((e) => e.name === "NAVARCH_NVIDIA_DRIVER_ROOT")!.value!;
    const driver = fakeDriverRoot();
    const r = await runIn(
      inImage(
        images.node.rootfs,
        userOf(images.node),
        [
          { src: driver, dst: driverRoot, ro: true },
          { src: "/dev", dst: "/dev", ro: true },
          { src: "/sys", dst: "/sys", ro: true },
        ],
        ["/usr/local/bin/navarch-node", "check", "--once", "-o", "json"],
      ),
      {
        NAVARCH_NVIDIA_DRIVER_ROOT: driverRoot,
      },
    );
    expect(r.code, `${r.stdout}${r.stderr}`).toBe(0);
    const report = JSON.parse(r.stdout) as { verdict: string; gpus: unknown[]; nvml: { libraryPath: string } };
    expect(report.verdict).toBe("healthy");
    expect(report.nvml.libraryPath).toBe(`${driverRoot}/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1`);
    expect(report.gpus).toHaveLength(4);
  }, 30_000);

  test("the chart's control plane serves from its image on the embedded database; an agent from the node image enrolls with a token made by its CLI", async () => {
    const port = freePort();
    const objects = parseObjects(await helmTemplate(["--set", "kubernetes.enabled=false", "--set", `controlPlane.port=${port}`]));
    const deployment = containerOf(objects.find((o) => o.kind === "Deployment")!);
    const cm = objects.find((o) => o.kind === "ConfigMap" && o.metadata.name === "navarch-control-plane") as unknown as { data: Record<string, string> };
    // A ConfigMap volume: readable by everyone, written by no one.
    const configDir = tempDir("navarch-image-config-");
    chmodSync(configDir, 0o755);
    for (const [file, text] of Object.entries(cm.data)) writeFileSync(join(configDir, file), text, { mode: 0o644 });
    // The data volume as a fresh PersistentVolume with fsGroup: owned by the pod's group.
    const dataDir = tempDir("navarch-image-data-");
    const { runAsUser, runAsGroup } = deployment.securityContext!;
    chownSync(dataDir, runAsUser!, runAsGroup!);
    const cpMounts: Mount[] = [
      { src: configDir, dst: "/etc/navarch", ro: true },
      { src: dataDir, dst: "/var/lib/navarch" },
      { src: "tmpfs", dst: "/tmp" },
    ];
    for (const m of cpMounts) expect(deployment.containers[0]!.volumeMounts.map((v) => v.mountPath)).toContain(m.dst);
    const admin = "image-admin-token-0123456789";
    const cpEnv = Object.fromEntries((deployment.containers[0]!.env ?? []).flatMap((e) => (e.value !== undefined ? [[e.name, e.value]] : [])));
    const user = `${runAsUser}:${runAsGroup}`;
    const reconciler = start(
      inImage(images.controlPlane.rootfs, user, cpMounts, [...images.controlPlane.config.config.Entrypoint, ...deployment.containers[0]!.args]),
      { ...cpEnv, NAVARCH_AUTH_TOKEN: admin },
    );
    const url = `http://127.0.0.1:${port}`;
    await waitFor(
      "the reconciler ready",
      async () => {
        const r = await fetch(`${url}/readyz`).catch(() => undefined);
        return r?.ok ? await r.text() : undefined;
      },
      30_000,
    ).then(
      (text) => expect(text).toContain("ready (leader"),
      (err: unknown) => {
        throw new Error(`${String(err)}\n${reconciler.output()}`);
      },
    );
    expect(existsSync(join(dataDir, "navarch.db"))).toBe(true);
    expect(statSync(join(dataDir, "navarch.db")).uid).toBe(runAsUser!);

    // The enroll token, as the README and the chart's notes make it: the CLI inside the image.
    const ds = containerOf(objects.find((o) => o.kind === "DaemonSet")!);
    // No pool configured: the DaemonSet names none, and the enroll token's pool decides.
    expect(ds.containers[0]!.args.some((a) => a.startsWith("--pool="))).toBe(false);
    const pool = "gpu-nodes";
    // kubectl exec runs it in the same container: its mounts, its env.
    const made = await runIn(
      inImage(images.controlPlane.rootfs, user, cpMounts, [
        "/usr/local/bin/navarch",
        "tokens",
        "create",
        "--role",
        "enroll",
        "--pool",
        pool,
        "--name",
        "daemonset",
        "--ttl",
        "365d",
      ]),
      { ...cpEnv, NAVARCH_AUTH_TOKEN: admin },
    );
    expect(made.code, made.stderr).toBe(0);
    const enroll = made.stdout.trim().split("\n").at(-1)!;
    expect(enroll.length).toBeGreaterThan(20);

    // The agent with the DaemonSet's args and env: its node name for $(NODE_NAME), and the
    // reconciler's address here for the Service's name.
    const nodeName = "gpu-node-1";
    const args = ds.containers[0]!.args.map((a) => a.replace("$(NODE_NAME)", nodeName).replace(/^--server=.*$/, `--server=${url}`));
    const env = Object.fromEntries((ds.containers[0]!.env ?? []).flatMap((e) => (e.value !== undefined ? [[e.name, e.value]] : [])));
    const stateDir = tempDir("navarch-image-state-");
    const agent = start(
      inImage(
        images.node.rootfs,
        userOf(images.node),
        [
          { src: stateDir, dst: "/var/lib/navarch-node" },
          { src: fakeDriverRoot(), dst: env.NAVARCH_NVIDIA_DRIVER_ROOT!, ro: true },
          { src: "/dev", dst: "/dev", ro: true },
          { src: "/sys", dst: "/sys", ro: true },
        ],
        [...images.node.config.config.Entrypoint, ...args],
      ),
      { ...env, NAVARCH_BOOTSTRAP_TOKEN: enroll },
    );
    const node = await waitFor(
      "the agent's node registered",
      async () => {
        const r = await fetch(`${url}/v1/nodes/${nodeName}`, { headers: { Authorization: `Bearer ${admin}` } });
        if (!r.ok) return undefined;
        const body = (await r.json()) as { node: { pool: string; state: string }; gpus: unknown[] };
        return body.gpus.length === 4 && body.node.state === "ready" ? body.node : undefined;
      },
      30_000,
    ).catch((err: unknown) => {
      throw new Error(`${String(err)}\nagent:\n${agent.output()}\nreconciler:\n${reconciler.output()}`);
    });
    expect(node.pool).toBe(pool);
    // It exchanged the enroll token for its own credential, kept in its state directory.
    await waitFor("the node credential written", () => (existsSync(join(stateDir, "node-token")) ? true : undefined));
    expect(statSync(join(stateDir, "node-token")).mode & 0o777).toBe(0o600);
    expect(agent.output()).not.toContain(enroll);
    // The enroll token registers nodes and does nothing else.
    const denied = await fetch(`${url}/v1/nodes`, { headers: { Authorization: `Bearer ${enroll}` } });
    expect(denied.status).toBe(403);
    for (const p of [agent.proc, reconciler.proc]) terminate(p);
    expect(await reconciler.proc.exited).toBe(0);
  }, 120_000);
});

/** A driver root laid out like the GPU Operator's (/run/nvidia/driver): usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1. */
function fakeDriverRoot(): string {
  const root = tempDir("navarch-driver-root-");
  mkdirSync(join(root, "usr/lib/x86_64-linux-gnu"), { recursive: true });
  copyFileSync(FAKE_NVML.full, join(root, "usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1"));
  return root;
}
