// server.agent_release: a signed release (`npm run release`, docs/releases.md) that this
// reconciler hands new machines instead of the navarch-node beside its own executable. It is
// checked before serve starts (and by `navarch config check`): SHA256SUMS's signature verifies
// against server.agent_release_public_key, which the operator gives (a key found in the same
// directory proves nothing), and every file it lists has its SHA-256. While serving, a binary
// that changes on disk is hashed again and refused if it no longer matches.
import { stat } from "node:fs/promises";
import type { ServerConfig } from "../../schema/config.ts";
import { parsePublicKey } from "../../schema/minisign.ts";
import { ReleaseError, SIGNATURE_FILE, SUMS_FILE, sha256File, verifyReleaseDir, type VerifiedRelease } from "../../schema/release.ts";

/** The file of the release that machines install. */
export const AGENT_FILE = "navarch-node";

export type AgentReleaseCheck = { ok: true; release: ServedRelease | undefined } | { ok: false; problem: string };

/** The release server.agent_release names, verified; `release` undefined when none is configured. */
export async function checkAgentRelease(server: Pick<ServerConfig, "agent_release" | "agent_release_public_key">): Promise<AgentReleaseCheck> {
  const dir = server.agent_release;
  const key = server.agent_release_public_key;
  if (dir === undefined || key === undefined) return { ok: true, release: undefined };
  try {
    const verified = await verifyReleaseDir(dir, parsePublicKey(key), [AGENT_FILE]);
    return { ok: true, release: new ServedRelease(verified, key) };
  } catch (err) {
    if (err instanceof ReleaseError) return { ok: false, problem: `${err.message}; this release is not served` };
    throw err;
  }
}

export type ServedAgent = { path: string; size: number; sha256: string } | { problem: string };

/** A verified release as the install routes serve it. */
export class ServedRelease {
  private checked: { size: number; mtimeMs: number; ino: number };

  constructor(
    readonly verified: VerifiedRelease,
    /** The public key it was verified with (base64), rendered into install.sh. */
    readonly publicKey: string,
  ) {
    const file = verified.files.get(AGENT_FILE)!;
    this.checked = { size: file.size, mtimeMs: file.mtimeMs, ino: file.ino };
  }

  get sums(): Uint8Array {
    return this.verified.sumsBytes;
  }

  get signature(): string {
    return this.verified.signatureText;
  }

  /** The agent binary, hashed again when it changed on disk since it was last checked. */
  async agent(): Promise<ServedAgent> {
    const file = this.verified.files.get(AGENT_FILE)!;
    const now = await stat(file.path).catch(() => undefined);
    if (now === undefined || !now.isFile()) return { problem: `${file.path} (server.agent_release) is gone since it was verified` };
    if (now.size !== this.checked.size || now.mtimeMs !== this.checked.mtimeMs || now.ino !== this.checked.ino) {
      const sha256 = await sha256File(file.path);
      if (sha256 !== file.sha256) {
        return {
          problem: `${file.path} (server.agent_release) changed after it was verified: sha256 ${sha256}, ${SUMS_FILE} says ${file.sha256}; not serving it`,
        };
      }
      this.checked = { size: now.size, mtimeMs: now.mtimeMs, ino: now.ino };
    }
    return { path: file.path, size: now.size, sha256: file.sha256 };
  }
}

export { SIGNATURE_FILE, SUMS_FILE };
