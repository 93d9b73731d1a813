// The SBOM from a small lockfile and bundler inputs; test/release.test.ts checks a real release's.
import { describe, expect, test } from "bun:test";
import { cycloneDx, lockKeyNames, packageKeyOf, readLockfile, type SbomInput } from "./sbom.ts";

const INTEGRITY = `sha512-${Buffer.alloc(64, 7).toString("base64")}`;
const LOCK = `{
  "lockfileVersion": 1,
  "packages": {
    "a": ["a@1.0.0", "", { "dependencies": { "@s/b": "^2" } }, "${INTEGRITY}"],
    "@s/b": ["@s/b@2.0.0", "", {}, "${INTEGRITY}"],
    "a/@s/b": ["@s/b@3.0.0", "", { "dependencies": { "c": "*" } }, "${INTEGRITY}"],
    "c": ["c@4.0.0", "", {}, "${INTEGRITY}"],
    "dev-only": ["dev-only@5.0.0", "", {}, "${INTEGRITY}"],
  },
}`;

const input = (inputs: string[], installed: (key: string) => string | undefined = (k) => readLockfile(LOCK).get(k)?.version): SbomInput => ({
  version: "0.1.0",
  commit: "f".repeat(40),
  bunVersion: "1.4.5",
  bunRevision: "e".repeat(40),
  binaries: [{ name: "agent", sha256: "d".repeat(64), inputs }],
  lock: readLockfile(LOCK),
  installedVersion: installed,
  now: new Date(0),
});

describe("the SBOM", () => {
  test("maps bundled files to lock keys, nested and scoped", () => {
    expect(packageKeyOf("node_modules/a/index.js")).toBe("a");
    expect(packageKeyOf("node_modules/a/node_modules/@s/b/lib/x.js")).toBe("a/@s/b");
    expect(packageKeyOf("agent/main.ts")).toBeUndefined();
    expect(lockKeyNames("a/@s/b/c")).toEqual(["a", "@s/b", "c"]);
  });

  test("lists what was bundled, at the nested version, with its dependencies as Node resolves them; not what was not", () => {
    const bom = cycloneDx(input(["agent/main.ts", "node_modules/a/index.js", "node_modules/a/node_modules/@s/b/x.js", "node_modules/c/c.js"]));
    const components = bom.components as { "bom-ref": string; hashes?: unknown }[];
    expect(components.map((c) => c["bom-ref"])).toEqual([
      "binary:agent",
      "pkg:generic/bun@1.4.5",
      "pkg:npm/%40s/b@3.0.0",
      "pkg:npm/a@1.0.0",
      "pkg:npm/c@4.0.0",
    ]);
    expect(components[2]!.hashes).toEqual([{ alg: "SHA-512", content: "07".repeat(64) }]);
    const deps = new Map((bom.dependencies as { ref: string; dependsOn: string[] }[]).map((d) => [d.ref, d.dependsOn]));
    expect(deps.get("binary:agent")).toEqual(["pkg:generic/bun@1.4.5", "pkg:npm/%40s/b@3.0.0", "pkg:npm/a@1.0.0", "pkg:npm/c@4.0.0"]);
    // a's @s/b is its nested 3.0.0, not the top-level 2.0.0, which was not bundled.
    expect(deps.get("pkg:npm/a@1.0.0")).toEqual(["pkg:npm/%40s/b@3.0.0"]);
    expect(deps.get("pkg:npm/%40s/b@3.0.0")).toEqual(["pkg:npm/c@4.0.0"]);
  });

  test("refuses a bundled package bun.lock does not have, or one installed at another version", () => {
    expect(() => cycloneDx(input(["node_modules/zzz/index.js"]))).toThrow("agent bundles node_modules/zzz/index.js, but bun.lock has no package zzz");
    expect(() => cycloneDx(input(["node_modules/a/node_modules/@s/b/x.js"], () => "9.9.9"))).toThrow(
      "node_modules/a/node_modules/@s/b is version 9.9.9, bun.lock pins 3.0.0",
    );
    expect(() => readLockfile(`{ "packages": { "g": ["g@github:x/y", {}, "abc"] } }`)).toThrow('bun.lock: packages["g"] is not an npm package entry');
  });
});
