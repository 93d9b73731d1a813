// `npm run release [-- --out DIR]`: builds both binaries into dist/release (or DIR) and writes
// beside them
//   sbom.cdx.json             CycloneDX SBOM: the bundled npm packages (bun.lock) and the Bun runtime
//   provenance.intoto.json    in-toto Statement, SLSA provenance: the commit and the build command
//   SHA256SUMS                the SHA-256 of every file above (sha256sum's format)
//   SHA256SUMS.minisig        a minisign signature over SHA256SUMS
// signed with the minisign secret key file named by $NAVARCH_RELEASE_KEY (unencrypted, as
// `minisign -G -W` writes it; never in the repository). The key is read and checked before
// anything is built, and the release is assembled beside its place and moved there whole, so a
// refusal or a failed build leaves no half release behind. docs/releases.md says more.
import { existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join, relative, resolve } from "node:path";
import { MinisignError, formatPublicKey, keyIdHex, parseSecretKey, signMessage, type MinisignSecretKey } from "../schema/minisign.ts";
import { SIGNATURE_FILE, SUMS_FILE, formatSums, sha256File } from "../schema/release.ts";
import { NAVARCH_VERSION } from "../schema/version.ts";
import { BINARIES, buildBinaries } from "./build.ts";
import { provenance } from "./release/provenance.ts";
import { cycloneDx, lockKeyNames, readLockfile } from "./release/sbom.ts";

const root = resolve(new URL("..", import.meta.url).pathname);
export const KEY_ENV = "NAVARCH_RELEASE_KEY";
export const SBOM_FILE = "sbom.cdx.json";
export const PROVENANCE_FILE = "provenance.intoto.json";

class Refusal extends Error {}

/** The signing key $NAVARCH_RELEASE_KEY names, or a refusal saying what is wrong with it. */
export function loadSigningKey(env: Record<string, string | undefined>, repository: string): MinisignSecretKey {
  const path = env[KEY_ENV]?.trim();
  if (!path) {
    throw new Refusal(
      `${KEY_ENV} is not set: name the minisign secret key file to sign the release with (make one with \`minisign -G -W\`, kept outside the repository)`,
    );
  }
  let text: string;
  let real: string;
  try {
    real = realpathSync(path);
    text = readFileSync(real, "utf8");
  } catch (err) {
    throw new Refusal(`${KEY_ENV}=${path}: cannot read it (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  const inside = relative(realpathSync(repository), real);
  if (!inside.startsWith("..") && !inside.startsWith("/")) {
    throw new Refusal(`${KEY_ENV}=${path}: the signing key is inside the repository (${inside}); keep it outside, where no commit can pick it up`);
  }
  try {
    return parseSecretKey(text);
  } catch (err) {
    if (err instanceof MinisignError) throw new Refusal(`${KEY_ENV}=${path}: ${err.message}`);
    throw err;
  }
}

/** The release replaces what is at `out` only when that is an earlier release or an empty directory. */
export function refuseToReplace(out: string): void {
  if (!existsSync(out)) return;
  const entries = readdirSync(out);
  if (entries.length === 0 || (entries.includes(SUMS_FILE) && entries.includes(SIGNATURE_FILE))) return;
  throw new Refusal(`--out ${out}: exists and is not a release (no ${SUMS_FILE} and ${SIGNATURE_FILE}); not replacing it`);
}

function git(args: string[]): string {
  const r = Bun.spawnSync(["git", ...args], { cwd: root, stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Refusal(`git ${args.join(" ")} failed: ${r.stderr.toString().trim()} (a release names its commit: run it in a git checkout)`);
  return r.stdout.toString().trim();
}

/** The checkout's origin without a user name or password written into it. */
function repositoryUrl(): string | undefined {
  const r = Bun.spawnSync(["git", "remote", "get-url", "origin"], { cwd: root, stdout: "pipe", stderr: "ignore" });
  const url = r.exitCode === 0 ? r.stdout.toString().trim() : "";
  return url === "" ? undefined : url.replace(/\/\/[^/@]*@/, "//");
}

function parseArgs(argv: string[]): { out: string } {
  let out = join(root, "dist/release");
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--out" && argv[i + 1] !== undefined) out = resolve(argv[++i]!);
    else if (arg.startsWith("--out=")) out = resolve(arg.slice("--out=".length));
    else throw new Refusal(`unknown argument ${JSON.stringify(arg)} (usage: npm run release [-- --out DIR])`);
  }
  return { out };
}

async function release(argv: string[]): Promise<void> {
  const startedOn = new Date();
  const { out } = parseArgs(argv);
  const key = loadSigningKey(process.env, root);
  refuseToReplace(out);
  const commit = git(["rev-parse", "HEAD"]);
  // Tracked files changed since the commit, and files git would add: a build of such a tree is not the commit alone.
  const uncommitted = [...git(["diff", "--name-only", "HEAD"]).split("\n"), ...git(["ls-files", "--others", "--exclude-standard"]).split("\n")].filter(
    (l) => l !== "",
  );
  if (uncommitted.length > 0) console.warn(`warning: ${uncommitted.length} file(s) differ from commit ${commit.slice(0, 12)}; the provenance lists them`);

  // Assembled beside its place, then moved there whole.
  mkdirSync(dirname(out), { recursive: true });
  const staging = join(dirname(out), `.${basename(out)}.tmp-${process.pid}`);
  rmSync(staging, { recursive: true, force: true });
  try {
    const inputs = await buildBinaries(staging, BINARIES);
    const sums = new Map<string, string>();
    for (const name of BINARIES) sums.set(name, await sha256File(join(staging, name)));
    const lockText = readFileSync(join(root, "bun.lock"), "utf8");
    const sbom = cycloneDx({
      version: NAVARCH_VERSION,
      commit,
      bunVersion: Bun.version,
      bunRevision: Bun.revision,
      binaries: BINARIES.map((name) => ({ name, sha256: sums.get(name)!, inputs: inputs.get(name) ?? [] })),
      lock: readLockfile(lockText),
      installedVersion: (k) => installedVersion(join(root, "node_modules", lockKeyNames(k).join("/node_modules/"))),
      now: startedOn,
    });
    writeFileSync(join(staging, SBOM_FILE), `${JSON.stringify(sbom, null, 2)}\n`);
    // Everything built (the binaries, their source maps) is a subject; the SBOM too.
    for (const file of new Bun.Glob("*").scanSync(staging)) if (!sums.has(file)) sums.set(file, await sha256File(join(staging, file)));
    const statement = provenance({
      subjects: [...sums.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([name, sha256]) => ({ name, sha256 })),
      commit,
      ...(repositoryUrl() !== undefined ? { repository: repositoryUrl()! } : {}),
      uncommitted,
      command: process.env.npm_lifecycle_event === "release" ? "npm run release" : `bun run scripts/release.ts`,
      argv,
      bunVersion: Bun.version,
      bunRevision: Bun.revision,
      lockSha256: new Bun.CryptoHasher("sha256").update(lockText).digest("hex"),
      startedOn,
      finishedOn: new Date(),
    });
    writeFileSync(join(staging, PROVENANCE_FILE), `${JSON.stringify(statement, null, 2)}\n`);
    sums.set(PROVENANCE_FILE, await sha256File(join(staging, PROVENANCE_FILE)));
    const sumsText = formatSums(sums);
    writeFileSync(join(staging, SUMS_FILE), sumsText);
    const trusted = `timestamp:${Math.floor(Date.now() / 1000)}\tfile:${SUMS_FILE}\thashed\tnavarch:${NAVARCH_VERSION}\tcommit:${commit}${uncommitted.length > 0 ? "+uncommitted" : ""}`;
    writeFileSync(join(staging, SIGNATURE_FILE), signMessage(new TextEncoder().encode(sumsText), key, trusted));
    // Swap: the old release (if any) out of the way, the new one in, the old one removed.
    const old = `${staging}.old`;
    if (existsSync(out)) renameSync(out, old);
    renameSync(staging, out);
    rmSync(old, { recursive: true, force: true });
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
  console.log(`release ${NAVARCH_VERSION} (commit ${commit.slice(0, 12)}) in ${out}, signed by key ${keyIdHex(key.keyId)}`);
  console.log(`verify: minisign -Vm ${join(out, SUMS_FILE)} -P ${key.publicKey.base64}`);
  console.log(`public key (give it to navarch serve as server.agent_release_public_key):\n${formatPublicKey(key.publicKey).trimEnd()}`);
}

function installedVersion(dir: string): string | undefined {
  try {
    const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { version?: unknown };
    return typeof pkg.version === "string" ? pkg.version : undefined;
  } catch {
    return undefined;
  }
}

if (import.meta.main) {
  try {
    await release(process.argv.slice(2));
  } catch (err) {
    console.error(`npm run release: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  }
}
