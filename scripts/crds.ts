// Writes deploy/crds/gpupool.yaml, generated from the config pool's schema
// (reconciler/schedulers/kubernetes/crd.ts). test/crd.test.ts fails when the committed file is stale.
//   bun run scripts/crds.ts
import { gpuPoolCrdYaml } from "../reconciler/schedulers/kubernetes/crd.ts";

const path = new URL("../deploy/crds/gpupool.yaml", import.meta.url).pathname;
await Bun.write(path, gpuPoolCrdYaml());
console.log(`wrote ${path}`);
