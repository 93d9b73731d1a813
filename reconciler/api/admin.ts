// The admin API under /v1: what operators (the CLI, the dashboard) read and do.
// Actions go through nodes/operator-actions.ts and wake the reconcile loop.
import { desc, eq, isNull } from "drizzle-orm";
import type { Context, Hono } from "hono";
import * as v from "valibot";
import { breakers, incidents, nodes, pools } from "../../schema/db.ts";
import { issuePaths, type ErrorBody } from "../../schema/wire.ts";
import { Operator, OperatorError } from "../nodes/operator-actions.ts";
import { jsonBodyOr400 } from "./body.ts";
import { FAKE_NVML_COMMANDS, FAKE_NVML_LINE } from "../providers/local/fake-nvml.ts";
import type { Provider } from "../providers/provider.ts";
import type { Store } from "../store/store.ts";

export interface AdminOptions {
  store: Store;
  now: () => number;
  wake: () => void;
  providers: () => ReadonlyMap<string, Provider>;
}

const Action = v.strictObject({
  /** Who asks (recorded in the audit log). */
  actor: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(128)), "operator"),
  reason: v.optional(v.pipe(v.string(), v.maxLength(1024)), "no reason given"),
  /** Drain deadline in seconds (drain only). */
  deadlineSeconds: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(7 * 24 * 3600)), 1800),
});

const Fault = v.pipe(
  v.strictObject({
    /** An Xid to raise on one GPU through the node's fake libnvidia-ml. */
    xid: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(999))),
    gpu: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(15)), 0),
    /** Any fake-library control command (e.g. "temp 2 95", "lost 1 on"). */
    nvml: v.optional(
      v.pipe(
        v.string(),
        v.minLength(1),
        v.maxLength(256),
        v.regex(FAKE_NVML_LINE, `expected one line: a fake NVML command (one of ${FAKE_NVML_COMMANDS.join(", ")}) and its arguments`),
      ),
    ),
    /** A kernel-log message to append (e.g. an NVRM Xid line). */
    kmsg: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(1024), v.regex(/^[^\n]+$/, "must be one line"))),
  }),
  v.check((f) => [f.xid, f.nvml, f.kmsg].filter((x) => x !== undefined).length === 1, "give exactly one of xid, nvml or kmsg"),
);

/** `POST /v1/pools/{name}/scale`: the size a pool without an autoscaler is held at. */
export const ScaleBody = v.strictObject({
  actor: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(128), v.description("who asks (recorded in the audit log)")), "operator"),
  reason: v.optional(v.pipe(v.string(), v.maxLength(1024)), "no reason given"),
  nodes: v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(100_000), v.description("the pool's size, within scaling.min_nodes..max_nodes")),
});

export function registerAdminRoutes(v1: Hono, opts: AdminOptions): void {
  const { store, now } = opts;
  const operator = new Operator(store.db, now);

  const body =
    <S extends v.GenericSchema>(schema: S) =>
    async (c: Context, run: (body: v.InferOutput<S>) => Promise<unknown>) => {
      const raw = await jsonBodyOr400(c, {});
      if (raw instanceof Response) return raw;
      const parsed = v.safeParse(schema, raw);
      if (!parsed.success) return c.json<ErrorBody>({ error: "invalid request body", issues: issuePaths(parsed.issues) }, 400);
      try {
        const result = await run(parsed.output);
        opts.wake();
        return c.json({ ok: true, ...(result === undefined ? {} : { result }) });
      } catch (err) {
        if (err instanceof OperatorError) return c.json<ErrorBody>({ error: err.message }, err.status);
        throw err;
      }
    };

  const act = body(Action);
  v1.post("/pools/:name/scale", (c) => body(ScaleBody)(c, (b) => operator.scalePool(c.req.param("name"), b.nodes, b.actor, b.reason)));
  v1.post("/nodes/:id/cordon", (c) => act(c, (b) => operator.cordon(c.req.param("id"), b.actor, b.reason)));
  v1.post("/nodes/:id/uncordon", (c) => act(c, (b) => operator.uncordon(c.req.param("id"), b.actor)));
  v1.post("/nodes/:id/drain", (c) => act(c, (b) => operator.drain(c.req.param("id"), b.actor, b.reason, b.deadlineSeconds * 1000)));
  v1.post("/nodes/:id/replace", (c) => act(c, (b) => operator.replace(c.req.param("id"), b.actor, b.reason)));
  v1.post("/nodes/:id/reboot", (c) => act(c, (b) => operator.reboot(c.req.param("id"), b.actor, b.reason)));
  v1.post("/pools/:name/pause", (c) => act(c, (b) => operator.pausePool(c.req.param("name"), b.actor, b.reason)));
  v1.post("/pools/:name/resume", (c) => act(c, (b) => operator.resumePool(c.req.param("name"), b.actor)));
  v1.post("/breakers/:scope/reset", (c) => act(c, (b) => operator.resetBreaker(c.req.param("scope"), b.actor)));

  v1.get("/pools", async (c) => c.json({ pools: await store.db.select().from(pools) }));
  v1.get("/incidents", async (c) => {
    const openParam = c.req.query("open");
    if (openParam !== undefined && openParam !== "true" && openParam !== "false") {
      return c.json<ErrorBody>({ error: `open: expected true or false, got ${JSON.stringify(openParam)}` }, 400);
    }
    const open = openParam === "true";
    const rows = await store.db
      .select()
      .from(incidents)
      .where(open ? isNull(incidents.closedAt) : undefined)
      .orderBy(desc(incidents.id))
      .limit(500);
    return c.json({ incidents: rows });
  });
  v1.get("/breakers", async (c) => c.json({ breakers: await store.db.select().from(breakers).where(isNull(breakers.resetAt)) }));
  v1.get("/audit", async (c) => {
    // Refused, not clamped: limit=-224 once answered as if it were 1 (found by Schemathesis).
    const given = c.req.query("limit");
    const limit = given === undefined ? 100 : /^\d{1,4}$/.test(given) ? Number(given) : NaN;
    if (!(limit >= 1 && limit <= 1000)) return c.json<ErrorBody>({ error: `limit: expected a whole number from 1 to 1000, got ${JSON.stringify(given)}` }, 400);
    return c.json({ audit: await operator.auditTail(limit) });
  });

  // Fault injection, for nodes of the local provider (the demo and tests): never a real machine.
  v1.post("/nodes/:id/fault", async (c) => {
    const raw = await jsonBodyOr400(c);
    if (raw instanceof Response) return raw;
    const parsed = v.safeParse(Fault, raw);
    if (!parsed.success) return c.json<ErrorBody>({ error: "invalid request body", issues: issuePaths(parsed.issues) }, 400);
    const local = opts.providers().get("local");
    if (local?.injectFault === undefined) return c.json<ErrorBody>({ error: "fault injection needs the local provider (this reconciler has none)" }, 409);
    const id = c.req.param("id");
    const [node] = await store.db.select().from(nodes).where(eq(nodes.id, id));
    if (node === undefined) return c.json<ErrorBody>({ error: `node ${id} not found` }, 404);
    if (node.provider !== "local" || node.instanceName === null) return c.json<ErrorBody>({ error: `node ${id} is not a running local node` }, 409);
    const f = parsed.output;
    try {
      if (f.xid !== undefined) await local.injectFault(node.instanceName, { nvml: `xid ${f.gpu} ${f.xid}` });
      else if (f.nvml !== undefined) await local.injectFault(node.instanceName, { nvml: f.nvml });
      else if (f.kmsg !== undefined) await local.injectFault(node.instanceName, { kmsg: f.kmsg });
    } catch (err) {
      return c.json<ErrorBody>({ error: err instanceof Error ? err.message : String(err) }, 409);
    }
    return c.json({ ok: true });
  });
}
