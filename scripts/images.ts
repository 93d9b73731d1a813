// Builds the two container images as OCI image layouts, without a container daemon:
//   build/images/navarch-control-plane   the reconciler (the seed's navarch/control-plane)
//   build/images/navarch-node            the GPU health agent (the seed's navarch/node)
// Each is two layers: a base shared by both (glibc and the CA bundle from Debian's libc6
// and ca-certificates packages, fetched with apt-get download and unpacked with
// dpkg-deb, plus passwd/group and the directories the programs use) and the compiled
// binary. The tarballs are written here with fixed owners, modes and times, so the same
// inputs give the same digests, and no root is needed to build.
//   bun run scripts/images.ts [--out DIR] [--tag TAG]     (npm run images builds first)
// Push with skopeo: skopeo copy oci:build/images/navarch-node:TAG docker://REGISTRY/navarch/node:TAG
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join, relative } from "node:path";
import { parseArgs } from "node:util";
import { NAVARCH_VERSION } from "../schema/version.ts";

const ROOT = new URL("..", import.meta.url).pathname;
/** The reconciler's user (the uid distroless images call nonroot). */
export const NAVARCH_UID = 65532;
// libgcc-s1: the libSQL native module (Rust) links libgcc_s.so.1.
const BASE_PACKAGES = ["libc6", "libgcc-s1", "ca-certificates"] as const;

interface Entry {
  path: string;
  type: "dir" | "file" | "symlink";
  mode: number;
  uid?: number;
  gid?: number;
  data?: Uint8Array;
  target?: string;
}

function fail(message: string): never {
  process.stderr.write(`images: ${message}\n`);
  process.exit(1);
}

function run(cmd: string[], cwd?: string): string {
  const r = spawnSync(cmd[0]!, cmd.slice(1), { cwd, encoding: "utf8", env: { ...process.env, LC_ALL: "C" } });
  if (r.error) fail(`${cmd[0]} cannot run (${r.error.message}); a Debian or Ubuntu machine with apt and dpkg is needed`);
  if (r.status !== 0) fail(`${cmd.join(" ")} failed (exit ${r.status}):\n${(r.stderr || r.stdout).trim().split("\n").slice(-10).join("\n")}`);
  return r.stdout;
}

// ───────────────────────────── the base from Debian packages ─────────────────────────────

/** The .deb files of BASE_PACKAGES (apt's candidate versions), downloaded once into a cache outside the repo. */
function fetchDebs(): { files: string[]; versions: Record<string, string> } {
  const cache = join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "navarch", "images", "debs");
  mkdirSync(cache, { recursive: true });
  // apt-get names only the files its working directory lacks: ask from an empty one.
  const empty = mkdtempSync(join(tmpdir(), "navarch-apt-"));
  let uris = spawnSync("apt-get", ["download", "--print-uris", ...BASE_PACKAGES], { cwd: empty, encoding: "utf8" });
  if (uris.error) fail("apt-get is not here: the base layer comes from Debian's packages (a Debian or Ubuntu machine is needed)");
  if (uris.status !== 0 && process.getuid?.() === 0) {
    // A fresh machine has no package lists yet.
    run(["apt-get", "update", "-q"]);
    uris = spawnSync("apt-get", ["download", "--print-uris", ...BASE_PACKAGES], { cwd: empty, encoding: "utf8" });
  }
  rmSync(empty, { recursive: true, force: true });
  if (uris.status !== 0) fail(`apt-get download --print-uris ${BASE_PACKAGES.join(" ")} failed (run apt-get update as root first):\n${uris.stderr.trim()}`);
  const files: string[] = [];
  const versions: Record<string, string> = {};
  for (const line of uris.stdout.trim().split("\n")) {
    // 'URI' FILE SIZE SHA256:HEX
    const m = /^'[^']+' (\S+) (\d+) SHA256:([0-9a-f]{64})$/.exec(line.trim());
    if (!m) fail(`unexpected line from apt-get download --print-uris: ${line}`);
    const [, file, , sha] = m as unknown as [string, string, string, string];
    const path = join(cache, file);
    const have = existsSync(path) ? createHash("sha256").update(readFileSync(path)).digest("hex") : undefined;
    if (have !== sha) {
      run(["apt-get", "download", file.split("_")[0]!], cache);
      if (createHash("sha256").update(readFileSync(path)).digest("hex") !== sha) fail(`${file}: its sha256 is not the one apt's lists name`);
    }
    files.push(path);
    const [name, version] = file.split("_");
    versions[name!] = decodeURIComponent(version!);
  }
  return { files, versions };
}

/** Every entry under dir (sorted, so layers are reproducible), as root-owned layer entries. */
function walk(dir: string, under: string): Entry[] {
  const out: Entry[] = [];
  const visit = (abs: string) => {
    for (const name of readdirSync(abs).sort()) {
      const p = join(abs, name);
      const rel = relative(dir, p);
      const st = lstatSync(p);
      if (st.isSymbolicLink()) out.push({ path: rel, type: "symlink", mode: 0o777, target: readlinkSync(p) });
      else if (st.isDirectory()) {
        out.push({ path: rel, type: "dir", mode: st.mode & 0o7777 });
        visit(p);
      } else if (st.isFile()) out.push({ path: rel, type: "file", mode: st.mode & 0o7777, data: readFileSync(p) });
    }
  };
  visit(join(dir, under));
  return out;
}

function baseEntries(debs: string[]): Entry[] {
  const stage = mkdtempSync(join(tmpdir(), "navarch-image-base-"));
  try {
    for (const deb of debs) run(["dpkg-deb", "-x", deb, stage]);
    // The CA bundle as update-ca-certificates writes it (every Mozilla root), without the
    // individual files and the tooling.
    const mozilla = join(stage, "usr/share/ca-certificates/mozilla");
    const bundle = readdirSync(mozilla)
      .filter((n) => n.endsWith(".crt"))
      .sort()
      .map((n) => readFileSync(join(mozilla, n), "utf8").trimEnd() + "\n")
      .join("");
    const text = (s: string) => new TextEncoder().encode(s);
    const dir = (path: string, mode = 0o755): Entry => ({ path, type: "dir", mode });
    return [
      dir("etc"),
      { path: "etc/group", type: "file", mode: 0o644, data: text(`root:x:0:\nnavarch:x:${NAVARCH_UID}:\n`) },
      { path: "etc/nsswitch.conf", type: "file", mode: 0o644, data: text("passwd: files\ngroup: files\nhosts: files dns\n") },
      {
        path: "etc/passwd",
        type: "file",
        mode: 0o644,
        data: text(`root:x:0:0:root:/root:/sbin/nologin\nnavarch:x:${NAVARCH_UID}:${NAVARCH_UID}:navarch:/var/lib/navarch:/sbin/nologin\n`),
      },
      dir("etc/ssl"),
      dir("etc/ssl/certs"),
      { path: "etc/ssl/certs/ca-certificates.crt", type: "file", mode: 0o644, data: text(bundle) },
      // glibc's shared libraries and the loader; the rest of libc6 (gconv modules, locales
      // data, tools, docs) is not used by the programs or libnvidia-ml.
      dir("lib"),
      ...walk(stage, "lib"),
      dir("lib64"),
      ...walk(stage, "lib64"),
      // Mount points a runtime mounts over (a read-only root file system cannot grow them).
      dir("dev"),
      dir("proc", 0o555),
      dir("root", 0o700),
      dir("sys", 0o555),
      dir("tmp", 0o1777),
      dir("usr"),
      dir("usr/local"),
      dir("usr/local/bin"),
      dir("var"),
      dir("var/lib"),
    ];
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}

// ───────────────────────────── tar and the OCI layout ─────────────────────────────

/** A POSIX ustar archive of the entries, every time `mtime` (seconds). */
export function tar(entries: Entry[], mtime: number): Uint8Array<ArrayBuffer> {
  const blocks: Uint8Array[] = [];
  const enc = new TextEncoder();
  const octal = (n: number, width: number) => n.toString(8).padStart(width - 1, "0") + "\0";
  for (const e of entries) {
    const header = new Uint8Array(512);
    const put = (s: string, at: number, width: number) => {
      const bytes = enc.encode(s);
      if (bytes.length > width) throw new Error(`tar: ${JSON.stringify(s)} does not fit in ${width} bytes`);
      header.set(bytes, at);
    };
    let name = e.type === "dir" ? `${e.path}/` : e.path;
    let prefix = "";
    if (enc.encode(name).length > 100) {
      const cut = name.lastIndexOf("/", name.length - 2);
      prefix = name.slice(0, cut);
      name = name.slice(cut + 1);
    }
    const size = e.type === "file" ? (e.data?.length ?? 0) : 0;
    put(name, 0, 100);
    put(octal(e.mode, 8), 100, 8);
    put(octal(e.uid ?? 0, 8), 108, 8);
    put(octal(e.gid ?? 0, 8), 116, 8);
    put(octal(size, 12), 124, 12);
    put(octal(mtime, 12), 136, 12);
    put("        ", 148, 8);
    put(e.type === "dir" ? "5" : e.type === "symlink" ? "2" : "0", 156, 1);
    if (e.target) put(e.target, 157, 100);
    put("ustar\0", 257, 6);
    put("00", 263, 2);
    put(e.uid ? "navarch" : "root", 265, 32);
    put(e.gid ? "navarch" : "root", 297, 32);
    put(prefix, 345, 155);
    let sum = 0;
    for (const b of header) sum += b;
    put(sum.toString(8).padStart(6, "0") + "\0 ", 148, 8);
    blocks.push(header);
    if (size > 0) {
      blocks.push(e.data!);
      const pad = (512 - (size % 512)) % 512;
      if (pad > 0) blocks.push(new Uint8Array(pad));
    }
  }
  blocks.push(new Uint8Array(1024));
  const total = blocks.reduce((n, b) => n + b.length, 0);
  const out = new Uint8Array(total);
  let at = 0;
  for (const b of blocks) {
    out.set(b, at);
    at += b.length;
  }
  return out;
}

const sha256 = (data: Uint8Array | string) => createHash("sha256").update(data).digest("hex");

interface Blob {
  digest: string;
  size: number;
}

class Layout {
  constructor(readonly dir: string) {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(join(dir, "blobs", "sha256"), { recursive: true });
    writeFileSync(join(dir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  }

  put(data: Uint8Array | string): Blob {
    const hex = sha256(data);
    writeFileSync(join(this.dir, "blobs", "sha256", hex), data);
    return { digest: `sha256:${hex}`, size: typeof data === "string" ? Buffer.byteLength(data) : data.length };
  }
}

interface ImageSpec {
  name: string;
  title: string;
  layers: { tar: Uint8Array<ArrayBuffer>; createdBy: string }[];
  config: Record<string, unknown>;
}

function writeImage(out: string, spec: ImageSpec, tag: string, created: string, labels: Record<string, string>): { dir: string; bytes: number } {
  const layout = new Layout(join(out, spec.name));
  const layers = spec.layers.map((l) => {
    const gz = Bun.gzipSync(l.tar, { level: 6 });
    return { blob: layout.put(gz), diffId: `sha256:${sha256(l.tar)}`, createdBy: l.createdBy };
  });
  const config = JSON.stringify({
    created,
    architecture: "amd64",
    os: "linux",
    config: { ...spec.config, Labels: { ...labels, "org.opencontainers.image.title": spec.title } },
    rootfs: { type: "layers", diff_ids: layers.map((l) => l.diffId) },
    history: layers.map((l) => ({ created, created_by: l.createdBy })),
  });
  const configBlob = layout.put(config);
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: { mediaType: "application/vnd.oci.image.config.v1+json", ...configBlob },
    layers: layers.map((l) => ({ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", ...l.blob })),
    annotations: { "org.opencontainers.image.created": created, "org.opencontainers.image.version": labels["org.opencontainers.image.version"]! },
  });
  const manifestBlob = layout.put(manifest);
  writeFileSync(
    join(layout.dir, "index.json"),
    JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.index.v1+json",
      manifests: [
        {
          mediaType: "application/vnd.oci.image.manifest.v1+json",
          ...manifestBlob,
          platform: { architecture: "amd64", os: "linux" },
          annotations: { "org.opencontainers.image.ref.name": tag },
        },
      ],
    }),
  );
  return { dir: layout.dir, bytes: layers.reduce((n, l) => n + l.blob.size, 0) + configBlob.size + manifestBlob.size };
}

// ───────────────────────────── main ─────────────────────────────

function main(): void {
  const { values } = parseArgs({ args: process.argv.slice(2), options: { out: { type: "string" }, tag: { type: "string" } }, strict: true });
  const out = values.out ?? join(ROOT, "build", "images");
  const tag = values.tag ?? NAVARCH_VERSION;
  if (process.arch !== "x64") fail(`the binaries and the base are built for x86-64; this is ${process.arch}`);
  const binary = (name: string) => {
    const path = join(ROOT, "dist", name);
    if (!existsSync(path)) fail(`${path} is missing: run npm run build (npm run images does)`);
    return readFileSync(path);
  };
  const [navarch, node] = [binary("navarch"), binary("navarch-node")];
  // Reproducible: the commit's time (or SOURCE_DATE_EPOCH) for every file and the image's creation.
  const epoch = Number(
    process.env.SOURCE_DATE_EPOCH ?? (spawnSync("git", ["log", "-1", "--format=%ct"], { cwd: ROOT, encoding: "utf8" }).stdout.trim() || "0"),
  );
  const created = new Date(epoch * 1000).toISOString().replace(/\.000Z$/, "Z");
  const started = performance.now();
  const { files, versions } = fetchDebs();
  const base = tar(baseEntries(files), epoch);
  const baseLayer = {
    tar: base,
    createdBy: `base: ${Object.entries(versions)
      .map(([p, v]) => `${p} ${v}`)
      .join(", ")} (Debian); passwd, group, CA bundle`,
  };
  const labels = {
    "org.opencontainers.image.version": tag,
    "org.opencontainers.image.description": "Navarch: a GPU fleet reconciler and its node agent",
    "org.opencontainers.image.base.name": `debian:bookworm ${Object.entries(versions)
      .map(([p, v]) => `${p}=${v}`)
      .join(" ")}`,
  };
  const dirs = (...list: [string, number, number?][]): Entry[] =>
    list.map(([path, mode, uid]) => ({ path, type: "dir" as const, mode, ...(uid ? { uid, gid: uid } : {}) }));
  const PATH = "PATH=/usr/local/bin:/usr/bin:/bin";
  const SSL = "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt";
  const images: ImageSpec[] = [
    {
      name: "navarch-control-plane",
      title: "navarch control plane",
      layers: [
        baseLayer,
        {
          tar: tar(
            [
              ...dirs(["etc", 0o755], ["etc/navarch", 0o755], ["usr", 0o755], ["usr/local", 0o755], ["usr/local/bin", 0o755]),
              { path: "usr/local/bin/navarch", type: "file", mode: 0o755, data: navarch },
              ...dirs(["var", 0o755], ["var/lib", 0o755], ["var/lib/navarch", 0o700, NAVARCH_UID]),
            ],
            epoch,
          ),
          createdBy: "navarch (bun build --compile)",
        },
      ],
      config: {
        // Not root: the reconciler needs no privilege; its data is the volume at WorkingDir.
        User: `${NAVARCH_UID}:${NAVARCH_UID}`,
        Env: [PATH, SSL],
        Entrypoint: ["/usr/local/bin/navarch"],
        // The seed's Deployment args; `navarch --config FILE` alone is serve.
        Cmd: ["--config=/etc/navarch/config.yaml"],
        WorkingDir: "/var/lib/navarch",
        ExposedPorts: { "50051/tcp": {} },
        Volumes: { "/var/lib/navarch": {} },
      },
    },
    {
      name: "navarch-node",
      title: "navarch node agent",
      layers: [
        baseLayer,
        {
          tar: tar(
            [
              ...dirs(["usr", 0o755], ["usr/local", 0o755], ["usr/local/bin", 0o755]),
              { path: "usr/local/bin/navarch-node", type: "file", mode: 0o755, data: node },
              ...dirs(["var", 0o755], ["var/lib", 0o755], ["var/lib/navarch-node", 0o700]),
            ],
            epoch,
          ),
          createdBy: "navarch-node (bun build --compile)",
        },
      ],
      config: {
        // Root: the GPU device nodes and /dev/kmsg (the chart drops what it does not need).
        User: "0:0",
        Env: [PATH, SSL],
        Entrypoint: ["/usr/local/bin/navarch-node"],
        WorkingDir: "/",
        Volumes: { "/var/lib/navarch-node": {} },
      },
    },
  ];
  for (const spec of images) {
    const { dir, bytes } = writeImage(out, spec, tag, created, labels);
    process.stdout.write(
      `${relative(process.cwd(), dir) || dir}: ${spec.title} ${tag}, ${(bytes / 2 ** 20).toFixed(1)} MiB compressed (base ${(base.length / 2 ** 20).toFixed(1)} MiB unpacked)\n`,
    );
  }
  process.stdout.write(
    `images built in ${((performance.now() - started) / 1000).toFixed(1)} s; push with: skopeo copy oci:${relative(process.cwd(), out) || out}/navarch-node:${tag} docker://REGISTRY/navarch/node:${tag}\n`,
  );
}

if (import.meta.main) main();
