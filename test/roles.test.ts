// Roles through the API: each role's allowed and refused calls, route by route, against an
// expectation table written here (not read from schema/roles.ts, which it checks); tokens
// created, listed, revoked and expired through the API and the CLI, stored hashed; enroll
// tokens confined to their pool; /metrics open by default, behind the viewer role when
// configured so, on a listener of its own; and the regressions Schemathesis found.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { openApiDocument } from "../reconciler/api/openapi.ts";
import { startReconciler, type Reconciler } from "../reconciler/app/serve.ts";
import { apiTokens } from "../schema/db.ts";
import { ROUTE_PERMISSIONS, type Role } from "../schema/roles.ts";
import type { RegisterRequest } from "../schema/wire.ts";
import { freePort } from "./support.ts";
import { BUN, REPO_ROOT, tempDir } from "./support.ts";

const ADMIN = "roles-test-admin-token-0123456789";
let clock = Date.now();
let rec: Reconciler;
const tokens = new Map<Role, string>();
const ids = new Map<string, string>();

const registration = (nodeId: string, extra: Partial<RegisterRequest> = {}): RegisterRequest => ({
  nodeId,
  hostname: nodeId,
  bootId: "boot-1",
  agentVersion: "test",
  spoolId: crypto.randomUUID(),
  nvml: { available: false, error: "none here" },
  gpus: [],
  ...extra,
});

const heartbeat = (nodeId: string) => ({
  nodeId,
  bootId: "boot-1",
  sentAt: new Date(clock).toISOString(),
  nvml: { available: false },
  health: { checked: false, worst: "healthy", openIncidents: 0 },
  gpus: [],
});

async function call(token: string | undefined, method: string, path: string, body?: unknown, base = rec.url): Promise<Response> {
  return fetch(`${base}${path}`, {
    method,
    headers: { ...(token === undefined ? {} : { Authorization: `Bearer ${token}` }), ...(body === undefined ? {} : { "Content-Type": "application/json" }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
}

async function mint(role: string, extra: Record<string, unknown> = {}): Promise<{ id: string; token: string }> {
  const res = await call(ADMIN, "POST", "/v1/tokens", { role, ...extra });
  expect(res.status).toBe(200);
  return (await res.json()) as { id: string; token: string };
}

beforeAll(async () => {
  const dataDir = join(tempDir("navarch-roles-"), "data");
  process.env.NAVARCH_ROLES_TEST_TOKEN = ADMIN;
  rec = await startReconciler(
    {
      host: "127.0.0.1",
      port: 0,
      dataDir,
      databaseUrl: `file:${dataDir}/navarch.db`,
      authTokenEnv: "NAVARCH_ROLES_TEST_TOKEN",
      heartbeatIntervalSeconds: 10,
      // /metrics is open by default; the table checks the viewer choice.
      metricsAuth: "viewer",
    },
    () => undefined,
    () => clock,
  );
  tokens.set("admin", ADMIN);
  for (const role of ["operator", "viewer"] as const) tokens.set(role, (await mint(role)).token);
  tokens.set("enroll", (await mint("enroll", { pool: "train" })).token);
  // The node role is a node's own credential: what registering with an enroll token hands out.
  const enrolled = await call(tokens.get("enroll"), "POST", "/v1/register", registration("t-node"));
  expect(enrolled.status).toBe(200);
  tokens.set("node", ((await enrolled.json()) as { nodeToken: string }).nodeToken);
  expect(await call(ADMIN, "POST", "/v1/register", registration("t-other", { pool: "infer" }))).toHaveProperty("status", 200);
  ids.set("doomed", (await mint("viewer", { name: "doomed" })).id);
});
afterAll(() => rec.stop());

/** Who may make each call: the specification this test holds the server to. */
const ALLOWED: Record<string, Role[]> = {
  "POST /v1/register": ["admin", "enroll", "node"],
  "POST /v1/heartbeat": ["admin", "node"],
  "POST /v1/events": ["admin", "node"],
  "POST /v1/nodes/{id}/requests/{rid}": ["admin", "node"],
  "GET /v1/events": ["admin", "operator", "viewer"],
  "GET /v1/nodes": ["admin", "operator", "viewer"],
  "GET /v1/nodes/{id}": ["admin", "operator", "viewer"],
  "GET /v1/nodes/{id}/timeline": ["admin", "operator", "viewer"],
  "GET /v1/nodes/{id}/bootstrap": ["admin", "operator", "viewer"],
  "GET /v1/nodes/{id}/requests": ["admin", "operator", "viewer"],
  "GET /v1/nodes/{id}/requests/{rid}": ["admin", "operator", "viewer"],
  "GET /v1/overview": ["admin", "operator", "viewer"],
  "GET /v1/pools": ["admin", "operator", "viewer"],
  "GET /v1/pools/{name}": ["admin", "operator", "viewer"],
  "GET /v1/incidents": ["admin", "operator", "viewer"],
  "GET /v1/breakers": ["admin", "operator", "viewer"],
  "GET /v1/audit": ["admin", "operator", "viewer"],
  "GET /v1/report": ["admin", "operator", "viewer"],
  "GET /v1/watch": ["admin", "operator", "viewer"],
  "GET /v1/status": ["admin", "operator", "viewer"],
  "GET /metrics": ["admin", "operator", "viewer"],
  "POST /v1/nodes/{id}/cordon": ["admin", "operator"],
  "POST /v1/nodes/{id}/uncordon": ["admin", "operator"],
  "POST /v1/nodes/{id}/drain": ["admin", "operator"],
  "POST /v1/nodes/{id}/replace": ["admin", "operator"],
  "POST /v1/nodes/{id}/reboot": ["admin", "operator"],
  "POST /v1/nodes/{id}/requests": ["admin", "operator"],
  "POST /v1/pools/{name}/pause": ["admin", "operator"],
  "POST /v1/pools/{name}/resume": ["admin", "operator"],
  "POST /v1/pools/{name}/scale": ["admin", "operator"],
  "POST /v1/nodes/{id}/fault": ["admin"],
  "POST /v1/breakers/{scope}/reset": ["admin"],
  "POST /v1/bootstrap-tokens": ["admin"],
  "POST /v1/tokens": ["admin"],
  "GET /v1/tokens": ["admin"],
  "DELETE /v1/tokens/{id}": ["admin"],
  "GET /v1/whoami": ["admin", "operator", "viewer", "enroll", "node"],
};

/** A request for a route as each role would make it (agents report for their own node). */
function request(route: string, role: Role): { method: string; path: string; body?: unknown } {
  const [method, template] = route.split(" ") as [string, string];
  const path = template
    .replace("{id}", route.includes("tokens") ? (ids.get("doomed") ?? "") : "t-node")
    .replace("{rid}", "req_000000000000")
    .replace("{name}", "train")
    .replace("{scope}", "fleet");
  const own = role === "node" ? "t-node" : role === "enroll" ? `t-enrolled-${crypto.randomUUID().slice(0, 8)}` : "t-node";
  const bodies: Record<string, unknown> = {
    "POST /v1/register": registration(own),
    "POST /v1/heartbeat": heartbeat("t-node"),
    "POST /v1/events": {
      nodeId: "t-node",
      events: [
        {
          seq: 1,
          time: new Date(clock).toISOString(),
          bootId: "boot-1",
          check: "xid",
          code: "13",
          severity: "degraded",
          action: "restart_app",
          message: "test",
        },
      ],
    },
    "POST /v1/nodes/{id}/fault": { xid: 79 },
    "POST /v1/bootstrap-tokens": { nodeId: "t-new" },
    "POST /v1/tokens": { role: "viewer" },
    "POST /v1/pools/{name}/scale": { nodes: 0 },
    "POST /v1/nodes/{id}/requests": { kind: "run_check", args: { check: "dcgm-diag" } },
    "POST /v1/nodes/{id}/requests/{rid}": { state: "running" },
  };
  return { method, path, ...(route in bodies ? { body: bodies[route] } : method === "POST" ? { body: {} } : {}) };
}

describe("each role's allowed and refused calls", () => {
  test("the table covers every operation of the OpenAPI document and every row of schema/roles.ts", () => {
    const documented = Object.entries(openApiDocument().paths as Record<string, Record<string, unknown>>)
      .filter(([path]) => path.startsWith("/v1/") || path === "/metrics")
      .flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`));
    expect(Object.keys(ALLOWED).sort()).toEqual(documented.sort());
    expect(ROUTE_PERMISSIONS.map((r) => `${r.method} ${r.path}`).sort()).toEqual(Object.keys(ALLOWED).sort());
  });

  for (const route of Object.keys(ALLOWED)) {
    for (const role of ["admin", "operator", "viewer", "enroll", "node"] as const) {
      const allowed = ALLOWED[route]!.includes(role);
      test(`${role}: ${route} is ${allowed ? "allowed" : "refused (403)"}`, async () => {
        const r = request(route, role);
        const res = await call(tokens.get(role), r.method, r.path, r.body);
        const text = route === "GET /v1/watch" ? "" : await res.text();
        if (route === "GET /v1/watch") await res.body?.cancel();
        if (allowed) {
          expect({ refused: [401, 403].includes(res.status) || res.status >= 500, status: res.status, text }).toMatchObject({ refused: false });
        } else {
          expect({ status: res.status, text }).toMatchObject({ status: 403 });
        }
      });
    }
  }

  test("no token, a wrong one, and the scheme name in any case (RFC 9110)", async () => {
    expect((await call(undefined, "GET", "/v1/nodes")).status).toBe(401);
    expect((await call("not-a-token-at-all-0123", "GET", "/v1/nodes")).status).toBe(401);
    for (const scheme of ["Bearer", "bearer", "BEARER", "bEaReR"]) {
      const res = await fetch(`${rec.url}/v1/whoami`, { headers: { Authorization: `${scheme} ${ADMIN}` } });
      expect(res.status).toBe(200);
    }
    expect((await fetch(`${rec.url}/v1/whoami`, { headers: { Authorization: `Basic ${ADMIN}` } })).status).toBe(401);
  });

  test("whoami says each token's role and permissions", async () => {
    const who = async (role: Role) =>
      (await (await call(tokens.get(role), "GET", "/v1/whoami")).json()) as { role: string; permissions: string[]; pool?: string; nodeId?: string };
    expect(await who("admin")).toMatchObject({ role: "admin", name: "NAVARCH_AUTH_TOKEN", permissions: ["read", "operate", "admin", "agent"] });
    expect(await who("operator")).toMatchObject({ role: "operator", permissions: ["read", "operate"] });
    expect(await who("viewer")).toMatchObject({ role: "viewer", permissions: ["read"] });
    expect(await who("enroll")).toMatchObject({ role: "enroll", pool: "train", permissions: ["agent"] });
    expect(await who("node")).toMatchObject({ role: "node", nodeId: "t-node", permissions: ["agent"] });
  });

  test("a refusal names the role and what the call needs", async () => {
    const res = await call(tokens.get("viewer"), "POST", "/v1/nodes/t-node/cordon", {});
    expect(res.status).toBe(403);
    expect(((await res.json()) as { error: string }).error).toBe(
      "token viewer has the viewer role, which may not POST /v1/nodes/t-node/cordon (that needs operator or admin)",
    );
  });
});

describe("enroll tokens and node credentials", () => {
  test("an enroll token registers any number of nodes into its pool, each with its own credential", async () => {
    const enroll = tokens.get("enroll")!;
    const first = await call(enroll, "POST", "/v1/register", registration("e-1"));
    const second = await call(enroll, "POST", "/v1/register", registration("e-2", { pool: "train" }));
    const [a, b] = [(await first.json()) as { nodeToken: string }, (await second.json()) as { nodeToken: string }];
    expect(a.nodeToken).not.toBe(b.nodeToken);
    const nodes = (await (await call(ADMIN, "GET", "/v1/nodes")).json()) as { nodes: { id: string; pool: string | null }[] };
    expect(nodes.nodes.filter((n) => n.id.startsWith("e-")).map((n) => n.pool)).toEqual(["train", "train"]);
    // The credential reports for its node only; the enroll token itself never heartbeats.
    const hb = heartbeat;
    expect((await call(a.nodeToken, "POST", "/v1/heartbeat", hb("e-1"))).status).toBe(200);
    expect((await call(a.nodeToken, "POST", "/v1/heartbeat", hb("e-2"))).status).toBe(403);
    expect((await call(enroll, "POST", "/v1/heartbeat", hb("e-1"))).status).toBe(403);
  });

  test("a node's credential, once replaced, stops working at once though heartbeats had just used it", async () => {
    const enroll = tokens.get("enroll")!;
    const old = ((await (await call(enroll, "POST", "/v1/register", registration("e-9"))).json()) as { nodeToken: string }).nodeToken;
    // Accepted, and so remembered by the server's credential cache.
    expect((await call(old, "POST", "/v1/heartbeat", heartbeat("e-9"))).status).toBe(200);
    expect((await call(old, "POST", "/v1/heartbeat", heartbeat("e-9"))).status).toBe(200);
    const fresh = ((await (await call(enroll, "POST", "/v1/register", registration("e-9"))).json()) as { nodeToken: string }).nodeToken;
    expect((await call(old, "POST", "/v1/heartbeat", heartbeat("e-9"))).status).toBe(401);
    expect((await call(fresh, "POST", "/v1/heartbeat", heartbeat("e-9"))).status).toBe(200);
  });

  test("an enroll token cannot register into another pool, nor take over another pool's node", async () => {
    const enroll = tokens.get("enroll")!;
    const wrongPool = await call(enroll, "POST", "/v1/register", registration("e-3", { pool: "infer" }));
    expect(wrongPool.status).toBe(403);
    expect(((await wrongPool.json()) as { error: string }).error).toContain('registers nodes into pool train, not "infer"');
    const takeover = await call(enroll, "POST", "/v1/register", registration("t-other"));
    expect(takeover.status).toBe(403);
    expect(((await takeover.json()) as { error: string }).error).toBe(
      "node t-other belongs to pool infer; enroll token enroll-train registers into pool train only",
    );
  });
});

describe("tokens: created, listed, revoked, expired; stored hashed", () => {
  test("create shows the secret once; list never does; the store keeps only its sha256", async () => {
    const created = await mint("operator", { name: "alice", ttlSeconds: 3600 });
    const list = (await (await call(ADMIN, "GET", "/v1/tokens")).json()) as { tokens: Record<string, unknown>[] };
    const row = list.tokens.find((t) => t.id === created.id)!;
    expect(row).toMatchObject({
      name: "alice",
      role: "operator",
      pool: null,
      state: "active",
      createdBy: "token:NAVARCH_AUTH_TOKEN",
      expiresAt: clock + 3_600_000,
    });
    expect(JSON.stringify(list)).not.toContain(created.token);
    expect(created.token).toStartWith("nvt_");
    const stored = await rec.store.db.select().from(apiTokens);
    expect(JSON.stringify(stored)).not.toContain(created.token);
    expect(stored.find((t) => t.id === created.id)?.tokenHash).toBe(createHash("sha256").update(created.token).digest("hex"));
  });

  test("a revoked token is refused from the next request on, and says so", async () => {
    const t = await mint("viewer", { name: "bob" });
    expect((await call(t.token, "GET", "/v1/nodes")).status).toBe(200);
    const revoked = await call(ADMIN, "DELETE", `/v1/tokens/${t.id}`);
    expect(revoked.status).toBe(200);
    expect(((await revoked.json()) as { token: { state: string } }).token.state).toBe("revoked");
    const refused = await call(t.token, "GET", "/v1/nodes");
    expect(refused.status).toBe(401);
    expect(((await refused.json()) as { error: string }).error).toBe(`token ${t.id} (bob) was revoked`);
    expect((await call(ADMIN, "DELETE", "/v1/tokens/tok_000000000000")).status).toBe(404);
  });

  test("an expired token is refused", async () => {
    const t = await mint("viewer", { name: "carol", ttlSeconds: 60 });
    expect((await call(t.token, "GET", "/v1/nodes")).status).toBe(200);
    clock += 61_000;
    const refused = await call(t.token, "GET", "/v1/nodes");
    expect(refused.status).toBe(401);
    expect(((await refused.json()) as { error: string }).error).toContain(`token ${t.id} (carol) expired at`);
  });

  test("bad requests name the field: an enroll token needs a pool, no other role takes one", async () => {
    const issues = async (body: unknown) =>
      ((await (await call(ADMIN, "POST", "/v1/tokens", body)).json()) as { issues: { path: string; message: string }[] }).issues;
    expect(await issues({ role: "enroll" })).toEqual([{ path: "pool", message: "an enroll token needs a pool (the one its nodes register into)" }]);
    expect(await issues({ role: "viewer", pool: "train" })).toEqual([{ path: "pool", message: "only an enroll token takes a pool" }]);
    expect((await issues({ role: "node" }))[0]?.path).toBe("role");
    expect((await issues({ role: "viewer", ttlSeconds: 10 }))[0]?.path).toBe("ttlSeconds");
  });

  test("navarch tokens create, list and revoke (the CLI)", async () => {
    const cli = async (...args: string[]) => {
      const proc = Bun.spawn([BUN, join(REPO_ROOT, "reconciler/main.ts"), ...args], {
        env: { PATH: process.env.PATH ?? "/usr/bin:/bin", NAVARCH_SERVER: rec.url, NAVARCH_AUTH_TOKEN: ADMIN },
        stdout: "pipe",
        stderr: "pipe",
      });
      const [code, stdout, stderr] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
      return { code, stdout, stderr };
    };
    const created = await cli("tokens", "create", "--role", "enroll", "--pool", "train", "--ttl", "2w", "--name", "rack-7", "-o", "json");
    expect(created.stderr).toBe("");
    const body = JSON.parse(created.stdout) as { id: string; token: string; expiresAt: number; role: string };
    expect(body).toMatchObject({ role: "enroll", pool: "train", name: "rack-7", expiresAt: clock + 14 * 86_400_000 });
    const table = await cli("tokens", "list");
    expect(table.stdout).toMatch(new RegExp(`${body.id}\\s+rack-7\\s+enroll\\s+train\\s+active`));
    expect(table.stdout).not.toContain(body.token);
    const revoked = await cli("tokens", "revoke", body.id);
    expect(revoked.stdout).toStartWith(`${body.id} (rack-7, enroll) revoked`);
    const bad = await cli("tokens", "create", "--role", "node");
    expect(bad).toMatchObject({ code: 2 });
    expect(bad.stderr).toContain(
      "--role: expected one of admin, operator, viewer, enroll (a node's credential is issued when it registers with an enroll or bootstrap token)",
    );
    expect((await cli("tokens", "create", "--role", "viewer", "--ttl", "30s")).stderr).toContain("--ttl: expected a duration from 1m to 3650d");
  }, 30_000);
});

describe("/metrics", () => {
  test("behind the viewer role with server.metrics_auth: viewer; open by default, here on a listener of its own", async () => {
    expect((await call(undefined, "GET", "/metrics")).status).toBe(401);
    expect((await call(tokens.get("node"), "GET", "/metrics")).status).toBe(403);
    expect((await call(tokens.get("viewer"), "GET", "/metrics")).status).toBe(200);
    const dataDir = join(tempDir("navarch-metrics-"), "data");
    const port = freePort();
    const separate = await startReconciler(
      {
        host: "127.0.0.1",
        port: 0,
        dataDir,
        databaseUrl: `file:${dataDir}/navarch.db`,
        authTokenEnv: "NAVARCH_ROLES_TEST_TOKEN",
        heartbeatIntervalSeconds: 10,
        metricsAddress: { host: "127.0.0.1", port },
      },
      () => undefined,
    );
    try {
      expect(separate.metricsUrl).toBe(`http://127.0.0.1:${port}`);
      const open = await fetch(`${separate.metricsUrl}/metrics`);
      expect(open.status).toBe(200);
      expect(await open.text()).toContain("navarch_nodes_total");
      // Only /metrics there, and no /metrics on the API's listener.
      expect((await fetch(`${separate.metricsUrl}/v1/nodes`)).status).toBe(404);
      expect((await call(ADMIN, "GET", "/metrics", undefined, separate.url)).status).toBe(404);
    } finally {
      await separate.stop();
    }
  });

  test("an agent's own check names do not become label values", async () => {
    const res = await call(tokens.get("node"), "POST", "/v1/events", {
      nodeId: "t-node",
      events: [
        { seq: 100, time: new Date(clock).toISOString(), bootId: "boot-1", check: "made_up_check_0001", severity: "degraded", action: "none", message: "x" },
      ],
    });
    expect(res.status).toBe(200);
    const text = await (await call(ADMIN, "GET", "/metrics")).text();
    expect(text).not.toContain("made_up_check_0001");
    expect(text).toContain('navarch_health_events_total{check="other",severity="degraded"}');
  });
});

describe("what Schemathesis found (each once a failure of test/schemathesis.test.ts)", () => {
  test("two GPUs at one index in a registration: a 400 naming gpus, not a 500", async () => {
    const gpu = { uuid: "GPU-a", pciBusId: "0000:01:00.0", name: "x" };
    const res = await call(
      ADMIN,
      "POST",
      "/v1/register",
      registration("dup-gpus", {
        gpus: [
          { index: 1, ...gpu },
          { index: 1, ...gpu, uuid: "GPU-b" },
        ],
      }),
    );
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({ error: "invalid request body", issues: [{ path: "gpus", message: "each GPU index may appear once" }] });
  });

  test("query parameters out of range or of the wrong type are refused, not clamped or ignored", async () => {
    for (const [path, error] of [
      ["/v1/audit?limit=-224", 'limit: expected a whole number from 1 to 1000, got "-224"'],
      ["/v1/audit?limit=1001", 'limit: expected a whole number from 1 to 1000, got "1001"'],
      ["/v1/incidents?open=1.7e308", 'open: expected true or false, got "1.7e308"'],
      ["/v1/incidents?open=null", 'open: expected true or false, got "null"'],
      ["/v1/nodes/t-node?events=1e3", 'events: expected a whole number from 0 to 10000, got "1e3"'],
    ] as const) {
      const res = await call(ADMIN, "GET", path);
      expect({ path, status: res.status, body: await res.json() }).toEqual({ path, status: 400, body: { error } });
    }
  });

  test("a method a path does not serve is 405 with Allow, before any token is asked for", async () => {
    for (const [method, path, allow] of [
      ["TRACE", "/v1/nodes", "GET, HEAD"],
      ["PUT", "/v1/register", "POST"],
      ["DELETE", "/healthz", "GET, HEAD"],
      ["PATCH", "/v1/tokens", "GET, HEAD, POST"],
    ] as const) {
      const res = await fetch(`${rec.url}${path}`, { method });
      expect({ method, path, status: res.status, allow: res.headers.get("allow") }).toEqual({ method, path, status: 405, allow });
    }
  });

  test("the document states what the server enforces", () => {
    const doc = openApiDocument() as {
      paths: Record<
        string,
        Record<string, { parameters?: { name: string; schema: unknown }[]; requestBody?: { required: boolean }; responses: Record<string, unknown> }>
      >;
      components: { schemas: Record<string, unknown> };
    };
    const events = doc.paths["/v1/events"]!.get!.parameters!;
    expect(events.find((p) => p.name === "node")?.schema).toMatchObject({ minLength: 1 });
    expect(doc.paths["/v1/audit"]!.get!.responses).toHaveProperty("400");
    expect(doc.paths["/v1/incidents"]!.get!.responses).toHaveProperty("400");
    expect(doc.paths["/v1/nodes/{id}/fault"]!.post!.requestBody?.required).toBe(true);
    expect(doc.components.schemas.FaultBody).toHaveProperty("anyOf");
    expect(doc.components.schemas.TokenCreate).toHaveProperty("oneOf");
    expect(doc.components.schemas.BootstrapTokenRequest).toMatchObject({ properties: { nodeId: { pattern: expect.any(String) } } });
    expect(JSON.stringify(doc.paths["/v1/watch"]!.get!.responses["200"])).toContain('"enum":["hello","change","ping"]');
  });
});
