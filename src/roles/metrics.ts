// Every metric of the roles, in one place.
import { Metric } from "effect"

/** Jobs parked (run_after = never) because they can never be delivered, tagged `reason`. */
export const jobsParked = Metric.counter("garivini_jobs_parked_total", {
  description: "jobs parked as undeliverable",
  incremental: true
})

/** Failures recorded by our helpers (worker helper, Controller), tagged `outcome`: `retrying` or `dead`. */
export const jobFailures = Metric.counter("garivini_job_failures_total", {
  description: "job failures recorded, by outcome (retrying: backing off; dead: attempts used up)",
  incremental: true
})
/** Jobs enqueued by recurring schedules, tagged `schedule`. */
export const scheduledJobs = Metric.counter("garivini_scheduled_jobs_total", {
  description: "jobs enqueued by recurring schedules",
  incremental: true
})
/** Rate-limit tokens granted to dispatchers (jobs allowed to start), tagged `funcname`. */
export const rateTokens = Metric.counter("garivini_rate_tokens_total", {
  description: "jobs allowed to start by a rate limit",
  incremental: true
})
