// /metrics is open by default (server.metrics_auth: none), as every exporter's: so nothing on it
// may be a secret. A fleet whose every secret is known to the test (the admin token, API tokens
// of each role, an enroll token, a node's credential, a bootstrap token), with those secrets
// also written by an agent into every free-text field it has, is scraped without a token:
// the secrets appear nowhere, and every label value has the shape of a name, a number or an
// enum value, never free text.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { startReconciler, type Reconciler } from "../reconciler/app/serve.ts";
import { tempDir } from "./support.ts";

const ADMIN = "metrics-labels-admin-secret-0123456789";
let rec: Reconciler;
const secrets: string[] = [ADMIN];

async function call(token: string | undefined, method: string, path: string, body?: unknown): Promise<Response> {
  return fetch(`${rec.url}${path}`, {
    method,
    headers: { ...(token === undefined ? {} : { Authorization: `Bearer ${token}` }), ...(body === undefined ? {} : { "Content-Type": "application/json" }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
}

async function json<T>(res: Promise<Response>): Promise<T> {
  const r = await res;
  expect(r.status, await r.clone().text()).toBe(200);
  return (await r.json()) as T;
}

beforeAll(async () => {
  const dataDir = join(tempDir("navarch-metrics-labels-"), "data");
  process.env.NAVARCH_METRICS_LABELS_TOKEN = ADMIN;
  rec = await startReconciler(
    {
      host: "127.0.0.1",
      port: 0,
      dataDir,
      databaseUrl: `file:${dataDir}/navarch.db`,
      authTokenEnv: "NAVARCH_METRICS_LABELS_TOKEN",
      heartbeatIntervalSeconds: 10,
    },
    () => undefined,
  );
  for (const role of ["admin", "operator", "viewer"]) secrets.push((await json<{ token: string }>(call(ADMIN, "POST", "/v1/tokens", { role }))).token);
  const enroll = (await json<{ token: string }>(call(ADMIN, "POST", "/v1/tokens", { role: "enroll", pool: "train" }))).token;
  const bootstrap = (await json<{ token: string }>(call(ADMIN, "POST", "/v1/bootstrap-tokens", { nodeId: "secret-node-2" }))).token;
  secrets.push(enroll, bootstrap);
  // Every secret, written by the agent into each field that is its own text.
  const leak = secrets.join(" ");
  const registration = (nodeId: string) => ({
    nodeId,
    hostname: `host-${nodeId}`,
    bootId: "boot-1",
    agentVersion: `agent ${leak}`.slice(0, 64),
    spoolId: crypto.randomUUID(),
    nvml: { available: false, error: `nvml: ${leak}` },
    gpus: [],
  });
  const registered = await json<{ nodeToken: string }>(call(enroll, "POST", "/v1/register", registration("secret-node-1")));
  secrets.push(registered.nodeToken);
  await json(call(bootstrap, "POST", "/v1/register", registration("secret-node-2")));
  await json(
    call(registered.nodeToken, "POST", "/v1/events", {
      nodeId: "secret-node-1",
      events: [
        { seq: 1, time: new Date().toISOString(), bootId: "boot-1", check: "xid", code: "79", severity: "unhealthy", action: "reboot", message: leak },
        {
          seq: 2,
          time: new Date().toISOString(),
          bootId: "boot-1",
          check: "made_up",
          code: leak.slice(0, 32),
          severity: "degraded",
          action: "none",
          message: leak,
        },
      ],
    }),
  );
});

afterAll(() => rec?.stop());

/** Every label value of every sample in an exposition. */
function labelValues(text: string): string[] {
  const values: string[] = [];
  for (const line of text.split("\n")) {
    if (line.startsWith("#") || !line.includes("{")) continue;
    for (const m of line.slice(line.indexOf("{"), line.lastIndexOf("}") + 1).matchAll(/[a-zA-Z_]\w*="((?:[^"\\]|\\.)*)"/g)) values.push(m[1]!);
  }
  return values;
}

describe("/metrics without a token", () => {
  test("is open by default and carries no secret, in a label value or anywhere else", async () => {
    const res = await fetch(`${rec.url}/metrics`);
    expect(res.status).toBe(200);
    const text = await res.text();
    // The agents registered themselves into "train", a pool no config names: a pool their own
    // word made is never a label value, so they are counted under the empty pool.
    expect(text).toContain('navarch_nodes_by_state{pool="",state="validating"} 2');
    for (const secret of secrets) {
      expect(secret.length).toBeGreaterThan(16);
      expect(text.includes(secret), `a secret (${secret.slice(0, 6)}…) is on /metrics`).toBe(false);
    }
  });

  test("every label value is a name, a number or an enum value: never an agent's free text", async () => {
    const values = labelValues(await (await fetch(`${rec.url}/metrics`)).text());
    expect(values.length).toBeGreaterThan(50);
    const odd = [...new Set(values)].filter((value) => !/^[A-Za-z0-9_.:+/-]{0,63}$/.test(value));
    expect(odd).toEqual([]);
  });
});
