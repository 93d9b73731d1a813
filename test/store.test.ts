import { describe, expect, test } from "bun:test";
import { chmodSync, cpSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { createClient, type Client } from "@libsql/client";
import { gpuReadings, nodes } from "../schema/db.ts";
import { registerNode } from "../reconciler/nodes/agent-reports.ts";
import { MIGRATIONS } from "../reconciler/store/migrations/index.ts";
import { StoreError, openStore } from "../reconciler/store/store.ts";
import { BUN, REPO_ROOT, tempDir } from "./support.ts";

const register = {
  nodeId: "gpu-node-1",
  hostname: "gpu-node-1",
  bootId: "boot-a",
  agentVersion: "0.0.0",
  spoolId: "6f1c2a7e-0d5b-4c53-9a51-2f7f0f3c9b10",
  nvml: { available: false, error: "no libnvidia-ml" },
  gpus: [],
};

describe("store", () => {
  test("creates the data directory, migrates, and keeps data across reopen", async () => {
    const dir = join(tempDir(), "nested", "data");
    const url = `file:${dir}/navarch.db`;
    const first = await openStore({ url });
    await registerNode(first.db, register, () => 1000);
    first.close();
    const second = await openStore({ url });
    const rows = await second.db.select().from(nodes);
    expect(rows.map((r) => r.id)).toEqual(["gpu-node-1"]);
    const applied = await second.client.execute("SELECT tag FROM __navarch_migrations ORDER BY tag");
    expect(applied.rows.map((r) => r.tag)).toEqual(MIGRATIONS.map((m) => m.tag));
    second.close();
  });

  test("every connection of the store's pool is set up alike, not only the first", async () => {
    // The client opens another connection whenever a transaction holds one and something else
    // needs one; a PRAGMA run through the client set only the connection that ran it.
    type Runner = Pick<Client, "execute">;
    const settings = async (on: Runner) => {
      const [busy] = (await on.execute("SELECT timeout FROM pragma_busy_timeout")).rows;
      const [sync] = (await on.execute("SELECT synchronous FROM pragma_synchronous")).rows;
      return { busyTimeoutMs: Number(busy?.timeout), synchronous: Number(sync?.synchronous) };
    };
    // `holding` transactions open at once hold that many connections; the client opens one more.
    const everyConnection = async (options: { scratch?: boolean }, holding: number) => {
      const store = await openStore({ url: `file:${tempDir()}/navarch.db`, healthProbeIntervalMs: 0, ...options });
      const held = await Promise.all(Array.from({ length: holding }, () => store.client.transaction("read")));
      const seen = [await settings(store.client)];
      for (const tx of held) seen.push(await settings(tx));
      for (const tx of held) tx.close();
      store.close();
      return seen;
    };
    // synchronous = NORMAL is 1; SQLite's default on a fresh connection is FULL (2).
    expect(await everyConnection({}, 3)).toEqual(Array.from({ length: 4 }, () => ({ busyTimeoutMs: 5000, synchronous: 1 })));
    // A scratch store (the simulator's) syncs nothing, on any of its connections either.
    expect(await everyConnection({ scratch: true }, 2)).toEqual(Array.from({ length: 3 }, () => ({ busyTimeoutMs: 5000, synchronous: 0 })));
  });

  test("a corrupt database file gives an error naming the file, not a stack trace", async () => {
    const path = join(tempDir(), "navarch.db");
    writeFileSync(path, Buffer.alloc(8192, 0x5a));
    const err = await openStore({ url: `file:${path}` }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreError);
    expect((err as Error).message).toContain(path);
    expect((err as Error).message).toMatch(/corrupt or not a libSQL\/SQLite database/);
  });

  test("an unwritable data directory is named in the error", async () => {
    if (process.getuid?.() === 0) {
      // root ignores directory permissions; use a path under a regular file instead
      const file = join(tempDir(), "not-a-dir");
      writeFileSync(file, "x");
      const err = await openStore({ url: `file:${file}/sub/navarch.db` }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StoreError);
      expect((err as Error).message).toContain(`${file}/sub`);
      return;
    }
    const dir = join(tempDir(), "ro");
    mkdirSync(dir);
    chmodSync(dir, 0o500);
    const err = await openStore({ url: `file:${dir}/navarch.db` }).catch((e: unknown) => e);
    expect((err as Error).message).toContain(dir);
  });

  test("a database path that is a directory is refused clearly", async () => {
    const dir = tempDir();
    const err = await openStore({ url: `file:${dir}` }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreError);
    expect((err as Error).message).toContain("not a regular file");
  });

  test("a database migrated by a newer navarch is refused", async () => {
    const url = `file:${tempDir()}/navarch.db`;
    const store = await openStore({ url });
    await store.client.execute("INSERT INTO __navarch_migrations (tag, hash, applied_at) VALUES ('9999_future', 'x', 0)");
    store.close();
    const err = await openStore({ url }).catch((e: unknown) => e);
    expect((err as Error).message).toContain("9999_future");
    expect((err as Error).message).toContain("newer navarch");
  });

  test("the committed migrations match schema/db.ts (drizzle-kit has nothing to generate)", async () => {
    const out = join(tempDir(), "migrations");
    cpSync(join(REPO_ROOT, "reconciler/store/migrations"), out, { recursive: true });
    const before = readdirSync(out).sort();
    const proc = Bun.spawnSync(
      [BUN, "x", "--bun", "drizzle-kit", "generate", "--dialect", "sqlite", "--schema", "./schema/db.ts", "--out", relative(REPO_ROOT, out)],
      { cwd: REPO_ROOT, stdout: "pipe", stderr: "pipe" },
    );
    // drizzle-kit exits 0 even when it fails, so its own words are checked too.
    expect(proc.exitCode).toBe(0);
    // A schema change without `bun run db:generate` would add a new .sql file here.
    expect(readdirSync(out).sort()).toEqual(before);
    expect(proc.stdout.toString() + proc.stderr.toString()).toContain("No schema changes");
  });
});

/**
 * A database as navarch left it before migration `upTo`: the earlier migrations applied and
 * recorded (as the store does), so that opening it with the store applies the rest.
 */
async function databaseBefore(upTo: string): Promise<{ url: string; client: Client }> {
  const url = `file:${tempDir()}/old.db`;
  const client = createClient({ url });
  await client.execute("CREATE TABLE __navarch_migrations (tag TEXT PRIMARY KEY, hash TEXT NOT NULL, applied_at INTEGER NOT NULL)");
  for (const m of MIGRATIONS.slice(
    0,
    MIGRATIONS.findIndex((x) => x.tag === upTo),
  )) {
    const statements = m.sql
      .split("--> statement-breakpoint")
      .map((x) => x.trim())
      .filter((x) => x.length > 0);
    const hash = new Bun.CryptoHasher("sha256").update(m.sql).digest("hex");
    await client.batch([...statements, { sql: "INSERT INTO __navarch_migrations VALUES (?, ?, 0)", args: [m.tag, hash] }], "write");
  }
  return { url, client };
}

describe("migrations 0007 and 0008: each node's GPU summary, its readings in one row", () => {
  test("are backfilled from the readings a database already holds, impossible readings left out of the summary", async () => {
    const { url, client } = await databaseBefore("0007_gpu_aggregates");
    // Two nodes of 8 GPUs with readings in the old place (gpus.last_snapshot); one reading a hand edit broke, one not a number.
    await client.execute(
      `INSERT INTO nodes (id, state, state_changed_at, updated_at, last_heartbeat_at) VALUES ('n0', 'ready', 0, 0, 1), ('n1', 'ready', 0, 0, 1)`,
    );
    for (const node of ["n0", "n1"])
      for (let g = 0; g < 8; g++)
        await client.execute({
          sql: "INSERT INTO gpus (node_id, gpu_index, uuid, pci_bus_id, name, last_snapshot, updated_at) VALUES (?, ?, ?, '0', 'H100', ?, 5)",
          args: [node, g, `GPU-${node}-${g}`, JSON.stringify({ index: g, temperatureC: 40, utilizationPct: 50 })],
        });
    await client.execute(`update gpus set last_snapshot = '{"index":0,"temperatureC":77,"utilizationPct":"x"}' where node_id = 'n1' and gpu_index = 0`);
    await client.execute(`update gpus set last_snapshot = '{"index":1,"temperatureC":1e308,"utilizationPct":90}' where node_id = 'n1' and gpu_index = 1`);
    client.close();
    const store = await openStore({ url });
    try {
      const rows = await store.client.execute(
        "select id, gpu_readings, gpu_temperature_max_c, gpu_utilization_sum, gpu_utilization_count from nodes order by id",
      );
      expect(rows.rows.map((r) => [r.id, r.gpu_readings, r.gpu_temperature_max_c, r.gpu_utilization_sum, r.gpu_utilization_count])).toEqual([
        ["n0", 8, 40, 400, 8],
        ["n1", 8, 77, 390, 7],
      ]);
      const readings = await store.db.select().from(gpuReadings).orderBy(gpuReadings.nodeId);
      expect(readings.map((r) => r.nodeId)).toEqual(["n0", "n1"]);
      const n1 = readings[1]!.readings as Record<string, unknown>[];
      expect(n1.map((g) => g.index)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
      expect(n1[0]).toEqual({ index: 0, temperatureC: 77, utilizationPct: "x" });
      const columns = await store.client.execute("select name from pragma_table_info('gpus')");
      expect(columns.rows.map((r) => r.name)).not.toContain("last_snapshot");
    } finally {
      store.close();
    }
  });
});

describe("migration 0011: when each node was launched and first served, and its GPUs", () => {
  test("are backfilled from the audit log, the launch operations and the gpus table", async () => {
    const { url, client } = await databaseBefore("0011_registration_deadlines");
    // a: launched, served (the audit log saw it go ready), terminated; b: launched, never served, failed;
    // c: in service now with no audit row; d: never launched (a monitored node).
    await client.execute(
      `INSERT INTO nodes (id, origin, state, state_changed_at, updated_at, instance_name) VALUES
       ('a', 'launched', 'terminated', 900, 900, 'i-a'), ('b', 'launched', 'failed', 800, 800, 'i-b'),
       ('c', 'launched', 'ready', 700, 700, 'i-c'), ('d', 'registered', 'validating', 50, 50, null)`,
    );
    await client.execute(
      `INSERT INTO audit_log (at, actor, action, target, details) VALUES
       (300, 'agent:a', 'register', 'a', '{"from":"provisioning","to":"validating"}'),
       (400, 'navarch', 'transition', 'a', '{"from":"validating","to":"ready"}'),
       (500, 'navarch', 'transition', 'a', '{"from":"ready","to":"suspect"}'),
       (600, 'navarch', 'transition', 'b', '{"from":"provisioning","to":"failed"}')`,
    );
    await client.execute(
      `INSERT INTO operations (key, kind, node_id, pool, state, created_at, updated_at) VALUES
       ('launch:a:local', 'launch', 'a', 'p', 'succeeded', 90, 100), ('launch:b:local', 'launch', 'b', 'p', 'succeeded', 190, 200),
       ('launch:c:local', 'launch', 'c', 'p', 'failed', 290, 300), ('terminate:a', 'terminate', 'a', 'p', 'succeeded', 850, 850)`,
    );
    for (let g = 0; g < 4; g++)
      await client.execute({
        sql: "INSERT INTO gpus (node_id, gpu_index, uuid, pci_bus_id, name, updated_at) VALUES ('a', ?, ?, '0', 'H100', 1)",
        args: [g, `GPU-a-${g}`],
      });
    client.close();
    const store = await openStore({ url });
    try {
      const rows = await store.client.execute("select id, launched_at, served_at, gpu_count, adopted_at from nodes order by id");
      expect(rows.rows.map((r) => [r.id, r.launched_at, r.served_at, r.gpu_count, r.adopted_at])).toEqual([
        ["a", 100, 400, 4, null],
        ["b", 200, null, null, null],
        ["c", null, 700, null, null],
        ["d", null, null, null, null],
      ]);
      const pools = await store.client.execute("select name from pragma_table_info('pools') where name like 'registration%' order by name");
      expect(pools.rows.map((r) => r.name)).toEqual(["registration_failed_at", "registration_failures", "registration_held_at", "registration_hold"]);
    } finally {
      store.close();
    }
  });
});

describe("text that is not UTF-8 (store/quarantine.ts)", () => {
  /** A store file whose `pools` rows and a node's hostname hold bytes that are not UTF-8, written below the ORM. */
  async function poisoned(): Promise<string> {
    const url = `file:${tempDir()}/navarch.db`;
    (await openStore({ url, healthProbeIntervalMs: 0 })).close();
    const raw = createClient({ url });
    const spec = `'{"scaling":{"min_nodes":0,"max_nodes":1}}'`;
    await raw.execute(`INSERT INTO pools (name, source, spec, created_at, updated_at) VALUES (CAST(X'61FF' AS TEXT), 'config', ${spec}, 0, 0)`);
    // Repairs to the same name as the row above: a unique collision.
    await raw.execute(`INSERT INTO pools (name, source, spec, created_at, updated_at) VALUES (CAST(X'61FE' AS TEXT), 'config', ${spec}, 0, 0)`);
    await raw.execute(
      `INSERT INTO nodes (id, origin, state, state_changed_at, updated_at, hostname) VALUES ('n1', 'registered', 'ready', 0, 0, CAST(X'68C3' AS TEXT))`,
    );
    raw.close();
    return url;
  }

  test("two reconcilers opening one file at once repair each value once; a repair that collides with a unique value removes the row, its bytes kept", async () => {
    const url = await poisoned();
    // Two processes, as two reconcilers are (in one, the second's busy wait would block the first's commit).
    const script = join(tempDir(), "open.ts");
    writeFileSync(
      script,
      `import { openStore } from ${JSON.stringify(join(REPO_ROOT, "reconciler/store/store.ts"))};\nconst s = await openStore({ url: process.argv[2], healthProbeIntervalMs: 0 });\nprocess.stdout.write(JSON.stringify(s.quarantined));\ns.close();\n`,
    );
    const open = async () => {
      const proc = Bun.spawn([BUN, script, url], { stdout: "pipe", stderr: "pipe" });
      const [code, out, err] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
      if (code !== 0) throw new Error(`open.ts exited ${code}: ${err}`);
      return JSON.parse(out) as { column: string; originalHex: string; storedAs: string }[];
    };
    const [first, second] = await Promise.all([open(), open()]);
    const a = await openStore({ url, healthProbeIntervalMs: 0 });
    try {
      const all = [...first, ...second].map((q) => [q.column, q.originalHex, q.storedAs]).sort();
      expect(all).toEqual([
        ["nodes.hostname", "68C3", "h\ufffd"],
        ["pools.name", "61FE", "deleted"],
        ["pools.name", "61FF", "a\ufffd"],
      ]);
      const audit = await a.client.execute("SELECT details FROM audit_log WHERE action = 'text_quarantined'");
      expect(audit.rows.length).toBe(3);
      expect((await a.client.execute("SELECT name FROM pools")).rows.map((r) => r.name)).toEqual(["a\ufffd"]);
      expect((await a.client.execute("SELECT hostname FROM nodes")).rows.map((r) => r.hostname)).toEqual(["h\ufffd"]);
      // Opened again: nothing left to do.
      expect(a.quarantined).toEqual([]);
    } finally {
      a.close();
    }
  }, 30_000);
});
