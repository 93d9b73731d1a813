// `navarch backup`: a consistent copy of the database while another process writes to
// it, the --force rules, and the command end to end through the compiled binary
// (backup while serve runs, then the documented restore).
import { afterAll, describe, expect, test } from "bun:test";
import { createClient } from "@libsql/client";
import { copyFileSync, existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { backupDatabase } from "../reconciler/store/backup.ts";
import { openStore, StoreError } from "../reconciler/store/store.ts";
import { CompiledFleet } from "./compiled.ts";
import { BUN, REPO_ROOT, tempDir, waitFor } from "./support.ts";

/**
 * Another process that inserts one node with its 8 GPUs per transaction, as fast as it
 * can, until killed: a backup is consistent when it holds exactly 8 GPUs per node.
 */
const WRITER = `
import { createClient } from "@libsql/client";
const client = createClient({ url: "file:" + process.env.DB });
await client.execute("PRAGMA busy_timeout = 10000");
for (let i = 0; ; i++) {
  const id = process.env.PREFIX + "-" + String(i).padStart(7, "0");
  await client.batch([
    { sql: "INSERT INTO nodes (id, pool, state, state_changed_at, updated_at) VALUES (?, 'train', 'ready', 0, 0)", args: [id] },
    ...Array.from({ length: 8 }, (_, g) => ({
      sql: "INSERT INTO gpus (node_id, gpu_index, uuid, pci_bus_id, name, updated_at) VALUES (?, ?, ?, '00000000:18:00.0', 'NVIDIA H100 80GB HBM3', 0)",
      args: [id, g, "GPU-" + id + "-" + g],
    })),
    {
      sql: "INSERT INTO gpu_readings (node_id, readings, updated_at) VALUES (?, ?, 0)",
      args: [id, JSON.stringify(Array.from({ length: 8 }, (_, g) => ({ index: g, temperatureC: 40 + g, utilizationPct: 90 })))],
    },
  ], "write");
}
`;

const writers: Subprocess[] = [];
afterAll(() => {
  for (const w of writers) w.kill("SIGKILL");
});

function startWriter(db: string, prefix: string): Subprocess {
  const proc = Bun.spawn([BUN, "-e", WRITER], { cwd: REPO_ROOT, env: { ...process.env, DB: db, PREFIX: prefix }, stdout: "ignore", stderr: "pipe" });
  writers.push(proc);
  return proc;
}

async function counts(path: string): Promise<{ nodes: number; gpus: number; check: string }> {
  const client = createClient({ url: `file:${path}` });
  try {
    const check = String((await client.execute("PRAGMA quick_check")).rows[0]?.[0]);
    const nodes = Number((await client.execute("SELECT count(*) FROM nodes")).rows[0]?.[0]);
    const gpus = Number((await client.execute("SELECT count(*) FROM gpus")).rows[0]?.[0]);
    return { nodes, gpus, check };
  } finally {
    client.close();
  }
}

/** A migrated database with `n` nodes written by the writer's shape, closed. */
async function seeded(dir: string, n: number): Promise<string> {
  const path = join(dir, "navarch.db");
  const store = await openStore({ url: `file:${path}`, healthProbeIntervalMs: 0 });
  await store.client.executeMultiple(`
    WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ${n - 1})
    INSERT INTO nodes (id, pool, state, state_changed_at, updated_at) SELECT printf('seed-%05d', i), 'train', 'ready', 0, 0 FROM n;
    WITH RECURSIVE g(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM g WHERE i < 7)
    INSERT INTO gpus (node_id, gpu_index, uuid, pci_bus_id, name, updated_at) SELECT nodes.id, g.i, 'GPU-' || nodes.id || '-' || g.i, '00000000:18:00.0', 'H100', 0 FROM nodes, g;
  `);
  store.close();
  return path;
}

describe("backupDatabase", () => {
  test("a backup taken while another process writes opens, passes quick_check and is one snapshot", async () => {
    const dir = tempDir();
    const db = await seeded(dir, 2000);
    const writer = startWriter(db, "live");
    await waitFor("the writer to write", async () => ((await counts(db)).nodes > 2050 ? true : undefined), 20_000);
    for (let i = 0; i < 3; i++) {
      const before = (await counts(db)).nodes;
      const file = join(dir, `backup-${i}.db`);
      const result = await backupDatabase({ url: `file:${db}`, file });
      const after = (await counts(db)).nodes;
      const copy = await counts(file);
      expect(copy.check).toBe("ok");
      // One snapshot: every node with all of its GPUs, somewhere between before and after.
      expect(copy.gpus).toBe(8 * copy.nodes);
      expect(copy.nodes).toBeGreaterThanOrEqual(before);
      expect(copy.nodes).toBeLessThanOrEqual(after);
      expect(result.nodes).toBe(copy.nodes);
      expect(result.file).toBe(file);
      // The writer really was writing meanwhile.
      expect(after).toBeGreaterThan(before);
    }
    expect(writer.exitCode).toBeNull();
    writer.kill("SIGKILL");
    // No temp file (".backup-0.db.PID.RANDOM.tmp") was left behind.
    expect(readdirSync(dir).filter((f) => f.startsWith("."))).toEqual([]);
  }, 60_000);

  test("an existing file is refused without --force and replaced with it", async () => {
    const dir = tempDir();
    const db = await seeded(dir, 10);
    const file = join(dir, "backup.db");
    writeFileSync(file, "precious");
    const err = await backupDatabase({ url: `file:${db}`, file }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreError);
    expect((err as Error).message).toBe(`${file} exists; pass --force to overwrite it`);
    expect(readFileSync(file, "utf8")).toBe("precious");
    const result = await backupDatabase({ url: `file:${db}`, file, force: true });
    expect(result.nodes).toBe(10);
    expect((await counts(file)).nodes).toBe(10);
    // No temp file (".backup.db.PID.RANDOM.tmp") was left behind.
    expect(readdirSync(dir).filter((f) => f.startsWith("."))).toEqual([]);
  });

  test("a missing database is named and not created; a remote one is refused with the reason", async () => {
    const dir = tempDir();
    const missing = join(dir, "data", "navarch.db");
    const err = await backupDatabase({ url: `file:${missing}`, file: join(dir, "b.db") }).catch((e: unknown) => e);
    expect((err as Error).message).toBe(`no database at ${missing}; check --data-dir or --config`);
    expect(existsSync(missing)).toBe(false);
    const remote = await backupDatabase({ url: "libsql://db.example.com?authToken=secret", file: join(dir, "b.db") }).catch((e: unknown) => e);
    expect(remote).toBeInstanceOf(StoreError);
    expect((remote as Error).message).toContain("backup of a remote database (libsql://db.example.com) is not supported");
    expect((remote as Error).message).not.toContain("secret");
    const self = await backupDatabase({ url: `file:${await seeded(dir, 1)}`, file: join(dir, "navarch.db"), force: true }).catch((e: unknown) => e);
    expect((self as Error).message).toContain("is the database itself");
  });
});

describe("navarch backup (compiled)", () => {
  let fleet: CompiledFleet | undefined;
  afterAll(() => fleet?.stop());

  test("backs up a serving reconciler's database while it is written, refuses to overwrite, restores", async () => {
    fleet = await CompiledFleet.create();
    const f = fleet;
    f.writeConfig();
    const server = f.startServer();
    await f.waitReady();
    const db = join(f.dir, "data", "navarch.db");
    const writer = startWriter(db, "cli");
    await waitFor("the writer to write", async () => ((await counts(db)).nodes > 100 ? true : undefined), 20_000);

    const first = await f.run([f.navarch, "backup", "backup.db", "--config", "navarch.yaml"]);
    expect(first.stderr).toBe("");
    expect(first.code).toBe(0);
    const match = /^backed up (\d+) nodes to (\S+) \([\d.]+ MiB\)\n$/.exec(first.stdout);
    expect(match?.[2]).toBe(join(f.dir, "backup.db"));
    const copy = await counts(join(f.dir, "backup.db"));
    expect(copy.check).toBe("ok");
    expect(copy.nodes).toBe(Number(match?.[1]));
    expect(copy.gpus).toBe(8 * copy.nodes);

    const again = await f.run([f.navarch, "backup", "backup.db", "--data-dir", "data"]);
    expect(again.code).toBe(1);
    expect(again.stderr).toBe(`navarch: ${join(f.dir, "backup.db")} exists; pass --force to overwrite it\n`);
    const forced = await f.run([f.navarch, "backup", "backup.db", "--data-dir", "data", "--force"]);
    expect(forced.code).toBe(0);
    const newer = await counts(join(f.dir, "backup.db"));
    expect(newer.nodes).toBeGreaterThan(copy.nodes);
    expect(newer.gpus).toBe(8 * newer.nodes);

    const usage = await f.run([f.navarch, "backup"]);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain("usage: navarch backup FILE");
    writeFileSync(join(f.dir, "remote.yaml"), "server:\n  database_url: http://127.0.0.1:9\n");
    const remote = await f.run([f.navarch, "backup", "x.db", "--config", "remote.yaml"]);
    expect(remote.code).toBe(1);
    expect(remote.stderr).toStartWith("navarch: backup of a remote database (http://127.0.0.1:9/) is not supported");

    // Restore as the README says: stop serve, set the old files aside, put the backup in place.
    writer.kill("SIGKILL");
    await writer.exited;
    server.kill("SIGTERM");
    await server.exited;
    for (const suffix of ["", "-wal", "-shm"]) rmSync(`${db}${suffix}`, { force: true });
    copyFileSync(join(f.dir, "backup.db"), db);
    f.startServer();
    await f.waitReady();
    const listed = await f.api<{ nodes: unknown[] }>("/v1/nodes");
    expect(listed?.nodes.length).toBe(newer.nodes);
  }, 120_000);
});
