// One writer, and a standby that takes over: two compiled `navarch serve` on one fleet,
// behind a load balancer (test/ha/front.ts), with a local pool of compiled navarch-node
// agents on the fake libnvidia-ml. Once on a shared database file (one data directory),
// once on a real libSQL server (sqld) with a data directory each, as on two machines.
// kill -9 of the leader during a replacement: the standby finishes it, and exactly one
// replacement results. SIGSTOP of the leader past its lease: when it wakes it does
// nothing before it stands down.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { LocalProvider } from "../reconciler/providers/local/provider.ts";
import { openStore } from "../reconciler/store/store.ts";
import { Database } from "bun:sqlite";
import { eq } from "drizzle-orm";
import { auditLog, leases, nodes, operations } from "../schema/db.ts";
import { CompiledFleet, type Proc } from "./compiled.ts";
import { freePort } from "./support.ts";
import { FAKE_NVML, buildFakeNvml } from "./fake-nvml/control.ts";
import { TcpFront } from "./ha/front.ts";
import { startSqld, type Sqld } from "./sqld/harness.ts";
import { waitFor } from "./support.ts";

interface NodeView {
  id: string;
  state: string;
  replacementOf: string | null;
}

interface Reconciler {
  name: "a" | "b";
  port: number;
  config: string;
  proc?: Proc;
  /** Out of the load balancer (stopped, or killed). */
  down: boolean;
  /** Output length when the test last looked (to read only what came after). */
  mark: number;
}

class HaFleet {
  readonly front: TcpFront;
  readonly servers: Record<"a" | "b", Reconciler>;

  constructor(
    readonly fleet: CompiledFleet,
    readonly database: { url?: string; file?: string },
  ) {
    const port = { a: freePort(), b: freePort() };
    this.front = new TcpFront(() => (["a", "b"] as const).filter((n) => !this.servers[n].down).map((n) => this.servers[n].port));
    const nodesDir = join(fleet.dir, "shared-local-nodes");
    mkdirSync(nodesDir, { recursive: true });
    const config = (name: "a" | "b") => {
      // With a shared file, one data directory; with sqld, one each (as on two machines).
      const dataDir = database.url ? join(fleet.dir, `data-${name}`) : join(fleet.dir, "data");
      const path = join(fleet.dir, `navarch-${name}.yaml`);
      Bun.write(
        path,
        `server:\n  address: 127.0.0.1:${port[name]}\n  public_url: ${this.front.url}\n  heartbeat_interval: 1s\n  health_check_interval: 2s\n  data_dir: ${dataDir}\n${database.url ? `  database_url: ${database.url}\n` : ""}` +
          `providers:\n  local:\n    nvml_library: ${FAKE_NVML.full}\n    nodes_dir: ${nodesDir}\n` +
          `pools:\n  - name: gpu\n    provider: local\n    instance_type: local-4gpu\n    region: local\n    scaling:\n      min_nodes: 2\n      max_nodes: 2\n    health:\n      drain_timeout: 20s\n      # The takeover is tested mid-replacement (the reboot rung has its own crash tests).\n      remediation: replace\n`,
      );
      return path;
    };
    this.servers = {
      a: { name: "a", port: port.a, config: config("a"), down: true, mark: 0 },
      b: { name: "b", port: port.b, config: config("b"), down: true, mark: 0 },
    };
  }

  async start(name: "a" | "b"): Promise<void> {
    const s = this.servers[name];
    this.fleet.output.set(`navarch-${name}`, "");
    s.proc = this.fleet.start(`navarch-${name}`, [this.fleet.navarch, "serve", "--config", s.config], { NAVARCH_AUTH_TOKEN: this.fleet.token });
    s.mark = 0;
    await waitFor(
      `reconciler ${name} ready`,
      async () => ((await fetch(`http://127.0.0.1:${s.port}/readyz`).catch(() => undefined))?.status === 200 ? true : undefined),
      30_000,
    );
    s.down = false;
  }

  log(name: "a" | "b"): string {
    return this.fleet.output.get(`navarch-${name}`) ?? "";
  }

  /** What the server printed since the last call (or since it started). */
  since(name: "a" | "b"): string {
    const s = this.servers[name];
    const text = this.log(name).slice(s.mark);
    s.mark = this.log(name).length;
    return text;
  }

  async nodes(): Promise<NodeView[]> {
    const res = await fetch(`${this.front.url}/v1/nodes`, { headers: { Authorization: `Bearer ${this.fleet.token}` } }).catch(() => undefined);
    if (res?.status !== 200) return [];
    return ((await res.json()) as { nodes: NodeView[] }).nodes;
  }

  cli(...args: string[]) {
    return this.fleet.run([this.fleet.navarch, ...args, "-s", this.front.url], { NAVARCH_AUTH_TOKEN: this.fleet.token });
  }

  async stop(): Promise<void> {
    for (const s of Object.values(this.servers)) s.proc?.kill("SIGCONT");
    // The reconcilers first: one still running could launch an agent after the list below,
    // which would then outlive the test (its machine's agent keeps running, as a real one would).
    this.fleet.stop();
    const local = new LocalProvider({
      nodesDir: join(this.fleet.dir, "shared-local-nodes"),
      serverUrl: this.front.url,
      authToken: this.fleet.token,
      agentCommand: ["true"],
    });
    for (const i of await local.list({})) await local.terminate(i.id);
    this.front.stop();
  }
}

async function store(h: HaFleet) {
  return openStore({ url: h.database.url ?? `file:${h.database.file}` });
}

for (const kind of ["shared file", "sqld"] as const) {
  describe(`two reconcilers on one fleet (${kind})`, () => {
    let h: HaFleet;
    let sqld: Sqld | undefined;

    beforeAll(async () => {
      buildFakeNvml();
      const fleet = await CompiledFleet.create();
      if (kind === "sqld") sqld = await startSqld();
      h = new HaFleet(fleet, sqld ? { url: sqld.url } : { file: join(fleet.dir, "data", "navarch.db") });
      await h.start("a");
      await h.start("b");
    }, 240_000);

    afterAll(async () => {
      await h.stop();
      await sqld?.stop();
    });

    test("one leads, the other stands by and says who leads; the pool comes up once", async () => {
      await waitFor("a leads", () => (/leading \(lease epoch \d+\)/.test(h.log("a")) ? true : undefined), 10_000);
      await waitFor(
        "b says it stands by",
        () => (/standby: the leader is \S+ at http:\/\/127\.0\.0\.1:\d+ \(epoch \d+\)/.test(h.log("b")) ? true : undefined),
        10_000,
      );
      // Both are ready (both serve agents and operators) and say which they are.
      expect(await (await fetch(`http://127.0.0.1:${h.servers.a.port}/readyz`)).text()).toMatch(/^ready \(leader, lease epoch \d+\)$/);
      expect(await (await fetch(`http://127.0.0.1:${h.servers.b.port}/readyz`)).text()).toMatch(/^ready \(standby; the leader is \S+ at http/);
      const ready = await waitFor(
        "two ready nodes",
        async () => {
          const n = (await h.nodes()).filter((x) => x.state === "ready");
          return n.length === 2 ? n : undefined;
        },
        60_000,
      );
      expect(ready).toHaveLength(2);
      // Launched once: one launch operation per node, one local instance per node.
      const db = await store(h);
      expect((await db.db.select().from(operations)).filter((o) => o.kind === "launch")).toHaveLength(2);
      db.close();
      expect(readdirSync(join(h.fleet.dir, "shared-local-nodes"), { withFileTypes: true }).filter((f) => f.isDirectory())).toHaveLength(2);
      expect(h.log("b")).not.toContain("→");
    }, 90_000);

    test("kill -9 of the leader during a replacement: the standby takes over within 15 s and finishes it, once", async () => {
      const [victim] = (await h.nodes()).filter((n) => n.state === "ready");
      expect((await h.cli("fault", "inject", victim!.id, "--xid", "79", "--gpu", "1")).code).toBe(0);
      await waitFor(
        "the replacement under way",
        async () => {
          const n = await h.nodes();
          return n.find((x) => x.id === victim!.id && ["draining", "terminating"].includes(x.state)) ? true : undefined;
        },
        30_000,
      );
      const killedAt = Date.now();
      h.servers.a.proc!.kill("SIGKILL");
      h.servers.a.down = true;
      h.front.drop(h.servers.a.port);
      await waitFor("b takes over", () => (/took the leader lease over/.test(h.log("b")) ? true : undefined), 20_000);
      const tookOverMs = Date.now() - killedAt;
      console.log(`standby took over ${(tookOverMs / 1000).toFixed(1)} s after the leader's kill -9`);
      expect(tookOverMs).toBeLessThan(15_000);
      const replacement = await waitFor(
        "a ready replacement",
        async () => (await h.nodes()).find((n) => n.replacementOf === victim!.id && n.state === "ready"),
        60_000,
      );
      expect(replacement).toBeDefined();
      for (let i = 0; i < 6; i++) await Bun.sleep(500);
      const all = await h.nodes();
      expect(all.filter((n) => n.replacementOf === victim!.id)).toHaveLength(1);
      expect(all.find((n) => n.id === victim!.id)?.state).toBe("terminated");
      expect(all.filter((n) => n.state === "ready")).toHaveLength(2);
      const db = await store(h);
      const ops = await db.db.select().from(operations);
      db.close();
      expect(ops.filter((o) => o.kind === "launch")).toHaveLength(3);
      expect(ops.filter((o) => o.kind === "terminate")).toEqual([expect.objectContaining({ key: `terminate:${victim!.id}`, state: "succeeded" })]);
    }, 120_000);

    test("SIGSTOP of the leader past its lease: the standby leads; the old leader wakes and does nothing before it stands down", async () => {
      await h.start("a"); // back, as a standby
      await waitFor("a stands by", () => (/standby: the leader is/.test(h.log("a")) ? true : undefined), 10_000);
      h.servers.b.proc!.kill("SIGSTOP");
      h.servers.b.down = true; // the load balancer's health check takes it out
      h.front.drop(h.servers.b.port);
      // While b is frozen, a GPU fails: whoever leads must act on it, and only once.
      const [victim] = (await h.nodes()).filter((n) => n.state === "ready");
      expect((await h.cli("fault", "inject", victim!.id, "--xid", "79", "--gpu", "2")).code).toBe(0);
      await waitFor("a takes over", () => (/took the leader lease over/.test(h.log("a")) ? true : undefined), 20_000);
      await waitFor("a cordons the victim", () => (new RegExp(`${victim!.id}: ready → cordoned`).test(h.log("a")) ? true : undefined), 20_000);
      h.since("b");
      h.servers.b.proc!.kill("SIGCONT");
      await waitFor("b stands down", () => (/standing by: /.test(h.log("b").slice(h.servers.b.mark)) ? true : undefined), 15_000);
      await Bun.sleep(3_000);
      const woke = h.since("b");
      // Nothing acted on after the wake: no transition, no launch, no terminate of its own.
      expect(woke).not.toMatch(/→|launched|terminate/);
      const db = await store(h);
      const cordons = (await db.db.select().from(auditLog)).filter(
        (a) => a.target === victim!.id && a.action === "transition" && (a.details as { to: string }).to === "cordoned",
      );
      const row = (await db.db.select().from(nodes)).find((n) => n.id === victim!.id);
      db.close();
      expect(cordons).toHaveLength(1);
      expect(row?.state).not.toBe("ready");
    }, 120_000);

    // One file has one write lock: a leader stopped in the middle of a write holds it, and nobody
    // can write until it runs again (or dies). The standby must say so, with the cause, and stay
    // responsive; sqld has no such lock (docs/dependencies.md).
    if (kind === "shared file")
      test("SIGSTOP of the leader in the middle of a write: the standby says why it cannot take over, with the cause, and stays responsive; once the leader runs again one leads", async () => {
        const db = await store(h);
        const [lease] = await db.db.select().from(leases).where(eq(leases.name, "leader"));
        db.close();
        const leaderName = (["a", "b"] as const).find((n) => lease?.holder.split("/")[1] === String(h.servers[n].proc?.pid))!;
        const standbyName = leaderName === "a" ? "b" : "a";
        const leader = h.servers[leaderName];
        // Writes keep the leader's write lock busy: its pool paused and resumed by four clients.
        const pool = (verb: string) =>
          fetch(`http://127.0.0.1:${leader.port}/v1/pools/gpu/${verb}`, {
            method: "POST",
            headers: { Authorization: `Bearer ${h.fleet.token}`, "Content-Type": "application/json" },
            body: "{}",
            signal: AbortSignal.timeout(1_000),
          }).catch(() => undefined);
        let hammering = true;
        const hammer = Promise.all(
          Array.from({ length: 4 }, async () => {
            while (hammering) {
              await pool("pause");
              await pool("resume");
            }
          }),
        );
        // A connection of the test's own, with no busy wait: BEGIN IMMEDIATE fails while anyone holds the write lock.
        const probe = new Database(h.database.file!);
        probe.exec("PRAGMA busy_timeout = 0");
        const locked = (): boolean => {
          try {
            probe.exec("BEGIN IMMEDIATE");
            probe.exec("ROLLBACK");
            return false;
          } catch (err) {
            if (/locked|busy/i.test(String(err))) return true;
            throw err;
          }
        };
        let trials = 0;
        let caught = false;
        try {
          while (!caught && trials < 600) {
            trials++;
            leader.proc!.kill("SIGSTOP");
            await Bun.sleep(20);
            // Still held half a second later: by the stopped leader, not a passing write of the standby's.
            caught = locked() && (await Bun.sleep(500).then(() => locked()));
            if (!caught) {
              leader.proc!.kill("SIGCONT");
              await Bun.sleep(10 + Math.random() * 40);
            }
          }
        } finally {
          hammering = false;
        }
        expect(caught).toBe(true);
        console.log(`the leader (${leaderName}) held the database file's write lock when stopped, at trial ${trials}`);
        h.since(standbyName);
        try {
          // Twenty seconds stopped, as in the trial that found it: the standby answers throughout.
          let slowest = 0;
          for (let i = 0; i < 20; i++) {
            const sent = performance.now();
            expect((await fetch(`http://127.0.0.1:${h.servers[standbyName].port}/healthz`)).status).toBe(200);
            slowest = Math.max(slowest, performance.now() - sent);
            await Bun.sleep(1_000);
          }
          console.log(`the standby's slowest /healthz while the leader held the lock: ${Math.round(slowest)} ms`);
          expect(slowest).toBeLessThan(1_000);
          expect(h.since(standbyName)).toMatch(/leader lease: .*(database is locked|SQLITE_BUSY).*another process holds the database file's write lock/);
        } finally {
          leader.proc!.kill("SIGCONT");
          probe.close();
          await hammer;
          await pool("resume");
        }
        // Running again: one of the two leads (the one that wrote the lease last), never both.
        await Bun.sleep(8_000);
        const roles = await Promise.all((["a", "b"] as const).map(async (n) => (await fetch(`http://127.0.0.1:${h.servers[n].port}/readyz`)).text()));
        expect(roles.filter((r) => r.startsWith("ready (leader"))).toHaveLength(1);
        for (const n of ["a", "b"] as const) {
          const self = /leading \(lease epoch \d+\) as (\S+)/.exec(h.log(n))?.[1];
          if (self !== undefined) expect(h.log(n)).not.toContain(`the leader is ${self}`);
        }
      }, 180_000);
  });
}
