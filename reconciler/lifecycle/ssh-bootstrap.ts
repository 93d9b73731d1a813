// SSH bootstrap of new machines, for the reconcile loop. A node of a pool with
// setup_commands goes provisioning → bootstrapping once its instance runs and has an
// address; its setup commands then run over SSH as a background task (a pass never waits
// on SSH), tracked here by node id. The task records its outcome in `bootstrap_runs`; the
// next pass reads it:
//   - succeeded: the node stays bootstrapping until its agent registers (→ validating),
//     or the registration timeout fails it;
//   - failed: the node fails (the failing step's output stays in the run), and the
//     reconciler terminates its instance;
//   - still "running" with no task in this process: the reconciler restarted mid-run. The
//     commands may have half-run and are not safe to repeat, so the node fails and its
//     instance is cleaned up; the pool's scaling asks for a fresh one.
//
// Each run mints a one-time bootstrap token ({{.BootstrapToken}}) for the node, valid until
// the node's registration deadline. Host keys are pinned per instance: the provider's
// fingerprints when it reports them, else the key seen on first contact (host_keys).
import { and, desc, eq } from "drizzle-orm";
import { readFile } from "node:fs/promises";
import { renderTemplate, shellEscape, type TemplateVariable } from "../../schema/template.ts";
import { formatAddress, parseSshAddress, runBootstrap, type BootstrapResult, type BootstrapTimeouts } from "../../bootstrap/ssh.ts";
import type { PoolConfig } from "../../schema/config.ts";
import { auditLog, bootstrapRuns, hostKeys, type nodes } from "../../schema/db.ts";
import type { Instance } from "../providers/provider.ts";
import type { Store } from "../store/store.ts";
import { mintBootstrapToken } from "../auth/credentials.ts";
import type { Clock } from "../../schema/time.ts";

type NodeRow = typeof nodes.$inferSelect;

export interface BootstrapperOptions {
  store: Store;
  now: Clock;
  log: (line: string) => void;
  /** Asks the loop for a pass (a run finished). */
  wake: () => void;
  /** {{.ControlPlane}}: the URL the new machine reaches the reconciler at. */
  publicUrl?: string;
  /** Upper bounds; each is also cut to the node's registration deadline. */
  timeouts?: Partial<BootstrapTimeouts>;
  /** The SSH runner (tests replace it). */
  run?: typeof runBootstrap;
  /** The provider's own private key (Provider.sshPrivateKey), for a pool with no ssh_private_key_path. */
  providerKey?: (provider: string) => Promise<string | undefined>;
}

export type BootstrapDecision =
  /** Nothing to do this pass (instance not up yet, a run in progress, or waiting for the agent); `reason` for the node's status. */
  | { kind: "wait"; reason?: string }
  /** Move the node to bootstrapping, then call begin(). */
  | { kind: "start"; instance: Instance; reason: string }
  /** Fail the node and clean its instance up. */
  | { kind: "failed"; reason: string };

const AUDIT_ACTOR = "navarch";

export class Bootstrapper {
  private readonly tasks = new Map<string, Promise<void>>();

  constructor(private readonly opts: BootstrapperOptions) {}

  /** Whether a run for this node is in progress in this process. */
  running(nodeId: string): boolean {
    return this.tasks.has(nodeId);
  }

  /** Runs still in progress, for tests and a clean stop. */
  settled(): Promise<void> {
    return Promise.allSettled([...this.tasks.values()]).then(() => undefined);
  }

  async next(node: NodeRow, getInstance: () => Promise<Instance | undefined>): Promise<BootstrapDecision> {
    if (this.tasks.has(node.id)) return { kind: "wait" };
    const db = this.opts.store.db;
    const [run] = await db.select().from(bootstrapRuns).where(eq(bootstrapRuns.nodeId, node.id)).orderBy(desc(bootstrapRuns.id)).limit(1);
    if (run !== undefined) {
      if (run.state === "succeeded") return { kind: "wait", reason: `setup commands done on ${run.address}; waiting for the agent to register` };
      if (run.state === "failed") return { kind: "failed", reason: `bootstrap failed: ${run.error ?? "see its run"}` };
      // "running" with no task here: this process did not start it (a restart cut it short).
      const error = "interrupted: the reconciler stopped while it ran; commands may have half-run, so this machine is not reused";
      await db
        .update(bootstrapRuns)
        .set({ state: "failed", finishedAt: this.opts.now(), error })
        .where(and(eq(bootstrapRuns.id, run.id), eq(bootstrapRuns.state, "running")));
      return { kind: "failed", reason: `bootstrap ${error}` };
    }
    const instance = await getInstance();
    if (instance === undefined || instance.state !== "running" || instance.address === undefined) return { kind: "wait" };
    const { host, port } = parseSshAddress(instance.address);
    return { kind: "start", instance, reason: `running setup_commands over SSH on ${formatAddress(host, port)}` };
  }

  /** Starts the node's run in the background, to finish by its registration `deadline`; resolves once it is recorded. */
  async begin(node: NodeRow, pool: PoolConfig, instance: Instance, deadline: number): Promise<void> {
    if (this.tasks.has(node.id)) return;
    const { store, now } = this.opts;
    const at = now();
    const { token } = await mintBootstrapToken(store.db, node.id, { at, ttlMs: Math.max(deadline - at, 5 * 60_000), createdBy: AUDIT_ACTOR });
    const { host, port } = parseSshAddress(instance.address ?? "");
    const instanceKey = `${instance.provider}:${instance.id}`;
    const [row] = await store.db
      .insert(bootstrapRuns)
      .values({ nodeId: node.id, instance: instanceKey, address: formatAddress(host, port), user: pool.ssh_user, state: "running", startedAt: at })
      .returning({ id: bootstrapRuns.id });
    const runId = row!.id;
    const task = this.execute({ node, pool, instance, instanceKey, host, port, token, runId, deadline })
      .catch((err: unknown) => this.opts.log(`bootstrap of ${node.id}: ${err instanceof Error ? err.message : String(err)}`))
      .finally(() => {
        this.tasks.delete(node.id);
        this.opts.wake();
      });
    this.tasks.set(node.id, task);
  }

  private async providerKey(provider: string): Promise<string> {
    const key = await this.opts.providerKey?.(provider);
    if (key === undefined) throw new Error(`the pool has no ssh_private_key_path, and provider ${provider} keeps no key of its own to log in with`);
    return key;
  }

  private async execute(r: {
    node: NodeRow;
    pool: PoolConfig;
    instance: Instance;
    instanceKey: string;
    host: string;
    port: number;
    token: string;
    runId: number;
    deadline: number;
  }): Promise<void> {
    const { store, now, log } = this.opts;
    const db = store.db;
    const address = formatAddress(r.host, r.port);
    let result: BootstrapResult;
    try {
      const commands = this.render(r.node, r.pool, r.instance, r.token);
      const privateKey = r.pool.ssh_private_key_path === undefined ? await this.providerKey(r.instance.provider) : await readKey(r.pool.ssh_private_key_path);
      const [pinned] = await db.select().from(hostKeys).where(eq(hostKeys.instance, r.instanceKey));
      const fromProvider = r.instance.hostKeyFingerprints ?? [];
      const known = fromProvider.length > 0 ? fromProvider : pinned ? [pinned.fingerprint] : [];
      const left = Math.max(r.deadline - now(), 30_000);
      const timeouts: Partial<BootstrapTimeouts> = {
        ...this.opts.timeouts,
        reachableMs: Math.min(this.opts.timeouts?.reachableMs ?? 5 * 60_000, left),
        commandMs: Math.min(this.opts.timeouts?.commandMs ?? 10 * 60_000, left),
      };
      log(`${r.node.id}: bootstrapping ${r.pool.ssh_user}@${address} (${commands.length} setup commands)`);
      result = await (this.opts.run ?? runBootstrap)({
        host: r.host,
        port: r.port,
        user: r.pool.ssh_user,
        privateKey,
        knownFingerprint: known,
        commands,
        timeouts,
        mask: [r.token],
        log,
        // Recorded before any command runs: a later connection to this instance must see the same key.
        onHostKey: async (fingerprint) => {
          const at = now();
          await db
            .insert(hostKeys)
            .values({
              instance: r.instanceKey,
              nodeId: r.node.id,
              address,
              fingerprint,
              source: fromProvider.length > 0 ? "provider" : "first_contact",
              firstSeenAt: at,
              lastSeenAt: at,
            })
            .onConflictDoUpdate({ target: hostKeys.instance, set: { lastSeenAt: at, address } });
        },
      });
    } catch (err) {
      // Before any connection: the key file, a template value.
      result = { ok: false, steps: [], attempts: 0, error: err instanceof Error ? err.message : String(err) };
    }
    const at = now();
    await db
      .update(bootstrapRuns)
      .set({
        state: result.ok ? "succeeded" : "failed",
        finishedAt: at,
        hostKeyFingerprint: result.hostKeyFingerprint ?? null,
        error: result.error ?? null,
        steps: result.steps,
      })
      .where(eq(bootstrapRuns.id, r.runId));
    await db.insert(auditLog).values({
      at,
      actor: AUDIT_ACTOR,
      action: result.ok ? "bootstrap_succeeded" : "bootstrap_failed",
      target: r.node.id,
      details: { address, steps: result.steps.length, ...(result.error ? { error: result.error } : {}) },
    });
    log(result.ok ? `${r.node.id}: bootstrap done; waiting for its agent to register` : `${r.node.id}: bootstrap failed: ${result.error ?? "unknown"}`);
  }

  private render(node: NodeRow, pool: PoolConfig, instance: Instance, token: string): string[] {
    const values: Partial<Record<TemplateVariable, string>> = {
      NodeID: node.id,
      Pool: pool.name,
      Provider: node.provider ?? instance.provider,
      Region: instance.region || pool.region,
      InstanceType: instance.instanceType || pool.instance_type,
      BootstrapToken: token,
      ...(this.opts.publicUrl ? { ControlPlane: this.opts.publicUrl } : {}),
    };
    return pool.setup_commands.map((command) => {
      try {
        return renderTemplate(command, values, shellEscape);
      } catch (err) {
        const missing =
          this.opts.publicUrl === undefined && command.includes("ControlPlane")
            ? " (this reconciler was started without a public URL: set server.public_url)"
            : "";
        throw new Error(`${err instanceof Error ? err.message : String(err)}${missing}`);
      }
    });
  }
}

async function readKey(path: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (err) {
    const code = (err as { code?: string }).code;
    throw new Error(`cannot read ssh_private_key_path ${path}: ${code ?? (err instanceof Error ? err.message : String(err))}`);
  }
}
