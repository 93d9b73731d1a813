// The JWTs Navarch mints with slurm.conf's jwt_key (verified against slurmctld in slurm.test.ts).
import { expect, test } from "bun:test";
import { createHmac } from "node:crypto";
import { mintToken, SlurmTokens } from "../reconciler/schedulers/slurm/token.ts";

const key = Buffer.alloc(32, 9);
const claims = (token: string) => JSON.parse(Buffer.from(token.split(".")[1]!, "base64url").toString("utf8")) as { sun: string; iat: number; exp: number };

test("HS256 over the raw key, claims sun, iat and exp", () => {
  const token = mintToken(key, "slurm", 1_700_000_000_500, 30 * 60_000);
  const [header, payload, signature] = token.split(".");
  expect(JSON.parse(Buffer.from(header!, "base64url").toString("utf8"))).toEqual({ alg: "HS256", typ: "JWT" });
  expect(claims(token)).toEqual({ sun: "slurm", iat: 1_700_000_000, exp: 1_700_001_800 });
  expect(signature).toBe(createHmac("sha256", key).update(`${header}.${payload}`).digest("base64url"));
});

test("a token is reused until two thirds of its life are gone, then a new one is minted", () => {
  let now = 1_700_000_000_000;
  const tokens = new SlurmTokens({ kind: "key", key, user: "navarch", lifespanMs: 30 * 60_000 }, () => now);
  const first = tokens.token();
  now += 19 * 60_000;
  expect(tokens.token()).toBe(first);
  now += 2 * 60_000;
  const second = tokens.token();
  expect(second).not.toBe(first);
  expect(claims(second).exp - claims(second).iat).toBe(1800);
  expect(new SlurmTokens({ kind: "static", token: "eyJ.a.b", user: "slurm" }).token()).toBe("eyJ.a.b");
});
