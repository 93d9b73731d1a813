// `navarch demo`: the main job on the embedded defaults. Starts the reconciler on
// an embedded libSQL file, brings up the local pool as real navarch-node
// processes on this machine, and prints the fleet as it changes, until Ctrl-C
// (or --duration). Run `navarch nodes list` in another terminal to look around.
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { nodesTable } from "./nodes.ts";
import { CliError } from "./client.ts";
import { listNodes } from "../fleet/registry.ts";
import { LocalAgent, resolveAgentCommand } from "../providers/local.ts";
import { startReconciler } from "../serve.ts";
import { loadServeConfig, serveSettings } from "./serve.ts";
import type { NodeRow } from "../../schema/admin.ts";

export async function demoCommand(
  args: string[],
  out: { stdout: (s: string) => void; stderr: (s: string) => void },
): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      config: { type: "string" },
      agents: { type: "string" },
      "data-dir": { type: "string" },
      duration: { type: "string" },
    },
    strict: true,
  });
  const loaded = await loadServeConfig(values.config, out);
  if (loaded === undefined) return 2;
  const settings = serveSettings(loaded, values["data-dir"]);
  const pool = loaded.pools.find((p) => p.providers.includes("local"));
  if (pool === undefined) throw new CliError("demo: the config has no pool with provider local", 2);
  const agentCount = values.agents === undefined ? Math.max(pool.scaling.min_nodes, 1) : Number(values.agents);
  if (!Number.isInteger(agentCount) || agentCount < 1 || agentCount > 64) {
    throw new CliError(`--agents: expected a whole number from 1 to 64, got ${JSON.stringify(values.agents)}`, 2);
  }
  const durationMs = values.duration === undefined ? undefined : Number(values.duration) * 1000;
  if (durationMs !== undefined && !(durationMs > 0)) {
    throw new CliError(`--duration: expected seconds > 0, got ${JSON.stringify(values.duration)}`, 2);
  }

  const log = (line: string) => out.stderr(`${new Date().toISOString()} ${line}\n`);
  const rec = await startReconciler(settings, log);
  log(`reconciler listening on ${rec.url}; database ${rec.store.location}; token from ${rec.authTokenSource}`);

  const command = resolveAgentCommand(loaded.providers.local?.agent_binary);
  const agents = Array.from(
    { length: agentCount },
    (_, i) =>
      new LocalAgent(
        {
          nodeId: `${pool.name}-${i}`,
          pool: pool.name,
          serverUrl: rec.url,
          authToken: rec.authToken,
          stateDir: join(resolve(settings.dataDir), "local-nodes", `${pool.name}-${i}`),
        },
        command,
        // Agent lines carry their own timestamps.
        (line) => out.stderr(`${line}\n`),
      ),
  );
  for (const agent of agents) agent.start();
  log(`started ${agentCount} local agents for pool ${pool.name}; try: navarch nodes list   (Ctrl-C stops)`);

  let last = "";
  const show = async () => {
    const rows = (await listNodes(rec.store.db)) as NodeRow[];
    const text = nodesTable(rows);
    // Print when something other than the heartbeat ages changed.
    const key = rows.map((r) => `${r.id}:${r.state}:${r.stateReason}:${r.nvmlAvailable}`).join("|");
    if (key !== last) {
      last = key;
      out.stdout(`\n${text}\n`);
    }
  };
  const timer = setInterval(() => void show().catch((err: unknown) => log(`demo: ${String(err)}`)), 1000);

  await new Promise<void>((done) => {
    process.once("SIGINT", () => done());
    process.once("SIGTERM", () => done());
    if (durationMs !== undefined) setTimeout(done, durationMs);
  });
  clearInterval(timer);
  await show();
  log("stopping local agents and the reconciler");
  await Promise.all(agents.map((a) => a.stop()));
  await rec.stop();
  return 0;
}
