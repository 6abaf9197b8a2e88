// Every metric of the roles, in one place.
import { Metric } from "effect"

/** Jobs parked (run_after = never) because they can never be delivered, tagged `reason`. */
export const jobsParked = Metric.counter("garivini_jobs_parked_total", {
  description: "jobs parked as undeliverable",
  incremental: true
})
