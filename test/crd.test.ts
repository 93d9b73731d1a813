// The GpuPool CRD is generated from the config pool's schema (reconciler/schedulers/kubernetes/crd.ts): the
// committed deploy/crds/gpupool.yaml is what the generator writes today (a key added to a
// pool without regenerating fails here), and it lists every key a config pool has, down to
// each leaf (test/kube.test.ts applies a GpuPool with every key and reads it back unpruned).
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import YAML from "yaml";
import { gpuPoolCrdYaml, gpuPoolSpecSchema, structuralSchema } from "../reconciler/schedulers/kubernetes/crd.ts";
import { PoolSchema } from "../schema/config.ts";
import { withJsonShape, type JsonShape } from "../schema/shapes.ts";
import { REPO_ROOT } from "./support.ts";
import * as v from "valibot";

/** Every key path of a JSON Schema's objects (`scaling.autoscaler.type`, `labels.*`, `taints[].key`). */
function keyPaths(shape: JsonShape, at = ""): string[] {
  const out: string[] = [];
  for (const [k, child] of Object.entries(shape.properties ?? {})) out.push(`${at}${k}`, ...keyPaths(child, `${at}${k}.`));
  if (shape.items) out.push(...keyPaths(shape.items, at.replace(/\.$/, "[].")));
  if (shape.additionalProperties) out.push(...keyPaths(shape.additionalProperties, `${at}*.`));
  return out;
}

describe("the GpuPool CRD", () => {
  test("deploy/crds/gpupool.yaml is what scripts/crds.ts generates from the config pool's schema today", () => {
    const committed = readFileSync(join(REPO_ROOT, "deploy/crds/gpupool.yaml"), "utf8");
    expect(committed === gpuPoolCrdYaml(), "deploy/crds/gpupool.yaml is stale: run bun run scripts/crds.ts").toBe(true);
  });

  test("its spec has every key of a config pool but name, the four it once lacked and taints among them", () => {
    const crd = YAML.parse(readFileSync(join(REPO_ROOT, "deploy/crds/gpupool.yaml"), "utf8"));
    const spec = crd.spec.versions[0].schema.openAPIV3Schema.properties.spec as JsonShape;
    const keys = keyPaths(spec);
    expect(keys.sort()).toEqual(
      keyPaths(structuralSchema(PoolSchema))
        .filter((k) => k !== "name")
        .sort(),
    );
    for (const k of ["health.remediation", "health.reboot_timeout", "health.reboot_window", "ssh_key_names", "taints", "taints[].effect", "labels"])
      expect(keys).toContain(k);
    expect(spec).toEqual(JSON.parse(JSON.stringify(gpuPoolSpecSchema())));
  });

  test("a leaf that says nothing of its JSON shape stops the generator, naming where", () => {
    const pool = v.object({ name: v.string(), odd: v.custom<string>((x) => typeof x === "string") });
    expect(() => structuralSchema(pool)).toThrow("spec.odd: a custom schema with no JSON shape");
    expect(
      structuralSchema(
        v.object({
          ok: withJsonShape(
            v.custom<string>(() => true),
            { type: "string" },
          ),
        }),
      ).properties?.ok,
    ).toEqual({ type: "string" });
  });
});
