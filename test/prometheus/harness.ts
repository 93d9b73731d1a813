// The real Prometheus for tests: prometheus and promtool built from the Go module proxy by
// test/prometheus/build.sh into ~/.cache/navarch/prometheus (never committed; the first
// run builds them, later runs find them), and a Prometheus server on 127.0.0.1 with a
// config of the test's own, its HTTP API read through valibot like any other answer.
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as v from "valibot";
import { REPO_ROOT, tempDir, waitFor } from "../support.ts";

export const BUILD_SCRIPT = join(REPO_ROOT, "test/prometheus/build.sh");

export interface PrometheusBinaries {
  bin: string;
  /** Seconds the build took when this call built them (a cold build). */
  builtInSeconds?: number;
}

/** Runs test/prometheus/build.sh (a no-op when the cache has this version); its progress goes to `log`. */
export async function ensurePrometheus(log: (line: string) => void = () => undefined): Promise<PrometheusBinaries> {
  const proc = Bun.spawn(["sh", BUILD_SCRIPT], { stdout: "pipe", stderr: "pipe", cwd: REPO_ROOT });
  const errText = (async () => {
    const lines: string[] = [];
    const decoder = new TextDecoder();
    let buffered = "";
    for await (const chunk of proc.stderr) {
      buffered += decoder.decode(chunk, { stream: true });
      for (let i = buffered.indexOf("\n"); i >= 0; i = buffered.indexOf("\n")) {
        const line = buffered.slice(0, i);
        buffered = buffered.slice(i + 1);
        if (line.startsWith("build.sh:")) log(line);
        lines.push(line);
      }
    }
    return lines;
  })();
  const out = await new Response(proc.stdout).text();
  const lines = await errText;
  const code = await proc.exited;
  if (code !== 0) throw new Error(`test/prometheus/build.sh failed (exit ${code}):\n${lines.slice(-40).join("\n")}`);
  const bin = out.trim().split("\n").at(-1) ?? "";
  if (!existsSync(join(bin, "promtool")) || !existsSync(join(bin, "prometheus")))
    throw new Error(`test/prometheus/build.sh printed ${JSON.stringify(bin)}, which lacks prometheus or promtool`);
  const built = lines.map((l) => /built in (\d+) s/.exec(l)).find((m) => m !== null);
  return { bin, ...(built ? { builtInSeconds: Number(built[1]) } : {}) };
}

/** Runs promtool with these arguments; its exit code and output. */
export function promtool(bin: string, args: string[], cwd = REPO_ROOT): { code: number; output: string } {
  const r = Bun.spawnSync([join(bin, "promtool"), ...args], { cwd, stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode, output: `${r.stdout.toString()}${r.stderr.toString()}` };
}

const Success = <T extends v.GenericSchema>(data: T) => v.object({ status: v.literal("success"), data });
const Vector = Success(
  v.object({
    resultType: v.literal("vector"),
    result: v.array(v.object({ metric: v.record(v.string(), v.string()), value: v.tuple([v.number(), v.string()]) })),
  }),
);
const Rules = Success(
  v.object({
    groups: v.array(
      v.object({
        name: v.string(),
        rules: v.array(
          v.object({
            name: v.string(),
            type: v.string(),
            health: v.string(),
            lastError: v.optional(v.string()),
            state: v.optional(v.string()),
            query: v.string(),
          }),
        ),
      }),
    ),
  }),
);
const Alerts = Success(v.object({ alerts: v.array(v.object({ labels: v.record(v.string(), v.string()), state: v.string(), value: v.string() })) }));
const Targets = Success(
  v.object({ activeTargets: v.array(v.object({ labels: v.record(v.string(), v.string()), health: v.string(), lastError: v.string() })) }),
);
const Names = Success(v.array(v.string()));

export type PrometheusRuleState = v.InferOutput<typeof Rules>["data"]["groups"][number]["rules"][number];

export interface PrometheusServer {
  readonly url: string;
  readonly dir: string;
  /** An instant query's series as label sets with their values. */
  query(promql: string): Promise<{ labels: Record<string, string>; value: number }[]>;
  rules(): Promise<PrometheusRuleState[]>;
  alerts(): Promise<{ labels: Record<string, string>; state: string; value: string }[]>;
  targets(): Promise<{ labels: Record<string, string>; health: string; lastError: string }[]>;
  metricNames(): Promise<string[]>;
  /** Pauses (SIGSTOP) or resumes (SIGCONT) it: connections stay open and nothing answers. */
  signal(signal: "SIGSTOP" | "SIGCONT"): void;
  stop(): Promise<void>;
}

/** Starts prometheus with `config` (prometheus.yml text) on `port`; resolves once it is ready. */
export async function startPrometheus(bin: string, config: string, port: number): Promise<PrometheusServer> {
  const dir = tempDir("navarch-prometheus-");
  writeFileSync(join(dir, "prometheus.yml"), config);
  const url = `http://127.0.0.1:${port}`;
  const proc = Bun.spawn(
    [
      join(bin, "prometheus"),
      `--config.file=${join(dir, "prometheus.yml")}`,
      `--storage.tsdb.path=${join(dir, "data")}`,
      `--web.listen-address=127.0.0.1:${port}`,
      "--log.level=warn",
    ],
    { cwd: dir, stdout: "pipe", stderr: "pipe" },
  );
  const logs: string[] = [];
  void (async () => {
    for await (const chunk of proc.stderr) logs.push(new TextDecoder().decode(chunk));
  })();
  const get = async <S extends v.GenericSchema>(schema: S, path: string): Promise<v.InferOutput<S>> => {
    const response = await fetch(`${url}${path}`);
    const body: unknown = await response.json();
    const parsed = v.safeParse(schema, body);
    if (!parsed.success) throw new Error(`${path}: unexpected answer ${JSON.stringify(body).slice(0, 500)}`);
    return parsed.output;
  };
  try {
    await waitFor(
      "prometheus ready",
      async () => {
        if (proc.exitCode !== null) throw new Error(`prometheus exited ${proc.exitCode}: ${logs.join("")}`);
        const r = await fetch(`${url}/-/ready`).catch(() => undefined);
        return r?.ok ? true : undefined;
      },
      30_000,
    );
  } catch (err) {
    proc.kill();
    throw err;
  }
  return {
    url,
    dir,
    query: async (promql) =>
      (await get(Vector, `/api/v1/query?query=${encodeURIComponent(promql)}`)).data.result.map((r) => ({ labels: r.metric, value: Number(r.value[1]) })),
    rules: async () => (await get(Rules, "/api/v1/rules")).data.groups.flatMap((g) => g.rules),
    alerts: async () => (await get(Alerts, "/api/v1/alerts")).data.alerts,
    targets: async () => (await get(Targets, "/api/v1/targets")).data.activeTargets,
    metricNames: async () => (await get(Names, "/api/v1/label/__name__/values")).data,
    signal: (signal) => void proc.kill(signal),
    stop: async () => {
      proc.kill("SIGCONT");
      proc.kill();
      await proc.exited;
    },
  };
}
