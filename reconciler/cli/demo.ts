// `navarch demo`: the main job on the embedded defaults. Starts the reconciler on
// an embedded libSQL file, brings up the local pool as real navarch-node
// processes on this machine, and prints the fleet as it changes, until Ctrl-C
// (or --duration). Run `navarch nodes list` in another terminal to look around.
import { existsSync, rmSync } from "node:fs";
import { parseArgs } from "node:util";
import { nodesTable } from "./nodes.ts";
import { CliError } from "./client.ts";
import { listNodes } from "../fleet/registry.ts";
import { LocalProvider, localProviderOptions } from "../providers/local.ts";
import { ProviderError, TAG_MANAGED_BY, TAG_OPERATION, TAG_POOL, type Instance } from "../providers/provider.ts";
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

  const provider = new LocalProvider(
    localProviderOptions(loaded.providers.local, { dataDir: settings.dataDir, serverUrl: rec.url, authToken: rec.authToken, log }),
  );
  // Tombstones of an earlier run would otherwise come back as terminated; agents an earlier
  // run left behind (killed with -9) carry the same keys and are adopted.
  await provider.reap(0);
  const instances: Instance[] = [];
  try {
    for (let i = 0; i < agentCount; i++) {
      const name = `${pool.name}-${i}`;
      const files = provider.files(name);
      // Before the local provider, the demo kept only an agent state directory here.
      if (existsSync(files.dir) && !existsSync(files.record)) rmSync(files.dir, { recursive: true, force: true });
      const key = `demo-${name}`;
      instances.push(
        await provider.launch({
          name,
          idempotencyKey: key,
          pool: pool.name,
          instanceType: pool.instance_type,
          region: pool.region,
          tags: { [TAG_MANAGED_BY]: "navarch", [TAG_POOL]: pool.name, [TAG_OPERATION]: key },
        }),
      );
    }
  } catch (err) {
    await Promise.all(instances.map((inst) => provider.terminate(inst.id)));
    await rec.stop();
    if (err instanceof ProviderError) throw new CliError(`demo: ${err.message}`, 2);
    throw err;
  }
  log(
    `started ${agentCount} local agents for pool ${pool.name} (logs: ${provider.dir.root}/<node>/agent.log); try: navarch nodes list   (Ctrl-C stops)`,
  );

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
  await Promise.all(instances.map((inst) => provider.terminate(inst.id)));
  await rec.stop();
  return 0;
}
