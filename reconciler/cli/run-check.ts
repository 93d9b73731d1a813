// `navarch nodes run-check NODE CHECK [--wait]`: asks a node's agent to run a check its
// machine's configuration defines (POST /v1/nodes/{id}/requests) and, with --wait, follows the
// request until it ends and prints how: the state, the exit code, how long it ran and the end of
// its output. Exit 0 when the check succeeded, 1 when it failed, timed out, was refused or
// expired (and 0 once asked, without --wait).
import { parseArgs } from "node:util";
import * as v from "valibot";
import { DEFAULT_REQUEST_DEADLINE_SECONDS, MAX_REQUEST_DEADLINE_SECONDS, RequestDetail } from "../../schema/agent-requests.ts";
import { printable } from "../../schema/text.ts";
import { CheckName, FINAL_REQUEST_STATES, type RequestState } from "../../schema/wire.ts";
import { CliError, actor, apiGet, apiPost, resolveTarget } from "./client.ts";
import { durationFlag } from "./durations.ts";
import { duration, parseAnswer, parseFormat, render, shown } from "./output.ts";

const RUN_CHECK_USAGE = "  navarch nodes run-check NODE CHECK [--wait] [--deadline 1h] [--reason TEXT]";

export interface RunCheckOptions {
  /** Stops the wait (tests). */
  signal?: AbortSignal;
  /** How often --wait asks (ms). */
  pollMs?: number;
}

const FINAL: readonly string[] = FINAL_REQUEST_STATES;

export async function runCheckCommand(args: string[], write: (s: string) => void, opts: RunCheckOptions = {}): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      wait: { type: "boolean" },
      deadline: { type: "string" },
      reason: { type: "string" },
      output: { type: "string", short: "o", default: "table" },
      server: { type: "string", short: "s" },
    },
    allowPositionals: true,
    strict: true,
  });
  const format = parseFormat(values.output);
  const [node, check, ...rest] = positionals;
  if (node === undefined || check === undefined || rest.length > 0) throw new CliError(`usage:\n${RUN_CHECK_USAGE}`, 2);
  const name = v.safeParse(CheckName, check);
  if (!name.success) throw new CliError(`CHECK ${JSON.stringify(check)}: ${name.issues[0]?.message}`, 2);
  const deadline =
    values.deadline === undefined
      ? DEFAULT_REQUEST_DEADLINE_SECONDS
      : durationFlag("--deadline", values.deadline, 1, MAX_REQUEST_DEADLINE_SECONDS, "30m or 2h (longer than the check's timeout on the machine)");
  const target = resolveTarget(values.server);
  const path = `/v1/nodes/${encodeURIComponent(node)}/requests`;
  const body = { kind: "run_check", args: { check }, deadlineSeconds: deadline, actor: actor(), ...(values.reason ? { reason: values.reason } : {}) };
  const asked = parseAnswer(RequestDetail, await apiPost(target, path, body), "the request");
  if (!values.wait) {
    write(
      render(
        format,
        asked,
        () =>
          shown`request ${asked.id}: node ${node} asked to run check ${check}; it goes out with the node's next heartbeat and expires in ${duration(deadline * 1000)} without an answer (follow it: navarch nodes run-check … --wait, or GET ${path}/${asked.id})`,
      ),
    );
    return 0;
  }
  const progress = (line: string) => {
    if (format === "table") write(`${printable(line, true)}\n`);
  };
  progress(`request ${asked.id}: node ${node} asked to run check ${check} (expires in ${duration(deadline * 1000)} without an answer)`);
  const started = Date.now();
  // The reconciler expires it at its deadline; this bound only guards against a server that never does.
  const giveUpAt = started + (deadline + 300) * 1000;
  let seen: RequestState = asked.state;
  let current = asked;
  while (!FINAL.includes(current.state)) {
    if (opts.signal?.aborted) throw new CliError(`stopped waiting; request ${asked.id} is ${current.state}`);
    if (Date.now() > giveUpAt) throw new CliError(`request ${asked.id} is still ${current.state} after its deadline; see GET ${path}/${asked.id}`);
    await Bun.sleep(opts.pollMs ?? 1000);
    current = parseAnswer(RequestDetail, await apiGet(target, `${path}/${asked.id}`), `request ${asked.id}`);
    if (current.state !== seen) {
      seen = current.state;
      const at = `[${duration(Date.now() - started)}]`;
      if (current.state === "delivered") progress(`${at} delivered to the agent`);
      else if (current.state === "running") progress(`${at} running on the agent`);
    }
  }
  write(render(format, current, () => resultText(current)));
  return current.state === "succeeded" ? 0 : 1;
}

/** How a request ended, and what the check printed (its control characters shown, not obeyed). */
export function resultText(r: RequestDetail): string {
  const how = [
    r.exitCode !== null ? `exit ${r.exitCode}` : undefined,
    r.signal !== null ? `killed by ${r.signal}` : undefined,
    r.durationMs !== null ? `ran ${duration(r.durationMs)}` : undefined,
  ].filter((x) => x !== undefined);
  const lines = [shown`${r.state}${how.length > 0 ? shown` (${how.join(", ")})` : ""}${r.detail !== null ? shown`: ${r.detail}` : ""}`];
  if (r.output !== null && r.output !== "") {
    const bytes = r.outputBytes ?? 0;
    lines.push(r.outputCut ? `--- output: the last 64 KiB of ${bytes} bytes ---` : "--- output ---");
    lines.push(printable(r.output.replace(/\n$/, "")));
  }
  return lines.join("\n");
}
