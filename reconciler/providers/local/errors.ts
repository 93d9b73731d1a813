// What a failed file or process call of the local provider says: its errno code (ENOENT,
// ESRCH, ENXIO, …), which decides what happens next, and its message for a log line.

/** The errno code of a Node.js system error, or undefined for anything else. */
export function errnoOf(err: unknown): string | undefined {
  if (typeof err === "object" && err !== null && "code" in err && typeof err.code === "string") return err.code;
  return undefined;
}

export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
