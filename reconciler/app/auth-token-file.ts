// Where `navarch serve` keeps the API token it generated (app/serve.ts), and where the CLI on
// the same machine looks for it (cli/client.ts). A file of its own so that the CLI finds the
// path without loading the reconciler that serve starts.
import { join } from "node:path";

export function authTokenFile(dataDir: string): string {
  return join(dataDir, "auth-token");
}
