// A TEXT value that is not UTF-8 cannot be read: libSQL aborts the whole process when a query
// returns one (it panics decoding it), at every start again. Nothing Navarch writes today can
// store one (schema/text.ts, store/sql-json.ts), but a database written by an older version, a
// restored copy or a hand edit may hold one. So at start, before anything reads the tables,
// every TEXT value that is not plain ASCII is read as bytes (a BLOB, which is never decoded)
// and checked; one that is not UTF-8 is quarantined: its bytes go to the audit log
// (`text_quarantined`, with the table, column and row) and the value is replaced by its
// decoding with U+FFFD for each bad sequence. The reconciler starts and says so; it never
// aborts on it.
import type { Client, InArgs, Transaction } from "@libsql/client";

const errorText = (err: unknown) => (err instanceof Error ? err.message : String(err));

export interface QuarantinedValue {
  /** `table.column`. */
  column: string;
  rowid: number;
  /** The bytes as they were, in upper-case hex. */
  originalHex: string;
  /** What the row holds now: the repaired text, or "deleted" when no repair could be stored. */
  storedAs: string;
}

/** Any character outside printable-and-control ASCII (1 to 127): GLOB reads bytes that are not UTF-8 as such characters too. */
const NOT_ASCII = `*[^${String.fromCharCode(1)}-${String.fromCharCode(127)}]*`;
const LOSSY_UTF8 = new TextDecoder("utf-8");
const STRICT_UTF8 = new TextDecoder("utf-8", { fatal: true });

const quote = (name: string) => `"${name.replaceAll('"', '""')}"`;

/** Finds and repairs every TEXT value of the database that is not UTF-8; returns what it quarantined. */
export async function quarantineUnreadableText(client: Client, now: number): Promise<QuarantinedValue[]> {
  const tables = await client.execute("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name");
  const bad: Unreadable[] = [];
  for (const tableRow of tables.rows) {
    const table = String(tableRow.name);
    const columns = (await client.execute({ sql: "SELECT name FROM pragma_table_info(?)", args: [table] })).rows.map((r) => String(r.name));
    if (columns.length === 0) continue;
    // A value is a candidate when it is TEXT and not plain ASCII without NUL: a multi-byte
    // character or a NUL makes its length in characters differ from its length in bytes (the
    // cheap test, first), and a lone byte of 0x80 or more (which SQLite counts as a character)
    // matches NOT_ASCII. 0.4 to 0.5 s for 10,000 nodes of 8 GPUs, 4 to 7 s more a million health
    // events, on 2 shared cores (bench/text.ts): GLOB is most of it, and nothing cheaper in SQL sees
    // a lone byte.
    const names = columns.map(quote);
    const suspect = (c: string) => `(typeof(${c}) = 'text' AND (length(CAST(${c} AS BLOB)) <> length(${c}) OR ${c} GLOB ?1))`;
    const select = `SELECT rowid AS _rowid, ${names.map((c, i) => `CASE WHEN ${suspect(c)} THEN CAST(${c} AS BLOB) END AS _c${i}`).join(", ")}
      FROM ${quote(table)} WHERE ${names.map(suspect).join(" OR ")}`;
    let rows: Awaited<ReturnType<Client["execute"]>>["rows"];
    try {
      rows = (await client.execute({ sql: select, args: [NOT_ASCII] })).rows;
    } catch {
      continue; // a table without a rowid: none of Navarch's
    }
    for (const row of rows) {
      for (let i = 0; i < columns.length; i++) {
        const value = row[`_c${i}`];
        if (!(value instanceof ArrayBuffer)) continue;
        const bytes = new Uint8Array(value);
        try {
          STRICT_UTF8.decode(bytes);
        } catch {
          bad.push({ table, column: columns[i]!, rowid: Number(row._rowid), bytes });
        }
      }
    }
  }
  return bad.length === 0 ? [] : repairAll(client, bad, now);
}

interface Unreadable {
  table: string;
  column: string;
  rowid: number;
  bytes: Uint8Array;
}

/**
 * Repairs what the scan found, in one write transaction, each value only if it still holds the
 * bytes the scan read: a second reconciler starting on the same file at the same time finds
 * them repaired and does nothing, and a kill between a repair and its audit row cannot happen.
 */
async function repairAll(client: Client, bad: readonly Unreadable[], now: number): Promise<QuarantinedValue[]> {
  const found: QuarantinedValue[] = [];
  const tx = await client.transaction("write");
  try {
    for (const { table, column: name, rowid, bytes } of bad) {
      const column = quote(name);
      const [stored] = (await tx.execute({ sql: `SELECT CAST(${column} AS BLOB) AS v FROM ${quote(table)} WHERE rowid = ?`, args: [rowid] })).rows;
      const current = stored?.v;
      if (!(current instanceof ArrayBuffer) || !Buffer.from(current).equals(bytes)) continue;
      const label = `${table}.${name}`;
      const originalHex = Buffer.from(bytes).toString("hex").toUpperCase();
      const storedAs = await store(tx, table, column, rowid, LOSSY_UTF8.decode(bytes));
      found.push({ column: label, rowid, originalHex, storedAs });
      await tx.execute({
        sql: "INSERT INTO audit_log (at, actor, action, target, details) VALUES (?, 'navarch', 'text_quarantined', ?, ?)",
        args: [now, `${label} row ${rowid}`, JSON.stringify({ column: label, rowid, originalHex, storedAs })],
      });
    }
    await tx.commit();
    return found;
  } finally {
    tx.close();
  }
}

/**
 * Writes the repaired text in place. A repair can collide with another row's unique value (two
 * ids that differed only in their bad bytes); then the row is deleted, its bytes kept in the
 * audit log, rather than left where reading it would abort the process.
 */
async function store(client: Transaction, table: string, column: string, rowid: number, repaired: string): Promise<string> {
  const at: InArgs = [repaired, rowid];
  try {
    await client.execute({ sql: `UPDATE ${quote(table)} SET ${column} = ? WHERE rowid = ?`, args: at });
    return repaired;
  } catch (err) {
    try {
      await client.execute({ sql: `DELETE FROM ${quote(table)} WHERE rowid = ?`, args: [rowid] });
    } catch (deleteErr) {
      throw new Error(
        `${table} row ${rowid} holds a value that is not UTF-8 and can be neither repaired (${errorText(err)}) nor removed (${errorText(deleteErr)}); restore the database from a backup`,
      );
    }
    return "deleted";
  }
}
