// One Slurm client for every version Navarch speaks. Reads (nodes, jobs, partitions) go to
// slurmrestd with a JWT. Node updates (DRAIN with a reason, RESUME) go to slurmrestd where
// its API has them (POST /slurm/v0.0.39/node/{name}, Slurm 23.02+) and through scontrol
// where it does not (22.05 serves v0.0.38, which cannot update nodes); requeue always goes
// through scontrol. Which is which is decided once from the OpenAPI document the server
// serves (/openapi/v3), so a cluster upgraded to 23.02 moves its writes to REST by itself.
import * as v from "valibot";
import type { Dependency } from "../../dependencies/status.ts";
import { SchedulerError } from "../scheduler.ts";
import {
  API_VERSIONS,
  answerErrors,
  parseJobs,
  parseMeta,
  parseNodes,
  parsePartitions,
  type ApiVersion,
  type SlurmJob,
  type SlurmNode,
  type SlurmPartition,
} from "./api.ts";
import { Scontrol } from "./scontrol.ts";
import type { SlurmTokens } from "./token.ts";
import { textPrefix } from "../../../schema/text.ts";

export interface SlurmClientOptions {
  restUrl: string;
  tokens: SlurmTokens;
  scontrol: Scontrol;
  timeoutMs?: number;
}

/** How this cluster is spoken to, as its slurmrestd reports. */
export interface SlurmDialect {
  release: string;
  reads: ApiVersion;
  /** Node updates over REST (the version's path), or through scontrol. */
  nodeUpdates: { via: "rest"; version: "v0.0.39" } | { via: "scontrol"; why: string };
}

export interface NodeChange {
  state?: "DRAIN" | "RESUME";
  reason?: string;
  comment?: string;
}

const OpenApi = v.looseObject({ paths: v.record(v.string(), v.looseObject({ post: v.optional(v.unknown()), get: v.optional(v.unknown()) })) });

/** How to speak to a slurmrestd serving these OpenAPI paths (each path's methods). */
export function dialectFor(paths: Readonly<Record<string, Readonly<Record<string, unknown>>>>): Omit<SlurmDialect, "release"> {
  const has = (path: string, method: "get" | "post") => paths[path]?.[method] !== undefined || paths[`${path}/`]?.[method] !== undefined;
  const reads = API_VERSIONS.find((version) => has(`/slurm/${version}/nodes`, "get") && has(`/slurm/${version}/jobs`, "get"));
  if (reads === undefined) {
    const served = [...new Set(Object.keys(paths).flatMap((p) => /^\/slurm\/(v[\d.]+)\//.exec(p)?.[1] ?? []))];
    throw new SchedulerError(
      "slurm",
      "invalid",
      `slurmrestd serves ${served.length > 0 ? served.join(", ") : "no slurm API"}; Navarch speaks ${API_VERSIONS.join(" and ")} (start slurmrestd with -s openapi/v0.0.38 or openapi/v0.0.39)`,
    );
  }
  const nodeUpdates: SlurmDialect["nodeUpdates"] = has("/slurm/v0.0.39/node/{node_name}", "post")
    ? { via: "rest", version: "v0.0.39" }
    : { via: "scontrol", why: `slurmrestd serves ${reads}, which cannot update nodes` };
  return { reads, nodeUpdates };
}

export class SlurmClient {
  private dialect: SlurmDialect | undefined;
  /** Aborts every request in flight when the client closes: a stop never waits for slurmrestd. */
  private readonly closing = new AbortController();
  private dependency: Dependency | undefined;

  constructor(private readonly opts: SlurmClientOptions) {}

  /** Reports every request's outcome to `dependency`: no answer, a 5xx or refused credentials is slurmrestd down. */
  reportTo(dependency: Dependency): void {
    this.dependency = dependency;
  }

  close(): void {
    this.closing.abort(new SchedulerError("slurm", "unreachable", "the Slurm client is closed"));
    this.opts.scontrol.stop();
  }

  get url(): string {
    return this.opts.restUrl;
  }

  /** The dialect, read from the server on first use. */
  async connect(): Promise<SlurmDialect> {
    this.dialect ??= await this.detect();
    return this.dialect;
  }

  describe(d: SlurmDialect): string {
    const writes = d.nodeUpdates.via === "rest" ? `node updates over REST ${d.nodeUpdates.version}` : `node updates through scontrol (${d.nodeUpdates.why})`;
    return `Slurm ${d.release} at ${this.opts.restUrl}: reads over REST ${d.reads}, ${writes}, requeue through scontrol`;
  }

  async nodes(): Promise<SlurmNode[]> {
    const d = await this.connect();
    return parseNodes(d.reads, await this.get(`/slurm/${d.reads}/nodes`));
  }

  /** One node, read now; undefined when the cluster has no such node. */
  async node(name: string): Promise<SlurmNode | undefined> {
    const d = await this.connect();
    try {
      return parseNodes(d.reads, await this.get(`/slurm/${d.reads}/node/${encodeURIComponent(name)}`))[0];
    } catch (err) {
      if (err instanceof SchedulerError && err.kind === "not_found") return undefined;
      throw err;
    }
  }

  async jobs(): Promise<SlurmJob[]> {
    const d = await this.connect();
    return parseJobs(await this.get(`/slurm/${d.reads}/jobs`));
  }

  async partitions(): Promise<SlurmPartition[]> {
    const d = await this.connect();
    return parsePartitions(d.reads, await this.get(`/slurm/${d.reads}/partitions`));
  }

  async updateNode(name: string, change: NodeChange): Promise<void> {
    const d = await this.connect();
    if (d.nodeUpdates.via === "scontrol") {
      await this.opts.scontrol.updateNode(name, change);
      return;
    }
    // v0.0.39_update_node_msg: state is a list of flags, reason and comment strings.
    const body: Record<string, unknown> = {};
    if (change.state !== undefined) body.state = [change.state];
    if (change.reason !== undefined) body.reason = change.reason;
    if (change.comment !== undefined) body.comment = change.comment;
    await this.request("POST", `/slurm/${d.nodeUpdates.version}/node/${encodeURIComponent(name)}`, body);
  }

  requeue(jobIds: readonly number[]): Promise<void> {
    return this.opts.scontrol.requeue(jobIds);
  }

  private async detect(): Promise<SlurmDialect> {
    const parsed = v.safeParse(OpenApi, await this.get("/openapi/v3"));
    if (!parsed.success) throw new SchedulerError("slurm", "invalid", `${this.opts.restUrl}/openapi/v3 is not an OpenAPI document slurmrestd serves`);
    const dialect = dialectFor(parsed.output.paths);
    const { release } = parseMeta(await this.get(`/slurm/${dialect.reads}/ping`));
    return { ...dialect, release };
  }

  private get(path: string): Promise<unknown> {
    return this.request("GET", path);
  }

  private async request(method: "GET" | "POST", path: string, body?: unknown): Promise<unknown> {
    const url = `${this.opts.restUrl.replace(/\/+$/, "")}${path}`;
    let response: Response;
    try {
      response = await fetch(url, {
        method,
        headers: {
          "X-SLURM-USER-NAME": this.opts.tokens.user,
          "X-SLURM-USER-TOKEN": this.opts.tokens.token(),
          Accept: "application/json",
          ...(body !== undefined ? { "Content-Type": "application/json" } : {}),
        },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.any([AbortSignal.timeout(this.opts.timeoutMs ?? 10_000), this.closing.signal]),
      });
    } catch (err) {
      const error = new SchedulerError("slurm", "unreachable", `${method} ${url}: ${err instanceof Error ? err.message : String(err)}`);
      if (!this.closing.signal.aborted) this.dependency?.failed(error);
      throw error;
    }
    if (response.status >= 500 || response.status === 401 || response.status === 403)
      this.dependency?.failed(new SchedulerError("slurm", "unreachable", `${method} ${url}: HTTP ${response.status}`));
    else this.dependency?.ok();
    const text = await response.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    // slurmrestd answers 401 with a plain line when the token or user is refused.
    if (response.status === 401 || response.status === 403) {
      throw new SchedulerError(
        "slurm",
        "auth",
        `${method} ${path}: ${response.status} ${textPrefix(text.trim(), 200)} (slurm.user ${this.opts.tokens.user}; is the token or jwt_key_file the cluster's?)`,
      );
    }
    const errors = answerErrors(json);
    if (!response.ok || errors !== "") {
      const what = errors || textPrefix(text.trim(), 200) || `HTTP ${response.status}`;
      const kind =
        response.status === 404 || /invalid node name|invalid job id|unable to find/i.test(what)
          ? "not_found"
          : /access.?denied|permission|authentication|invalid user/i.test(what)
            ? "auth"
            : response.status >= 500
              ? "unreachable"
              : "refused";
      throw new SchedulerError("slurm", kind, `${method} ${path}: ${what}`);
    }
    if (json === undefined) throw new SchedulerError("slurm", "invalid", `${method} ${path}: the answer is not JSON`);
    return json;
  }
}
