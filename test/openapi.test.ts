// GET /openapi.json: an OpenAPI 3.1 document generated from the valibot schemas,
// served without a token. Every route of the server is described (and nothing that
// is not a route), every $ref resolves, and the schemas it is generated from accept
// the server's real answers on a running fleet.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as v from "valibot";
import { createApi } from "../reconciler/api/server.ts";
import { ActionBody, FaultBody } from "../reconciler/api/openapi.ts";
import { EventList } from "../reconciler/api/views/events.ts";
import { NodeTimeline } from "../reconciler/api/views/node-timeline.ts";
import { Overview } from "../reconciler/api/views/overview.ts";
import { PoolView } from "../reconciler/api/views/pool-view.ts";
import { AuditList, BreakerList, IncidentList, PoolList } from "../reconciler/api/views/table-rows.ts";
import { createMetrics } from "../reconciler/metrics/metrics.ts";
import { NodeDetail, NodeList, ReconcilerStatus } from "../schema/admin.ts";
import { POOLS_YAML, simFleet, type SimFleet } from "./browser/harness.ts";

let fleet: SimFleet;
let doc: {
  openapi: string;
  paths: Record<string, Record<string, { operationId: string; responses: Record<string, unknown> }>>;
  components: { schemas: Record<string, unknown> };
};

beforeAll(async () => {
  fleet = await simFleet(POOLS_YAML([{ name: "train", min: 3, max: 5 }]), "openapi-test-token-0123456789");
  await fleet.until("3 ready", async () => (await fleet.all()).filter((n) => n.state === "ready").length === 3);
  const victim = (await fleet.all()).find((n) => n.state === "ready")!;
  await fleet.agents.xid(victim.id, 79, 1);
  await fleet.step();
  await fleet.step();
  const res = await fetch(`${fleet.url}/openapi.json`);
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toContain("application/json");
  doc = (await res.json()) as typeof doc;
}, 30_000);
afterAll(() => fleet.stop());

const toOpenApi = (path: string) => path.replace(/:([A-Za-z]+)/g, "{$1}");

describe("OpenAPI document", () => {
  test("is OpenAPI 3.1 with every route of the server and no other path", () => {
    expect(doc.openapi).toBe("3.1.0");
    const app = createApi({
      store: fleet.rec.store,
      metrics: createMetrics(fleet.rec.store.db),
      authToken: "x",
      heartbeatIntervalSeconds: 10,
      now: Date.now,
      log: () => undefined,
    });
    const routes = new Set(
      app.routes
        .filter((r) => r.method === "GET" || r.method === "POST" || r.method === "DELETE")
        // Redirects to the dashboard and its assets, not API paths.
        .filter((r) => !["/", "/ui", "/ui/index.html", "/ui/app.js", "/ui/goodput.js", "/ui/app.css"].includes(r.path) && !r.path.startsWith("/ui/vendor/"))
        .map((r) => `${r.method.toLowerCase()} ${toOpenApi(r.path)}`),
    );
    const documented = new Set(Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m} ${path}`)));
    expect([...routes].filter((r) => !documented.has(r))).toEqual([]);
    expect([...documented].filter((d) => !routes.has(d))).toEqual([]);
    for (const must of [
      "post /v1/register",
      "post /v1/heartbeat",
      "post /v1/events",
      "get /v1/nodes",
      "post /v1/nodes/{id}/cordon",
      "get /v1/events",
      "get /v1/overview",
    ])
      expect(documented).toContain(must);
  });

  test("every $ref resolves; operation ids are unique; schemas carry the validation rules", () => {
    const refs = [...JSON.stringify(doc).matchAll(/"\$ref":"#\/components\/schemas\/([A-Za-z]+)"/g)].map((m) => m[1]!);
    expect(refs.length).toBeGreaterThan(30);
    for (const r of refs) expect(doc.components.schemas[r], r).toBeDefined();
    const ids = Object.values(doc.paths).flatMap((ops) => Object.values(ops).map((o) => o.operationId));
    expect(new Set(ids).size).toBe(ids.length);
    expect(doc.components.schemas.RegisterRequest).toMatchObject({
      type: "object",
      additionalProperties: false,
      required: expect.arrayContaining(["nodeId", "bootId", "spoolId", "gpus"]),
    });
    expect(doc.components.schemas.EventBatch).toMatchObject({ properties: { events: { type: "array", minItems: 1, maxItems: 500 } } });
    expect(doc.components.schemas.ActionBody).toMatchObject({ properties: { deadlineSeconds: { type: "integer", minimum: 1 } } });
  });

  test("the schemas it is generated from accept the server's real answers", async () => {
    const node = (await fleet.all()).find((n) => n.incidentId !== null)!;
    const check = async <S extends v.GenericSchema>(schema: S, path: string) => {
      const r = v.safeParse(schema, await fleet.api(path));
      expect(r.success ? "ok" : `${path}: ${JSON.stringify(r.issues.map((i) => [v.getDotPath(i), i.message]))}`).toBe("ok");
    };
    await check(NodeList, "/v1/nodes");
    await check(NodeDetail, `/v1/nodes/${node.id}`);
    await check(NodeTimeline, `/v1/nodes/${node.id}/timeline`);
    await check(PoolList, "/v1/pools");
    await check(PoolView, "/v1/pools/train");
    await check(IncidentList, "/v1/incidents");
    await check(BreakerList, "/v1/breakers");
    await check(AuditList, "/v1/audit");
    await check(Overview, "/v1/overview");
    await check(EventList, "/v1/events?severity=unhealthy");
    await check(ReconcilerStatus, "/v1/status");
  });

  test("the documented action bodies refuse what the server refuses", async () => {
    const node = (await fleet.all()).find((n) => n.state === "ready")!;
    for (const body of [{ bogus: 1 }, { deadlineSeconds: 0 }, { actor: "" }]) {
      expect(v.safeParse(ActionBody, body).success).toBe(false);
      const res = await fetch(`${fleet.url}/v1/nodes/${node.id}/drain`, {
        method: "POST",
        headers: { Authorization: `Bearer ${fleet.token}` },
        body: JSON.stringify(body),
      });
      expect(res.status).toBe(400);
    }
    expect(v.safeParse(ActionBody, { actor: "a", reason: "r", deadlineSeconds: 60 }).success).toBe(true);
    expect(v.safeParse(FaultBody, { xid: 79, gpu: 1 }).success).toBe(true);
    expect(v.safeParse(FaultBody, { xid: 0 }).success).toBe(false);
  });
});
