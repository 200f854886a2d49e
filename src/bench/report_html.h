// The HTML page of the load generator's report (report.h): a template whose marker
// __KILN_BENCH_DATA__ is replaced by the result JSON (with '<' escaped), plotted by the inline
// script below as SVG. Self-contained: no external scripts, styles, fonts or images.
#pragma once

namespace kiln::bench {

inline constexpr const char* kReportHtmlTemplate = R"KILNHTML(<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>kiln bench serve report</title>
<style>
body{font-family:sans-serif;margin:20px;color:#222;background:#fff}
h1{font-size:20px}h2{font-size:16px;margin:18px 0 6px}
.charts{display:flex;flex-wrap:wrap;gap:16px}
.chart{border:1px solid #ccc;padding:4px}
table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}
td:first-child,th:first-child{text-align:left}
.err{color:#b00}
</style></head><body>
<h1 id="title">kiln bench serve</h1>
<div id="verdict"></div>
<div class="charts">
<div class="chart" id="chart-latency"></div>
<div class="chart" id="chart-throughput"></div>
<div class="chart" id="chart-goodput"></div>
<div class="chart" id="chart-histogram"></div>
</div>
<h2>Points</h2><div id="points"></div>
<h2>Run configuration</h2><div id="config"></div>
<script id="kiln-bench-data" type="application/json">__KILN_BENCH_DATA__</script>
<script>
"use strict";
const DATA = JSON.parse(document.getElementById('kiln-bench-data').textContent);
const COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#9467bd', '#8c564b', '#17becf'];
const SLO_COLOR = '#d62728';
const NS = 'http://www.w3.org/2000/svg';
function el(tag, attrs, parent) {
  const e = document.createElementNS(NS, tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (parent) parent.appendChild(e);
  return e;
}
function text(parent, x, y, s, extra) {
  const t = el('text', Object.assign({x: x, y: y, 'font-size': 11, fill: '#333'}, extra || {}), parent);
  t.textContent = s;
  return t;
}
function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}
function fmt(v) {
  if (Math.abs(v) >= 100) return v.toFixed(0);
  if (Math.abs(v) >= 10) return v.toFixed(1);
  return v.toPrecision(2);
}
// lines: [{name, color, dash, pts: [[x, y], ...]}]; hline: {y, label} or null.
function lineChart(id, title, xlabel, ylabel, lines, hline) {
  const W = 550, H = 320, L = 60, R = 160, T = 28, B = 42;
  const svg = el('svg', {width: W, height: H, 'data-kind': 'line'}, document.getElementById(id));
  text(svg, W / 2, 16, title, {'text-anchor': 'middle', 'font-size': 13, 'font-weight': 'bold'});
  let xmax = 0, ymax = 0, npts = 0;
  for (const l of lines) for (const [x, y] of l.pts) { xmax = Math.max(xmax, x); ymax = Math.max(ymax, y); npts++; }
  if (hline) ymax = Math.max(ymax, hline.y * 1.1);
  xmax = niceMax(xmax * 1.05); ymax = niceMax(ymax * 1.05);
  const sx = (x) => L + (W - L - R) * x / xmax, sy = (y) => H - B - (H - T - B) * y / ymax;
  for (let i = 0; i <= 5; i++) {
    const yv = ymax * i / 5, xv = xmax * i / 5;
    el('line', {x1: L, x2: W - R, y1: sy(yv), y2: sy(yv), stroke: '#eee'}, svg);
    text(svg, L - 4, sy(yv) + 4, fmt(yv), {'text-anchor': 'end'});
    text(svg, sx(xv), H - B + 14, fmt(xv), {'text-anchor': 'middle'});
  }
  el('line', {x1: L, x2: W - R, y1: H - B, y2: H - B, stroke: '#333'}, svg);
  el('line', {x1: L, x2: L, y1: T, y2: H - B, stroke: '#333'}, svg);
  text(svg, (L + W - R) / 2, H - 6, xlabel, {'text-anchor': 'middle'});
  text(svg, 12, (T + H - B) / 2, ylabel, {'text-anchor': 'middle', transform: `rotate(-90 12 ${(T + H - B) / 2})`});
  if (hline) {
    el('line', {x1: L, x2: W - R, y1: sy(hline.y), y2: sy(hline.y), stroke: SLO_COLOR,
                'stroke-width': 2, 'stroke-dasharray': '6 4', 'class': 'slo'}, svg);
    text(svg, W - R + 4, sy(hline.y) + 4, hline.label, {fill: SLO_COLOR});
  }
  lines.forEach((l, i) => {
    const pts = l.pts.slice().sort((a, b) => a[0] - b[0]);
    if (pts.length > 1) {
      el('polyline', {points: pts.map(([x, y]) => `${sx(x)},${sy(y)}`).join(' '), fill: 'none',
                      stroke: l.color, 'stroke-width': 2.5, 'stroke-dasharray': l.dash || ''}, svg);
    }
    for (const [x, y] of pts) el('circle', {cx: sx(x), cy: sy(y), r: 4, fill: l.color, 'class': 'pt'}, svg);
    el('rect', {x: W - R + 6, y: T + 14 * i, width: 10, height: 10, fill: l.color}, svg);
    text(svg, W - R + 20, T + 14 * i + 9, l.name, {'font-size': 10});
  });
  svg.setAttribute('data-points', npts);
}
function histogram(id, title, groups) {
  const W = 550, H = 320, L = 60, R = 160, T = 28, B = 42, NB = 30;
  const svg = el('svg', {width: W, height: H, 'data-kind': 'histogram'}, document.getElementById(id));
  text(svg, W / 2, 16, title, {'text-anchor': 'middle', 'font-size': 13, 'font-weight': 'bold'});
  let vmax = 0;
  for (const g of groups) for (const v of g.values) vmax = Math.max(vmax, v);
  vmax = niceMax(vmax * 1.02);
  const counts = groups.map((g) => {
    const c = new Array(NB).fill(0);
    for (const v of g.values) c[Math.min(NB - 1, Math.floor(v / vmax * NB))]++;
    return c;
  });
  let cmax = 1;
  for (const c of counts) for (const n of c) cmax = Math.max(cmax, n);
  cmax = niceMax(cmax);
  const bw = (W - L - R) / NB;
  const sy = (y) => H - B - (H - T - B) * y / cmax;
  for (let i = 0; i <= 5; i++) {
    text(svg, L - 4, sy(cmax * i / 5) + 4, fmt(cmax * i / 5), {'text-anchor': 'end'});
    text(svg, L + (W - L - R) * i / 5, H - B + 14, fmt(vmax * i / 5), {'text-anchor': 'middle'});
  }
  let nbars = 0;
  groups.forEach((g, gi) => {
    counts[gi].forEach((n, b) => {
      if (n === 0) return;
      const w = bw / groups.length;
      el('rect', {x: L + b * bw + gi * w, y: sy(n), width: Math.max(w - 1, 1), height: H - B - sy(n),
                  fill: g.color, 'class': 'bar'}, svg);
      nbars++;
    });
    el('rect', {x: W - R + 6, y: T + 14 * gi, width: 10, height: 10, fill: g.color}, svg);
    text(svg, W - R + 20, T + 14 * gi + 9, g.name, {'font-size': 10});
  });
  el('line', {x1: L, x2: W - R, y1: H - B, y2: H - B, stroke: '#333'}, svg);
  el('line', {x1: L, x2: L, y1: T, y2: H - B, stroke: '#333'}, svg);
  text(svg, (L + W - R) / 2, H - 6, 'E2E latency (ms)', {'text-anchor': 'middle'});
  text(svg, 12, (T + H - B) / 2, 'requests', {'text-anchor': 'middle', transform: `rotate(-90 12 ${(T + H - B) / 2})`});
  svg.setAttribute('data-bars', nbars);
}
function table(parent, rows) {
  const t = document.createElement('table');
  rows.forEach((r, i) => {
    const tr = t.insertRow();
    for (const c of r) { const td = document.createElement(i ? 'td' : 'th'); td.textContent = c; tr.appendChild(td); }
  });
  parent.appendChild(t);
  return t;
}
const cfg = DATA.config || {};
const slo = cfg.slo_p99_ms || 1500;
const series = (DATA.series || []).filter((s) => !s.error && (s.points || []).length);
const xOf = (p) => p.target_rate > 0 ? p.target_rate : p.summary.qps;
const xlabel = series.some((s) => s.points.some((p) => p.target_rate > 0)) ? 'request rate (req/s)' : 'achieved QPS (req/s)';
document.getElementById('title').textContent = 'kiln bench serve — ' + (cfg.model || '') + ' — ' + (cfg.workload || '');
const verdict = document.getElementById('verdict');
for (const s of DATA.series || []) {
  const d = document.createElement('div');
  if (s.error) { d.className = 'err'; d.textContent = s.name + ': not available: ' + s.error; }
  else if (s.sweep) d.textContent = s.name + ': ' + (s.sweep.found ? `max rate with P99 E2E <= ${slo} ms: ${s.sweep.best_rate.toFixed(2)} req/s` : 'no rate met the SLO');
  else d.textContent = s.name;
  verdict.appendChild(d);
}
const lat = [], thr = [], good = [];
const multi = series.length > 1;
series.forEach((s, i) => {
  const c = COLORS[i % COLORS.length], n = multi ? s.name + ' ' : '';
  const pts = (f) => s.points.filter((p) => p.summary.num_ok > 0).map((p) => [xOf(p), f(p)]);
  lat.push({name: n + 'E2E P99', color: c, pts: pts((p) => p.summary.e2e.p99_ms)});
  lat.push({name: n + 'E2E P50', color: c, dash: '2 3', pts: pts((p) => p.summary.e2e.p50_ms)});
  if (!multi) {
    lat.push({name: 'E2E P90', color: COLORS[1], pts: pts((p) => p.summary.e2e.p90_ms)});
    lat.push({name: 'TTFT P99', color: COLORS[2], pts: pts((p) => p.summary.ttft.p99_ms)});
  }
  thr.push({name: n + 'output tok/s', color: c, pts: pts((p) => p.summary.output_tokens_per_s)});
  good.push({name: n + 'goodput', color: c, pts: pts((p) => p.summary.goodput)});
  if (!multi) good.push({name: 'QPS', color: COLORS[1], dash: '5 3', pts: pts((p) => p.summary.qps)});
});
lineChart('chart-latency', 'Latency percentiles vs rate', xlabel, 'latency (ms)', lat, {y: slo, label: 'SLO ' + slo + ' ms'});
lineChart('chart-throughput', 'Throughput vs rate', xlabel, 'output tokens/s', thr, null);
lineChart('chart-goodput', 'Goodput (req/s within SLO) vs rate', xlabel, 'req/s', good, null);
histogram('chart-histogram', 'E2E latency histogram' + (multi ? ' (best point of each)' : ''),
  series.map((s, i) => ({name: s.name, color: COLORS[i % COLORS.length], values: s.e2e_samples_ms || []})));
const prow = [['series', 'rate', 'conc', 'sent', 'ok', 'failed', 'QPS', 'goodput', 'out tok/s',
  'TTFT p50', 'TTFT p99', 'TPOT p50', 'ITL p99', 'E2E p50', 'E2E p90', 'E2E p99', 'hit rate', 'KV use', 'verdict']];
for (const s of series) for (const p of s.points) {
  const m = p.summary, sv = p.server || {};
  const hit = sv.prefix_cache_hit_rate >= 0 ? sv.prefix_cache_hit_rate : m.client_cache_hit_rate;
  prow.push([s.name, p.target_rate > 0 ? p.target_rate.toFixed(3) : '-', p.concurrency || '-', m.num_sent, m.num_ok,
    m.num_failed + (m.num_failed ? ' ' + JSON.stringify(m.errors) : ''), m.qps.toFixed(2), m.goodput.toFixed(2),
    m.output_tokens_per_s.toFixed(1), m.ttft.p50_ms.toFixed(0), m.ttft.p99_ms.toFixed(0), m.tpot.p50_ms.toFixed(1),
    m.itl.p99_ms.toFixed(1), m.e2e.p50_ms.toFixed(0), m.e2e.p90_ms.toFixed(0), m.e2e.p99_ms.toFixed(0),
    hit >= 0 ? (100 * hit).toFixed(1) + '%' : '-', sv.kv_usage_mean >= 0 ? (100 * sv.kv_usage_mean).toFixed(1) + '%' : '-',
    p.passes === undefined ? '' : (p.passes ? 'pass' : p.reason)]);
}
table(document.getElementById('points'), prow);
const crow = [['setting', 'value']];
for (const k of Object.keys(cfg)) crow.push([k, typeof cfg[k] === 'object' ? JSON.stringify(cfg[k]) : String(cfg[k])]);
table(document.getElementById('config'), crow);
document.body.setAttribute('data-rendered', 'true');
</script></body></html>
)KILNHTML";

}  // namespace kiln::bench
