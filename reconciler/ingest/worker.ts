// The ingest worker (ingest/writer.ts): writes the groups it is sent over a connection of
// its own, one at a time, and answers each with its results or its error. A second instance,
// the WAL copier, is sent only checkpoints.
import { FILE_CONNECTION_PRAGMAS } from "../store/pragmas.ts";
import { PreparedConnection } from "../store/prepared.ts";
import { writeIngestGroup, type IngestGroup } from "./write.ts";
import type { FromIngestWorker, ToIngestWorker } from "./writer.ts";

declare const self: Worker;
let client: PreparedConnection | undefined;

function describe(err: unknown): { message: string; code?: string } {
  const message = err instanceof Error ? err.message : String(err);
  return err instanceof Error && "code" in err ? { message, code: String(err.code) } : { message };
}

const answer = (m: FromIngestWorker) => self.postMessage(m);

self.onmessage = async (e: MessageEvent<ToIngestWorker>) => {
  const m = e.data;
  if (m.kind === "open") {
    try {
      // As the store's own connections (the journal mode is the file's, these are per
      // connection), but checkpoints only when asked (ingest-writer.ts says when).
      client = PreparedConnection.open(m.url, [...FILE_CONNECTION_PRAGMAS, "PRAGMA wal_autocheckpoint = 0"]);
      answer({ kind: "opened" });
    } catch (err) {
      answer({ kind: "failed", error: describe(err) });
    }
  } else if (m.kind === "write") {
    try {
      if (client === undefined) throw new Error("the ingest worker has no database open");
      answer({ kind: "written", id: m.id, results: await writeIngestGroup(client, JSON.parse(m.group) as IngestGroup, m.at) });
    } catch (err) {
      answer({ kind: "failed", id: m.id, error: describe(err) });
    }
  } else if (m.kind === "checkpoint") {
    try {
      if (client === undefined) throw new Error("the ingest worker has no database open");
      // PASSIVE: copies what it can without waiting for readers; the next one takes the rest.
      await client.execute("PRAGMA wal_checkpoint(PASSIVE)");
      answer({ kind: "checkpointed", id: m.id });
    } catch (err) {
      answer({ kind: "failed", id: m.id, error: describe(err) });
    }
  } else {
    client?.close();
    client = undefined;
    answer({ kind: "closed" });
  }
};
