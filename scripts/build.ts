// Builds the two single-file executables:
//   dist/navarch       the reconciler, CLI and simulator
//   dist/navarch-node  the node agent
// Usage: bun run scripts/build.ts [navarch|navarch-node ...]
// (scripts/release.ts builds the same two into dist/release.)
import type { BunPlugin } from "bun";
import { mkdirSync, statSync } from "node:fs";
import { join } from "node:path";

const root = new URL("..", import.meta.url).pathname;

/**
 * libsql picks its native module with `require(\`@libsql/${target}\`)`, which the
 * bundler cannot follow, so a compiled binary would fail outside the source tree.
 * Rewrite it to a static require of the one target we build for; the bundler then
 * embeds the .node file (extracted to $TMPDIR at run time).
 */
const embedLibsqlNative: BunPlugin = {
  name: "embed-libsql-native",
  setup(build) {
    build.onLoad({ filter: /node_modules[\\/]libsql[\\/]index\.js$/ }, async (args) => {
      const source = await Bun.file(args.path).text();
      const dynamic = "return require(`@libsql/${target}`);";
      if (!source.includes(dynamic)) {
        throw new Error(`${args.path}: libsql's native require changed; update scripts/build.ts`);
      }
      return { contents: source.replace(dynamic, 'return require("@libsql/linux-x64-gnu");'), loader: "js" };
    });
  },
};

interface Target {
  name: string;
  /** The main entrypoint first; then files loaded by path at run time (workers). */
  entrypoints: string[];
  plugins: BunPlugin[];
}

const targets: Target[] = [
  // The ingest worker likewise (reconciler/ingest/writer.ts finds it inside the binary).
  { name: "navarch", entrypoints: ["reconciler/main.ts", "reconciler/ingest/worker.ts"], plugins: [embedLibsqlNative] },
  // The NVML worker is loaded by path at run time: it must be an entrypoint of its own
  // (agent/nvml/worker-url.ts finds it inside the binary).
  { name: "navarch-node", entrypoints: ["agent/main.ts", "agent/nvml/worker.ts"], plugins: [] },
];

/** The names of the binaries this builds. */
export const BINARIES = targets.map((t) => t.name);

/**
 * Builds the binaries named (all when none) into `outDir`; throws with the bundler's messages on
 * failure. Returns, for each binary built, the source files the bundler put into it.
 */
export async function buildBinaries(outDir: string, wanted: readonly string[] = [], log: (line: string) => void = console.log): Promise<Map<string, string[]>> {
  mkdirSync(outDir, { recursive: true });
  const inputs = new Map<string, string[]>();
  for (const target of targets) {
    if (wanted.length > 0 && !wanted.includes(target.name)) continue;
    const started = performance.now();
    const outfile = join(outDir, target.name);
    const result = await Bun.build({
      entrypoints: target.entrypoints.map((e) => `${root}${e}`),
      compile: {
        outfile,
        // A daemon must not pick up a stray .env or bunfig.toml from its working directory.
        autoloadDotenv: false,
        autoloadBunfig: false,
      },
      minify: true,
      sourcemap: "linked",
      bytecode: true,
      format: "esm",
      plugins: target.plugins,
      metafile: true,
    });
    if (!result.success) throw new Error(`building ${target.name} failed:\n${result.logs.map(String).join("\n")}`);
    inputs.set(target.name, Object.keys(result.metafile?.inputs ?? {}));
    const size = statSync(outfile).size;
    log(`built ${outfile.replace(root, "")} (${(size / 2 ** 20).toFixed(1)} MiB) in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  }
  return inputs;
}

if (import.meta.main) {
  try {
    await buildBinaries(`${root}dist`, process.argv.slice(2));
  } catch (err) {
    console.error(err instanceof Error ? err.message : String(err));
    process.exit(1);
  }
}
