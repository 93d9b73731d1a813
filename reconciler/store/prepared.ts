// A connection that prepares each statement once and keeps it: for the ingest worker, which
// runs the same few statements thousands of times a second.
//
// Why not the libSQL client: it prepares every statement it runs anew, and compiling the
// ingest statements (json_each joins, an upsert, RETURNING) was most of what a small group
// cost: 330 µs of CPU for a group of one heartbeat, against 73 µs with the statements kept.
// At 3,000 heartbeats/s groups are one or two requests, and the worker used 70 % of a core.
import { openFileConnection, type Connection } from "./connection.ts";

type Statement = ReturnType<Connection["prepare"]>;

/** A statement's SQL text and its positional arguments, as the client takes them; prepared at its first run. */
export interface SqlStatement {
  sql: string;
  args: (string | number | null)[];
}

export class PreparedConnection {
  private readonly statements = new Map<string, Statement>();

  private constructor(
    private readonly db: Connection,
    private readonly closeConnection: () => void,
  ) {}

  /** Opens the file at `url` (`file:PATH`) with `pragmas`, as store/connection.ts sets up every connection. */
  static open(url: string, pragmas: readonly string[]): PreparedConnection {
    const { db, close } = openFileConnection(url, pragmas);
    return new PreparedConnection(db, close);
  }

  /**
   * Runs the statements in one write transaction (BEGIN IMMEDIATE … COMMIT; ROLLBACK on an
   * error, which is thrown) and returns each one's rows by column name, as the client's batch
   * does in "write" mode.
   */
  async batch(statements: readonly SqlStatement[], _mode: "write"): Promise<{ rows: Record<string, unknown>[] }[]> {
    this.run("BEGIN IMMEDIATE", []);
    try {
      const results = statements.map((s) => ({ rows: this.run(s.sql, s.args) }));
      this.run("COMMIT", []);
      return results;
    } catch (err) {
      if (this.db.inTransaction) this.db.exec("ROLLBACK");
      throw err;
    }
  }

  /** Runs one statement outside any transaction of this class (a PRAGMA), returning its rows. */
  async execute(sql: string): Promise<{ rows: Record<string, unknown>[] }> {
    return { rows: this.run(sql, []) };
  }

  close(): void {
    this.statements.clear();
    this.closeConnection();
  }

  private run(sql: string, args: SqlStatement["args"]): Record<string, unknown>[] {
    let statement = this.statements.get(sql);
    if (statement === undefined) {
      statement = this.db.prepare(sql);
      this.statements.set(sql, statement);
    }
    if (statement.reader) return statement.all(args) as Record<string, unknown>[];
    statement.run(args);
    return [];
  }
}
