// The layers of docs/architecture.md's table hold in the code: every source file is in a listed
// folder, imports point only down the list (or into schema/), the two programs never import
// each other, no two files import each other through any chain, and no file grows past one concept's size.
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { REPO_ROOT } from "./support.ts";

const SOURCE_ROOTS = ["agent", "reconciler", "schema", "bootstrap"];

/** A file longer than this holds more than one concept; data tables are the exception. */
const MAX_LINES = 700;
const DATA_TABLES = new Set(["schema/xid-catalog.ts"]);

/** The table's folders (or files), top to bottom. */
function layers(): string[] {
  const doc = readFileSync(join(REPO_ROOT, "docs/architecture.md"), "utf8");
  const section = doc.slice(doc.indexOf("## Layout and layers"));
  const rows = [...section.matchAll(/^\| `([^`]+)` \|/gm)].map((m) => m[1]!);
  if (rows.length === 0) throw new Error("docs/architecture.md: no layer table under '## Layout and layers'");
  return rows;
}

function sourceFiles(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(join(REPO_ROOT, dir))) {
    const path = join(dir, name);
    if (statSync(join(REPO_ROOT, path)).isDirectory()) sourceFiles(path, out);
    else if (/\.ts$/.test(name) && !name.endsWith(".test.ts") && !name.endsWith(".d.ts")) out.push(path);
  }
  return out;
}

const IMPORT = /(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s*["'](\.{1,2}\/[^"']+)["']|import\(\s*["'](\.{1,2}\/[^"']+)["']\s*\)/g;

/** Relative imports of a file, as repository paths. */
function importsOf(file: string): string[] {
  const text = readFileSync(join(REPO_ROOT, file), "utf8");
  const out: string[] = [];
  for (const m of text.matchAll(IMPORT)) {
    let target = resolve(REPO_ROOT, dirname(file), (m[1] ?? m[2])!);
    if (!existsSync(target) && existsSync(join(target, "index.ts"))) target = join(target, "index.ts");
    out.push(relative(REPO_ROOT, target));
  }
  return out;
}

function layerOf(path: string, table: string[]): number {
  let best = -1;
  for (const [i, entry] of table.entries()) {
    const matches = entry.endsWith("/") ? path.startsWith(entry) : path === entry;
    if (matches && (best < 0 || entry.length > table[best]!.length)) best = i;
  }
  return best;
}

describe("layers", () => {
  const table = layers();
  const files = SOURCE_ROOTS.flatMap((root) => sourceFiles(root));
  const graph = new Map(files.map((f) => [f, importsOf(f).filter((t) => t.endsWith(".ts"))]));

  test("every source file is in a folder the table lists", () => {
    expect(files.filter((f) => layerOf(f, table) < 0)).toEqual([]);
  });

  test("imports point down the table, never up", () => {
    const up: string[] = [];
    for (const [file, targets] of graph) {
      const from = layerOf(file, table);
      for (const target of targets) {
        const to = layerOf(target, table);
        if (to >= 0 && to < from) up.push(`${file} imports ${target} (${table[to]} is above ${table[from]})`);
      }
    }
    expect(up).toEqual([]);
  });

  test("the agent and the reconciler share only schema/", () => {
    const crossing: string[] = [];
    for (const [file, targets] of graph) {
      for (const target of targets) {
        const a = file.split("/")[0];
        const b = target.split("/")[0];
        if ((a === "agent" && b === "reconciler") || (a === "reconciler" && (b === "agent" || b === "test"))) crossing.push(`${file} imports ${target}`);
      }
    }
    expect(crossing).toEqual([]);
  });

  test("no import cycle between files", () => {
    const cycles: string[] = [];
    const state = new Map<string, "open" | "done">();
    const path: string[] = [];
    const visit = (file: string) => {
      state.set(file, "open");
      path.push(file);
      for (const next of graph.get(file) ?? []) {
        if (state.get(next) === "open") cycles.push([...path.slice(path.indexOf(next)), next].join(" → "));
        else if (!state.has(next) && graph.has(next)) visit(next);
      }
      path.pop();
      state.set(file, "done");
    };
    for (const file of graph.keys()) if (!state.has(file)) visit(file);
    expect(cycles).toEqual([]);
  });

  test(`no source file over ${MAX_LINES} lines, except data tables`, () => {
    const long = files
      .filter((f) => !DATA_TABLES.has(f))
      .map((f) => ({ f, lines: readFileSync(join(REPO_ROOT, f), "utf8").split("\n").length }))
      .filter(({ lines }) => lines > MAX_LINES)
      .map(({ f, lines }) => `${f}: ${lines} lines`);
    expect(long).toEqual([]);
  });
});
