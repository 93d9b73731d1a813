// Who may do what through the API: the roles a bearer token carries and, for every route, the
// permission it needs. One table, read by the server's authorization (reconciler/api/auth.ts),
// the dashboard (GET /v1/whoami says what to show) and the tests (every OpenAPI operation must
// be listed here; each role's allowed and refused calls are walked route by route).

/** Roles of API tokens. `node` is a node's own credential; the others are minted by `navarch tokens create`. */
export const ROLES = ["admin", "operator", "viewer", "node", "enroll"] as const;
export type Role = (typeof ROLES)[number];

/** The roles `navarch tokens create --role` mints (node credentials are issued at registration). */
export const TOKEN_ROLES = ["admin", "operator", "viewer", "enroll"] as const;
export type TokenRole = (typeof TOKEN_ROLES)[number];

/**
 * read: every GET of the fleet, the dashboard's views, the change stream, /metrics.
 * operate: cordon, uncordon, drain, replace, reboot, pause and resume pools, ask agents to run checks.
 * admin: tokens, bootstrap tokens, breaker resets, fault injection, anything unlisted.
 * agent: register, heartbeat, events, answers to requests (a node credential for its own node only; an enroll
 * token registers into its pool only; a bootstrap token registers its node once).
 */
export const PERMISSIONS = ["read", "operate", "admin", "agent"] as const;
export type Permission = (typeof PERMISSIONS)[number];

export const ROLE_PERMISSIONS: Readonly<Record<Role, readonly Permission[]>> = {
  admin: ["read", "operate", "admin", "agent"],
  operator: ["read", "operate"],
  viewer: ["read"],
  node: ["agent"],
  enroll: ["agent"],
};

export type Method = "GET" | "POST" | "DELETE";

/** A route as OpenAPI writes it (`/v1/nodes/{id}`) and what it needs; `any` is every authenticated caller. */
export interface RoutePermission {
  method: Method;
  path: string;
  need: Permission | "any";
}

const route = (method: Method, path: string, need: Permission | "any"): RoutePermission => ({ method, path, need });

export const ROUTE_PERMISSIONS: readonly RoutePermission[] = [
  route("POST", "/v1/register", "agent"),
  route("POST", "/v1/heartbeat", "agent"),
  route("POST", "/v1/events", "agent"),
  route("POST", "/v1/nodes/{id}/requests/{rid}", "agent"),
  route("GET", "/v1/events", "read"),
  route("GET", "/v1/nodes", "read"),
  route("GET", "/v1/nodes/{id}", "read"),
  route("GET", "/v1/nodes/{id}/timeline", "read"),
  route("GET", "/v1/nodes/{id}/bootstrap", "read"),
  route("GET", "/v1/nodes/{id}/requests", "read"),
  route("GET", "/v1/nodes/{id}/requests/{rid}", "read"),
  route("GET", "/v1/overview", "read"),
  route("GET", "/v1/pools", "read"),
  route("GET", "/v1/pools/{name}", "read"),
  route("GET", "/v1/incidents", "read"),
  route("GET", "/v1/breakers", "read"),
  route("GET", "/v1/audit", "read"),
  route("GET", "/v1/report", "read"),
  route("GET", "/v1/watch", "read"),
  route("GET", "/v1/status", "read"),
  route("GET", "/metrics", "read"),
  route("POST", "/v1/nodes/{id}/cordon", "operate"),
  route("POST", "/v1/nodes/{id}/uncordon", "operate"),
  route("POST", "/v1/nodes/{id}/drain", "operate"),
  route("POST", "/v1/nodes/{id}/replace", "operate"),
  route("POST", "/v1/nodes/{id}/reboot", "operate"),
  route("POST", "/v1/nodes/{id}/requests", "operate"),
  route("POST", "/v1/pools/{name}/pause", "operate"),
  route("POST", "/v1/pools/{name}/resume", "operate"),
  route("POST", "/v1/pools/{name}/scale", "operate"),
  route("POST", "/v1/nodes/{id}/fault", "admin"),
  route("POST", "/v1/breakers/{scope}/reset", "admin"),
  route("POST", "/v1/bootstrap-tokens", "admin"),
  route("POST", "/v1/tokens", "admin"),
  route("GET", "/v1/tokens", "admin"),
  route("DELETE", "/v1/tokens/{id}", "admin"),
  route("GET", "/v1/whoami", "any"),
];

const compiled = ROUTE_PERMISSIONS.map((r) => ({
  ...r,
  pattern: new RegExp(`^${r.path.replace(/[.*+?^$()|[\]\\]/g, "\\$&").replace(/\{[^}]+\}/g, "[^/]+")}/?$`),
}));

/** What a request needs; unlisted routes need admin (a route added without a row is closed, not open). */
export function permissionFor(method: string, path: string): Permission | "any" {
  const m = method === "HEAD" ? "GET" : method;
  return compiled.find((r) => r.method === m && r.pattern.test(path))?.need ?? "admin";
}

export function roleMay(role: Role, need: Permission | "any"): boolean {
  return need === "any" || ROLE_PERMISSIONS[role].includes(need);
}
