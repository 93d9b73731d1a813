// What the reconciler asks of nodes' agents (schema/wire.ts: AgentRequest), kept in the
// agent_requests table: created by an operator (audited), delivered in the node's heartbeat
// answers until its agent answers, then the answer; a request not answered with a final state
// by its deadline becomes `expired` (audited too). Any reconciler may serve any of this (agents
// and operators may use either replica): every change is a compare-and-set on the row's state.
//
// The heartbeat path stays cheap: which nodes have a request waiting is read once a second (one
// query of the open requests, which also expires the overdue ones), and only a heartbeat of such
// a node reads the table. So a request made on another reconciler reaches its agent within a
// second and a heartbeat.
import { randomBytes } from "node:crypto";
import { and, desc, eq, inArray, sql } from "drizzle-orm";
import * as v from "valibot";
import { MAX_OPEN_REQUESTS_PER_NODE, REQUEST_LIST_MAX, type RequestCreate, type RequestDetail, type RequestSummary } from "../../schema/agent-requests.ts";
import { agentRequests, auditLog, nodes } from "../../schema/db.ts";
import { isIn } from "../../schema/lifecycle.ts";
import type { Clock } from "../../schema/time.ts";
import { AgentRequest, type RequestAnswer, type RequestState } from "../../schema/wire.ts";
import type { Db } from "../store/store.ts";

export type RequestRow = typeof agentRequests.$inferSelect;

/** Not ended: the reconciler still waits for an answer. */
const OPEN = ["pending", "delivered", "running"] as const satisfies readonly RequestState[];
/** Not answered at all: sent with every heartbeat answer until the agent answers. */
const UNANSWERED = ["pending", "delivered"] as const satisfies readonly RequestState[];
const isOpen = (state: RequestState) => (OPEN as readonly string[]).includes(state);

export class RequestError extends Error {
  override readonly name = "RequestError";
  constructor(
    message: string,
    readonly status: 404 | 409,
  ) {
    super(message);
  }
}

/** How an agent's answer was taken: the state the request is in now, or why there is none. */
export type AnswerResult = { state: RequestState } | { unknown: "node" | "request" };

export class AgentRequests {
  /** Nodes that may have a request not answered yet (a hint: the table decides). */
  private unanswered = new Set<string>();
  /** Nodes given a request while a refresh reads the table (its answer may predate them). */
  private addedDuringRefresh = new Set<string>();
  private refreshedAt = Number.NEGATIVE_INFINITY;
  private refreshing: Promise<void> | undefined;

  constructor(
    private readonly db: Db,
    private readonly now: Clock,
    private readonly log: (line: string) => void = () => undefined,
    private readonly refreshMs = 1000,
  ) {}

  /** Records a request of `token` (audited); it goes out with the node's next heartbeat answer. */
  async create(nodeId: string, body: RequestCreate, token: string): Promise<RequestDetail> {
    const [node] = await this.db.select({ state: nodes.state }).from(nodes).where(eq(nodes.id, nodeId));
    if (node === undefined) throw new RequestError(`node ${nodeId} not found`, 404);
    if (isIn("terminal", node.state)) throw new RequestError(`node ${nodeId} is ${node.state}; its agent takes no requests`, 409);
    await this.expireOverdue();
    const [open] = await this.db
      .select({ n: sql<number>`count(*)` })
      .from(agentRequests)
      .where(and(eq(agentRequests.nodeId, nodeId), inArray(agentRequests.state, [...OPEN])));
    if ((open?.n ?? 0) >= MAX_OPEN_REQUESTS_PER_NODE) {
      throw new RequestError(`node ${nodeId} has ${open?.n} requests not answered yet (at most ${MAX_OPEN_REQUESTS_PER_NODE}); wait for them to end`, 409);
    }
    const at = this.now();
    const row: RequestRow = {
      id: `req_${randomBytes(12).toString("hex")}`,
      nodeId,
      kind: body.kind,
      args: body.args,
      state: "pending",
      requestedBy: body.actor,
      token,
      reason: body.reason,
      createdAt: at,
      deadlineAt: at + body.deadlineSeconds * 1000,
      deliveredAt: null,
      startedAt: null,
      finishedAt: null,
      exitCode: null,
      signal: null,
      output: null,
      outputBytes: null,
      outputCut: null,
      durationMs: null,
      detail: null,
    };
    await this.db.transaction(async (tx) => {
      await tx.insert(agentRequests).values(row);
      await tx.insert(auditLog).values({
        at,
        actor: body.actor,
        action: "agent_request",
        target: nodeId,
        details: { request: row.id, kind: row.kind, args: row.args, reason: row.reason, deadlineAt: row.deadlineAt, token },
      });
    });
    this.unanswered.add(nodeId);
    this.addedDuringRefresh.add(nodeId);
    return detail(row);
  }

  /**
   * The requests to send in this node's heartbeat answer (marked delivered), or undefined at once
   * when it has none waiting: the path of nearly every heartbeat. Never fails: a store error costs
   * the requests one heartbeat, never the heartbeat.
   */
  forHeartbeat(nodeId: string): Promise<AgentRequest[]> | undefined {
    this.refreshSoon();
    if (!this.unanswered.has(nodeId)) return undefined;
    return this.deliver(nodeId).catch((err: unknown) => {
      this.log(`requests: could not read node ${nodeId}'s requests for its heartbeat answer: ${err instanceof Error ? err.message : String(err)}`);
      return [];
    });
  }

  /** An agent's answer for its own node: the state the request is in after it. */
  async answer(nodeId: string, id: string, answer: RequestAnswer): Promise<AnswerResult> {
    const [row] = await this.db.select().from(agentRequests).where(eq(agentRequests.id, id));
    if (row === undefined || row.nodeId !== nodeId) {
      const [node] = await this.db.select({ id: nodes.id }).from(nodes).where(eq(nodes.id, nodeId));
      return { unknown: node === undefined ? "node" : "request" };
    }
    if (!isOpen(row.state)) return { state: row.state };
    const at = this.now();
    if (row.deadlineAt <= at) {
      await this.expire([row], at);
      return { state: (await this.row(id))?.state ?? "expired" };
    }
    if (answer.state === "running") {
      if (row.state === "running") return { state: "running" };
      const changed = await this.db
        .update(agentRequests)
        .set({ state: "running", startedAt: at, deliveredAt: sql`coalesce(${agentRequests.deliveredAt}, ${at})` })
        .where(and(eq(agentRequests.id, id), inArray(agentRequests.state, [...UNANSWERED])))
        .returning({ id: agentRequests.id });
      return { state: changed.length > 0 ? "running" : ((await this.row(id))?.state ?? "running") };
    }
    const ended = await this.db.transaction(async (tx) => {
      const changed = await tx
        .update(agentRequests)
        .set({
          state: answer.state,
          finishedAt: at,
          deliveredAt: sql`coalesce(${agentRequests.deliveredAt}, ${at})`,
          ...(answer.state !== "refused" ? { startedAt: sql`coalesce(${agentRequests.startedAt}, ${at})` } : {}),
          exitCode: answer.exitCode ?? null,
          signal: answer.signal ?? null,
          output: answer.output ?? null,
          outputBytes: answer.outputBytes ?? null,
          outputCut: answer.outputCut ?? null,
          durationMs: answer.durationMs ?? null,
          detail: answer.reason ?? null,
        })
        .where(and(eq(agentRequests.id, id), inArray(agentRequests.state, [...OPEN])))
        .returning({ id: agentRequests.id });
      if (changed.length === 0) return false;
      await tx.insert(auditLog).values({
        at,
        actor: `node:${nodeId}`,
        action: "agent_request_done",
        target: nodeId,
        details: {
          request: id,
          kind: row.kind,
          args: row.args,
          state: answer.state,
          ...(answer.exitCode !== undefined ? { exitCode: answer.exitCode } : {}),
          ...(answer.reason !== undefined ? { reason: answer.reason } : {}),
        },
      });
      return true;
    });
    return { state: ended ? answer.state : ((await this.row(id))?.state ?? answer.state) };
  }

  /** A node's requests, newest first (without their output); undefined for a node that does not exist. */
  async list(nodeId: string): Promise<RequestSummary[] | undefined> {
    await this.expireOverdue();
    const rows = await this.db
      .select()
      .from(agentRequests)
      .where(eq(agentRequests.nodeId, nodeId))
      .orderBy(desc(agentRequests.createdAt), desc(sql`rowid`))
      .limit(REQUEST_LIST_MAX);
    if (rows.length === 0) {
      const [node] = await this.db.select({ id: nodes.id }).from(nodes).where(eq(nodes.id, nodeId));
      if (node === undefined) return undefined;
    }
    return rows.map((r) => {
      const { output: _output, ...summary } = detail(r);
      return summary;
    });
  }

  /** One request of a node, with its output. */
  async get(nodeId: string, id: string): Promise<RequestDetail | undefined> {
    await this.expireOverdue();
    const row = await this.row(id);
    return row === undefined || row.nodeId !== nodeId ? undefined : detail(row);
  }

  /** Every open request past its deadline becomes expired. */
  async expireOverdue(): Promise<void> {
    const at = this.now();
    const overdue = await this.db
      .select()
      .from(agentRequests)
      .where(and(inArray(agentRequests.state, [...OPEN]), sql`${agentRequests.deadlineAt} <= ${at}`));
    if (overdue.length > 0) await this.expire(overdue, at);
  }

  private async row(id: string): Promise<RequestRow | undefined> {
    const [row] = await this.db.select().from(agentRequests).where(eq(agentRequests.id, id));
    return row;
  }

  private async expire(rows: RequestRow[], at: number): Promise<void> {
    for (const row of rows) {
      const why =
        row.state === "pending"
          ? "not delivered by its deadline: the node's agent did not heartbeat (stopped, or unreachable)"
          : row.state === "delivered"
            ? "delivered, but the agent did not answer by its deadline (stopped, or an agent that does not take requests)"
            : "started, but the agent did not say how it ended by its deadline (still running, or the agent stopped)";
      await this.db.transaction(async (tx) => {
        const changed = await tx
          .update(agentRequests)
          .set({ state: "expired", finishedAt: at, detail: why })
          .where(and(eq(agentRequests.id, row.id), eq(agentRequests.state, row.state)))
          .returning({ id: agentRequests.id });
        if (changed.length === 0) return;
        await tx.insert(auditLog).values({
          at,
          actor: "navarch",
          action: "agent_request_done",
          target: row.nodeId,
          details: { request: row.id, kind: row.kind, args: row.args, state: "expired", was: row.state, reason: why },
        });
      });
    }
  }

  private async deliver(nodeId: string): Promise<AgentRequest[]> {
    const at = this.now();
    const rows = await this.db
      .select()
      .from(agentRequests)
      .where(and(eq(agentRequests.nodeId, nodeId), inArray(agentRequests.state, [...UNANSWERED]), sql`${agentRequests.deadlineAt} > ${at}`))
      // In the order asked (rowid: the order of insertion, also within one millisecond).
      .orderBy(agentRequests.createdAt, sql`rowid`)
      .limit(MAX_OPEN_REQUESTS_PER_NODE);
    if (rows.length === 0) {
      this.unanswered.delete(nodeId);
      return [];
    }
    const pending = rows.filter((r) => r.state === "pending").map((r) => r.id);
    if (pending.length > 0) {
      await this.db
        .update(agentRequests)
        .set({ state: "delivered", deliveredAt: at })
        .where(and(inArray(agentRequests.id, pending), eq(agentRequests.state, "pending")));
    }
    const out: AgentRequest[] = [];
    for (const r of rows) {
      // A row read back is checked like any input: one that does not make a valid request is said, not sent.
      const parsed = v.safeParse(AgentRequest, { id: r.id, kind: r.kind, args: r.args, deadline: new Date(r.deadlineAt).toISOString() });
      if (parsed.success) out.push(parsed.output);
      else this.log(`requests: ${r.id} of node ${nodeId} is not a valid request as stored (${parsed.issues[0]?.message}); not sent`);
    }
    return out;
  }

  /** At most once a second, beside the heartbeat that asks: which nodes have a request waiting, and expiry. */
  private refreshSoon(): void {
    const at = this.now();
    if (this.refreshing !== undefined || at - this.refreshedAt < this.refreshMs) return;
    this.refreshedAt = at;
    this.addedDuringRefresh = new Set();
    this.refreshing = this.refresh(at)
      .catch((err: unknown) => this.log(`requests: could not read the open requests: ${err instanceof Error ? err.message : String(err)}`))
      .finally(() => {
        this.refreshing = undefined;
      });
  }

  private async refresh(at: number): Promise<void> {
    const open = await this.db
      .select()
      .from(agentRequests)
      .where(inArray(agentRequests.state, [...OPEN]));
    const overdue = open.filter((r) => r.deadlineAt <= at);
    if (overdue.length > 0) await this.expire(overdue, at);
    const waiting = new Set(open.filter((r) => r.deadlineAt > at && (UNANSWERED as readonly string[]).includes(r.state)).map((r) => r.nodeId));
    for (const nodeId of this.addedDuringRefresh) waiting.add(nodeId);
    this.unanswered = waiting;
  }
}

function detail(r: RequestRow): RequestDetail {
  return {
    id: r.id,
    nodeId: r.nodeId,
    kind: r.kind,
    args: typeof r.args === "object" && r.args !== null && !Array.isArray(r.args) ? (r.args as Record<string, unknown>) : {},
    state: r.state,
    requestedBy: r.requestedBy,
    token: r.token,
    reason: r.reason,
    createdAt: r.createdAt,
    deadlineAt: r.deadlineAt,
    deliveredAt: r.deliveredAt,
    startedAt: r.startedAt,
    finishedAt: r.finishedAt,
    exitCode: r.exitCode,
    signal: r.signal,
    outputBytes: r.outputBytes,
    outputCut: r.outputCut,
    durationMs: r.durationMs,
    detail: r.detail,
    output: r.output,
  };
}
