// HTTPS on the reconciler, on loopback, with real clients: curl and openssl s_client see the
// certificate, refuse it without the CA, and get no HTTP answer in plain text from the TLS port;
// the certificate is reloaded when its files change (and a half-written pair is not); mTLS
// refuses a client without a certificate its CA signed; the agent's client and the CLI trust the
// CA they are given (and a pinned fingerprint, and nothing else); `config check` names the key
// of a file that will not do; /install.sh and {{.ControlPlane}} say https://. The same over a
// network namespace, with the compiled binaries and a real SSH bootstrap, is test/tls-netns.test.ts.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { X509Certificate } from "node:crypto";
import { copyFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ReconcilerClient } from "../agent/reporter.ts";
import { configCheckCommand } from "../reconciler/cli/config-check.ts";
import { startReconciler, type Reconciler } from "../reconciler/app/serve.ts";
import { clientFetch } from "../schema/client-tls.ts";
import type { RegisterRequest } from "../schema/wire.ts";
import { TestCa, ensureTlsTools, fingerprint, type Issued } from "./tls/certs.ts";
import { BUN, REPO_ROOT, tempDir, waitFor } from "./support.ts";

const TOKEN = "tls-test-admin-token-0123456789";
let dir: string;
let ca: TestCa;
let otherCa: TestCa;
let first: Issued;
let second: Issued;
/** The files the reconciler serves from; the tests overwrite them. */
let certFile: string;
let keyFile: string;
let rec: Reconciler;
const logs: string[] = [];
let port = 0;

const registration = (nodeId: string): RegisterRequest => ({
  nodeId,
  hostname: nodeId,
  bootId: "boot-1",
  agentVersion: "test",
  spoolId: crypto.randomUUID(),
  nvml: { available: false, error: "none" },
  gpus: [],
});

/** A client process (never spawnSync: the server under test runs in this process). */
async function run(cmd: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const proc = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe", stdin: "ignore", env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...env } });
  const [code, stdout, stderr] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  return { code, stdout, stderr };
}

/** The certificate a TLS server presents, as openssl s_client sees it: its verdict and SHA-256. */
async function presented(p: number, caFile = ca.cert): Promise<{ verify: string; fingerprint: string }> {
  const out = await run(["sh", "-c", `openssl s_client -connect 127.0.0.1:${p} -CAfile ${caFile} </dev/null 2>/dev/null`]);
  const pemText = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/.exec(out.stdout)?.[0];
  return {
    verify: /Verify return code: (.*)/.exec(out.stdout)?.[1] ?? "",
    fingerprint: pemText === undefined ? "" : new X509Certificate(pemText).fingerprint256,
  };
}

beforeAll(async () => {
  ensureTlsTools();
  dir = tempDir("navarch-tls-");
  ca = new TestCa(dir);
  otherCa = new TestCa(dir, "some-other-ca");
  first = ca.server("reconciler-1", { ips: ["127.0.0.1"], dns: ["localhost"] });
  second = ca.server("reconciler-1", { ips: ["127.0.0.1"], dns: ["localhost"] }, "reconciler-2");
  certFile = join(dir, "served.pem");
  keyFile = join(dir, "served.key");
  copyFileSync(first.cert, certFile);
  copyFileSync(first.key, keyFile);
  process.env.NAVARCH_TLS_TEST_TOKEN = TOKEN;
  const dataDir = join(dir, "data");
  rec = await startReconciler(
    {
      host: "127.0.0.1",
      port: 0,
      dataDir,
      databaseUrl: `file:${dataDir}/navarch.db`,
      authTokenEnv: "NAVARCH_TLS_TEST_TOKEN",
      heartbeatIntervalSeconds: 10,
      tls: { cert_file: certFile, key_file: keyFile },
      tlsPollMs: 100,
    },
    (line) => logs.push(line),
  );
  port = Number(new URL(rec.url).port);
}, 60_000);
afterAll(() => rec?.stop());

describe("HTTPS with curl and openssl s_client", () => {
  test("serves its certificate to a client with the CA; refuses to be trusted without it; no plain HTTP on the port", async () => {
    expect(rec.url).toBe(`https://127.0.0.1:${port}`);
    const ok = await run(["curl", "-sS", "--cacert", ca.cert, `${rec.url}/healthz`]);
    expect(ok).toMatchObject({ code: 0, stdout: "ok" });
    // The system's CAs do not know this one: curl's "SSL certificate problem" (60).
    const untrusted = await run(["curl", "-sS", `${rec.url}/healthz`]);
    expect(untrusted.code).toBe(60);
    expect(untrusted.stderr).toContain("SSL certificate problem");
    const wrongCa = await run(["curl", "-sS", "--cacert", otherCa.cert, `${rec.url}/healthz`]);
    expect(wrongCa.code).toBe(60);
    // Plain HTTP to the TLS port gets no HTTP answer at all.
    const plain = await run(["curl", "-sS", "--max-time", "5", `http://127.0.0.1:${port}/healthz`]);
    expect(plain.code).not.toBe(0);
    expect(plain.stdout).toBe("");
    const seen = await presented(port);
    expect(seen).toEqual({ verify: "0 (ok)", fingerprint: first.fingerprint256 });
    expect((await presented(port, otherCa.cert)).verify).not.toBe("0 (ok)");
    expect(logs.join("\n")).toContain(`tls: serving ${certFile} (sha256 ${first.fingerprint256})`);
  });

  test("the installer and {{.ControlPlane}} say https://", async () => {
    const script = await run(["curl", "-sS", "--cacert", ca.cert, `${rec.url}/install.sh`]);
    expect(script.code).toBe(0);
    expect(script.stdout).toContain(`DEFAULT_SERVER='https://127.0.0.1:${port}'`);
  });
});

describe("the agent's client and the CLI", () => {
  test("the agent trusts the CA it is given, and a pinned fingerprint on top; nothing else", async () => {
    const withCa = new ReconcilerClient(rec.url, TOKEN, 5000, clientFetch({ caFile: ca.cert }));
    expect((await withCa.register(registration("tls-node-1"))).nodeId).toBe("tls-node-1");
    const pinned = new ReconcilerClient(rec.url, TOKEN, 5000, clientFetch({ caFile: ca.cert, pinSha256: first.fingerprint256 }));
    expect((await pinned.register(registration("tls-node-2"))).nodeId).toBe("tls-node-2");
    const wrongPin = new ReconcilerClient(rec.url, TOKEN, 5000, clientFetch({ caFile: ca.cert, pinSha256: second.fingerprint256 }));
    const pinError = await wrongPin.register(registration("tls-node-3")).catch((e: Error) => e);
    expect(String(pinError)).toContain(`the reconciler's certificate has sha256 ${first.fingerprint256}, not the one pinned with $NAVARCH_PIN_SHA256`);
    const system = new ReconcilerClient(rec.url, TOKEN, 5000);
    const systemError = await system.register(registration("tls-node-4")).catch((e: Error) => e);
    expect(String(systemError)).toMatch(/unreachable: .*(certificate|verify)/i);
    const other = new ReconcilerClient(rec.url, TOKEN, 5000, clientFetch({ caFile: otherCa.cert }));
    expect(String(await other.register(registration("tls-node-5")).catch((e: Error) => e))).toMatch(/certificate|verify/i);
  });

  test("the CLI over HTTPS with NAVARCH_CA_FILE; without it, one line saying why", async () => {
    const cli = (env: Record<string, string>) =>
      run([BUN, join(REPO_ROOT, "reconciler/main.ts"), "nodes", "list", "-o", "json"], { NAVARCH_SERVER: rec.url, NAVARCH_AUTH_TOKEN: TOKEN, ...env });
    const ok = await cli({ NAVARCH_CA_FILE: ca.cert });
    expect(ok.stderr).toBe("");
    expect(JSON.parse(ok.stdout).nodes.map((n: { id: string }) => n.id)).toContain("tls-node-1");
    const refused = await cli({});
    expect(refused.code).toBe(1);
    expect(refused.stderr.trim().split("\n")).toHaveLength(1);
    expect(refused.stderr).toMatch(new RegExp(`^navarch: cannot reach the reconciler at ${rec.url}: .*(certificate|verify)`, "i"));
    const badPin = await cli({ NAVARCH_CA_FILE: ca.cert, NAVARCH_PIN_SHA256: "nope" });
    expect(badPin).toMatchObject({
      code: 2,
      stderr: 'navarch: $NAVARCH_PIN_SHA256: expected a SHA-256 fingerprint (64 hex digits, colons allowed), got "nope"\n',
    });
  }, 30_000);
});

describe("reload", () => {
  test("a new certificate and key on disk are served without a restart; a mismatched pair is not", async () => {
    copyFileSync(second.cert, certFile);
    copyFileSync(second.key, keyFile);
    await waitFor("the new certificate", async () => ((await presented(port)).fingerprint === second.fingerprint256 ? true : undefined), 10_000);
    expect(logs.join("\n")).toContain(`tls: reloaded ${certFile}: serving certificate sha256 ${second.fingerprint256}`);
    // Requests keep working across the swap.
    expect((await run(["curl", "-sS", "--cacert", ca.cert, `${rec.url}/healthz`])).stdout).toBe("ok");
    // Half a renewal: the first certificate with the second's key. The second stays.
    copyFileSync(first.cert, certFile);
    await waitFor("the refusal", () => (logs.some((l) => l.startsWith("tls: not reloading: server.tls.key_file:")) ? true : undefined), 10_000);
    expect((await presented(port)).fingerprint).toBe(second.fingerprint256);
    // The renewal completes: its key arrives, and it is served.
    copyFileSync(first.key, keyFile);
    await waitFor("the completed renewal", async () => ((await presented(port)).fingerprint === first.fingerprint256 ? true : undefined), 10_000);
  }, 40_000);
});

describe("reload of a certificate that is not valid now", () => {
  test("expired, or not valid yet: the served certificate is kept, the refusal logged and counted", async () => {
    const served = (await presented(port)).fingerprint;
    const metric = async () => {
      const text = await (
        await fetch(`${rec.url}/metrics`, { headers: { Authorization: `Bearer ${TOKEN}` }, tls: { ca: await Bun.file(ca.cert).text() } })
      ).text();
      return Number(/^navarch_tls_reload_refusals_total (\S+)$/m.exec(text)?.[1] ?? NaN);
    };
    const before = await metric();
    const sans = { ips: ["127.0.0.1"], dns: ["localhost"] };
    for (const [issued, why] of [
      [ca.serverValid("reconciler-1", sans, "20200101000000Z", "20200102000000Z", "expired"), "the certificate expired on 2020-01-02T00:00:00.000Z"],
      [ca.serverValid("reconciler-1", sans, "20990101000000Z", "20990102000000Z", "future"), "the certificate is not valid before 2099-01-01T00:00:00.000Z"],
    ] as const) {
      const seen = logs.length;
      copyFileSync(issued.key, keyFile);
      copyFileSync(issued.cert, certFile);
      await waitFor(`the refusal (${why})`, () => (logs.slice(seen).some((l) => l.includes(why)) ? true : undefined), 10_000);
      expect(logs.slice(seen).find((l) => l.includes(why))).toStartWith("tls: not reloading: server.tls.cert_file: ");
      await Bun.sleep(300); // several polls: it stays refused
      expect((await presented(port)).fingerprint).toBe(served);
      expect((await run(["curl", "-sS", "--cacert", ca.cert, `${rec.url}/healthz`])).stdout).toBe("ok");
    }
    // Every refused reload counts (the mismatched pair of the test before counted too).
    expect((await metric()) - before).toBe(2);
    // A valid pair again: served.
    copyFileSync(first.key, keyFile);
    copyFileSync(first.cert, certFile);
    await waitFor("the valid certificate", async () => ((await presented(port)).fingerprint === first.fingerprint256 ? true : undefined), 10_000);
  }, 40_000);
});

describe("mTLS (server.tls.client_ca_file)", () => {
  test("a client needs a certificate the client CA signed: curl, and the agent's client", async () => {
    const clientCa = new TestCa(dir, "client-ca");
    const agentCert = clientCa.client("gpu-node-7");
    const stranger = otherCa.client("stranger");
    const dataDir = join(dir, "mtls-data");
    const mtls = await startReconciler(
      {
        host: "127.0.0.1",
        port: 0,
        dataDir,
        databaseUrl: `file:${dataDir}/navarch.db`,
        authTokenEnv: "NAVARCH_TLS_TEST_TOKEN",
        heartbeatIntervalSeconds: 10,
        tls: { cert_file: first.cert, key_file: first.key, client_ca_file: clientCa.cert },
      },
      () => undefined,
    );
    try {
      const curl = (...extra: string[]) => run(["curl", "-sS", "--cacert", ca.cert, ...extra, `${mtls.url}/healthz`]);
      expect(await curl("--cert", agentCert.cert, "--key", agentCert.key)).toMatchObject({ code: 0, stdout: "ok" });
      expect((await curl()).code).not.toBe(0);
      expect((await curl("--cert", stranger.cert, "--key", stranger.key)).code).not.toBe(0);
      const agent = new ReconcilerClient(mtls.url, TOKEN, 5000, clientFetch({ caFile: ca.cert, certFile: agentCert.cert, keyFile: agentCert.key }));
      expect((await agent.register(registration("mtls-node"))).nodeId).toBe("mtls-node");
      const without = new ReconcilerClient(mtls.url, TOKEN, 5000, clientFetch({ caFile: ca.cert }));
      expect((await without.register(registration("mtls-node-2")).catch((e: Error) => e)) instanceof Error).toBe(true);
    } finally {
      await mtls.stop();
    }
  });
});

describe("config check reads the files as serve does", () => {
  const check = async (tls: string) => {
    const file = join(dir, `tls-${crypto.randomUUID()}.yaml`);
    writeFileSync(file, `server:\n  address: 10.0.0.1:8443\n${tls}pools: []\n`);
    let stderr = "";
    const code = await configCheckCommand([file], { stdout: () => undefined, stderr: (s) => void (stderr += s) }, { env: () => "set" });
    return { code, stderr: stderr.replaceAll(`${file}: `, "") };
  };

  test("a missing file, a key of another certificate, a CA file that is not PEM: each names its key", async () => {
    expect(await check(`  tls:\n    cert_file: ${join(dir, "missing.pem")}\n    key_file: ${first.key}\n`)).toMatchObject({
      code: 2,
      stderr: expect.stringContaining(`server.tls.cert_file: ${join(dir, "missing.pem")} does not exist`),
    });
    expect((await check(`  tls:\n    cert_file: ${first.cert}\n    key_file: ${second.key}\n`)).stderr).toContain(
      `server.tls.key_file: ${second.key} is not the key of the certificate in ${first.cert}`,
    );
    const notPem = join(dir, "not-pem.txt");
    writeFileSync(notPem, "hello\n");
    expect((await check(`  tls:\n    cert_file: ${first.cert}\n    key_file: ${first.key}\n    client_ca_file: ${notPem}\n`)).stderr).toContain(
      `server.tls.client_ca_file: ${notPem} is not a PEM file`,
    );
    expect(await check(`  tls:\n    cert_file: ${first.cert}\n    key_file: ${first.key}\n`)).toMatchObject({ code: 0 });
  });

  test("plain HTTP off loopback: a loud warning (allow_plain_http silences nothing); server.require_tls refuses it, naming the key", async () => {
    const warned = await check("");
    expect(warned.code).toBe(0);
    expect(warned.stderr).toContain(
      "warning: PLAIN HTTP OFF LOOPBACK: server.address 10.0.0.1:8443 serves plain HTTP (no server.tls): the admin token, API tokens, enroll tokens and node credentials cross the network in the clear",
    );
    expect(warned.stderr).toContain("Fix: set server.tls (cert_file, key_file), or keep this port on a private network only");
    const allowed = await check("  allow_plain_http: true\n");
    expect(allowed.code).toBe(0);
    expect(allowed.stderr).toContain("PLAIN HTTP OFF LOOPBACK");
    expect(allowed.stderr).toContain("server.allow_plain_http: deprecated and silences nothing");
    const refused = await check("  require_tls: true\n");
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain(
      "server.address: 10.0.0.1:8443 is not a loopback address and server.tls is not set, so it would serve plain HTTP (tokens in the clear); server.require_tls is true: set server.tls (cert_file, key_file), or listen on 127.0.0.1",
    );
    expect((await check(`  require_tls: true\n  tls:\n    cert_file: ${first.cert}\n    key_file: ${first.key}\n`)).code).toBe(0);
    expect((await check("  require_tls: true\n  allow_plain_http: true\n")).stderr).toContain("server.allow_plain_http: contradicts server.require_tls: true");
    expect(fingerprint(first.cert)).toBe(first.fingerprint256);
  });
});
