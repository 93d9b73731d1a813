// minisign's three file formats, read and written with node:crypto's Ed25519, so that a
// release signed here verifies with the `minisign` tool and one signed by it verifies here.
// Each file is an `untrusted comment: …` line and a base64 line; the signature adds a
// `trusted comment: …` line and its base64 line:
//
//   public key   "Ed" ‖ key id (8) ‖ Ed25519 public key (32)
//   signature    "ED" ‖ key id (8) ‖ Ed25519(BLAKE2b-512(file)) (64)        (prehashed)
//                then the trusted comment, and Ed25519(signature ‖ trusted comment), the
//                "global signature": the trusted comment cannot be changed without it failing
//   secret key   "Ed" ‖ KDF ‖ "B2" ‖ salt (32) ‖ opslimit (8) ‖ memlimit (8) ‖
//                key id (8) ‖ Ed25519 secret key (seed 32 ‖ public 32) ‖ checksum (32)
//                KDF "Sc" (scrypt): the last 104 bytes are encrypted with a password;
//                KDF "\0\0" (`minisign -G -W`): they are not. The checksum is
//                BLAKE2b-256("Ed" ‖ key id ‖ secret key); `minisign -G -W` leaves it zero.
//
// Only the prehashed signature ("ED", minisign's default since 0.8) is accepted: the legacy one
// ("Ed") signs the whole file and is refused by `minisign -V -H` too.
import { createPrivateKey, createPublicKey, sign as ed25519Sign, verify as ed25519Verify, type KeyObject } from "node:crypto";

/** Something that is not a minisign key or signature, or one that does not verify; the message says which part. */
export class MinisignError extends Error {
  override readonly name = "MinisignError";
}

const PUBLIC_KEY_BYTES = 42;
const SIGNATURE_BYTES = 74;
const SECRET_KEY_BYTES = 158;
const UNTRUSTED = "untrusted comment: ";
const TRUSTED = "trusted comment: ";
// DER prefixes that make a raw Ed25519 key an SPKI public key and a PKCS#8 private key (RFC 8410).
const SPKI_ED25519 = Buffer.from("302a300506032b6570032100", "hex");
const PKCS8_ED25519 = Buffer.from("302e020100300506032b657004220420", "hex");

export interface MinisignPublicKey {
  /** The 8 key id bytes as stored. */
  keyId: Uint8Array;
  key: KeyObject;
  /** The base64 line, as `minisign -P` takes it. */
  base64: string;
}

export interface MinisignSignature {
  keyId: Uint8Array;
  /** Ed25519 over the BLAKE2b-512 of the signed file. */
  signature: Uint8Array;
  trustedComment: string;
  /** Ed25519 over signature ‖ trusted comment. */
  globalSignature: Uint8Array;
}

export interface MinisignSecretKey {
  keyId: Uint8Array;
  privateKey: KeyObject;
  publicKey: MinisignPublicKey;
}

/** A key id as minisign prints it: the 8 bytes as a little-endian number, 16 upper-case hex digits. */
export function keyIdHex(keyId: Uint8Array): string {
  return Buffer.from(keyId).reverse().toString("hex").toUpperCase();
}

/** BLAKE2b-512 of `data`: what a prehashed signature signs. */
export function blake2b512(data: Uint8Array): Uint8Array {
  return new Bun.CryptoHasher("blake2b512").update(data).digest();
}

/** Strict base64 of exactly `bytes` bytes (Buffer.from alone skips what is not base64). */
function decodeBase64(text: string, bytes: number, what: string): Buffer {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) throw new MinisignError(`${what}: not base64`);
  const decoded = Buffer.from(text, "base64");
  if (decoded.length !== bytes) throw new MinisignError(`${what}: ${decoded.length} bytes, expected ${bytes}`);
  return decoded;
}

/** The file's lines without their line endings; a missing last newline is fine. */
function lines(text: string): string[] {
  const all = text.split("\n").map((l) => l.replace(/\r$/, ""));
  if (all.at(-1) === "") all.pop();
  return all;
}

function rawPublicKey(raw: Uint8Array): KeyObject {
  return createPublicKey({ key: Buffer.concat([SPKI_ED25519, raw]), format: "der", type: "spki" });
}

/**
 * A public key: the base64 line alone (`RWQ…`, what `minisign -P` takes) or the whole
 * `minisign.pub` file (its comment line, then that line).
 */
export function parsePublicKey(text: string): MinisignPublicKey {
  const all = lines(text.trim());
  let line = all[0] ?? "";
  if (all.length === 2 && line.startsWith(UNTRUSTED)) line = all[1]!;
  else if (all.length !== 1) throw new MinisignError("a minisign public key is one base64 line (RWQ…), or a minisign.pub file of a comment line and that line");
  const raw = decodeBase64(line.trim(), PUBLIC_KEY_BYTES, "minisign public key");
  if (raw.subarray(0, 2).toString("latin1") !== "Ed") throw new MinisignError('minisign public key: not an Ed25519 key (its first two bytes are not "Ed")');
  return { keyId: new Uint8Array(raw.subarray(2, 10)), key: rawPublicKey(raw.subarray(10)), base64: line.trim() };
}

/** A `.minisig` file. Refuses the legacy (not prehashed) algorithm. */
export function parseSignature(text: string): MinisignSignature {
  const all = lines(text);
  if (all.length !== 4)
    throw new MinisignError(`minisign signature: ${all.length} lines, expected 4 (untrusted comment, signature, trusted comment, global signature)`);
  const [untrusted, sig, trusted, global] = all as [string, string, string, string];
  if (!untrusted.startsWith(UNTRUSTED)) throw new MinisignError(`minisign signature: line 1 does not start with "${UNTRUSTED}"`);
  const raw = decodeBase64(sig.trim(), SIGNATURE_BYTES, "minisign signature, line 2");
  const algorithm = raw.subarray(0, 2).toString("latin1");
  if (algorithm === "Ed") throw new MinisignError("minisign signature: legacy algorithm Ed (not prehashed); sign with a minisign of 0.8 or later, without -l");
  if (algorithm !== "ED") throw new MinisignError(`minisign signature: unknown algorithm ${JSON.stringify(algorithm)}, expected "ED"`);
  if (!trusted.startsWith(TRUSTED)) throw new MinisignError(`minisign signature: line 3 does not start with "${TRUSTED}"`);
  const trustedComment = trusted.slice(TRUSTED.length);
  // minisign refuses what is not printable there (its verifier's words: "unprintable characters").
  if (/[\u0000-\u001f\u007f]/.test(trustedComment.replaceAll("\t", " ")))
    throw new MinisignError("minisign signature: the trusted comment has unprintable characters");
  return {
    keyId: new Uint8Array(raw.subarray(2, 10)),
    signature: new Uint8Array(raw.subarray(10)),
    trustedComment,
    globalSignature: new Uint8Array(decodeBase64(global.trim(), 64, "minisign signature, line 4 (global signature)")),
  };
}

/**
 * Checks `signature` over `message` against `publicKey`: the key ids, the signature over the
 * message's BLAKE2b-512, then the global signature over the trusted comment. Returns the
 * trusted comment; throws a MinisignError saying which check failed.
 */
export function verifySignature(message: Uint8Array, signature: MinisignSignature, publicKey: MinisignPublicKey): string {
  if (!Buffer.from(signature.keyId).equals(Buffer.from(publicKey.keyId))) {
    throw new MinisignError(`signed with key id ${keyIdHex(signature.keyId)}, but the public key's id is ${keyIdHex(publicKey.keyId)}`);
  }
  if (!ed25519Verify(null, blake2b512(message), publicKey.key, signature.signature)) {
    throw new MinisignError(`the signature does not match the signed file (key id ${keyIdHex(publicKey.keyId)}): the file or its signature was changed`);
  }
  const global = Buffer.concat([signature.signature, Buffer.from(signature.trustedComment, "utf8")]);
  if (!ed25519Verify(null, global, publicKey.key, signature.globalSignature)) {
    throw new MinisignError("the trusted comment's signature does not match: the trusted comment or its signature was changed");
  }
  return signature.trustedComment;
}

/**
 * A secret key file as `minisign -G -W` writes it. An encrypted key (KDF scrypt) is refused,
 * as is one whose checksum or embedded public key does not match its secret key.
 */
export function parseSecretKey(text: string): MinisignSecretKey {
  const all = lines(text);
  if (all.length !== 2 || !all[0]!.startsWith(UNTRUSTED)) {
    throw new MinisignError("not a minisign secret key file: expected two lines, an untrusted comment and the key in base64");
  }
  const line = all[1]!.trim();
  if (Buffer.from(line, "base64").length === PUBLIC_KEY_BYTES)
    throw new MinisignError("this is a minisign public key (minisign.pub), not the secret key that signs");
  const raw = decodeBase64(line, SECRET_KEY_BYTES, "minisign secret key");
  const [alg, kdf, chk] = [raw.subarray(0, 2), raw.subarray(2, 4), raw.subarray(4, 6)].map((b) => b.toString("latin1"));
  if (alg !== "Ed") throw new MinisignError(`minisign secret key: algorithm ${JSON.stringify(alg)}, expected "Ed" (Ed25519)`);
  if (kdf === "Sc") {
    throw new MinisignError(
      "minisign secret key: encrypted with a password (KDF scrypt); the release tool signs with an unencrypted key, as `minisign -G -W` writes it (`minisign -C -W` removes the password)",
    );
  }
  if (kdf !== "\0\0") throw new MinisignError(`minisign secret key: unknown key derivation ${JSON.stringify(kdf)}`);
  if (chk !== "B2") throw new MinisignError(`minisign secret key: unknown checksum algorithm ${JSON.stringify(chk)}, expected "B2" (BLAKE2b)`);
  const keyId = raw.subarray(54, 62);
  const secret = raw.subarray(62, 126);
  const checksum = raw.subarray(126, 158);
  if (checksum.some((b) => b !== 0)) {
    const computed = new Bun.CryptoHasher("blake2b256").update(Buffer.concat([raw.subarray(0, 2), keyId, secret])).digest();
    if (!computed.equals(checksum)) throw new MinisignError("minisign secret key: its checksum does not match (the file is damaged)");
  }
  const privateKey = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519, secret.subarray(0, 32)]), format: "der", type: "pkcs8" });
  const derived = createPublicKey(privateKey).export({ format: "der", type: "spki" }).subarray(SPKI_ED25519.length);
  if (!derived.equals(secret.subarray(32)))
    throw new MinisignError("minisign secret key: its public half does not belong to its secret half (the file is damaged)");
  const publicRaw = Buffer.concat([Buffer.from("Ed", "latin1"), keyId, derived]);
  return {
    keyId: new Uint8Array(keyId),
    privateKey,
    publicKey: { keyId: new Uint8Array(keyId), key: rawPublicKey(derived), base64: publicRaw.toString("base64") },
  };
}

/** The public key file (`minisign.pub`) for a key. */
export function formatPublicKey(key: MinisignPublicKey): string {
  return `${UNTRUSTED}minisign public key ${keyIdHex(key.keyId)}\n${key.base64}\n`;
}

/** A prehashed `.minisig` for `message`, with `trustedComment` signed too (one printable line). */
export function signMessage(message: Uint8Array, key: MinisignSecretKey, trustedComment: string): string {
  if (/[\u0000-\u001f\u007f]/.test(trustedComment.replaceAll("\t", " "))) throw new MinisignError("a trusted comment is one line of printable characters");
  const signature = ed25519Sign(null, blake2b512(message), key.privateKey);
  const global = ed25519Sign(null, Buffer.concat([signature, Buffer.from(trustedComment, "utf8")]), key.privateKey);
  const sig = Buffer.concat([Buffer.from("ED", "latin1"), key.keyId, signature]);
  return `${UNTRUSTED}signature from minisign secret key ${keyIdHex(key.keyId)}\n${sig.toString("base64")}\n${TRUSTED}${trustedComment}\n${global.toString("base64")}\n`;
}
