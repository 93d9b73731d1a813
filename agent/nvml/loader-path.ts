// Which file the dynamic loader would open for a bare soname, so that file can be checked before
// it is mapped: LD_LIBRARY_PATH, the directories /etc/ld.so.conf lists (with its includes), then
// the loader's trusted directories. Unresolved: undefined (the loader is left to look on its own).
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";

function confDirs(file: string, depth = 0): string[] {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch {
    return [];
  }
  const dirs: string[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.replace(/#.*/, "").trim();
    if (line === "") continue;
    const include = /^include\s+(.+)$/.exec(line);
    if (include === null) {
      dirs.push(line);
      continue;
    }
    if (depth > 4) continue;
    // `include /etc/ld.so.conf.d/*.conf` is what distributions write: a directory and a suffix.
    const pattern = include[1]!.trim();
    const dir = dirname(pattern);
    const suffix = basename(pattern).replace(/^\*/, "");
    let names: string[] = [];
    try {
      names = readdirSync(dir)
        .filter((n) => (basename(pattern).startsWith("*") ? n.endsWith(suffix) : n === basename(pattern)))
        .sort();
    } catch {
      continue;
    }
    for (const n of names) dirs.push(...confDirs(join(dir, n), depth + 1));
  }
  return dirs;
}

export function loaderSearchPath(env: Readonly<Record<string, string | undefined>> = process.env, arch: string = process.arch): string[] {
  const triple = arch === "arm64" ? "aarch64-linux-gnu" : "x86_64-linux-gnu";
  const fromEnv = (env.LD_LIBRARY_PATH ?? "").split(":").filter((d) => d !== "");
  const trusted = [`/lib/${triple}`, `/usr/lib/${triple}`, "/lib64", "/usr/lib64", "/lib", "/usr/lib"];
  return [...new Set([...fromEnv, ...confDirs("/etc/ld.so.conf"), ...trusted])];
}

export function findOnLoaderPath(soname: string, env?: Readonly<Record<string, string | undefined>>): string | undefined {
  for (const dir of loaderSearchPath(env)) {
    const path = join(dir, soname);
    if (existsSync(path)) return path;
  }
  return undefined;
}
