// SHA256SUMS and a release directory's check, with keys made here; test/release.test.ts signs with the real minisign.
import { describe, expect, test } from "bun:test";
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseSecretKey, signMessage } from "./minisign.ts";
import { ReleaseError, formatSums, parseSums, sha256File, verifyReleaseDir, verifySums } from "./release.ts";

function key() {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  const raw = Buffer.concat([
    Buffer.from("Ed\0\0B2", "latin1"),
    Buffer.alloc(48),
    randomBytes(8),
    privateKey.export({ format: "der", type: "pkcs8" }).subarray(-32),
    publicKey.export({ format: "der", type: "spki" }).subarray(-32),
    Buffer.alloc(32),
  ]);
  return parseSecretKey(`untrusted comment: k\n${raw.toString("base64")}\n`);
}

const HASH = "a".repeat(64);

describe("SHA256SUMS", () => {
  test("reads sha256sum's text and binary modes, and writes what it reads", () => {
    const sums = parseSums(`${HASH}  navarch-node\n${"B".repeat(64)} *navarch\n`);
    expect([...sums]).toEqual([
      ["navarch-node", HASH],
      ["navarch", "b".repeat(64)],
    ]);
    expect(formatSums(sums)).toBe(`${"b".repeat(64)}  navarch\n${HASH}  navarch-node\n`);
    expect(parseSums(formatSums(sums))).toEqual(sums);
  });

  test("refuses a line that is not an entry, a path, a name twice, and an empty list, naming the line", () => {
    const cases: [string, string][] = [
      ["", "lists no file"],
      [`${HASH} navarch\n`, 'line 1: expected "<64 hex digits>  <file name>"'],
      [`${HASH}  ok\n${"a".repeat(63)}  navarch\n`, "line 2: expected"],
      [`${HASH}  ../navarch\n`, 'line 1: "../navarch" is not a file name a release may hold'],
      [`${HASH}  sub/navarch\n`, "is not a file name a release may hold"],
      [`${HASH}  -rf\n`, "is not a file name a release may hold"],
      [`${HASH}  SHA256SUMS\n`, "is not a file name a release may hold"],
      [`${HASH}  a\n${HASH}  a\n`, "line 2: a is listed twice"],
      [`${HASH}  a\n\n`, "line 2: expected"],
    ];
    for (const [text, message] of cases) {
      expect(() => parseSums(text)).toThrow(ReleaseError);
      expect(() => parseSums(text)).toThrow(message);
    }
  });

  test("verifySums parses only a list whose signature verifies", () => {
    const k = key();
    const text = Buffer.from(`${HASH}  navarch-node\n`);
    const sig = signMessage(text, k, "c");
    expect(verifySums(text, sig, k.publicKey).sums.get("navarch-node")).toBe(HASH);
    expect(() => verifySums(Buffer.from(`${"b".repeat(64)}  navarch-node\n`), sig, k.publicKey)).toThrow("SHA256SUMS.minisig: the signature does not match");
    expect(() => verifySums(text, sig, key().publicKey)).toThrow("SHA256SUMS.minisig: signed with key id");
  });
});

describe("a release directory", () => {
  test("verifies when every listed file has its hash; refuses a missing, changed, linked or unlisted required file", async () => {
    const dir = mkdtempSync(join(tmpdir(), "navarch-release-unit-"));
    try {
      const k = key();
      writeFileSync(join(dir, "navarch-node"), "agent");
      writeFileSync(join(dir, "notes"), "n");
      const sign = async (names: string[]) => {
        const sums = new Map<string, string>();
        for (const n of names) sums.set(n, await sha256File(join(dir, n)));
        writeFileSync(join(dir, "SHA256SUMS"), formatSums(sums));
        writeFileSync(join(dir, "SHA256SUMS.minisig"), signMessage(Buffer.from(formatSums(sums)), k, "c"));
      };
      await sign(["navarch-node", "notes"]);
      const ok = await verifyReleaseDir(dir, k.publicKey, ["navarch-node"]);
      expect(ok.files.get("navarch-node")!.sha256).toBe(await sha256File(join(dir, "navarch-node")));
      expect(ok.trustedComment).toBe("c");
      await expect(verifyReleaseDir(dir, k.publicKey, ["navarch"])).rejects.toThrow("SHA256SUMS does not list navarch");
      writeFileSync(join(dir, "notes"), "changed");
      await expect(verifyReleaseDir(dir, k.publicKey, [])).rejects.toThrow(`${join(dir, "notes")}: sha256 `);
      rmSync(join(dir, "notes"));
      await expect(verifyReleaseDir(dir, k.publicKey, [])).rejects.toThrow("listed in SHA256SUMS but missing");
      symlinkSync(join(dir, "navarch-node"), join(dir, "notes"));
      await sign(["navarch-node", "notes"]);
      await expect(verifyReleaseDir(dir, k.publicKey, [])).rejects.toThrow("listed in SHA256SUMS but not a regular file");
      rmSync(join(dir, "SHA256SUMS.minisig"));
      await expect(verifyReleaseDir(dir, k.publicKey, [])).rejects.toThrow("SHA256SUMS.minisig: cannot read it (ENOENT)");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
