// Every metric of the Gearman layer, in one place. Updated from hot paths with unsafeUpdate
// (synchronous, no Effect per job).
import { Metric } from "effect"

/** Jobs accepted by a server (JOB_CREATED), tagged `mode` = foreground | background. */
export const jobsSubmitted = Metric.counter("gearman_jobs_submitted_total", {
  description: "jobs accepted by a job server",
  incremental: true
})

/** Jobs a worker finished, tagged `outcome` = complete | fail | exception | defect. */
export const jobsProcessed = Metric.counter("gearman_jobs_processed_total", {
  description: "jobs a worker finished",
  incremental: true
})

/** Established connections that were lost, tagged `server`. */
export const connectionsLost = Metric.counter("gearman_connections_lost_total", {
  description: "job server connections lost",
  incremental: true
})

/** Frames rejected by the decoder (bad magic, unknown type, oversized, malformed). */
export const protocolErrors = Metric.counter("gearman_protocol_errors_total", {
  description: "frames rejected by the decoder",
  incremental: true
})

/**
 * Deliveries of a job this worker process was already running (its connection was cut and the
 * server handed it back, or a stored job came again under another handle), answered without a
 * second run; tagged `to` = running (joined the run in progress) | finished (took the outcome
 * of a run that ended while its connection was gone).
 */
export const jobsJoined = Metric.counter("gearman_jobs_joined_total", {
  description: "job deliveries answered from a run of the same job instead of running it again",
  incremental: true
})

/** Jobs queued (waiting or running) per job server and function, from admin `status`. */
export const serverQueued = Metric.gauge("garivini_gearmand_queued", {
  description: "jobs queued (including running) per job server and function, from admin status"
})

/** Jobs running per job server and function, from admin `status`. */
export const serverRunning = Metric.gauge("garivini_gearmand_running", {
  description: "jobs running per job server and function, from admin status"
})

/** Workers registered (CAN_DO) per job server and function, from admin `status`. */
export const serverWorkers = Metric.gauge("garivini_gearmand_workers", {
  description: "workers registered per job server and function, from admin status"
})

/** 1 when the job server answered the last admin `status`, else 0; tagged `server`. */
export const serverUp = Metric.gauge("garivini_gearmand_up", {
  description: "whether the job server answered the last admin status (1) or not (0)"
})
