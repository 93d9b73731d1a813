// The database failing under a running Navarch: the compiled `navarch serve` on a real libSQL
// server (sqld 0.24, test/sqld/harness.ts) reached through a link the test cuts
// (test/faults/link.ts), with a local pool of compiled agents (test/faults/served.ts). Without
// its database Navarch cannot act at all, so it must say so and never hang: /readyz answers
// at once that it is not ready, a signal stops serve within 5 s (also while the database does
// not answer at start), the leader steps down when it cannot renew its lease and never says it
// stands by for itself, and everything goes on once the database answers again.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { FaultyLink } from "./faults/link.ts";
import { ServedFleet } from "./faults/served.ts";
import { startSqld, type Sqld } from "./sqld/harness.ts";
import { waitFor } from "./support.ts";

let sqld: Sqld;
let link: FaultyLink;
const fleets: ServedFleet[] = [];

beforeAll(async () => {
  sqld = await startSqld();
  link = new FaultyLink({ port: sqld.port });
}, 120_000);

afterAll(async () => {
  process.kill(sqld.pid, "SIGCONT");
  for (const f of fleets) await f.stop();
  link.stop();
  await sqld.stop();
}, 60_000);

async function served(): Promise<ServedFleet> {
  const f = await ServedFleet.create({ sections: `  database_url: http://${link.address}\n` });
  fleets.push(f);
  return f;
}

/** /readyz's answer and how long it took. */
async function timedReadyz(f: ServedFleet): Promise<{ status: number; text: string; ms: number }> {
  const sent = performance.now();
  const r = await f.readyz();
  return { ...r, ms: performance.now() - sent };
}

/** Lines where this reconciler says it stands by for a leader that is itself. */
function standbyForItself(f: ServedFleet): string[] {
  const holders = [...f.log().matchAll(/as (\S+)$/gm)].map((m) => m[1]!);
  return f
    .log()
    .split("\n")
    .filter((l) => /standby|standing by/.test(l) && holders.some((h) => l.includes(`the leader is ${h}`)));
}

describe("the database (sqld) does not answer", () => {
  test("paused (SIGSTOP) mid-incident: not ready at once, the lease steps down cleanly, all goes on once it answers; a signal stops serve within 5 s", async () => {
    link.set("up");
    const f = await served();
    await f.start();
    const [a] = await f.ready(2);
    await f.xid(a!);

    process.kill(sqld.pid, "SIGSTOP");
    try {
      const r = await waitFor("/readyz not ready", async () => {
        const got = await timedReadyz(f);
        return got.status === 503 ? got : undefined;
      });
      console.log(`with sqld paused: /readyz ${r.status} in ${Math.round(r.ms)} ms: ${r.text}`);
      expect(r.ms).toBeLessThan(3_000);
      expect(r.text).toMatch(/^not ready: /);
      expect((await fetch(`${f.url}/healthz`)).status).toBe(200);
      // Past the renew deadline: the leader stops acting, and says why, with the cause.
      await waitFor("the leader steps down", () => (/standing by: the lease was not renewed/.test(f.log()) ? true : undefined), 30_000);
      expect(f.log()).toMatch(/leader lease: .+/);
    } finally {
      process.kill(sqld.pid, "SIGCONT");
    }
    await waitFor("ready again", async () => ((await f.readyz()).status === 200 ? true : undefined), 30_000);
    await waitFor("leading again", () => (/leading \(lease epoch 2\)/.test(f.log()) ? true : undefined), 30_000);
    // The incident goes on: a's replacement comes up and the pool is whole again.
    await waitFor(
      "two ready nodes again, a gone",
      async () => {
        const nodes = await f.nodes();
        return nodes.filter((n) => n.state === "ready").length === 2 && nodes.find((n) => n.id === a)?.state === "terminated" ? true : undefined;
      },
      90_000,
    );
    expect(standbyForItself(f)).toEqual([]);

    // Paused again, a stop has the database's requests hanging: it still ends within 5 s.
    process.kill(sqld.pid, "SIGSTOP");
    try {
      await Bun.sleep(1_000);
      const stop = await f.signal("SIGTERM");
      console.log(`SIGTERM with sqld paused: exited ${stop.code} in ${Math.round(stop.ms)} ms`);
      expect(stop.ms).toBeLessThan(5_000);
    } finally {
      process.kill(sqld.pid, "SIGCONT");
    }
  }, 240_000);

  test("refused (its port closed), and black-holed at start: not ready with the reason; a signal stops serve within 5 s", async () => {
    link.set("up");
    const f = await served();
    await f.start();
    await f.ready(2);
    link.set("refuse");
    const r = await waitFor("/readyz not ready", async () => {
      const got = await timedReadyz(f);
      return got.status === 503 ? got : undefined;
    });
    console.log(`with sqld's port closed: /readyz ${r.status} in ${Math.round(r.ms)} ms: ${r.text}`);
    expect(r.ms).toBeLessThan(3_000);
    link.set("up");
    await waitFor("ready again", async () => ((await f.readyz()).status === 200 ? true : undefined), 30_000);
    expect((await f.signal("SIGTERM")).ms).toBeLessThan(5_000);

    // The database black-holed before serve starts: the start waits on it, and SIGTERM still ends it.
    link.set("blackhole");
    f.server = f.fleet.start("navarch", [f.fleet.navarch, "serve", "--config", "navarch.yaml"], { NAVARCH_AUTH_TOKEN: f.fleet.token });
    await Bun.sleep(2_000);
    const stop = await f.signal("SIGTERM");
    console.log(`SIGTERM while the start waited for a black-holed sqld: exited ${stop.code} in ${Math.round(stop.ms)} ms`);
    expect(stop.ms).toBeLessThan(5_000);
    link.set("up");
  }, 180_000);
});
