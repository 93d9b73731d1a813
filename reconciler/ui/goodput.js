// The dashboard's Goodput page (#/goodput[/24h|7d|30d]): what outages cost, from GET /v1/report's
// goodput section, as cards, charts and tables. A page of its own file beside app.js (loaded
// before it; both are plain scripts sharing the page's globals: app.js's helpers esc, enc, table,
// badge, duration, when, api and its afterRender hook). Charts are uPlot's (MIT, /ui/vendor/).
"use strict";

const GOODPUT_WINDOWS = ["24h", "7d", "30d"];
const RUNG_TEXT = {
  quarantine: "quarantine",
  drain: "drain",
  reboot: "reboot",
  replace: "replace",
  terminate: "terminate",
  held: "held",
  lost: "lost",
};
const PALETTE = ["#d2372f", "#2454d6", "#d99a00", "#1f9d55", "#7c4dcc", "#e0662a", "#168a8a", "#b03a8c", "#5a6b86", "#8a6d3b", "#3aa0d8", "#6b8e23"];
/** A cause's colour, the same on every page and in every window. */
function causeColour(cause) {
  let h = 0;
  for (const c of String(cause)) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return PALETTE[h % PALETTE.length];
}
/** Hours with the precision a glance needs: 1234, 12.3, 0.27 (the browser test compares them with the API's numbers). */
function hours(h) {
  const x = Number(h);
  if (x === 0) return "0";
  if (Math.abs(x) >= 100) return x.toFixed(0);
  if (Math.abs(x) >= 1) return x.toFixed(1);
  return x.toPrecision(2);
}
const seconds = (s) => (s === null || s === undefined ? "–" : duration(s * 1000));

// biome-ignore lint/correctness/noUnusedVariables: app.js's router calls it (the page's scripts share their globals)
async function pageGoodput(asked) {
  const span = GOODPUT_WINDOWS.includes(asked) ? asked : "7d";
  const r = await api(`/v1/report?since=${enc(span)}`);
  const g = r.goodput;
  const total = g.gpuHoursInService + g.gpuHoursLost;
  const share = total > 0 ? (100 * g.gpuHoursLost) / total : 0;
  const cards = [
    ["gpu-hours-lost", hours(g.gpuHoursLost), "GPU-hours lost", g.gpuHoursLost > 0],
    ["share-lost", `${share.toFixed(2)} %`, "of GPU time lost"],
    ["gpu-hours-in-service", hours(g.gpuHoursInService), "GPU-hours in service"],
    ["node-hours", hours(g.nodeHoursUnavailable), "node-hours out of service"],
    ["outages", g.episodes, "outages"],
    ["open", g.open, "still out of service", g.open > 0],
  ]
    .map(([k, n, l, bad]) => `<div class="card${bad ? " bad" : ""}" data-card="${k}"><div class="n">${esc(n)}</div><div class="l">${esc(l)}</div></div>`)
    .join("");
  const windows = GOODPUT_WINDOWS.map((w) => `<a href="#/goodput/${w}" data-window="${w}"${w === span ? ' class="active"' : ""}>${w}</a>`).join(" ");
  const causes = table(
    ["Cause", "#Outages", "#Node-hours", "#GPU-hours"],
    g.byCause.map((c) => [
      `<i class="swatch" data-cause="${esc(c.cause)}"></i>${esc(c.cause)}`,
      esc(c.episodes),
      esc(hours(c.nodeHours)),
      esc(hours(c.gpuHours)),
    ]),
    "No GPU time was lost in this window.",
  );
  const rungs = table(
    ["Rung", "#Node-hours", "#GPU-hours", "#Stays", "#Mean stay", "#Ended here", "#MTTR"],
    g.byRung.map((x) => [
      esc(RUNG_TEXT[x.rung] ?? x.rung),
      esc(hours(x.nodeHours)),
      esc(hours(x.gpuHours)),
      esc(x.stays),
      esc(seconds(x.meanStaySeconds)),
      esc(x.ended),
      esc(seconds(x.mttrSeconds)),
    ]),
    "No node was out of service in this window.",
  );
  const worst = table(
    ["Node", "Pool", "Provider", "#GPUs", "#Outages", "#Node-hours", "#GPU-hours", "Cause", "Now"],
    g.worstNodes.map((n) => [
      `<a href="#/node/${enc(n.node)}">${esc(n.node)}</a>`,
      esc(n.pool ?? "–"),
      esc(n.provider ?? "–"),
      esc(n.gpus ?? "?"),
      esc(n.episodes),
      esc(hours(n.nodeHours)),
      esc(hours(n.gpuHours)),
      esc(n.cause),
      n.open ? badge("out", "out of service") : badge("healthy", "back"),
    ]),
    "No node lost GPU time in this window.",
  );
  // Drawn once the page's HTML is in place (uPlot measures its container).
  afterRender = () => drawGoodput(g);
  return `<h1>Goodput</h1>
<p class="muted" id="goodput-window">GPU time lost while nodes that had served were out of service (cordoned, draining, rebooting, being replaced, held, lost), from ${esc(when(r.from))} to ${esc(when(r.to))}. Window: <span class="windows">${windows}</span></p>
<div class="cards" id="goodput-cards">${cards}</div>
<div class="panel"><h2>Lost GPU-hours by cause over time</h2><div class="chart" id="chart-causes"></div></div>
<div class="row">
  <div class="panel"><h2>Node-hours out of service by rung</h2><div class="chart" id="chart-rungs"></div></div>
  <div class="panel"><h2>The nodes that lost the most GPU-hours</h2><div class="chart" id="chart-nodes"></div></div>
</div>
<div class="row">
  <div class="panel" id="goodput-causes"><h2>Lost GPU-hours by cause</h2>${causes}</div>
  <div class="panel" id="goodput-rungs"><h2>Time to repair by rung</h2><p class="muted">MTTR: the mean outage that ended on the rung, from out of service to back in service (or gone).</p>${rungs}</div>
</div>
<div class="panel" id="goodput-nodes"><h2>Worst nodes</h2>${worst}</div>
<p class="muted">Charts: <a href="/ui/vendor/uPlot.LICENSE">uPlot</a> (MIT licence). The same numbers: <code>navarch report --since ${esc(span)}</code>, and on /metrics <code>navarch_gpu_hours_lost_total</code>, <code>navarch_node_unavailable_seconds_total</code>.</p>`;
}

function drawGoodput(g) {
  // Colours are set from script: the page's CSP allows no inline style attribute.
  for (const el of document.querySelectorAll(".swatch[data-cause]")) el.style.background = causeColour(el.dataset.cause);
  if (typeof uPlot !== "function") {
    for (const id of ["chart-causes", "chart-rungs", "chart-nodes"]) {
      const el = document.getElementById(id);
      if (el) el.innerHTML = `<p class="error">The chart library did not load.</p>`;
    }
    return;
  }
  causesOverTime(document.getElementById("chart-causes"), g.series);
  categoryBars(
    document.getElementById("chart-rungs"),
    g.byRung.map((x) => RUNG_TEXT[x.rung] ?? x.rung),
    g.byRung.map((x) => x.nodeHours),
    "node-hours",
    "#7c4dcc",
    "No node was out of service in this window.",
  );
  categoryBars(
    document.getElementById("chart-nodes"),
    g.worstNodes.map((n) => n.node),
    g.worstNodes.map((n) => n.gpuHours),
    "GPU-hours lost",
    "#d2372f",
    "No node lost GPU time in this window.",
  );
}

const chartWidth = (el) => Math.max(280, Math.floor(el.clientWidth || 600));

/** Lost GPU-hours per interval, one bar a cause, stacked (drawn tallest first, each cause's own value in the legend). */
function causesOverTime(el, series) {
  if (!el) return;
  if (series.causes.length === 0) {
    el.innerHTML = `<p class="empty">No GPU time was lost in this window.</p>`;
    return;
  }
  const xs = series.starts.map((s) => (s + series.stepMs / 2) / 1000);
  let below = xs.map(() => 0);
  const stacked = series.causes.map((c) => {
    below = below.map((b, i) => b + (c.gpuHours[i] ?? 0));
    return { cause: c.cause, own: c.gpuHours, top: below.slice() };
  });
  const drawn = stacked.reverse();
  const bars = uPlot.paths.bars({ size: [0.85, 80] });
  el.innerHTML = "";
  el.dataset.causes = drawn.map((d) => d.cause).join(",");
  new uPlot(
    {
      width: chartWidth(el),
      height: 280,
      scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] } },
      axes: [{}, { label: "GPU-hours", size: 60 }],
      series: [
        { value: (_u, v) => (v === null ? "–" : new Date(v * 1000 - series.stepMs / 2).toISOString().slice(0, 16).replace("T", " ")) },
        ...drawn.map((d) => ({
          label: d.cause,
          stroke: causeColour(d.cause),
          fill: causeColour(d.cause),
          width: 0,
          paths: bars,
          points: { show: false },
          value: (_u, _v, _si, i) => (i === null || i === undefined ? "–" : hours(d.own[i] ?? 0)),
        })),
      ],
    },
    [xs, ...drawn.map((d) => d.top)],
    el,
  );
}

/** One bar per category (rungs, nodes), its name under it. */
function categoryBars(el, names, values, label, colour, empty) {
  if (!el) return;
  if (names.length === 0) {
    el.innerHTML = `<p class="empty">${esc(empty)}</p>`;
    return;
  }
  const xs = names.map((_, i) => i);
  el.innerHTML = "";
  el.dataset.values = values.map((x) => hours(x)).join(",");
  new uPlot(
    {
      width: chartWidth(el),
      height: 260,
      legend: { show: false },
      cursor: { show: false },
      scales: { x: { time: false, range: () => [-0.5, names.length - 0.5] }, y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.15 : 1] } },
      axes: [
        { splits: () => xs, values: (_u, splits) => splits.map((i) => names[i] ?? ""), rotate: names.some((n) => n.length > 10) ? -25 : 0, size: 70, gap: 6 },
        { label, size: 60 },
      ],
      series: [{}, { label, stroke: colour, fill: `${colour}cc`, width: 0, paths: uPlot.paths.bars({ size: [0.6, 60] }), points: { show: false } }],
    },
    [xs, values],
    el,
  );
}
