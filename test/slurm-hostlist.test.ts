// Slurm hostlist expressions, as jobs name their nodes (squeue's NODELIST).
import { expect, test } from "bun:test";
import { expandHostlist, HostlistError } from "../reconciler/schedulers/slurm/hostlist.ts";

test("plain names, ranges with padding, lists inside and outside brackets, several brackets", () => {
  expect(expandHostlist("")).toEqual([]);
  expect(expandHostlist("gpu1")).toEqual(["gpu1"]);
  expect(expandHostlist("gpu[1-3]")).toEqual(["gpu1", "gpu2", "gpu3"]);
  expect(expandHostlist("gpu[08-10],login1")).toEqual(["gpu08", "gpu09", "gpu10", "login1"]);
  expect(expandHostlist("gpu[1,3,5-6]")).toEqual(["gpu1", "gpu3", "gpu5", "gpu6"]);
  expect(expandHostlist("rack[1-2]-n[1-2]")).toEqual(["rack1-n1", "rack1-n2", "rack2-n1", "rack2-n2"]);
  expect(expandHostlist("pool-a1b2c3d4,pool-e5f6a7b8")).toEqual(["pool-a1b2c3d4", "pool-e5f6a7b8"]);
});

test("malformed expressions and runaway ranges are refused", () => {
  for (const bad of ["gpu[1-3", "gpu1-3]", "gpu[a-b]", "gpu[3-1]", "n[0-999999]"]) {
    expect(() => expandHostlist(bad)).toThrow(HostlistError);
  }
});
