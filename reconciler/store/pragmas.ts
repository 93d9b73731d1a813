/**
 * Every writing connection to a database file (the store's, the ingest worker's): busy_timeout
 * rides out another process's short write locks. A checkpoint every 1,000 pages (4 MiB of WAL),
 * SQLite's default, said here because it was 4,000: the commit that crosses it copies the WAL
 * back into the file before it returns, and at 10,000 heartbeats a second one of 4,000 pages
 * held a group's answers for about 70 ms once a second (ingest p99 over 100 ms). The ingest
 * worker's connection checkpoints between groups instead (fleet/ingest-writer.ts), which keeps
 * the WAL under this threshold while heartbeats flow; this one is for the rest of the time.
 */
export const FILE_CONNECTION_PRAGMAS = connectionPragmas("NORMAL");

/**
 * A scratch database's connections (the simulator's, in a temporary directory removed after
 * its run): never synced. A crash of the machine may lose the file, which nothing needs
 * afterwards. The checkpoint's two fsyncs were about 100 ms of each 350 ms rewrite of 100,000
 * nodes' heartbeat times in a simulated day.
 */
export const SCRATCH_CONNECTION_PRAGMAS = connectionPragmas("OFF");

function connectionPragmas(synchronous: "NORMAL" | "OFF"): string[] {
  return ["PRAGMA busy_timeout = 5000", `PRAGMA synchronous = ${synchronous}`, "PRAGMA wal_autocheckpoint = 1000", "PRAGMA foreign_keys = ON"];
}
