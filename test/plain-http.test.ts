// Plain HTTP off loopback (reconciler/config/exposure.ts): served as the seed runs it, with one
// loud warning at start, navarch_server_plain_http, a dashboard banner and a config check
// warning; server.require_tls refuses it. Loopback is decided by address: `localhost` mapped to
// another address in /etc/hosts is that address (a private /etc/hosts in a mount namespace,
// through the compiled binary).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { networkInterfaces } from "node:os";
import { join } from "node:path";
import { exposedListeners, plainHttpListeners } from "../reconciler/config/exposure.ts";
import { ListenError, startReconciler, type ServeSettings } from "../reconciler/app/serve.ts";
import { CompiledFleet } from "./compiled.ts";
import { freePort, tempDir, waitFor } from "./support.ts";

const TOKEN_ENV = "NAVARCH_PLAIN_HTTP_TEST_TOKEN";
process.env[TOKEN_ENV] = "plain-http-test-token";

const hosts = (map: Record<string, string[]>) => async (host: string) => map[host] ?? Promise.reject(new Error(`ENOTFOUND ${host}`));

describe("which listeners are plain HTTP off loopback", () => {
  const at = (host: string) => [{ key: "server.address" as const, host, port: 50051 }];

  test("addresses: 127.0.0.0/8 and ::1 are loopback; every interface and any other address are not", async () => {
    for (const host of ["127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1"]) expect(await exposedListeners(at(host), hosts({}))).toEqual([]);
    expect(await exposedListeners(at("0.0.0.0"), hosts({}))).toEqual([{ key: "server.address", address: "0.0.0.0:50051", resolved: [] }]);
    expect(await exposedListeners(at("::"), hosts({}))).toEqual([{ key: "server.address", address: "[::]:50051", resolved: [] }]);
    expect((await exposedListeners(at("10.0.0.1"), hosts({}))).length).toBe(1);
  });

  test("names are resolved: `localhost` is loopback only when everything it resolves to is", async () => {
    expect(await exposedListeners(at("localhost"), hosts({ localhost: ["127.0.0.1", "::1"] }))).toEqual([]);
    expect(await exposedListeners(at("localhost"), hosts({ localhost: ["10.1.2.3"] }))).toEqual([
      { key: "server.address", address: "localhost:50051", resolved: ["10.1.2.3"] },
    ]);
    expect(await exposedListeners(at("localhost"), hosts({ localhost: ["127.0.0.1", "10.1.2.3"] }))).toHaveLength(1);
    // A name that does not resolve is not known to be loopback.
    expect(await exposedListeners(at("nowhere.invalid"), hosts({}))).toEqual([{ key: "server.address", address: "nowhere.invalid:50051", resolved: [] }]);
  });

  test("with server.tls nothing is plain; the metrics listener counts too", async () => {
    expect(await plainHttpListeners({ address: "0.0.0.0:1", tls: { cert_file: "c", key_file: "k" } }, hosts({}))).toEqual([]);
    expect(await plainHttpListeners({ address: "127.0.0.1:1", metrics_address: "0.0.0.0:2" }, hosts({}))).toEqual([
      { key: "server.metrics_address", address: "0.0.0.0:2", resolved: [] },
    ]);
  });
});

describe("a reconciler serving plain HTTP off loopback", () => {
  const settings = (host: string, extra: Partial<ServeSettings> = {}): ServeSettings => {
    const dataDir = join(tempDir("navarch-plain-"), "data");
    return { host, port: 0, dataDir, databaseUrl: `file:${dataDir}/navarch.db`, authTokenEnv: TOKEN_ENV, heartbeatIntervalSeconds: 10, ...extra };
  };

  test("serves, says so once at start, on /metrics and on the dashboard", async () => {
    const lines: string[] = [];
    const rec = await startReconciler(settings("0.0.0.0", { metricsAuth: "none" }), (l) => lines.push(l));
    try {
      const warnings = lines.filter((l) => l.includes("PLAIN HTTP OFF LOOPBACK"));
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toStartWith("warning: PLAIN HTTP OFF LOOPBACK: server.address 0.0.0.0:");
      expect(warnings[0]).toContain("(every interface) serves plain HTTP (no server.tls)");
      expect(warnings[0]).toContain("Fix: set server.tls (cert_file, key_file), or keep this port on a private network only");
      const url = rec.url.replace("0.0.0.0", "127.0.0.1");
      expect(await (await fetch(`${url}/metrics`)).text()).toContain("\nnavarch_server_plain_http 1\n");
      const page = await (await fetch(`${url}/ui/`)).text();
      expect(page).toMatch(
        /<p id="plain-http" class="banner" role="alert">This reconciler serves plain HTTP on 0\.0\.0\.0:\d+: tokens, yours included, cross the network unencrypted\./,
      );
    } finally {
      await rec.stop();
    }
  });

  test("on loopback: no warning, the gauge at 0, the banner hidden", async () => {
    const lines: string[] = [];
    const rec = await startReconciler(settings("127.0.0.1", { metricsAuth: "none" }), (l) => lines.push(l));
    try {
      expect(lines.join("\n")).not.toContain("PLAIN HTTP");
      expect(await (await fetch(`${rec.url}/metrics`)).text()).toContain("\nnavarch_server_plain_http 0\n");
      expect(await (await fetch(`${rec.url}/ui/`)).text()).toContain('<p id="plain-http" class="banner" role="alert" hidden></p>');
    } finally {
      await rec.stop();
    }
  });

  test("server.require_tls refuses to start, naming the key, and binds nothing", async () => {
    const port = freePort();
    const err = await startReconciler(settings("0.0.0.0", { port, requireTls: true }), () => undefined).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ListenError);
    expect((err as Error).message).toStartWith(`server.address: 0.0.0.0:${port} (every interface) is not a loopback address and server.tls is not set`);
    const free = Bun.listen({ hostname: "0.0.0.0", port, socket: { data() {} } });
    free.stop(true);
  });
});

describe("`localhost` mapped elsewhere in /etc/hosts, through the compiled binary", () => {
  let fleet: CompiledFleet;
  beforeAll(async () => {
    fleet = await CompiledFleet.create();
  }, 240_000);
  afterAll(() => fleet?.stop());

  /** An address of this machine that is not loopback (the test's /etc/hosts maps localhost to it). */
  const hostAddress = (): string => {
    const found = Object.values(networkInterfaces())
      .flat()
      .find((a) => a !== undefined && a.family === "IPv4" && !a.internal);
    if (found === undefined) throw new Error("this machine has no IPv4 address other than loopback: the test needs one to map localhost to");
    return found.address;
  };

  /** `navarch ARGS` in a mount namespace whose /etc/hosts says `localhost` is `address` (root: unshare -m). */
  const withHosts = (address: string, args: string[]) => {
    const file = join(fleet.dir, "hosts");
    writeFileSync(file, `${address} localhost\n`);
    const script = `mount --bind ${file} /etc/hosts && exec "$@"`;
    return ["unshare", "-m", "sh", "-c", script, "sh", fleet.navarch, ...args];
  };

  test("is resolved and judged by its address: a warning naming it, and require_tls refuses it", async () => {
    if (process.getuid?.() !== 0) throw new Error("this test needs root (unshare -m, mount --bind) to give the binary its own /etc/hosts");
    const address = hostAddress();
    const port = freePort();
    writeFileSync(join(fleet.dir, "localhost.yaml"), `server:\n  address: localhost:${port}\n  data_dir: ${fleet.dir}/localhost-data\n`);
    const check = await fleet.run(withHosts(address, ["config", "check", "localhost.yaml"]), { NAVARCH_AUTH_TOKEN: fleet.token });
    expect(check.code, check.stderr).toBe(0);
    expect(check.stderr).toContain(
      `warning: localhost.yaml: PLAIN HTTP OFF LOOPBACK: server.address localhost:${port} (localhost resolves to ${address}) serves plain HTTP`,
    );
    const serve = fleet.start("localhost-serve", withHosts(address, ["serve", "--config", "localhost.yaml"]), { NAVARCH_AUTH_TOKEN: fleet.token });
    // It listens where localhost now points, not on 127.0.0.1.
    await waitFor("/healthz on the address localhost maps to", async () =>
      (await fetch(`http://${address}:${port}/healthz`).catch(() => undefined))?.ok ? true : undefined,
    );
    expect(await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => "refused")).toBe("refused");
    expect(fleet.output.get("localhost-serve")).toContain(`(localhost resolves to ${address}) serves plain HTTP`);
    serve.kill("SIGTERM");
    expect(await serve.exited).toBe(0);

    writeFileSync(join(fleet.dir, "strict.yaml"), `server:\n  address: localhost:${port}\n  require_tls: true\n  data_dir: ${fleet.dir}/strict-data\n`);
    const strict = await fleet.run(withHosts(address, ["serve", "--config", "strict.yaml"]), { NAVARCH_AUTH_TOKEN: fleet.token });
    expect(strict.code).toBe(2);
    expect(strict.stderr).toContain(`strict.yaml: server.address: localhost:${port} (localhost resolves to ${address}) is not a loopback address`);
    // Without the mapping, localhost is loopback: no warning.
    const plain = await fleet.run([fleet.navarch, "config", "check", "localhost.yaml"], { NAVARCH_AUTH_TOKEN: fleet.token });
    expect(plain.stderr).not.toContain("PLAIN HTTP");
  }, 60_000);
});
