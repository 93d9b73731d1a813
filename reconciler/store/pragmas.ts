/**
 * Every writing connection to a database file (the store's, the ingest worker's): busy_timeout
 * rides out another process's short write locks. A checkpoint every 4,000 pages (16 MiB of
 * WAL): while heartbeats flow, the ingest workers checkpoint every 250 ms instead
 * (ingest/writer.ts; about 1,000 pages each at 10,000 heartbeats/s), and the other
 * connections' threshold must stay out of their way. At 1,000 pages a write of the event
 * loop's that crossed it ran the checkpoint itself, on the event loop: 24–34 ms gaps, 60 ms
 * under load, against 6–11 ms at 4,000 (test/ingest-writer.test.ts). The workers' own
 * connections have none (ingest-worker.ts): the commit that crosses the threshold copies the
 * WAL back before it returns, and held a group's answers for about 70 ms once a second.
 */
export const FILE_CONNECTION_PRAGMAS = connectionPragmas("NORMAL");

/**
 * A scratch database's connections (the simulator's, in a temporary directory removed after
 * its run): never synced. A crash of the machine may lose the file, which nothing needs
 * afterwards. The checkpoint's two fsyncs were about 100 ms of each 350 ms rewrite of 100,000
 * nodes' heartbeat times in a simulated day.
 */
export const SCRATCH_CONNECTION_PRAGMAS = connectionPragmas("OFF");

/**
 * A connection of its own beside the store's (the leader lease's, Store.sideConnection): the
 * same settings, but no busy wait at all. libSQL's busy wait sleeps on the event loop's
 * thread; a write that meets another writer's lock fails at once, and its caller retries
 * between turns of the event loop (safety/lease.ts).
 */
export const SIDE_CONNECTION_PRAGMAS = connectionPragmas("NORMAL", 0);

function connectionPragmas(synchronous: "NORMAL" | "OFF", busyTimeoutMs = 5000): string[] {
  return [`PRAGMA busy_timeout = ${busyTimeoutMs}`, `PRAGMA synchronous = ${synchronous}`, "PRAGMA wal_autocheckpoint = 4000", "PRAGMA foreign_keys = ON"];
}
