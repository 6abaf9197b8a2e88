/**
 * The Injector (low-latency mode): serves the Gearman function `inject_jobs`. Any Gearman client,
 * in any language, submits JSON `{"funcname","arg","uniqkey"?,"run_after"?,"priority"?}` (or an array of
 * them); the jobs are stored (flag `controller`) in one multi-row insert, then submitted at once
 * to `run_queued_job` for a Controller to run. The caller is answered only after the rows are
 * committed, with `{"dbid","jobid"}` per job (`"duplicate": true` for a unique job already
 * stored, which is not run again).
 *
 * An immediate job is stored leased (run_after = now + lease), so a QueueRunner does not run it
 * a second time while the Controller does. A delayed job, or one whose function is over the
 * queue watermark, paused, or over its rate limit (docs/flow-control.md), is stored with its time
 * (or due) and left to the QueueRunner. A concurrency-limited function's jobs are stored due, then
 * claimed within its limit and dispatched at once; the rest wait for the QueueRunner.
 */
import { Clock, Duration, Effect, Either, Option, ParseResult, Ref, Schema } from "effect"
import type { Scope, Layer } from "effect"
import { Gearman } from "../gearman/Gearman.js"
import { WorkException } from "../gearman/errors.js"
import { formatHandle, JOB_PRIORITIES, nowSeconds, resolveRunAt, Traceparent } from "../Job.js"
import type { InsertOutcome, StoredJob, NewJob } from "../Job.js"
import { newLeaseToken } from "../storage/leases.js"
import { DEFAULT_CLAIM_BYTES, Storage } from "../storage/Storage.js"
import { DEFAULT_MAX_FRAME } from "../protocol/gearman.js"
import * as FlowControl from "./flowControl.js"
import * as HeldLeases from "./heldLeases.js"
import { park, splitDeliverable } from "./park.js"
import { injectorTag, injectRoundTrip, injectTag, inputsRejected, jobsDispatched, timed } from "./metrics.js"
import * as Defaults from "./defaults.js"
import { endDispatchSpans, submission } from "./dispatch.js"
import { formatTraceparent } from "../tracing/traceparent.js"
import * as Tracing from "../tracing/Tracing.js"
import { errorText, queueTotals } from "./QueueRunner.js"
import { clip } from "../text.js"
import { roleLayer, serving } from "./supervise.js"
import type { Supervision } from "./supervise.js"

export const INJECT_FUNCTION = "inject_jobs"

export interface InjectorOptions {
  /** How long an injected job is leased to its Controller (default 30 s, as the QueueRunner's; held while it runs). */
  readonly lease?: Duration.DurationInput | undefined
  /** Over this many queued jobs for a function, jobs are stored due for the QueueRunner (default 4000; 0 disables). */
  readonly queueWatermarkDepth?: number | undefined
  /** How often gearmand's queue depths are read, at most (default 2 s). */
  readonly queueCheckInterval?: Duration.DurationInput | undefined
  /** Injects handled at once (default 32, over one connection per job server: their rows share commits). */
  readonly concurrency?: number | undefined
  /** The largest packet the job servers and workers accept (default 64 MiB): larger jobs are parked, not sent. */
  readonly maxPacket?: number | undefined
  /** Jobs one inject_jobs request may carry (default 10,000); a larger request is rejected whole. */
  readonly maxRequestJobs?: number | undefined
  /** Bytes one inject_jobs request may have (default 32 MiB, under the 64 MiB packet limit); a larger request is rejected unread. */
  readonly maxRequestBytes?: number | undefined
}

/**
 * A rejection (logged and sent back) says at most this many characters: formatted decode errors
 * quote the input, which may be megabytes. Each line is cut to REJECTION_LINE_MAX_CHARS first so
 * one huge quoted value does not hide the lines after it.
 */
export const REJECTION_MAX_CHARS = 1000
export const REJECTION_LINE_MAX_CHARS = 200

/** A rejection message within the bounds above. */
export const boundRejection = (message: string): string =>
  clip(message.split("\n").map((line) => clip(line, REJECTION_LINE_MAX_CHARS)).join("\n"), REJECTION_MAX_CHARS)

export const DEFAULT_MAX_REQUEST_JOBS = Defaults.injector.maxRequestJobs
export const DEFAULT_MAX_REQUEST_BYTES = Defaults.injector.maxRequestBytes
/** Jobs planned between yields to the event loop, so a large request does not hold it. */
const PLAN_SLICE = 1000

/** `run_after` values below this are offsets in seconds (the original's meaning), above it unix times. */
export const RELATIVE_RUN_AFTER_LIMIT = 1_000_000_000

const RunAfterInput = Schema.Union(Schema.Number, Schema.String)

/** One job as a client sends it. `unique` is the original Injector's name for `uniqkey`. */
const InjectSpec = Schema.Struct({
  funcname: Schema.String,
  arg: Schema.optionalWith(Schema.String, { nullable: true }),
  uniqkey: Schema.optionalWith(Schema.String, { nullable: true }),
  unique: Schema.optionalWith(Schema.String, { nullable: true }),
  coalesce: Schema.optionalWith(Schema.String, { nullable: true }),
  run_after: Schema.optionalWith(RunAfterInput, { nullable: true }),
  /** `high`, `normal` (default) or `low`: anything else is rejected with the request. */
  priority: Schema.optionalWith(Schema.Literal(...JOB_PRIORITIES), { nullable: true }),
  /** The caller's W3C trace context (any language): the job's spans continue its trace. */
  traceparent: Schema.optionalWith(Traceparent, { nullable: true })
})
type InjectSpec = typeof InjectSpec.Type

const InjectRequest = Schema.parseJson(Schema.Union(InjectSpec, Schema.Array(InjectSpec)))
const decodeRequest = Schema.decodeUnknownEither(InjectRequest)

/** The request's absolute run time, or undefined for "now". */
const runAfterOf = (spec: InjectSpec, now: number): Either.Either<number | undefined, string> => {
  const input = spec.run_after
  if (input === undefined) return Either.right(undefined)
  const relative = typeof input === "number" ? input : /^\d+$/.test(input) ? Number(input) : undefined
  const resolved = relative !== undefined && relative < RELATIVE_RUN_AFTER_LIMIT
    ? resolveRunAt(`+${relative}`, now)
    : resolveRunAt(input, now)
  return Either.mapLeft(resolved, (e) => e.message)
}

/** Builds the `inject_jobs` handler: answers with the stored handles, or fails with a clear message. */
export const makeHandler = (options: InjectorOptions = {}, holder?: HeldLeases.HeldLeases) =>
  Effect.gen(function*() {
    const storage = yield* Storage
    const gearman = yield* Gearman
    const leaseSeconds = Math.ceil(Duration.toMillis(Duration.decode(options.lease ?? Defaults.injector.lease)) / 1000)
    const watermark = options.queueWatermarkDepth ?? Defaults.injector.queueWatermarkDepth
    const maxPacket = options.maxPacket ?? DEFAULT_MAX_FRAME
    const maxRequestJobs = options.maxRequestJobs ?? DEFAULT_MAX_REQUEST_JOBS
    const maxRequestBytes = options.maxRequestBytes ?? DEFAULT_MAX_REQUEST_BYTES
    const checkEvery = Duration.toMillis(
      Duration.decode(options.queueCheckInterval ?? Defaults.injector.queueCheckInterval)
    )
    const controls = FlowControl.makeCache(storage)
    const traced = yield* Tracing.isEnabled
    const depthCache = yield* Ref.make<{ readonly at: number; readonly depths: ReadonlyMap<string, number> }>({
      at: Number.NEGATIVE_INFINITY,
      depths: new Map()
    })

    /** Queue depth per function, read from gearmand at most every `queueCheckInterval`. */
    const depths = Effect.gen(function*() {
      if (watermark === 0) return new Map<string, number>()
      const now = yield* Clock.currentTimeMillis
      const cached = yield* Ref.get(depthCache)
      if (now - cached.at < checkEvery) return cached.depths
      const fresh = yield* gearman.queueDepths().pipe(
        Effect.map(queueTotals),
        Effect.catchAll((e) => Effect.as(Effect.logWarning(`queue depths unavailable: ${errorText(e)}`), cached.depths))
      )
      yield* Ref.set(depthCache, { at: now, depths: fresh })
      return fresh
    })

    const reject = (message: string) => {
      inputsRejected.unsafeUpdate(1, injectTag)
      const bounded = boundRejection(message)
      return Effect.zipRight(
        Effect.logWarning(`rejected: ${bounded}`),
        Effect.fail(new WorkException({ data: bounded }))
      )
    }

    const handle = (payload: Uint8Array): Effect.Effect<string, WorkException> =>
      timed(
        injectRoundTrip,
        Effect.gen(function*() {
          if (payload.byteLength > maxRequestBytes) {
            return yield* reject(
              `inject_jobs: request of ${payload.byteLength} bytes is over the limit of ${maxRequestBytes}; send fewer jobs per request`
            )
          }
          const decoded = decodeRequest(Buffer.from(payload).toString("utf8"))
          if (Either.isLeft(decoded)) {
            return yield* reject(
              `inject_jobs: malformed request: ${ParseResult.TreeFormatter.formatErrorSync(decoded.left)}`
            )
          }
          const many = Array.isArray(decoded.right)
          const specs: ReadonlyArray<InjectSpec> = Array.isArray(decoded.right) ? decoded.right : [decoded.right]
          if (specs.length === 0) return yield* reject("inject_jobs: empty array")
          if (specs.length > maxRequestJobs) {
            return yield* reject(
              `inject_jobs: ${specs.length} jobs in one request is over the limit of ${maxRequestJobs}; send fewer jobs per request`
            )
          }
          const now = yield* nowSeconds
          // One token for the jobs of this request dispatched at once: stored with them, so the
          // Controller's outcome applies only while their lease holds (docs/job-life.md).
          const token = yield* newLeaseToken
          const queued = new Map(yield* depths)
          // Paused functions' jobs are stored due, not dispatched (the home shard's controls, read at
          // most once a second); rate-limited ones are dispatched as far as their tokens go.
          const view = yield* controls.forShard(storage.flow.home)
          // Traced: a job sent without a trace continues the request's span (garivini.inject).
          const requestTrace = traced
            ? Option.getOrUndefined(Option.map(yield* Effect.option(Effect.currentSpan), formatTraceparent))
            : undefined
          const plans: Array<{ job: NewJob; dispatch: boolean; readonly due: number }> = []
          for (const [i, spec] of specs.entries()) {
            if (i > 0 && i % PLAN_SLICE === 0) yield* Effect.yieldNow()
            const at = runAfterOf(spec, now)
            if (Either.isLeft(at)) return yield* reject(`inject_jobs: job #${i}: run_after: ${at.left}`)
            const depth = queued.get(spec.funcname) ?? 0
            const overWatermark = watermark > 0 && depth > watermark
            const delayed = at.right !== undefined && at.right > now
            const dispatch = !delayed && !overWatermark && !view.paused.has(spec.funcname)
            if (dispatch) queued.set(spec.funcname, depth + 1)
            plans.push({
              dispatch,
              due: at.right ?? now,
              job: {
                funcname: spec.funcname,
                arg: spec.arg,
                uniqkey: spec.uniqkey ?? spec.unique,
                priority: spec.priority,
                coalesce: spec.coalesce,
                // Dispatched now: leased to the Controller. Otherwise the QueueRunner's, when due.
                runAfter: dispatch ? now + leaseSeconds : at.right ?? now,
                flag: "controller",
                ...(dispatch ? { lease: token } : {}),
                ...(spec.traceparent !== undefined
                  ? { traceparent: spec.traceparent }
                  : requestTrace === undefined
                  ? {}
                  : { traceparent: requestTrace })
              }
            })
          }
          if (view.limited.length > 0) yield* rateLimit(plans, view)
          const outcomes = yield* storage.insert(plans.map((p) => p.job)).pipe(
            Effect.catchAll((e) => {
              if (e._tag === "InvalidJob") return reject(`inject_jobs: ${e.message}`)
              if (e._tag !== "PartialInsert") return reject(`inject_jobs: not stored: ${e.message}`)
              // Part of a batch over several shards was stored: no Controller will get those jobs,
              // so they are made due for the QueueRunner; the caller learns which ones are stored.
              const leased = e.outcomes.flatMap((o, i) =>
                o !== undefined && !o.duplicate && plans[i]!.dispatch ? [o.handle] : []
              )
              const stored = e.outcomes.flatMap((o, i) => o === undefined ? [] : [`#${i}=${formatHandle(o.handle)}`])
              return storage.defer(leased, now).pipe(
                Effect.catchAll((d) =>
                  Effect.logWarning(`${leased.length} stored job(s) run after their lease: ${d.message}`)
                ),
                Effect.zipRight(reject(`inject_jobs: partly stored (${stored.join(", ")}): ${e.message}`))
              )
            })
          )
          const toDispatch: Array<StoredJob> = []
          outcomes.forEach((outcome, i) => {
            const plan = plans[i]!
            if (!outcome.duplicate && plan.dispatch) toDispatch.push(storedJob(outcome, plan.job))
          })
          if (view.limited.some((l) => l.concurrency !== null)) {
            toDispatch.push(...yield* capped(plans, outcomes, view, now, queued))
          }
          if (toDispatch.length > 0) yield* dispatch(toDispatch, now)
          const replies = outcomes.map((o) => ({
            dbid: o.handle.dbid,
            jobid: o.handle.jobid,
            ...(o.duplicate ? { duplicate: true } : {})
          }))
          return JSON.stringify(many ? replies : replies[0])
        })
      )
    // Decided once: untraced, a request takes no tracing step.
    const handler = traced
      ? (payload: Uint8Array) => Effect.withSpan(handle(payload), "garivini.inject", { kind: "server", root: true })
      : handle
    return handler

    /**
     * Over a function's rate limit, the jobs beyond its tokens are stored due for the QueueRunner
     * instead. A concurrency-limited function's jobs are all stored due: they are claimed after the
     * insert (`capped`), within the limit.
     */
    function rateLimit(
      plans: Array<{ job: NewJob; dispatch: boolean; readonly due: number }>,
      view: FlowControl.ControlView
    ) {
      return Effect.forEach(view.limited, ({ concurrency, funcname, rate }) =>
        Effect.gen(function*() {
          const mine = plans.filter((p) => p.dispatch && p.job.funcname === funcname)
          if (mine.length === 0) return
          const granted = concurrency !== null || rate === null
            ? 0
            : yield* FlowControl.takeTokens(storage, funcname, rate, mine.length)
          for (const plan of mine.slice(granted)) {
            plan.dispatch = false
            const { lease: _lease, ...unleased } = plan.job
            plan.job = { ...unleased, runAfter: plan.due }
          }
        }), { discard: true })
    }

    /**
     * The concurrency-limited functions' due jobs on the shards this request stored them on,
     * claimed within their limits (oldest first: older jobs of the function go before these);
     * what is over the limit stays due for the QueueRunner.
     */
    function capped(
      plans: ReadonlyArray<{ readonly job: NewJob; readonly due: number }>,
      outcomes: ReadonlyArray<InsertOutcome>,
      view: FlowControl.ControlView,
      now: number,
      queued: ReadonlyMap<string, number>
    ) {
      const wanted: Array<{ readonly fn: FlowControl.Limited; readonly dbid: number; readonly n: number }> = []
      for (const fn of view.limited) {
        // Over the watermark, the QueueRunner sends them once the queue drains.
        if (fn.concurrency === null || (watermark > 0 && (queued.get(fn.funcname) ?? 0) > watermark)) continue
        const perShard = new Map<number, number>()
        outcomes.forEach((o, i) => {
          const plan = plans[i]!
          if (!o.duplicate && plan.job.funcname === fn.funcname && plan.due <= now) {
            perShard.set(o.handle.dbid, (perShard.get(o.handle.dbid) ?? 0) + 1)
          }
        })
        for (const [dbid, n] of perShard) wanted.push({ fn, dbid, n })
      }
      return Effect.map(
        Effect.forEach(wanted, ({ dbid, fn, n }) =>
          FlowControl.claimLimited(storage, dbid, fn, n, Duration.seconds(leaseSeconds), DEFAULT_CLAIM_BYTES)),
        (claimed) =>
          claimed.flat()
      )
    }

    /** Submits stored jobs (traced: each in a dispatch span whose context their worker JSON carries). */
    function dispatch(all: ReadonlyArray<StoredJob>, now: number) {
      return traced
        ? Effect.flatMap(Tracing.jobSpans("garivini.dispatch", all), (spans) =>
          submit(spans.jobs, now, spans))
        : submit(all, now, undefined)
    }

    /** Submits stored jobs to the Controller in one batch; those not taken are made due for the QueueRunner. */
    function submit(all: ReadonlyArray<StoredJob>, now: number, spans: Tracing.JobSpans<StoredJob> | undefined) {
      // Flagged `controller`: each goes to run_queued_job with the unique the QueueRunner would
      // give it, so its copy merges into ours if the lease runs out while gearmand still holds
      // this one (no Controller up). One that can never be delivered is parked, not sent.
      const { parked, send: jobs, submissions } = splitDeliverable(all, submission, maxPacket)
      // Nothing to park (the usual case): no extra Effect steps on this per-inject path.
      const leases = [now + leaseSeconds]
      const submitted = holder === undefined
        ? gearman.submitBackgroundAll(submissions)
        : Effect.suspend(() => {
          const connections = holder.connections()
          return Effect.tap(gearman.submitBackgroundAll(submissions), (results) =>
            holder.handed(
              results.flatMap((r, i) => Either.isRight(r) ? [{ job: jobs[i]!, leases, handle: r.right }] : []),
              connections
            ))
        })
      return (parked.length === 0
        ? submitted
        : park(parked).pipe(Effect.provideService(Storage, storage), Effect.zipRight(submitted))).pipe(
          Effect.tap((results) => spans === undefined ? Effect.void : endDispatchSpans(spans, jobs, parked, results)),
          Effect.flatMap((results) => {
            let sent = 0
            for (const r of results)
              if (Either.isRight(r))
                sent++
            jobsDispatched.unsafeUpdate(sent, injectorTag)
            return Effect.forEach(results, (result, i) => {
              if (Either.isRight(result))
                return Effect.void
              const job = jobs[i]!
              return Effect.zipRight(
                Effect.logWarning(
                  `job ${formatHandle(job)} stored but not dispatched; the QueueRunner will run it: ${
                    errorText(result.left)
                  }`
                ),
                storage.defer([job], now).pipe(
                  Effect.catchAll((d) =>
                    Effect.logWarning(`job ${formatHandle(job)} runs after its lease: ${d.message}`)
                  )
                )
              )
            }, { discard: true })
          })
        )
    }
  })

/** The stored row of a job just inserted, as the Controller receives it. */
const storedJob = (outcome: InsertOutcome, job: NewJob): StoredJob => ({
  dbid: outcome.handle.dbid,
  jobid: outcome.handle.jobid,
  funcname: job.funcname,
  arg: typeof job.arg === "string" ? Buffer.from(job.arg, "utf8") : job.arg ?? new Uint8Array(0),
  uniqkey: job.uniqkey ?? null,
  coalesce: job.coalesce ?? null,
  runAfter: job.runAfter,
  flag: "controller",
  failcount: 0,
  // To gearmand with its priority (run_queued_job's queue is ordered by it too).
  ...(job.priority === "high" || job.priority === "low" ? { priority: job.priority } : {}),
  ...(job.lease === undefined ? {} : { lease: job.lease }),
  ...(job.traceparent === undefined ? {} : { traceparent: job.traceparent })
})

/** Serves `inject_jobs` until the scope closes. */
export const serve = (options: InjectorOptions = {}): Effect.Effect<void, never, Scope.Scope | Storage | Gearman> =>
  Effect.gen(function*() {
    const leaseSeconds = Math.ceil(Duration.toMillis(Duration.decode(options.lease ?? Defaults.injector.lease)) / 1000)
    const holder = yield* HeldLeases.make({ leaseSeconds, tags: injectorTag })
    const handle = yield* makeHandler(options, holder)
    const gearman = yield* Gearman
    yield* gearman.serve({ [INJECT_FUNCTION]: (job) => handle(job.payload) }, {
      concurrency: options.concurrency ?? Defaults.injector.concurrency
    }).pipe(
      Effect.orDie // a constant, valid name
    )
  }).pipe(Effect.annotateLogs({ role: "Injector" }))

/** An Injector as a Layer: served, supervised (supervise.ts), for the life of the layer. */
export const layer = (options: InjectorOptions = {}): Layer.Layer<never, never, Storage | Gearman | Supervision> =>
  roleLayer("Injector", serving(serve(options)))
