// The dashboard's assets at /ui/ and the API description at /openapi.json.
// The assets are imported as text so `bun build --compile` embeds them in the
// binary; they hold no data. Everything the dashboard shows comes from /v1 with
// the bearer token the operator signs in with (see ui/app.js), so nothing here
// needs the token, and a strict Content-Security-Policy keeps the page to its own
// script and style.
import type { Context, Hono } from "hono";
import appCss from "../ui/app.css" with { type: "text" };
import appJs from "../ui/app.js" with { type: "text" };
import indexHtml from "../ui/index.html" with { type: "text" };
import { OPENAPI_PATH, openApiJson } from "./openapi.ts";

export const DASHBOARD_PATH = "/ui/";

/** bun-types declares `*.html` as an HTMLBundle; imported `with { type: "text" }` it is a string. */
function text(module: unknown, name: string): string {
  if (typeof module !== "string") throw new Error(`dashboard asset ${name} was not embedded as text`);
  return module;
}

interface Asset {
  body: string;
  type: string;
  etag: string;
}

const asset = (body: string, type: string): Asset => ({ body, type, etag: `"${Bun.hash(body).toString(36)}"` });

const ASSETS: Record<string, Asset> = {
  "/ui/": asset(text(indexHtml, "index.html"), "text/html; charset=utf-8"),
  "/ui/app.js": asset(text(appJs, "app.js"), "text/javascript; charset=utf-8"),
  "/ui/app.css": asset(text(appCss, "app.css"), "text/css; charset=utf-8"),
};

const SECURITY_HEADERS: Record<string, string> = {
  "Content-Security-Policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
  "X-Content-Type-Options": "nosniff",
  "Referrer-Policy": "no-referrer",
  "X-Frame-Options": "DENY",
};

function serve(c: Context, a: Asset): Response {
  const headers = { ...SECURITY_HEADERS, "Content-Type": a.type, "Cache-Control": "no-cache", ETag: a.etag };
  if (c.req.header("If-None-Match") === a.etag) return new Response(null, { status: 304, headers });
  return new Response(a.body, { status: 200, headers });
}

export function registerDashboardRoutes(app: Hono): void {
  app.get("/", (c) => c.redirect(DASHBOARD_PATH));
  app.get("/ui", (c) => c.redirect(DASHBOARD_PATH));
  app.get("/ui/index.html", (c) => c.redirect(DASHBOARD_PATH));
  for (const [path, a] of Object.entries(ASSETS)) app.get(path, (c) => serve(c, a));
  app.get(OPENAPI_PATH, (c) => c.body(openApiJson(), 200, { "Content-Type": "application/json; charset=utf-8", "Access-Control-Allow-Origin": "*" }));
}
