/**
 * The worker helper: write a Garivini worker as `Worker.serve({ resize: (job) => Effect... })`.
 *
 * It decodes the worker JSON (a malformed payload is logged and failed, never crashed on), runs
 * the handler, and for `shim` jobs owns the row: completes it on success, backs it off with
 * `failedJob` on a failure, reschedules it when the handler asks (`retryAt`, `retryNever`). For
 * `controller` jobs it only reports the outcome: the Controller owns the row (a retry request
 * travels to it as a WORK_EXCEPTION carrying the `RetryRequest` JSON).
 *
 * Completions are batched: while one `DELETE ... IN (...)` runs, the next completions queue up
 * and go in the following statement (one per shard), so completing is not a round trip per job.
 */
import { Cause, Data, Effect, Either, FiberRef, HashMap, Layer, MetricLabel, Schema } from "effect"
import type { Scope, Duration } from "effect"
import { Gearman } from "../gearman/Gearman.js"
import type { Payload } from "../gearman/GearmanClient.js"
import { GearmanInvalidArgument, WorkException, WorkFail } from "../gearman/errors.js"
import { functionNameProblem } from "../protocol/gearman.js"
import type * as GearmanWorker from "../gearman/GearmanWorker.js"
import {
  bytesView,
  decodeWorkerJson,
  formatHandle,
  LenientInt,
  MAX_RUN_AFTER,
  nowSeconds,
  resolveRunAt
} from "../Job.js"
import { clip } from "../text.js"
import type { StoredJob, StoredJobId, RunAt } from "../Job.js"
import type { InvalidJob } from "../errors.js"
import * as GroupCommit from "../storage/GroupCommit.js"
import { Storage } from "../storage/Storage.js"
import type { StorageShape } from "../storage/Storage.js"
import * as Client from "./Client.js"
import * as Heartbeat from "./heartbeat.js"
import { inputsRejected, runTime, workerJsonTag } from "./metrics.js"
import { roleLayer, serving } from "./supervise.js"
import * as Tracing from "../tracing/Tracing.js"
import type { Supervision } from "./supervise.js"

/** A handler's failure: the job is backed off (`failedJob`: 2, 4, 8 … minutes, at most a day). */
export class JobFailed extends Data.TaggedError("JobFailed")<{ readonly reason: string }> {
  override get message(): string {
    return `job failed: ${this.reason}`
  }
}

/** A handler's request to run the job again at `when` (`"never"` parks it for inspection). */
export class RetryAt extends Data.TaggedError("RetryAt")<{ readonly when: RunAt }> {
  override get message(): string {
    return `retry the job at ${String(this.when)}`
  }
}

/**
 * A `controller` job's retry request, as its worker sends it to the Controller in a
 * WORK_EXCEPTION: the absolute time to run it again (2147483647 for "never").
 */
export const RetryRequest = Schema.parseJson(Schema.Struct({
  garivini: Schema.Literal("retry"),
  run_after: Schema.Int.pipe(Schema.between(0, MAX_RUN_AFTER))
}))
const encodeRetryRequest = Schema.encodeSync(RetryRequest)
/** The retry request in a WORK_EXCEPTION's data, if that is what it holds. */
export const decodeRetryRequest = (data: Uint8Array) =>
  Schema.decodeUnknownOption(RetryRequest)(bytesView(data).toString("utf8"))

export const fail = (reason: string) => Effect.fail(new JobFailed({ reason }))
export const retryAt = (when: RunAt) => Effect.fail(new RetryAt({ when }))
export const retryNever = retryAt("never")

/** What a handler receives: the stored job, its arg as text, and the Gearman job (for data/status). */
export interface WorkerJob extends StoredJob {
  /** `arg` read as UTF-8. */
  readonly text: string
  readonly gearman: GearmanWorker.GearmanJob
}

export type JobHandler<R = never> = (job: WorkerJob) => Effect.Effect<Payload | void, JobFailed | RetryAt, R>

export interface DurableWorkerOptions extends GearmanWorker.ServeOptions, Heartbeat.HeartbeatOptions {
  /** Wait this long to gather completions into one statement (default 0: whatever queued meanwhile). */
  readonly completionWindow?: Duration.DurationInput | undefined
  /**
   * Attempts a job gets before it is dead (kept, not run again: `garivini jobs dead`), for every
   * function served here (default 25: about 19 days of backoff).
   */
  readonly maxAttempts?: number | undefined
  /** Per function, overriding `maxAttempts`. */
  readonly maxAttemptsByFunction?: Readonly<Record<string, number>> | undefined
}

/** A maxAttempts must be a whole number of attempts, at least one. */
export const maxAttemptsProblem = (n: number): string | undefined =>
  Number.isSafeInteger(n) && n >= 1 ? undefined : `maxAttempts ${n} is not an integer of at least 1`

/** Completions that may wait for their DELETE at once; beyond this, completing waits (backpressure). */
const COMPLETION_QUEUE = 10_000

/**
 * Deletes completed jobs in batches (GroupCommit: while one DELETE runs, the next completions
 * queue up and go in the following statement, one per shard). A caller does not wait for its
 * row to go: for a background job that adds no safety (a DELETE that fails leaves the row,
 * which runs again after its lease), and it would cap a worker at (jobs in flight / DELETE
 * latency). When the scope closes, what is queued is deleted before it ends.
 */
export const makeCompleter = (storage: StorageShape, window: Duration.DurationInput = 0) =>
  Effect.map(
    GroupCommit.make<StoredJobId>({
      run: (batch) =>
        storage.complete(batch).pipe(
          Effect.catchAll((e) =>
            Effect.logError(
              `deleting ${batch.length} completed job(s) failed; they run again after their lease: ${e.message}`
            )
          )
        ),
      maxBatch: COMPLETION_QUEUE,
      maxWaiting: COMPLETION_QUEUE,
      window
    }),
    (batcher) => (handle: StoredJobId): Effect.Effect<void> => batcher.offer(handle)
  )

// The worker JSON of a Gearman job, decoded once: the Gearman worker calls `storedJobKey` when a
// job is assigned and runs the handler in a fiber it starts then, so the handler takes the decoded
// job left here. What no handler took by the next turn of the event loop (a job joined to a run
// in progress) is dropped then, payload and all. A WeakMap cost the GC more than the decoding.
const decodedJobs = new Map<GearmanWorker.GearmanJob, Either.Either<StoredJob, InvalidJob>>()
const sweep = () => decodedJobs.clear()
const decodeOnce = (gjob: GearmanWorker.GearmanJob): Either.Either<StoredJob, InvalidJob> => {
  const decoded = decodedJobs.get(gjob)
  if (decoded !== undefined) {
    decodedJobs.delete(gjob)
    return decoded
  }
  return decodeWorkerJson(gjob.payload)
}
const decodeAhead = (gjob: GearmanWorker.GearmanJob): Either.Either<StoredJob, InvalidJob> => {
  const decoded = decodeWorkerJson(gjob.payload)
  if (decodedJobs.size === 0) setImmediate(sweep)
  decodedJobs.set(gjob, decoded)
  return decoded
}

/**
 * A stored job's identity (dbid:jobid) as the Gearman worker's `workKey`: a stored job dispatched
 * twice (two handles, or two servers) while it runs here joins the run in progress, so its row
 * is settled once and its handler runs once in this process.
 */
export const storedJobKey = (gjob: GearmanWorker.GearmanJob): string | undefined => {
  const decoded = decodeAhead(gjob)
  return Either.isRight(decoded) ? formatHandle(decoded.right) : undefined
}

/**
 * The log annotations of a job's run (role, function) joined to those its fiber already has:
 * the join is made once per distinct set it is joined to, not once per job (annotateLogs per job,
 * a few HashMap insertions each, was a third of this path's CPU: docs/performance.md).
 */
const runAnnotations = (funcname: string) => {
  const own = HashMap.make<[readonly [string, unknown], readonly [string, unknown]]>(
    ["role", "Worker"],
    ["funcname", funcname]
  )
  let parent: HashMap.HashMap<string, unknown> | undefined
  let joined = own
  return (current: HashMap.HashMap<string, unknown>): HashMap.HashMap<string, unknown> => {
    if (current !== parent) {
      parent = current
      joined = HashMap.union(current, own)
    }
    return joined
  }
}

/**
 * A Gearman handler running a worker-helper handler: decodes the worker JSON and settles the row
 * (the Driver wraps it into its own process bookkeeping). The success path is a handful of
 * Effect steps: it runs once per job on every worker.
 */
export const gearmanHandler = <R>(
  storage: StorageShape,
  complete: (handle: StoredJobId) => Effect.Effect<void>,
  funcname: string,
  handler: JobHandler<R>,
  maxAttempts?: number,
  heartbeats?: Heartbeat.Heartbeats,
  traced = false
): GearmanWorker.Handler<R> => {
  const runTimeTags = [MetricLabel.make("funcname", funcname)]
  // Set in the job's own fiber, not restored: the Gearman worker runs each job in a fiber of its
  // own, which ends with it (Effect.locallyWith's restore cost as much as the rest of the path).
  const annotated = FiberRef.update(FiberRef.currentLogAnnotations, runAnnotations(funcname))
  const annotate = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.zipRight(annotated, effect)
  return (gjob) => {
    const decoded = decodeOnce(gjob)
    if (Either.isLeft(decoded)) {
      const rejected = decoded.left
      inputsRejected.unsafeUpdate(1, workerJsonTag)
      return Effect.logError(`rejected: ${rejected.message}`).pipe(
        Effect.zipRight(recordRejection(storage, gjob.payload, rejected.message, maxAttempts)),
        Effect.zipRight(Effect.fail(new WorkFail({ reason: rejected.message, cause: rejected }))),
        Effect.annotateLogs("gearmanHandle", gjob.handle),
        annotate
      )
    }
    const job = decoded.right
    const owned = job.flag === "shim"
    let started = 0
    const ran = () => runTime.unsafeUpdate((performance.now() - started) / 1000, runTimeTags)
    const handled = Effect.suspend(() => {
      started = performance.now()
      return handler({ ...job, text: bytesView(job.arg).toString("utf8"), gearman: gjob })
    })
    // Held (heartbeats) while it runs, whoever owns the row: a cancel interrupts it here.
    const run = heartbeats === undefined ? handled : heartbeats.hold(job, handled)
    const settled = run.pipe(
      Effect.matchCauseEffect({
        onSuccess: (value) => {
          ran()
          return owned ? Effect.as(complete(job), value) : Effect.succeed(value)
        },
        onFailure: (cause) => {
          ran()
          return Effect.annotateLogs(
            settleFailure(storage, job, owned, cause, maxAttempts),
            "gearmanHandle",
            gjob.handle
          )
        }
      })
    )
    // Traced: the run (and its completion) in a span continuing the dispatch's trace.
    return (traced ? Effect.withSpan(settled, "garivini.run", Tracing.continuing(job, "consumer")) : settled).pipe(
      annotate
    )
  }
}

/**
 * A handler that failed or died: back the job off, or reschedule it as the handler asked. (One
 * cancelled while it ran never gets here: its fiber is interrupted, see heartbeat.ts.)
 */
const settleFailure = (
  storage: StorageShape,
  job: StoredJob,
  owned: boolean,
  cause: Cause.Cause<JobFailed | RetryAt>,
  maxAttempts: number | undefined
) =>
  Effect.gen(function*() {
    const id = formatHandle(job)
    const failure = Cause.failureOption(cause)
    const reason = failure._tag === "Some"
      ? failure.value._tag === "JobFailed" ? failure.value.reason : `retry at ${String(failure.value.when)}`
      : Cause.pretty(cause)
    if (failure._tag === "None") yield* Effect.logError(`job ${id}: handler died: ${reason}`)
    if (owned) {
      const settle = failure._tag === "Some" && failure.value._tag === "RetryAt"
        ? Effect.asVoid(Client.rescheduleJob(job, failure.value.when))
        : Effect.flatMap(Client.failedJob(job, { error: reason, maxAttempts }), (r) =>
          r.dead
            ? Effect.logWarning(`job ${id} is dead after ${r.failcount} attempt(s): ${clip(reason, 200)}`)
            : Effect.void)
      yield* settle.pipe(
        Effect.provideService(Storage, storage),
        Effect.catchAll((e) =>
          Effect.logError(`job ${id}: could not record the outcome (it runs again after its lease): ${e.message}`)
        )
      )
    } else if (failure._tag === "Some" && failure.value._tag === "RetryAt") {
      // The Controller owns the row: tell it when, resolved here (a Duration has no JSON form).
      const at = resolveRunAt(failure.value.when, yield* nowSeconds)
      if (Either.isRight(at))
        return yield* Effect.fail(
          new WorkException({ data: encodeRetryRequest({ garivini: "retry", run_after: at.right }) })
        )
      yield* Effect.logError(`job ${id}: ${at.left.message}; reported as a failure`)
    }
    return yield* Effect.fail(new WorkFail({ reason, cause: Cause.squash(cause) }))
  })

/** The ids and failcount of a worker JSON that does not decode as a whole, if it has them. */
const RejectedIds = Schema.parseJson(Schema.Struct({
  jobid: LenientInt,
  dbid: LenientInt,
  failcount: Schema.optionalWith(LenientInt, { default: () => 0 }),
  flag: Schema.optional(Schema.Unknown),
  // A token in any form fences the record by it: a forged or mangled lease changes nothing.
  lease: Schema.optional(Schema.String)
}))
const decodeRejectedIds = Schema.decodeUnknownOption(RejectedIds)

/**
 * A payload that names its row but does not decode (a bad arg, a bad key written by another
 * client): the failure is recorded on that row with the decoder's reason, so it shows in `jobs
 * show` and ends dead instead of being dispatched every lease forever. A `controller` job's
 * row is the Controller's; a payload without ids names no row.
 */
const recordRejection = (
  storage: StorageShape,
  payload: Uint8Array,
  reason: string,
  maxAttempts: number | undefined
): Effect.Effect<void> => {
  const ids = decodeRejectedIds(bytesView(payload).toString("utf8"))
  if (ids._tag === "None" || ids.value.flag === "controller" || ids.value.dbid < 1 || ids.value.jobid < 1)
    return Effect.void
  const job = ids.value
  return Client.failedJob(job, { error: reason, maxAttempts }).pipe(
    Effect.provideService(Storage, storage),
    Effect.asVoid,
    Effect.catchAll((e) => Effect.logError(`job ${formatHandle(job)}: could not record the rejection: ${e.message}`))
  )
}

/** Serves Garivini jobs until the scope closes (in-flight jobs finish first). */
export const serve = <R>(
  handlers: Readonly<Record<string, JobHandler<R>>>,
  options: DurableWorkerOptions = {}
): Effect.Effect<void, GearmanInvalidArgument, Scope.Scope | R | Storage | Gearman> =>
  Effect.gen(function*() {
    const storage = yield* Storage
    const gearman = yield* Gearman
    // Made before `serve`, so they are closed after the worker has drained its in-flight jobs.
    const complete = yield* makeCompleter(storage, options.completionWindow)
    const heartbeats = yield* Heartbeat.make(storage, options)
    const traced = yield* Tracing.isEnabled

    const gearmanHandlers: Record<string, GearmanWorker.FunctionSpec<R>> = {}
    for (const [funcname, handler] of Object.entries(handlers))
      gearmanHandlers[funcname] = {
        handler: gearmanHandler(
          storage,
          complete,
          funcname,
          handler,
          options.maxAttemptsByFunction?.[funcname] ?? options.maxAttempts,
          heartbeats,
          traced
        ),
        workKey: storedJobKey
      }
    yield* gearman.serve(gearmanHandlers, options)
  })

/**
 * Workers as a Layer: function names are checked when the layer is built; the functions are
 * served, supervised (supervise.ts), for the life of the layer.
 */
export const layer = <R>(
  handlers: Readonly<Record<string, JobHandler<R>>>,
  options: DurableWorkerOptions = {}
): Layer.Layer<never, GearmanInvalidArgument, R | Storage | Gearman | Supervision> =>
  Layer.unwrapEffect(Effect.suspend(() => {
    for (const name of Object.keys(handlers)) {
      const problem = functionNameProblem(name)
      if (problem !== undefined) {
        return Effect.fail(new GearmanInvalidArgument({ message: `cannot serve it: ${problem}` }))
      }
    }
    for (const n of [options.maxAttempts, ...Object.values(options.maxAttemptsByFunction ?? {})]) {
      const problem = n === undefined ? undefined : maxAttemptsProblem(n)
      if (problem !== undefined) return Effect.fail(new GearmanInvalidArgument({ message: problem }))
    }
    return Effect.succeed(roleLayer("Worker", serving(serve(handlers, options))))
  }))
