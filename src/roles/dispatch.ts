/**
 * How a stored job is handed to a job server: the function it goes to and its Gearman unique.
 * Every dispatcher (the QueueRunner, the Injector) builds its submission here, so a re-dispatch
 * of a job gearmand still holds (queued, or running on a slow worker or Controller) carries the
 * same function and unique as the first copy: gearmand merges the two, and the client routes
 * both to the same job server (Gearman::Client's CRC rule), so one run follows.
 *
 * The unique of a job:
 * - with a `uniqkey`, the key (the original's behaviour; `sha1:<hex>` when over gearmand's 64
 *   bytes, or when it would pass for a handle's unique below); a `controller` job's is always
 *   `sha1:<hex>` of its function and key, since all of them share `run_queued_job`;
 * - without one, its stored handle: `garivini:<dbid>:<jobid>` (at most 41 bytes).
 *
 * The Controller calls the real function with the handle's unique only: a foreground caller
 * merged into a run completes its own row with that run's outcome, so the unique must name
 * exactly one row (a key does not, across shards written by Perl clients).
 */
import { createHash } from "node:crypto"
import { Either } from "effect"
import type { Effect } from "effect"
import type { BackgroundSubmission } from "../gearman/GearmanClient.js"
import { encodeWorkerJson, uniqueIdentity } from "../Job.js"
import type { StoredJob, StoredJobId } from "../Job.js"
import type * as Tracing from "../tracing/Tracing.js"

/** The Gearman function that the Controller serves. */
export const CONTROLLER_FUNCTION = "run_queued_job"

/** gearmand refuses unique ids over 64 bytes. */
const MAX_GEARMAN_UNIQUE = 64

/** What every handle's unique starts with; a uniqkey that does too is sent hashed, so the two never meet. */
export const HANDLE_UNIQUE_PREFIX = "garivini:"

const sha1Unique = (text: string): string => `sha1:${createHash("sha1").update(text, "utf8").digest("hex")}`

/** The Gearman unique naming one stored job: `garivini:<dbid>:<jobid>`. */
export const handleUnique = (handle: StoredJobId): string => `${HANDLE_UNIQUE_PREFIX}${handle.dbid}:${handle.jobid}`

/**
 * The Gearman unique of a uniqkey: the key itself (as the original sends it), hashed when longer
 * than gearmand accepts or when it starts like a handle's unique.
 */
export const gearmanUnique = (uniqkey: string): string =>
  Buffer.byteLength(uniqkey, "utf8") <= MAX_GEARMAN_UNIQUE && !uniqkey.startsWith(HANDLE_UNIQUE_PREFIX)
    ? uniqkey
    : sha1Unique(uniqkey)

/**
 * The Gearman unique of a `controller` job with a key: all of them go to one function,
 * `run_queued_job`, where gearmand merges equal uniques, so it names the function and the key
 * together (equal keys of different functions are different jobs).
 */
export const controllerUnique = (funcname: string, uniqkey: string): string =>
  sha1Unique(uniqueIdentity(funcname, uniqkey))

/** Where a job is submitted: its own function, or the Controller's. */
export const targetFunction = (job: StoredJob): string => job.flag === "controller" ? CONTROLLER_FUNCTION : job.funcname

/**
 * The unique a job is dispatched with. An empty key (rows written by other clients) is no key:
 * the unique index lets only one such row exist per function, but the handle names it as well.
 */
export const dispatchUnique = (job: StoredJob): string =>
  job.uniqkey === null || job.uniqkey === ""
    ? handleUnique(job)
    : job.flag === "controller"
    ? controllerUnique(job.funcname, job.uniqkey)
    : gearmanUnique(job.uniqkey)

/**
 * The unique of the Controller's call of the real function: the handle's, or none for a job
 * without a real handle (the Perl Injector sends jobid 0 for a duplicate: such calls must not
 * merge into one another).
 */
export const callUnique = (job: StoredJobId): string | undefined =>
  job.dbid >= 1 && job.jobid >= 1 ? handleUnique(job) : undefined

/** A stored job as a background submission: its target, the worker JSON, its unique. */
export const submission = (job: StoredJob): BackgroundSubmission => ({
  fn: targetFunction(job),
  payload: encodeWorkerJson(job),
  // The stored priority as gearmand's (SUBMIT_JOB_HIGH_BG / _BG / _LOW_BG): it orders its queue too.
  options: job.priority === undefined
    ? { unique: dispatchUnique(job) }
    : { unique: dispatchUnique(job), priority: job.priority }
})

/**
 * Ends the dispatch spans of a batch (tracing on): a job whose submit failed, or that was parked
 * as undeliverable, ends its span failed with the reason.
 */
export const endDispatchSpans = (
  spans: Tracing.JobSpans<StoredJob>,
  send: ReadonlyArray<StoredJob>,
  parked: ReadonlyArray<{ readonly job: StoredJob; readonly why: unknown }>,
  results: ReadonlyArray<Either.Either<unknown, unknown>>
): Effect.Effect<void> => {
  // The jobs of `send` and `parked` are the spans' own objects (splitDeliverable keeps them).
  const failed = new Map<StoredJob, unknown>()
  results.forEach((r, i) => {
    if (Either.isLeft(r)) failed.set(send[i]!, r.left)
  })
  for (const p of parked) failed.set(p.job, p.why)
  return spans.end((i) => failed.get(spans.jobs[i]!))
}
