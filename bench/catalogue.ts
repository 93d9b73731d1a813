// What each recorded figure of bench/figures.json is: its label, its goal and how it is
// measured. `npm run bench` labels its rows from here, and docs/performance.md is rendered
// from here and the recorded figures (bench/page.ts), so the page says what the last
// recorded run measured, never a number typed by hand.

export interface FigureInfo {
  label: string;
  /** The goal in words, and whether a recorded value meets it (undefined: judged on more than the value). */
  goal?: { text: string; met?: (value: number) => boolean };
  /** How it is measured, and where. */
  how: string;
}

export const CATALOGUE: Readonly<Record<string, FigureInfo>> = {
  "agent.xid_p99": {
    label: "Xid injected into the fake libnvidia-ml → event stored by the reconciler",
    goal: { text: "p99 < 100 ms", met: (v) => v < 100 },
    how: "compiled agent and reconciler on loopback, 200 injections (`npm run bench agent`)",
  },
  "agent.kmsg_p99": {
    label: "Xid written to the kernel log → event stored by the reconciler",
    goal: { text: "p99 ≤ 50 ms", met: (v) => v <= 50 },
    how: "compiled agent reading a FIFO as its kernel log (it blocks like `/dev/kmsg`), 50 records 0–400 ms apart; from the finding on, the path of the row above (the spool's fsync, the POST, the reconciler's commit)",
  },
  "agent.slowdown_p50": {
    label: "GPU at its slowdown threshold → reconciler has it",
    goal: { text: "< 2 s (the slowest of 10 trials)" },
    how: "the fast tier reads temperature every second; trials at random points of the second",
  },
  "agent.outage_recovery": {
    label: "spooled events after a 20 s reconciler outage",
    goal: { text: "< 5 s", met: (v) => v < 5 },
    how: "16 events, from the reconciler being back to all stored; the agent retries at most 4 s apart",
  },
  "agent.cpu": {
    label: "agent CPU, 8 fake GPUs, default settings",
    goal: { text: "≤ 0.1 %", met: (v) => v <= 0.1 },
    how: "`/proc/PID/stat` ticks over 60 s",
  },
  "agent.rss": {
    label: "agent RSS, 8 fake GPUs, default settings",
    goal: { text: "≤ 40 MiB, flat", met: (v) => v <= 40 },
    how: "the most over 60 s; a minimal compiled Bun program (`bun:ffi` loaded, a `fetch` every 30 s) measured beside it uses about 30 MiB: most of the rest is the Bun runtime's pages and the NVML worker's second runtime instance",
  },
  "pass.100": {
    label: "reconcile pass, 100 ready nodes (baseline)",
    how: "median of 5 on a real libSQL file (`npm run bench reconciler`)",
  },
  "pass.10k": {
    label: "reconcile pass, 10,000 ready nodes",
    goal: { text: "< 200 ms", met: (v) => v < 200 },
    how: "median of 5",
  },
  "pass.100k": {
    label: "reconcile pass, 100,000 ready nodes",
    goal: { text: "≤ 1 s", met: (v) => v <= 1000 },
    how: "median of 3; a pass re-reads only the nodes the `node_changes` log names",
  },
  "memory.per_node": {
    label: "reconciler memory per node (JavaScript heap after passes)",
    how: "heap in use after passes at 100,000 nodes minus at 100, the loop alive",
  },
  "ingest.inprocess": {
    label: "heartbeat ingest, 10,000 nodes × 8 GPUs, clients in the reconciler's process",
    how: "32 clients sharing the process and the admin token; for comparison with the rows from outside",
  },
  "ingest.loop_gap": {
    label: "event loop's longest stall while ingest groups of 3,000 heartbeats are written beside store writes",
    goal: { text: "< 45 ms", met: (v) => v < 45 },
    how: "the longest gap of a 2 ms timer over 5 trials of 30 store writes, the ingest worker writing groups back to back on a real libSQL file (`npm run bench writer`)",
  },
  "ingest.vegeta.3000.rate": {
    label: "heartbeat ingest from vegeta (own process), asked 3,000/s: answered",
    how: "each node with its own credential (`npm run bench ingest`)",
  },
  "ingest.vegeta.3000.p99": { label: "  … its latency", how: "" },
  "ingest.vegeta.5000.rate": { label: "heartbeat ingest from vegeta (own process), asked 5,000/s: answered", how: "" },
  "ingest.vegeta.5000.p99": { label: "  … its latency", how: "" },
  "ingest.vegeta.10000.rate": {
    label: "heartbeat ingest from vegeta (own process), asked 10,000/s: answered",
    goal: { text: "10,000/s", met: (v) => v >= 9900 },
    how: "",
  },
  "ingest.vegeta.10000.p99": { label: "  … its latency", goal: { text: "p99 ≤ 50 ms", met: (v) => v <= 50 }, how: "" },
  "metrics.10k.auto": {
    label: "/metrics scrape, 10,000 nodes × 8 GPUs (metrics_per_gpu: auto)",
    goal: { text: "< 1 s", met: (v) => v < 1000 },
    how: "median, real libSQL file, every node with readings (`npm run bench metrics`)",
  },
  "metrics.10k.on": { label: "  … with per-GPU series on", how: "" },
  "metrics.100k.auto": {
    label: "/metrics scrape, 100,000 nodes × 8 GPUs (metrics_per_gpu: auto)",
    goal: { text: "< 1 s", met: (v) => v < 1000 },
    how: "per-GPU series are off above 40,000 GPUs",
  },
  "metrics.100k.on": { label: "  … with per-GPU series on", how: "" },
  "sim.1k.0.5": {
    label: "simulator, 1,000 nodes × 24 virtual h, 0.5 faults/1,000 node-h",
    how: "the real reconcile loop on virtual time (`npm run bench sim`)",
  },
  "sim.10k.0.16": {
    label: "simulator, 10,000 nodes × 24 virtual h, 0.16 faults/1,000 node-h",
    goal: { text: "< 60 s", met: (v) => v < 60 },
    how: "0.16 is what Llama 3's training on 16k H100s saw",
  },
  "sim.10k.0.5": { label: "simulator, 10,000 nodes × 24 virtual h, 0.5 faults/1,000 node-h", goal: { text: "< 60 s", met: (v) => v < 60 }, how: "" },
  "sim.100k.0.16": {
    label: "simulator, 100,000 nodes × 24 virtual h, 0.16 faults/1,000 node-h",
    goal: { text: "≤ 10 min", met: (v) => v <= 600 },
    how: "a scratch libSQL file (never synced)",
  },
  "sim.llama3.54d": {
    label: "goodput: Llama 3's 54 days, 2,048 nodes, one gang job (navarch's defaults)",
    goal: { text: "≤ 60 s", met: (v) => v <= 60 },
    how: "scenarios/llama3-54d.yaml with its 466 interruptions; notes: ETTR per compare: variant (`npm run bench sim`)",
  },
  "dashboard.100k.kb": {
    label: "dashboard overview at 100,000 nodes",
    goal: { text: "< 200 KB", met: (v) => v < 200 },
    how: "at most 500 tiles, those needing attention first (`test/dashboard.test.ts`)",
  },
  "dashboard.100k.render": { label: "  … rendered in chromium", goal: { text: "< 1 s", met: (v) => v < 1000 }, how: "" },
  "cli.help": {
    label: "`navarch --help`: the compiled binary's start to exit",
    goal: { text: "≤ 150 ms", met: (v) => v <= 150 },
    how: "median of 20 runs from a directory with no node_modules (`npm run bench cli`)",
  },
  "cli.nodes_help": { label: "  … `navarch nodes --help`", goal: { text: "≤ 150 ms", met: (v) => v <= 150 }, how: "" },
  "cli.nodes_list": {
    label: "  … `navarch nodes list`",
    goal: { text: "≤ 150 ms", met: (v) => v <= 150 },
    how: "against `navarch serve` (the same binary) on loopback",
  },
  "kube.5k.fault_p99": {
    label: "Kubernetes: GPU fault → Node cordoned and tainted, 5,000 KWOK nodes",
    goal: { text: "p99 ≤ 150 ms from the fault", met: (v) => v <= 150 },
    how: "real kube-apiserver, controller-manager and KWOK on loopback (`npm run bench kube`)",
  },
  "kube.5k.stored_p99": { label: "  … from the stored event", how: "" },
  "kube.5k.burst500": { label: "  … a burst of 500 faults", how: "cordons per second, paced by the cordon-rate rail (40/s after a burst of 40)" },
};

/** The catalogue's label and goal text of a recorded figure, for the bench's rows (`met` is the run's own judgement). */
export function about(key: string, met?: boolean): { key: string; label: string; goal?: { text: string; met: boolean } } {
  const info = CATALOGUE[key];
  if (info === undefined) throw new Error(`bench/catalogue.ts has no figure ${key}`);
  return { key, label: info.label, ...(info.goal !== undefined && met !== undefined ? { goal: { text: info.goal.text, met } } : {}) };
}
