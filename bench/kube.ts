// The Kubernetes figures: test/kube-scale.test.ts at 5,000 KWOK GPU nodes (a real
// kube-apiserver, etcd and KWOK; the Go binaries built once into a cache outside the repo),
// read from what the test prints.
import { about } from "./catalogue.ts";
import type { Figure } from "./figures.ts";
import { testOutput } from "./test-figures.ts";

const NODES = 5000;

export async function kubeFigures(log: (s: string) => void): Promise<Figure[]> {
  log(`kubernetes: fault → cordon at ${NODES.toLocaleString("en-US")} KWOK nodes (test/kube-scale.test.ts)…`);
  const out = await testOutput("test/kube-scale.test.ts", "KWOK", { NAVARCH_KUBE_SCALE_NODES: String(NODES) });
  const latency = (from: string) => {
    const m = new RegExp(`from ${from}: p50 (\\d+) ms, p99 (\\d+) ms, max (\\d+) ms`).exec(out);
    if (m === null) throw new Error(`test/kube-scale.test.ts printed no latency ${from}:\n${out.slice(-3000)}`);
    return { p50: Number(m[1]), p99: Number(m[2]), max: Number(m[3]) };
  };
  const fault = latency("the fault");
  const stored = latency("the stored event");
  const where =
    // The watch's part can be negative: the PATCH's answer is timed when the reconciler's
    // thread gets to it, and the watcher, on a thread of its own, may see the Node first.
    /loop decides to cordon p50 (-?\d+) ms, p99 (-?\d+) ms.*?answers the PATCH p50 (-?\d+) ms, p99 (-?\d+) ms.*?sees the Node p50 (-?\d+) ms, p99 (-?\d+) ms/.exec(
      out,
    );
  const burst = /burst of (\d+) faults .*?→ ([\d.]+) nodes\/s/.exec(out);
  const figures: Figure[] = [
    {
      ...about("kube.5k.fault_p99", fault.p99 <= 150),
      value: fault.p99,
      unit: "ms p99",
      notes: `p50 ${fault.p50} ms, max ${fault.max} ms${where === null ? "" : `; where it goes (p50 / p99 ms): the loop deciding ${where[1]} / ${where[2]}, the PATCH ${where[3]} / ${where[4]}, the watch ${where[5]} / ${where[6]}`}`,
    },
    {
      ...about("kube.5k.stored_p99"),
      value: stored.p99,
      unit: "ms p99",
      notes: `p50 ${stored.p50} ms, max ${stored.max} ms`,
    },
  ];
  if (burst !== null)
    figures.push({
      ...about(`kube.5k.burst${burst[1]}`),
      value: Number(burst[2]),
      unit: "nodes/s",
      notes: "cordoned at the cordon-rate rail's pace (set to 40/s in the test)",
    });
  return figures;
}
