// Signed releases end to end, with the real minisign (Debian's package) and the real OpenSSL:
// - `npm run release` builds both binaries and signs SHA256SUMS with a key `minisign -G -W`
//   made; `minisign -Vm SHA256SUMS -p key.pub` verifies it, `sha256sum -c` checks every file,
//   the SBOM and the provenance name what was built (and pass CycloneDX's and in-toto's own
//   validators, test/release/validate.py); a missing, encrypted, damaged or
//   in-repository key is refused before anything is written;
// - signatures made by minisign verify with schema/minisign.ts and the other way round;
// - the compiled `navarch` refuses (config check and serve) a release whose binary, SHA256SUMS,
//   signature or trusted comment was changed, or that another key signed, and stops serving a
//   binary changed on disk after it started;
// - install.sh, run for real under a staging root against the compiled reconciler serving the
//   release, installs it after checking the signature with OpenSSL 3 alone and with minisign,
//   and refuses every change a proxy between them makes (binary, SHA256SUMS, signature, trusted
//   comment) and a pinned key that did not sign it; so does the SSH bootstrap through real sshd.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { appendFileSync, copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, symlinkSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { runBootstrap } from "../bootstrap/ssh.ts";
import { parsePublicKey, parseSecretKey, parseSignature, signMessage, verifySignature } from "../schema/minisign.ts";
import { parseSums, sha256File } from "../schema/release.ts";
import { NAVARCH_VERSION } from "../schema/version.ts";
import { readLockfile } from "../scripts/release/sbom.ts";
import { CompiledFleet } from "./compiled.ts";
import { Sshd, ensureSshd, newKeyPair } from "./ssh/sshd.ts";
import { REPO_ROOT, freePort, tempDir, waitFor } from "./support.ts";

let dir: string;
/** The release `npm run release` made, never changed. */
let release: string;
/** A copy the reconciler serves and the tests tamper with (and restore). */
let served: string;
const key = { secret: "", pub: "", base64: "" };
const other = { secret: "", pub: "", base64: "" };
/** A key encrypted with the password "pw", as `minisign -G` without -W writes it. */
const encrypted = () => join(dir, "encrypted.key");

function sh(cmd: string[], env: Record<string, string> = {}, cwd?: string) {
  const r = Bun.spawnSync(cmd, { env: { PATH: "/usr/bin:/bin:/usr/sbin:/sbin", ...env }, stdout: "pipe", stderr: "pipe", ...(cwd ? { cwd } : {}) });
  return { code: r.exitCode, out: r.stdout.toString(), err: r.stderr.toString() };
}

function ensureMinisign(): void {
  if (Bun.which("minisign") !== null) return;
  const r = sh(["sh", join(REPO_ROOT, "scripts/apt-install.sh"), "test/release.test.ts", "minisign"]);
  if (r.code !== 0) throw new Error(`minisign is needed (Debian's package): ${r.err}`);
}

/** A key pair made by the real `minisign -G -W`. */
function minisignKey(into: typeof key, name: string): void {
  into.secret = join(dir, `${name}.key`);
  into.pub = join(dir, `${name}.pub`);
  const r = sh(["minisign", "-G", "-W", "-p", into.pub, "-s", into.secret]);
  if (r.code !== 0) throw new Error(`minisign -G -W: ${r.out}${r.err}`);
  into.base64 = readFileSync(into.pub, "utf8").split("\n")[1]!.trim();
}

async function npmRelease(out: string, env: Record<string, string | undefined>) {
  const base: Record<string, string | undefined> = { ...process.env };
  delete base.NAVARCH_RELEASE_KEY;
  const proc = Bun.spawn(["npm", "run", "--silent", "release", "--", "--out", out], {
    cwd: REPO_ROOT,
    env: { ...base, ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [code, stdout, stderr] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  return { code, out: stdout + stderr };
}

beforeAll(async () => {
  ensureMinisign();
  dir = tempDir("navarch-release-");
  minisignKey(key, "release");
  minisignKey(other, "other");
  const withPassword = Bun.spawnSync(["minisign", "-G", "-p", join(dir, "encrypted.pub"), "-s", encrypted()], {
    stdin: new Blob(["pw\npw\n"]),
    stdout: "pipe",
    stderr: "pipe",
  });
  if (withPassword.exitCode !== 0) throw new Error(`minisign -G: ${withPassword.stdout}${withPassword.stderr}`);
  release = join(dir, "release");
  const made = await npmRelease(release, { NAVARCH_RELEASE_KEY: key.secret });
  if (made.code !== 0) throw new Error(`npm run release failed:\n${made.out}`);
  served = join(dir, "served");
  mkdirSync(served);
  for (const f of readdirSync(release)) copyFileSync(join(release, f), join(served, f));
}, 180_000);

describe("npm run release", () => {
  test("SHA256SUMS verifies with the real minisign, and lists every file with its SHA-256", () => {
    const v = sh(["minisign", "-Vm", "SHA256SUMS", "-p", key.pub], {}, release);
    expect(v.code).toBe(0);
    expect(v.out).toContain("Signature and comment signature verified");
    const head = sh(["git", "rev-parse", "HEAD"], {}, REPO_ROOT).out.trim();
    expect(v.out).toContain(`navarch:${NAVARCH_VERSION}\tcommit:${head}`);
    // Prehashed (ED), which `minisign -V -H` insists on.
    expect(sh(["minisign", "-V", "-H", "-m", "SHA256SUMS", "-p", key.pub], {}, release).code).toBe(0);
    const check = sh(["sha256sum", "--strict", "-c", "SHA256SUMS"], {}, release);
    expect(check.code).toBe(0);
    const listed = [...parseSums(readFileSync(join(release, "SHA256SUMS"), "utf8")).keys()].sort();
    expect(listed).toEqual(
      readdirSync(release)
        .filter((f) => !f.startsWith("SHA256SUMS"))
        .sort(),
    );
    expect(listed).toEqual(expect.arrayContaining(["navarch", "navarch-node", "sbom.cdx.json", "provenance.intoto.json"]));
    // The binaries run, and are this version.
    expect(sh([join(release, "navarch-node"), "--version"]).out.trim()).toBe(NAVARCH_VERSION);
  });

  test("the SBOM names the bundled packages at bun.lock's versions and integrity, and the Bun runtime; the provenance the commit and the command", async () => {
    const sbom = JSON.parse(readFileSync(join(release, "sbom.cdx.json"), "utf8"));
    expect(sbom).toMatchObject({ bomFormat: "CycloneDX", specVersion: "1.6", version: 1 });
    expect(sbom.serialNumber).toMatch(/^urn:uuid:[0-9a-f-]{36}$/);
    type Component = { "bom-ref": string; type: string; name: string; group?: string; version: string; hashes?: { alg: string; content: string }[] };
    const components = sbom.components as Component[];
    const byRef = new Map(components.map((c) => [c["bom-ref"], c]));
    expect(byRef.get(`pkg:generic/bun@${Bun.version}`)).toMatchObject({ type: "platform", name: "bun", version: Bun.version });
    for (const binary of ["navarch", "navarch-node"]) {
      expect(byRef.get(`binary:${binary}`)!.hashes).toEqual([{ alg: "SHA-256", content: await sha256File(join(release, binary)) }]);
    }
    const lock = readLockfile(readFileSync(join(REPO_ROOT, "bun.lock"), "utf8"));
    const locked = new Map([...lock.values()].map((p) => [`${p.name}@${p.version}`, p]));
    const libraries = components.filter((c) => c.type === "library");
    for (const c of libraries) {
      const p = locked.get(`${c.group ? `${c.group}/` : ""}${c.name}@${c.version}`);
      expect(p).toBeDefined();
      expect(c.hashes).toEqual([{ alg: "SHA-512", content: Buffer.from(p!.integrity.slice(7), "base64").toString("hex") }]);
    }
    const deps = new Map((sbom.dependencies as { ref: string; dependsOn: string[] }[]).map((d) => [d.ref, d.dependsOn]));
    // The agent bundles valibot and yaml (its own configuration file) and nothing else from npm; the reconciler the native libsql module it embeds, and no other platform's.
    expect(deps.get("binary:navarch-node")).toEqual([
      `pkg:generic/bun@${Bun.version}`,
      expect.stringMatching(/^pkg:npm\/valibot@/),
      expect.stringMatching(/^pkg:npm\/yaml@/),
    ]);
    const navarch = deps.get("binary:navarch")!;
    expect(navarch).toEqual(expect.arrayContaining([expect.stringMatching(/^pkg:npm\/%40libsql\/linux-x64-gnu@/), expect.stringMatching(/^pkg:npm\/hono@/)]));
    expect(navarch.filter((r) => /darwin|win32|musl|arm/.test(r))).toEqual([]);
    // No dev tool is claimed.
    expect(libraries.map((c) => c.name)).not.toContain("typescript");
    expect(libraries.map((c) => c.name)).not.toContain("biome");

    const statement = JSON.parse(readFileSync(join(release, "provenance.intoto.json"), "utf8"));
    expect(statement).toMatchObject({ _type: "https://in-toto.io/Statement/v1", predicateType: "https://slsa.dev/provenance/v1" });
    const sums = parseSums(readFileSync(join(release, "SHA256SUMS"), "utf8"));
    for (const s of statement.subject as { name: string; digest: { sha256: string } }[]) expect(s.digest.sha256).toBe(sums.get(s.name)!);
    expect((statement.subject as { name: string }[]).map((s) => s.name)).toEqual(expect.arrayContaining(["navarch", "navarch-node", "sbom.cdx.json"]));
    const head = sh(["git", "rev-parse", "HEAD"], {}, REPO_ROOT).out.trim();
    expect(statement.predicate.buildDefinition.externalParameters).toMatchObject({
      command: "npm run release",
      argv: ["--out", release],
      source: { commit: head },
    });
    expect(statement.predicate.buildDefinition.resolvedDependencies).toEqual(
      expect.arrayContaining([
        { uri: expect.stringMatching(/^git/), digest: { gitCommit: head } },
        { name: "bun.lock", digest: { sha256: await sha256File(join(REPO_ROOT, "bun.lock")) } },
        { uri: `pkg:generic/bun@${Bun.version}`, digest: { gitCommit: Bun.revision } },
      ]),
    );
  });

  test("the SBOM is CycloneDX 1.6 and the provenance an in-toto Statement with SLSA Provenance v1, by their reference libraries", () => {
    const ensured = sh(["sh", join(REPO_ROOT, "test/release/ensure-validators.sh")], { HOME: process.env.HOME ?? dir });
    if (ensured.code !== 0) throw new Error(`test/release/ensure-validators.sh: ${ensured.err}`);
    const python = ensured.out.trim().split("\n").at(-1)!;
    const validate = (sbom: string, statement: string) => sh([python, join(REPO_ROOT, "test/release/validate.py"), sbom, statement]);
    const [sbom, statement] = [join(release, "sbom.cdx.json"), join(release, "provenance.intoto.json")];
    expect(validate(sbom, statement)).toMatchObject({ code: 0, out: "ok\n" });
    // The checkers do refuse: a component type CycloneDX does not have, a field SLSA does not have.
    const badSbom = join(dir, "bad.cdx.json");
    writeFileSync(badSbom, readFileSync(sbom, "utf8").replace('"type": "platform"', '"type": "runtime"'));
    expect(validate(badSbom, statement)).toMatchObject({ code: 1, out: expect.stringContaining("not CycloneDX 1.6") });
    const badStatement = join(dir, "bad.intoto.json");
    writeFileSync(badStatement, readFileSync(statement, "utf8").replace('"buildType"', '"buildKind"'));
    expect(validate(sbom, badStatement)).toMatchObject({ code: 1, out: expect.stringContaining("not an in-toto Statement with SLSA Provenance v1") });
  }, 180_000);

  test("a missing, unreadable, encrypted, damaged or in-repository key is refused before anything is built or replaced", async () => {
    const out = join(dir, "refused");
    mkdirSync(out);
    writeFileSync(join(out, "earlier-release"), "kept");
    const lines = readFileSync(key.secret, "utf8").split("\n");
    const raw = Buffer.from(lines[1]!, "base64");
    const withBytes = (at: number, bytes: string) => {
      const b = Buffer.from(raw);
      b.write(bytes, at, "latin1");
      return `${lines[0]}\n${b.toString("base64")}\n`;
    };
    const file = (name: string, text: string) => {
      const path = join(dir, name);
      writeFileSync(path, text);
      return path;
    };
    const inRepo = join(REPO_ROOT, "dist", `.release-test-key-${process.pid}`);
    mkdirSync(join(REPO_ROOT, "dist"), { recursive: true });
    copyFileSync(key.secret, inRepo);
    const flippedSecret = Buffer.from(raw);
    flippedSecret[70] = flippedSecret[70]! ^ 1; // inside the secret key: its checksum no longer matches
    const cases: [string | undefined, string][] = [
      [undefined, "NAVARCH_RELEASE_KEY is not set"],
      [join(dir, "no-such.key"), "no-such.key: cannot read it (ENOENT)"],
      [encrypted(), "encrypted with a password (KDF scrypt)"],
      [key.pub, "this is a minisign public key (minisign.pub), not the secret key that signs"],
      [file("one-line.key", `${lines[1]}\n`), "not a minisign secret key file"],
      [file("short.key", `${lines[0]}\n${raw.subarray(0, 100).toString("base64")}\n`), "minisign secret key: 100 bytes, expected 158"],
      [file("not-base64.key", `${lines[0]}\n${"*".repeat(212)}\n`), "minisign secret key: not base64"],
      [file("other-alg.key", withBytes(0, "Xy")), 'algorithm "Xy", expected "Ed"'],
      [file("other-kdf.key", withBytes(2, "Ar")), 'unknown key derivation "Ar"'],
      [file("other-chk.key", withBytes(4, "S2")), 'unknown checksum algorithm "S2"'],
      [file("mismatched.key", withBytes(100, "\u00ff\u00ff")), "its public half does not belong to its secret half"],
      [
        file("damaged.key", `${lines[0]}\n${Buffer.concat([flippedSecret.subarray(0, 126), Buffer.alloc(32, 1)]).toString("base64")}\n`),
        "its checksum does not match",
      ],
      [inRepo, "the signing key is inside the repository (dist/.release-test-key-"],
    ];
    try {
      for (const [path, message] of cases) {
        const r = await npmRelease(out, path === undefined ? {} : { NAVARCH_RELEASE_KEY: path });
        expect({ path, code: r.code, said: r.out.includes(message) ? message : r.out }).toEqual({ path, code: 1, said: message });
        expect(r.out).not.toContain("built ");
      }
    } finally {
      rmSync(inRepo, { force: true });
    }
    expect(readdirSync(out)).toEqual(["earlier-release"]);
    // A good key, but a directory that is not a release: never replaced (`--out .` must not take the checkout with it).
    for (const target of [out, REPO_ROOT]) {
      const r = await npmRelease(target, { NAVARCH_RELEASE_KEY: key.secret });
      expect({ code: r.code, out: r.out }).toEqual({
        code: 1,
        out: expect.stringContaining(`--out ${target.replace(/\/$/, "")}: exists and is not a release`),
      });
    }
    expect(readdirSync(out)).toEqual(["earlier-release"]);
    expect(readdirSync(dir).filter((f) => f.includes(".tmp-"))).toEqual([]);
  }, 120_000);
});

describe("minisign and schema/minisign.ts read each other's signatures", () => {
  test("minisign signs, we verify; we sign, minisign verifies; a changed byte fails both ways", () => {
    const msg = join(dir, "message.txt");
    writeFileSync(msg, "a message\twith a tab\n");
    expect(sh(["minisign", "-Sm", msg, "-s", key.secret, "-t", "trusted: ünïcode too"]).code).toBe(0);
    const theirs = readFileSync(`${msg}.minisig`, "utf8");
    const pub = parsePublicKey(readFileSync(key.pub, "utf8"));
    expect(verifySignature(readFileSync(msg), parseSignature(theirs), pub)).toBe("trusted: ünïcode too");
    expect(() => verifySignature(Buffer.from("a message\twith a tab!\n"), parseSignature(theirs), pub)).toThrow("the signature does not match the signed file");
    expect(() => verifySignature(readFileSync(msg), parseSignature(theirs), parsePublicKey(other.base64))).toThrow("signed with key id");
    // Legacy (-l) signatures are refused.
    expect(sh(["minisign", "-Sl", "-m", msg, "-s", key.secret, "-x", `${msg}.legacy`]).code).toBe(0);
    expect(() => parseSignature(readFileSync(`${msg}.legacy`, "utf8"))).toThrow("legacy algorithm Ed");

    const ours = signMessage(readFileSync(msg), parseSecretKey(readFileSync(key.secret, "utf8")), "timestamp:1\tfile:message.txt");
    writeFileSync(`${msg}.minisig`, ours);
    expect(sh(["minisign", "-V", "-H", "-m", msg, "-p", key.pub]).code).toBe(0);
    const changedComment = ours.replace("timestamp:1", "timestamp:2");
    writeFileSync(`${msg}.minisig`, changedComment);
    expect(sh(["minisign", "-Vm", msg, "-p", key.pub]).err).toContain("Comment signature verification failed");
    expect(() => verifySignature(readFileSync(msg), parseSignature(changedComment), pub)).toThrow("the trusted comment's signature does not match");
    writeFileSync(`${msg}.minisig`, ours);
    appendFileSync(msg, "x");
    expect(sh(["minisign", "-Vm", msg, "-p", key.pub]).err).toContain("Signature verification failed");
  });

  test("a key whose password `minisign -C -W` removed (its checksum set) signs what minisign verifies", () => {
    const decrypted = join(dir, "decrypted.key");
    copyFileSync(encrypted(), decrypted);
    const r = Bun.spawnSync(["minisign", "-C", "-W", "-s", decrypted], { stdin: new Blob(["pw\n"]), stdout: "pipe", stderr: "pipe" });
    expect(r.exitCode).toBe(0);
    const raw = Buffer.from(readFileSync(decrypted, "utf8").split("\n")[1]!, "base64");
    expect(raw.subarray(126).some((b) => b !== 0)).toBe(true); // a real checksum, which parseSecretKey checked
    const msg = join(dir, "message-2.txt");
    writeFileSync(msg, "another message");
    writeFileSync(`${msg}.minisig`, signMessage(readFileSync(msg), parseSecretKey(readFileSync(decrypted, "utf8")), "t"));
    expect(sh(["minisign", "-V", "-H", "-m", msg, "-p", join(dir, "encrypted.pub")]).code).toBe(0);
  });
});

/** Changes one file of the served release for the length of `body`, then puts it back. */
async function tampered<T>(name: string, change: (bytes: Buffer) => Buffer, body: () => Promise<T>): Promise<T> {
  const path = join(served, name);
  const original = readFileSync(path);
  if (name === "navarch-node") appendFileSync(path, "\0");
  else writeFileSync(path, change(original));
  try {
    return await body();
  } finally {
    if (name === "navarch-node") truncateSync(path, original.length);
    else writeFileSync(path, original);
  }
}

const flipSignatureLine = (line: number) => (b: Buffer) => {
  const lines = b.toString("utf8").split("\n");
  const text = lines[line - 1]!;
  lines[line - 1] = text.slice(0, 20) + (text[20] === "A" ? "B" : "A") + text.slice(21);
  return Buffer.from(lines.join("\n"));
};
const changeComment = (b: Buffer) => Buffer.from(b.toString("utf8").replace("trusted comment: timestamp:", "trusted comment: timestamp:1"));

describe("the compiled reconciler's check of server.agent_release", () => {
  let fleet: CompiledFleet;
  beforeAll(async () => {
    fleet = await CompiledFleet.create();
  }, 120_000);
  afterAll(() => fleet?.stop());

  const check = async (extra: string) => {
    const config = fleet.writeConfig(extra);
    const r = await fleet.run([fleet.navarch, "config", "check", config]);
    return { code: r.code, out: r.stdout + r.stderr };
  };
  const releaseConfig = (pub = key.base64, at = served) => `  agent_release: ${at}\n  agent_release_public_key: ${pub}\n`;

  test("accepts the signed release, and refuses a changed binary, SHA256SUMS, signature or trusted comment, another key, and a key missing", async () => {
    expect(await check(releaseConfig())).toMatchObject({ code: 0 });
    const sumsOf = async () => readFileSync(join(served, "SHA256SUMS"), "utf8");
    const cases: [string, () => Promise<{ code: number; out: string }>, string][] = [
      [
        "binary",
        () =>
          tampered(
            "navarch-node",
            (b) => b,
            () => check(releaseConfig()),
          ),
        `${join(served, "navarch-node")}: sha256 `,
      ],
      [
        "SHA256SUMS, made to match a changed binary",
        async () => {
          const bad = (await sumsOf()).replace(/^[0-9a-f]{64}(?=  navarch-node$)/m, "0".repeat(64));
          return tampered(
            "SHA256SUMS",
            () => Buffer.from(bad),
            () => check(releaseConfig()),
          );
        },
        "SHA256SUMS.minisig: the signature does not match the signed file",
      ],
      ["signature", () => tampered("SHA256SUMS.minisig", flipSignatureLine(2), () => check(releaseConfig())), "SHA256SUMS.minisig: "],
      ["trusted comment", () => tampered("SHA256SUMS.minisig", changeComment, () => check(releaseConfig())), "the trusted comment's signature does not match"],
      ["another key", () => check(releaseConfig(other.base64)), "SHA256SUMS.minisig: signed with key id"],
      ["no such directory", () => check(releaseConfig(key.base64, join(dir, "nowhere"))), `${join(dir, "nowhere", "SHA256SUMS")}: cannot read it (ENOENT)`],
      ["no public key", () => check(`  agent_release: ${served}\n`), "server.agent_release_public_key: is required with server.agent_release"],
      ["a public key that is not one", () => check(releaseConfig("RWQnot-a-key")), "server.agent_release_public_key: expected a minisign public key"],
      [
        "a public key without a release",
        () => check(`  agent_release_public_key: ${key.base64}\n`),
        "server.agent_release: is required with server.agent_release_public_key",
      ],
    ];
    for (const [what, run, message] of cases) {
      const r = await run();
      expect({ what, code: r.code, said: r.out.includes(message) ? message : r.out }).toEqual({ what, code: 2, said: message });
    }
    // And the release still verifies once put back.
    expect(await check(releaseConfig())).toMatchObject({ code: 0 });
  }, 60_000);

  test("serve does not start on a changed release, and stops serving a binary changed after it started", async () => {
    const config = fleet.writeConfig(releaseConfig());
    const refused = await tampered(
      "navarch-node",
      (b) => b,
      () => fleet.run([fleet.navarch, "serve", "--config", config], { NAVARCH_AUTH_TOKEN: fleet.token }),
    );
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain("server.agent_release: ");
    expect(refused.stderr).toContain("nothing was started");

    const proc = fleet.startServer();
    try {
      await fleet.waitReady();
      const sums = await fetch(`${fleet.url}/download/SHA256SUMS`);
      expect(Buffer.from(await sums.arrayBuffer()).equals(readFileSync(join(release, "SHA256SUMS")))).toBe(true);
      expect(await (await fetch(`${fleet.url}/download/SHA256SUMS.minisig`)).text()).toBe(readFileSync(join(release, "SHA256SUMS.minisig"), "utf8"));
      const script = await (await fetch(`${fleet.url}/install.sh`)).text();
      expect(script).toContain(`RELEASE_PUBLIC_KEY='${key.base64}'`);
      expect(script).toContain(`AGENT_SHA256='${parseSums(readFileSync(join(release, "SHA256SUMS"), "utf8")).get("navarch-node")}'`);
      await tampered(
        "navarch-node",
        (b) => b,
        async () => {
          const r = await fetch(`${fleet.url}/download/navarch-node`);
          expect(r.status).toBe(404);
          expect(((await r.json()) as { error: string }).error).toContain("changed after it was verified");
        },
      );
      const back = await fetch(`${fleet.url}/download/navarch-node`);
      expect(back.status).toBe(200);
      expect(Number(back.headers.get("content-length"))).toBe(readFileSync(join(release, "navarch-node")).length);
      await back.body?.cancel();
    } finally {
      proc.kill("SIGTERM");
      await proc.exited;
    }
  }, 60_000);
});

describe("install.sh checks the release it installs", () => {
  let fleet: CompiledFleet;
  let script: string;
  /** A proxy between the installer and the reconciler that changes one download. */
  let proxy: ReturnType<typeof Bun.serve>;
  let change: { path: string; edit: (b: Buffer) => Buffer; gone?: true } | undefined;
  /** PATH directories holding only what the installer may use: with OpenSSL and without minisign, and the other way round. */
  const tools: Record<string, string> = {};
  let sshd: Sshd;
  let client: ReturnType<typeof newKeyPair>;

  beforeAll(async () => {
    fleet = await CompiledFleet.create();
    fleet.writeConfig(`  agent_release: ${served}\n  agent_release_public_key: ${key.base64}\n`);
    fleet.startServer();
    const base = [
      "sh",
      "curl",
      "sed",
      "tr",
      "cut",
      "od",
      "dd",
      "mktemp",
      "chmod",
      "mv",
      "rm",
      "mkdir",
      "cat",
      "uname",
      "sha256sum",
      "grep",
      "wc",
      "sleep",
      "setsid",
    ];
    for (const [name, extra] of [
      ["openssl-only", ["openssl"]],
      ["minisign-only", ["minisign"]],
      ["neither", []],
    ] as const) {
      const bin = join(dir, `path-${name}`);
      mkdirSync(bin);
      for (const tool of [...base, ...extra]) {
        const at = Bun.which(tool, { PATH: "/usr/bin:/bin:/usr/sbin:/sbin" });
        if (at === null) throw new Error(`the installer test needs ${tool}`);
        symlinkSync(at, join(bin, tool));
      }
      tools[name] = bin;
    }
    proxy = Bun.serve({
      port: freePort(),
      hostname: "127.0.0.1",
      fetch: async (req) => {
        const url = new URL(req.url);
        const upstream = await fetch(`${fleet.url}${url.pathname}`);
        if (change === undefined || change.path !== url.pathname || upstream.status !== 200) return upstream;
        if (change.gone) return new Response("not here", { status: 404 });
        return new Response(new Uint8Array(change.edit(Buffer.from(await upstream.arrayBuffer()))), { status: 200 });
      },
    });
    ensureSshd();
    client = newKeyPair(join(dir, "client_ed25519"));
    sshd = await Sshd.start({ dir: join(dir, "sshd"), authorizedKeys: [client.publicKey] });
    await fleet.waitReady();
    script = join(dir, "install.sh");
    writeFileSync(script, await (await fetch(`${fleet.url}/install.sh`)).text());
  }, 120_000);

  afterAll(async () => {
    await proxy?.stop(true);
    fleet?.stop();
    await sshd?.stop();
  });

  let runs = 0;
  const install = async (path: string, args: string[] = []) => {
    const root = join(dir, `machine-${++runs}`);
    const proc = Bun.spawn(
      ["sh", script, "--server", `http://127.0.0.1:${proxy.port}`, "--prefix", root, "--token", "t", "--node-id", "n1", "--start", "none", ...args],
      {
        env: { PATH: path, HOME: dir, TMPDIR: dir },
        stdout: "pipe",
        stderr: "pipe",
      },
    );
    const [code, out, err] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
    return { code, out: out + err, installed: existsSync(join(root, "usr/local/bin/navarch-node")) };
  };

  const binaryPlusOne = (b: Buffer) => Buffer.concat([b, Buffer.from([0])]);
  const attacks: [string, { path: string; edit: (b: Buffer) => Buffer }, Record<"openssl-only" | "minisign-only", string>][] = [
    [
      "a changed binary",
      { path: "/download/navarch-node", edit: binaryPlusOne },
      { "openssl-only": "but the signed SHA256SUMS says", "minisign-only": "but the signed SHA256SUMS says" },
    ],
    [
      "SHA256SUMS listing another binary",
      { path: "/download/SHA256SUMS", edit: (b) => Buffer.from(b.toString().replace(/^[0-9a-f]{64}(?=  navarch-node$)/m, "1".repeat(64))) },
      { "openssl-only": "does not match its signature (key id", "minisign-only": "Signature verification failed" },
    ],
    [
      "a changed signature",
      { path: "/download/SHA256SUMS.minisig", edit: flipSignatureLine(2) },
      { "openssl-only": "does not match its signature (key id", "minisign-only": "does not verify with public key" },
    ],
    [
      "a changed trusted comment",
      { path: "/download/SHA256SUMS.minisig", edit: changeComment },
      { "openssl-only": "the trusted comment does not match its signature", "minisign-only": "Comment signature verification failed" },
    ],
    [
      "a legacy signature header",
      {
        path: "/download/SHA256SUMS.minisig",
        edit: (b) => {
          const lines = b.toString().split("\n");
          const raw = Buffer.from(lines[1]!, "base64");
          raw.write("Ed", 0, "latin1");
          lines[1] = raw.toString("base64");
          return Buffer.from(lines.join("\n"));
        },
      },
      { "openssl-only": "algorithm 'Ed', expected ED", "minisign-only": "does not verify with public key" },
    ],
  ];

  for (const verifier of ["openssl-only", "minisign-only"] as const) {
    test(`with ${verifier === "openssl-only" ? "OpenSSL 3 alone" : "minisign alone"}: installs the signed release, refuses every change on the way and another key`, async () => {
      change = undefined;
      const ok = await install(tools[verifier]!);
      expect({ code: ok.code, out: ok.out }).toEqual({
        code: 0,
        out: expect.stringContaining(`signature verified with ${verifier === "openssl-only" ? "openssl" : "minisign"}`),
      });
      expect(ok.out).toContain(`navarch-node sha256 ${parseSums(readFileSync(join(release, "SHA256SUMS"), "utf8")).get("navarch-node")} checked`);
      expect(ok.installed).toBe(true);
      for (const [what, edit, messages] of attacks) {
        change = edit;
        const r = await install(tools[verifier]!);
        change = undefined;
        expect({ what, code: r.code, installed: r.installed, said: r.out.includes(messages[verifier]) ? messages[verifier] : r.out }).toEqual({
          what,
          code: 1,
          installed: false,
          said: messages[verifier],
        });
      }
      const wrongKey = await install(tools[verifier]!, ["--public-key", other.base64]);
      expect(wrongKey.code).toBe(1);
      expect(wrongKey.installed).toBe(false);
      expect(wrongKey.out).toMatch(
        verifier === "openssl-only" ? /is signed with key id [0-9A-F]{16}, but the public key's id is [0-9A-F]{16}/ : /Signature key id in .* is [0-9A-F]{16}/,
      );
      // A hash pinned with --agent-sha256 that the signed list does not have.
      const pinned = await install(tools[verifier]!, ["--agent-sha256", "ab".repeat(32)]);
      expect(pinned.code).toBe(1);
      expect(pinned.out).toContain(`but ${"ab".repeat(32)} was expected`);
    }, 120_000);
  }

  test("refuses to install without a tool that can check the signature, and a public key that is not one", async () => {
    const none = await install(tools.neither!);
    expect(none.code).toBe(1);
    expect(none.out).toContain("cannot check the release's signature: it needs minisign or OpenSSL 3");
    expect(none.installed).toBe(false);
    // A key to check with, and nothing signed to check: a reconciler (or a proxy) that serves no SHA256SUMS.
    change = { path: "/download/SHA256SUMS", edit: (b) => b, gone: true };
    const unsigned = await install(tools["openssl-only"]!);
    change = undefined;
    expect(unsigned.code).toBe(1);
    expect(unsigned.out).toContain(`a signed release is expected (public key ${key.base64}), but http://127.0.0.1:${proxy.port} serves no SHA256SUMS`);
    expect(unsigned.installed).toBe(false);
    const bad = await install(tools["openssl-only"]!, ["--public-key", "RWQ-not-a-key"]);
    expect(bad.code).toBe(1);
    expect(bad.out).toContain("--public-key: expected a minisign public key");
  }, 60_000);

  test("the SSH bootstrap installs the signed release, and fails on a changed binary with the installer's reason", async () => {
    const root = join(dir, "ssh-machine");
    const command = (server: string) =>
      `curl -fsSL ${fleet.url}/install.sh | PATH=${tools["openssl-only"]} NAVARCH_PREFIX=${root} /bin/sh -s -- --server ${server} --token t --node-id ssh-1 --start none`;
    const bootstrap = (server: string) =>
      runBootstrap({
        host: "127.0.0.1",
        port: sshd.port,
        user: sshd.user,
        privateKey: client.privateKey,
        commands: [command(server)],
        mask: [],
        timeouts: { reachableMs: 10_000, commandMs: 60_000 },
      });
    change = { path: "/download/navarch-node", edit: binaryPlusOne };
    const refused = await bootstrap(`http://127.0.0.1:${proxy.port}`);
    change = undefined;
    expect(refused.ok).toBe(false);
    expect(refused.steps[0]!.stderr).toContain("but the signed SHA256SUMS says");
    expect(existsSync(join(root, "usr/local/bin/navarch-node"))).toBe(false);
    const ok = await bootstrap(fleet.url);
    expect({ ok: ok.ok, error: ok.error }).toEqual({ ok: true, error: undefined });
    expect(ok.steps[0]!.stderr).toContain("SHA256SUMS signature verified with openssl");
    await waitFor("the installed agent", () => (existsSync(join(root, "usr/local/bin/navarch-node")) ? true : undefined));
    expect(await sha256File(join(root, "usr/local/bin/navarch-node"))).toBe(await sha256File(join(release, "navarch-node")));
  }, 90_000);
});
