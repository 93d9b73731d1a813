// The README and docs/ say what the binaries do, checked:
// - the README stays a newcomer's page (at most 250 lines);
// - every relative link and #anchor resolves;
// - every shell block a reader would paste runs: `<!-- test: in the repository -->` (or no
//   comment) in a temporary directory holding links to the repository's files (the compiled
//   binaries in dist/ among them), `<!-- test: beside the demo -->` in the directory of a
//   running `navarch demo` (what `npm start` runs) inside a network namespace of its own, so
//   its port is the documented 50051; a block that cannot run here says
//   `<!-- not run: why -->`;
// - every key of the config schema is in docs/configuration.md, every key there is one, and
//   the reconciler's code reads each (a key nothing reads does nothing);
// - every command and flag of `navarch --help` and `navarch-node --help` is in docs/cli.md,
//   and every navarch flag there is accepted by the binary;
// - docs/performance.md is what bench/page.ts renders from bench/figures.json.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import * as v from "valibot";
import { performancePage } from "../bench/page.ts";
import { AUTOSCALER_TYPES, NavarchConfigSchema } from "../schema/config.ts";
import type { SchemaNode } from "../schema/shapes.ts";
import { ensureBinaries } from "./prerequisites.ts";
import { FAKE_NVML, buildFakeNvml } from "./fake-nvml/control.ts";
import { REPO_ROOT, tempDir, waitFor } from "./support.ts";

const PAGES = ["README.md", ...readdirSync(join(REPO_ROOT, "docs")).map((f) => `docs/${f}`)].filter((f) => f.endsWith(".md"));
const text = (page: string) => readFileSync(join(REPO_ROOT, page), "utf8");

// ───────────────────────────── markdown ─────────────────────────────

/** GitHub's heading anchors: lowercase, punctuation dropped, spaces to hyphens, duplicates numbered. */
function anchors(markdown: string): Set<string> {
  const out = new Set<string>();
  const seen = new Map<string, number>();
  let fenced = false;
  for (const line of markdown.split("\n")) {
    if (line.startsWith("```")) fenced = !fenced;
    const m = fenced ? null : /^#{1,6} (.*)$/.exec(line);
    if (m === null) continue;
    const slug = m[1]!
      .toLowerCase()
      .replace(/[^\p{L}\p{N} _-]/gu, "")
      .replace(/ /g, "-");
    const n = seen.get(slug) ?? 0;
    seen.set(slug, n + 1);
    out.add(n === 0 ? slug : `${slug}-${n}`);
  }
  return out;
}

interface Block {
  page: string;
  line: number;
  /** `not run: …`, `test: beside the demo`, `test: in the repository`, or "" when unmarked. */
  mark: string;
  code: string;
}

/** Every shell block, with the HTML comment on the line before it (blank lines skipped). */
function shellBlocks(page: string): Block[] {
  const lines = text(page).split("\n");
  const out: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (!/^```(sh|bash|shell)\s*$/.test(lines[i]!)) {
      if (lines[i]!.startsWith("```")) while (++i < lines.length && !lines[i]!.startsWith("```"));
      continue;
    }
    let j = i - 1;
    while (j >= 0 && lines[j]!.trim() === "") j--;
    const mark = /^<!-- (.*) -->$/.exec(lines[j] ?? "")?.[1] ?? "";
    const start = i;
    const body: string[] = [];
    while (++i < lines.length && !lines[i]!.startsWith("```")) body.push(lines[i]!);
    out.push({ page, line: start + 1, mark, code: body.join("\n") });
  }
  return out;
}

const BLOCKS = PAGES.flatMap(shellBlocks);

describe("the README and docs/", () => {
  test("the README is a newcomer's page: at most 250 lines", () => {
    expect(text("README.md").split("\n").length).toBeLessThanOrEqual(250);
  });

  test("every relative link names a file that exists, and every #anchor a heading it has", () => {
    const broken: string[] = [];
    for (const page of PAGES) {
      const dir = page.includes("/") ? page.slice(0, page.lastIndexOf("/")) : ".";
      for (const [, target] of text(page).matchAll(/\]\(([^)\s]+)\)/g)) {
        if (/^[a-z]+:/.test(target!)) continue;
        const [path, anchor] = target!.split("#") as [string, string | undefined];
        const file = path === "" ? page : join(dir, path);
        if (!existsSync(join(REPO_ROOT, file))) broken.push(`${page}: ${target} (no ${file})`);
        else if (anchor !== undefined && file.endsWith(".md") && !anchors(text(file)).has(anchor))
          broken.push(`${page}: ${target} (no heading #${anchor} in ${file})`);
      }
    }
    expect(broken).toEqual([]);
  });

  test("every shell block is run here, or says why not", () => {
    const unexplained = BLOCKS.filter((b) => b.mark.startsWith("not run") && !/^not run: .{20,}/.test(b.mark)).map((b) => `${b.page}:${b.line}`);
    expect(unexplained).toEqual([]);
    const unknown = BLOCKS.filter(
      (b) => b.mark !== "" && !b.mark.startsWith("not run: ") && !["test: beside the demo", "test: in the repository"].includes(b.mark),
    );
    expect(unknown.map((b) => `${b.page}:${b.line}: ${b.mark}`)).toEqual([]);
    expect(BLOCKS.filter((b) => b.mark === "test: beside the demo").length).toBeGreaterThan(0);
  });

  test("docs/performance.md is what bench/page.ts renders from bench/figures.json", () => {
    expect(text("docs/performance.md") === performancePage(), "docs/performance.md is stale: run bun run bench/page.ts").toBe(true);
  });
});

// ───────────────────────────── the shell blocks ─────────────────────────────

let dist = "";
/** A directory that looks like the repository (links to its entries), with nothing of it written. */
function repositoryLike(): string {
  const dir = tempDir("navarch-docs-");
  for (const entry of readdirSync(REPO_ROOT)) {
    if (["data", "node_modules", ".git", "dist"].includes(entry)) continue;
    symlinkSync(join(REPO_ROOT, entry), join(dir, entry));
  }
  symlinkSync(dist, join(dir, "dist"));
  return dir;
}

async function runBlock(b: Block, cwd: string, wrap: (cmd: string[]) => string[] = (c) => c): Promise<void> {
  const proc = Bun.spawn(wrap(["sh", "-eu", "-c", b.code]), {
    cwd,
    env: { PATH: "/usr/local/bin:/usr/bin:/bin", HOME: cwd, TMPDIR: cwd },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const timer = setTimeout(() => proc.kill("SIGKILL"), 60_000);
  const [code, out, err] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  clearTimeout(timer);
  expect({ block: `${b.page}:${b.line}`, code, output: code === 0 ? "" : `${out}${err}`.slice(-3000) }).toEqual({
    block: `${b.page}:${b.line}`,
    code: 0,
    output: "",
  });
}

beforeAll(async () => {
  const built = await ensureBinaries();
  dist = join(tempDir("navarch-docs-dist-"), "dist");
  mkdirSync(dist);
  for (const [name, path] of [
    ["navarch", built.navarch],
    ["navarch-node", built.navarchNode],
  ] as const)
    symlinkSync(path, join(dist, name));
}, 240_000);

describe("shell blocks in the repository", () => {
  for (const b of BLOCKS.filter((x) => x.mark === "" || x.mark === "test: in the repository")) {
    test(`${b.page}:${b.line}`, () => runBlock(b, repositoryLike()));
  }
});

describe("shell blocks beside the demo", () => {
  const IP = "/usr/sbin/ip";
  const NS = `navarch-docs-${process.pid}`;
  let demo: ReturnType<typeof Bun.spawn> | undefined;
  let dir = "";
  let log = "";
  const inNs = (cmd: string[]) => [IP, "netns", "exec", NS, ...cmd];

  beforeAll(async () => {
    if (process.getuid?.() !== 0) throw new Error("the demo's blocks run in a network namespace of their own: this needs root (ip netns add)");
    buildFakeNvml();
    Bun.spawnSync([IP, "netns", "del", NS], { stderr: "ignore" });
    for (const cmd of [[IP, "netns", "add", NS], inNs([IP, "link", "set", "lo", "up"])]) {
      const r = Bun.spawnSync(cmd, { stderr: "pipe" });
      if (r.exitCode !== 0) throw new Error(`${cmd.join(" ")}: ${r.stderr.toString()}`);
    }
    dir = repositoryLike();
    // What npm start runs after building: the demo with the fake library, in this directory (./data).
    demo = Bun.spawn(inNs([join(dist, "navarch"), "demo", "--nvml-library", FAKE_NVML.full]), {
      cwd: dir,
      env: { PATH: "/usr/bin:/bin", HOME: dir, TMPDIR: dir },
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    });
    for (const stream of [demo.stdout, demo.stderr] as ReadableStream<Uint8Array>[])
      void (async () => {
        for await (const chunk of stream) log += new TextDecoder().decode(chunk);
      })();
    await waitFor("the demo's broken node back in service", () => (log.includes("after a reboot; back in service") ? true : undefined), 90_000).catch(
      (err: unknown) => {
        throw new Error(`${String(err)}\n${log.slice(-3000)}`);
      },
    );
  }, 120_000);

  afterAll(async () => {
    if (process.env.NAVARCH_TEST_VERBOSE) console.log(log);
    demo?.kill("SIGINT");
    await Promise.race([demo?.exited, Bun.sleep(20_000)]);
    demo?.kill("SIGKILL");
    Bun.spawnSync([IP, "netns", "del", NS], { stderr: "ignore" });
    if (dir !== "") rmSync(join(dir, "data"), { recursive: true, force: true });
  }, 30_000);

  for (const b of BLOCKS.filter((x) => x.mark === "test: beside the demo")) {
    test(`${b.page}:${b.line}`, () => runBlock(b, dir, inNs), 70_000);
  }
});

// ───────────────────────────── config keys ─────────────────────────────

/** Every key path of the config schema: `server.require_tls`, `pools[].health.reboot_window`, `safety.breaker.min_cordons`. */
function keyPaths(schema: SchemaNode, at: string): string[] {
  if (Array.isArray(schema.pipe) && schema.pipe.length > 0) {
    const inner = schema.pipe.slice(1).find((i) => ["loose_object", "object", "strict_object", "array"].includes(i.type));
    return keyPaths(inner ?? schema.pipe[0]!, at);
  }
  switch (schema.type) {
    case "optional":
      return keyPaths(schema.wrapped!, at);
    case "loose_object":
    case "object":
    case "strict_object":
      return Object.entries(schema.entries ?? {}).flatMap(([k, e]) => [`${at}${k}`, ...keyPaths(e, `${at}${k}.`)]);
    case "array":
      return keyPaths(schema.item!, at.replace(/\.$/, "[]."));
    default:
      return [];
  }
}

/** The sections of docs/configuration.md (`## \`server\``) and what each holds. */
function configSections(): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of text("docs/configuration.md").split(/^## /m).slice(1)) {
    const heading = /^`([^`]+)`/.exec(part)?.[1];
    if (heading !== undefined) out.set(heading.replace(/\[\]$/, ""), part);
  }
  return out;
}

describe("docs/configuration.md", () => {
  const paths = keyPaths(NavarchConfigSchema as unknown as SchemaNode, "").filter((p) => !p.startsWith("pools[].scaling.autoscaler."));
  const sections = configSections();
  /** Where a key is documented: its section, and its path within (`health.reboot_window` in pools). */
  const where = (path: string) => {
    const top = path.split(/[.[]/)[0]!;
    const rest = path
      .slice(top.length)
      .replace(/^\[\]\./, "")
      .replace(/^\./, "");
    return { section: sections.get(top), rest };
  };
  /** In its section as `rest` (or its whole path), or named (`leaf`) in the row of its nearest documented ancestor. */
  const documented = (path: string): boolean => {
    const { section, rest } = where(path);
    if (section === undefined) return false;
    if (rest === "" || section.includes(`\`${rest}\``) || section.includes(`\`${path}\``)) return true;
    const leaf = path.split(".").at(-1)!.replace("[]", "");
    const parent = (p: string) => p.replace(/(\[\])?\.[^.]+$/, "");
    for (let ancestor = parent(path); ancestor.includes("."); ancestor = parent(ancestor)) {
      const name = where(ancestor).rest;
      const row = section.split("\n").find((l) => l.startsWith("| ") && (l.includes(`\`${name}\``) || l.includes(`\`${ancestor}\``)));
      if (row !== undefined) return row.includes(`\`${leaf}\``);
    }
    return false;
  };
  /** Keys with keys below them are documented by those. */
  const leaves = (all: string[]) => all.filter((p) => !all.some((q) => q.startsWith(`${p}.`) || q.startsWith(`${p}[].`)));

  test("documents every key of the config schema", () => {
    expect(leaves(paths).filter((p) => !documented(p))).toEqual([]);
    // The autoscalers' keys, named in the pools table.
    const pools = sections.get("pools")!;
    for (const type of AUTOSCALER_TYPES) expect(pools).toContain(`\`${type}\``);
  });

  test("every key it documents is one the schema has", () => {
    const known = new Set(paths.flatMap((p) => [p, where(p).rest]));
    const stray: string[] = [];
    for (const [name, section] of sections) {
      for (const row of section.split("\n").filter((l) => l.startsWith("| `"))) {
        const keys = [...row.split(" | ")[0]!.matchAll(/`([a-z_.\[\]]+)`/g)].map((m) => m[1]!);
        for (const k of keys) if (!known.has(k) && !known.has(`${name}.${k}`) && !known.has(`${name}[].${k}`)) stray.push(`${name}: ${k}`);
      }
    }
    expect(stray).toEqual([]);
  });

  test("every key is read by the code outside the schema (a key nothing reads does nothing)", () => {
    const code = ["reconciler", "bootstrap", "agent"]
      .flatMap((d) => [...new Bun.Glob("**/*.ts").scanSync(join(REPO_ROOT, d))].map((f) => readFileSync(join(REPO_ROOT, d, f), "utf8")))
      .join("\n");
    const unread = [...new Set(paths.map((p) => p.split(".").at(-1)!.replace("[]", "")))].filter((leaf) => !code.includes(leaf));
    expect(unread).toEqual([]);
  });

  test("a config with every documented key set is accepted", () => {
    const all = readFileSync(join(REPO_ROOT, "test/fixtures/config/valid/all-features.yaml"), "utf8");
    expect(v.safeParse(NavarchConfigSchema, Bun.YAML.parse(all)).success).toBe(true);
  });
});

// ───────────────────────────── the command line ─────────────────────────────

describe("docs/cli.md", () => {
  const cli = text("docs/cli.md");
  const help = (bin: string) => {
    const r = Bun.spawnSync([bin, "--help"], { stdout: "pipe" });
    return r.stdout.toString();
  };

  test("has every command and flag of navarch --help and navarch-node --help", async () => {
    const { navarch, navarchNode } = await ensureBinaries();
    const usage = help(navarch);
    const commands = [...usage.matchAll(/^ {2}navarch ([a-z][a-z|-]*(?: [a-z|]+)?)/gm)].map((m) => m[1]!.split(" ")[0]!.split("|"));
    const missing: string[] = [];
    for (const c of commands.flat()) if (!cli.includes(`navarch ${c}`) && !cli.includes(`\\|${c}`) && !cli.includes(`|${c} `)) missing.push(`navarch ${c}`);
    for (const flag of new Set([...usage.matchAll(/(?<![\w-])(--[a-z][a-z-]+)/g)].map((m) => m[1]!))) if (!cli.includes(flag)) missing.push(flag);
    for (const flag of new Set([...help(navarchNode).matchAll(/(?<![\w-])(--[a-z][a-z-]+)/g)].map((m) => m[1]!)))
      if (!cli.includes(flag)) missing.push(`navarch-node ${flag}`);
    expect(missing).toEqual([]);
  });

  test("every flag it gives a navarch command is one the binary accepts", async () => {
    const { navarch } = await ensureBinaries();
    // What stands for a placeholder; files that do not exist, so nothing starts or is written.
    const PLACEHOLDERS: Record<string, string> = {
      NODE: "x",
      POOL: "x",
      FILE: "/nonexistent/x.yaml",
      "SCENARIO.yaml": "/nonexistent/s.yaml",
      SCOPE: "fleet",
      ID: "x",
      N: "1",
      I: "0",
      TEXT: "t",
      PATH: "/nonexistent/libnvidia-ml.so.1",
      DIR: "/nonexistent/data",
      OUT: "/nonexistent/out.yaml",
      COMMAND: "temp",
      LINE: "l",
      S: "healthy",
      STATE: "ready",
      CHECK: "xid",
      NAME: "n",
    };
    const value = (token: string) => PLACEHOLDERS[token] ?? token.split("|")[0]!;
    const refused: string[] = [];
    for (const row of cli.split("\n").filter((l) => l.startsWith("| `navarch "))) {
      for (const [, usage] of row.split(" | ")[0]!.matchAll(/`(navarch [^`]+)`/g)) {
        const tokens = usage!.replace(/\\\|/g, "|").replace(/[[\]]/g, " ").split(/\s+/).slice(1).filter(Boolean);
        const firstArg = tokens.findIndex((t) => t.startsWith("-") || /^[A-Z]/.test(t));
        const command = (firstArg < 0 ? tokens : tokens.slice(0, firstArg)).map((w) => w.split("|")[0]!);
        const positionals = (firstArg < 0 ? [] : tokens.slice(firstArg)).filter((t, k, all) => /^[A-Z]/.test(t) && !(all[k - 1] ?? "").startsWith("--"));
        const safe = ["serve", "demo", "backup"].includes(command[0]!) ? ["--config", "/nonexistent/navarch.yaml"] : [];
        tokens.forEach((t, k) => {
          if (!t.startsWith("--")) return;
          const next = tokens[k + 1];
          const arg = next !== undefined && !next.startsWith("-") ? [value(next)] : [];
          // The API commands go to a server that is not there: they fail after reading their flags.
          const remote = ["serve", "demo", "backup", "sim", "config"].includes(command[0]!) ? [] : ["-s", "http://127.0.0.1:1"];
          const args = [...command, ...positionals.map(value), ...(t === "--config" ? [] : safe), t, ...arg, ...remote];
          const r = Bun.spawnSync([navarch, ...args], {
            stdout: "pipe",
            stderr: "pipe",
            timeout: 10_000,
            env: { PATH: "/usr/bin:/bin", NAVARCH_AUTH_TOKEN: "x" },
          });
          if (/[Uu]nknown option|argument is ambiguous/.test(r.stderr.toString())) refused.push(`navarch ${args.join(" ")}: ${r.stderr.toString().trim()}`);
        });
      }
    }
    expect(refused).toEqual([]);
  }, 120_000);
});
