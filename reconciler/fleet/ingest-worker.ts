// The ingest worker (fleet/ingest-writer.ts): writes the groups it is sent over a connection of
// its own, one at a time, and answers each with its results or its error.
import { createClient, type Client } from "@libsql/client";
import { FILE_CONNECTION_PRAGMAS } from "../store/pragmas.ts";
import { writeIngestGroup, type IngestGroup } from "./ingest-write.ts";
import type { FromIngestWorker, ToIngestWorker } from "./ingest-writer.ts";

declare const self: Worker;
let client: Client | undefined;

function describe(err: unknown): { message: string; code?: string } {
  const message = err instanceof Error ? err.message : String(err);
  return err instanceof Error && "code" in err ? { message, code: String(err.code) } : { message };
}

const answer = (m: FromIngestWorker) => self.postMessage(m);

self.onmessage = async (e: MessageEvent<ToIngestWorker>) => {
  const m = e.data;
  if (m.kind === "open") {
    try {
      client = createClient({ url: m.url });
      // As the store's own connection: the journal mode is the file's, these are per connection.
      for (const pragma of FILE_CONNECTION_PRAGMAS) await client.execute(pragma);
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
  } else {
    client?.close();
    client = undefined;
    answer({ kind: "closed" });
  }
};
