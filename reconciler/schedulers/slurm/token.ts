// The JWTs slurmrestd and scontrol take (X-SLURM-USER-TOKEN, SLURM_JWT). With slurm.conf's
// jwt_key, Navarch mints its own as `scontrol token` does: HS256 over the raw key bytes,
// claims `sun` (the user), `iat` and `exp`, renewed when a third of the lifespan is left.
// Otherwise a token read from the environment, used until it expires. Real time, always:
// slurmctld checks `exp` against its own clock.
import { createHmac } from "node:crypto";

export type TokenSource = { kind: "key"; key: Uint8Array; user: string; lifespanMs: number } | { kind: "static"; token: string; user: string };

export class SlurmTokens {
  private current: { token: string; renewAt: number } | undefined;

  constructor(
    private readonly source: TokenSource,
    private readonly clock: () => number = Date.now,
  ) {}

  get user(): string {
    return this.source.user;
  }

  /** A token that is valid now. */
  token(): string {
    if (this.source.kind === "static") return this.source.token;
    const now = this.clock();
    if (this.current === undefined || now >= this.current.renewAt) {
      const lifespan = this.source.lifespanMs;
      this.current = { token: mintToken(this.source.key, this.source.user, now, lifespan), renewAt: now + (lifespan * 2) / 3 };
    }
    return this.current.token;
  }
}

/** An HS256 JWT for `user`, valid from `now` for `lifespanMs`. */
export function mintToken(key: Uint8Array, user: string, now: number, lifespanMs: number): string {
  const iat = Math.floor(now / 1000);
  const header = base64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const payload = base64url(JSON.stringify({ iat, exp: iat + Math.max(60, Math.floor(lifespanMs / 1000)), sun: user }));
  const signature = createHmac("sha256", key).update(`${header}.${payload}`).digest("base64url");
  return `${header}.${payload}.${signature}`;
}

function base64url(text: string): string {
  return Buffer.from(text, "utf8").toString("base64url");
}
