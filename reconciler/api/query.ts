// A request's query string checked against its valibot schema: the parsed query, or a 400
// that names the first parameter that is wrong and why.
import type { Context } from "hono";
import * as v from "valibot";
import type { ErrorBody } from "../../schema/wire.ts";

export function validatedQuery<S extends v.GenericSchema>(c: Context, schema: S): v.InferOutput<S> | Response {
  const parsed = v.safeParse(schema, c.req.query());
  if (parsed.success) return parsed.output;
  const issue = parsed.issues[0];
  const key = issue?.path?.map((p) => String(p.key)).join(".") ?? "query";
  return c.json<ErrorBody>({ error: `${key}: ${issue?.message ?? "invalid"}` }, 400);
}
