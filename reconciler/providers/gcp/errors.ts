// What Compute Engine's failures mean to the reconciler: an error answer (`{"error": {code,
// message, errors: [{reason}], status}}`) or a finished operation with errors, mapped to the
// ProviderError kind the reconciler reacts to (a zone's stockout is "capacity" and moves the
// launch to the next zone; quota is "quota"; throttling "rate_limit"; …).
import * as v from "valibot";
import { textPrefix } from "../../../schema/text.ts";
import { kindForStatus, type HttpFailure } from "../http.ts";
import { ProviderError, type ProviderErrorKind } from "../provider.ts";
import type { Operation } from "./compute-api.ts";

const GoogleError = v.object({
  error: v.object({
    code: v.optional(v.number()),
    message: v.optional(v.string()),
    status: v.optional(v.string()),
    errors: v.optional(v.array(v.object({ reason: v.optional(v.string()), message: v.optional(v.string()) })), []),
  }),
});

const OPERATION_CODE_KINDS: Record<string, ProviderErrorKind> = {
  ZONE_RESOURCE_POOL_EXHAUSTED: "capacity",
  ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS: "capacity",
  RESOURCE_POOL_EXHAUSTED: "capacity",
  STOCKOUT: "capacity",
  QUOTA_EXCEEDED: "quota",
  RATE_LIMIT_EXCEEDED: "rate_limit",
  RESOURCE_OPERATION_RATE_EXCEEDED: "rate_limit",
  RESOURCE_NOT_FOUND: "not_found",
  NOT_FOUND: "not_found",
  PERMISSION_DENIED: "auth",
  FORBIDDEN: "auth",
  INVALID_USAGE: "invalid",
  INVALID_FIELD_VALUE: "invalid",
  BAD_REQUEST: "invalid",
  UNSUPPORTED_OPERATION: "invalid",
  CONDITION_NOT_MET: "invalid",
  INTERNAL_ERROR: "transient",
  UNAVAILABLE: "transient",
  TIMEOUT: "transient",
};

/** The ProviderError for a finished operation with an error, or undefined when it succeeded. */
export function operationError(op: Operation): ProviderError | undefined {
  const errors = op.error?.errors ?? [];
  if (op.status !== "DONE" || (errors.length === 0 && op.error === undefined)) return undefined;
  let kind: ProviderErrorKind | undefined;
  for (const e of errors) {
    kind = e.code === undefined ? undefined : OPERATION_CODE_KINDS[e.code];
    if (kind !== undefined) break;
  }
  kind ??= op.httpErrorStatusCode === undefined ? "invalid" : kindForStatus(op.httpErrorStatusCode);
  const detail = errors.map((e) => [e.code, e.message].filter((x) => x !== undefined).join(": ")).join("; ");
  return new ProviderError("gcp", kind, `operation ${op.name} failed: ${detail || op.httpErrorMessage || "unknown error"}`);
}

const REASON_KINDS: Record<string, ProviderErrorKind> = {
  rateLimitExceeded: "rate_limit",
  userRateLimitExceeded: "rate_limit",
  RATE_LIMIT_EXCEEDED: "rate_limit",
  quotaExceeded: "quota",
  QUOTA_EXCEEDED: "quota",
  ZONE_RESOURCE_POOL_EXHAUSTED: "capacity",
  ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS: "capacity",
  resourceExhausted: "capacity",
  authError: "auth",
  forbidden: "auth",
  insufficientPermissions: "auth",
  accessNotConfigured: "auth",
  notFound: "not_found",
  invalid: "invalid",
  badRequest: "invalid",
  required: "invalid",
  alreadyExists: "invalid",
  conditionNotMet: "invalid",
  backendError: "transient",
  internalError: "transient",
  resourceNotReady: "transient", // e.g. a delete while the instance is still being created or deleted
};

/** Maps a Google error response (`{"error": {code, message, errors: [{reason}], status}}`). */
export function mapGoogleError(failure: HttpFailure): ProviderError {
  const parsed = v.safeParse(GoogleError, failure.body);
  const reasons = parsed.success ? parsed.output.error.errors.map((e) => e.reason).filter((r) => r !== undefined) : [];
  let kind: ProviderErrorKind | undefined;
  for (const reason of reasons) {
    kind = REASON_KINDS[reason];
    if (kind !== undefined) break;
  }
  if (failure.status === 429) kind = kind === "quota" ? "quota" : "rate_limit";
  else if (failure.status === 401) kind = "auth";
  else if (failure.status >= 500 && kind !== "capacity") kind = "transient";
  kind ??= kindForStatus(failure.status);
  const message = parsed.success ? (parsed.output.error.message ?? "") : textPrefix(failure.text.replace(/\s+/g, " ").trim(), 200);
  const label = [parsed.success ? parsed.output.error.status : undefined, reasons[0]].filter((x) => x !== undefined).join(" ");
  return new ProviderError(
    "gcp",
    kind,
    `${failure.method} ${failure.path}: HTTP ${failure.status}${label ? ` ${label}` : ""}${message ? `: ${message}` : ""}`,
    failure.retryAfterSeconds,
  );
}
