// `navarch demo`: the main job on the embedded defaults. The reconciler runs on an
// embedded libSQL file and brings its local pool up itself, as real navarch-node
// processes on this machine (the local provider). Once the pool is Ready, the demo
// breaks one GPU (Xid 79 through the node's fake libnvidia-ml, when one is given)
// and the fleet table shows the reconciler cordon, drain and reboot the node (the
// catalog recommends a reboot for Xid 79), and the node back in service once its
// health check passes in the new boot. It runs until Ctrl-C (or --duration).
import { parseArgs } from "node:util";
import { eq } from "drizzle-orm";
import { nodes } from "../../schema/db.ts";
import type { NodeRow } from "../../schema/admin.ts";
import { CliError } from "./client.ts";
import { durationFlag } from "./durations.ts";
import { nodesTable } from "./nodes.ts";
import { listNodes } from "../nodes/agent-reports.ts";
import { LocalProvider } from "../providers/local/provider.ts";
import { startReconciler } from "../app/serve.ts";
import { isStartProblem, loadHealthPolicy, loadServeConfig, serveSettings } from "./serve.ts";
import { logLine } from "../../schema/text.ts";

export async function demoCommand(args: string[], out: { stdout: (s: string) => void; stderr: (s: string) => void }): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      config: { type: "string" },
      "data-dir": { type: "string" },
      "nvml-library": { type: "string" },
      "no-fault": { type: "boolean" },
      duration: { type: "string" },
      port: { type: "string" },
    },
    strict: true,
  });
  const loaded = await loadServeConfig(values.config, out);
  if (loaded === undefined) return 2;
  const policy = await loadHealthPolicy(loaded, out);
  if (policy === undefined) return 2;
  const pool = loaded.pools.find((p) => p.providers.includes("local"));
  if (pool === undefined) throw new CliError("demo: the config has no pool with provider local", 2);
  // The fake libnvidia-ml is only ever used when named explicitly.
  const config = values["nvml-library"]
    ? { ...loaded, providers: { ...loaded.providers, local: { ...loaded.providers.local, nvml_library: values["nvml-library"] } } }
    : loaded;
  // A timer holds at most 24.8 days: a week is plenty for a demo.
  const durationMs = values.duration === undefined ? undefined : durationFlag("--duration", values.duration, 1, 7 * 86_400, "90s or 10m") * 1000;
  const port = values.port === undefined ? undefined : Number(values.port);
  if (port !== undefined && !(Number.isInteger(port) && port >= 1 && port <= 65535 && /^\d+$/.test(values.port ?? "")))
    throw new CliError(`--port: expected a port from 1 to 65535, got ${JSON.stringify(values.port)}`, 2);

  const settings = { ...serveSettings(config, values["data-dir"]), ...(port === undefined ? {} : { port }) };
  const log = (line: string) => out.stderr(logLine("navarch demo", line));
  const rec = await startReconciler(settings, log, Date.now, { config, policy }).catch((err: unknown) => {
    throw isStartProblem(err) ? new CliError(err.message) : err;
  });
  log(`reconciler listening on ${rec.url}; database ${rec.store.location}; token from ${rec.authTokenSource}`);
  const local = rec.providers.get("local");
  if (local instanceof LocalProvider) log(`local agents' logs: ${local.dir.root}/<node>/agent.log`);
  log(
    config.providers.local?.nvml_library
      ? `GPUs are simulated by the fake libnvidia-ml ${config.providers.local.nvml_library}`
      : "no --nvml-library: the local agents have no GPUs to read and stay validating (see README)",
  );
  log(`pool ${pool.name}: ${pool.scaling.min_nodes} nodes; try \`navarch nodes list\` in another terminal (Ctrl-C stops)`);

  let last = "";
  let faulted = values["no-fault"] === true || !config.providers.local?.nvml_library;
  const show = async () => {
    const rows = (await listNodes(rec.store.db)) as NodeRow[];
    const key = rows.map((r) => `${r.id}:${r.state}:${r.stateReason}`).join("|");
    if (key !== last) {
      last = key;
      out.stdout(`\n${nodesTable(rows)}\n`);
    }
    const ready = rows.filter((r) => r.pool === pool.name && r.state === "ready");
    if (!faulted && ready.length >= pool.scaling.min_nodes && local instanceof LocalProvider) {
      faulted = true;
      const victim = ready[0]!;
      const [row] = await rec.store.db.select().from(nodes).where(eq(nodes.id, victim.id));
      log(`the pool is ready; breaking GPU 3 of ${victim.id} (Xid 79, fallen off the bus). Try it yourself: navarch fault inject NODE --xid 79`);
      await local.injectNvml(row!.instanceName!, "xid 3 79");
    }
  };
  const timer = setInterval(() => void show().catch((err: unknown) => log(`demo: ${String(err)}`)), 500);

  let stopAfter: ReturnType<typeof setTimeout> | undefined;
  await new Promise<void>((done) => {
    process.once("SIGINT", () => done());
    process.once("SIGTERM", () => done());
    if (durationMs !== undefined) stopAfter = setTimeout(done, durationMs);
  });
  // A pending --duration timer would keep the process alive after Ctrl-C.
  clearTimeout(stopAfter);
  clearInterval(timer);
  await show();
  log("stopping: terminating the local nodes, then the reconciler");
  await rec.loop?.stop();
  if (local instanceof LocalProvider) {
    for (const n of (await listNodes(rec.store.db)).filter((n) => n.provider === "local" && n.instanceName)) await local.terminate(n.instanceName!);
  }
  await rec.stop();
  return 0;
}
