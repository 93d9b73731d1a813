// The store's own view of whether it can be written (/readyz, the reconcile loop), and
// the integrity check at start: against real files, a real immutable flag and a real
// full filesystem where this machine allows them.
import { afterEach, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { closeSync, copyFileSync, existsSync, mkdirSync, openSync, renameSync, rmSync, statSync, writeSync } from "node:fs";
import { join } from "node:path";
import { StoreHealthMonitor } from "../reconciler/store/writable.ts";
import { openStore, StoreError, type Store } from "../reconciler/store/store.ts";
import { tempDir } from "./support.ts";

const open: Store[] = [];
afterEach(() => {
  for (const store of open.splice(0)) store.close();
});

async function storeAt(path: string): Promise<Store> {
  const store = await openStore({ url: `file:${path}`, healthProbeIntervalMs: 0 });
  open.push(store);
  return store;
}

/** `count` ready nodes with 8 GPUs each, in plain SQL (fast, and independent of optional columns). */
async function populate(store: Store, count: number): Promise<void> {
  await store.client.executeMultiple(`
    WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ${count - 1})
    INSERT INTO nodes (id, pool, state, state_changed_at, hostname, updated_at)
      SELECT printf('node-%05d', i), 'train', 'ready', 0, printf('host-%05d', i), 0 FROM n;
    WITH RECURSIVE g(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM g WHERE i < 7)
    INSERT INTO gpus (node_id, gpu_index, uuid, pci_bus_id, name, updated_at)
      SELECT nodes.id, g.i, 'GPU-' || nodes.id || '-' || g.i, printf('00000000:%02X:00.0', 24 + g.i), 'NVIDIA H100 80GB HBM3', 0
      FROM nodes, g;
    WITH RECURSIVE g(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM g WHERE i < 7)
    INSERT INTO gpu_readings (node_id, readings, updated_at)
      SELECT nodes.id, (SELECT json_group_array(json('{"index":' || g.i || ',"temperatureC":41,"powerW":312.5,"utilizationPct":87,"memoryUsedBytes":61234567890}')) FROM g), 0
      FROM nodes;
  `);
}

/** Overwrites `pages` pages in the middle of the file with random bytes (the WAL must be checkpointed). */
function corruptMiddle(path: string, pages = 3): void {
  const total = Math.floor(statSync(path).size / 4096);
  const fd = openSync(path, "r+");
  for (let i = 0; i < pages; i++) writeSync(fd, randomBytes(4096), 0, 4096, (Math.floor(total / 2) + i * 5) * 4096);
  closeSync(fd);
}

/** A populated database file, checkpointed and closed. */
async function populatedFile(count: number): Promise<string> {
  const path = join(tempDir(), "navarch.db");
  const store = await openStore({ url: `file:${path}`, healthProbeIntervalMs: 0 });
  await populate(store, count);
  await store.client.execute("PRAGMA wal_checkpoint(TRUNCATE)");
  store.close();
  return path;
}

describe("integrity at start", () => {
  test("pages corrupted mid-file refuse the start with one line naming the file", async () => {
    const path = await populatedFile(2000);
    corruptMiddle(path);
    const err = await openStore({ url: `file:${path}`, healthProbeIntervalMs: 0 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreError);
    const message = (err as Error).message;
    expect(message).toContain(`database ${path} is corrupt`);
    expect(message).toContain("restore it from a backup or move it aside to start empty");
    expect(message).not.toContain("\n");
  });

  test("an intact populated database opens", async () => {
    const store = await storeAt(await populatedFile(200));
    expect((await store.client.execute("SELECT count(*) AS n FROM gpus")).rows[0]?.n).toBe(1600);
    expect((await store.checkHealth()).ready).toBe(true);
  });
});

describe("store health", () => {
  test("a fresh store is ready, and health() answers without I/O", async () => {
    const store = await storeAt(join(tempDir(), "navarch.db"));
    expect(store.health()).toMatchObject({ ready: true, reason: "ok" });
    expect(await store.checkHealth()).toMatchObject({ ready: true });
    // A caller's bad JSON is SQLite saying "malformed JSON", not a corrupt database.
    const err = await store.client.execute("SELECT json_extract('{bad', '$.a')").catch((e: unknown) => e);
    expect(String(err)).toContain("malformed JSON");
    expect(store.health().ready).toBe(true);
  });

  test("deleting the file under an open store makes it not ready, naming the file; putting it back makes it ready", async () => {
    const dir = tempDir();
    const path = join(dir, "navarch.db");
    const store = await storeAt(path);
    expect((await store.checkHealth()).ready).toBe(true);
    // The process still writes happily to the unlinked inode: only the path says otherwise.
    renameSync(path, join(dir, "aside.db"));
    const gone = await store.checkHealth();
    expect(gone.ready).toBe(false);
    expect(gone.problem).toBe("deleted");
    expect(gone.reason).toContain(path);
    expect(store.health().ready).toBe(false);
    await store.client.execute("SELECT 1");
    // The same inode back at the path (mv back) is the same database.
    renameSync(join(dir, "aside.db"), path);
    expect((await store.checkHealth()).ready).toBe(true);
    rmSync(path);
    expect((await store.checkHealth()).reason).toContain(`database file ${path} was deleted`);
  });

  test("a file replaced under an open store stays not ready until restart", async () => {
    const dir = tempDir();
    const path = join(dir, "navarch.db");
    const store = await storeAt(path);
    copyFileSync(path, join(dir, "copy.db"));
    renameSync(join(dir, "copy.db"), path);
    const replaced = await store.checkHealth();
    expect(replaced).toMatchObject({ ready: false, problem: "replaced", sticky: true });
    expect(replaced.reason).toContain(path);
    expect((await store.checkHealth()).ready).toBe(false);
  });

  test("a query that meets corruption makes the store not ready until restart", async () => {
    const path = await populatedFile(2000);
    const store = await storeAt(path);
    expect((await store.checkHealth()).ready).toBe(true);
    // Pages the connection has not cached since the start-up check are read from disk.
    corruptMiddle(path, 6);
    const err = await store.client.execute("SELECT * FROM gpus ORDER BY uuid").catch((e: unknown) => e);
    expect(String(err)).toMatch(/malformed|SQLITE_CORRUPT/);
    expect(store.health()).toMatchObject({ ready: false, problem: "corrupt", sticky: true });
    expect(store.health().reason).toContain(`database ${path} is corrupt`);
    expect((await store.checkHealth()).ready).toBe(false);
  });

  test("an immutable file (chattr +i) is not ready, and ready again after chattr -i", async () => {
    const dir = writableAttrDir();
    if (dir === undefined) {
      console.warn("skipped: chattr +i is not supported on any temp filesystem here");
      return;
    }
    const path = join(dir, "navarch.db");
    const store = await storeAt(path);
    expect((await store.checkHealth()).ready).toBe(true);
    try {
      expect(run(["chattr", "+i", path])).toBe(0);
      const frozen = await store.checkHealth();
      expect(frozen).toMatchObject({ ready: false, problem: "unwritable" });
      expect(frozen.reason).toContain(path);
      expect(frozen.reason).toContain("EPERM");
    } finally {
      run(["chattr", "-i", path]);
    }
    expect((await store.checkHealth()).ready).toBe(true);
  });

  test("a full disk is not ready, and ready again once space is freed", async () => {
    const dir = tempDir();
    // A real full filesystem: a 4 MiB tmpfs (root in a container may mount one).
    const mounted = run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", dir]) === 0;
    try {
      const path = join(dir, "navarch.db");
      const store = await storeAt(path);
      if (!mounted) {
        // Fallback: no tmpfs here. PRAGMA max_page_count makes SQLite itself answer
        // SQLITE_FULL on this connection, so the error path is real; freeing space is not.
        console.warn("tmpfs mount refused: simulating SQLITE_FULL with PRAGMA max_page_count");
        const pages = Number((await store.client.execute("PRAGMA page_count")).rows[0]?.[0]);
        await store.client.execute(`PRAGMA max_page_count = ${pages + 2}`);
        const err = await fillWithRows(store);
        expect(String(err)).toMatch(/SQLITE_FULL|full/);
        expect(store.health()).toMatchObject({ ready: false, problem: "full" });
        return;
      }
      expect((await store.checkHealth()).ready).toBe(true);

      // 1. Nothing has failed yet, but the filesystem is full: not ready from free space alone.
      const filler = join(dir, "filler");
      fillFile(filler);
      const full = await store.checkHealth();
      expect(full).toMatchObject({ ready: false, problem: "full" });
      expect(full.reason).toContain(path);
      rmSync(filler);
      expect((await store.checkHealth()).ready).toBe(true);

      // 2. A write fails with SQLITE_FULL: any query's error is seen at once.
      fillFile(filler, 2 * 2 ** 20);
      expect((await store.checkHealth()).ready).toBe(true);
      const err = await fillWithRows(store);
      expect(String(err)).toMatch(/SQLITE_FULL|full/);
      expect(store.health()).toMatchObject({ ready: false, problem: "full" });
      rmSync(filler);
      expect((await store.checkHealth()).ready).toBe(true);
    } finally {
      for (const store of open.splice(0)) store.close();
      // Lazy: the closed store's connections may still hold files there until they are collected.
      if (mounted) expect(run(["umount", "-l", dir])).toBe(0);
    }
  });
});

describe("store health monitor", () => {
  test("a write lock held elsewhere is not a problem until it has lasted 30 s", async () => {
    let clock = 0;
    let busy = true;
    const lines: string[] = [];
    const monitor = new StoreHealthMonitor({
      location: "test.db",
      now: () => clock,
      log: (line) => lines.push(line),
      probeWrite: async () => {
        if (busy) throw Object.assign(new Error("SQLITE_BUSY: database is locked"), { code: "SQLITE_BUSY" });
      },
    });
    for (; clock < 30_000; clock += 5_000) expect((await monitor.check()).ready).toBe(true);
    const locked = await monitor.check();
    expect(locked).toMatchObject({ ready: false, problem: "locked" });
    expect(locked.reason).toContain("database test.db has been locked by another connection for 30 s");
    busy = false;
    clock += 5_000;
    expect((await monitor.check()).ready).toBe(true);
    // One line per change, not per probe.
    expect(lines).toEqual([expect.stringMatching(/^store: not ready: /), expect.stringMatching(/^store: ready again \(was: /)]);
  });
});

/** Inserts 64 KiB rows until the database refuses; returns that error. */
async function fillWithRows(store: Store): Promise<unknown> {
  await store.client.execute("CREATE TABLE IF NOT EXISTS ballast (b BLOB)");
  for (let i = 0; i < 10_000; i++) {
    const err = await store.client.execute({ sql: "INSERT INTO ballast VALUES (?)", args: [randomBytes(65536)] }).then(
      () => undefined,
      (e: unknown) => e,
    );
    if (err !== undefined) return err;
  }
  throw new Error("the database never filled up");
}

/** Writes zeros until ENOSPC, or `limit` bytes. */
function fillFile(path: string, limit = Infinity): void {
  const fd = openSync(path, "w");
  const chunk = Buffer.alloc(64 * 1024);
  let written = 0;
  try {
    while (written < limit) written += writeSync(fd, chunk, 0, Math.min(chunk.length, limit - written));
  } catch (err) {
    if (!(err instanceof Error && "code" in err && err.code === "ENOSPC")) throw err;
  } finally {
    closeSync(fd);
  }
}

/** A temp directory on a filesystem where chattr +i works (ext4, xfs, btrfs; not tmpfs or overlay). */
function writableAttrDir(): string | undefined {
  for (const base of [undefined, "/var/tmp"]) {
    let dir: string;
    try {
      if (base === undefined) {
        dir = tempDir();
      } else {
        if (!existsSync(base)) mkdirSync(base, { recursive: true });
        dir = join(base, `navarch-attr-${process.pid}-${randomBytes(3).toString("hex")}`);
        mkdirSync(dir);
        process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
      }
    } catch {
      continue;
    }
    const probe = join(dir, "attr-probe");
    closeSync(openSync(probe, "w"));
    const ok = run(["chattr", "+i", probe]) === 0;
    run(["chattr", "-i", probe]);
    rmSync(probe, { force: true });
    if (ok) return dir;
  }
  return undefined;
}

/** The exit code, or -1 where the program is missing. */
function run(cmd: string[]): number {
  try {
    return Bun.spawnSync(cmd, { stdout: "ignore", stderr: "ignore" }).exitCode;
  } catch {
    return -1;
  }
}
