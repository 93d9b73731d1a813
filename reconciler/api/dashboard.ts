// The dashboard's assets at /ui/ and the API description at /openapi.json.
// The assets are imported as text so `bun build --compile` embeds them in the
// binary; they hold no data. The charts' library, uPlot (MIT), comes from its npm
// package the same way, under /ui/vendor/ with its licence (also at the head of its script). Everything the dashboard shows comes from /v1 with
// the bearer token the operator signs in with (see ui/app.js), so nothing here
// needs the token, and a strict Content-Security-Policy keeps the page to its own
// script and style.
import type { Context, Hono } from "hono";
import appCss from "../ui/app.css" with { type: "text" };
import appJs from "../ui/app.js" with { type: "text" };
import goodputJs from "../ui/goodput.js" with { type: "text" };
import indexHtml from "../ui/index.html" with { type: "text" };
import uplotLicense from "uplot/LICENSE" with { type: "text" };
import uplotJs from "uplot/dist/uPlot.iife.min.js" with { type: "text" };
import uplotCss from "uplot/dist/uPlot.min.css" with { type: "text" };
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

const INDEX_HTML = text(indexHtml, "index.html");
const PLAIN_HTTP_BANNER = '<p id="plain-http" class="banner" role="alert" hidden></p>';
if (!INDEX_HTML.includes(PLAIN_HTTP_BANNER)) throw new Error("index.html lacks the plain-HTTP banner element");

const UPLOT_LICENSE = text(uplotLicense, "uplot/LICENSE");
/** The licence as a comment at the head of the library's files: it travels with every copy. */
const licensed = (body: string) => `/*! uPlot, from the npm package uplot. ${UPLOT_LICENSE.replaceAll("*/", "* /").trim()} */\n${body}`;

const ASSETS: Record<string, Asset> = {
  "/ui/app.js": asset(text(appJs, "app.js"), "text/javascript; charset=utf-8"),
  "/ui/app.css": asset(text(appCss, "app.css"), "text/css; charset=utf-8"),
  "/ui/goodput.js": asset(text(goodputJs, "goodput.js"), "text/javascript; charset=utf-8"),
  "/ui/vendor/uPlot.iife.min.js": asset(licensed(text(uplotJs, "uPlot.iife.min.js")), "text/javascript; charset=utf-8"),
  "/ui/vendor/uPlot.min.css": asset(licensed(text(uplotCss, "uPlot.min.css")), "text/css; charset=utf-8"),
  "/ui/vendor/uPlot.LICENSE": asset(UPLOT_LICENSE, "text/plain; charset=utf-8"),
};

/** The page, with the plain-HTTP banner shown (filled here: it is there before anyone pastes a token). */
function indexPage(plainHttpBanner: string | undefined): Asset {
  const html =
    plainHttpBanner === undefined
      ? INDEX_HTML
      : INDEX_HTML.replace(PLAIN_HTTP_BANNER, `<p id="plain-http" class="banner" role="alert">${escapeHtml(plainHttpBanner)}</p>`);
  return asset(html, "text/html; charset=utf-8");
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

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

export function registerDashboardRoutes(app: Hono, plainHttpBanner?: string): void {
  const index = indexPage(plainHttpBanner);
  app.get(DASHBOARD_PATH, (c) => serve(c, index));
  app.get("/", (c) => c.redirect(DASHBOARD_PATH));
  app.get("/ui", (c) => c.redirect(DASHBOARD_PATH));
  app.get("/ui/index.html", (c) => c.redirect(DASHBOARD_PATH));
  for (const [path, a] of Object.entries(ASSETS)) app.get(path, (c) => serve(c, a));
  app.get(OPENAPI_PATH, (c) => c.body(openApiJson(), 200, { "Content-Type": "application/json; charset=utf-8", "Access-Control-Allow-Origin": "*" }));
}
