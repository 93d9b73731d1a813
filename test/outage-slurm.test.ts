// slurmrestd and slurmctld failing under a running Navarch, on the real parts: the compiled
// `navarch serve` with a local pool of compiled agents (test/faults/served.ts) reads a real
// Slurm 22.05 (test/slurm/harness.ts) through a link the test cuts (test/faults/link.ts); node
// updates and requeues go through scontrol to slurmctld, as on 22.05. What the issue saw with
// `slurm:` pointing at a slurmrestd that does not answer: no pass at all, a flapping lease, a
// SIGTERM ignored. Now: the pool comes up, an Xid 79 is quarantined in Navarch at once and
// says what its drain waits for, the DRAIN reaches Slurm within one retry once slurmrestd
// answers, a signal stops serve within 5 s, and the lease never flaps. The same when slurmctld
// is paused (SIGSTOP) or slurmrestd's port closes in the middle of a drain.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { FaultyLink } from "./faults/link.ts";
import { ServedFleet } from "./faults/served.ts";
import { ensureSlurm, startSlurmHarness, type SlurmHarness } from "./slurm/harness.ts";
import { waitFor } from "./support.ts";

let slurm: SlurmHarness;
let link: FaultyLink;
const fleets: ServedFleet[] = [];

beforeAll(async () => {
  ensureSlurm();
  slurm = await startSlurmHarness({ slots: 2 });
  link = new FaultyLink({ port: Number(new URL(slurm.restUrl).port) });
}, 10 * 60_000);

afterAll(async () => {
  slurm?.signal("slurmctld", "SIGCONT");
  for (const f of fleets) await f.stop();
  link?.stop();
  await slurm?.stop();
}, 60_000);

async function served(): Promise<ServedFleet> {
  await slurm.reset();
  const f = await ServedFleet.create({
    sections: `slurm:\n  rest_url: http://${link.address}\n  user: ${slurm.user}\n  jwt_key_file: ${slurm.jwtKeyPath}\n  slurm_conf: ${slurm.confPath}\n  node_mapping: feature\n  poll_interval: 250ms\n`,
  });
  fleets.push(f);
  return f;
}

/** Boots slot `slot` as Navarch node `id`'s machine: its slurmd runs and its feature names the node (slurm.node_mapping: feature). */
async function machine(slot: string, id: string): Promise<void> {
  await slurm.bootMachine(slot, slot);
  await slurm.run("scontrol", ["update", `NodeName=${slot}`, `AvailableFeatures=navarch-node=${id}`, `ActiveFeatures=navarch-node=${id}`]);
}

/** Whether the slot carries Navarch's DRAIN (its marker in the comment), as scontrol shows it. */
async function drainedInSlurm(slot: string, id: string): Promise<boolean> {
  const node = await slurm.node(slot);
  return node.state.includes("DRAIN") && node.comment.includes(id);
}

describe("slurmrestd does not answer", () => {
  test("from start: the pool comes up, an Xid 79 is quarantined at once, SIGTERM stops serve; the DRAIN lands within one retry once slurmrestd answers", async () => {
    link.set("blackhole");
    const f = await served();
    const started = performance.now();
    await f.start();
    const [a, b] = await f.ready(2);
    console.log(`with slurmrestd black-holed, the local pool came up in ${Math.round(performance.now() - started)} ms`);
    await machine("slot1", a!);
    await machine("slot2", b!);

    const quarantineMs = await f.xid(a!);
    console.log(`Xid 79 → out of service in Navarch: ${Math.round(quarantineMs)} ms (slurmrestd not answering)`);
    expect(quarantineMs).toBeLessThan(10_000);
    const node = await waitFor("a's reason says what its drain waits for", async () => {
      const n = await f.node(a!);
      return n?.stateReason?.includes("waiting for slurmrestd") ? n : undefined;
    });
    expect((await f.incident(node.incidentId!))?.status).toContain("waiting for slurmrestd");
    const readyz = await f.readyz();
    expect(readyz.status).toBe(200);
    expect(readyz.text).toContain("degraded: slurm (slurmrestd at http://127.0.0.1:");
    const dep = await f.dependency("slurm");
    expect(dep?.state).not.toBe("up");
    expect(dep?.queued).toContainEqual(expect.objectContaining({ action: "cordon", node: a }));

    const stop = await f.signal("SIGTERM");
    console.log(`SIGTERM with slurmrestd black-holed: exited ${stop.code} in ${Math.round(stop.ms)} ms`);
    expect(stop.code).toBe(0);
    expect(stop.ms).toBeLessThan(5_000);
    expect(f.leaseFlaps()).toEqual([]);

    await f.start();
    expect(await f.xid(b!)).toBeLessThan(10_000);
    expect(await drainedInSlurm("slot1", a!)).toBe(false);

    link.set("up");
    const back = performance.now();
    await waitFor(
      "both slots drained in Slurm",
      async () => ((await drainedInSlurm("slot1", a!)) && (await drainedInSlurm("slot2", b!)) ? true : undefined),
      30_000,
    );
    const landedMs = performance.now() - back;
    console.log(`the DRAINs reached Slurm ${Math.round(landedMs)} ms after slurmrestd answered again`);
    expect(landedMs).toBeLessThan(15_000);
    await waitFor("the dependency up", async () => ((await f.dependency("slurm"))?.state === "up" ? true : undefined));
    expect(f.log().match(new RegExp(`slurm: drained slot2 for ${b}`, "g"))).toHaveLength(1);

    const again = await f.signal("SIGINT");
    expect(again.ms).toBeLessThan(5_000);
    expect(f.leaseFlaps()).toEqual([]);
  }, 240_000);

  test("mid-drain: slurmctld paused (SIGSTOP), slurmrestd's port closed: Navarch goes on quarantining, the DRAIN lands once it is back, SIGTERM stops serve within 5 s", async () => {
    link.set("up");
    const f = await served();
    await f.start();
    const [a, b] = await f.ready(2);
    await machine("slot1", a!);
    await machine("slot2", b!);
    await f.mapped(a!);
    await f.mapped(b!);
    // A job on a's machine: its drain waits for it (drain_timeout 30 m).
    const job = await slurm.sbatch(["-w", "slot1", "--wrap", "sleep 600"]);
    await waitFor("the job running", async () => ((await slurm.job(job))?.state === "RUNNING" ? true : undefined), 30_000);
    await f.xid(a!);
    await waitFor("a drained in Slurm", async () => ((await drainedInSlurm("slot1", a!)) ? true : undefined), 30_000);
    await waitFor("a's drain waits for its job", async () => ((await f.node(a!))?.stateReason?.includes(`job(s) running on slot1`) ? true : undefined), 30_000);

    slurm.signal("slurmctld", "SIGSTOP");
    try {
      const quarantineMs = await f.xid(b!);
      console.log(`Xid 79 → out of service in Navarch with slurmctld paused mid-drain: ${Math.round(quarantineMs)} ms`);
      expect(quarantineMs).toBeLessThan(10_000);
      await waitFor("slurm down", async () => ((await f.dependency("slurm"))?.state === "down" ? true : undefined), 60_000);
      expect((await f.readyz()).text).toContain("degraded: slurm");
    } finally {
      slurm.signal("slurmctld", "SIGCONT");
    }
    const back = performance.now();
    await waitFor("b drained in Slurm", async () => ((await drainedInSlurm("slot2", b!)) ? true : undefined), 30_000);
    console.log(`b's DRAIN reached Slurm ${Math.round(performance.now() - back)} ms after slurmctld was resumed`);
    expect(performance.now() - back).toBeLessThan(20_000);

    // slurmrestd's port closed (the daemon down): refused at once; a's drain goes on once it is back.
    link.set("refuse");
    await waitFor("slurm down", async () => ((await f.dependency("slurm"))?.state === "down" ? true : undefined), 30_000);
    await waitFor(
      "a's status says what the drain waits for",
      async () => ((await f.node(a!))?.stateReason?.includes("waiting for slurmrestd") ? true : undefined),
      30_000,
    );
    link.set("up");
    await waitFor("slurm up", async () => ((await f.dependency("slurm"))?.state === "up" ? true : undefined), 30_000);
    await waitFor(
      "a's drain waits for its job again",
      async () => ((await f.node(a!))?.stateReason?.includes(`job(s) running on slot1`) ? true : undefined),
      30_000,
    );
    expect((await f.node(a!))?.state).toBe("draining");

    // slurmctld paused again, with scontrol and REST calls hanging on it: a signal still stops serve within 5 s.
    slurm.signal("slurmctld", "SIGSTOP");
    try {
      await Bun.sleep(2_000);
      const stop = await f.signal("SIGTERM");
      console.log(`SIGTERM with slurmctld paused: exited ${stop.code} in ${Math.round(stop.ms)} ms`);
      expect(stop.ms).toBeLessThan(5_000);
    } finally {
      slurm.signal("slurmctld", "SIGCONT");
    }
    expect(f.leaseFlaps()).toEqual([]);
    await slurm.run("scancel", [String(job)]).catch(() => undefined);
  }, 240_000);
});
