// The release's software bill of materials, CycloneDX 1.6 JSON: the two binaries (with their
// SHA-256), the Bun runtime compiled into both, and every npm package whose files the bundler
// put into either, at the version and integrity bun.lock pins. Which packages are in a binary is
// the bundler's own list of its inputs (its metafile), so a package that is installed but never
// bundled (a dev tool, another platform's native module) is not claimed.
import { randomUUID } from "node:crypto";

/** What bun.lock says of one package: `"key": ["name@version", registry, { dependencies… }, "sha512-…"]`. */
export interface LockedPackage {
  /** The lock's key: the package's path under node_modules, `a/b` for b nested in a's. */
  key: string;
  name: string;
  version: string;
  integrity: string;
  dependencies: string[];
}

export interface BinaryInputs {
  name: string;
  sha256: string;
  /** The bundler's inputs, relative to the repository (`node_modules/hono/dist/…`, `agent/main.ts`). */
  inputs: string[];
}

/** bun.lock's npm packages by key. Throws, naming the entry, on one it cannot read as an npm package. */
export function readLockfile(text: string): Map<string, LockedPackage> {
  const lock = Bun.JSONC.parse(text) as { lockfileVersion?: unknown; packages?: Record<string, unknown> };
  if (typeof lock !== "object" || lock === null || typeof lock.packages !== "object" || lock.packages === null) {
    throw new Error("bun.lock: no packages object (is it a Bun text lockfile?)");
  }
  const out = new Map<string, LockedPackage>();
  for (const [key, entry] of Object.entries(lock.packages)) {
    const [id, , meta, integrity] = Array.isArray(entry) ? entry : [];
    const at = typeof id === "string" ? id.lastIndexOf("@") : -1;
    if (typeof id !== "string" || at <= 0 || typeof integrity !== "string" || !integrity.startsWith("sha512-")) {
      throw new Error(`bun.lock: packages[${JSON.stringify(key)}] is not an npm package entry ["name@version", registry, {…}, "sha512-…"]`);
    }
    const m = (typeof meta === "object" && meta !== null ? meta : {}) as Record<string, unknown>;
    const names = (field: string) => (typeof m[field] === "object" && m[field] !== null ? Object.keys(m[field] as object) : []);
    out.set(key, {
      key,
      name: id.slice(0, at),
      version: id.slice(at + 1),
      integrity,
      dependencies: [...names("dependencies"), ...names("optionalDependencies"), ...names("peerDependencies")],
    });
  }
  return out;
}

/** The lock key of the package an input file belongs to: `node_modules/a/node_modules/@s/b/x.js` → `a/@s/b`. */
export function packageKeyOf(input: string): string | undefined {
  const at = input.indexOf("node_modules/");
  if (at < 0) return undefined;
  const names = input
    .slice(at + "node_modules/".length)
    .split("/node_modules/")
    .map((part) => {
      const segments = part.split("/");
      return (segments[0]!.startsWith("@") ? segments.slice(0, 2) : segments.slice(0, 1)).join("/");
    });
  return names.join("/");
}

/** A lock key's package names, outermost first: `a/@s/b` → [`a`, `@s/b`]. */
export function lockKeyNames(key: string): string[] {
  const names: string[] = [];
  const segments = key.split("/");
  for (let i = 0; i < segments.length; i++) names.push(segments[i]!.startsWith("@") ? `${segments[i]}/${segments[++i] ?? ""}` : segments[i]!);
  return names;
}

/** Where `name` resolves from the package at `key`, as Node's lookup walks up node_modules. */
function resolveFrom(key: string, name: string, packages: ReadonlyMap<string, LockedPackage>): string | undefined {
  const scope = lockKeyNames(key);
  for (let depth = scope.length; depth >= 0; depth--) {
    const candidate = [...scope.slice(0, depth), name].join("/");
    if (packages.has(candidate)) return candidate;
  }
  return undefined;
}

const purl = (p: LockedPackage) => `pkg:npm/${p.name.replace(/^@/, "%40")}@${p.version}`;

export interface SbomInput {
  version: string;
  commit: string;
  bunVersion: string;
  bunRevision: string;
  binaries: BinaryInputs[];
  lock: ReadonlyMap<string, LockedPackage>;
  /** The version installed under node_modules at a lock key (its package.json), to catch a tree out of step with bun.lock. */
  installedVersion: (key: string) => string | undefined;
  now: Date;
}

/** The CycloneDX document. Throws when a bundled package is not in bun.lock or not the version it pins. */
export function cycloneDx(input: SbomInput): Record<string, unknown> {
  const bun = `pkg:generic/bun@${input.bunVersion}`;
  const used = new Map<string, LockedPackage>();
  const byBinary = new Map<string, Set<string>>();
  for (const binary of input.binaries) {
    const refs = new Set<string>();
    for (const file of binary.inputs) {
      const key = packageKeyOf(file);
      if (key === undefined) continue;
      const locked = input.lock.get(key);
      if (locked === undefined) throw new Error(`${binary.name} bundles ${file}, but bun.lock has no package ${key}: run bun install`);
      const installed = input.installedVersion(key);
      if (installed !== locked.version) {
        throw new Error(
          `node_modules/${lockKeyNames(key).join("/node_modules/")} is version ${installed ?? "(none)"}, bun.lock pins ${locked.version}: run bun install`,
        );
      }
      used.set(key, locked);
      refs.add(purl(locked));
    }
    byBinary.set(binary.name, refs);
  }
  const components = [...used.values()]
    .sort((a, b) => (purl(a) < purl(b) ? -1 : 1))
    .filter((p, i, all) => i === 0 || purl(all[i - 1]!) !== purl(p))
    .map((p) => {
      const slash = p.name.startsWith("@") ? p.name.indexOf("/") : -1;
      return {
        type: "library",
        "bom-ref": purl(p),
        ...(slash > 0 ? { group: p.name.slice(0, slash), name: p.name.slice(slash + 1) } : { name: p.name }),
        version: p.version,
        purl: purl(p),
        hashes: [{ alg: "SHA-512", content: Buffer.from(p.integrity.slice("sha512-".length), "base64").toString("hex") }],
      };
    });
  const dependencies = [
    ...input.binaries.map((b) => ({ ref: `binary:${b.name}`, dependsOn: [bun, ...[...byBinary.get(b.name)!].sort()] })),
    ...[...used.values()].map((p) => ({
      ref: purl(p),
      dependsOn: [
        ...new Set(
          p.dependencies.flatMap((name) => {
            const key = resolveFrom(p.key, name, input.lock);
            return key !== undefined && used.has(key) ? [purl(used.get(key)!)] : [];
          }),
        ),
      ].sort(),
    })),
  ].filter((d, i, all) => all.findIndex((x) => x.ref === d.ref) === i);
  return {
    bomFormat: "CycloneDX",
    specVersion: "1.6",
    serialNumber: `urn:uuid:${randomUUID()}`,
    version: 1,
    metadata: {
      timestamp: input.now.toISOString(),
      tools: { components: [{ type: "application", name: "navarch release (scripts/release.ts)", version: input.version }] },
      component: {
        type: "application",
        "bom-ref": "navarch-release",
        name: "navarch",
        version: input.version,
        properties: [{ name: "git:commit", value: input.commit }],
      },
    },
    components: [
      ...input.binaries.map((b) => ({
        type: "application",
        "bom-ref": `binary:${b.name}`,
        name: b.name,
        version: input.version,
        hashes: [{ alg: "SHA-256", content: b.sha256 }],
      })),
      {
        type: "platform",
        "bom-ref": bun,
        name: "bun",
        version: input.bunVersion,
        description: "the JavaScript runtime compiled into both binaries",
        purl: bun,
        properties: [{ name: "bun:revision", value: input.bunRevision }],
      },
      ...components,
    ],
    dependencies,
  };
}
