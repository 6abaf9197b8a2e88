/**
 * Parking: a stored job that can never be delivered (sending it would only fail again, every
 * lease, and may cut a connection other jobs share) gets `run_after = never` — the value
 * `reschedule(job, "never")` uses, so no schema change and Perl tools see the usual state — with
 * an ERROR log line naming the handle and the reason, and a metric. `garivini jobs retry` (or
 * `retryNever`) makes such a job due again once the cause is fixed.
 *
 * A new reason is one entry of `checks`. The Controller parks through `park` too (a row whose
 * function it must never call).
 */
import { Effect, Metric } from "effect"
import type { BackgroundSubmission } from "../gearman/GearmanClient.js"
import { formatHandle, funcnameProblem, NEVER, quoteBounded, uniqkeyProblem } from "../Job.js"
import type { StoredJob } from "../Job.js"
import { Storage } from "../storage/Storage.js"
import { jobsParked } from "./metrics.js"

export type ParkReason = "packet-too-large" | "unusable-funcname" | "unusable-uniqkey"

export interface Undeliverable {
  readonly reason: ParkReason
  readonly detail: string
}

/** Bytes of a packet besides its payload: header, NULs, and a job handle (64 at most in gearmand). */
const PACKET_OVERHEAD = 12 + 3 + 64

const byteLength = (payload: string | Uint8Array) =>
  typeof payload === "string" ? Buffer.byteLength(payload, "utf8") : payload.byteLength

/** The bytes of the packet that carries a submission to a worker (JOB_ASSIGN_UNIQ, the largest). */
export const packetBytes = (s: BackgroundSubmission): number => {
  const unique = s.options?.unique
  return PACKET_OVERHEAD + Buffer.byteLength(s.fn, "utf8") +
    (unique === undefined ? 0 : Buffer.byteLength(unique, "utf8")) + byteLength(s.payload)
}

/** A reserved or malformed function name (the Controller checks this one before every call too). */
export const unusableFuncname = (job: StoredJob): Undeliverable | undefined => {
  const problem = funcnameProblem(job.funcname)
  return problem === undefined ? undefined : { reason: "unusable-funcname", detail: problem }
}

type Check = (job: StoredJob, s: BackgroundSubmission, maxPacket: number) => Undeliverable | undefined

const checks: ReadonlyArray<Check> = [
  // Rows written by other clients (Perl's checks nothing): a reserved name would make the
  // Controller call itself, whitespace or control characters forge admin lines, a NUL in the
  // unique splits the packet. Our own inserts refuse all of these.
  (job) => unusableFuncname(job),
  (job) => {
    const problem = job.uniqkey === null ? undefined : uniqkeyProblem(job.uniqkey)
    return problem === undefined ? undefined : { reason: "unusable-uniqkey", detail: problem }
  },
  // A string's UTF-8 is at most 3 bytes per UTF-16 unit: most payloads fit without counting.
  (_job, s, maxPacket) => {
    if (typeof s.payload === "string" && s.payload.length * 3 + 2 * 1024 <= maxPacket) return undefined
    const bytes = packetBytes(s)
    return bytes <= maxPacket ? undefined : {
      reason: "packet-too-large",
      detail:
        `its packet would be ${bytes} bytes, over the job server packet limit of ${maxPacket} (the connection would be cut)`
    }
  }
]

/** Why a job's submission can never be delivered, if it cannot. */
export const undeliverable = (
  job: StoredJob,
  s: BackgroundSubmission,
  maxPacket: number
): Undeliverable | undefined => {
  for (const check of checks) {
    const found = check(job, s, maxPacket)
    if (found !== undefined) return found
  }
  return undefined
}

/**
 * Splits jobs into those to send (with their submissions, built by `toSubmission`) and those
 * that can never be delivered.
 */
export const splitDeliverable = (
  jobs: ReadonlyArray<StoredJob>,
  toSubmission: (job: StoredJob) => BackgroundSubmission,
  maxPacket: number
) => {
  const send: Array<StoredJob> = []
  const submissions: Array<BackgroundSubmission> = []
  const parked: Array<{ readonly job: StoredJob; readonly why: Undeliverable }> = []
  for (const job of jobs) {
    const sub = toSubmission(job)
    const why = undeliverable(job, sub, maxPacket)
    if (why === undefined) {
      send.push(job)
      submissions.push(sub)
    } else parked.push({ job, why })
  }
  return { send, submissions, parked }
}

/**
 * Parks jobs, their reason stored as their last error (`jobs show`); if that fails they stay
 * leased and are checked again after the lease.
 */
export const park = (parked: ReadonlyArray<{ readonly job: StoredJob; readonly why: Undeliverable }>) =>
  Effect.gen(function*() {
    if (parked.length === 0) return
    const storage = yield* Storage
    for (const { job, why } of parked) {
      yield* Effect.logError(`job parked (run_after = never): ${why.detail}`).pipe(
        // The name is suspect here: escaped and cut, so it cannot forge or flood log lines.
        Effect.annotateLogs({ job: formatHandle(job), funcname: quoteBounded(job.funcname), reason: why.reason })
      )
      yield* Metric.increment(Metric.tagged(jobsParked, "reason", why.reason))
    }
    // One statement per job (each has its own reason, stored as its last error): parking is rare.
    yield* Effect.forEach(
      parked,
      ({ job, why }) =>
        storage.defer([job], NEVER, `parked (${why.reason}): ${why.detail}`).pipe(
          Effect.catchAll((e) =>
            Effect.logWarning(`parking job ${formatHandle(job)} failed; it stays leased: ${e.message}`)
          )
        ),
      { discard: true }
    )
  })
