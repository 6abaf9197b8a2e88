/** The console's pages, rendered from data to `Html` (no effects here: the routes read the data). */
import { formatHandle, jobState } from "../Job.js"
import type { JobRecord, StoredJob } from "../Job.js"
import type { FunctionAction, FunctionActionInput } from "../functionActions.js"
import type { JobAction } from "../jobActions.js"
import type { ServerFigures } from "../overview.js"
import type { ListCursor } from "../storage/Storage.js"
import { viewArg } from "./argView.js"
import { throughputCard } from "./chart.js"
import type { DriverJobRow } from "./driverConsole.js"
import type { ThroughputView } from "./chart.js"
import type { BulkResult } from "./bulk.js"
import { JOB_COLUMNS, jobHref, STATES, whenText } from "./catalog.js"
import { html } from "./html.js"
import type { Html } from "./html.js"

export interface PageContext {
  readonly csrf: string
  readonly readOnly: boolean
  readonly actions: ReadonlyArray<JobAction>
  /** Jobs one action on a filter touches, at most (`BULK_MAX`). */
  readonly bulkMax: number
  /** Whether the Driver page is on (`--driver-console`). */
  readonly driver: boolean
}

export const layout = (
  title: string,
  current: "overview" | "jobs" | "driver" | "",
  ctx: PageContext,
  body: Html
): Html =>
  html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · garivini</title>
<link rel="stylesheet" href="/assets/console.css">
<script src="/assets/console.js" defer></script>
</head>
<body>
<header>
<span class="brand">garivini</span>
<a href="/" class="${current === "overview" ? "current" : ""}">Overview</a>
<a href="/jobs" class="${current === "jobs" ? "current" : ""}">Jobs</a>
${ctx.driver ? html`<a href="/driver" class="${current === "driver" ? "current" : ""}">Driver</a>` : ""}
${ctx.readOnly ? html`<span class="mode">read-only</span>` : ""}
</header>
<main>
<h1>${title}</h1>
${body}
</main>
</body>
</html>`

// -- overview ----------------------------------------------------------------------------------

export interface FunctionRow {
  /** The shard, when the overview is per shard; null when summed over shards. */
  readonly shard: number | null
  readonly funcname: string
  readonly counts: Readonly<Record<string, number>>
  /** Seconds the oldest due job has waited (null: none due). */
  readonly oldestDueAge: number | null
  readonly queued: number | null
  readonly running: number | null
  readonly workers: number | null
  /** Paused by flow control (`garivini functions pause`): no dispatcher sends its jobs. */
  readonly paused: boolean
}

export interface OverviewData {
  readonly generatedAt: number
  readonly perShard: boolean
  readonly columns: ReadonlyArray<{ readonly name: string; readonly label: string; readonly description: string }>
  readonly functions: ReadonlyArray<FunctionRow>
  readonly servers: ReadonlyArray<ServerFigures>
  readonly unavailable: ReadonlyArray<{ readonly shard: number; readonly error: string }>
  readonly gearmandError: string | null
  /** Why the paused states are not shown (a database without flow control), if so. */
  readonly flowError: string | null
  /** Completed and failed per minute, the last hour, every process of the deployment. */
  readonly throughput: ThroughputView
}

const num = (n: number | null) => html`<td class="${n === 0 ? "num zero" : "num"}">${n === null ? "-" : n}</td>`

const jobsLink = (params: Record<string, string | number | null>) => {
  const q = new URLSearchParams()
  for (const [k, v] of Object.entries(params)) if (v !== null) q.set(k, String(v))
  return `/jobs?${q.toString()}`
}

/** A function's name, a link to its jobs, with a badge when it is paused (flow control). */
const functionCell = (f: FunctionRow) =>
  html`<td data-paused="${f.paused ? "yes" : "no"}"><a href="${
    jobsLink({ function: f.funcname, shard: f.shard })
  }">${f.funcname}</a>${
    f.paused
      ? html` <span class="state state-paused" title="Paused: its jobs stay stored and due; no dispatcher sends them">paused</span>`
      : ""
  }</td>`

/** Pause or resume (one click: nothing is lost) and a link to purge its dead jobs (asked for first). */
const functionControls = (f: FunctionRow, ctx: PageContext) =>
  html`<td class="controls"><form method="post" action="/function/${f.paused ? "resume" : "pause"}">
<input type="hidden" name="csrf" value="${ctx.csrf}"><input type="hidden" name="function" value="${f.funcname}">
<button type="submit" name="step" value="run" class="secondary" data-function-action="${
    f.paused ? "resume" : "pause"
  }">${f.paused ? "Resume" : "Pause"}</button></form> <a href="/function/purge-dead?function=${
    encodeURIComponent(f.funcname)
  }" data-function-action="purge-dead" title="Delete its dead jobs older than…">Purge…</a></td>`

export const overviewPage = (data: OverviewData, ctx: PageContext): Html => {
  const span = 5 + data.columns.length + (data.perShard ? 1 : 0) + (ctx.readOnly ? 0 : 1)
  const rows = data.functions.map((f) =>
    html`<tr data-function="${f.funcname}">
${functionCell(f)}
${data.perShard ? num(f.shard) : ""}
${
      data.columns.map((c) => {
        const n = f.counts[c.name] ?? 0
        return html`<td class="${n === 0 ? "num zero" : "num"}" data-state="${c.name}">${
          n > 0 ? html`<a href="${jobsLink({ function: f.funcname, state: c.name, shard: f.shard })}">${n}</a>` : n
        }</td>`
      })
    }
<td class="num">${f.oldestDueAge === null ? "-" : f.oldestDueAge}</td>
${num(f.queued)}${num(f.running)}${num(f.workers)}
${ctx.readOnly ? "" : functionControls(f, ctx)}
</tr>`
  )
  const servers = data.servers.map((s) =>
    html`<tr><td>${s.server}</td><td class="${s.up ? "up" : "down"}" title="${s.error ?? ""}">${
      s.up ? "up" : "down"
    }</td>
${num(s.up ? s.queued : null)}${num(s.up ? s.running : null)}${num(s.up ? s.workers : null)}</tr>`
  )
  const body = html`<div id="overview" data-src="/api/overview${data.perShard ? "?shards=1" : ""}" data-refresh="3000"${
    ctx.readOnly ? "" : html` data-csrf="${ctx.csrf}"`
  }>
<div id="problems">${
    data.unavailable.map((u) => html`<div class="notice error">Shard ${u.shard} unavailable: ${u.error}</div>`)
  }${data.flowError === null ? "" : html`<div class="notice">${data.flowError}</div>`}</div>
<p class="muted"><span id="updated" data-generated-at="${data.generatedAt}">updated ${
    new Date(data.generatedAt * 1000).toISOString()
  }</span> · refreshes every 3 s · ${
    data.perShard ? html`<a href="/">sum over shards</a>` : html`<a href="/?shards=1">per shard</a>`
  }</p>
<h2>Completed and failed per minute</h2>
${throughputCard(data.throughput)}
<h2>Functions</h2>
<div class="table-wrap"><table id="functions">
<thead><tr><th>Function</th>${data.perShard ? html`<th class="num">Shard</th>` : ""}${
    data.columns.map((c) => html`<th class="num" title="${c.description}">${c.label}</th>`)
  }<th class="num" title="Seconds the oldest due job has waited">Oldest due (s)</th><th class="num" title="Waiting in gearmand">Queued</th><th class="num">Running</th><th class="num">Workers</th>${
    ctx.readOnly ? "" : html`<th>Control</th>`
  }</tr></thead>
<tbody>${rows.length > 0 ? rows : html`<tr><td colspan="${span}" class="muted">No stored jobs.</td></tr>`}</tbody>
</table></div>
<h2>Job servers</h2>
<div class="table-wrap"><table id="servers">
<thead><tr><th>Server</th><th>Status</th><th class="num">Queued</th><th class="num">Running</th><th class="num">Workers</th></tr></thead>
<tbody>${servers}</tbody>
</table></div>
</div>`
  return layout("Overview", "overview", ctx, body)
}

// -- jobs --------------------------------------------------------------------------------------

export interface JobsQuery {
  readonly function?: string | undefined
  readonly state?: string | undefined
  readonly shard?: number | undefined
  readonly uniqkey?: string | undefined
  readonly order: "id" | "runAfter"
  readonly after?: ListCursor | undefined
  readonly limit: number
}

/** A cursor as it travels in a link: `dbid:jobid`, or `dbid:jobid@runAfter` by run_after. */
export const formatCursor = (c: ListCursor): string =>
  c.runAfter === undefined ? formatHandle(c) : `${formatHandle(c)}@${c.runAfter}`

export const jobsHref = (q: JobsQuery, after?: ListCursor): string => {
  const p = new URLSearchParams()
  if (q.function !== undefined) p.set("function", q.function)
  if (q.state !== undefined) p.set("state", q.state)
  if (q.shard !== undefined) p.set("shard", String(q.shard))
  if (q.uniqkey !== undefined) p.set("uniqkey", q.uniqkey)
  if (q.order !== "id") p.set("order", q.order)
  if (q.limit !== 50) p.set("limit", String(q.limit))
  if (after !== undefined) p.set("after", formatCursor(after))
  return `/jobs?${p.toString()}`
}

/** Buttons that post the selected jobs (or `handles`) to an action, through its confirmation. */
const actionButtons = (ctx: PageContext, selection: boolean) =>
  ctx.readOnly ?
    "" :
    html`<div class="actions">${
      ctx.actions.map((a) =>
        html`<button type="submit" formaction="/action/${a.name}" name="step" value="confirm" class="${
          a.destructive ? "danger" : ""
        }" data-action="${a.name}"${selection ? html` data-needs-selection` : ""}>${a.label}${
          selection ? html` (<span data-selected-count>0</span>)` : ""
        }</button>`
      )
    }</div>`

export const jobsPage = (
  q: JobsQuery,
  jobs: ReadonlyArray<StoredJob>,
  shardIds: ReadonlyArray<number>,
  now: number,
  back: string,
  ctx: PageContext
): Html => {
  const last = jobs[jobs.length - 1]
  const next = jobs.length === q.limit && last !== undefined
    ? jobsHref(
      q,
      q.order === "runAfter" ? { ...last, runAfter: last.runAfter } : { dbid: last.dbid, jobid: last.jobid }
    )
    : undefined
  const filters = html`<form class="filters card" method="get" action="/jobs">
<label>Function<input name="function" value="${q.function ?? ""}" placeholder="any"></label>
<label>State<select name="state"><option value="">any</option>${
    STATES.map((s) => html`<option value="${s.name}"${q.state === s.name ? html` selected` : ""}>${s.label}</option>`)
  }</select></label>
<label>Shard<select name="shard"><option value="">any</option>${
    shardIds.map((id) => html`<option value="${id}"${q.shard === id ? html` selected` : ""}>${id}</option>`)
  }</select></label>
<label>Unique key contains<input name="uniqkey" value="${q.uniqkey ?? ""}"></label>
<label>Order<select name="order"><option value="id">by id</option><option value="runAfter"${
    q.order === "runAfter" ? html` selected` : ""
  }>by run after</option></select></label>
<button type="submit">Filter</button>
</form>`
  const table = html`<form method="post" id="jobs-form">
<input type="hidden" name="csrf" value="${ctx.csrf}">
<input type="hidden" name="back" value="${back}">
${actionButtons(ctx, true)}
<div class="table-wrap"><table id="jobs">
<thead><tr>${ctx.readOnly ? "" : html`<th><input type="checkbox" id="select-all" aria-label="select all"></th>`}${
    JOB_COLUMNS.map((c) => html`<th class="${c.className ?? ""}">${c.label}</th>`)
  }</tr></thead>
<tbody>${
    jobs.length === 0
      ? html`<tr><td colspan="${JOB_COLUMNS.length + 1}" class="muted">No job matches.</td></tr>`
      : jobs.map((j) =>
        html`<tr data-handle="${formatHandle(j)}">${
          ctx.readOnly
            ? ""
            : html`<td><input type="checkbox" name="handle" value="${formatHandle(j)}" aria-label="select ${
              formatHandle(j)
            }"></td>`
        }${JOB_COLUMNS.map((c) => html`<td class="${c.className ?? ""}">${c.cell(j, now)}</td>`)}</tr>`
      )
  }</tbody>
</table></div>
</form>
<div class="pager">${q.after !== undefined ? html`<a href="${jobsHref(q)}">First page</a>` : ""}${
    next !== undefined ? html`<a href="${next}" id="next-page">Next page</a>` : ""
  }<span class="muted">${jobs.length} job(s) on this page</span></div>`
  return layout("Jobs", "jobs", ctx, html`${filters}${bulkForm(q, back, ctx)}${table}`)
}

// -- one job -----------------------------------------------------------------------------------

export const jobPage = (job: JobRecord, now: number, leaseSeconds: number, ctx: PageContext): Html => {
  const arg = viewArg(job.arg)
  const state = jobState(job, now)
  const leased = job.runAfter > now && job.runAfter <= now + leaseSeconds
  const fields: ReadonlyArray<readonly [string, Html | string | number]> = [
    ["Handle", formatHandle(job)],
    ["Function", job.funcname],
    ["State", html`<span class="state state-${state}">${state}</span>`],
    [
      "Run after",
      state === "never"
        ? html`${job.runAfter} (never)`
        : html`${job.runAfter} · ${new Date(job.runAfter * 1000).toISOString()} (${whenText(job, now)})`
    ],
    [
      "Lease",
      leased
        ? html`may be running: run_after is within a lease (${leaseSeconds} s) of now, as a dispatched job's is`
        : "not leased"
    ],
    ["Failures", job.failcount],
    ["Flag", job.flag],
    ["Unique key", job.uniqkey ?? "(none)"],
    ["Coalesce", job.coalesce ?? "(none)"],
    [
      "Last error",
      job.lastError === null
        ? html`<span class="muted">none recorded</span>`
        : html`<pre id="last-error">${job.lastError}</pre><span class="muted">${
          job.lastErrorAt === null ? "" : new Date(job.lastErrorAt * 1000).toISOString()
        }${job.lastErrorAttempt === null ? "" : ` · attempt ${job.lastErrorAttempt}`}</span>`
    ],
    [
      "Ended",
      job.ended === null
        ? "no"
        : html`${job.ended}${job.endedAt === null ? "" : ` · ${new Date(job.endedAt * 1000).toISOString()}`}`
    ]
  ]
  const body = html`<div class="card"><dl class="fields">${
    fields.map(([k, v]) => html`<dt>${k}</dt><dd>${v}</dd>`)
  }</dl></div>
<h2>Arg <span class="muted">(${arg.bytes} bytes, ${arg.kind}${arg.truncated ? ", first part shown" : ""})</span></h2>
<pre id="arg">${arg.text}</pre>
${
    ctx.readOnly ? "" : html`<form method="post" class="card">
<input type="hidden" name="csrf" value="${ctx.csrf}">
<input type="hidden" name="handle" value="${formatHandle(job)}">
<input type="hidden" name="back" value="${jobHref(job)}">
${actionButtons(ctx, false)}
</form>`
  }
<p><a href="/jobs?function=${encodeURIComponent(job.funcname)}">Other jobs of ${job.funcname}</a></p>`
  return layout(`Job ${formatHandle(job)}`, "jobs", ctx, body)
}

// -- actions -----------------------------------------------------------------------------------

/** The confirmation: the count and the jobs, the same form again with `step=run`. */
export const confirmPage = (
  action: JobAction,
  handles: ReadonlyArray<string>,
  back: string,
  ctx: PageContext
): Html => {
  const shown = handles.slice(0, 50)
  return layout(
    `${action.label} ${handles.length} job(s)`,
    "jobs",
    ctx,
    html`<form method="post" action="/action/${action.name}" class="card" id="confirm">
<p id="confirm-text"><strong>${action.confirm(handles.length)}</strong></p>
<p class="muted">${shown.join(", ")}${
      handles.length > shown.length ? ` and ${handles.length - shown.length} more` : ""
    }</p>
<input type="hidden" name="csrf" value="${ctx.csrf}">
<input type="hidden" name="back" value="${back}">
${handles.map((h) => html`<input type="hidden" name="handle" value="${h}">`)}
<label class="inline"><input type="checkbox" name="force" value="on"> force: act even on jobs that may be running right now</label>
<div class="actions"><button type="submit" name="step" value="run" class="${
      action.destructive ? "danger" : ""
    }">${action.label} ${handles.length} job(s)</button><a href="${back}">Cancel</a></div>
</form>`
  )
}

export interface ActionResult {
  readonly handle: string
  readonly outcome: string
  readonly message: string
}

export const resultPage = (
  action: JobAction,
  results: ReadonlyArray<ActionResult>,
  back: string,
  ctx: PageContext
): Html => {
  const done = results.filter((r) => r.outcome === "Done").length
  return layout(
    `${action.label}: ${done} of ${results.length} done`,
    "jobs",
    ctx,
    html`<div class="table-wrap"><table id="results"><thead><tr><th>Job</th><th>Outcome</th><th>Message</th></tr></thead>
<tbody>${
      results.map((r) =>
        html`<tr data-outcome="${r.outcome}"><td>${r.handle}</td><td>${r.outcome}</td><td>${r.message}${
          r.outcome === "Refused" ? "; tick “force” to do it anyway" : ""
        }</td></tr>`
      )
    }</tbody></table></div>
<p><a href="${back}" id="back">Back</a></p>`
  )
}

export const messagePage = (title: string, message: string, ctx: PageContext): Html =>
  layout(title, "", ctx, html`<div class="notice error">${message}</div><p><a href="/">Overview</a></p>`)

// -- actions on a function ---------------------------------------------------------------------

/** Purge's first step: how old (the count of dead jobs shows on the overview). */
export const purgeFormPage = (funcname: string, dead: number, ctx: PageContext): Html =>
  layout(
    `Purge dead jobs of ${funcname}`,
    "overview",
    ctx,
    html`<form method="post" action="/function/purge-dead" class="card" id="purge">
<p>${funcname} has ${dead} dead job(s) on every shard together. Delete those that died more than:</p>
<input type="hidden" name="csrf" value="${ctx.csrf}">
<input type="hidden" name="function" value="${funcname}">
<label>Older than (7d, 12h, 30m, 90s or seconds)<input name="olderThan" value="7d" required></label>
<div class="actions"><button type="submit" name="step" value="confirm" class="danger">Continue</button><a href="/">Cancel</a></div>
</form>`
  )

/** A destructive function action's confirmation: the same form again with `step=run`. */
export const functionConfirmPage = (
  action: FunctionAction,
  input: FunctionActionInput,
  ctx: PageContext
): Html =>
  layout(
    `${action.label} ${input.funcname}`,
    "overview",
    ctx,
    html`<form method="post" action="/function/${action.name}" class="card" id="confirm">
<p id="confirm-text"><strong>${action.confirm(input)}</strong></p>
<input type="hidden" name="csrf" value="${ctx.csrf}">
<input type="hidden" name="function" value="${input.funcname}">
${input.olderThan === undefined ? "" : html`<input type="hidden" name="olderThan" value="${input.olderThan}">`}
<div class="actions"><button type="submit" name="step" value="run" class="${
      action.destructive ? "danger" : ""
    }">${action.label}</button><a href="/">Cancel</a></div>
</form>`
  )

export const functionResultPage = (action: FunctionAction, message: string, ctx: PageContext): Html =>
  layout(
    `${action.label}: done`,
    "overview",
    ctx,
    html`<div class="card" id="function-result">${message}</div><p><a href="/" id="back">Back to the overview</a></p>`
  )

// -- actions on every job of a filter ----------------------------------------------------------

/** The filter's fields as hidden inputs (blank ones left out). */
const filterInputs = (q: JobsFilter) =>
  html`${q.function === undefined ? "" : html`<input type="hidden" name="function" value="${q.function}">`}${
    q.state === undefined ? "" : html`<input type="hidden" name="state" value="${q.state}">`
  }${q.shard === undefined ? "" : html`<input type="hidden" name="shard" value="${q.shard}">`}${
    q.uniqkey === undefined ? "" : html`<input type="hidden" name="uniqkey" value="${q.uniqkey}">`
  }`

/** The filter in words: `function = mail, state = dead` (or "every job"). */
export const filterText = (q: JobsFilter): string => {
  const parts = [
    q.function === undefined ? "" : `function = ${q.function}`,
    q.state === undefined ? "" : `state = ${q.state}`,
    q.shard === undefined ? "" : `shard = ${q.shard}`,
    q.uniqkey === undefined ? "" : `unique key contains ${JSON.stringify(q.uniqkey)}`
  ].filter((p) => p !== "")
  return parts.length === 0 ? "every job" : parts.join(", ")
}

export type JobsFilter = Pick<JobsQuery, "function" | "state" | "shard" | "uniqkey">

/** Buttons acting on every job the filter matches, each through a confirmation with the count. */
const bulkForm = (q: JobsFilter, back: string, ctx: PageContext) =>
  ctx.readOnly ? "" : html`<form method="post" class="card bulk" id="bulk-form">
<input type="hidden" name="csrf" value="${ctx.csrf}">
<input type="hidden" name="back" value="${back}">
<input type="hidden" name="scope" value="filter">
${filterInputs(q)}
<div class="actions"><span class="muted">Every job matching ${filterText(q)} (up to ${
    ctx.bulkMax.toLocaleString("en")
  }):</span>${
    ctx.actions.map((a) =>
      html`<button type="submit" formaction="/action/${a.name}" name="step" value="confirm" class="secondary" data-bulk-action="${a.name}">${a.label} all…</button>`
    )
  }</div>
</form>`

export const bulkConfirmPage = (
  action: JobAction,
  q: JobsFilter,
  count: { readonly count: number; readonly more: boolean },
  back: string,
  ctx: PageContext
): Html =>
  layout(
    `${action.label} ${count.count} job(s)`,
    "jobs",
    ctx,
    html`<form method="post" action="/action/${action.name}" class="card" id="confirm">
<p id="bulk-count"><strong>${count.more ? "More than " : ""}${count.count} jobs</strong> match ${filterText(q)}.</p>
${
      count.more
        ? html`<p class="notice" id="bulk-capped">At most ${ctx.bulkMax} jobs an action: this one acts on the first ${count.count} (by id); run it again for the rest.</p>`
        : ""
    }
<p id="confirm-text"><strong>${action.confirm(count.count)}</strong></p>
<p class="muted">Jobs that changed since this count are acted on as they are then; each job follows the same rules as one job (a job that may be running is refused unless forced).</p>
<input type="hidden" name="csrf" value="${ctx.csrf}">
<input type="hidden" name="back" value="${back}">
<input type="hidden" name="scope" value="filter">
${filterInputs(q)}
<label class="inline"><input type="checkbox" name="force" value="on"> force: act even on jobs that may be running right now</label>
<div class="actions"><button type="submit" name="step" value="run" class="${
      action.destructive ? "danger" : ""
    }">${action.label} ${count.count} job(s)</button><a href="${back}">Cancel</a></div>
</form>`
  )

export const bulkResultPage = (
  action: JobAction,
  q: JobsFilter,
  result: BulkResult,
  back: string,
  ctx: PageContext
) => {
  const done = result.outcomes["Done"] ?? 0
  return layout(
    `${action.label}: ${done} of ${result.total} done`,
    "jobs",
    ctx,
    html`<div class="card" id="bulk-result"><p>${action.label} on ${filterText(q)}: ${
      Object.entries(result.outcomes).map(([o, n]) => html`<span class="outcome" data-outcome="${o}">${o} ${n}</span> `)
    }</p>${
      result.more
        ? html`<p class="notice">More jobs match than one action takes (${ctx.bulkMax}): run it again.</p>`
        : ""
    }</div>
${
      result.notable.length === 0 ?
        "" :
        html`<div class="table-wrap"><table id="results"><thead><tr><th>Job</th><th>Outcome</th><th>Message</th></tr></thead>
<tbody>${
          result.notable.map((r) =>
            html`<tr data-outcome="${r.outcome}"><td>${r.handle}</td><td>${r.outcome}</td><td>${r.message}</td></tr>`
          )
        }</tbody></table></div>`
    }
<p><a href="${back}" id="back">Back</a></p>`
  )
}

// -- the Driver --------------------------------------------------------------------------------

export const driverPage = (
  address: string,
  jobs: ReadonlyArray<DriverJobRow>,
  ctx: PageContext,
  notice?: string
): Html =>
  layout(
    "Driver",
    "driver",
    ctx,
    html`<p class="muted">The Driver's console at ${address} (<code>status</code>, <code>set_processes</code>: docs/driver.md).</p>
${notice === undefined ? "" : html`<div class="notice" id="driver-notice">${notice}</div>`}
<div class="table-wrap"><table id="driver-jobs">
<thead><tr><th>Driver job</th><th class="num">Min</th><th class="num">Max</th><th class="num">Processes</th><th>Last run</th><th>Last error</th>${
      ctx.readOnly ? "" : html`<th>Set min / max</th>`
    }</tr></thead>
<tbody>${
      jobs.length === 0
        ? html`<tr><td colspan="7" class="muted">No Driver job.</td></tr>`
        : jobs.map((j) =>
          html`<tr data-driver-job="${j.name}"><td>${j.name}</td><td class="num" data-field="min">${j.min}</td><td class="num" data-field="max">${j.max}</td><td class="num" data-field="processes">${j.processes}</td><td>${
            j.lastRun ?? html`<span class="muted">never</span>`
          }</td><td>${
            j.lastError === null
              ? html`<span class="muted">none</span>`
              : html`${j.lastError}${
                j.lastErrorMessage === null ? "" : html`<pre class="driver-error">${j.lastErrorMessage}</pre>`
              }`
          }</td>${
            ctx.readOnly ? "" : html`<td><form method="post" action="/driver/processes" class="processes">
<input type="hidden" name="csrf" value="${ctx.csrf}"><input type="hidden" name="job" value="${j.name}">
<input name="min" value="${j.min}" inputmode="numeric" size="3" aria-label="min processes of ${j.name}">
<input name="max" value="${j.max}" inputmode="numeric" size="3" aria-label="max processes of ${j.name}">
<button type="submit" class="secondary">Set</button></form></td>`
          }</tr>`
        )
    }</tbody></table></div>`
  )
