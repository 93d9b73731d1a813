// Cross-field rules of the config file's objects (`max_nodes` ≥ `min_nodes`, "set A or B, not
// both"): `rules()` runs them beside an object's own schema, on the fields that passed it, so
// one run reports every problem without piling a rule onto an error already reported.
import * as v from "valibot";
import { isRecord, issuePathAt, type PathKey } from "../shapes.ts";

type Report = (path: PathKey | readonly PathKey[], message: string) => void;

/**
 * Cross-field rules for one object. `check` sees only the fields that passed their own
 * schema (so a rule never piles onto an error already reported) plus the raw input (to ask
 * whether a key was written at all), and reports issues at paths below the object.
 */
export function rules<T>(check: (fields: Record<string, unknown>, report: Report, raw: Record<string, unknown>) => void) {
  return v.rawCheck<T>(({ dataset, addIssue }) => {
    const raw: unknown = dataset.value;
    if (!isRecord(raw)) return;
    const issues = dataset.issues ?? [];
    if (issues.some((issue) => !issue.path?.length)) return;
    const broken = new Set(issues.map((issue) => issue.path![0]!.key));
    const fields = Object.fromEntries(Object.entries(raw).filter(([key]) => !broken.has(key)));
    check(fields, (path, message) => addIssue({ message, path: issuePathAt(raw, Array.isArray(path) ? path : [path]) }), raw);
  });
}

export const num = (x: unknown): number | undefined => (typeof x === "number" ? x : undefined);
