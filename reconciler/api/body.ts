// Every JSON body the API reads, read one way: bytes that are not UTF-8 are refused (not
// repaired: a repaired body is not what was sent), and so is any string in it, at any depth,
// keys included, that UTF-8 cannot encode (a lone surrogate sent as a JSON escape), but for an
// event's message, which is repaired (repairAgentText says why). Each route's own schema then
// judges the fields. Read once per request: the auth check and the route share it.
import type { Context } from "hono";
import * as v from "valibot";
import { isRecord } from "../../schema/shapes.ts";
import { WellFormedStrings, decodeUtf8, mayHoldLoneSurrogate, repairText } from "../../schema/text.ts";
import { issuePaths, type ErrorBody } from "../../schema/wire.ts";

export type JsonBody = { ok: true; value: unknown } | { ok: false; error: ErrorBody };

const read = new WeakMap<Request, Promise<JsonBody>>();

/** The request's JSON body, or why it is refused (an ErrorBody for a 400); an empty body is `emptyAs` where given. */
export async function readJsonBody(c: Context, emptyAs?: unknown): Promise<JsonBody> {
  let body = read.get(c.req.raw);
  if (body === undefined) {
    body = parse(c);
    read.set(c.req.raw, body);
  }
  const result = await body;
  if (!result.ok && result.error.error === EMPTY && emptyAs !== undefined) return { ok: true, value: emptyAs };
  return result;
}

/** The body as readJsonBody reads it, or the 400 that refuses it. */
export async function jsonBodyOr400(c: Context, emptyAs?: unknown): Promise<unknown> {
  const body = await readJsonBody(c, emptyAs);
  return body.ok ? body.value : c.json<ErrorBody>(body.error, 400);
}

const EMPTY = "request body is not valid JSON (it is empty)";

/**
 * The free text an agent reports from its machine, an event's message (a kernel-log line, an
 * NVML error), is repaired with U+FFFD rather than refused: an agent that cut a line inside a
 * surrogate pair (every agent before this check did) would otherwise have its whole spool
 * refused, and every finding after it lost. Identifiers and the rest are refused.
 */
function repairAgentText(body: unknown): void {
  if (!isRecord(body)) return;
  for (const list of [body.events, body.openFindings]) {
    if (!Array.isArray(list)) continue;
    for (const event of list) if (isRecord(event) && typeof event.message === "string") event.message = repairText(event.message);
  }
}

async function parse(c: Context): Promise<JsonBody> {
  // The request's own bytes(): no copy into Hono's body cache (nothing else reads the body).
  const bytes = await c.req.raw.bytes();
  const decoded = decodeUtf8(bytes);
  if (!decoded.ok) return { ok: false, error: { error: `request body ${decoded.message}` } };
  const text = decoded.text;
  if (text.trim() === "") return { ok: false, error: { error: EMPTY } };
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, error: { error: "request body is not valid JSON" } };
  }
  if (mayHoldLoneSurrogate(text)) {
    repairAgentText(value);
    const checked = v.safeParse(WellFormedStrings, value);
    if (!checked.success) return { ok: false, error: { error: "invalid request body", issues: issuePaths(checked.issues) } };
  }
  return { ok: true, value };
}
