/**
 * The console's one stylesheet and one script, shipped inside the package as modules (nothing is
 * fetched from the internet at run time) and served under /assets/. The pages hold no inline
 * script or style, so the Content-Security-Policy can forbid them.
 */

export const CSS = `
:root { --fg: #1d2330; --muted: #5f6b7a; --bg: #f6f7f9; --card: #fff; --line: #dde1e7; --accent: #2456c7;
  --danger: #b3261e; --ok: #1e7d3a; --warn: #9a6700; font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg); font-size: 15px; line-height: 1.45; }
header { background: #1d2330; color: #fff; padding: .6rem 1rem; display: flex; gap: 1.2rem; align-items: center; flex-wrap: wrap; }
header .brand { font-weight: 700; letter-spacing: .02em; }
header a { color: #cfd8ea; text-decoration: none; }
header a.current, header a:hover { color: #fff; text-decoration: underline; }
header .mode { margin-left: auto; font-size: .8rem; color: #cfd8ea; }
main { padding: 1rem; max-width: 1280px; margin: 0 auto; }
h1 { font-size: 1.3rem; margin: .2rem 0 1rem; }
h2 { font-size: 1.05rem; margin: 1.4rem 0 .5rem; }
a { color: var(--accent); }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: .8rem; margin-bottom: 1rem; }
.table-wrap { overflow-x: auto; background: var(--card); border: 1px solid var(--line); border-radius: 8px; }
table { border-collapse: collapse; width: 100%; }
th, td { padding: .45rem .5rem; border-bottom: 1px solid var(--line); text-align: left; vertical-align: middle; }
th { font-size: .8rem; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); background: #fafbfc; white-space: nowrap; }
tr:last-child td { border-bottom: none; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.zero { color: #b0b7c1; }
.mono, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .85rem; }
td { overflow-wrap: break-word; max-width: 28rem; }
td a[href^="/job/"], .state, time { white-space: nowrap; }
pre { background: #f0f2f5; padding: .7rem; border-radius: 6px; overflow: auto; max-height: 28rem; white-space: pre-wrap; overflow-wrap: anywhere; }
.state { display: inline-block; white-space: nowrap; padding: 0 .45rem; border-radius: 999px; font-size: .8rem; background: #eef1f5; }
.state-due { background: #e3ecff; color: #1b44a0; }
.state-scheduled { background: #fff4d6; color: var(--warn); }
.state-never { background: #fde7e6; color: var(--danger); }
.state-paused { background: #fff4d6; color: var(--warn); font-weight: 600; }
td.controls { white-space: nowrap; }
.chart .chart-plot svg { width: 100%; height: 120px; display: block; }
.chart p.chart-caption { margin: 0 0 .5rem; font-size: .9rem; }
.chart .chart-axis { display: flex; justify-content: space-between; font-size: .75rem; color: var(--muted); margin-top: .3rem; }
.bar-completed { fill: var(--ok); }
.bar-failed { fill: var(--danger); }
.bar-hit { fill: transparent; }
.bar-hit:hover { fill: rgba(36, 86, 199, .08); }
.chart-base { stroke: var(--line); }

td.controls form { display: inline; }
td.controls button { min-height: 1.8rem; padding: .15rem .5rem; font-size: .8rem; }
.up { color: var(--ok); font-weight: 600; }
.down { color: var(--danger); font-weight: 600; }
.muted { color: var(--muted); font-size: .85rem; }
.notice { border-left: 4px solid var(--warn); background: #fffaf0; padding: .6rem .8rem; border-radius: 4px; margin-bottom: 1rem; }
.error { border-left-color: var(--danger); background: #fff5f5; }
form.filters { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: .6rem; align-items: end; }
label { display: flex; flex-direction: column; gap: .2rem; font-size: .8rem; color: var(--muted); }
label.inline { flex-direction: row; align-items: center; gap: .4rem; font-size: .9rem; color: var(--fg); }
input, select, button { font: inherit; padding: .4rem .5rem; border: 1px solid var(--line); border-radius: 6px; background: #fff; color: var(--fg); min-height: 2.2rem; }
button { cursor: pointer; background: var(--accent); color: #fff; border-color: var(--accent); font-weight: 600; }
button.secondary { background: #fff; color: var(--accent); }
button.danger { background: var(--danger); border-color: var(--danger); }
button:disabled { opacity: .45; cursor: not-allowed; }
.actions { display: flex; gap: .5rem; flex-wrap: wrap; align-items: center; margin: .6rem 0; }
.pager { display: flex; gap: 1rem; margin: .8rem 0; align-items: center; }
dl.fields { display: grid; grid-template-columns: max-content 1fr; gap: .3rem 1rem; margin: 0; }
dl.fields dt { color: var(--muted); }
dl.fields dd { margin: 0; overflow-wrap: anywhere; }
@media (max-width: 700px) {
  body { font-size: 14px; }
  main { padding: .6rem; }
  .wide-only { display: none; }
  th, td { padding: .35rem .4rem; }
  dl.fields { grid-template-columns: 1fr; }
  dl.fields dt { margin-top: .4rem; }
}
`

export const JS = `"use strict";
(function () {
  // The overview: counts and job servers, refreshed from the JSON endpoint without a reload.
  var overview = document.getElementById("overview");
  function cell(row, text, opts) {
    var td = document.createElement("td");
    if (opts && opts.num) { td.className = text === 0 ? "num zero" : "num"; }
    if (opts && opts.href) {
      var a = document.createElement("a"); a.href = opts.href; a.textContent = String(text); td.appendChild(a);
    } else { td.textContent = text === null || text === undefined ? "-" : String(text); }
    row.appendChild(td);
    return td;
  }
  function jobsHref(params) {
    var q = new URLSearchParams();
    Object.keys(params).forEach(function (k) { if (params[k] !== null && params[k] !== undefined) q.set(k, String(params[k])); });
    return "/jobs?" + q.toString();
  }
  // A function's flow state, and (unless read-only) its pause/resume form and purge link, as the page renders them.
  function functionCell(tr, f) {
    var td = cell(tr, f.funcname, { href: jobsHref({ function: f.funcname, shard: f.shard }) });
    td.dataset.paused = f.paused ? "yes" : "no";
    if (f.paused) {
      var badge = document.createElement("span"); badge.className = "state state-paused"; badge.textContent = "paused";
      badge.title = "Paused: its jobs stay stored and due; no dispatcher sends them";
      td.appendChild(document.createTextNode(" ")); td.appendChild(badge);
    }
  }
  function hidden(form, name, value) {
    var input = document.createElement("input"); input.type = "hidden"; input.name = name; input.value = value; form.appendChild(input);
  }
  function controls(tr, f, csrf) {
    var td = document.createElement("td"); td.className = "controls";
    var action = f.paused ? "resume" : "pause";
    var form = document.createElement("form"); form.method = "post"; form.action = "/function/" + action;
    hidden(form, "csrf", csrf); hidden(form, "function", f.funcname);
    var button = document.createElement("button"); button.type = "submit"; button.name = "step"; button.value = "run";
    button.className = "secondary"; button.dataset.functionAction = action; button.textContent = f.paused ? "Resume" : "Pause";
    form.appendChild(button); td.appendChild(form); td.appendChild(document.createTextNode(" "));
    var purge = document.createElement("a"); purge.href = "/function/purge-dead?function=" + encodeURIComponent(f.funcname);
    purge.dataset.functionAction = "purge-dead"; purge.title = "Delete its dead jobs older than…"; purge.textContent = "Purge…"; td.appendChild(purge);
    tr.appendChild(td);
  }
  // The chart: the server's own SVG, fetched and parsed as SVG (no markup is built from strings here).
  function refreshChart() {
    var box = document.getElementById("throughput");
    if (!box) return;
    fetch(box.dataset.src, { credentials: "same-origin" })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.text(); })
      .then(function (text) {
        var doc = new DOMParser().parseFromString(text, "image/svg+xml");
        var svg = doc.documentElement;
        if (svg.nodeName !== "svg") return;
        box.querySelector(".chart-plot").replaceChildren(document.importNode(svg, true));
        document.getElementById("throughput-caption").textContent = svg.getAttribute("data-caption");
        document.getElementById("throughput-first").textContent = svg.getAttribute("data-first");
        document.getElementById("throughput-last").textContent = svg.getAttribute("data-last");
        document.getElementById("throughput-scale").textContent = svg.getAttribute("data-scale");
      })
      .catch(function () { /* the next refresh tries again */ });
  }
  function render(data) {
    var body = document.querySelector("#functions tbody");
    body.replaceChildren();
    data.functions.forEach(function (f) {
      var tr = document.createElement("tr");
      tr.dataset.function = f.funcname;
      functionCell(tr, f);
      if (data.perShard) cell(tr, f.shard, { num: true });
      data.columns.forEach(function (c) {
        var n = f.counts[c.name];
        cell(tr, n, { num: true, href: n > 0 ? jobsHref({ function: f.funcname, state: c.name, shard: f.shard }) : null })
          .dataset.state = c.name;
      });
      cell(tr, f.oldestDueAge, { num: true });
      cell(tr, f.queued, { num: true }); cell(tr, f.running, { num: true }); cell(tr, f.workers, { num: true });
      if (overview.dataset.csrf) controls(tr, f, overview.dataset.csrf);
      body.appendChild(tr);
    });
    if (data.functions.length === 0) {
      var empty = document.createElement("tr"); var td = document.createElement("td");
      td.colSpan = 5 + data.columns.length + (data.perShard ? 1 : 0) + (overview.dataset.csrf ? 1 : 0); td.className = "muted"; td.textContent = "No stored jobs.";
      empty.appendChild(td); body.appendChild(empty);
    }
    var servers = document.querySelector("#servers tbody");
    servers.replaceChildren();
    data.servers.forEach(function (s) {
      var tr = document.createElement("tr");
      cell(tr, s.server);
      var st = document.createElement("td"); st.className = s.up ? "up" : "down"; st.textContent = s.up ? "up" : "down";
      if (s.error) st.title = s.error;
      tr.appendChild(st);
      cell(tr, s.up ? s.queued : null, { num: true }); cell(tr, s.up ? s.running : null, { num: true }); cell(tr, s.up ? s.workers : null, { num: true });
      servers.appendChild(tr);
    });
    var problems = document.getElementById("problems");
    problems.replaceChildren();
    data.unavailable.forEach(function (u) {
      var p = document.createElement("div"); p.className = "notice error"; p.textContent = "Shard " + u.shard + " unavailable: " + u.error; problems.appendChild(p);
    });
    refreshChart();
    var updated = document.getElementById("updated");
    updated.textContent = "updated " + new Date(data.generatedAt * 1000).toLocaleTimeString();
    updated.dataset.generatedAt = String(data.generatedAt);
  }
  if (overview) {
    var every = Number(overview.dataset.refresh || "3000");
    var tick = function () {
      fetch(overview.dataset.src, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
        .then(render)
        .catch(function (e) { var u = document.getElementById("updated"); u.textContent = "refresh failed: " + e.message; })
        .finally(function () { setTimeout(tick, every); });
    };
    setTimeout(tick, every);
  }

  // The jobs list: select all, and the count of selected jobs on the action buttons.
  var selectAll = document.getElementById("select-all");
  var boxes = function () { return Array.prototype.slice.call(document.querySelectorAll("input[name=handle]")); };
  function updateCount() {
    var n = boxes().filter(function (b) { return b.checked; }).length;
    document.querySelectorAll("[data-selected-count]").forEach(function (el) { el.textContent = String(n); });
    document.querySelectorAll("button[data-needs-selection]").forEach(function (b) { b.disabled = n === 0; });
  }
  if (selectAll) {
    selectAll.addEventListener("change", function () { boxes().forEach(function (b) { b.checked = selectAll.checked; }); updateCount(); });
  }
  boxes().forEach(function (b) { b.addEventListener("change", updateCount); });
  if (document.querySelector("[data-selected-count]")) updateCount();
})();
`
