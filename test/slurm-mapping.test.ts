// slurm.node_mapping: which Slurm node a Navarch node is.
import { expect, test } from "bun:test";
import type { SlurmNode } from "../reconciler/schedulers/slurm/api.ts";
import { slurmNodeIndex } from "../reconciler/schedulers/slurm/mapping.ts";

const node = (name: string, hostname = name, features: string[] = []): SlurmNode => ({
  name,
  hostname,
  state: "idle",
  flags: [],
  reason: "",
  reasonSetBy: null,
  comment: "",
  features,
});
const cluster = [node("gpu01", "dgx-a1.cluster.example", ["navarch-node=train-1a2b3c4d", "h100"]), node("train-9f8e7d6c"), node("gpu03", "dgx-a3")];

test("node_name: NodeName is the node id", () => {
  const find = slurmNodeIndex({ node_mapping: "node_name", node_feature_prefix: "navarch-node=" }, cluster);
  expect(find({ id: "train-9f8e7d6c", hostname: null })?.name).toBe("train-9f8e7d6c");
  expect(find({ id: "gpu01", hostname: null })?.name).toBe("gpu01");
  expect(find({ id: "elsewhere", hostname: "dgx-a3" })).toBeUndefined();
});

test("hostname: NodeHostname is the agent's hostname, short or fully qualified", () => {
  const find = slurmNodeIndex({ node_mapping: "hostname", node_feature_prefix: "navarch-node=" }, cluster);
  expect(find({ id: "x", hostname: "dgx-a1.cluster.example" })?.name).toBe("gpu01");
  expect(find({ id: "x", hostname: "dgx-a1" })?.name).toBe("gpu01");
  expect(find({ id: "x", hostname: "dgx-a3.cluster.example" })?.name).toBe("gpu03");
  expect(find({ id: "train-9f8e7d6c", hostname: "train-9f8e7d6c" })?.name).toBe("train-9f8e7d6c"); // NodeHostname defaults to NodeName
  expect(find({ id: "x", hostname: null })).toBeUndefined();
});

test("feature: the node carries <prefix><node id>", () => {
  const find = slurmNodeIndex({ node_mapping: "feature", node_feature_prefix: "navarch-node=" }, cluster);
  expect(find({ id: "train-1a2b3c4d", hostname: null })?.name).toBe("gpu01");
  expect(find({ id: "train-9f8e7d6c", hostname: "train-9f8e7d6c" })).toBeUndefined();
});
