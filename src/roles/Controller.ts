/**
 * The Controller (low-latency mode): serves `run_queued_job`. For each job it calls the real
 * function in the foreground with the worker JSON it received (the same bytes) and the job's
 * handle as Gearman unique (dispatch.ts), waits for the outcome, and then owns the row: WORK_COMPLETE deletes it (batched, as in the worker helper);
 * a worker's retry request (`Worker.retryAt` / `retryNever`, a WORK_EXCEPTION holding a
 * `RetryRequest`) reschedules it to that time; WORK_FAIL, any other WORK_EXCEPTION, a timeout
 * or a job server's error back it off with `failedJob`, storing the last error (dead once its
 * `maxAttempts` are used up). A connection lost while the job ran
 * leaves the row leased (its worker may still finish it). A row whose function can never be
 * called (a reserved name such as `run_queued_job` itself, or one with whitespace or control
 * characters, written by another client) is not called: it is parked (run_after "never").
 * While the real function runs, the Controller heartbeats the row (heartbeat.ts): its lease
 * moves forward, and a cancel stops the wait (the row stays cancelled). Its outcomes carry the
 * job's lease token: a job leased again meanwhile is left as it is (fenced).
 */
import { Duration, Effect, Either, Option } from "effect"
import type { Scope, Layer } from "effect"
import { Gearman } from "../gearman/Gearman.js"
import { WorkFail } from "../gearman/errors.js"
import { bytesView, decodeWorkerJson, formatHandle } from "../Job.js"
import type { StoredJob } from "../Job.js"
import { Storage } from "../storage/Storage.js"
import * as Client from "./Client.js"
import * as Defaults from "./defaults.js"
import { park, unusableFuncname } from "./park.js"
import { callUnique, CONTROLLER_FUNCTION } from "./dispatch.js"
import { errorText } from "./QueueRunner.js"
import { roleLayer, serving } from "./supervise.js"
import type { Supervision } from "./supervise.js"
import * as Heartbeat from "./heartbeat.js"
import * as Tracing from "../tracing/Tracing.js"
import { decodeRetryRequest, makeCompleter } from "./Worker.js"

export interface ControllerOptions extends Heartbeat.HeartbeatOptions {
  /** Jobs run at once by this Controller (default 64: they share one connection per job server). */
  readonly concurrency?: number | undefined
  /**
   * How long to wait for the real function (default 900 s). Not bound by the lease: the
   * Controller's heartbeats keep the row leased while it waits.
   */
  readonly timeout?: Duration.DurationInput | undefined
  /**
   * Attempts a `controller` job gets before it is dead (default 25); a failure, WORK_EXCEPTION or
   * timeout is one attempt.
   */
  readonly maxAttempts?: number | undefined
}

/** How long the Controller waits for a job unless configured: under the default lease. */
export const DEFAULT_TIMEOUT = Defaults.controller.timeout

/** Serves `run_queued_job` until the scope closes (in-flight jobs finish first). */
export const serve = (options: ControllerOptions = {}): Effect.Effect<void, never, Scope.Scope | Storage | Gearman> =>
  Effect.gen(function*() {
    const storage = yield* Storage
    const gearman = yield* Gearman
    const timeout = Duration.decode(options.timeout ?? DEFAULT_TIMEOUT)
    const complete = yield* makeCompleter(storage)
    const heartbeats = yield* Heartbeat.make(storage, options)

    /** Moves the row to `runAfter`, keeping its failcount; a failure leaves it to its lease. */
    const reschedule = (job: StoredJob, runAfter: number) =>
      storage.reschedule(job, runAfter, job.failcount).pipe(
        Effect.asVoid,
        Effect.catchAll((e) =>
          Effect.logError(
            `job ${formatHandle(job)}: could not reschedule it (it runs again after its lease): ${e.message}`
          )
        )
      )

    const traced = yield* Tracing.isEnabled
    const runQueuedJob = (payload: Uint8Array) =>
      Effect.suspend(() => {
        const decoded = decodeWorkerJson(payload)
        if (Either.isLeft(decoded)) {
          return Effect.zipRight(
            Effect.logError(`rejected: ${decoded.left.message}`),
            Effect.fail(new WorkFail({ reason: decoded.left.message, cause: decoded.left }))
          )
        }
        const job = decoded.right
        // Traced: the run in a span continuing the dispatch's trace. (The payload goes on as it
        // came: the real function's worker continues the dispatch span too.)
        return traced
          ? Effect.withSpan(runJob(job, payload), "garivini.run", Tracing.continuing(job, "consumer"))
          : runJob(job, payload)
      })

    const runJob = (job: StoredJob, payload: Uint8Array) =>
      Effect.gen(function*() {
        const id = formatHandle(job)
        const unusable = unusableFuncname(job)
        if (unusable !== undefined) {
          // Calling it could call this very function (every slot waiting on a nested call) or
          // send a name the job server misreads: parked for inspection instead.
          yield* park([{ job, why: unusable }]).pipe(Effect.provideService(Storage, storage))
          return yield* Effect.fail(new WorkFail({ reason: unusable.detail }))
        }
        // The handle as unique: two Controllers given the same job (gearmand re-queued the
        // run_queued_job of one whose connection dropped, or a Perl dispatcher sent a copy
        // without a unique) share one run of it, and each completes the row with its outcome.
        const unique = callUnique(job)
        // Held (heartbeats) while the real function runs: a worker that never heartbeats (a Perl
        // one, a plain Gearman function) keeps the job leased through us.
        // A cancel interrupts this job's fiber: we stop waiting, the row stays cancelled.
        const outcome = yield* heartbeats.hold(
          job,
          Effect.either(gearman.submit(job.funcname, payload, unique === undefined ? { timeout } : { timeout, unique }))
        )
        if (Either.isRight(outcome)) {
          yield* complete(job)
          return
        }
        const retry = outcome.left._tag === "GearmanJobException"
          ? decodeRetryRequest(outcome.left.data)
          : Option.none()
        if (Option.isSome(retry)) {
          yield* Effect.logInfo(`job ${id} (${job.funcname}) rescheduled by its worker to ${retry.value.run_after}`)
          return yield* reschedule(job, retry.value.run_after)
        }
        const reason = errorText(outcome.left)
        if (outcome.left._tag === "GearmanConnectionError") {
          // The job may already be with a worker, which may still finish it: recording a failure
          // now would run it again at once. The row stays leased; it runs again only if nobody
          // completes it before the lease ends.
          yield* Effect.logWarning(
            `job ${id} (${job.funcname}): connection lost while it ran; it stays leased: ${reason}`
          )
          return yield* Effect.fail(new WorkFail({ reason, cause: outcome.left }))
        }
        // The exception's own text is stored whole (bounded), not the message's short quote of it.
        const error = outcome.left._tag === "GearmanJobException"
          ? `WORK_EXCEPTION: ${bytesView(outcome.left.data).toString("utf8")}`
          : reason
        const dead = yield* Client.failedJob(job, { error, maxAttempts: options.maxAttempts }).pipe(
          Effect.provideService(Storage, storage),
          Effect.map((r) => r.dead),
          Effect.catchAll((e) =>
            Effect.as(
              Effect.logError(`job ${id}: could not record the failure (it runs again after its lease): ${e.message}`),
              false
            )
          )
        )
        yield* Effect.logWarning(
          dead
            ? `job ${id} (${job.funcname}) failed and is dead (attempts used up): ${reason}`
            : `job ${id} (${job.funcname}) failed, backing off: ${reason}`
        )
        return yield* Effect.fail(new WorkFail({ reason, cause: outcome.left }))
      })

    yield* gearman.serve(
      { [CONTROLLER_FUNCTION]: (job) => runQueuedJob(job.payload) },
      { concurrency: options.concurrency ?? Defaults.controller.concurrency }
    ).pipe(Effect.orDie) // a constant, valid name
  }).pipe(Effect.annotateLogs({ role: "Controller" }))

/** A Controller as a Layer: served, supervised (supervise.ts), for the life of the layer. */
export const layer = (options: ControllerOptions = {}): Layer.Layer<never, never, Storage | Gearman | Supervision> =>
  roleLayer("Controller", serving(serve(options)))
