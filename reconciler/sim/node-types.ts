// Machine types the simulator knows: Knavigator's three DGX types (the names users of
// KWOK-based simulators expect), the instance types of the clouds Navarch provisions on,
// and the local provider's. A scenario adds its own under `node_types:`.
import type { NodeTypeSpec } from "../../schema/scenario/node-types.ts";

export const BUILTIN_NODE_TYPES: Readonly<Record<string, NodeTypeSpec>> = Object.freeze({
  "dgxa100.40g": { gpus: 8, gpu_name: "NVIDIA A100-SXM4-40GB" },
  "dgxa100.80g": { gpus: 8, gpu_name: "NVIDIA A100-SXM4-80GB" },
  "dgxh100.80g": { gpus: 8, gpu_name: "NVIDIA H100 80GB HBM3" },
  gpu_8x_h100_sxm5: { gpus: 8, gpu_name: "NVIDIA H100 80GB HBM3" },
  gpu_8x_a100_80gb_sxm4: { gpus: 8, gpu_name: "NVIDIA A100-SXM4-80GB" },
  gpu_1x_a10: { gpus: 1, gpu_name: "NVIDIA A10" },
  "a3-highgpu-8g": { gpus: 8, gpu_name: "NVIDIA H100 80GB HBM3" },
  "a2-highgpu-8g": { gpus: 8, gpu_name: "NVIDIA A100-SXM4-40GB" },
  "p5.48xlarge": { gpus: 8, gpu_name: "NVIDIA H100 80GB HBM3" },
  "p4d.24xlarge": { gpus: 8, gpu_name: "NVIDIA A100-SXM4-40GB" },
  "local-8gpu": { gpus: 8, gpu_name: "NVIDIA H100 80GB HBM3" },
});

/** The type's spec (custom types first), or undefined when neither list has it. */
export function nodeType(name: string, custom: Readonly<Record<string, NodeTypeSpec>> = {}): NodeTypeSpec | undefined {
  return custom[name] ?? BUILTIN_NODE_TYPES[name];
}

export function knownNodeTypes(custom: Readonly<Record<string, NodeTypeSpec>> = {}): string[] {
  return [...new Set([...Object.keys(BUILTIN_NODE_TYPES), ...Object.keys(custom)])];
}
