// The API fuzzed by a tool no one here wrote: Schemathesis (PyPI, the version pinned in
// test/schemathesis/ensure-schemathesis.sh, installed into ~/.cache/navarch/schemathesis/)
// against the reconciler's own /openapi.json, on a fleet with pools and ready nodes. Every
// operation, every check (no 5xx, answers and status codes as documented, invalid input
// refused, valid input accepted, 405 for other methods, auth not ignored), every phase
// (examples, coverage, fuzzing, and stateful runs along the document's links), once with each
// role's token. A fixed seed and number of examples per operation keep it bounded and
// repeatable; the cases each run generated are written to test/artifacts/schemathesis/.
// What it found became regression tests (test/roles.test.ts, "what Schemathesis found").
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Role } from "../schema/roles.ts";
import { POOLS_YAML, simFleet, type SimFleet } from "./browser/harness.ts";
import { ensureSchemathesis, runSchemathesis } from "./schemathesis/run.ts";
import { REPO_ROOT } from "./support.ts";

const ARTIFACTS = join(REPO_ROOT, "test/artifacts/schemathesis");
/** Examples per operation and phase; the whole file stays within about two minutes on 2 cores. */
const EXAMPLES = Number(process.env.NAVARCH_SCHEMATHESIS_EXAMPLES ?? 10);
const SEED = Number(process.env.NAVARCH_SCHEMATHESIS_SEED ?? 20261121);
const ADMIN = "schemathesis-admin-token-0123456789";

let st: string;
let fleet: SimFleet;
const tokens = new Map<Role, string>();
const results: { role: Role; generated: number; failures: number; seconds: number }[] = [];

beforeAll(async () => {
  st = ensureSchemathesis();
  fleet = await simFleet(
    POOLS_YAML([
      { name: "train", min: 3, max: 5 },
      { name: "infer", min: 1, max: 2 },
    ]),
    ADMIN,
  );
  await fleet.until("4 ready", async () => (await fleet.all()).filter((n) => n.state === "ready").length === 4);
  // Something in every table the views read: an incident, a cordon, a refusal.
  const victim = (await fleet.all()).find((n) => n.state === "ready" && n.pool === "train")!;
  await fleet.agents.xid(victim.id, 79, 1);
  await fleet.step();
  await fleet.step();
  tokens.set("admin", ADMIN);
  for (const role of ["operator", "viewer"] as const)
    tokens.set(role, (await fleet.api<{ token: string }>("/v1/tokens", { method: "POST", body: JSON.stringify({ role, name: `st-${role}` }) })).token);
  const enroll = (
    await fleet.api<{ token: string }>("/v1/tokens", { method: "POST", body: JSON.stringify({ role: "enroll", pool: "infer", name: "st-enroll" }) })
  ).token;
  tokens.set("enroll", enroll);
  // A node's own credential: what an enroll token's registration hands out.
  const registered = await fetch(`${fleet.url}/v1/register`, {
    method: "POST",
    headers: { Authorization: `Bearer ${enroll}`, "Content-Type": "application/json" },
    body: JSON.stringify({
      nodeId: "st-node",
      hostname: "st-node",
      bootId: "b1",
      agentVersion: "test",
      spoolId: crypto.randomUUID(),
      nvml: { available: false, error: "none" },
      gpus: [],
    }),
  });
  const nodeToken = ((await registered.json()) as { nodeToken?: string }).nodeToken;
  if (nodeToken === undefined) throw new Error(`the enroll token's registration gave no node credential (HTTP ${registered.status})`);
  tokens.set("node", nodeToken);
}, 120_000);

afterAll(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  const total = results.reduce((n, r) => n + r.generated, 0);
  writeFileSync(
    join(ARTIFACTS, "summary.json"),
    `${JSON.stringify({ version: st.split("/").at(-4), seed: SEED, examples: EXAMPLES, total, runs: results }, null, 2)}\n`,
  );
  await fleet?.stop();
});

/** One Schemathesis run with a role's token: every phase, every check. */
const fuzz = (role: Role) =>
  runSchemathesis(st, { url: fleet.url, token: tokens.get(role)!, phases: "examples,coverage,fuzzing,stateful", examples: EXAMPLES, seed: SEED });

describe("Schemathesis against /openapi.json", () => {
  // The admin last: its run may revoke the other roles' tokens.
  const only = process.env.NAVARCH_SCHEMATHESIS_ROLES?.split(",");
  for (const role of (["viewer", "operator", "enroll", "node", "admin"] as const).filter((r) => only === undefined || only.includes(r))) {
    test(`with the ${role} role's token: no server error, nothing that contradicts the document`, async () => {
      const run = await fuzz(role);
      results.push({ role, generated: run.generated, failures: run.code === 0 ? 0 : 1, seconds: Math.round(run.seconds) });
      mkdirSync(ARTIFACTS, { recursive: true });
      writeFileSync(join(ARTIFACTS, `${role}.txt`), run.output);
      if (run.code !== 0) throw new Error(`schemathesis exited ${run.code} with the ${role} token:\n${run.output.slice(-12_000)}`);
      expect(run.generated).toBeGreaterThan(100);
    }, 240_000);
  }
});
