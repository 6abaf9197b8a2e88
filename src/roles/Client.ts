/**
 * The Client (the original's Garivini::Client): store jobs, and — from a worker — complete,
 * reschedule or fail them. Every function needs only `Storage`; time comes from `Clock`.
 */
import { Effect, Either } from "effect"
import type { InsertError, InvalidSchedule, JobLifeMissing, ShardOperationError } from "../errors.js"
import { DEFAULT_MAX_ATTEMPTS, failureBackoffSeconds, FAILCOUNT_MAX, nowSeconds, resolveRunAt } from "../Job.js"
import type { InsertOutcome, JobFlag, JobPriority, StoredJobId, NewJob, RunAt } from "../Job.js"
import { Storage } from "../storage/Storage.js"
import type { CancelOutcome, RescheduleOutcome } from "../storage/Storage.js"
import { jobsDead, jobsFailed } from "./metrics.js"
import type { FunctionControl, RateLimit } from "../storage/flow.js"

/** A job to insert. */
export interface JobSpec {
  readonly funcname: string
  /** The payload: bytes, or text stored as UTF-8. */
  readonly arg?: Uint8Array | string | undefined
  /** At most one job per `(funcname, uniqkey)` is stored, across all shards. */
  readonly uniqkey?: string | null | undefined
  readonly coalesce?: string | null | undefined
  /** When it may run (default: now): `"never"`, `"+N"`, an absolute unix time or a Duration. */
  readonly runAt?: RunAt | undefined
  /** `shim` (default): the worker completes it; `controller`: the Controller does. */
  readonly flag?: JobFlag | undefined
  /**
   * `high`, `normal` (default) or `low`: claims take higher priorities first, and the job goes to
   * gearmand with that priority (needs migration 0005; ignored, with one warning, without it).
   */
  readonly priority?: JobPriority | undefined
  /**
   * A W3C traceparent the job's trace continues (validated; a bad one is an InvalidJob). Without
   * it, when tracing is on, the insert span is a child of the caller's current span.
   */
  readonly traceparent?: string | undefined
}

/**
 * A job as a worker holds it: its handle, (optionally) its current failcount, and the lease
 * token it was dispatched under (the worker JSON's `"lease"`, absent from a Perl dispatcher's):
 * with it, completing, rescheduling or failing the job applies only while that lease holds.
 */
export interface HeldJob extends StoredJobId {
  readonly failcount?: number | undefined
  readonly lease?: string | undefined
}

const toNewJob = (spec: JobSpec, now: number): Either.Either<NewJob, InvalidSchedule> =>
  Either.map(resolveRunAt(spec.runAt ?? now, now), (runAfter) => ({
    funcname: spec.funcname,
    arg: spec.arg,
    uniqkey: spec.uniqkey,
    coalesce: spec.coalesce,
    runAfter,
    flag: spec.flag,
    priority: spec.priority,
    traceparent: spec.traceparent
  }))

/** The specs as jobs to store, run-at resolved against `now`; the first bad run-at fails. */
const toNewJobs = (
  specs: ReadonlyArray<JobSpec>,
  now: number
): Either.Either<ReadonlyArray<NewJob>, InvalidSchedule> => {
  const jobs: Array<NewJob> = []
  for (const spec of specs) {
    const job = toNewJob(spec, now)
    if (Either.isLeft(job)) return Either.left(job.left)
    jobs.push(job.right)
  }
  return Either.right(jobs)
}

/**
 * Stores jobs (one round trip per shard); per job, its handle and whether it was a duplicate.
 * Untraced and written as a few plain steps: `Storage.insert` has the span, and this is the hot
 * path of many concurrent single inserts (a second span with its stack trace cost about 15 % of
 * the CPU of a single insert).
 */
export const insertJobs = (
  specs: ReadonlyArray<JobSpec>
): Effect.Effect<ReadonlyArray<InsertOutcome>, InsertError | InvalidSchedule, Storage> =>
  Effect.flatMap(
    Storage,
    (storage) =>
      Effect.flatMap(nowSeconds, (now): Effect.Effect<ReadonlyArray<InsertOutcome>, InsertError | InvalidSchedule> => {
        const jobs = toNewJobs(specs, now)
        return Either.isLeft(jobs) ? Effect.fail(jobs.left) : storage.insert(jobs.right)
      })
  )

/** Stores one job. */
export const insertJob = (spec: JobSpec): Effect.Effect<InsertOutcome, InsertError | InvalidSchedule, Storage> =>
  Effect.flatMap(
    Storage,
    (storage) =>
      Effect.flatMap(nowSeconds, (now): Effect.Effect<InsertOutcome, InsertError | InvalidSchedule> => {
        const job = toNewJob(spec, now)
        return Either.isLeft(job)
          ? Effect.fail(job.left)
          : Effect.map(storage.insert([job.right]), (outcomes) => outcomes[0]!)
      })
  )

/**
 * Deletes finished jobs (each fenced by its lease token, if it carries one). Completing a job
 * twice is harmless. Returns how many were deleted.
 */
export const completeJob = (
  jobs: HeldJob | ReadonlyArray<HeldJob>
): Effect.Effect<number, ShardOperationError, Storage> =>
  Effect.flatMap(Storage, (storage) => storage.complete(isMany(jobs) ? jobs : [jobs]))

const isMany = (jobs: HeldJob | ReadonlyArray<HeldJob>): jobs is ReadonlyArray<HeldJob> => Array.isArray(jobs)

/**
 * Moves a job to `when` (`"never"`, `"+N"`, an absolute unix time or a Duration), storing the
 * failcount the job carries: `rescheduled`; `missing` when the job no longer exists or was
 * cancelled; `fenced` when its lease token no longer holds (leased again since).
 */
export const rescheduleJob = (
  job: HeldJob,
  when: RunAt
): Effect.Effect<RescheduleOutcome, ShardOperationError | InvalidSchedule, Storage> =>
  Effect.gen(function*() {
    const runAfter = yield* resolveRunAt(when, yield* nowSeconds)
    const storage = yield* Storage
    return yield* storage.reschedule(job, runAfter, job.failcount ?? 0)
  })

/** What a failure records beside the count. */
export interface FailureOptions {
  /** What went wrong: stored as the job's last error (bounded), with its time and attempt. */
  readonly error?: string | undefined
  /**
   * Attempts the job gets (default 25): when this failure is the last, the job is dead (kept,
   * not run again; `garivini jobs dead`, `jobs retry`). On a database without migration 2 it
   * only backs off.
   */
  readonly maxAttempts?: number | undefined
}

/**
 * Records a failure: failcount + 1 (stored, unlike the original) and the last error, and the
 * job runs again after `min(2^failcount * 60, 86400)` s: 120 s, 240 s, … one day; or, once the
 * attempts made (the new failcount) reach `maxAttempts`, it is dead. The failcount saturates at 255.
 */
export const failedJob = (
  job: HeldJob,
  options: FailureOptions = {}
): Effect.Effect<
  {
    readonly failcount: number
    readonly runAfter: number
    readonly found: boolean
    readonly dead: boolean
    /** Nothing changed: the job's lease token no longer holds (leased again since). */
    readonly fenced: boolean
  },
  ShardOperationError,
  Storage
> =>
  Effect.gen(function*() {
    const failcount = Math.min((job.failcount ?? 0) + 1, FAILCOUNT_MAX)
    const runAfter = (yield* nowSeconds) + failureBackoffSeconds(failcount)
    const storage = yield* Storage
    const outcome = yield* storage.fail(job, {
      failcount,
      runAfter,
      error: options.error,
      dead: failcount >= (options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS)
    })
    if (outcome === "retrying" || outcome === "dead") jobsFailed.unsafeUpdate(1, [])
    if (outcome === "dead") jobsDead.unsafeUpdate(1, [])
    return {
      failcount,
      runAfter,
      found: outcome === "retrying" || outcome === "dead",
      dead: outcome === "dead",
      fenced: outcome === "fenced"
    }
  })

/**
 * Cancels a job that has not ended: it will not be claimed again and stays stored as
 * `cancelled` (for inspection; `jobs purge --cancelled` removes it). A job already in a job
 * server or a worker is not stopped: it may still run once (`jobs cancel` refuses those unless
 * forced). Fails with `JobLifeMissing` on a v1 database (`garivini migrate` enables it).
 */
export const cancelJob = (
  handle: StoredJobId
): Effect.Effect<CancelOutcome, ShardOperationError | JobLifeMissing, Storage> =>
  Effect.flatMap(Storage, (s) => s.cancel(handle))

// -- flow control (docs/flow-control.md) ---------------------------------------------------------

/**
 * Pauses a function: every dispatcher stops sending its jobs within about a second; its jobs stay
 * stored and due. Written to every shard.
 */
export const pauseFunction = (
  funcname: string
): Effect.Effect<FunctionControl | undefined, ShardOperationError, Storage> =>
  Effect.flatMap(Storage, (s) => s.flow.setControl(funcname, { paused: true }))

/** Resumes a paused function: its due jobs go out again, oldest first. */
export const resumeFunction = (
  funcname: string
): Effect.Effect<FunctionControl | undefined, ShardOperationError, Storage> =>
  Effect.flatMap(Storage, (s) => s.flow.setControl(funcname, { paused: false }))

/** Sets (or, with null, removes) a function's rate limit: at most `count` jobs started per period. */
export const setRateLimit = (
  funcname: string,
  rate: RateLimit | null
): Effect.Effect<FunctionControl | undefined, ShardOperationError, Storage> =>
  Effect.flatMap(Storage, (s) => s.flow.setControl(funcname, { rate }))

/**
 * Sets (or, with null, removes) a function's concurrency limit: at most `n` of its jobs
 * dispatched or running at once, across every dispatcher (needs migration 0005).
 */
export const setConcurrencyLimit = (
  funcname: string,
  n: number | null
): Effect.Effect<FunctionControl | undefined, ShardOperationError, Storage> =>
  Effect.flatMap(Storage, (s) => s.flow.setControl(funcname, { concurrency: n }))

/** Every function with a control set (paused, rate or concurrency limit), as the home shard has them. */
export const functionControls: Effect.Effect<ReadonlyArray<FunctionControl>, ShardOperationError, Storage> = Effect
  .flatMap(Storage, (s) => s.flow.controls(s.flow.home))
