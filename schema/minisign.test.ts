// The minisign formats on their own; test/release.test.ts checks them against the real minisign.
import { describe, expect, test } from "bun:test";
import { generateKeyPairSync, randomBytes } from "node:crypto";
import {
  MinisignError,
  blake2b512,
  formatPublicKey,
  keyIdHex,
  parsePublicKey,
  parseSecretKey,
  parseSignature,
  signMessage,
  verifySignature,
} from "./minisign.ts";

/** A secret key file laid out as `minisign -G -W` writes it (checksum left zero), from a fresh Ed25519 key. */
function secretKeyFile(kdf = "\0\0"): string {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  const seed = privateKey.export({ format: "der", type: "pkcs8" }).subarray(-32);
  const pub = publicKey.export({ format: "der", type: "spki" }).subarray(-32);
  const raw = Buffer.concat([Buffer.from(`Ed${kdf}B2`, "latin1"), Buffer.alloc(48), randomBytes(8), seed, pub, Buffer.alloc(32)]);
  return `untrusted comment: minisign encrypted secret key\n${raw.toString("base64")}\n`;
}

describe("minisign keys and signatures", () => {
  test("a signature made here verifies against the key's public half, in either of its written forms", () => {
    const key = parseSecretKey(secretKeyFile());
    const message = new TextEncoder().encode("3f…  navarch-node\n");
    const sig = signMessage(message, key, "timestamp:1\tfile:SHA256SUMS");
    const file = formatPublicKey(key.publicKey);
    expect(file).toStartWith(`untrusted comment: minisign public key ${keyIdHex(key.keyId)}\n`);
    for (const pub of [file, key.publicKey.base64, `  ${key.publicKey.base64}\r\n`]) {
      expect(verifySignature(message, parseSignature(sig), parsePublicKey(pub))).toBe("timestamp:1\tfile:SHA256SUMS");
    }
    // CRLF line endings read the same.
    expect(verifySignature(message, parseSignature(sig.replaceAll("\n", "\r\n")), key.publicKey)).toBe("timestamp:1\tfile:SHA256SUMS");
  });

  test("a changed message, signature, trusted comment or key is refused, saying which", () => {
    const key = parseSecretKey(secretKeyFile());
    const message = Buffer.from("abc");
    const sig = signMessage(message, key, "c");
    expect(() => verifySignature(Buffer.from("abd"), parseSignature(sig), key.publicKey)).toThrow("the signature does not match the signed file");
    expect(() => verifySignature(message, parseSignature(sig.replace("trusted comment: c", "trusted comment: d")), key.publicKey)).toThrow(
      "the trusted comment's signature does not match",
    );
    const other = parseSecretKey(secretKeyFile());
    expect(() => verifySignature(message, parseSignature(sig), other.publicKey)).toThrow(
      `signed with key id ${keyIdHex(key.keyId)}, but the public key's id is`,
    );
    // Same key id, another key: the signature itself fails.
    const impostor = { ...other.publicKey, keyId: key.keyId };
    expect(() => verifySignature(message, parseSignature(sig), impostor)).toThrow("the signature does not match the signed file");
  });

  test("what is not a key or a signature is refused with what is wrong", () => {
    const sig = signMessage(Buffer.from("x"), parseSecretKey(secretKeyFile()), "c").split("\n");
    const cases: [() => unknown, string][] = [
      [() => parsePublicKey("RWQ"), "minisign public key: not base64"],
      [() => parsePublicKey(Buffer.alloc(42).toString("base64")), 'not an Ed25519 key (its first two bytes are not "Ed")'],
      [() => parsePublicKey("a\nb\nc"), "a minisign public key is one base64 line"],
      [() => parseSignature(sig.slice(0, 3).join("\n")), "3 lines, expected 4"],
      [() => parseSignature(["x", ...sig.slice(1)].join("\n")), 'line 1 does not start with "untrusted comment: "'],
      [() => parseSignature([sig[0], sig[1], "comment: c", sig[3]].join("\n")), 'line 3 does not start with "trusted comment: "'],
      [() => parseSignature([sig[0], sig[1], "trusted comment: a\u0007b", sig[3]].join("\n")), "unprintable characters"],
      [() => parseSignature([sig[0], `${sig[1]}==`, sig[2], sig[3]].join("\n")), "line 2: not base64"],
      [() => parseSignature([sig[0], sig[1], sig[2], "AAAA"].join("\n")), "line 4 (global signature): 3 bytes, expected 64"],
      [() => parseSecretKey(secretKeyFile("Sc")), "encrypted with a password (KDF scrypt)"],
      [() => parseSecretKey("just one line"), "not a minisign secret key file"],
    ];
    for (const [f, message] of cases) {
      expect(f).toThrow(MinisignError);
      expect(f).toThrow(message);
    }
  });

  test('BLAKE2b-512 is the standard one (RFC 7693\'s test vector for "abc")', () => {
    expect(Buffer.from(blake2b512(Buffer.from("abc"))).toString("hex")).toBe(
      "ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d17d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923",
    );
  });
});
