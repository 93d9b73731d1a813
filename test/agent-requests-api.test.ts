// The reconciler's side of requests to agents, through its HTTP API (no agent process): an
// operator's request is stored and audited, goes out in the node's heartbeat answers until the
// agent answers, takes the agent's answer (its own node's credential only), and expires when no
// final answer came by its deadline. Heartbeat answers carry no `requests` field when nothing
// waits, as before.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import * as v from "valibot";
import { eq } from "drizzle-orm";
import { startReconciler, type Reconciler } from "../reconciler/app/serve.ts";
import { MAX_OPEN_REQUESTS_PER_NODE, RequestDetail, RequestList } from "../schema/agent-requests.ts";
import { nodes } from "../schema/db.ts";
import { HeartbeatResponse, type RegisterRequest } from "../schema/wire.ts";
import { BUN, REPO_ROOT, tempDir, waitFor } from "./support.ts";

const ADMIN = "requests-test-admin-token-0123456789";
let clock = Date.now();
let rec: Reconciler;
let operator = "";
let viewer = "";
const nodeTokens = new Map<string, string>();

async function call(token: string, method: string, path: string, body?: unknown): Promise<Response> {
  return fetch(`${rec.url}${path}`, {
    method,
    headers: { Authorization: `Bearer ${token}`, ...(body === undefined ? {} : { "Content-Type": "application/json" }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
}

const registration = (nodeId: string): RegisterRequest => ({
  nodeId,
  hostname: nodeId,
  bootId: "boot-1",
  agentVersion: "test",
  spoolId: crypto.randomUUID(),
  nvml: { available: false, error: "none here" },
  gpus: [],
});

async function heartbeat(nodeId: string): Promise<v.InferOutput<typeof HeartbeatResponse>> {
  const res = await call(nodeTokens.get(nodeId)!, "POST", "/v1/heartbeat", {
    nodeId,
    bootId: "boot-1",
    sentAt: new Date(clock).toISOString(),
    nvml: { available: false },
    health: { checked: false, worst: "healthy", openIncidents: 0 },
    gpus: [],
  });
  expect(res.status).toBe(200);
  return v.parse(HeartbeatResponse, await res.json());
}

async function ask(nodeId: string, body: Record<string, unknown> = {}, token = operator): Promise<RequestDetail> {
  const res = await call(token, "POST", `/v1/nodes/${nodeId}/requests`, { kind: "run_check", args: { check: "dcgm-diag" }, actor: "alice", ...body });
  expect({ status: res.status, body: res.status === 200 ? "" : await res.text() }).toEqual({ status: 200, body: "" });
  return v.parse(RequestDetail, await res.json());
}

const get = async (nodeId: string, id: string) => v.parse(RequestDetail, await (await call(viewer, "GET", `/v1/nodes/${nodeId}/requests/${id}`)).json());
const answer = (nodeId: string, id: string, body: unknown, token = nodeTokens.get(nodeId)!) => call(token, "POST", `/v1/nodes/${nodeId}/requests/${id}`, body);

beforeAll(async () => {
  const dataDir = join(tempDir("navarch-requests-"), "data");
  process.env.NAVARCH_REQUESTS_TEST_TOKEN = ADMIN;
  rec = await startReconciler(
    {
      host: "127.0.0.1",
      port: 0,
      dataDir,
      databaseUrl: `file:${dataDir}/navarch.db`,
      authTokenEnv: "NAVARCH_REQUESTS_TEST_TOKEN",
      heartbeatIntervalSeconds: 10,
    },
    () => undefined,
    () => clock,
  );
  const mint = async (role: string, extra = {}) => ((await (await call(ADMIN, "POST", "/v1/tokens", { role, ...extra })).json()) as { token: string }).token;
  operator = await mint("operator");
  viewer = await mint("viewer");
  const enroll = await mint("enroll", { pool: "train" });
  for (const id of ["n-1", "n-2", "n-3", "n-4"]) {
    const res = await call(enroll, "POST", "/v1/register", registration(id));
    nodeTokens.set(id, ((await res.json()) as { nodeToken: string }).nodeToken);
  }
});
afterAll(() => rec.stop());

describe("requests to agents through the API", () => {
  test("asked, audited, delivered in heartbeat answers until answered, then the answer", async () => {
    expect("requests" in (await heartbeat("n-1"))).toBe(false);
    const asked = await ask("n-1", { reason: "acceptance" });
    expect(asked).toMatchObject({
      nodeId: "n-1",
      kind: "run_check",
      args: { check: "dcgm-diag" },
      state: "pending",
      requestedBy: "alice",
      reason: "acceptance",
    });
    expect(asked.id).toMatch(/^req_[0-9a-f]{24}$/);
    expect(asked.token).toStartWith("token:operator");
    expect(asked.deadlineAt).toBe(clock + 3_600_000);
    const audit = (await (await call(viewer, "GET", "/v1/audit?limit=5")).json()) as {
      audit: { actor: string; action: string; target: string; details: Record<string, unknown> }[];
    };
    expect(audit.audit[0]).toMatchObject({
      actor: "alice",
      action: "agent_request",
      target: "n-1",
      details: { request: asked.id, kind: "run_check", args: { check: "dcgm-diag" }, reason: "acceptance" },
    });

    // Delivered, and again with the next heartbeat (its answer may have been lost) until answered.
    const wire = { id: asked.id, kind: "run_check", args: { check: "dcgm-diag" }, deadline: new Date(asked.deadlineAt).toISOString() };
    expect((await heartbeat("n-1")).requests).toEqual([wire]);
    expect((await get("n-1", asked.id)).state).toBe("delivered");
    expect((await heartbeat("n-1")).requests).toEqual([wire]);
    expect("requests" in (await heartbeat("n-2"))).toBe(false);

    expect(await (await answer("n-1", asked.id, { state: "running" })).json()).toEqual({ state: "running" });
    expect("requests" in (await heartbeat("n-1"))).toBe(false);
    clock += 5000;
    const done = await answer("n-1", asked.id, {
      state: "succeeded",
      exitCode: 0,
      output: "all passed\n",
      outputBytes: 11,
      outputCut: false,
      durationMs: 4200,
    });
    expect(await done.json()).toEqual({ state: "succeeded" });
    const stored = await get("n-1", asked.id);
    expect(stored).toMatchObject({
      state: "succeeded",
      exitCode: 0,
      output: "all passed\n",
      outputBytes: 11,
      outputCut: false,
      durationMs: 4200,
      finishedAt: clock,
    });
    // A final state is final: the same answer again, or another, changes nothing.
    expect(await (await answer("n-1", asked.id, { state: "failed", exitCode: 1 })).json()).toEqual({ state: "succeeded" });
    expect((await get("n-1", asked.id)).exitCode).toBe(0);
    const list = v.parse(RequestList, await (await call(viewer, "GET", "/v1/nodes/n-1/requests")).json());
    expect(list.requests.map((r) => [r.id, r.state])).toEqual([[asked.id, "succeeded"]]);
    expect("output" in list.requests[0]!).toBe(false);
  });

  test("a refusal is stored with the agent's reason", async () => {
    const asked = await ask("n-2", { args: { check: "format-disks" } });
    await heartbeat("n-2");
    const reason = "check format-disks is not defined in this machine's configuration (/etc/navarch/agent.yaml defines dcgm-diag)";
    expect(await (await answer("n-2", asked.id, { state: "refused", reason })).json()).toEqual({ state: "refused" });
    expect(await get("n-2", asked.id)).toMatchObject({ state: "refused", detail: reason, startedAt: null, exitCode: null });
  });

  test("not delivered, or not answered, by the deadline: expired, audited; a late answer is told so", async () => {
    const never = await ask("n-3", { deadlineSeconds: 30 });
    const silent = await ask("n-4", { deadlineSeconds: 30 });
    const slow = await ask("n-4", { deadlineSeconds: 60 });
    expect((await heartbeat("n-4")).requests?.map((r) => (r as { id: string }).id)).toEqual([silent.id, slow.id]);
    await answer("n-4", slow.id, { state: "running" });
    clock += 31_000;
    expect(await get("n-3", never.id)).toMatchObject({
      state: "expired",
      finishedAt: clock,
      detail: "not delivered by its deadline: the node's agent did not heartbeat (stopped, or unreachable)",
    });
    expect((await get("n-4", silent.id)).detail).toStartWith("delivered, but the agent did not answer by its deadline");
    expect((await get("n-4", slow.id)).state).toBe("running");
    clock += 30_000;
    expect(await (await answer("n-4", slow.id, { state: "succeeded", exitCode: 0 })).json()).toEqual({ state: "expired" });
    expect((await get("n-4", slow.id)).detail).toStartWith("started, but the agent did not say how it ended by its deadline");
    // An expired request is never sent again.
    expect("requests" in (await heartbeat("n-3"))).toBe(false);
    const audit = (await (await call(viewer, "GET", "/v1/audit?limit=20")).json()) as {
      audit: { actor: string; action: string; details: Record<string, unknown> }[];
    };
    const expired = audit.audit.filter((a) => a.action === "agent_request_done" && a.details.state === "expired");
    expect(expired.map((a) => [a.actor, a.details.request]).sort()).toEqual(
      [
        ["navarch", never.id],
        ["navarch", silent.id],
        ["navarch", slow.id],
      ].sort(),
    );
  });

  test("only the node's own credential answers its requests", async () => {
    const asked = await ask("n-2");
    const other = await answer("n-2", asked.id, { state: "running" }, nodeTokens.get("n-1")!);
    expect(other.status).toBe(403);
    expect(((await other.json()) as { error: string }).error).toBe("this credential belongs to node n-1; it cannot answer requests of node n-2");
    // Its own node in the path, another node's request id: not found.
    expect((await answer("n-1", asked.id, { state: "running" })).status).toBe(404);
    expect((await answer("n-2", asked.id, { state: "running" }, viewer)).status).toBe(403);
    expect((await answer("n-2", asked.id, { state: "running" }, operator)).status).toBe(403);
    expect((await answer("n-2", asked.id, { state: "running" })).status).toBe(200);
  });

  test("refused: a kind not served yet, arguments a check does not take, an unknown node, a terminated one, too many open", async () => {
    const issues = async (body: unknown) => {
      const res = await call(operator, "POST", "/v1/nodes/n-1/requests", body);
      expect(res.status).toBe(400);
      return ((await res.json()) as { issues: { path: string; message: string }[] }).issues;
    };
    expect(await issues({ kind: "bundle" })).toEqual([{ path: "kind", message: "bundle requests are not served yet (this reconciler asks for run_check)" }]);
    expect((await issues({ kind: "run_check", args: { check: "dcgm-diag", command: "rm -rf /" } }))[0]?.path).toBe("args.command");
    expect((await issues({ kind: "run_check", args: { check: "Bad Name" } }))[0]?.path).toBe("args.check");
    expect((await issues({ kind: "run_check", args: { check: "a" }, deadlineSeconds: 0 }))[0]?.path).toBe("deadlineSeconds");
    const unknown = await call(operator, "POST", "/v1/nodes/nope/requests", { kind: "run_check", args: { check: "a" } });
    expect(unknown.status).toBe(404);
    expect((await call(viewer, "GET", "/v1/nodes/nope/requests")).status).toBe(404);
    expect((await call(viewer, "GET", "/v1/nodes/n-1/requests/req_000000000000")).status).toBe(404);
    await rec.store.db.update(nodes).set({ state: "terminated" }).where(eq(nodes.id, "n-3"));
    const gone = await call(operator, "POST", "/v1/nodes/n-3/requests", { kind: "run_check", args: { check: "a" } });
    expect({ status: gone.status, body: await gone.json() }).toEqual({ status: 409, body: { error: "node n-3 is terminated; its agent takes no requests" } });
    const open = (await call(viewer, "GET", "/v1/nodes/n-1/requests").then((r) => r.json())) as { requests: { state: string }[] };
    const already = open.requests.filter((r) => ["pending", "delivered", "running"].includes(r.state)).length;
    for (let i = already; i < MAX_OPEN_REQUESTS_PER_NODE; i++) await ask("n-1");
    const full = await call(operator, "POST", "/v1/nodes/n-1/requests", { kind: "run_check", args: { check: "a" } });
    expect(full.status).toBe(409);
    expect(((await full.json()) as { error: string }).error).toBe(
      `node n-1 has ${MAX_OPEN_REQUESTS_PER_NODE} requests not answered yet (at most ${MAX_OPEN_REQUESTS_PER_NODE}); wait for them to end`,
    );
    // A viewer may read, not ask.
    expect((await call(viewer, "POST", "/v1/nodes/n-1/requests", { kind: "run_check", args: { check: "a" } })).status).toBe(403);
  });

  test("an answer's body is checked: its state, bounded output, well-formed text", async () => {
    const asked = await ask("n-2");
    const bad = async (body: unknown) => ((await (await answer("n-2", asked.id, body)).json()) as { issues: { path: string }[] }).issues.map((i) => i.path);
    expect(await bad({ state: "expired" })).toEqual(["state"]);
    expect(await bad({ state: "succeeded", output: "x".repeat(64 * 1024 + 1) })).toEqual(["output"]);
    expect(await bad({ state: "failed", exitCode: 256 })).toEqual(["exitCode"]);
    expect(await bad({ state: "failed", command: "x" })).toEqual(["command"]);
    expect(await bad({ state: "failed", output: "a\udfffb" })).toEqual(["output"]);
  });

  test("navarch nodes run-check: asks, follows, prints the end of the output escaped; exit 0 on success, 1 otherwise", async () => {
    const cli = (...args: string[]) => {
      const proc = Bun.spawn([BUN, join(REPO_ROOT, "reconciler/main.ts"), "nodes", "run-check", ...args, "-s", rec.url], {
        env: { PATH: process.env.PATH ?? "/usr/bin:/bin", NAVARCH_AUTH_TOKEN: operator, NAVARCH_ACTOR: "bob@desk" },
        stdout: "pipe",
        stderr: "pipe",
      });
      return Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]).then(([code, stdout, stderr]) => ({
        code,
        stdout,
        stderr,
      }));
    };
    const newest = async (node: string) =>
      waitFor(`a new request of ${node}`, async () => {
        const list = v.parse(RequestList, await (await call(viewer, "GET", `/v1/nodes/${node}/requests`)).json());
        const r = list.requests[0];
        return r !== undefined && r.state === "pending" && r.requestedBy === "bob@desk" ? r : undefined;
      });

    const passing = cli("n-2", "nccl-all-reduce", "--wait", "--deadline", "10m", "--reason", "acceptance");
    const one = await newest("n-2");
    expect(one).toMatchObject({ args: { check: "nccl-all-reduce" }, reason: "acceptance", deadlineAt: clock + 600_000 });
    await heartbeat("n-2");
    await answer("n-2", one.id, { state: "running" });
    await answer("n-2", one.id, {
      state: "succeeded",
      exitCode: 0,
      output: "bus bandwidth 180 GB/s\n\u001b[31mred\n",
      outputBytes: 100_000,
      outputCut: true,
      durationMs: 61_000,
    });
    const ok = await passing;
    expect({ code: ok.code, stderr: ok.stderr }).toEqual({ code: 0, stderr: "" });
    expect(ok.stdout).toContain(`request ${one.id}: node n-2 asked to run check nccl-all-reduce`);
    expect(ok.stdout).toContain("succeeded (exit 0, ran 61s)\n--- output: the last 64 KiB of 100000 bytes ---\nbus bandwidth 180 GB/s\n\\x1b[31mred\n");

    const refusedRun = cli("n-2", "nope", "--wait", "-o", "json");
    const two = await newest("n-2");
    await answer("n-2", two.id, {
      state: "refused",
      reason: "check nope is not defined in this machine's configuration (/etc/navarch/agent.yaml defines dcgm-diag)",
    });
    const refused = await refusedRun;
    expect(refused.code).toBe(1);
    expect(JSON.parse(refused.stdout)).toMatchObject({
      id: two.id,
      state: "refused",
      detail: expect.stringContaining("is not defined in this machine's configuration"),
    });

    const asked = await cli("n-2", "dcgm-diag");
    expect(asked.code).toBe(0);
    expect(asked.stdout).toContain("asked to run check dcgm-diag; it goes out with the node's next heartbeat and expires in 60m 0s without an answer");
    expect((await cli("n-2", "Bad Name")).stderr).toContain('navarch: CHECK "Bad Name": must be a check name');
    expect((await cli("n-2", "a", "--deadline", "2d")).stderr).toContain("navarch: --deadline: expected a duration from 1s to 1d");
  }, 30_000);
});
