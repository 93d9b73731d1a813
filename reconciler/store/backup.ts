// An online, consistent copy of a file database while `navarch serve` keeps writing
// to it: VACUUM INTO reads one snapshot (WAL mode lets the writer go on meanwhile)
// into a temp file beside the target, which is checked, synced and then renamed in.
import { createClient, type Client } from "@libsql/client";
import { randomBytes } from "node:crypto";
import { closeSync, existsSync, fsyncSync, linkSync, openSync, renameSync, rmSync, statSync } from "node:fs";
import { basename, dirname, resolve } from "node:path";
import { StoreError, errorText, redactUrl } from "./store.ts";

export interface BackupOptions {
  /** The database URL `serve` uses (`file:PATH`). */
  url: string;
  /** Where the copy goes. */
  file: string;
  /** Replace `file` if it exists. */
  force?: boolean;
}

export interface BackupResult {
  file: string;
  nodes: number;
  bytes: number;
}

export async function backupDatabase(opts: BackupOptions): Promise<BackupResult> {
  if (!opts.url.startsWith("file:")) {
    // sqld answers VACUUM INTO with "unsupported statement", and a copy would land on the server's disk anyway.
    throw new StoreError(
      `backup of a remote database (${redactUrl(opts.url)}) is not supported: a libSQL server refuses VACUUM INTO; back it up where it runs (sqld's --db-path, or the provider's snapshots)`,
    );
  }
  const source = opts.url.slice("file:".length);
  if (source === "" || source.startsWith(":memory:")) throw new StoreError("an in-memory database has nothing to back up");
  const target = resolve(opts.file);
  // Opening a missing path would create an empty database there: say so instead.
  if (!existsSync(source)) throw new StoreError(`no database at ${source}; check --data-dir or --config`);
  if (resolve(source) === target) throw new StoreError(`${target} is the database itself; back it up to another file`);
  if (existsSync(target) && !opts.force) throw new StoreError(`${target} exists; pass --force to overwrite it`);
  if (!existsSync(dirname(target))) throw new StoreError(`directory ${dirname(target)} does not exist`);

  const temp = resolve(dirname(target), `.${basename(target)}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
  try {
    await vacuumInto(source, temp);
    const nodes = await verify(temp, target);
    // The copy must be on disk before its name is: a crash after the rename leaves a whole file or none.
    fsyncPath(temp);
    if (opts.force) {
      renameSync(temp, target);
    } else {
      // link(2) fails if the target appeared meanwhile, where rename would replace it.
      try {
        linkSync(temp, target);
      } catch (err) {
        if (err instanceof Error && "code" in err && err.code === "EEXIST") throw new StoreError(`${target} exists; pass --force to overwrite it`);
        throw err;
      }
      rmSync(temp);
    }
    fsyncPath(dirname(target));
    return { file: target, nodes, bytes: statSync(target).size };
  } finally {
    for (const suffix of ["", "-journal", "-wal", "-shm"]) rmSync(`${temp}${suffix}`, { force: true });
  }
}

async function vacuumInto(source: string, temp: string): Promise<void> {
  let client: Client;
  try {
    client = createClient({ url: `file:${source}`, concurrency: 1 });
  } catch (err) {
    throw new StoreError(`cannot open database ${source}: ${errorText(err)}`);
  }
  try {
    // Readers wait out a checkpoint or WAL recovery by the running reconciler.
    await client.execute("PRAGMA busy_timeout = 10000");
    await client.execute({ sql: "VACUUM INTO ?", args: [temp] });
  } catch (err) {
    const why = errorText(err);
    if (/malformed|not a database|SQLITE_CORRUPT|SQLITE_NOTADB/i.test(why)) {
      throw new StoreError(`database ${source} is corrupt (${why}); it cannot be backed up: restore an earlier backup`);
    }
    if (/SQLITE_FULL|disk is full/i.test(why)) throw new StoreError(`no space for the backup in ${dirname(temp)} (${why})`);
    throw new StoreError(`cannot back up database ${source}: ${why}`);
  } finally {
    client.close();
  }
}

/** Opens the copy as serve would read it: it must pass quick_check and hold the schema. */
async function verify(temp: string, target: string): Promise<number> {
  const client = createClient({ url: `file:${temp}`, concurrency: 1 });
  try {
    const check = await client.execute("PRAGMA quick_check(1)");
    if (check.rows.length !== 1 || check.rows[0]?.[0] !== "ok") {
      throw new StoreError(`the copy for ${target} failed quick_check (${String(check.rows[0]?.[0])}); nothing was written`);
    }
    const rs = await client.execute("SELECT count(*) AS n FROM nodes");
    return Number(rs.rows[0]?.n ?? 0);
  } catch (err) {
    if (err instanceof StoreError) throw err;
    throw new StoreError(`the copy for ${target} cannot be read back (${errorText(err)}); nothing was written`);
  } finally {
    client.close();
  }
}

function fsyncPath(path: string): void {
  const fd = openSync(path, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
