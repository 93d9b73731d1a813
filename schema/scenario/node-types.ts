// The `node_types:` section of a scenario file: machine types besides the built-in ones
// (reconciler/sim/node-types.ts), each with its GPU count and the GPU name its agent reports.
import * as v from "valibot";
import { isRecord, show, strict } from "../shapes.ts";
import { Text, int } from "./fields.ts";

export interface NodeTypeSpec {
  gpus: number;
  gpu_name: string;
}

const NodeType = strict({
  gpus: int(1, 64),
  gpu_name: v.optional(Text, "NVIDIA GPU"),
});

/** `node_types:` a mapping of type name to { gpus, gpu_name }. */
export const NodeTypes = v.pipe(
  v.custom<Record<string, unknown>>(isRecord, (i) => `expected a mapping of node type name to { gpus, gpu_name }, got ${show(i.input)}`),
  v.record(v.string(), NodeType),
);
