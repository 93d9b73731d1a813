// The agent's side of the reconciler's requests. They arrive in heartbeat answers; each is
// judged here against this machine's own configuration (schema/agent-config.ts): a request
// names a check, and only a check the file defines is run, with the command and timeout the
// file gives, never anything the request carries. Everything else is refused with the reason
// (a check the file does not define, a kind this agent does not serve, arguments it does not
// take, a deadline already past), and nothing is spawned for it.
//
// Requests run one at a time, in the order they came (at most 16 wait; more are refused). Each
// is answered with POST /v1/nodes/{id}/requests/{request_id}: `running` when it starts, then how
// it ended; answers are resent until the reconciler acknowledges them. The journal
// (request-journal.ts) makes every request run at most once, also across a restart of the agent.
import * as v from "valibot";
import { AGENT_CONFIG_PATH, type AgentCheck, type AgentConfig } from "../schema/agent-config.ts";
import { textPrefix, textSuffix } from "../schema/text.ts";
import { NAVARCH_VERSION } from "../schema/version.ts";
import { AgentRequest, RequestId, RunCheckArgs, formatIssuePath, type RequestAnswer } from "../schema/wire.ts";
import { Backoff } from "./backoff.ts";
import { killGroup, processStartTime, runCheck, type RunningCheck, type Spawner } from "./check-runner.ts";
import { RequestJournal } from "./request-journal.ts";
import { ReportError, type ReconcilerClient } from "./reporter.ts";

export interface RequestHandlerOptions {
  nodeId: string;
  client: Pick<ReconcilerClient, "answerRequest">;
  config: AgentConfig;
  /** The file the configuration came from (undefined: there was none), for refusals. */
  configSource: string | undefined;
  /** The agent's state directory: the journal lives there. */
  stateDir: string;
  log: (line: string) => void;
  /** How checks are started (tests count the calls). */
  spawn?: Spawner;
  /** Between a timeout's SIGTERM and its SIGKILL. */
  graceMs?: number;
  retryMinMs?: number;
  retryMaxMs?: number;
}

/** Requests waiting behind the one that runs; more are refused (the reconciler holds at most 16 open per node). */
export const MAX_WAITING_REQUESTS = 16;

/** An answer whose output a proxy refused as too large goes again with this much of it. */
const LAST_RESORT_OUTPUT = 4096;

interface Accepted {
  id: string;
  kind: "run_check";
  name: string;
  check: AgentCheck;
  deadline: number;
}

/** A wait another loop can end early. */
class Wake {
  private resolve: (() => void) | undefined;
  private pending = false;

  sleep(ms: number): Promise<void> {
    if (this.pending) {
      this.pending = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.resolve = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.resolve = done;
    });
  }

  wake(): void {
    if (this.resolve) this.resolve();
    else this.pending = true;
  }
}

export class RequestHandler {
  private readonly journal: RequestJournal;
  private readonly queue: Accepted[] = [];
  /** Ids queued or running now. */
  private readonly inHand = new Set<string>();
  private current: { id: string; running: RunningCheck } | undefined;
  /** The latest answer of each request the reconciler has not acknowledged, in the order given. */
  private readonly outbox = new Map<string, RequestAnswer>();
  private readonly work = new Wake();
  private readonly sending = new Wake();
  private readonly backoff: Backoff;
  private stopped = false;
  private loops: Promise<void>[] = [];

  constructor(private readonly opts: RequestHandlerOptions) {
    this.journal = new RequestJournal(opts.stateDir, opts.log);
    this.backoff = new Backoff({
      ...(opts.retryMinMs !== undefined ? { minMs: opts.retryMinMs } : {}),
      ...(opts.retryMaxMs !== undefined ? { maxMs: opts.retryMaxMs } : {}),
    });
  }

  /** Answers what the last run left unanswered, then starts taking requests. */
  start(): void {
    for (const e of this.journal.unfinished()) {
      // The check's group may have outlived the agent (kill -9): it is not left running.
      if (e.pid !== undefined && e.pidStart !== undefined && processStartTime(e.pid) === e.pidStart) killGroup(e.pid, "SIGKILL");
      this.journal.finish(
        e.id,
        e.kind,
        { state: "failed", reason: "the agent stopped while it ran; a request is never run twice, so it was not run again" },
        e.check,
      );
      this.opts.log(`requests: ${e.id}: was running when the agent stopped; answered failed, not run again`);
    }
    for (const e of this.journal.unsent()) this.outbox.set(e.id, e.answer!);
    this.loops = [this.runLoop(), this.sendLoop()];
  }

  /** The requests of a heartbeat answer: each one not seen before is judged, then queued or refused. */
  offer(items: readonly unknown[]): void {
    for (const item of items) {
      const head = v.safeParse(v.object({ id: RequestId, kind: v.optional(v.unknown()) }), item);
      if (!head.success) {
        this.opts.log(`requests: ignored a request without a valid id (${formatIssuePath(head.issues[0]?.path)}: ${head.issues[0]?.message})`);
        continue;
      }
      const { id } = head.output;
      if (this.inHand.has(id) || this.journal.has(id) || this.outbox.has(id)) continue;
      const judged = this.judge(item);
      if ("refused" in judged) {
        const kind = head.output.kind;
        this.refuse(id, typeof kind === "string" ? textPrefix(kind, 64) : "unknown", judged.refused, judged.check);
        continue;
      }
      if (this.queue.length >= MAX_WAITING_REQUESTS) {
        this.refuse(id, judged.kind, `${this.queue.length} requests already wait here (at most ${MAX_WAITING_REQUESTS}); ask again later`, judged.name);
        continue;
      }
      this.inHand.add(id);
      this.queue.push(judged);
      this.opts.log(`requests: ${id}: check ${judged.name} accepted${this.queue.length > 1 || this.current ? ` (${this.queue.length} waiting)` : ""}`);
      this.work.wake();
    }
  }

  /** Stops a check under way (answered failed: the agent stopped), and sends what it can. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.current?.running.stop("the agent stopped while it ran (navarch-node was stopped); its process group was killed");
    this.work.wake();
    this.sending.wake();
    await Promise.all(this.loops);
    // One pass, stopping at the first failure: what is not sent stays in the journal for the next start.
    await this.flush().catch(() => undefined);
  }

  /** Whether this request may run here: the check it names, or why it is refused. */
  private judge(item: unknown): Accepted | { refused: string; check?: string } {
    const parsed = v.safeParse(AgentRequest, item);
    if (!parsed.success) {
      const issue = parsed.issues[0];
      const kind = typeof item === "object" && item !== null && "kind" in item ? item.kind : undefined;
      if (issue?.path?.[0]?.key === "kind" && typeof kind === "string")
        return { refused: `this agent (navarch-node ${NAVARCH_VERSION}) does not know ${JSON.stringify(textPrefix(kind, 64)).slice(1, -1)} requests` };
      return { refused: `the request cannot be read: ${formatIssuePath(issue?.path) || "(request)"}: ${issue?.message ?? "invalid"}` };
    }
    const req = parsed.output;
    if (req.kind !== "run_check") return { refused: `this agent (navarch-node ${NAVARCH_VERSION}) does not serve ${req.kind} requests yet` };
    const args = v.safeParse(RunCheckArgs, req.args);
    if (!args.success) {
      const issue = args.issues[0];
      return {
        refused: `args.${formatIssuePath(issue?.path)}: ${issue?.message ?? "invalid"} (a run_check request names a check and nothing else: its command and timeout are this machine's)`,
      };
    }
    const name = args.output.check;
    const checks = this.opts.config.checks;
    // Own keys only: "constructor" is a check name too, and no check of an empty object.
    const check = Object.hasOwn(checks, name) ? checks[name] : undefined;
    if (check === undefined) {
      const defined = Object.keys(checks);
      const where =
        this.opts.configSource === undefined
          ? `there is no ${AGENT_CONFIG_PATH}`
          : `${this.opts.configSource} defines ${defined.length === 0 ? "none" : defined.join(", ")}`;
      return { refused: `check ${name} is not defined in this machine's configuration (${where})`, check: name };
    }
    const deadline = Date.parse(req.deadline);
    if (deadline <= Date.now()) return { refused: `its deadline (${req.deadline}) passed before the agent could start it`, check: name };
    return { id: req.id, kind: "run_check", name, check, deadline };
  }

  private refuse(id: string, kind: string, reason: string, check?: string): void {
    const answer: RequestAnswer = { state: "refused", reason: textSuffix(reason, 1024) };
    this.journal.finish(id, kind, answer, check);
    this.opts.log(`requests: ${id}: refused: ${reason}`);
    this.answer(id, answer);
  }

  private answer(id: string, answer: RequestAnswer): void {
    this.outbox.set(id, answer);
    this.sending.wake();
  }

  private async runLoop(): Promise<void> {
    while (!this.stopped) {
      const next = this.queue.shift();
      if (next === undefined) {
        await this.work.sleep(60_000);
        continue;
      }
      try {
        await this.run(next);
      } finally {
        this.inHand.delete(next.id);
      }
    }
    // Requests not started stay with the reconciler, which delivers them again after a restart.
    for (const q of this.queue.splice(0)) this.inHand.delete(q.id);
  }

  private async run(req: Accepted): Promise<void> {
    if (req.deadline <= Date.now()) {
      this.refuse(req.id, req.kind, `its deadline (${new Date(req.deadline).toISOString()}) passed while it waited for the check before it`, req.name);
      return;
    }
    try {
      this.journal.start({ id: req.id, kind: req.kind, check: req.name });
    } catch (err) {
      this.refuse(
        req.id,
        req.kind,
        `it cannot be recorded in the state directory before it runs (${err instanceof Error ? err.message : String(err)}); a request runs only once recorded, so that it never runs twice`,
        req.name,
      );
      return;
    }
    this.answer(req.id, { state: "running" });
    const running = runCheck(req.name, req.check, {
      ...(this.opts.spawn ? { spawn: this.opts.spawn } : {}),
      ...(this.opts.graceMs !== undefined ? { graceMs: this.opts.graceMs } : {}),
      env: { NAVARCH_REQUEST_ID: req.id, NAVARCH_CHECK: req.name },
    });
    this.current = { id: req.id, running };
    if (running.pid !== undefined) this.journal.running(req.id, running.pid, processStartTime(running.pid));
    this.opts.log(`requests: ${req.id}: running check ${req.name}${running.pid !== undefined ? ` (process group ${running.pid})` : ""}`);
    const r = await running.result;
    this.current = undefined;
    const answer: RequestAnswer = {
      state: r.state,
      ...(r.reason !== undefined ? { reason: textSuffix(r.reason, 1024) } : {}),
      ...(r.exitCode !== undefined ? { exitCode: r.exitCode } : {}),
      ...(r.signal !== undefined ? { signal: r.signal } : {}),
      output: r.output,
      outputBytes: r.outputBytes,
      outputCut: r.outputCut,
      durationMs: r.durationMs,
    };
    this.journal.finish(req.id, req.kind, answer, req.name);
    const how = r.exitCode !== undefined ? `exit ${r.exitCode}` : r.signal !== undefined ? r.signal : (r.reason ?? "");
    this.opts.log(`requests: ${req.id}: check ${req.name} ${r.state} (${how}, ${(r.durationMs / 1000).toFixed(1)} s)`);
    this.answer(req.id, answer);
  }

  private async sendLoop(): Promise<void> {
    while (!this.stopped) {
      if (this.outbox.size === 0) {
        await this.sending.sleep(60_000);
        continue;
      }
      const delay = await this.flush().catch((err: unknown) => {
        this.opts.log(`requests: sending answers failed: ${err instanceof Error ? err.message : String(err)}`);
        return this.backoff.fail();
      });
      if (!this.stopped) await this.sending.sleep(delay > 0 ? delay : this.outbox.size > 0 ? 50 : 60_000);
    }
  }

  /**
   * Sends the outbox in order; returns how long to wait before trying again (0: all sent). An
   * answer the reconciler refuses for good (it does not know the request) is dropped.
   */
  private async flush(): Promise<number> {
    for (const [id, answer] of [...this.outbox]) {
      try {
        const res = await this.opts.client.answerRequest(this.opts.nodeId, id, answer);
        if (this.outbox.get(id) === answer) this.outbox.delete(id);
        if (answer.state !== "running") this.journal.acknowledged(id);
        this.backoff.succeed();
        if (res.state === "expired" && answer.state !== "running")
          this.opts.log(`requests: ${id}: the reconciler had given up waiting (expired) before this answer`);
      } catch (err) {
        if (!(err instanceof ReportError)) throw err;
        if (err.kind === "too_large" && (answer.output?.length ?? 0) > LAST_RESORT_OUTPUT) {
          this.outbox.set(id, { ...answer, output: textSuffix(answer.output!, LAST_RESORT_OUTPUT), outputCut: true });
          return 0;
        }
        const retry = err.status === 0 || err.status >= 500 || err.status === 401 || err.status === 408 || err.status === 429 || err.kind === "unknown_node";
        if (retry) return this.backoff.fail();
        // The reconciler will never take it (it does not know the request, or refuses the body).
        this.opts.log(`requests: ${id}: the reconciler refused the answer (${err.message}); it is dropped`);
        if (this.outbox.get(id) === answer) this.outbox.delete(id);
        if (answer.state !== "running") this.journal.acknowledged(id);
      }
    }
    return 0;
  }
}
