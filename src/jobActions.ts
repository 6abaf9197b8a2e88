/**
 * Repairs an operator makes to one stored job — retry, cancel, delete — with the rule that refuses them
 * while the job may be in a worker's hands. Shared by `garivini jobs retry|delete` and the web
 * console; `JOB_ACTIONS` is the table both list: a new action (cancel, say) is one entry there.
 */
import { Duration, Effect, Option } from "effect"
import { formatHandle, jobState, nowSeconds } from "./Job.js"
import type { JobRecord, StoredJob, StoredJobId } from "./Job.js"
import type { JobLifeMissing, ShardOperationError } from "./errors.js"
import { DEFAULT_LEASE } from "./roles/QueueRunner.js"
import { Storage } from "./storage/Storage.js"

/**
 * Whether a job may be in a worker's hands right now. A lease our dispatchers wrote says so
 * exactly (`leased_until = run_after`, migration 2: states dispatched and running), however long
 * the runners' lease is. A Perl QueueRunner's claim writes `run_after` alone, so without that
 * mark a job due within a lease from now may be running too. (A job backing off after a failure,
 * or scheduled that soon, looks the same: those take `force`.)
 */
export const mayBeDispatched = (job: Parameters<typeof jobState>[0], now: number, leaseSeconds: number): boolean =>
  job.runAfter > now && (leasedByUs(job, now) || job.runAfter <= now + leaseSeconds)

/** Our dispatchers' lease mark, as `jobState` reads it: dispatched, or running (heartbeats). */
const leasedByUs = (job: Parameters<typeof jobState>[0], now: number): boolean => {
  const state = jobState(job, now)
  return state === "dispatched" || state === "running"
}

/** What an action did to one job. */
export type ActionOutcome =
  | { readonly _tag: "Done"; readonly handle: StoredJobId; readonly message: string }
  /** Nothing to do (a retry of a job already due). */
  | { readonly _tag: "Unchanged"; readonly handle: StoredJobId; readonly message: string }
  | { readonly _tag: "NotFound"; readonly handle: StoredJobId; readonly message: string }
  /** Refused: the job may be running right now (see `mayBeDispatched`); `force` overrides (the message says how). */
  | { readonly _tag: "Refused"; readonly handle: StoredJobId; readonly message: string }

export interface ActionOptions {
  /** The runners' lease (default the QueueRunner's). */
  readonly lease?: Duration.DurationInput | undefined
  /** Act even on a job that may be running. */
  readonly force?: boolean | undefined
}

export interface JobAction {
  /** The name in URLs, forms, logs and commands. */
  readonly name: string
  /** The button's text. */
  readonly label: string
  /** Whether it destroys data (asked for with more care, styled as danger). */
  readonly destructive: boolean
  /** What the confirmation says, for `count` jobs. */
  readonly confirm: (count: number) => string
  readonly run: (handle: StoredJobId, options?: ActionOptions) => Effect.Effect<
    ActionOutcome,
    ShardOperationError | JobLifeMissing,
    Storage
  >
}

const leaseSecondsOf = (lease: Duration.DurationInput | undefined) =>
  Math.ceil(Duration.toSeconds(Duration.decode(lease ?? DEFAULT_LEASE)))

const dispatchedReason = (job: JobRecord, now: number, leaseSeconds: number, what: string) =>
  leasedByUs(job, now)
    ? `job ${formatHandle(job)} is dispatched: leased for ${job.runAfter - now} s more; ${what}`
    : `job ${formatHandle(job)} may be running right now: its run_after is in ${
      job.runAfter - now
    } s, within a lease (${leaseSeconds} s) of now, as a dispatched job's is (a job backing off after a failure looks the same); ` +
      what

type Act = (job: StoredJob, now: number) => Effect.Effect<ActionOutcome, ShardOperationError | JobLifeMissing, Storage>

/**
 * Runs `act` on the job behind `handle`, unless it is gone or (without force) may be running.
 * `stopsRunning`: the action reaches a job whose worker heartbeats it (state `running`), so such
 * a job is not refused (cancel: its handler is interrupted at the next heartbeat).
 */
const guarded = (handle: StoredJobId, options: ActionOptions, what: string, act: Act, stopsRunning = false) =>
  Effect.flatMap(
    Storage,
    (storage) =>
      Effect.flatMap(storage.get(handle), (found) => guardedRead(handle, found, options, what, act, stopsRunning))
  )

/** `guarded`, over the job as the caller already read it. */
const guardedRead = (
  handle: StoredJobId,
  found: Option.Option<JobRecord>,
  options: ActionOptions,
  what: string,
  act: Act,
  stopsRunning = false
) =>
  Effect.gen(function*() {
    const notFound: ActionOutcome = { _tag: "NotFound", handle, message: `no job ${formatHandle(handle)}` }
    if (Option.isNone(found)) return notFound
    const now = yield* nowSeconds
    const leaseSeconds = leaseSecondsOf(options.lease)
    const reached = stopsRunning && jobState(found.value, now) === "running"
    if (options.force !== true && !reached && mayBeDispatched(found.value, now, leaseSeconds)) {
      const refused: ActionOutcome = {
        _tag: "Refused",
        handle,
        message: dispatchedReason(found.value, now, leaseSeconds, what)
      }
      return refused
    }
    return yield* act(found.value, now)
  })

/** Makes a job due now. */
export const retryJob = (handle: StoredJobId, options: ActionOptions = {}) =>
  Effect.gen(function*() {
    const storage = yield* Storage
    const found = yield* storage.get(handle)
    if (Option.isSome(found) && found.value.ended === "dead") {
      // Due now with failcount 0 (a fresh set of attempts); its last error stays for history.
      const n = yield* storage.retryDead(handle)
      const outcome: ActionOutcome = n === 0
        ? { _tag: "NotFound", handle, message: `no dead job ${formatHandle(handle)}` }
        : { _tag: "Done", handle, message: `job ${formatHandle(handle)} is due (was dead; failcount reset to 0)` }
      return outcome
    }
    // Already due: writing run_after again could undo the lease of a dispatcher claiming it now.
    if (Option.isSome(found) && found.value.runAfter <= (yield* nowSeconds)) {
      const unchanged: ActionOutcome = {
        _tag: "Unchanged",
        handle,
        message: `job ${formatHandle(handle)} is already due`
      }
      return unchanged
    }
    // The read above is the guard's: no second one.
    return yield* guardedRead(handle, found, options, "retrying it now could run it twice", (_job, now) =>
      Effect.map(storage.defer([handle], now), (n): ActionOutcome =>
        n === 0
          ? { _tag: "NotFound", handle, message: `no job ${formatHandle(handle)}` }
          : { _tag: "Done", handle, message: `job ${formatHandle(handle)} is due` }))
  })

/** Deletes a job (deleting a running one would not stop it, hence the guard). */
export const deleteJob = (handle: StoredJobId, options: ActionOptions = {}) =>
  Effect.flatMap(
    Storage,
    (storage) =>
      guarded(handle, options, "deleting it would not stop it", () =>
        Effect.map(storage.remove([handle]), (n): ActionOutcome =>
          n === 0
            ? { _tag: "NotFound", handle, message: `no job ${formatHandle(handle)}` }
            : { _tag: "Done", handle, message: `job ${formatHandle(handle)} deleted` }))
  )

/**
 * Cancels a job that has not ended: kept as `cancelled`, never claimed again. A running job (its
 * worker heartbeats it: worker helper, Controller) is accepted: its handler is interrupted at the
 * next heartbeat. One that may be in a job server or a worker without heartbeats (dispatched, or
 * a Perl worker's) cannot be stopped: hence the guard.
 */
export const cancelJob = (handle: StoredJobId, options: ActionOptions = {}) =>
  Effect.flatMap(
    Storage,
    (storage) =>
      guarded(
        handle,
        options,
        "cancelling it cannot stop it: it may still run once (it may already be in a job server or a worker " +
          "that does not heartbeat), and its row will be kept as cancelled",
        () =>
          Effect.map(storage.cancel(handle), (outcome): ActionOutcome => {
            const id = formatHandle(handle)
            switch (outcome) {
              case "cancelled":
                return { _tag: "Done", handle, message: `job ${id} cancelled` }
              case "missing":
                return { _tag: "NotFound", handle, message: `no job ${id}` }
              case "dead":
                return { _tag: "Unchanged", handle, message: `job ${id} is dead already (not cancelled)` }
              case "already-cancelled":
                return { _tag: "Unchanged", handle, message: `job ${id} is cancelled already` }
            }
          }),
        true
      )
  )

/** Every action on stored jobs, in the order they are offered. */
export const JOB_ACTIONS: ReadonlyArray<JobAction> = [
  {
    name: "retry",
    label: "Retry",
    destructive: false,
    confirm: (n) => `Make ${n} job(s) due now?`,
    run: retryJob
  },
  {
    name: "cancel",
    label: "Cancel",
    destructive: false,
    confirm: (n) =>
      `Cancel ${n} job(s)? They will not run (a running one is interrupted at its next heartbeat; one already in a worker without heartbeats may still finish) and stay listed as cancelled until purged.`,
    run: cancelJob
  },
  {
    name: "delete",
    label: "Delete",
    destructive: true,
    confirm: (n) => `Delete ${n} job(s)? This cannot be undone.`,
    run: deleteJob
  }
]

export const jobActionNamed = (name: string): Option.Option<JobAction> =>
  Option.fromNullable(JOB_ACTIONS.find((a) => a.name === name))
