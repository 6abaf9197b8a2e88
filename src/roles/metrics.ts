// Every metric of the roles, in one place.
import { Effect, Metric, MetricBoundaries, MetricLabel } from "effect"

/** Jobs parked (run_after = never) because they can never be delivered, tagged `reason`. */
export const jobsParked = Metric.counter("garivini_jobs_parked_total", {
  description: "jobs parked as undeliverable",
  incremental: true
})

/** Jobs dispatched to a job server (QueueRunner rounds, Injector requests), tagged `role`. */
export const jobsDispatched = Metric.counter("garivini_jobs_dispatched_total", {
  description: "jobs handed to a job server",
  incremental: true
})

/** Leases a dispatcher extended for jobs held in a job server it is still connected to, tagged `role`. */
export const leasesExtended = Metric.counter("garivini_leases_extended_total", {
  description: "leases extended for jobs held in a job server the dispatcher is still connected to",
  incremental: true
})

/** Jobs a dispatcher made due at once when its connection to their job server broke, tagged `role`. */
export const leasesReleased = Metric.counter("garivini_leases_released_total", {
  description: "jobs made due at once when the dispatcher's connection to their job server broke",
  incremental: true
})

/** Handler runs that failed (backed off with failedJob), by the worker helper and the Controller. */
export const jobsFailed = Metric.counter("garivini_jobs_failed_total", {
  description: "job runs that failed and were backed off",
  incremental: true
})

/** Failures that used up a job's attempts: the job is dead (kept, not run again). */
export const jobsDead = Metric.counter("garivini_jobs_dead_total", {
  description: "jobs marked dead after their last attempt failed",
  incremental: true
})

/** Running jobs cancelled at a heartbeat: their handlers were interrupted (worker helper, Controller). */
export const jobsInterrupted = Metric.counter("garivini_jobs_interrupted_total", {
  description: "running jobs whose handlers were interrupted because they were cancelled",
  incremental: true
})

/** Heartbeat statements (one per shard and interval for all jobs in flight), by the worker helper and the Controller. */
export const heartbeatWrites = Metric.counter("garivini_heartbeat_writes_total", {
  description: "heartbeat UPDATEs written (one per shard and interval, for every job running there)",
  incremental: true
})

/** Inputs refused: a malformed inject_jobs request or worker JSON, tagged `input`. */
export const inputsRejected = Metric.counter("garivini_inputs_rejected_total", {
  description: "requests or payloads refused as malformed or over a limit",
  incremental: true
})

const runBuckets = MetricBoundaries.exponential({ start: 0.001, factor: 4, count: 10 })

/** Seconds a worker-helper handler ran, tagged `funcname`. */
export const runTime = Metric.histogram(
  "garivini_job_run_seconds",
  runBuckets,
  "seconds a job's handler ran in the worker helper"
)

/** Seconds one QueueRunner claim round took (claim of a shard through dispatch). */
export const claimRoundTime = Metric.histogram(
  "garivini_claim_round_seconds",
  runBuckets,
  "seconds one QueueRunner round took on a shard: claim, dispatch, defer"
)

/** Seconds an inject_jobs request took, from receipt to answer. */
export const injectRoundTrip = Metric.histogram(
  "garivini_inject_seconds",
  runBuckets,
  "seconds an inject_jobs request took from receipt to answer"
)

export const queueRunnerTag = [MetricLabel.make("role", "QueueRunner")]
export const injectorTag = [MetricLabel.make("role", "Injector")]
export const injectTag = [MetricLabel.make("input", "inject_jobs")]
export const workerJsonTag = [MetricLabel.make("input", "worker_json")]

/** Records how long `effect` took into `histogram`, whatever its outcome (one step, no fiber). */
export const timed = <A, E, R>(
  histogram: Metric.Metric.Histogram<number>,
  effect: Effect.Effect<A, E, R>
): Effect.Effect<A, E, R> =>
  Effect.suspend(() => {
    const started = performance.now()
    return Effect.onExit(effect, () =>
      Effect.sync(() => histogram.unsafeUpdate((performance.now() - started) / 1000, [])))
  })

/** Jobs enqueued by recurring schedules, tagged `schedule`. */
export const scheduledJobs = Metric.counter("garivini_scheduled_jobs_total", {
  description: "jobs enqueued by recurring schedules",
  incremental: true
})
/** Jobs claimed within a concurrency limit, tagged `funcname` (only functions with a limit set). */
export const concurrencyClaimed = Metric.counter("garivini_concurrency_claimed_total", {
  description: "jobs claimed within a function's concurrency limit",
  incremental: true
})
/** Rate-limit tokens granted to dispatchers (jobs allowed to start), tagged `funcname`. */
export const rateTokens = Metric.counter("garivini_rate_tokens_total", {
  description: "jobs allowed to start by a rate limit",
  incremental: true
})
