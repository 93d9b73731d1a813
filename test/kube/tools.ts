// The clients users have, for the chart's tests: helm (scripts/ensure-helm.sh) and kubectl
// (test/kube/build-kubectl.sh), both built from their Go modules into caches outside the
// repo; and the Prometheus Operator's CRDs from its Go module. Each ensure runs its script
// once per process (a no-op when cached).
import { join } from "node:path";
import { parseAllDocuments } from "yaml";

const REPO_ROOT = new URL("../..", import.meta.url).pathname;
export const CHART = join(REPO_ROOT, "deploy/helm/navarch");

async function lastLine(what: string, cmd: string[], log: (line: string) => void): Promise<string> {
  const proc = Bun.spawn(cmd, { cwd: REPO_ROOT, stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  for (const line of err.split("\n")) if (/built in|building|compiling|fetching/.test(line)) log(line);
  if (code !== 0) throw new Error(`${what} failed (exit ${code}):\n${err.split("\n").slice(-30).join("\n")}`);
  return out.trim().split("\n").at(-1) ?? "";
}

const once = new Map<string, Promise<string>>();
/** One run per process; a failed run is forgotten, so a later caller (another test file) tries again. */
const cached = (key: string, make: () => Promise<string>) => {
  if (!once.has(key))
    once.set(
      key,
      make().catch((err: unknown) => {
        once.delete(key);
        throw err;
      }),
    );
  return once.get(key)!;
};

/** helm's path (built on first use: about 3 minutes cold). */
export const ensureHelm = (log: (line: string) => void = console.log) =>
  cached("helm", () => lastLine("scripts/ensure-helm.sh", ["sh", "scripts/ensure-helm.sh"], log));
/** kubectl's path (built on first use inside the Kubernetes binaries' module: about 3 minutes cold). */
export const ensureKubectl = (log: (line: string) => void = console.log) =>
  cached("kubectl", () => lastLine("test/kube/build-kubectl.sh", ["sh", "test/kube/build-kubectl.sh"], log));
/** The directory of the Prometheus Operator's CRD files. */
export const prometheusOperatorCrds = (log: (line: string) => void = console.log) =>
  cached("pocrds", () => lastLine("test/kube/prometheus-operator-crds.sh", ["sh", "test/kube/prometheus-operator-crds.sh"], log));

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

export async function runTool(cmd: string[], opts: { env?: Record<string, string>; stdin?: string } = {}): Promise<Run> {
  const proc = Bun.spawn(cmd, {
    cwd: REPO_ROOT,
    stdout: "pipe",
    stderr: "pipe",
    stdin: opts.stdin === undefined ? "ignore" : new TextEncoder().encode(opts.stdin),
    // Never the machine's own kubeconfig or helm settings.
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/root", KUBECONFIG: "/nonexistent", ...opts.env },
  });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, stdout, stderr };
}

/** helm's stderr without its note about the chart's links to deploy/ (files it reads on purpose). */
export const helmErrors = (stderr: string) =>
  stderr
    .split("\n")
    .filter((l) => l.trim() !== "" && !l.includes("found symbolic link in path"))
    .join("\n");

/** `helm template` of the chart (release navarch in namespace navarch unless args say otherwise); throws on failure. */
export async function helmTemplate(args: string[] = []): Promise<string> {
  const helm = await ensureHelm();
  const r = await runTool([helm, "template", "navarch", CHART, "--namespace", "navarch", ...args]);
  if (r.code !== 0) throw new Error(`helm template ${args.join(" ")} failed: ${helmErrors(r.stderr)}`);
  return r.stdout;
}

/** The chart's CRDs (crds/), as `helm install` applies them. */
export async function helmCrds(): Promise<string> {
  const helm = await ensureHelm();
  const r = await runTool([helm, "show", "crds", CHART]);
  if (r.code !== 0) throw new Error(`helm show crds failed: ${helmErrors(r.stderr)}`);
  return r.stdout;
}

export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [key: string]: unknown;
}

export function parseObjects(yaml: string): KubeObject[] {
  return parseAllDocuments(yaml)
    .map((d) => d.toJSON() as KubeObject | null)
    .filter((o): o is KubeObject => o !== null && typeof o === "object");
}

/** kubectl with a kubeconfig (never the machine's). */
export async function kubectl(kubeconfig: string, args: string[], stdin?: string): Promise<Run> {
  const bin = await ensureKubectl();
  return runTool([bin, `--kubeconfig=${kubeconfig}`, ...args], stdin === undefined ? {} : { stdin });
}
