// Every metric of the storage layer, in one place. Counters are updated with unsafeUpdate, once
// per call (never per job); the gauges are set from `Storage.counts()` by the metrics poller.
import { Metric, MetricLabel } from "effect"
import type { FunctionCounts } from "./ShardBackend.js"

/** Jobs stored (duplicates of a unique job not counted), by this process. */
export const jobsInserted = Metric.counter("garivini_jobs_inserted_total", {
  description: "jobs stored by this process (duplicates dropped are not counted)",
  incremental: true
})

/** Rows deleted as completed, by this process. */
export const jobsCompleted = Metric.counter("garivini_jobs_completed_total", {
  description: "jobs completed (their rows deleted) by this process",
  incremental: true
})

/** Jobs claimed from the database for dispatch (QueueRunner rounds). */
export const jobsClaimed = Metric.counter("garivini_jobs_claimed_total", {
  description: "due jobs claimed (leased) for dispatch by this process",
  incremental: true
})

/** Jobs rescheduled (after a failure, or at a handler's or worker's request), by this process. */
export const jobsRetried = Metric.counter("garivini_jobs_retried_total", {
  description: "jobs rescheduled to run again after a failure or a retry request",
  incremental: true
})

/**
 * Completions of ours (delete, reschedule, failure) that changed nothing because the job's lease
 * token no longer held: the job was leased again meanwhile (docs/job-life.md, "Fenced leases").
 */
export const completionsFenced = Metric.counter("garivini_completions_fenced_total", {
  description: "completions, reschedules and failures refused because the job's lease had passed to another dispatch",
  incremental: true
})

/** Stored jobs per shard, function and state (tagged `dbid`, `funcname`, `state`). */
export const jobsStored = Metric.gauge("garivini_jobs", {
  description: "stored jobs per shard, function and state"
})

/** Age in seconds of the oldest due job per shard and function (0 when none is due). */
export const oldestDueAge = Metric.gauge("garivini_oldest_due_job_age_seconds", {
  description: "age of the oldest due job per shard and function: how far behind the dispatch is"
})

/**
 * The states of `FunctionCounts` the gauge shows, one line each: a state added to the counts is
 * one more line here.
 */
export const stateFields = {
  due: (c: FunctionCounts) => c.due,
  scheduled: (c: FunctionCounts) => c.scheduled,
  retrying: (c: FunctionCounts) => c.retrying,
  dispatched: (c: FunctionCounts) => c.dispatched,
  running: (c: FunctionCounts) => c.running,
  never: (c: FunctionCounts) => c.never,
  dead: (c: FunctionCounts) => c.dead,
  cancelled: (c: FunctionCounts) => c.cancelled
} as const satisfies Record<string, (c: FunctionCounts) => number>

const seriesKey = (c: Pick<FunctionCounts, "dbid" | "funcname">) => `${c.dbid}\u0000${c.funcname}`

/**
 * Sets the gauges from one `counts()` answer; returns the (dbid, funcname) pairs seen, so a pair
 * gone since `previous` is set to zero rather than left at its last value.
 */
export const recordCounts = (
  counts: ReadonlyArray<FunctionCounts>,
  now: number,
  previous: ReadonlyMap<string, Pick<FunctionCounts, "dbid" | "funcname">> = new Map()
): ReadonlyMap<string, Pick<FunctionCounts, "dbid" | "funcname">> => {
  const seen = new Map<string, Pick<FunctionCounts, "dbid" | "funcname">>()
  const set = (
    c: Pick<FunctionCounts, "dbid" | "funcname">,
    value: (field: keyof typeof stateFields) => number,
    age: number
  ) => {
    const labels = [MetricLabel.make("dbid", String(c.dbid)), MetricLabel.make("funcname", c.funcname)]
    for (const state of Object.keys(stateFields) as Array<keyof typeof stateFields>) {
      jobsStored.unsafeUpdate(value(state), [...labels, MetricLabel.make("state", state)])
    }
    oldestDueAge.unsafeUpdate(age, labels)
  }
  for (const c of counts) {
    seen.set(seriesKey(c), { dbid: c.dbid, funcname: c.funcname })
    set(c, (state) => stateFields[state](c), c.oldestDue === null ? 0 : Math.max(0, now - c.oldestDue))
  }
  for (const [key, c] of previous) if (!seen.has(key)) set(c, () => 0, 0)
  return seen
}
