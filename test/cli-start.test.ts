// `navarch` starts without loading the reconciler: reconciler/main.ts imports a command's module
// with import() when that command runs, and what it imports statically (the help texts, the
// CLI's error type) reaches no package but valibot. A static import of a command module, or of
// anything that brings drizzle, hono or a cloud's client, would put all of it back into every
// `navarch COMMAND --help` (bench/cli.ts measures the start: `npm run bench cli`).
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { REPO_ROOT } from "./support.ts";

/** Static imports and re-exports, not `import type` (erased) nor `import()` (loaded when called). */
const STATIC_IMPORT = /(?:^|\n)\s*(?:import|export)\s+(?!type\s)[^'"]*?from\s*["']([^"']+)["']|(?:^|\n)\s*import\s*["']([^"']+)["']/g;

/** Each package `entry` imports statically, through its relative imports too, with the first file found importing it. */
function staticPackages(entry: string): Record<string, string> {
  const seen = new Set<string>();
  const packages: Record<string, string> = {};
  const visit = (file: string) => {
    if (seen.has(file) || !file.endsWith(".ts")) return;
    seen.add(file);
    for (const m of readFileSync(join(REPO_ROOT, file), "utf8").matchAll(STATIC_IMPORT)) {
      const spec = (m[1] ?? m[2])!;
      if (!spec.startsWith(".")) packages[spec] ??= file;
      else visit(relative(REPO_ROOT, resolve(REPO_ROOT, dirname(file), spec)));
    }
  };
  visit(entry);
  return packages;
}

test("reconciler/main.ts imports no package but valibot before a command runs", () => {
  const heavy = Object.entries(staticPackages("reconciler/main.ts")).filter(([p]) => !p.startsWith("node:") && p !== "valibot");
  expect(Object.fromEntries(heavy)).toEqual({});
});
