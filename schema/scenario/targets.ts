// Targets: which nodes a scripted event acts on. `{ node: training-3 }` names one (the
// simulator's name: pool + creation order); otherwise filters (`pool`, `rack`, `zone`) plus
// one pick of `index: N`, `random: K` or `all: true`. reconciler/sim/sim-nodes.ts resolves them.
import * as v from "valibot";
import { isRecord, issuePathAt, strict, type PathKey } from "../shapes.ts";
import { Name, Text, True, int } from "./fields.ts";

export type TargetPick = { kind: "node"; name: string } | { kind: "index"; index: number } | { kind: "random"; count: number } | { kind: "all" };

export interface Target {
  pool?: string;
  rack?: number;
  zone?: string;
  pick: TargetPick;
}

type Report = (path: PathKey | readonly PathKey[], message: string) => void;

/** Rules across the keys of one object; `raw` is the object as written. */
function rules<T>(check: (raw: Record<string, unknown>, report: Report) => void) {
  return v.rawCheck<T>(({ dataset, addIssue }) => {
    const raw: unknown = dataset.value;
    if (!isRecord(raw)) return;
    check(raw, (path, message) => addIssue({ message, path: issuePathAt(raw, Array.isArray(path) ? path : [path as PathKey]) }));
  });
}

const PICKS = ["node", "index", "random", "all"] as const;

export const TargetSchema = v.pipe(
  strict(
    {
      node: v.optional(Text),
      pool: v.optional(Name),
      rack: v.optional(int(0)),
      zone: v.optional(Text),
      index: v.optional(int(0)),
      random: v.optional(int(1)),
      all: v.optional(True),
    },
    { what: "a target" },
  ),
  rules((raw, report) => {
    const picks = PICKS.filter((k) => raw[k] !== undefined);
    if (picks.length === 0) report([], `pick nodes with one of node, index, random or all (e.g. { pool: training, index: 0 })`);
    if (picks.length > 1) report(picks[1]!, `set only one of node, index, random and all (also set: ${picks[0]})`);
    if (raw.node !== undefined)
      for (const f of ["pool", "rack", "zone"]) if (raw[f] !== undefined) report(f, "cannot be combined with node (a node is named exactly)");
    if (raw.rack !== undefined && raw.pool === undefined) report("rack", "needs pool (racks are numbered per pool)");
  }),
  v.transform((t): Target => {
    const pick: TargetPick =
      t.node !== undefined
        ? { kind: "node", name: t.node }
        : t.index !== undefined
          ? { kind: "index", index: t.index }
          : t.random !== undefined
            ? { kind: "random", count: t.random }
            : { kind: "all" };
    return {
      ...(t.pool !== undefined ? { pool: t.pool } : {}),
      ...(t.rack !== undefined ? { rack: t.rack } : {}),
      ...(t.zone !== undefined ? { zone: t.zone } : {}),
      pick,
    };
  }),
);
