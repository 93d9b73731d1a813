// Compiling one `when` expression: parse, static check (it must be a bool; cel-checker.ts),
// plan against the environment (cel-environment.ts). A problem carries its 1-based line and
// column inside the expression text, which the policy's loaders turn into positions in the file.
import { parse, plan } from "@bufbuild/cel";
import { ENV, type Program } from "./cel-environment.ts";
import { CheckError, Checker, isBool, typeName } from "./cel-checker.ts";

/** A CEL problem in one expression: 1-based position inside the expression text. */
export interface CelProblem {
  kind: "syntax" | "type";
  message: string;
  line: number;
  column: number;
}

/** Compiles one `when` expression: parse, static check (it must be a bool), plan. */
export function compileWhen(when: string): { ok: true; program: Program } | { ok: false; problem: CelProblem } {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(when);
  } catch (error) {
    const location = syntaxLocation(error);
    const raw = error instanceof Error ? error.message : String(error);
    const message = location?.rawMessage ?? raw.replace(/^<input>:\d+:\d+: /, "");
    return { ok: false, problem: { kind: "syntax", message, line: location?.line ?? 1, column: location?.column ?? 1 } };
  }
  try {
    const type = new Checker().check(parsed.expr);
    if (!isBool(type)) {
      return { ok: false, problem: { kind: "type", message: `must be a bool expression, but its type is ${typeName(type)}`, line: 1, column: 1 } };
    }
  } catch (error) {
    if (!(error instanceof CheckError)) throw error;
    const offset = parsed.sourceInfo?.positions[error.exprId.toString()] ?? 0;
    return { ok: false, problem: { kind: "type", message: error.message, ...lineColumn(when, offset) } };
  }
  try {
    return { ok: true, program: plan(ENV, parsed) };
  } catch (error) {
    return { ok: false, problem: { kind: "type", message: error instanceof Error ? error.message : String(error), line: 1, column: 1 } };
  }
}

function syntaxLocation(error: unknown): { line: number; column: number; rawMessage?: string } | undefined {
  if (typeof error !== "object" || error === null || !("location" in error)) return undefined;
  const location = error.location;
  if (typeof location !== "object" || location === null || !("start" in location)) return undefined;
  const start = location.start;
  if (typeof start !== "object" || start === null || !("line" in start) || !("column" in start)) return undefined;
  if (typeof start.line !== "number" || typeof start.column !== "number") return undefined;
  const rawMessage = "rawMessage" in error && typeof error.rawMessage === "string" ? error.rawMessage : undefined;
  return rawMessage === undefined ? { line: start.line, column: start.column } : { line: start.line, column: start.column, rawMessage };
}

/** 1-based line and column of a code-unit offset (CEL positions are offsets into the text). */
function lineColumn(text: string, offset: number): { line: number; column: number } {
  const before = text.slice(0, offset);
  const line = before.split("\n").length;
  return { line, column: offset - (before.lastIndexOf("\n") + 1) + 1 };
}

/** `at column 13` for one-line expressions, `at line 2, column 5` otherwise. */
export function formatCelProblem(problem: CelProblem, when: string): string {
  const where = when.includes("\n") ? `line ${problem.line}, column ${problem.column}` : `column ${problem.column}`;
  return `CEL ${problem.kind} error at ${where}: ${problem.message}`;
}
