// Builds the two single-file executables:
//   dist/navarch       the reconciler, CLI and simulator
//   dist/navarch-node  the node agent
// Usage: bun run scripts/build.ts [navarch|navarch-node ...]
import type { BunPlugin } from "bun";
import { mkdirSync, statSync } from "node:fs";

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
  // The ingest worker likewise (fleet/ingest-writer.ts finds it inside the binary).
  { name: "navarch", entrypoints: ["reconciler/main.ts", "reconciler/fleet/ingest-worker.ts"], plugins: [embedLibsqlNative] },
  // The NVML worker is loaded by path at run time: it must be an entrypoint of its own
  // (agent/nvml/worker-url.ts finds it inside the binary).
  { name: "navarch-node", entrypoints: ["agent/main.ts", "agent/nvml/worker.ts"], plugins: [] },
];

const wanted = process.argv.slice(2);
mkdirSync(`${root}dist`, { recursive: true });
for (const target of targets) {
  if (wanted.length > 0 && !wanted.includes(target.name)) continue;
  const started = performance.now();
  const result = await Bun.build({
    entrypoints: target.entrypoints.map((e) => `${root}${e}`),
    compile: {
      outfile: `${root}dist/${target.name}`,
      // A daemon must not pick up a stray .env or bunfig.toml from its working directory.
      autoloadDotenv: false,
      autoloadBunfig: false,
    },
    minify: true,
    sourcemap: "linked",
    bytecode: true,
    format: "esm",
    plugins: target.plugins,
  });
  if (!result.success) {
    for (const log of result.logs) console.error(log);
    process.exit(1);
  }
  const size = statSync(`${root}dist/${target.name}`).size;
  console.log(`built dist/${target.name} (${(size / 2 ** 20).toFixed(1)} MiB) in ${((performance.now() - started) / 1000).toFixed(1)} s`);
}
