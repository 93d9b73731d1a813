// Operator actions from the command line: cordon, uncordon, drain, replace a node;
// pause and resume a pool; reset a breaker; list incidents; inject a fault into a
// local (simulated) node. Each is one API call; errors are one line.
import { parseArgs } from "node:util";
import { userInfo } from "node:os";
import { CliError, apiGet, apiPost, resolveTarget } from "./client.ts";
import { age, table } from "./output.ts";

export const ACTIONS_USAGE = `  navarch cordon|uncordon|replace NODE [--reason TEXT]
  navarch drain NODE [--reason TEXT] [--deadline SECONDS]
  navarch pools list | pause POOL [--reason TEXT] | resume POOL
  navarch breaker reset SCOPE                 (fleet or pool:NAME)
  navarch incidents [--open]
  navarch fault inject NODE --xid N [--gpu I] | --nvml COMMAND | --kmsg LINE   (local nodes only)`;

function actor(): string {
  try {
    return userInfo().username;
  } catch {
    return "operator";
  }
}

export async function actionCommand(command: string, args: string[], write: (s: string) => void): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      reason: { type: "string" },
      deadline: { type: "string" },
      open: { type: "boolean" },
      xid: { type: "string" },
      gpu: { type: "string" },
      nvml: { type: "string" },
      kmsg: { type: "string" },
      server: { type: "string", short: "s" },
    },
    allowPositionals: true,
    strict: true,
  });
  const target = resolveTarget(values.server);
  const body = { actor: actor(), ...(values.reason ? { reason: values.reason } : {}) };
  const one = (what: string): string => {
    if (positionals.length !== 1 || !positionals[0]) throw new CliError(`usage: navarch ${command} ${what}`, 2);
    return positionals[0];
  };
  switch (command) {
    case "cordon":
    case "uncordon":
    case "replace": {
      const node = one("NODE");
      await apiPost(target, `/v1/nodes/${encodeURIComponent(node)}/${command}`, body);
      write(`${node}: ${command} requested\n`);
      return 0;
    }
    case "drain": {
      const node = one("NODE");
      const deadline = values.deadline === undefined ? undefined : Number(values.deadline);
      if (deadline !== undefined && !(Number.isInteger(deadline) && deadline > 0)) throw new CliError(`--deadline: expected whole seconds > 0, got ${values.deadline}`, 2);
      await apiPost(target, `/v1/nodes/${encodeURIComponent(node)}/drain`, { ...body, ...(deadline ? { deadlineSeconds: deadline } : {}) });
      write(`${node}: drain requested\n`);
      return 0;
    }
    case "pools": {
      const [verb, pool] = positionals;
      if (verb === "list") {
        const res = (await apiGet(target, "/v1/pools")) as { pools: { name: string; paused: boolean; pausedReason: string | null; lastScaleAt: number | null }[] };
        write(`${table(["POOL", "PAUSED", "LAST SCALED"], res.pools.map((p) => [p.name, p.paused ? `yes (${p.pausedReason ?? ""})` : "no", age(p.lastScaleAt)]))}\n`);
        return 0;
      }
      if ((verb === "pause" || verb === "resume") && pool) {
        await apiPost(target, `/v1/pools/${encodeURIComponent(pool)}/${verb}`, body);
        write(`pool ${pool}: ${verb}d\n`);
        return 0;
      }
      throw new CliError("usage: navarch pools list | pause POOL | resume POOL", 2);
    }
    case "breaker": {
      const [verb, scope] = positionals;
      if (verb !== "reset" || !scope) throw new CliError("usage: navarch breaker reset SCOPE", 2);
      await apiPost(target, `/v1/breakers/${encodeURIComponent(scope)}/reset`, body);
      write(`breaker ${scope}: reset\n`);
      return 0;
    }
    case "incidents": {
      const res = (await apiGet(target, `/v1/incidents${values.open ? "?open=true" : ""}`)) as {
        incidents: { id: number; nodeId: string; reason: string; status: string; openedAt: number; outcome: string | null }[];
      };
      write(
        `${res.incidents.length === 0 ? "No incidents." : table(["ID", "NODE", "OPENED", "OUTCOME", "STATUS", "REASON"], res.incidents.map((i) => [String(i.id), i.nodeId, age(i.openedAt), i.outcome ?? "open", i.status, i.reason]), 60)}\n`,
      );
      return 0;
    }
    case "fault": {
      const [verb, node] = positionals;
      if (verb !== "inject" || !node) throw new CliError("usage: navarch fault inject NODE --xid N [--gpu I] | --nvml COMMAND | --kmsg LINE", 2);
      const fault =
        values.xid !== undefined
          ? { xid: Number(values.xid), ...(values.gpu !== undefined ? { gpu: Number(values.gpu) } : {}) }
          : values.nvml !== undefined
            ? { nvml: values.nvml }
            : values.kmsg !== undefined
              ? { kmsg: values.kmsg }
              : undefined;
      if (fault === undefined) throw new CliError("fault inject: give --xid N, --nvml COMMAND or --kmsg LINE", 2);
      await apiPost(target, `/v1/nodes/${encodeURIComponent(node)}/fault`, fault);
      write(`${node}: fault injected\n`);
      return 0;
    }
    default:
      throw new CliError(`unknown command ${command}`, 2);
  }
}
