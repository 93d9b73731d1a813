// slurmrestd's answers at the edge: v0.0.38 as Slurm 22.05 writes it (taken from the test
// cluster), v0.0.39 as Slurm 23.02's published reference describes it, queue depth from jobs.
import { expect, test } from "bun:test";
import { SchedulerError } from "../reconciler/schedulers/scheduler.ts";
import { answerErrors, parseJobs, parseNodes, parsePartitions } from "../reconciler/schedulers/slurm/api.ts";
import { queueDepth } from "../reconciler/schedulers/slurm/queue.ts";

const node38 = {
  architecture: "x86_64",
  name: "gpu1",
  hostname: "gpu1",
  address: "127.0.0.1",
  state: "allocated",
  state_flags: ["DRAIN"],
  reason: "navarch: Xid 79 (incident 3)",
  reason_set_by_user: "slurm",
  reason_changed_at: 1795343850,
  comment: "",
  features: "h100,navarch-node=train-1",
  partitions: ["train"],
};

test("v0.0.38 nodes: a lowercase base state with flags, features as one string", () => {
  expect(parseNodes("v0.0.38", { meta: {}, errors: [], nodes: [node38] })).toEqual([
    {
      name: "gpu1",
      hostname: "gpu1",
      state: "allocated",
      flags: ["DRAIN"],
      reason: "navarch: Xid 79 (incident 3)",
      reasonSetBy: "slurm",
      comment: "",
      features: ["h100", "navarch-node=train-1"],
    },
  ]);
  expect(parseNodes("v0.0.38", { nodes: [{ ...node38, state_flags: [], reason: "", reason_set_by_user: null }] })[0]).toMatchObject({
    flags: [],
    reasonSetBy: null,
  });
});

test("v0.0.39 nodes: the state is a list, features a list", () => {
  const node39 = {
    name: "gpu2",
    hostname: "dgx-2",
    state: ["MIXED", "DRAIN"],
    reason: "maintenance",
    reason_set_by_user: "root",
    comment: "x",
    features: ["h100"],
  };
  expect(parseNodes("v0.0.39", { nodes: [node39] })).toEqual([
    { name: "gpu2", hostname: "dgx-2", state: "mixed", flags: ["DRAIN"], reason: "maintenance", reasonSetBy: "root", comment: "x", features: ["h100"] },
  ]);
});

test("an answer that is not what the version says is refused with where", () => {
  const bad = (() => {
    try {
      parseNodes("v0.0.39", { nodes: [node38] });
    } catch (err) {
      return err;
    }
  })();
  expect(bad).toBeInstanceOf(SchedulerError);
  expect((bad as SchedulerError).kind).toBe("invalid");
  expect((bad as SchedulerError).message).toContain("unexpected answer listing nodes at nodes[0].state");
});

test("jobs: hostlists expanded, several partitions, requeue; partitions of both versions", () => {
  const jobs = parseJobs({
    jobs: [
      { job_id: 7, job_state: "RUNNING", nodes: "gpu[1-2]", partition: "train", state_reason: "None", requeue: true },
      { job_id: 8, job_state: "PENDING", nodes: "", partition: "train,spot", state_reason: "Resources", requeue: false },
    ],
  });
  expect(jobs).toEqual([
    { id: 7, state: "RUNNING", nodes: ["gpu1", "gpu2"], partitions: ["train"], reason: "None", requeue: true },
    { id: 8, state: "PENDING", nodes: [], partitions: ["train", "spot"], reason: "Resources", requeue: false },
  ]);
  expect(parsePartitions("v0.0.38", { partitions: [{ name: "train", nodes: "gpu[1-3]" }] })).toEqual([{ name: "train", nodes: ["gpu1", "gpu2", "gpu3"] }]);
  expect(parsePartitions("v0.0.39", { partitions: [{ name: "train", nodes: { configured: "gpu[1-2]", total: 2 } }] })).toEqual([
    { name: "train", nodes: ["gpu1", "gpu2"] },
  ]);
  expect(answerErrors({ errors: [{ error: "Invalid node name specified", errno: 2018 }] })).toBe("Invalid node name specified (2018)");
});

test("queue depth: pending jobs waiting for capacity and jobs holding nodes, of one partition", () => {
  const job = (id: number, state: string, partition: string, reason = "None") => ({
    id,
    state,
    nodes: [],
    partitions: partition.split(","),
    reason,
    requeue: true,
  });
  const jobs = [
    job(1, "RUNNING", "train"),
    job(2, "COMPLETING", "train"),
    job(3, "PENDING", "train", "Resources"),
    job(4, "PENDING", "train,spot", "Priority"),
    job(5, "PENDING", "train", "JobHeldUser"),
    job(6, "PENDING", "train", "Dependency"),
    job(7, "COMPLETED", "train"),
    job(8, "RUNNING", "spot"),
  ];
  expect(queueDepth(jobs, "train")).toEqual({ pending: 2, running: 2 });
  expect(queueDepth(jobs, "spot")).toEqual({ pending: 1, running: 1 });
});
