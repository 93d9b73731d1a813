// The store's safety through the compiled binary, as an operator meets it: a corrupt
// database stops `navarch serve` with one line, and /readyz stops saying ready when
// the database file is deleted under a running reconciler.
import { afterEach, describe, expect, test } from "bun:test";
import { createClient } from "@libsql/client";
import { randomBytes } from "node:crypto";
import { closeSync, mkdirSync, openSync, rmSync, statSync, writeSync } from "node:fs";
import { join } from "node:path";
import { CompiledFleet } from "./compiled.ts";
import { waitFor } from "./support.ts";

let fleet: CompiledFleet | undefined;
afterEach(() => {
  fleet?.stop();
  fleet = undefined;
});

describe("store safety (compiled)", () => {
  test("serve on a database with corrupt pages mid-file exits non-zero with one line naming the file", async () => {
    fleet = await CompiledFleet.create();
    const f = fleet;
    f.writeConfig();
    // A populated database, made by the binary itself (serve migrates), then filled and checkpointed.
    const server = f.startServer();
    await f.waitReady();
    server.kill("SIGTERM");
    expect(await server.exited).toBe(0);
    const db = join(f.dir, "data", "navarch.db");
    const client = createClient({ url: `file:${db}` });
    await client.executeMultiple(`
      WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 1999)
      INSERT INTO nodes (id, pool, state, state_changed_at, updated_at) SELECT printf('node-%05d', i), 'train', 'ready', 0, 0 FROM n;
      WITH RECURSIVE g(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM g WHERE i < 7)
      INSERT INTO gpus (node_id, gpu_index, uuid, pci_bus_id, name, updated_at) SELECT nodes.id, g.i, 'GPU-' || nodes.id || '-' || g.i, '00000000:18:00.0', 'H100', 0 FROM nodes, g;
      PRAGMA wal_checkpoint(TRUNCATE);
    `);
    client.close();
    // A few pages in the middle overwritten with random bytes.
    const pages = Math.floor(statSync(db).size / 4096);
    const fd = openSync(db, "r+");
    for (let i = 0; i < 3; i++) writeSync(fd, randomBytes(4096), 0, 4096, (Math.floor(pages / 2) + i * 7) * 4096);
    closeSync(fd);

    // Spawned like CompiledFleet.run, but killed if it starts serving instead of refusing.
    const proc = Bun.spawn([f.navarch, "serve", "--config", "navarch.yaml"], {
      cwd: f.dir,
      env: { PATH: "/usr/bin:/bin", HOME: f.dir, TMPDIR: f.dir, NAVARCH_AUTH_TOKEN: f.token },
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
      timeout: 20_000,
      killSignal: "SIGKILL",
    });
    const [code, stdout, stderr] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
    const run = { code, stdout, stderr };
    expect(run.code).toBe(1);
    expect(run.stdout).toBe("");
    const lines = run.stderr.trimEnd().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toStartWith(`navarch: database ${db} is corrupt (`);
    expect(lines[0]).toEndWith("restore it from a backup or move it aside to start empty");
    expect(run.stderr).not.toMatch(/\bat .*:\d+:\d+|Error:/);
  }, 60_000);

  test("/readyz turns 503 naming the file when the database is deleted under a serving reconciler", async () => {
    fleet = await CompiledFleet.create();
    const f = fleet;
    mkdirSync(join(f.dir, "data"), { recursive: true });
    f.writeConfig();
    f.startServer();
    await f.waitReady();
    const db = join(f.dir, "data", "navarch.db");
    rmSync(db);
    const body = await waitFor("/readyz to turn 503", async () => {
      const res = await fetch(`${f.url}/readyz`);
      return res.status === 503 ? res.text() : undefined;
    });
    expect(body).toBe(
      `not ready: database file ${db} was deleted while navarch had it open (writes go to the unlinked file and are lost at exit); put it back, or restore it from a backup and restart navarch`,
    );
    // Liveness is unaffected (a restart is the operator's call), and the change was logged once.
    expect((await fetch(`${f.url}/healthz`)).status).toBe(200);
    await waitFor("the log line", () => (f.output.get("navarch")?.includes("store: not ready: database file") ? true : undefined));
    await fetch(`${f.url}/readyz`);
    expect(f.output.get("navarch")?.match(/store: not ready/g)).toHaveLength(1);
  }, 60_000);
});
