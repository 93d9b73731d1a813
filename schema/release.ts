// A signed release: files, a SHA256SUMS list of their SHA-256s (`sha256sum`'s format: 64 hex
// digits, two spaces, the name), and SHA256SUMS.minisig, a minisign signature over that list.
// One check for everyone who takes a release: `navarch serve` before it serves one
// (server.agent_release), and whatever else downloads an agent and must trust it.
import { lstat } from "node:fs/promises";
import { join } from "node:path";
import { MinisignError, keyIdHex, parseSignature, verifySignature, type MinisignPublicKey } from "./minisign.ts";

export const SUMS_FILE = "SHA256SUMS";
export const SIGNATURE_FILE = "SHA256SUMS.minisig";

/** A release that cannot be trusted, or a SHA256SUMS that is not one; the message says what and where. */
export class ReleaseError extends Error {
  override readonly name = "ReleaseError";
}

/** Names a release may hold: plain file names, nothing a shell or a path would read differently. */
const FILE_NAME = /^[A-Za-z0-9_+][A-Za-z0-9._+-]*$/;

/** SHA256SUMS's text → name → sha256 (lower-case hex). Every line must be one entry; names are plain and unique. */
export function parseSums(text: string): Map<string, string> {
  const sums = new Map<string, string>();
  const all = text.split("\n");
  if (all.at(-1) === "") all.pop();
  if (all.length === 0) throw new ReleaseError(`${SUMS_FILE} lists no file`);
  for (const [i, line] of all.entries()) {
    // `*` before the name is sha256sum's binary mode; the hash is the same.
    const m = /^([0-9a-fA-F]{64}) [ *](.+)$/.exec(line);
    if (m === null) throw new ReleaseError(`${SUMS_FILE} line ${i + 1}: expected "<64 hex digits>  <file name>", got ${JSON.stringify(line.slice(0, 120))}`);
    const name = m[2]!;
    if (!FILE_NAME.test(name) || name === SUMS_FILE || name === SIGNATURE_FILE) {
      throw new ReleaseError(`${SUMS_FILE} line ${i + 1}: ${JSON.stringify(name)} is not a file name a release may hold`);
    }
    if (sums.has(name)) throw new ReleaseError(`${SUMS_FILE} line ${i + 1}: ${name} is listed twice`);
    sums.set(name, m[1]!.toLowerCase());
  }
  return sums;
}

/** SHA256SUMS's text for name → sha256, in name order. */
export function formatSums(sums: ReadonlyMap<string, string>): string {
  return [...sums.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([name, hash]) => `${hash}  ${name}\n`)
    .join("");
}

export interface SignedSums {
  sums: Map<string, string>;
  /** The signature's trusted comment (signed too). */
  trustedComment: string;
  /** The signing key's id, as minisign prints it. */
  keyId: string;
}

/** SHA256SUMS and its signature, checked against `publicKey`, then parsed. Throws a ReleaseError. */
export function verifySums(sumsBytes: Uint8Array, signatureText: string, publicKey: MinisignPublicKey): SignedSums {
  let trustedComment: string;
  try {
    trustedComment = verifySignature(sumsBytes, parseSignature(signatureText), publicKey);
  } catch (err) {
    if (err instanceof MinisignError) throw new ReleaseError(`${SIGNATURE_FILE}: ${err.message}`);
    throw err;
  }
  return { sums: parseSums(new TextDecoder("utf-8", { fatal: false }).decode(sumsBytes)), trustedComment, keyId: keyIdHex(publicKey.keyId) };
}

/** SHA-256 of a file, read as a stream (a binary is over 100 MiB). */
export async function sha256File(path: string): Promise<string> {
  const hasher = new Bun.CryptoHasher("sha256");
  for await (const chunk of Bun.file(path).stream()) hasher.update(chunk);
  return hasher.digest("hex");
}

export interface VerifiedRelease extends SignedSums {
  dir: string;
  /** SHA256SUMS and its signature as read, for serving them as they are. */
  sumsBytes: Uint8Array;
  signatureText: string;
  /** What each listed file was when checked, to notice a change later. */
  files: Map<string, { path: string; sha256: string; size: number; mtimeMs: number; ino: number }>;
}

/**
 * The release in `dir`: its SHA256SUMS signature verifies against `publicKey`, every file it
 * lists is a regular file (not a link) with that SHA-256, and the files in `required` are listed.
 */
export async function verifyReleaseDir(dir: string, publicKey: MinisignPublicKey, required: readonly string[]): Promise<VerifiedRelease> {
  const read = async (name: string) => {
    try {
      return new Uint8Array(await Bun.file(join(dir, name)).arrayBuffer());
    } catch (err) {
      throw new ReleaseError(`${join(dir, name)}: cannot read it (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
    }
  };
  const sumsBytes = await read(SUMS_FILE);
  const signatureText = new TextDecoder().decode(await read(SIGNATURE_FILE));
  const signed = verifySums(sumsBytes, signatureText, publicKey);
  for (const name of required) if (!signed.sums.has(name)) throw new ReleaseError(`${SUMS_FILE} does not list ${name}`);
  const files: VerifiedRelease["files"] = new Map();
  for (const [name, expected] of signed.sums) {
    const path = join(dir, name);
    const stat = await lstat(path).catch(() => undefined);
    if (stat === undefined) throw new ReleaseError(`${path}: listed in ${SUMS_FILE} but missing`);
    if (!stat.isFile()) throw new ReleaseError(`${path}: listed in ${SUMS_FILE} but not a regular file`);
    const sha256 = await sha256File(path);
    if (sha256 !== expected) throw new ReleaseError(`${path}: sha256 ${sha256}, but ${SUMS_FILE} says ${expected}: the file was changed after it was signed`);
    files.set(name, { path, sha256, size: stat.size, mtimeMs: stat.mtimeMs, ino: stat.ino });
  }
  return { ...signed, dir, sumsBytes, signatureText, files };
}
