/**
 * The console's tables: the job states (overview columns, the jobs filter) and the job list's
 * columns. A new state is one entry in `STATE_TABLE` (the compiler asks for it once `JobState`
 * has it); a new column one entry in `JOB_COLUMNS`; a new action one entry in `JOB_ACTIONS`
 * (src/jobActions.ts).
 */
import { formatHandle, jobState } from "../Job.js"
import type { StoredJob } from "../Job.js"
import type { FunctionCounts, JobState } from "../storage/Storage.js"
import { html } from "./html.js"
import type { Html } from "./html.js"

export interface StateEntry {
  readonly name: JobState
  readonly label: string
  /** What the state means, as a tooltip and in the filter. */
  readonly description: string
  /** The state's count in a function's counts. */
  readonly count: (c: FunctionCounts) => number
}

const STATE_TABLE: { readonly [K in JobState]: Omit<StateEntry, "name"> } = {
  due: { label: "Due", description: "run_after has passed: waiting for a runner", count: (c) => c.due },
  scheduled: {
    label: "Scheduled",
    description: "run_after in the future, never run yet (or leased by a Perl runner or the Injector)",
    count: (c) => c.scheduled
  },
  retrying: {
    label: "Retrying",
    description: "backing off after a failure: runs again at run_after",
    count: (c) => c.retrying
  },
  dispatched: {
    label: "Dispatched",
    description: "claimed by a runner and handed to a job server: leased until run_after",
    count: (c) => c.dispatched
  },
  running: {
    label: "Running",
    description: "a worker runs it and heartbeats: its lease moves forward while it runs",
    count: (c) => c.running
  },
  never: { label: "Never", description: "parked (run_after = never): runs only when retried", count: (c) => c.never },
  dead: { label: "Dead", description: "its attempts used up: kept, runs only when retried", count: (c) => c.dead },
  cancelled: { label: "Cancelled", description: "cancelled: kept for inspection, purgeable", count: (c) => c.cancelled }
}

/** Every state, in the order shown. */
export const STATES: ReadonlyArray<StateEntry> = (Object.keys(STATE_TABLE) as Array<JobState>).map((name) => ({
  name,
  ...STATE_TABLE[name]
}))

export const isState = (name: string): name is JobState => Object.hasOwn(STATE_TABLE, name)

/** A page's view of time: "now" in unix seconds. */
export const age = (seconds: number): string => {
  const s = Math.max(0, Math.round(seconds))
  if (s < 120) return `${s}s`
  if (s < 7200) return `${Math.round(s / 60)}m`
  if (s < 172800) return `${Math.round(s / 3600)}h`
  return `${Math.round(s / 86400)}d`
}

/** When a job runs, relative to now ("in 5m", "3s ago", "never"). */
export const whenText = (job: StoredJob, now: number): string =>
  jobState(job, now) === "never"
    ? "never"
    : job.runAfter > now
    ? `in ${age(job.runAfter - now)}`
    : `${age(now - job.runAfter)} ago`

export const jobHref = (job: { readonly dbid: number; readonly jobid: number }) => `/job/${formatHandle(job)}`

/** Up to `n` printable characters of an arg, for a list cell. */
export const argPreview = (arg: Uint8Array, n = 40): string => {
  const clean = Buffer.from(arg.subarray(0, n * 4)).toString("utf8").replace(/[^\x20-\x7e]/g, ".")
  return clean.length > n ? `${clean.slice(0, n - 1)}…` : clean
}

export interface JobColumn {
  readonly label: string
  /** A CSS class of the cell (narrow columns hide on a phone: `wide-only`). */
  readonly className?: string
  readonly cell: (job: StoredJob, now: number) => Html
}

export const JOB_COLUMNS: ReadonlyArray<JobColumn> = [
  { label: "Job", cell: (j) => html`<a href="${jobHref(j)}">${formatHandle(j)}</a>` },
  { label: "Function", cell: (j) => html`${j.funcname}` },
  {
    label: "State",
    cell: (j, now) => {
      const state = jobState(j, now)
      return html`<span class="state state-${state}">${STATE_TABLE[state].label}</span>`
    }
  },
  {
    label: "Run after",
    cell: (j, now) => html`<time title="${new Date(j.runAfter * 1000).toISOString()}">${whenText(j, now)}</time>`
  },
  { label: "Fails", className: "num wide-only", cell: (j) => html`${j.failcount}` },
  { label: "Unique key", className: "wide-only", cell: (j) => html`${j.uniqkey ?? ""}` },
  { label: "Arg", className: "wide-only mono", cell: (j) => html`${argPreview(j.arg)}` }
]
