// The agent's own configuration file (`navarch-node --config`, /etc/navarch/agent.yaml): what
// this machine will do when the reconciler asks. A request names a check; the agent runs only
// a check defined here, with the command and timeout written here, never a command from the
// request. So a compromised reconciler can make an agent run only what its machine's owner
// allowed. In schema/ because the installer and the Helm chart will render this file from a
// pool's config, and the agent checks it with this schema.
import * as v from "valibot";
import { accept, isRecord, show, strict } from "./shapes.ts";
import { CHECK_NAME_PATTERN } from "./wire.ts";

/** Where the agent looks when no --config is given (read only when it exists). */
export const AGENT_CONFIG_PATH = "/etc/navarch/agent.yaml";

/** Most checks one file defines: far above any real list, far below a runaway one. */
export const MAX_AGENT_CHECKS = 256;
/** Longest command line one check may have. */
const MAX_COMMAND = 4096;

const DURATION_UNITS_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;
const DURATION_PATTERN = /^(?:\d+(?:\.\d+)?(?:ms|s|m|h))+$/;

/**
 * `10m`, `1h30m`, `90s` → milliseconds; undefined for anything else. The same grammar as the
 * reconciler's config (Go's), written again here so that the agent does not load that schema.
 */
export function parseAgentDuration(text: string): number | undefined {
  if (!DURATION_PATTERN.test(text)) return undefined;
  let total = 0;
  for (const [, amount, unit] of text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g))
    total += Number(amount) * DURATION_UNITS_MS[unit as keyof typeof DURATION_UNITS_MS];
  return Math.round(total);
}

/** A check's timeout bounds: a check that ends in under a second needs no agent, one past a day is a mistake. */
export const CHECK_TIMEOUT_MS = { min: 1000, max: 24 * 3_600_000 } as const;

const Timeout = v.pipe(
  accept<string>((x) => {
    const ms = typeof x === "string" ? parseAgentDuration(x) : undefined;
    return ms !== undefined && ms >= CHECK_TIMEOUT_MS.min && ms <= CHECK_TIMEOUT_MS.max;
  }, "a duration from 1s to 24h, like 30s, 10m or 1h30m"),
  v.transform((text) => parseAgentDuration(text)!),
);

const OneLine = (x: unknown): x is string => typeof x === "string" && x.trim() !== "" && x.length <= MAX_COMMAND && !/[\0\n\r]/.test(x);

/**
 * What to run: a command line for `/bin/sh -c` (`dcgmi diag -r 2 -j`), or a list that is run as
 * it is, without a shell (`[dcgmi, diag, -r, "2", -j]`).
 */
const Command = v.union(
  [
    accept<string>(OneLine, "a command line"),
    v.pipe(
      v.array(accept<string>((x) => typeof x === "string" && x.length <= MAX_COMMAND && !x.includes("\0"), "a string")),
      v.check((argv) => argv.length >= 1 && argv.length <= 256 && argv[0]!.trim() !== "", "must list a program and its arguments (1 to 256 items)"),
    ),
  ],
  (issue) => `expected a command line (one line, at most ${MAX_COMMAND} characters) or a list of a program and its arguments, got ${show(issue.input)}`,
);

export const AgentCheck = strict(
  {
    run: Command,
    timeout: Timeout,
    /** What it checks, for people reading the file. */
    description: v.optional(accept<string>((x) => typeof x === "string" && x.length <= 1024, "a string of at most 1024 characters")),
  },
  { what: "a check (run and timeout)", listAllowed: true },
);
export type AgentCheck = v.InferOutput<typeof AgentCheck>;

const CheckKey = v.pipe(
  v.string(),
  v.check(
    (name) => CHECK_NAME_PATTERN.test(name),
    (issue) => `${show(issue.input)} is not a check name: 1 to 63 lowercase letters, digits, '-' or '_', starting with a letter`,
  ),
);

const Checks = v.pipe(
  v.custom<Record<string, unknown>>(isRecord, (issue) => `expected a mapping of check names to checks, got ${show(issue.input)}`),
  v.record(CheckKey, AgentCheck),
  v.check(
    (checks) => Object.keys(checks).length <= MAX_AGENT_CHECKS,
    (issue) => `defines ${Object.keys(issue.input).length} checks; at most ${MAX_AGENT_CHECKS}`,
  ),
);

export const AgentConfigSchema = strict(
  {
    /** The checks this machine may be asked to run, by name. */
    checks: v.optional(Checks, {}),
  },
  { what: "the agent's configuration", listAllowed: true },
);
export type AgentConfig = v.InferOutput<typeof AgentConfigSchema>;

/** A file that defines nothing: every request is refused. */
export const EMPTY_AGENT_CONFIG: AgentConfig = { checks: {} };

/** The program and arguments a check runs: a command line goes to /bin/sh -c. */
export function commandOf(check: AgentCheck): string[] {
  return typeof check.run === "string" ? ["/bin/sh", "-c", check.run] : [...check.run];
}
