// The HTML report: one self-contained page (inline CSS and SVG, no scripts, no external
// assets) with the summary, the checks, timelines of nodes by state, of faults,
// cordons, replacements and scaling, of each pool's size and queue depth, and the event
// log; with gang jobs, their goodput (capacity against what they need, gangs running,
// GPU-hours lost by cause over time, the comparison with a published run); with compare:
// variants, their goodput side by side. Deterministic like the JSON report: the same report
// renders to the same bytes.
import { describeVariant, type ComparisonRow, type SimComparison } from "./compare.ts";
import { goodputRows, referenceLines } from "./goodput.ts";
import { formatAt, type SimReport, type Timing } from "./report.ts";

const STATE_COLORS: Record<string, string> = {
  ready: "#2e7d32",
  suspect: "#f9a825",
  validating: "#64b5f6",
  requested: "#b0bec5",
  provisioning: "#90a4ae",
  bootstrapping: "#78909c",
  cordoned: "#ef6c00",
  draining: "#e65100",
  lost: "#8e24aa",
  held: "#6d4c41",
  terminating: "#c62828",
  terminated: "#e0e0e0",
  failed: "#424242",
};

const MARK_COLORS: Record<string, string> = {
  fault: "#c62828",
  cordon: "#ef6c00",
  replacement_ready: "#2e7d32",
  scale: "#1565c0",
  breaker: "#000000",
  pool_held: "#ad1457",
  outage: "#6a1b9a",
  restart: "#00838f",
};

const W = 960;
const H = 220;
const PAD = { left: 104, right: 16, top: 12, bottom: 28 };

const LOST_COLORS: Record<string, string> = {
  recompute: "#c62828",
  restart: "#ef6c00",
  waiting_for_nodes: "#6a1b9a",
  drain: "#1565c0",
};

export function reportHtml(r: SimReport, comparison?: SimComparison): string {
  const title = `navarch sim: ${r.scenario.name} (seed ${r.scenario.seed})${r.scenario.variant !== undefined ? `, variant ${r.scenario.variant}` : ""}`;
  const duration = r.timeline.t.at(-1) ?? 0;
  const parts: string[] = [];
  parts.push(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title><style>${CSS}</style></head><body>`);
  parts.push(`<h1>${esc(title)}</h1>`);
  if (r.scenario.description) parts.push(`<p class="desc">${esc(r.scenario.description)}</p>`);
  parts.push(
    `<p class="${r.result.ok ? "ok" : "fail"}">${r.result.ok ? `All ${r.result.asserts_passed} checks passed` : `${r.result.asserts_failed} of ${r.result.asserts_passed + r.result.asserts_failed} checks FAILED`} · ${esc(r.scenario.duration)} of virtual time from ${esc(r.scenario.start)}</p>`,
  );
  parts.push(summaryTable(r));
  if (comparison !== undefined) parts.push(comparisonSection(comparison));
  if (r.summary.goodput !== undefined) parts.push(goodputSection(r, duration));

  parts.push(`<h2>Nodes by state</h2>`);
  parts.push(stackedChart(r, duration, (s) => s !== "terminated" && s !== "failed", "nodes"));
  parts.push(
    legend(
      Object.keys(r.timeline.states)
        .filter((s) => s !== "terminated" && s !== "failed")
        .map((s) => [s, STATE_COLORS[s] ?? "#999"]),
    ),
  );
  const out = Object.keys(r.timeline.states).filter((s) => s !== "ready" && s !== "terminated" && s !== "failed");
  if (out.length > 0) {
    parts.push(`<h3>Nodes not in service (every state but ready)</h3>`);
    parts.push(stackedChart(r, duration, (s) => out.includes(s), "nodes"));
  }

  parts.push(`<h2>Faults, cordons, replacements, scaling</h2>`);
  const marks: Record<string, string> = r.summary.goodput !== undefined ? { ...MARK_COLORS, interruption: "#4e342e" } : MARK_COLORS;
  parts.push(markChart(r, duration, marks));
  parts.push(legend(Object.entries(marks).map(([k, c]) => [k === "replacement_ready" ? "replacement ready" : k, c])));

  for (const [pool, series] of Object.entries(r.timeline.pools)) {
    parts.push(`<h2>Pool ${esc(pool)}</h2>`);
    const lines: Line[] = [
      { name: "size", color: "#1565c0", values: series.size },
      { name: "ready", color: "#2e7d32", values: series.ready },
    ];
    if (series.queue_desired) lines.push({ name: "queue autoscaler wants", color: "#6a1b9a", values: series.queue_desired, dashed: true });
    parts.push(lineChart(r.timeline.t, lines, duration, "nodes"));
    if (series.queue)
      parts.push(lineChart(r.timeline.t, [{ name: "queue depth (pending + running jobs)", color: "#ef6c00", values: series.queue }], duration, "jobs"));
    parts.push(legend(lines.map((l) => [l.name, l.color] as [string, string]).concat(series.queue ? [["queue depth", "#ef6c00"]] : [])));
  }

  if (r.asserts.length > 0) {
    parts.push(`<h2>Checks</h2><table><tr><th>at</th><th>check</th><th>actual</th><th></th><th>why</th></tr>`);
    for (const a of r.asserts) {
      parts.push(
        `<tr class="${a.ok ? "ok" : "fail"}"><td>${esc(formatAt(a.at))}</td><td><code>${esc(a.check)}</code></td><td>${a.actual}</td><td>${a.ok ? "ok" : "FAILED"}</td><td>${esc(a.why ?? "")}</td></tr>`,
      );
    }
    parts.push(`</table>`);
  }
  if (r.warnings.length > 0) parts.push(`<h2>Warnings</h2><ul>${r.warnings.map((w) => `<li>${esc(w)}</li>`).join("")}</ul>`);

  const MAX_EVENTS = 2000;
  parts.push(`<h2>Events</h2><table class="events"><tr><th>at</th><th>kind</th><th>what</th></tr>`);
  for (const e of r.events.slice(0, MAX_EVENTS)) parts.push(`<tr><td>${esc(formatAt(e.at))}</td><td>${esc(e.kind)}</td><td>${esc(e.text)}</td></tr>`);
  parts.push(`</table>`);
  if (r.events.length > MAX_EVENTS) parts.push(`<p>… and ${r.events.length - MAX_EVENTS} more events (see the JSON report).</p>`);
  parts.push(`</body></html>\n`);
  return parts.join("\n");
}

function summaryTable(r: SimReport): string {
  const s = r.summary;
  const counts = (c: Record<string, number>) =>
    Object.entries(c)
      .filter(([, n]) => n > 0)
      .map(([k, n]) => `${k} ${n}`)
      .join(", ") || "none";
  const t = (x: Timing | null) => (x === null ? "–" : `mean ${x.mean_s} s · p50 ${x.p50_s} s · p99 ${x.p99_s} s · max ${x.max_s} s (${x.count})`);
  const rows: [string, string][] = [
    ["nodes at start", counts(s.nodes_at_start)],
    ["nodes at end", counts(s.nodes_at_end)],
    [
      "faults",
      `${s.faults.total} (${s.faults.scripted} scripted, ${s.faults.chaos} chaos, ${s.faults.correlated} correlated); by Xid: ${counts(s.faults.by_xid)}`,
    ],
    ["incidents", `${s.incidents.total}: ${counts(s.incidents.by_outcome)}${s.incidents.open ? `; open ${s.incidents.open}` : ""}`],
    ["replacements", `${s.replacements.requested} requested, ${s.replacements.ready} ready`],
    ["fault → cordon", t(s.fault_to_cordon)],
    ["fault → replacement ready", t(s.fault_to_replacement_ready)],
    ["rail blocks", `${s.rail_blocks.total} ${s.rail_blocks.total ? `(${counts(s.rail_blocks.by_rail)})` : ""}`],
    ["breakers tripped", s.breakers_tripped.map((b) => `${b.scope} at ${formatAt(b.at)}: ${b.reason}`).join("; ") || "none"],
    ["scaling decisions", `${s.scaling.decisions} (${s.scaling.up} up, ${s.scaling.down} down; +${s.scaling.nodes_added} / −${s.scaling.nodes_removed} nodes)`],
    ...Object.entries(s.clouds).map(([name, c]): [string, string] => [
      `cloud ${name}`,
      `${c.launched} launched, ${c.running_at_end} running at end; calls ${counts(c.calls)}`,
    ]),
    ["workload", `${s.workload.submitted} submitted, ${s.workload.completed} completed, ${s.workload.evicted} evicted, ${s.workload.killed} killed`],
    ["reconciler", `${s.reconciler.passes} passes, ${s.reconciler.restarts} restarts`],
    ["leaked instances", String(s.leaked_instances)],
  ];
  return `<table class="summary">${rows.map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(v)}</td></tr>`).join("")}</table>`;
}

/** Gang jobs: their goodput in figures, then capacity, gangs running and GPU-hours lost over time. */
function goodputSection(r: SimReport, duration: number): string {
  const g = r.summary.goodput!;
  const parts = [
    `<h2>Goodput</h2>`,
    `<table class="summary">${goodputRows(g)
      .map(([k, v]) => `<tr><th>${esc(k.trim())}</th><td>${esc(v)}</td></tr>`)
      .join("")}</table>`,
  ];
  if (g.reference !== undefined) parts.push(`<pre>${esc(referenceLines(g.reference).join("\n"))}</pre>`);
  const series = r.timeline.goodput;
  if (series !== undefined) {
    const t = r.timeline.t;
    const capacity: Line[] = [
      { name: "schedulable nodes", color: "#2e7d32", values: series.capacity },
      { name: "nodes the gang jobs need", color: "#c62828", values: series.needed, dashed: true },
    ];
    parts.push(`<h3>Capacity: schedulable nodes of the gang jobs' pools against what they need</h3>`, lineChart(t, capacity, duration, "nodes"));
    parts.push(legend(capacity.map((l) => [l.name, l.color])));
    parts.push(
      `<h3>Gang jobs running (doing useful work)</h3>`,
      lineChart(t, [{ name: "running", color: "#1565c0", values: series.running }], duration, "jobs"),
    );
    const lost: Line[] = Object.entries(series.lost_gpu_hours).map(([cause, values]) => ({
      name: cause.replace(/_/g, " "),
      color: LOST_COLORS[cause] ?? "#999",
      values,
    }));
    parts.push(`<h3>GPU-hours lost so far, by cause</h3>`, lineChart(t, lost, duration, "GPU-h"));
    parts.push(legend(lost.map((l) => [l.name, l.color])));
  }
  return parts.join("\n");
}

/** compare: variants, one column each, ratios to the first. */
function comparisonSection(c: SimComparison): string {
  const fmt = (row: ComparisonRow, v: number | null) =>
    v === null ? "–" : row.figure === "ETTR" ? `${(v * 100).toFixed(1)} %` : v.toLocaleString("en-US", { maximumFractionDigits: 1 });
  const head = `<tr><th></th>${c.variants.map((v) => `<th>${esc(v.name)}</th>`).join("")}</tr>`;
  const rows = c.rows.map(
    (row) =>
      `<tr><th>${esc(row.figure.trim())}${row.unit ? ` (${esc(row.unit)})` : ""}</th>${row.values
        .map((v, i) => `<td>${esc(fmt(row, v))}${i > 0 && row.ratios[i] !== null ? ` <small>×${row.ratios[i]!.toFixed(2)}</small>` : ""}</td>`)
        .join("")}</tr>`,
  );
  const trace = c.trace === null ? "" : `, one fault trace of ${c.trace.drawn} faults (fingerprint ${esc(c.trace.digest)})`;
  const about = c.variants.map((v) => `<li><b>${esc(v.name)}</b>: ${esc(describeVariant(v))}</li>`).join("");
  return `<h2>Variants</h2><p>Ratios to ${esc(c.baseline)}${trace}. The rest of this page is ${esc(c.baseline)}'s run.</p><ul>${about}</ul><table class="summary">${head}${rows.join("")}</table>`;
}

const x = (t: number, duration: number) => PAD.left + (duration <= 0 ? 0 : (t / duration) * (W - PAD.left - PAD.right));
const n2 = (v: number) => (Math.round(v * 10) / 10).toString();

/** A round upper bound for a y axis (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8 × 10^k). */
export function niceMax(max: number): number {
  if (max <= 1) return 1;
  const p = 10 ** Math.floor(Math.log10(max));
  for (const m of [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= max) return m * p;
  return 10 * p;
}

const TIME_STEPS = [
  60_000, 120_000, 300_000, 600_000, 900_000, 1_800_000, 3_600_000, 7_200_000, 10_800_000, 21_600_000, 43_200_000, 86_400_000, 172_800_000, 604_800_000,
];

function axes(duration: number, max: number, unit: string): string {
  const out: string[] = [];
  const y0 = H - PAD.bottom;
  out.push(`<line x1="${PAD.left}" y1="${y0}" x2="${W - PAD.right}" y2="${y0}" class="axis"/>`);
  out.push(`<line x1="${PAD.left}" y1="${PAD.top}" x2="${PAD.left}" y2="${y0}" class="axis"/>`);
  const step = TIME_STEPS.find((st) => duration / st <= 10) ?? TIME_STEPS.at(-1)!;
  for (let t = 0; t <= duration; t += step) {
    const px = x(t, duration);
    out.push(
      `<line x1="${n2(px)}" y1="${y0}" x2="${n2(px)}" y2="${y0 + 4}" class="axis"/><text x="${n2(px)}" y="${y0 + 16}" text-anchor="middle">${esc(formatAt(t))}</text>`,
    );
  }
  for (const frac of max > 0 ? [0, 0.5, 1] : []) {
    const v = max * frac;
    const py = y0 - (v / max) * (y0 - PAD.top);
    out.push(
      `<text x="${PAD.left - 6}" y="${n2(py + 4)}" text-anchor="end">${n2(v)}</text><line x1="${PAD.left}" y1="${n2(py)}" x2="${W - PAD.right}" y2="${n2(py)}" class="grid"/>`,
    );
  }
  out.push(`<text x="12" y="${PAD.top + 8}" class="unit">${esc(unit)}</text>`);
  return out.join("");
}

function stackedChart(r: SimReport, duration: number, include: (state: string) => boolean, unit: string): string {
  const t = r.timeline.t;
  const states = Object.keys(r.timeline.states).filter(include);
  const totals = t.map((_, i) => states.reduce((a, s) => a + (r.timeline.states[s]![i] ?? 0), 0));
  const max = niceMax(Math.max(1, ...totals));
  const y0 = H - PAD.bottom;
  const y = (v: number) => y0 - (v / max) * (y0 - PAD.top);
  const base = t.map(() => 0);
  const paths: string[] = [];
  for (const s of states) {
    const vals = r.timeline.states[s]!;
    const top = base.map((b, i) => b + (vals[i] ?? 0));
    if (vals.every((v) => v === 0)) continue;
    // Steps: a count holds until the next sample.
    const steps = (values: number[]) =>
      t.flatMap((ti, i) => {
        const px = n2(x(ti, duration));
        return i === 0 ? [`${px},${n2(y(values[i]!))}`] : [`${px},${n2(y(values[i - 1]!))}`, `${px},${n2(y(values[i]!))}`];
      });
    const upper = steps(top);
    const lower = steps(base).reverse();
    paths.push(`<polygon points="${[...upper, ...lower].join(" ")}" fill="${STATE_COLORS[s] ?? "#999"}"><title>${esc(s)}</title></polygon>`);
    for (let i = 0; i < base.length; i++) base[i] = top[i]!;
  }
  return svg(`${axes(duration, max, unit)}${paths.join("")}`);
}

interface Line {
  name: string;
  color: string;
  values: number[];
  dashed?: boolean;
}

function lineChart(t: number[], lines: Line[], duration: number, unit: string): string {
  const max = niceMax(Math.max(1, ...lines.flatMap((l) => l.values)));
  const y0 = H - PAD.bottom;
  const y = (v: number) => y0 - (v / max) * (y0 - PAD.top);
  const paths = lines.map((l) => {
    // Steps: a value holds until the next sample.
    const pts: string[] = [];
    l.values.forEach((v, i) => {
      const px = x(t[i]!, duration);
      if (i > 0) pts.push(`${n2(px)},${n2(y(l.values[i - 1]!))}`);
      pts.push(`${n2(px)},${n2(y(v))}`);
    });
    return `<polyline points="${pts.join(" ")}" fill="none" stroke="${l.color}" stroke-width="2"${l.dashed ? ' stroke-dasharray="6 4"' : ""}><title>${esc(l.name)}</title></polyline>`;
  });
  return svg(`${axes(duration, max, unit)}${paths.join("")}`);
}

function markChart(r: SimReport, duration: number, colors: Record<string, string>): string {
  const rows = Object.keys(colors);
  const y0 = H - PAD.bottom;
  const rowH = (y0 - PAD.top) / rows.length;
  const out: string[] = [axes(duration, 0, "")];
  rows.forEach((kind, i) => {
    const cy = PAD.top + rowH * (i + 0.5);
    out.push(
      `<text x="${PAD.left - 6}" y="${n2(cy + 4)}" text-anchor="end" class="row">${esc(kind === "replacement_ready" ? "replaced" : kind)} (${r.events.filter((e) => e.kind === kind).length})</text>`,
    );
    const evs = r.events.filter((e) => e.kind === kind);
    for (const e of evs) {
      const px = x(e.at, duration);
      out.push(
        `<line x1="${n2(px)}" y1="${n2(cy - rowH * 0.35)}" x2="${n2(px)}" y2="${n2(cy + rowH * 0.35)}" stroke="${colors[kind]}" stroke-width="2"><title>${esc(`${formatAt(e.at)} ${e.text}`)}</title></line>`,
      );
    }
  });
  return svg(out.join(""));
}

function svg(body: string): string {
  return `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img">${body}</svg>`;
}

function legend(items: [string, string][]): string {
  return `<p class="legend">${items.map(([name, color]) => `<span><i style="background:${color}"></i>${esc(name)}</span>`).join(" ")}</p>`;
}

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

const CSS = `
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1000px;color:#212121;padding:0 12px}
h1{font-size:20px}h2{font-size:16px;margin-top:28px}h3{font-size:14px;font-weight:500;color:#555}
.desc{color:#555}.ok{color:#2e7d32}.fail{color:#c62828;font-weight:600}
table{border-collapse:collapse;margin:8px 0}th,td{text-align:left;padding:3px 10px;border-bottom:1px solid #eee;vertical-align:top}
table.summary th{color:#555;font-weight:500;white-space:nowrap}
table.events td:first-child{white-space:nowrap;color:#555}
tr.fail td{background:#ffebee}
svg{display:block;background:#fafafa;border:1px solid #eee;margin:6px 0}
svg text{font:11px system-ui,sans-serif;fill:#555}svg text.unit{font-weight:600}
.axis{stroke:#9e9e9e}.grid{stroke:#eee}
.legend span{margin-right:14px;white-space:nowrap}.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;vertical-align:middle}
code{font-size:12px}
`;
