// The SSH runner (bootstrap/ssh.ts) against a real OpenSSH server on 127.0.0.1:
// per-command output and exit codes, secrets masked, a failing and a hanging command,
// host keys pinned (a changed key is refused and never retried), waiting for a host to
// come up, and giving up on one that does not. Then the reconciler's bootstrap task:
// the key recorded on first contact is enforced on a later contact; an interrupted run
// is not repeated.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import {
  md5Fingerprint,
  normalizeFingerprint,
  parseSshAddress,
  publicKeyFromPrivate,
  runBootstrap,
  type BootstrapRequest,
  type BootstrapStep,
} from "../bootstrap/ssh.ts";
import { desc, eq } from "drizzle-orm";
import { parseConfig } from "../reconciler/config/load.ts";
import { Bootstrapper } from "../reconciler/lifecycle/ssh-bootstrap.ts";
import type { Instance } from "../reconciler/providers/provider.ts";
import { openStore } from "../reconciler/store/store.ts";
import { bootstrapRuns, hostKeys, nodes } from "../schema/db.ts";
import { freePort } from "./support.ts";
import { Sshd, ensureSshd, newKeyPair, type KeyPair } from "./ssh/sshd.ts";
import { tempDir, waitFor } from "./support.ts";

let dir: string;
let client: KeyPair;
let sshd: Sshd;
const SECRET = "bootstrap-secret-7f3a9c1d2e";

function request(extra: Partial<BootstrapRequest> & { commands: string[] }): BootstrapRequest {
  return {
    host: "127.0.0.1",
    port: sshd.port,
    user: sshd.user,
    privateKey: client.privateKey,
    mask: [SECRET],
    timeouts: { reachableMs: 5000, connectMs: 3000, commandMs: 15_000 },
    ...extra,
  };
}

beforeAll(async () => {
  ensureSshd();
  dir = tempDir("navarch-ssh-");
  client = newKeyPair(join(dir, "client_ed25519"));
  sshd = await Sshd.start({ dir: join(dir, "sshd"), authorizedKeys: [client.publicKey] });
}, 120_000);

afterAll(async () => {
  await sshd?.stop();
});

describe("runBootstrap against OpenSSH on loopback", () => {
  test("runs each command in order and keeps stdout, stderr and exit code; secrets are masked", async () => {
    const r = await runBootstrap(
      request({
        commands: [`echo out-1; echo err-1 >&2`, `printf 'token=%s\\n' ${SECRET}; echo "also ${SECRET}" >&2`, `test "$(id -un)" = ${sshd.user}`],
      }),
    );
    expect(r.error).toBeUndefined();
    expect(r.ok).toBe(true);
    expect(r.hostKeyFingerprint).toBe(sshd.hostKey.fingerprint);
    expect(r.steps.map((s) => ({ exit: s.exitCode, out: s.stdout, err: s.stderr, timedOut: s.timedOut }))).toEqual([
      { exit: 0, out: "out-1\n", err: "err-1\n", timedOut: false },
      { exit: 0, out: "token=***\n", err: "also ***\n", timedOut: false },
      { exit: 0, out: "", err: "", timedOut: false },
    ]);
    expect(r.steps[1]!.command).toBe(`printf 'token=%s\\n' ***; echo "also ***" >&2`);
    // Nowhere in what is returned (and so stored).
    expect(JSON.stringify(r)).not.toContain(SECRET);
    expect(JSON.stringify(r)).not.toContain(client.privateKey.split("\n")[1]!);
    for (const s of r.steps) expect(s.durationMs).toBeGreaterThan(0);
  }, 30_000);

  test("a failing command fails the bootstrap with its output kept; later commands do not run", async () => {
    const marker = join(dir, "must-not-exist");
    const r = await runBootstrap(
      request({ commands: ["echo fine", "echo partial; echo 'E: Unable to locate package nvidia-driver-999' >&2; exit 3", `touch ${marker}`] }),
    );
    expect(r.ok).toBe(false);
    expect(r.steps).toHaveLength(2);
    expect(r.steps[1]).toMatchObject({ exitCode: 3, stdout: "partial\n", timedOut: false });
    expect(r.steps[1]!.stderr).toContain("E: Unable to locate package nvidia-driver-999");
    expect(r.error).toContain("step 2/3 exited 3");
    expect(r.error).toContain("Unable to locate package");
    expect(existsSync(marker)).toBe(false);
  }, 30_000);

  test("a command that hangs past its timeout fails the bootstrap with its output kept, and is killed on the host", async () => {
    const started = Date.now();
    const r = await runBootstrap(
      request({ commands: ["echo started; echo 'waiting for apt lock' >&2; sleep 37.25; echo never"], timeouts: { reachableMs: 5000, commandMs: 1500 } }),
    );
    expect(Date.now() - started).toBeLessThan(10_000); // 1.5 s, with room for a loaded machine
    expect(r.ok).toBe(false);
    expect(r.steps).toHaveLength(1);
    expect(r.steps[0]).toMatchObject({ exitCode: null, timedOut: true, stdout: "started\n" });
    expect(r.steps[0]!.stderr).toContain("waiting for apt lock");
    expect(r.error).toContain("step 1/1 timed out after 1.5 s");
    // The host's `timeout` wrapper ends the command a little after our own deadline.
    await waitFor("the hung command to be killed on the host", () => (Bun.spawnSync(["pgrep", "-f", "sleep 37.25"]).exitCode === 1 ? true : undefined), 10_000);
  }, 30_000);

  test("host keys are pinned: a changed key is refused at once, naming host, expected and got", async () => {
    const first = await runBootstrap(request({ commands: ["true"] }));
    expect(first.ok).toBe(true);
    const pinned = first.hostKeyFingerprint!;
    // Provider-supplied fingerprints match in either common form.
    const bare = await runBootstrap(request({ commands: ["true"], knownFingerprint: [pinned.replace(/^SHA256:/, "")] }));
    expect(bare.ok).toBe(true);
    const md5 = md5Fingerprint(Buffer.from(sshd.hostKey.publicKey.split(" ")[1]!, "base64"));
    expect((await runBootstrap(request({ commands: ["true"], knownFingerprint: ["SHA256:not-this-one", md5.toUpperCase().replace("MD5:", "")] }))).ok).toBe(
      true,
    );

    await sshd.restart({ newHostKey: true });
    const changed = sshd.hostKey.fingerprint;
    expect(changed).not.toBe(pinned);
    const marker = join(dir, "ran-on-impostor");
    const started = Date.now();
    const r = await runBootstrap(request({ commands: [`touch ${marker}`], knownFingerprint: pinned }));
    expect(r.ok).toBe(false);
    expect(r.attempts).toBe(1); // never retried
    expect(Date.now() - started).toBeLessThan(5000);
    expect(r.steps).toEqual([]);
    expect(r.error).toContain(`host key of 127.0.0.1:${sshd.port} changed`);
    expect(r.error).toContain(`expected ${pinned}`);
    expect(r.error).toContain(`got ${changed}`);
    expect(r.hostKeyFingerprint).toBe(changed);
    expect(existsSync(marker)).toBe(false);
    // The new key, once known, is accepted.
    expect((await runBootstrap(request({ commands: ["true"], knownFingerprint: changed }))).ok).toBe(true);
  }, 30_000);

  test("on first contact, the key one attempt saw is pinned for the retries too", async () => {
    // The login key is not accepted yet (as before cloud-init installs it): attempts repeat.
    const stranger = newKeyPair(join(dir, "not-yet_ed25519"));
    const run = runBootstrap(request({ privateKey: stranger.privateKey, commands: ["true"], timeouts: { reachableMs: 8000, connectMs: 1000 } }));
    await Bun.sleep(800);
    const first = sshd.hostKey.fingerprint;
    await sshd.restart({ newHostKey: true }); // someone else answers on that address now
    const r = await run;
    expect(r.ok).toBe(false);
    expect(r.error).toContain(`expected ${first}, got ${sshd.hostKey.fingerprint}`);
  }, 30_000);

  test("waits until a booting host's sshd comes up", async () => {
    const port = freePort();
    const late = (async () => {
      await Bun.sleep(1200);
      return Sshd.start({ dir: join(dir, "late"), authorizedKeys: [client.publicKey], port });
    })();
    const r = await runBootstrap(request({ port, commands: ["echo up"], timeouts: { reachableMs: 15_000, connectMs: 2000 } }));
    const host = await late;
    try {
      expect(r.error).toBeUndefined();
      expect(r.ok).toBe(true);
      expect(r.attempts).toBeGreaterThan(1);
      expect(r.steps[0]!.stdout).toBe("up\n");
    } finally {
      await host.stop();
    }
  }, 30_000);

  test("gives up on a host that never answers at its deadline", async () => {
    const started = Date.now();
    const r = await runBootstrap(request({ port: freePort(), commands: ["true"], timeouts: { reachableMs: 1500, connectMs: 1000 } }));
    expect(Date.now() - started).toBeLessThan(6000);
    expect(r.ok).toBe(false);
    expect(r.attempts).toBeGreaterThan(1);
    expect(r.error).toMatch(/not reachable over SSH within 1\.5 s \(\d+ attempts; last: .*ECONNREFUSED/);
  }, 15_000);

  test("a key the host does not accept is retried until the deadline, then reported as an authentication failure", async () => {
    const stranger = newKeyPair(join(dir, "stranger_ed25519"));
    const r = await runBootstrap(request({ privateKey: stranger.privateKey, commands: ["true"], timeouts: { reachableMs: 1500, connectMs: 1000 } }));
    expect(r.ok).toBe(false);
    expect(r.error).toContain("authentication");
    expect(r.error).not.toContain(stranger.privateKey.split("\n")[1]!);
  }, 15_000);
});

describe("addresses and fingerprints", () => {
  test("an instance address may carry the SSH port", () => {
    expect(parseSshAddress("203.0.113.7")).toEqual({ host: "203.0.113.7", port: 22 });
    expect(parseSshAddress("127.0.0.1:2201")).toEqual({ host: "127.0.0.1", port: 2201 });
    expect(parseSshAddress("[2001:db8::1]:2222")).toEqual({ host: "2001:db8::1", port: 2222 });
    expect(parseSshAddress("2001:db8::1")).toEqual({ host: "2001:db8::1", port: 22 });
  });

  test("the public key a provider installs comes from the pool's private key", () => {
    const [type, blob] = client.publicKey.split(" ");
    expect(publicKeyFromPrivate(client.privateKey)).toBe(`${type} ${blob} navarch`);
    expect(() => publicKeyFromPrivate("not a key")).toThrow("cannot read the private key");
  });

  test("fingerprints normalise from what ssh-keygen and providers print", () => {
    expect(normalizeFingerprint("SHA256:+Y7BFnJp4vblJq9inepTp0alJ/na1LQdYFA0dxv0+hU")).toBe("SHA256:+Y7BFnJp4vblJq9inepTp0alJ/na1LQdYFA0dxv0+hU");
    expect(normalizeFingerprint("+Y7BFnJp4vblJq9inepTp0alJ/na1LQdYFA0dxv0+hU=")).toBe("SHA256:+Y7BFnJp4vblJq9inepTp0alJ/na1LQdYFA0dxv0+hU");
    expect(normalizeFingerprint("MD5:AA:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99")).toBe("MD5:aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99");
    expect(md5Fingerprint(Buffer.from("x"))).toMatch(/^MD5:([0-9a-f]{2}:){15}[0-9a-f]{2}$/);
  });
});

describe("the reconciler's bootstrap task", () => {
  test("records the host key on first contact and refuses a changed one on a later contact with the same instance", async () => {
    const store = await openStore({ url: `file:${join(tempDir(), "navarch.db")}` });
    try {
      const parsed = parseConfig(
        `pools:\n  - name: p\n    provider: lambda\n    instance_type: t\n    region: r\n    ssh_user: ${sshd.user}\n    ssh_private_key_path: ${client.privateKeyPath}\n    setup_commands:\n      - echo node {{.NodeID}} of {{.Pool}} at {{.ControlPlane}} token {{.BootstrapToken}}\n`,
        "test",
      );
      if (!parsed.ok) throw new Error(JSON.stringify(parsed.problems));
      const pool = parsed.config.pools[0]!;
      const bootstrapper = new Bootstrapper({ store, now: Date.now, log: () => undefined, wake: () => undefined, publicUrl: "http://reconciler.test:50051" });
      const at = Date.now();
      await store.db
        .insert(nodes)
        .values({ id: "n-1", pool: "p", provider: "lambda", state: "bootstrapping", stateChangedAt: at, requestedAt: at, updatedAt: at });
      const [node] = await store.db.select().from(nodes).where(eq(nodes.id, "n-1"));
      const instance: Instance = {
        id: "i-1",
        name: "n-1",
        provider: "lambda",
        instanceType: "t",
        region: "r",
        state: "running",
        address: `127.0.0.1:${sshd.port}`,
        tags: {},
      };
      const outcome = async () => {
        await bootstrapper.settled();
        return (await store.db.select().from(bootstrapRuns).where(eq(bootstrapRuns.nodeId, "n-1")).orderBy(desc(bootstrapRuns.id)))[0]!;
      };

      expect(await bootstrapper.next(node!, async () => instance)).toMatchObject({ kind: "start" });
      await bootstrapper.begin(node!, pool, instance, at + pool.health.registration_timeout);
      const first = await outcome();
      expect(first).toMatchObject({ state: "succeeded", hostKeyFingerprint: sshd.hostKey.fingerprint });
      const steps = first.steps as BootstrapStep[];
      expect(steps[0]!.stdout).toBe("node n-1 of p at http://reconciler.test:50051 token ***\n");
      const [key] = await store.db.select().from(hostKeys).where(eq(hostKeys.instance, "lambda:i-1"));
      expect(key).toMatchObject({ fingerprint: sshd.hostKey.fingerprint, source: "first_contact", nodeId: "n-1" });
      expect(await bootstrapper.next(node!, async () => instance)).toMatchObject({ kind: "wait", reason: expect.stringContaining("waiting for the agent") });

      // The same instance answers with another key later: refused, from the stored pin.
      const pinned = sshd.hostKey.fingerprint;
      await sshd.restart({ newHostKey: true });
      await bootstrapper.begin(node!, pool, instance, at + pool.health.registration_timeout);
      const second = await outcome();
      expect(second.state).toBe("failed");
      expect(second.error).toContain(`expected ${pinned}, got ${sshd.hostKey.fingerprint}`);
      expect(await bootstrapper.next(node!, async () => instance)).toMatchObject({ kind: "failed", reason: expect.stringContaining("host key of") });

      // A run still "running" that no task of this process owns was cut short by a restart:
      // its commands may have half-run, so it is not repeated.
      await store.db.insert(bootstrapRuns).values({ nodeId: "n-1", address: "127.0.0.1:1", user: "u", state: "running", startedAt: Date.now() });
      const restarted = new Bootstrapper({ store, now: Date.now, log: () => undefined, wake: () => undefined });
      expect(await restarted.next(node!, async () => instance)).toMatchObject({ kind: "failed", reason: expect.stringContaining("bootstrap interrupted") });
      expect((await outcome()).state).toBe("failed");
    } finally {
      store.close();
    }
  }, 30_000);
});
