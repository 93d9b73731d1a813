// How long the compiled `navarch` takes to start and answer, from a directory with no
// node_modules: `navarch --help`, `navarch nodes --help`, and `navarch nodes list` against a
// running `navarch serve` (the same binary, on loopback). Each command runs a few times to warm
// the page cache, then `runs` times; the figure is the median wall time from spawn to exit, and
// the notes give the CPU time the process used (user + system), which a busy machine disturbs less.
import { CompiledFleet } from "../test/compiled.ts";

export interface CliStart {
  command: string;
  /** Wall time from spawn to exit, ms, sorted. */
  wallMs: number[];
  /** CPU time (user + system) of each run, ms, sorted. */
  cpuMs: number[];
}

const COMMANDS: readonly (readonly string[])[] = [["--help"], ["nodes", "--help"], ["nodes", "list"]];

export async function benchCliStart(runs: number, log: (s: string) => void): Promise<CliStart[]> {
  const fleet = await CompiledFleet.create();
  try {
    fleet.writeConfig(
      "pools:\n  - name: bench\n    provider: local\n    instance_type: local-8gpu\n    region: local\n    scaling:\n      min_nodes: 0\n      max_nodes: 1\n",
    );
    fleet.startServer();
    await fleet.waitReady();
    const env = { NAVARCH_SERVER: fleet.url, NAVARCH_AUTH_TOKEN: fleet.token };
    const out: CliStart[] = [];
    for (const args of COMMANDS) {
      const command = `navarch ${args.join(" ")}`;
      log(`CLI start: ${command}, ${runs} runs…`);
      const wallMs: number[] = [];
      const cpuMs: number[] = [];
      for (let i = -3; i < runs; i++) {
        const t0 = performance.now();
        const proc = Bun.spawn([fleet.navarch, ...args], {
          cwd: fleet.dir,
          env: { PATH: "/usr/bin:/bin", HOME: fleet.dir, TMPDIR: fleet.dir, ...env },
          stdin: "ignore",
          stdout: "ignore",
          stderr: "pipe",
        });
        const [code, stderr] = await Promise.all([proc.exited, new Response(proc.stderr).text()]);
        const wall = performance.now() - t0;
        if (code !== 0) throw new Error(`${command} exited ${code}: ${stderr}`);
        const usage = proc.resourceUsage();
        if (i < 0) continue;
        wallMs.push(wall);
        cpuMs.push(usage === undefined ? NaN : Number(usage.cpuTime.user + usage.cpuTime.system) / 1000);
      }
      out.push({ command, wallMs: wallMs.sort((a, b) => a - b), cpuMs: cpuMs.sort((a, b) => a - b) });
    }
    return out;
  } finally {
    fleet.stop();
  }
}
