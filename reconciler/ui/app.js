// Navarch dashboard: plain JavaScript, no framework, no build step.
// Data comes from the reconciler's /v1 API with the token the operator pasted
// (kept in sessionStorage: this tab only). Live updates: /v1/watch, a server-sent
// event stream read with fetch (EventSource cannot send an Authorization header);
// every `change` re-renders the current page. Routes live in the URL hash:
//   #/              the fleet            #/pool/NAME   one pool
//   #/node/ID       one node             #/incidents   incidents
//   #/events        health events        #/goodput[/24h|7d|30d]  what outages cost (goodput.js)
"use strict";

const TOKEN_KEY = "navarch.token";
const main = document.getElementById("main");
const live = document.getElementById("live");
let token = sessionStorage.getItem(TOKEN_KEY) || "";
let watchAbort = null;
let refreshTimer = null;
let pollTimer = null;
let rendering = false;
let renderAgain = false;
/** The signed-in token's role and permissions (GET /v1/whoami): actions it may not take are not shown. */
let who = null;
const may = (permission) => who === null || who.permissions.includes(permission);
/** Set by the events page: its filters survive re-renders. */
let eventFilters = { node: "", pool: "", severity: "" };
/** Set by a page that draws into its HTML once it is in place (the Goodput page's charts). */
let afterRender = null;

// ───────────────────────────── helpers ─────────────────────────────

// Agents supply host names, NVML errors and kernel-log text: control characters and bidi
// overrides are shown as escapes (\x1b, \u202e), so nothing invisible hides or reorders text.
const esc = (s) =>
  String(s ?? "")
    .replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g, (c) => {
      const code = c.charCodeAt(0);
      return code <= 0xff ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u${code.toString(16).padStart(4, "0")}`;
    })
    .replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const enc = encodeURIComponent;

function duration(ms) {
  if (ms === null || ms === undefined) return "–";
  const s = Math.round(ms / 1000);
  if (s < 120) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 120) return `${m}m ${s % 60}s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h ${m % 60}m`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}
function ago(at, now) {
  if (at === null || at === undefined) return "–";
  return `${duration(Math.max(0, now - at))} ago`;
}
function when(at) {
  return at === null || at === undefined
    ? "–"
    : new Date(at)
        .toISOString()
        .replace("T", " ")
        .replace(/\.\d+Z$/, "Z");
}

/** A node's tile colour: what an operator needs first (unhealthy beats everything but gone). */
function nodeStatus(n) {
  if (n.state === "terminated" || n.state === "failed") return "gone";
  if (n.state === "lost") return "lost";
  if (n.verdict === "unhealthy") return "unhealthy";
  if (["cordoned", "draining", "held", "terminating"].includes(n.state)) return "out";
  if (["requested", "provisioning", "bootstrapping", "validating"].includes(n.state)) return "coming";
  if (n.state === "suspect" || n.verdict === "degraded") return "degraded";
  if (n.state === "ready" && n.verdict === "healthy") return "healthy";
  return "unknown";
}
const STATUS_TEXT = {
  healthy: "healthy",
  degraded: "degraded / suspect",
  unhealthy: "unhealthy",
  out: "cordoned, draining or held",
  coming: "coming up",
  lost: "lost (silent)",
  gone: "gone",
  unknown: "not judged yet",
};
const badge = (status, text) => `<span class="badge s-${esc(status)}">${esc(text ?? status)}</span>`;
const stateBadge = (n) => badge(nodeStatus(n), n.state);

function table(headers, rows, empty = "Nothing here.") {
  if (rows.length === 0) return `<p class="empty">${esc(empty)}</p>`;
  const numeric = headers.map((h) => h.startsWith("#"));
  const head = headers.map((h, i) => (numeric[i] ? `<th class="num">${esc(h.slice(1))}</th>` : `<th>${esc(h)}</th>`)).join("");
  const body = rows.map((r) => `<tr>${r.map((c, i) => (numeric[i] ? `<td class="num">${c}</td>` : `<td>${c}</td>`)).join("")}</tr>`).join("");
  return `<table><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>`;
}

/** A large fleet's view carries only the tiles that need attention first; say how many are not drawn. */
function omitted(count, drawn) {
  if (!count) return "";
  return `<p class="muted" id="tiles-omitted">${esc(count)} more healthy, Ready nodes are not drawn (a view draws at most ${esc(drawn)} tiles, those needing attention first); the counts above include them.</p>`;
}

function tiles(nodes) {
  if (nodes.length === 0) return `<p class="empty">No live nodes.</p>`;
  return `<div class="grid">${nodes
    .map((n) => {
      const st = nodeStatus(n);
      const title = `${n.id} — ${n.state}${n.verdict ? `, ${n.verdict}` : ""}${n.stateReason ? `: ${n.stateReason}` : ""}`;
      return `<a class="tile s-${st}${n.incidentId ? " incident" : ""}" data-node="${esc(n.id)}" data-status="${st}" data-state="${esc(n.state)}" href="#/node/${enc(n.id)}" title="${esc(title)}"></a>`;
    })
    .join("")}</div>`;
}

function legend() {
  return `<div class="legend">${Object.entries(STATUS_TEXT)
    .filter(([k]) => k !== "gone")
    .map(([k, t]) => `<span><i class="s-${k}"></i>${esc(t)}</span>`)
    .join("")}</div>`;
}

class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path, init = {}) {
  const res = await fetch(path, {
    ...init,
    headers: { Authorization: `Bearer ${token}`, ...(init.body ? { "Content-Type": "application/json" } : {}), ...(init.headers || {}) },
  });
  let body = null;
  try {
    body = await res.json();
  } catch {
    body = null;
  }
  if (res.status === 401) {
    signOut("The token was refused (HTTP 401). Sign in again.");
    throw new HttpError(401, "unauthorized");
  }
  if (!res.ok) throw new HttpError(res.status, (body && body.error) || `HTTP ${res.status}`);
  return body;
}

// ───────────────────────────── pages ─────────────────────────────

function incidentRows(incidents, now) {
  return incidents.map((i) => [
    `<a href="#/node/${enc(i.nodeId)}">${esc(i.nodeId)}</a>`,
    esc(i.pool ?? "–"),
    esc(i.reason),
    esc(i.status),
    esc(ago(i.faultAt, now)),
    esc(duration(i.cordonedAt !== null ? i.cordonedAt - i.faultAt : null)),
    esc(duration(i.cordonedAt !== null && i.drainedAt !== null ? i.drainedAt - i.cordonedAt : null)),
    esc(duration(i.replacementReadyAt !== null ? i.replacementReadyAt - i.faultAt : null)),
    i.closedAt === null ? badge("unhealthy", "open") : badge(i.outcome === "replaced" || i.outcome === "recovered" ? "healthy" : "gone", i.outcome ?? "closed"),
  ]);
}
const INCIDENT_HEADERS = ["Node", "Pool", "Why", "What Navarch is doing", "Fault", "Fault→cordon", "Cordon→drained", "Fault→replacement ready", "Outcome"];

function blockedRows(rows, now) {
  return rows.map((a) => [
    esc(ago(a.at, now)),
    `<a href="#/node/${enc(a.target)}">${esc(a.target)}</a>`,
    `<code>${esc(a.details?.rail ?? "?")}</code>`,
    esc(a.details?.reason ?? ""),
  ]);
}

/** What Navarch depends on (GET /v1/status): a dependency that does not answer, and what waits for it. Its times are wall clock. */
function dependencyPanel(status, now = Date.now()) {
  const deps = status.dependencies;
  if (deps.length === 0) return "";
  const rows = deps.map((d) => [
    `<code>${esc(d.name)}</code>`,
    esc(`${d.label} (${d.target})`),
    d.state === "up" ? badge("healthy", "up") : d.state === "down" ? badge("unhealthy", "down") : badge("degraded", "not reached yet"),
    esc(d.state === "up" ? `since ${ago(d.since, now)}` : `since ${when(d.since)} (${ago(d.since, now)})`),
    esc(d.lastError ? `${ago(d.lastError.at, now)}: ${d.lastError.message}` : "–"),
    d.queuedCount > 0
      ? `<span class="hot">${esc(d.queuedCount)}</span> ${esc(
          d.queued
            .slice(0, 5)
            .map((q) => `${q.action}${q.node ? ` ${q.node}` : ""}`)
            .join(", "),
        )}${d.queuedCount > 5 ? " …" : ""}`
      : "0",
  ]);
  const down = deps.filter((d) => d.state !== "up").length;
  const note = down
    ? `<p class="muted">Navarch goes on judging GPU health and quarantining nodes in its own state; what only a dependency that is down can do waits, and runs once it answers.</p>`
    : "";
  return `<div class="panel" id="dependencies"><h2>Dependencies${down ? ` <span class="hot">(${down} not answering)</span>` : ""}</h2>${note}${table(["Dependency", "What", "State", "Since", "Last error", "Waiting"], rows)}</div>`;
}

async function pageFleet() {
  const [o, status] = await Promise.all([api("/v1/overview"), api("/v1/status")]);
  const now = o.at;
  // Near the top while one does not answer; at the bottom while all do.
  const degraded = status.dependencies.some((d) => d.state !== "up");
  const dependencies = dependencyPanel(status);
  const t = o.totals;
  const ready = t.byState.ready ?? 0;
  const cards = [
    ["nodes", t.nodes, "live nodes"],
    ["ready", ready, "ready"],
    ["unhealthy", t.unhealthy, "unhealthy", t.unhealthy > 0],
    ["incidents", t.openIncidents, "open incidents", t.openIncidents > 0],
    ["breakers", o.breakers.length, "breakers tripped", o.breakers.length > 0],
    ["dependencies", status.dependencies.filter((d) => d.state !== "up").length, "dependencies down", degraded],
    ["terminated", t.terminated, "terminated (all time)"],
  ]
    .map(([k, n, l, bad]) => `<div class="card${bad ? " bad" : ""}" data-card="${k}"><div class="n">${esc(n)}</div><div class="l">${esc(l)}</div></div>`)
    .join("");
  const pools = table(
    ["Pool", "#Size", "#Min", "#Max", "#Monitored", "#Healthy", "#Unhealthy", "States", "Autoscaler", "Last scaled", "Status"],
    o.pools.map((p) => [
      `<a href="#/pool/${enc(p.name)}">${esc(p.name)}</a>`,
      esc(p.size),
      esc(p.minNodes ?? "–"),
      esc(p.maxNodes ?? "–"),
      esc(p.monitored ?? 0),
      esc(p.healthy),
      p.unhealthy > 0 ? `<span class="hot">${esc(p.unhealthy)}</span>` : "0",
      esc(
        Object.entries(p.byState)
          .filter(([s]) => s !== "terminated" && s !== "failed")
          .map(([s, n]) => `${s} ${n}`)
          .join(", ") || "–",
      ),
      esc(p.autoscaler ?? "none"),
      esc(p.lastScaleAt ? `${ago(p.lastScaleAt, now)} (${p.lastScaleDirection})` : "never"),
      [
        p.paused ? badge("out", "paused") : "",
        p.breaker ? badge("unhealthy", "breaker tripped") : "",
        p.held ? badge("unhealthy", "held: machines do not register") : "",
        p.launches ? badge("unhealthy", p.launches.kind === "permanent" ? "launches refused" : "launches failing") : "",
        p.size < (p.minNodes ?? 0) ? badge("degraded", "below min") : "",
      ]
        .filter(Boolean)
        .join(" ") || badge("healthy", "ok"),
    ]),
    "No pools yet (the reconciler writes them from its config on its first pass).",
  );
  const byPool = new Map();
  for (const n of o.nodes) {
    const k = n.pool ?? "(no pool)";
    if (!byPool.has(k)) byPool.set(k, []);
    byPool.get(k).push(n);
  }
  const grids =
    [...byPool.entries()]
      .map(
        ([pool, nodes]) =>
          `<div class="pool-head"><b>${pool === "(no pool)" ? esc(pool) : `<a href="#/pool/${enc(pool)}">${esc(pool)}</a>`}</b><span class="muted">${nodes.length} nodes${o.totals.tilesOmitted > 0 ? " drawn" : ""}</span></div>${tiles(nodes)}`,
      )
      .join("") + omitted(o.totals.tilesOmitted, o.nodes.length);
  const breakers = o.breakers.length
    ? `<div class="panel"><h2>Circuit breakers tripped</h2>${table(
        ["Scope", "Tripped", "Why", ""],
        o.breakers.map((b) => [
          esc(b.scope),
          esc(ago(b.trippedAt, now)),
          esc(b.reason),
          may("admin") ? `<button type="button" data-reset="${esc(b.scope)}">Reset</button>` : "",
        ]),
      )}</div>`
    : "";
  return `<h1>Fleet</h1>
<div class="cards">${cards}</div>
${breakers}
${degraded ? dependencies : ""}
<div class="panel"><h2>Pools</h2>${pools}</div>
<div class="panel" id="fleet-grid"><h2>Nodes</h2>${legend()}${grids || `<p class="empty">No live nodes.</p>`}</div>
<div class="panel"><h2>Unhealthy nodes and what Navarch is doing</h2>${table(INCIDENT_HEADERS, incidentRows(o.incidents, now), "No open incidents.")}</div>
<div class="panel"><h2>What Navarch refused to do, and why</h2>${table(["When", "Node", "Rail", "Why"], blockedRows(o.blocked, now), "No action was refused.")}</div>
${degraded ? "" : dependencies}`;
}

async function pagePool(name) {
  const p = await api(`/v1/pools/${enc(name)}`);
  const now = p.at;
  const s = p.summary;
  const facts = [
    ["Size", `${s.size} (min ${s.minNodes ?? "–"}, max ${s.maxNodes ?? "–"})${s.size < (s.minNodes ?? 0) ? " — below min" : ""}`],
    ["Monitored", `${s.monitored ?? 0} (registered on their own: watched, never counted in the size)`],
    ["Healthy / unhealthy", `${s.healthy} / ${s.unhealthy}`],
    [
      "Autoscaler",
      s.autoscaler ?? (s.requestedNodes == null ? "none (bounds only)" : `none: held at ${s.requestedNodes}, requested by ${s.requestedBy ?? "?"}`),
    ],
    ["Providers", s.providers.join(", ") || "–"],
    ["Instance type", s.instanceType ?? "–"],
    ["Last scaled", s.lastScaleAt ? `${ago(s.lastScaleAt, now)} (${s.lastScaleDirection})` : "never"],
    ["Paused", s.paused ? `yes: ${s.pausedReason ?? ""}` : "no"],
    ["Held", s.held ? `since ${ago(s.held.since, now)}: ${s.held.reason} (navarch pools resume ${s.name})` : "no"],
    [
      "Launches",
      s.launches
        ? `${s.launches.kind === "permanent" ? "refused" : "failing"}: ${s.launches.failures} in a row since ${ago(s.launches.since, now)}: ${s.launches.error}`
        : "ok",
    ],
    ["Source", p.pool.source],
  ];
  const decisions = table(
    ["When", "Kind", "From → to", "Why", "Inputs"],
    p.decisions.map((a) => [
      esc(ago(a.at, now)),
      esc(a.action === "dry_run" ? "dry run" : "scale"),
      esc(`${a.details?.from ?? "?"} → ${a.details?.to ?? "?"}`),
      esc(a.details?.reason ?? ""),
      `<code>${esc(a.details?.inputs ? JSON.stringify(a.details.inputs) : "")}</code>`,
    ]),
    "No scaling decisions yet.",
  );
  const breakers = table(
    ["Scope", "Tripped", "Why", ""],
    p.breakers.map((b) => [
      esc(b.scope),
      esc(ago(b.trippedAt, now)),
      esc(b.reason),
      may("admin") ? `<button type="button" data-reset="${esc(b.scope)}">Reset</button>` : "",
    ]),
    "No breaker is tripped for this pool.",
  );
  return `<h1>Pool ${esc(s.name)} ${s.paused ? badge("out", "paused") : ""} ${s.breaker ? badge("unhealthy", "breaker tripped") : ""}</h1>
${
  may("operate")
    ? `<div class="actions">
  <button type="button" id="pool-toggle" data-pool="${esc(s.name)}" data-action="${s.paused ? "resume" : "pause"}">${s.paused ? "Resume pool" : "Pause pool"}</button>
  <span id="flash"></span>
</div>`
    : ""
}
<div class="row">
  <div class="panel"><h2>Pool</h2><dl class="facts">${facts.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`).join("")}</dl></div>
  <div class="panel"><h2>Nodes by state</h2>${table(
    ["State", "#Nodes"],
    Object.entries(s.byState).map(([k, n]) => [esc(k), esc(n)]),
    "No nodes.",
  )}</div>
</div>
<div class="panel" id="pool-grid"><h2>Nodes</h2>${legend()}${tiles(p.nodes)}${omitted(p.tilesOmitted, p.nodes.length)}</div>
<div class="panel"><h2>Autoscaler decisions</h2>${decisions}</div>
<div class="panel"><h2>Safety rails: what was refused and why</h2>${table(["When", "Node", "Rail", "Why"], blockedRows(p.blocked, now), "No action on this pool was refused.")}
<h2>Circuit breakers</h2>${breakers}</div>
<div class="panel"><h2>Incidents</h2>${table(INCIDENT_HEADERS, incidentRows(p.incidents, now), "No incidents in this pool.")}</div>`;
}

function incidentSteps(i, now) {
  const labels = {
    fault: "fault",
    opened: "incident opened",
    cordoned: "cordoned",
    drained: "drained",
    rebooted: "reboot asked",
    back: "back, new boot",
    terminated: "terminated",
    replacement_ready: "replacement ready",
    closed: "closed",
  };
  const done = i.steps
    .map(
      (s) =>
        `<div class="step"><b>${esc(labels[s.step] ?? s.step)}</b>${esc(when(s.at))}<div class="d">${s.sincePreviousMs === null ? "start" : `+${esc(duration(s.sincePreviousMs))}`}</div></div>`,
    )
    .join("");
  const waiting =
    i.closedAt === null ? `<div class="step pending"><b>now</b>${esc(i.status)}<div class="d">open for ${esc(duration(now - i.openedAt))}</div></div>` : "";
  const d = i.durations;
  return `<div class="panel incident" data-incident="${esc(i.id)}">
  <div><b>Incident ${esc(i.id)}</b> on <a href="#/node/${enc(i.nodeId)}">${esc(i.nodeId)}</a> — ${esc(i.reason)} ${i.closedAt === null ? badge("unhealthy", "open") : badge("gone", i.outcome ?? "closed")}</div>
  <div class="muted">Status: ${esc(i.status)}${i.replacementNodeId ? ` · replacement <a href="#/node/${enc(i.replacementNodeId)}">${esc(i.replacementNodeId)}</a>` : ""}</div>
  <div class="steps">${done}${waiting}</div>
  <div class="muted">${i.remedy ? `remedy: ${esc(i.remedy === "reboot" ? "reboot first" : "replace")} · ` : ""}fault→cordon ${esc(duration(d.faultToCordonMs))} · cordon→drained ${esc(duration(d.cordonToDrainedMs))}${i.rebootedAt ? ` · reboot→back ${esc(duration(d.rebootToBackMs))}` : ""} · drained→terminated ${esc(duration(d.drainedToTerminatedMs))} · fault→replacement ready ${esc(duration(d.faultToReplacementReadyMs))}</div>
</div>`;
}

function gpuRows(gpus) {
  return gpus.map((g) => {
    const s = g.lastSnapshot || {};
    const t = typeof s.temperatureC === "number" ? s.temperatureC : null;
    const dbe = s.eccVolatileDbe ?? null;
    return [
      esc(g.index),
      esc(g.name),
      t === null ? "–" : `<span class="${t >= 85 ? "hot" : t >= 75 ? "warm" : ""}">${esc(t)} °C</span>`,
      esc(typeof s.utilizationPct === "number" ? `${s.utilizationPct} %` : "–"),
      esc(typeof s.powerW === "number" ? `${Math.round(s.powerW)} W` : "–"),
      esc(typeof s.memoryUsedBytes === "number" && g.memoryTotalBytes ? `${Math.round((s.memoryUsedBytes / g.memoryTotalBytes) * 100)} %` : "–"),
      esc(s.eccVolatileSbe ?? "–"),
      dbe ? `<span class="hot">${esc(dbe)}</span>` : esc(dbe ?? "–"),
      `<code>${esc(g.pciBusId)}</code>`,
      `<code>${esc(g.uuid)}</code>`,
    ];
  });
}

function eventRows(events, now, withNode) {
  return events.map((e) => [
    esc(ago(e.time, now)),
    ...(withNode ? [`<a href="#/node/${enc(e.nodeId)}">${esc(e.nodeId)}</a>`, esc(e.pool ?? "–")] : []),
    esc(e.check),
    esc(e.code ?? ""),
    badge(e.severity === "healthy" ? "healthy" : e.severity, e.severity),
    esc(e.action),
    esc(e.gpuIndex ?? "–"),
    esc(e.count > 1 ? `${e.message} (×${e.count})` : e.message),
  ]);
}

async function pageNode(id) {
  const [t, boot] = await Promise.all([
    api(`/v1/nodes/${enc(id)}/timeline`),
    // SSH bootstrap runs (each command's exit code and output); absent on reconcilers without them.
    api(`/v1/nodes/${enc(id)}/bootstrap`).catch((err) => (err instanceof HttpError && err.status === 404 ? null : Promise.reject(err))),
  ]);
  const n = t.node;
  const now = t.at;
  const canCordon = ["validating", "ready", "suspect"].includes(n.state);
  const canUncordon = ["cordoned", "draining", "held"].includes(n.state);
  const facts = [
    ["State", `${n.state}${n.stateReason ? ` — ${n.stateReason}` : ""}`],
    ["Health", `${n.verdict ?? "not judged yet"} (agent: ${n.agentHealth ?? "not checked"})`],
    ["Pool", `${n.pool ?? "–"} (${n.origin === "launched" ? "launched by Navarch" : "monitored: registered on its own, never counted, scaled or replaced"})`],
    ["Provider", `${n.provider ?? "–"} ${n.instanceType ?? ""} ${n.instanceName ? `(${n.instanceName})` : ""}`],
    ["Hostname", n.hostname ?? "–"],
    ["Agent", `${n.agentVersion ?? "not registered"}${n.bootId ? `, boot ${n.bootId}` : ""}`],
    ["Driver", `${n.driverVersion ?? "–"} (CUDA ${n.cudaVersion ?? "–"})`],
    ["NVML", n.nvmlAvailable ? "ok" : `unavailable: ${n.nvmlError ?? "not reported"}`],
    ["Heartbeat", ago(n.lastHeartbeatAt, now)],
    ["Registered", ago(n.registeredAt, now)],
    ["Cordoned by", n.cordonedBy ?? "–"],
    ["Replaces", n.replacementOf ?? "–"],
    ["Replaced by", t.replacedBy.map((r) => `${r.id} (${r.state})`).join(", ") || "–"],
  ];
  const xids = t.events.filter((e) => e.check === "xid");
  const audit = table(
    ["When", "Who", "Action", "Details"],
    t.audit.map((a) => [esc(ago(a.at, now)), esc(a.actor), esc(a.action), `<code>${esc(auditText(a))}</code>`]),
    "Nothing recorded yet.",
  );
  const ops = table(
    ["Operation", "State", "#Attempts", "Error", "Updated"],
    t.operations.map((o) => [`<code>${esc(o.kind)}</code>`, esc(o.state), esc(o.attempts), esc(o.error ?? ""), esc(ago(o.updatedAt, now))]),
    "No provider calls for this node.",
  );
  const bootstrap = bootstrapHtml(boot && Array.isArray(boot.runs) ? boot.runs : [], now);
  const incidents = t.incidents.length ? t.incidents.map((i) => incidentSteps(i, now)).join("") : `<p class="empty">No incidents.</p>`;
  return `<h1>Node ${esc(n.id)} <span id="node-state">${stateBadge(n)}</span></h1>
${
  may("operate")
    ? `<div class="actions">
  <input id="reason" placeholder="reason (recorded in the audit log)" maxlength="1024">
  <button type="button" id="cordon" class="danger" data-node="${esc(n.id)}" data-action="cordon" ${canCordon ? "" : "disabled"}>Cordon</button>
  <button type="button" id="uncordon" data-node="${esc(n.id)}" data-action="uncordon" ${canUncordon ? "" : "disabled"}>Uncordon</button>
  <span id="flash"></span>
</div>`
    : ""
}
<div class="row">
  <div class="panel"><h2>Node</h2><dl class="facts">${facts.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`).join("")}</dl></div>
  <div class="panel"><h2>Open findings</h2>${findingsTable(n.findings, now)}</div>
</div>
<div class="panel"><h2>GPUs</h2>${table(["GPU", "Name", "Temp", "Util", "Power", "Memory", "ECC SBE", "ECC DBE", "PCI bus", "UUID"], gpuRows(t.gpus), "No GPUs reported.")}</div>
<div class="panel" id="incidents"><h2>Incidents: from fault to replacement</h2>${incidents}</div>
<div class="panel"><h2>Xid history</h2>${table(["When", "Check", "Code", "Severity", "Action", "GPU", "Message"], eventRows(xids, now, false), "No Xid errors.")}</div>
<div class="panel"><h2>All health events</h2>${table(["When", "Check", "Code", "Severity", "Action", "GPU", "Message"], eventRows(t.events, now, false), "No events.")}</div>
<div class="panel"><h2>What was done to this node</h2>${audit}</div>
<div class="row">
  <div class="panel"><h2>Provider calls</h2>${ops}</div>
  <div class="panel"><h2>Bootstrap output</h2>${bootstrap}</div>
</div>`;
}

function bootstrapHtml(runs, now) {
  if (runs.length === 0) return `<p class="empty">No bootstrap ran for this node (its machine starts the agent itself).</p>`;
  return runs
    .slice(0, 3)
    .map((r) => {
      const status = r.state === "succeeded" ? "healthy" : r.state === "failed" ? "unhealthy" : "coming";
      const took = r.finishedAt ? ` in ${duration(r.finishedAt - r.startedAt)}` : "";
      const steps = (Array.isArray(r.steps) ? r.steps : [])
        .map(
          (st) =>
            `<div><code>$ ${esc(st.command)}</code> <span class="muted">exit ${esc(st.exitCode ?? st.signal ?? "?")}${st.timedOut ? " (timed out)" : ""}, ${esc(duration(st.durationMs))}</span>` +
            `${st.stdout || st.stderr ? `<pre class="output">${esc(`${st.stdout ?? ""}${st.stderr ?? ""}`)}</pre>` : ""}</div>`,
        )
        .join("");
      return `<div class="bootstrap-run" data-state="${esc(r.state)}"><p>${badge(status, r.state)} ${esc(r.user)}@${esc(r.address)}, started ${esc(ago(r.startedAt, now))}${esc(took)}</p>${r.error ? `<p class="error">${esc(r.error)}</p>` : ""}${steps || `<p class="empty">No command ran yet.</p>`}</div>`;
    })
    .join("");
}

function findingsTable(findings, now) {
  const list = Array.isArray(findings) ? findings : [];
  return table(
    ["Finding", "Result", "Action", "GPU", "Rule", "Since"],
    list.map((f) => [
      esc(f.reason ?? f.key),
      badge(f.result === "unhealthy" ? "unhealthy" : "degraded", f.result ?? "?"),
      esc(f.action ?? ""),
      esc(f.gpu ? f.gpu.index : "–"),
      `<code>${esc(f.rule ?? "")}</code>`,
      esc(ago(f.openedAt, now)),
    ]),
    "None.",
  );
}

function auditText(a) {
  const d = a.details;
  if (!d || typeof d !== "object") return "";
  if (a.action === "transition") return `${d.from} → ${d.to}: ${d.reason ?? ""}`;
  if (a.action === "blocked") return `${d.rail}: ${d.reason}`;
  return JSON.stringify(d);
}

async function pageIncidents() {
  const [open, all] = await Promise.all([api("/v1/incidents?open=true"), api("/v1/incidents")]);
  const now = Date.now();
  return `<h1>Incidents</h1>
<div class="panel"><h2>Open</h2>${table(INCIDENT_HEADERS, incidentRows(open.incidents, now), "No open incidents.")}</div>
<div class="panel"><h2>All (latest 500)</h2>${table(INCIDENT_HEADERS, incidentRows(all.incidents, now), "No incidents yet.")}</div>`;
}

async function pageEvents() {
  const q = new URLSearchParams({ limit: "200" });
  for (const [k, v] of Object.entries(eventFilters)) if (v) q.set(k, v);
  const [list, overview] = await Promise.all([api(`/v1/events?${q}`), api("/v1/overview")]);
  const now = overview.at;
  const rows = eventRows([...list.events].reverse(), now, true);
  return `<h1>Health events</h1>
<form class="filters" id="event-filters">
  <label>Node <input name="node" value="${esc(eventFilters.node)}"></label>
  <label>Pool <input name="pool" value="${esc(eventFilters.pool)}"></label>
  <label>Severity at least <select name="severity">${["", "healthy", "degraded", "unhealthy"]
    .map((s) => `<option value="${s}"${s === eventFilters.severity ? " selected" : ""}>${s || "any"}</option>`)
    .join("")}</select></label>
  <button type="submit">Filter</button>
</form>
<div class="panel">${table(["When", "Node", "Pool", "Check", "Code", "Severity", "Action", "GPU", "Message"], rows, "No events match.")}</div>`;
}

// ───────────────────────────── router and live updates ─────────────────────────────

function route() {
  const hash = location.hash.replace(/^#/, "") || "/";
  const parts = hash.split("/").filter(Boolean).map(decodeURIComponent);
  if (parts[0] === "pool" && parts[1]) return { nav: "fleet", render: () => pagePool(parts[1]), poll: 0 };
  if (parts[0] === "node" && parts[1]) return { nav: "fleet", render: () => pageNode(parts[1]), poll: 5000 };
  if (parts[0] === "incidents") return { nav: "incidents", render: pageIncidents, poll: 0 };
  if (parts[0] === "events") return { nav: "events", render: pageEvents, poll: 0 };
  // Goodput is a window's sums, costly to compute: looked at again every minute, not on every change.
  if (parts[0] === "goodput") return { nav: "goodput", render: () => pageGoodput(parts[1]), poll: 60_000, live: false };
  // Dependencies change without a change to the fleet's rows: the fleet page looks again every 10 s.
  return { nav: "fleet", render: pageFleet, poll: 10_000 };
}

async function render() {
  if (!token) return showLogin();
  if (rendering) {
    renderAgain = true;
    return;
  }
  rendering = true;
  const r = route();
  afterRender = null;
  for (const a of document.querySelectorAll("[data-nav]")) a.classList.toggle("active", a.dataset.nav === r.nav);
  try {
    const html = await r.render();
    if (!token) return;
    const scroll = window.scrollY;
    const focusedId = document.activeElement && document.activeElement.id;
    const keep = focusedId ? document.getElementById(focusedId) : null;
    const keptValue = keep && "value" in keep ? keep.value : null;
    const flash = document.getElementById("flash");
    const flashHtml = flash ? flash.innerHTML : "";
    main.innerHTML = html;
    const after = afterRender;
    afterRender = null;
    if (after) after();
    main.dataset.loaded = String(Date.now());
    const again = focusedId ? document.getElementById(focusedId) : null;
    if (again && keptValue !== null && "value" in again) {
      again.value = keptValue;
      again.focus();
    }
    const newFlash = document.getElementById("flash");
    if (newFlash && flashHtml) newFlash.innerHTML = flashHtml;
    window.scrollTo(0, scroll);
  } catch (err) {
    if (err instanceof HttpError && err.status === 401) return;
    main.innerHTML = `<p class="error" role="alert">${esc(err.message || String(err))}</p><p><a href="#/">Back to the fleet</a></p>`;
  } finally {
    rendering = false;
    clearTimeout(pollTimer);
    if (r.poll && token) pollTimer = setTimeout(render, r.poll);
    if (renderAgain) {
      renderAgain = false;
      scheduleRender();
    }
  }
}

function scheduleRender() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(render, 100);
}

function setLive(on) {
  live.hidden = false;
  live.className = `live ${on ? "on" : "off"}`;
  live.textContent = on ? "live" : "reconnecting…";
  live.dataset.live = on ? "on" : "off";
}

/** Reads /v1/watch (text/event-stream) and re-renders on every `change`; reconnects with backoff. */
async function watch() {
  if (watchAbort) watchAbort.abort();
  const ctl = new AbortController();
  watchAbort = ctl;
  let backoff = 500;
  while (token && !ctl.signal.aborted) {
    try {
      const res = await fetch("/v1/watch", { headers: { Authorization: `Bearer ${token}` }, signal: ctl.signal });
      if (res.status === 401) return signOut("The token was refused (HTTP 401). Sign in again.");
      if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
      setLive(true);
      backoff = 500;
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const chunk = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const event = /^event: ?(.*)$/m.exec(chunk)?.[1];
          if (event === "change" && route().live !== false) scheduleRender();
        }
      }
    } catch {
      if (ctl.signal.aborted) return;
    }
    setLive(false);
    await new Promise((r) => setTimeout(r, backoff));
    backoff = Math.min(10_000, backoff * 2);
    // Whatever changed while we were away.
    scheduleRender();
  }
}

async function act(path, body, what) {
  const flash = document.getElementById("flash");
  try {
    await api(path, { method: "POST", body: JSON.stringify(body) });
    if (flash) flash.innerHTML = `<span class="flash ok">${esc(what)}: done</span>`;
  } catch (err) {
    if (flash) flash.innerHTML = `<span class="flash bad">${esc(what)}: ${esc(err.message)}</span>`;
  }
  scheduleRender();
}

main.addEventListener("click", (e) => {
  const target = e.target instanceof Element ? e.target.closest("button") : null;
  if (!target) return;
  if (target.dataset.node && target.dataset.action) {
    const reason = document.getElementById("reason")?.value.trim();
    const action = target.dataset.action;
    target.disabled = true;
    act(
      `/v1/nodes/${enc(target.dataset.node)}/${action}`,
      { actor: "dashboard", ...(reason ? { reason } : action === "cordon" ? { reason: "cordoned from the dashboard" } : {}) },
      action,
    );
  } else if (target.dataset.pool && target.dataset.action) {
    target.disabled = true;
    act(`/v1/pools/${enc(target.dataset.pool)}/${target.dataset.action}`, { actor: "dashboard", reason: "from the dashboard" }, target.dataset.action);
  } else if (target.dataset.reset) {
    target.disabled = true;
    act(`/v1/breakers/${enc(target.dataset.reset)}/reset`, { actor: "dashboard" }, "reset");
  }
});

main.addEventListener("submit", (e) => {
  const form = e.target;
  if (!(form instanceof HTMLFormElement) || form.id !== "event-filters") return;
  e.preventDefault();
  const data = new FormData(form);
  eventFilters = { node: String(data.get("node") || "").trim(), pool: String(data.get("pool") || "").trim(), severity: String(data.get("severity") || "") };
  render();
});

// ───────────────────────────── sign in and out ─────────────────────────────

function showLogin(message = "") {
  document.getElementById("nav").hidden = true;
  document.getElementById("logout").hidden = true;
  live.hidden = true;
  main.innerHTML = document.getElementById("login-template").innerHTML;
  const error = document.getElementById("login-error");
  error.textContent = message;
  document.getElementById("login").addEventListener("submit", async (e) => {
    e.preventDefault();
    const candidate = document.getElementById("token").value.trim();
    const res = await fetch("/v1/overview", { headers: { Authorization: `Bearer ${candidate}` } }).catch(() => null);
    if (!res) return void (error.textContent = "The reconciler cannot be reached.");
    if (res.status === 401) return void (error.textContent = "That token was refused.");
    if (res.status === 403) return void (error.textContent = "That token may not read the fleet: the dashboard needs a viewer, operator or admin token.");
    if (!res.ok) return void (error.textContent = `The reconciler answered HTTP ${res.status}.`);
    token = candidate;
    sessionStorage.setItem(TOKEN_KEY, token);
    start();
  });
}

function signOut(message = "") {
  token = "";
  who = null;
  sessionStorage.removeItem(TOKEN_KEY);
  if (watchAbort) watchAbort.abort();
  clearTimeout(pollTimer);
  showLogin(message);
}

async function start() {
  document.getElementById("nav").hidden = false;
  document.getElementById("logout").hidden = false;
  setLive(false);
  // Which actions to offer; a reconciler without /v1/whoami offers all (the server decides anyway).
  who = await api("/v1/whoami").catch(() => null);
  const role = document.getElementById("role");
  if (role) {
    role.hidden = who === null;
    role.textContent = who ? `${who.name} (${who.role})` : "";
    role.dataset.role = who ? who.role : "";
  }
  render();
  watch();
}

document.getElementById("logout").addEventListener("click", () => signOut());
// Charts are drawn to their container's width.
window.addEventListener("resize", () => {
  if (token && route().nav === "goodput") scheduleRender();
});
window.addEventListener("hashchange", () => {
  window.scrollTo(0, 0);
  render();
});
if (token) start();
else showLogin();
