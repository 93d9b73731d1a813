// How the metrics read the store: raw SQL with `?` placeholders, rows as loosely typed objects
// (SQLite answers numbers, bigints or strings), and the readers that turn their values into
// numbers and label strings.
import { sql } from "drizzle-orm";
import type { Db } from "../store/store.ts";

export type Row = Record<string, unknown>;

/** Raw SQL with `?` placeholders, rows as objects. */
export type RowQuery = (text: string, args?: (string | number)[]) => Promise<Row[]>;

export function rowQuery(db: Db): RowQuery {
  return async (text, args = []) => {
    const parts = text.split("?");
    let q = sql.raw(parts[0] ?? "");
    args.forEach((arg, i) => {
      q = sql`${q}${arg}${sql.raw(parts[i + 1] ?? "")}`;
    });
    return db.all<Row>(q);
  };
}

export const num = (x: unknown): number => (typeof x === "number" ? x : typeof x === "bigint" ? Number(x) : typeof x === "string" ? Number(x) : 0);
export const str = (x: unknown): string => (x === null || x === undefined ? "" : String(x));

/** States as an SQL list: `('ready', 'lost')`. */
export function sqlList(states: readonly string[]): string {
  return `(${states.map((s) => `'${s}'`).join(", ")})`;
}
