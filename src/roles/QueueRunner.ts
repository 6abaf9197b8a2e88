/**
 * The QueueRunner (throughput mode): each round, for every shard, claim a batch of due jobs
 * (leasing them), defer those whose function is over the queue watermark, and submit the rest
 * to gearmand as background jobs — `shim` jobs to their own function, `controller` jobs to
 * `run_queued_job` — with the worker JSON as payload and a Gearman unique naming the job (its
 * `uniqkey`, else its handle: dispatch.ts), so a job dispatched again while gearmand still holds
 * it merges into the first copy.
 *
 * Flow control (docs/flow-control.md): paused functions are left out of the claims, rate-limited
 * ones claimed apart as far as their tokens go, and the recurring schedules' loop runs beside the
 * shard loops.
 *
 * A job is never lost: a submit that fails leaves it leased in the database, and it is
 * claimed again when the lease ends. Delivery is at least once; exactly once when nothing fails.
 */
import { Clock, Data, Duration, Effect, Either, Fiber, Layer, Ref, Schedule } from "effect"
import { Gearman } from "../gearman/Gearman.js"
import type { FunctionStatus } from "../protocol/admin.js"
import { formatHandle, nowSeconds } from "../Job.js"
import type { StoredJob } from "../Job.js"
import type { ShardOperationError } from "../errors.js"
import { DEFAULT_MAX_FRAME } from "../protocol/gearman.js"
import { MAX_CLAIM, Storage } from "../storage/Storage.js"
import * as Defaults from "./defaults.js"
import { claimRoundTime, jobsDispatched, queueRunnerTag, timed } from "./metrics.js"
import { endDispatchSpans, submission } from "./dispatch.js"
import { park, splitDeliverable } from "./park.js"
import * as FlowControl from "./flowControl.js"
import * as HeldLeases from "./heldLeases.js"
import * as Scheduler from "./Scheduler.js"
import { roleLayer } from "./supervise.js"
import * as Tracing from "../tracing/Tracing.js"
import type { Supervision } from "./supervise.js"

export {
  CONTROLLER_FUNCTION,
  controllerUnique,
  dispatchUnique,
  gearmanUnique,
  handleUnique,
  submission,
  targetFunction
} from "./dispatch.js"
export const MIN_BATCH_SIZE = 50
/** After a round that dispatched jobs (but not a full batch), the next round starts this soon. */
const BUSY_ROUND_MS = 50
/** Functions over the watermark left out of one claim, at most (each is a statement parameter). */
const MAX_EXCLUDED = 1000
/** How long a dispatched job is leased unless configured (the Injector's default too). */
export const DEFAULT_LEASE = Defaults.queueRunner.lease

export interface QueueRunnerOptions {
  /** Largest batch claimed per shard and round (default 1000, 50 to 100,000). */
  readonly batchMaxSize?: number | undefined
  /** A round starts at most this often (default 1 s); a round that found a full batch loops at once. */
  readonly batchRunSleep?: Duration.DurationInput | undefined
  /**
   * Jobs of a function with more than this many queued in gearmand stay in the database: the
   * runner does not claim them until the queue is back under it (default 4000; 0 disables).
   */
  readonly queueWatermarkDepth?: number | undefined
  /**
   * How long a dispatched job is leased (default 30 s): extended while this runner's job server
   * connection holds it and while a worker heartbeats it; a job nobody holds runs again after it.
   */
  readonly lease?: Duration.DurationInput | undefined
  /**
   * How long a job claimed in a round that took its function over the watermark waits before it
   * can be claimed again (default 0: at once — the next rounds skip its function while it is over).
   * The original deferred every such job 60 s, which left workers idle once the queue drained.
   */
  readonly deferFor?: Duration.DurationInput | undefined
  /**
   * The largest packet the job servers and workers accept (default 64 MiB, the embedded server's
   * and this library's worker limit): a job whose packet would be larger is parked, not sent.
   */
  readonly maxPacket?: number | undefined
  /**
   * Bytes of args one claim takes, at most (default 64 MiB; a job larger than that still goes,
   * alone). In `run`, the batch whose submits are in flight counts against it too.
   */
  readonly batchMaxBytes?: number | undefined
  /**
   * A shard whose claims fail is tried again after a delay that doubles from `batchRunSleep`
   * up to this (default 2 s; never less than `batchRunSleep`), jittered, so that once it is back
   * its due jobs go out within about this long. Other shards keep their own pace meanwhile.
   */
  readonly shardRetryMax?: Duration.DurationInput | undefined
  /** The recurring schedules' loop (Scheduler.ts), run beside the shard loops; false: not in this runner. */
  readonly scheduler?: Scheduler.SchedulerOptions | false | undefined
}

export class InvalidQueueRunnerOptions extends Data.TaggedError("InvalidQueueRunnerOptions")<{
  readonly field: string
  readonly reason: string
}> {
  override get message(): string {
    return `invalid QueueRunner option ${this.field}: ${this.reason}`
  }
}

export interface ShardRound {
  readonly dbid: number
  /** The batch size this round used. */
  readonly limit: number
  readonly claimed: number
  readonly dispatched: number
  readonly deferred: number
  /** Submits that failed: those jobs stay leased and come back after the lease. */
  readonly failed: number
  /** Jobs that can never be delivered, parked (run_after = never) instead of sent. */
  readonly parked: number
  /** Why the shard was skipped or failed this round, if it was. */
  readonly error?: string
}

export interface RoundReport {
  readonly shards: ReadonlyArray<ShardRound>
  /** Some shard dispatched a whole batch: more may be due, so the next round starts at once. */
  readonly full: boolean
}

interface Settings {
  readonly batchMaxSize: number
  readonly batchRunSleepMs: number
  readonly queueWatermarkDepth: number
  readonly leaseSeconds: number
  readonly deferSeconds: number
  readonly maxPacket: number
  readonly batchMaxBytes: number
  readonly shardRetryMaxMs: number
}

const seconds = (d: Duration.DurationInput) => Math.ceil(Duration.toMillis(Duration.decode(d)) / 1000)

export const settings = (options: QueueRunnerOptions): Either.Either<Settings, InvalidQueueRunnerOptions> => {
  const bad = (field: string, reason: string) => Either.left(new InvalidQueueRunnerOptions({ field, reason }))
  const batchMaxSize = options.batchMaxSize ?? Defaults.queueRunner.batchMaxSize
  // Above what one claim may take, every claim would fail and the batch never shrink.
  if (!Number.isSafeInteger(batchMaxSize) || batchMaxSize < MIN_BATCH_SIZE || batchMaxSize > MAX_CLAIM) {
    return bad("batchMaxSize", `${batchMaxSize} is not an integer in [${MIN_BATCH_SIZE}, ${MAX_CLAIM}]`)
  }
  const queueWatermarkDepth = options.queueWatermarkDepth ?? Defaults.queueRunner.queueWatermarkDepth
  if (!Number.isSafeInteger(queueWatermarkDepth) || queueWatermarkDepth < 0) {
    return bad("queueWatermarkDepth", `${queueWatermarkDepth} is not a non-negative integer`)
  }
  const leaseSeconds = seconds(options.lease ?? DEFAULT_LEASE)
  if (leaseSeconds < 1) return bad("lease", "must be at least 1 second")
  const deferSeconds = seconds(options.deferFor ?? Defaults.queueRunner.deferFor)
  if (!(deferSeconds >= 0) || !Number.isFinite(deferSeconds))
    return bad("deferFor", "must be a non-negative, finite duration")
  const batchRunSleepMs = Duration.toMillis(
    Duration.decode(options.batchRunSleep ?? Defaults.queueRunner.batchRunSleep)
  )
  if (!(batchRunSleepMs > 0) || !Number.isFinite(batchRunSleepMs))
    return bad("batchRunSleep", "must be a positive, finite duration")
  const maxPacket = options.maxPacket ?? DEFAULT_MAX_FRAME
  if (!Number.isSafeInteger(maxPacket) || maxPacket < 1024)
    return bad("maxPacket", `${maxPacket} is not an integer of at least 1024`)
  const batchMaxBytes = options.batchMaxBytes ?? Defaults.queueRunner.batchMaxBytes
  if (!Number.isSafeInteger(batchMaxBytes) || batchMaxBytes < 1)
    return bad("batchMaxBytes", `${batchMaxBytes} is not a positive integer`)
  const shardRetryMaxMs = Duration.toMillis(
    Duration.decode(options.shardRetryMax ?? Defaults.queueRunner.shardRetryMax)
  )
  if (!(shardRetryMaxMs > 0) || !Number.isFinite(shardRetryMaxMs))
    return bad("shardRetryMax", "must be a positive, finite duration")
  return Either.right({
    batchMaxSize,
    batchRunSleepMs,
    queueWatermarkDepth,
    leaseSeconds,
    deferSeconds,
    maxPacket,
    batchMaxBytes,
    shardRetryMaxMs
  })
}

/**
 * When a shard's claims fail, the next one comes after `batchRunSleep × 2^n`, capped at `max`
 * (but not under `batchRunSleep`), each delay jittered down to half of it so that runners do
 * not knock in step — and never over the cap, which bounds how long a shard that came back
 * waits to be looked at.
 */
export const shardRetry = (batchRunSleep: Duration.DurationInput, max: Duration.DurationInput) =>
  Schedule.exponential(batchRunSleep).pipe(
    Schedule.union(Schedule.spaced(Duration.max(Duration.decode(max), Duration.decode(batchRunSleep)))),
    Schedule.jitteredWith({ min: 0.5, max: 1 })
  )

/** A shard's claim failed: the loop retries its step on `shardRetry`. Internal to `run`. */
class ClaimFailed extends Data.TaggedError("ClaimFailed")<{
  readonly dbid: number
  readonly cause: ShardOperationError
}> {}

/**
 * The adaptive batch: a round that dispatched a full batch grows it by 10 % of the maximum,
 * any other round shrinks it by 5 %, within [50, max] (the original's rule, in whole numbers:
 * its fractional LIMIT stalled the runner).
 */
export const nextLimit = (limit: number, dispatched: number, max: number): number =>
  Math.min(
    max,
    Math.max(
      MIN_BATCH_SIZE,
      dispatched >= limit ? limit + Math.max(1, Math.floor(max / 10)) : limit - Math.max(1, Math.floor(max / 20))
    )
  )

/** Jobs per function in gearmand (TOTAL: queued + running), from `queueDepths`. */
export const queueTotals = (statuses: ReadonlyMap<string, FunctionStatus>): ReadonlyMap<string, number> =>
  new Map([...statuses].map(([name, status]) => [name, status.total] as const))

/** A tagged error as one line; its fields when it renders no message (a guard: ours all do). */
export const errorText = (e: { readonly _tag: string; readonly message: string }): string =>
  e.message !== "" ? e.message : `${e._tag} ${JSON.stringify(e)}`

/**
 * Builds a runner: `round` runs one round over every shard (for tests and tools), `run` runs a
 * loop per shard until interrupted.
 */
export const make = (options: QueueRunnerOptions = {}) =>
  Effect.gen(function*() {
    const s = yield* settings(options)
    const storage = yield* Storage
    const gearman = yield* Gearman
    const limits = yield* Ref.make(new Map<number, number>())
    const controls = FlowControl.makeCache(storage)
    const traced = yield* Tracing.isEnabled

    /** Queue depth per function (TOTAL = queued + running, summed over servers). */
    const depths = s.queueWatermarkDepth === 0
      ? Effect.succeed(new Map<string, number>())
      : gearman.queueDepths().pipe(
        Effect.map(queueTotals),
        Effect.catchAll((e) =>
          Effect.as(
            Effect.logWarning(`queue depths unavailable, watermark not applied this round: ${errorText(e)}`),
            new Map<string, number>()
          )
        )
      )

    /** A claimed batch, split by the watermark; the overflow is already deferred. */
    interface Claimed {
      readonly dbid: number
      readonly limit: number
      readonly claimed: number
      readonly send: ReadonlyArray<StoredJob>
      readonly deferred: number
      /** Some function was over the watermark: workers are busy, not idle. */
      readonly throttled: boolean
      /** Jobs of `send` per function (what this batch adds to gearmand's queues). */
      readonly perFunction: ReadonlyMap<string, number>
      /** The run_after the claim wrote (two candidates when it ran across a second). */
      readonly leases: ReadonlyArray<number>
    }

    const claimPhase = (
      dbid: number,
      depth: ReadonlyMap<string, number>,
      maxBytes: number = s.batchMaxBytes
    ): Effect.Effect<Either.Either<Claimed, { readonly report: ShardRound; readonly cause: ShardOperationError }>> =>
      timed(
        claimRoundTime,
        Effect.gen(function*() {
          const limit = (yield* Ref.get(limits)).get(dbid) ?? MIN_BATCH_SIZE
          // Functions already over the watermark are not claimed at all (their jobs stay due).
          const overWatermark = s.queueWatermarkDepth === 0
            ? []
            : [...depth].filter(([, d]) => d > s.queueWatermarkDepth).map(([fn]) => fn).slice(0, MAX_EXCLUDED)
          // Paused and rate-limited functions are left out of the ordinary claim (read at most once a
          // second per shard); with none configured, this claim is the same as before flow control.
          const view = yield* controls.forShard(dbid)
          const exclude = view.excluded.length === 0
            ? overWatermark
            : [...new Set([...overWatermark, ...view.excluded])].slice(0, MAX_EXCLUDED)
          const before = yield* nowSeconds
          const claim = yield* Effect.either(
            storage.claimDue(dbid, limit, Duration.seconds(s.leaseSeconds), exclude, maxBytes).pipe(
              Effect.flatMap((jobs) =>
                view.limited.length === 0
                  ? Effect.succeed(jobs)
                  : claimLimited(dbid, jobs, view, overWatermark, limit, maxBytes)
              )
            )
          )
          if (Either.isLeft(claim)) {
            return Either.left({
              report: {
                dbid,
                limit,
                claimed: 0,
                dispatched: 0,
                deferred: 0,
                failed: 0,
                parked: 0,
                error: claim.left.message
              },
              cause: claim.left
            })
          }
          const jobs = claim.right
          const after = yield* nowSeconds
          const leases = after === before
            ? [before + s.leaseSeconds]
            : [before + s.leaseSeconds, after + s.leaseSeconds]
          // What this round sends counts too (controller jobs end up in their function's queue as
          // well), so one big batch cannot overshoot the watermark by a whole batch: the overflow
          // goes back to the database.
          const perFunction = new Map<string, number>()
          const over: Array<StoredJob> = []
          const send: Array<StoredJob> = []
          for (const job of jobs) {
            const sent = perFunction.get(job.funcname) ?? 0
            if (s.queueWatermarkDepth > 0 && (depth.get(job.funcname) ?? 0) + sent > s.queueWatermarkDepth)
              over.push(job)
            else {
              send.push(job)
              perFunction.set(job.funcname, sent + 1)
            }
          }
          if (over.length > 0) {
            const now = yield* nowSeconds
            yield* storage.defer(over, now + s.deferSeconds).pipe(
              // If even that fails they stay leased: they come back after the lease.
              Effect.catchAll((e) => Effect.logWarning(`deferring ${over.length} job(s) failed: ${e.message}`))
            )
          }
          return Either.right({
            dbid,
            limit,
            claimed: jobs.length,
            send,
            deferred: over.length,
            throttled: overWatermark.length > 0 || over.length > 0,
            perFunction,
            leases
          })
        })
      )

    /**
     * Each limited function's claim after the ordinary one (FlowControl.claimLimited: its tokens,
     * then its jobs within its concurrency limit). A failure costs that function this round only.
     */
    const claimLimited = (
      dbid: number,
      claimed: ReadonlyArray<StoredJob>,
      view: FlowControl.ControlView,
      overWatermark: ReadonlyArray<string>,
      limit: number,
      maxBytes: number
    ) =>
      Effect.gen(function*() {
        const jobs = [...claimed]
        let bytes = claimed.reduce((n, j) => n + j.arg.byteLength, 0)
        for (const fn of view.limited) {
          if (overWatermark.includes(fn.funcname) || bytes >= maxBytes) continue
          const mine = yield* FlowControl.claimLimited(
            storage,
            dbid,
            fn,
            Math.min(limit, MAX_CLAIM),
            Duration.seconds(s.leaseSeconds),
            Math.max(0, maxBytes - bytes)
          )
          for (const job of mine) {
            jobs.push(job)
            bytes += job.arg.byteLength
          }
        }
        return jobs
      })

    const submitPhase = (batch: Claimed): Effect.Effect<ShardRound> =>
      Effect.gen(function*() {
        const { dbid, limit } = batch
        // A job that can never be delivered is parked, not sent: sent, it would fail every lease
        // (and a packet over the limit cuts the connection other submits share).
        // Traced: a dispatch span per job, whose traceparent the worker JSON carries.
        const spans = traced ? yield* Tracing.jobSpans("garivini.dispatch", batch.send) : undefined
        const { parked, send, submissions } = splitDeliverable(spans?.jobs ?? batch.send, submission, s.maxPacket)
        if (parked.length > 0) yield* park(parked).pipe(Effect.provideService(Storage, storage))
        // The whole batch is pipelined on the connection: one Effect, no fiber per job.
        const connections = holder?.connections()
        const results = yield* gearman.submitBackgroundAll(submissions)
        if (spans !== undefined) yield* endDispatchSpans(spans, send, parked, results)
        if (holder !== undefined && connections !== undefined) {
          yield* holder.handed(
            results.flatMap((r, i) =>
              Either.isRight(r) ? [{ job: send[i]!, leases: batch.leases, handle: r.right }] : []
            ),
            connections
          )
        }
        let failed = 0
        for (const [i, r] of results.entries()) {
          if (Either.isLeft(r)) {
            failed++
            if (failed <= 3) {
              yield* Effect.logWarning(`submit failed, job stays leased until its lease ends: ${errorText(r.left)}`)
                .pipe(
                  Effect.annotateLogs({ job: formatHandle(send[i]!), funcname: send[i]!.funcname })
                )
            }
          }
        }
        const dispatched = send.length - failed
        jobsDispatched.unsafeUpdate(dispatched, queueRunnerTag)
        // Parked jobs count as handled for the batch size: a big job must not shrink the batch.
        yield* Ref.update(
          limits,
          (m) => new Map(m).set(dbid, nextLimit(limit, dispatched + parked.length, s.batchMaxSize))
        )
        return {
          dbid,
          limit,
          claimed: batch.claimed,
          dispatched,
          deferred: batch.deferred,
          failed,
          parked: parked.length
        }
      })

    /** While `run` runs: the leases of the jobs it handed to job servers, extended and released (heldLeases.ts). */
    let holder: HeldLeases.HeldLeases | undefined

    /** With no job server up there is nowhere to submit: don't lease jobs only to strand them. */
    const serversDown = yield* Ref.make(false)
    const noServer = Effect.gen(function*() {
      const down = gearman.upServers().length === 0
      // Logged when it changes, not every round of every shard.
      if (down !== (yield* Ref.getAndSet(serversDown, down))) {
        yield* down
          ? Effect.logWarning("no job server is up; not claiming until one is")
          : Effect.logInfo("a job server is up again")
      }
      return down
    })

    /** One shard's state from one step to the next (in a loop, or across `round`s). */
    interface Shard {
      readonly dbid: number
      /** Steps in a row whose claim failed (for the log line when it is back). */
      failures: number
      /** When this shard last dispatched a job (jobs still flowing if within batchRunSleep). */
      lastDispatch: number
      /** A full batch whose submits go out while the next batch is claimed. */
      inFlight: { readonly fiber: Fiber.Fiber<ShardRound>; readonly batch: Claimed } | undefined
      /**
       * Jobs claimed and not yet handed to a submit. Stopped (SIGTERM) in between, they are given
       * back due now, instead of waiting out their whole lease.
       */
      pending: ReadonlyArray<StoredJob>
    }

    /** What one step did, and when the next one starts. */
    interface Step {
      /** The step's report; for a full batch, once its submits (in flight) are done. */
      readonly report: Effect.Effect<ShardRound>
      /** The step sent a whole batch: more may be due, so the next step starts at once. */
      readonly full: boolean
      /** Milliseconds to wait before the next step. */
      readonly sleep: number
      /** The claim failed: the loop waits on `shardRetry` instead of `sleep`. */
      readonly claimFailed?: ShardOperationError
    }

    /**
     * The one rule for a full batch: what is left to send after the watermark's overflow fills
     * the batch size. A batch that was mostly deferred is not full: looping at once would only
     * claim and defer again.
     */
    const isFull = (batch: Claimed): boolean => batch.send.length >= batch.limit

    const newShard = (dbid: number): Shard => ({
      dbid,
      failures: 0,
      lastDispatch: Number.NEGATIVE_INFINITY,
      inFlight: undefined,
      pending: []
    })

    /** Waits for the batch in flight (its submit is uninterruptible); true when all of its submits went out. */
    const settle = (shard: Shard): Effect.Effect<boolean> =>
      Effect.suspend(() => {
        const inFlight = shard.inFlight
        if (inFlight === undefined) return Effect.succeed(true)
        // Cleared only once joined: interrupted while waiting, the release waits again.
        return Effect.map(Fiber.join(inFlight.fiber), (report) => {
          shard.inFlight = undefined
          return report.failed === 0
        })
      })

    const giveBack = (shard: Shard) =>
      Effect.suspend(() => {
        const jobs = shard.pending
        shard.pending = []
        if (jobs.length === 0) return Effect.void
        return Effect.flatMap(nowSeconds, (now) => storage.defer(jobs, now)).pipe(
          Effect.zipRight(Effect.logInfo(`stopping: ${jobs.length} claimed job(s) given back, due now`)),
          Effect.catchAll((e) =>
            Effect.logWarning(
              `giving back ${jobs.length} claimed job(s) failed; they run after their lease: ${e.message}`
            )
          )
        )
      })

    /** When a shard's steps stop: the batch in flight is waited for, claimed jobs are given back. */
    const release = (shard: Shard) => Effect.zipRight(Effect.ignore(settle(shard)), giveBack(shard))

    /** Hands the pending batch to `submit` in one step that cannot be interrupted halfway. */
    const handOver = <A>(shard: Shard, submit: Effect.Effect<A>) =>
      Effect.uninterruptible(Effect.suspend(() => {
        shard.pending = []
        return submit
      }))

    /**
     * One step of one shard: claim (counting the batch in flight against the watermark and the
     * byte budget), wait for the batch in flight, then send this batch — a full one in the
     * background (the next step claims while its submits go out), any other at once. The next
     * step comes at once after a full batch; 50 ms later while jobs flow (some went out within
     * the last batchRunSleep) or the watermark holds them back; else batchRunSleep after this
     * one started. A step whose claim failed says so (`claimFailed`): the loop retries it on
     * `shardRetry`; it is logged when the shard goes down and when it comes back. The loop and
     * `round` both run it.
     */
    const step = (shard: Shard): Effect.Effect<Step> =>
      Effect.gen(function*() {
        const { dbid } = shard
        const started = yield* Clock.currentTimeMillis
        const done = (report: ShardRound, wait: number) =>
          Effect.map(Clock.currentTimeMillis, (now): Step => ({
            report: Effect.succeed(report),
            full: false,
            sleep: Math.max(0, wait - (now - started))
          }))
        if (yield* noServer) {
          const limit = (yield* Ref.get(limits)).get(dbid) ?? MIN_BATCH_SIZE
          const idle = { dbid, limit, claimed: 0, dispatched: 0, deferred: 0, failed: 0, parked: 0 }
          return yield* done({ ...idle, error: "no job server is up" }, s.batchRunSleepMs)
        }
        // The batch in flight may not be in gearmand's counts yet: count it for the watermark.
        const depth = new Map(yield* depths)
        const inFlight = shard.inFlight
        if (inFlight !== undefined) {
          for (const [fn, n] of inFlight.batch.perFunction) depth.set(fn, (depth.get(fn) ?? 0) + n)
        }
        // The batch in flight holds its args until its submits are done: it counts against the budget.
        const inFlightBytes = inFlight === undefined ? 0 : inFlight.batch.send.reduce((n, j) => n + j.arg.byteLength, 0)
        const budget = Math.max(0, s.batchMaxBytes - inFlightBytes)
        // The claim and noting what it took are one step (the transaction is uninterruptible).
        const claimed = yield* Effect.uninterruptible(
          Effect.tap(claimPhase(dbid, depth, budget), (c) =>
            Effect.sync(() => {
              if (Either.isRight(c)) shard.pending = c.right.send
            }))
        )
        const previousOk = yield* settle(shard)
        if (Either.isLeft(claimed)) {
          shard.failures++
          if (shard.failures === 1) {
            yield* Effect.logWarning(
              `shard unavailable, retrying at least every ${
                Math.max(s.shardRetryMaxMs, s.batchRunSleepMs)
              } ms: ${claimed.left.report.error}`
            )
          }
          return { report: Effect.succeed(claimed.left.report), full: false, sleep: 0, claimFailed: claimed.left.cause }
        }
        const batch = claimed.right
        if (shard.failures > 0)
          yield* Effect.logInfo(`shard back after ${shard.failures} failed round(s)`)
        shard.failures = 0
        if (!previousOk && batch.send.length > 0) {
          // The job server refused the previous batch: don't strand this one under a lease.
          const now = yield* nowSeconds
          yield* handOver(
            shard,
            storage.defer(batch.send, now).pipe(
              Effect.catchAll((e) =>
                Effect.logWarning(`returning ${batch.send.length} claimed job(s) failed: ${e.message}`)
              )
            )
          )
          const { claimed: n, deferred, limit } = batch
          return yield* done({
            dbid,
            limit,
            claimed: n,
            dispatched: 0,
            deferred,
            failed: 0,
            parked: 0,
            error: "the previous batch's submits failed: this one was given back due"
          }, s.batchRunSleepMs)
        }
        if (isFull(batch)) {
          shard.lastDispatch = started
          // Forked in the uninterruptible step: the submit inherits it and always completes.
          const fiber = yield* handOver(
            shard,
            Effect.tap(
              Effect.fork(submitPhase(batch)),
              (fiber) => Effect.sync(() => (shard.inFlight = { fiber, batch }))
            )
          )
          return { report: Fiber.join(fiber), full: true, sleep: 0 }
        }
        const report = yield* handOver(shard, submitPhase(batch))
        if (report.dispatched > 0) shard.lastDispatch = started
        // Jobs are flowing (some went out within the last interval: a step right after a full one
        // often finds none yet), or are held back by the watermark while workers drain the queue:
        // look again soon instead of a whole interval (the original's 1 s made its latency about a
        // second, and let a queue held at the watermark run dry).
        const busy = started - shard.lastDispatch < s.batchRunSleepMs || batch.throttled
        return yield* done(report, busy ? Math.min(s.batchRunSleepMs, BUSY_ROUND_MS) : s.batchRunSleepMs)
      }).pipe(Effect.annotateLogs({ shard: shard.dbid }))

    /**
     * Tests and tools: one step of every shard, each waited for to the end (a full batch's submits
     * included), so the report is complete. Shards keep their state from round to round.
     */
    const roundShards = new Map(storage.shardIds.map((dbid) => [dbid, newShard(dbid)] as const))
    const round: Effect.Effect<RoundReport> = Effect.gen(function*() {
      if (yield* noServer) return { shards: [], full: false }
      const steps = yield* Effect.forEach(
        [...roundShards.values()],
        (shard) =>
          Effect.flatMap(step(shard), (st) => Effect.map(st.report, (report) => ({ report, full: st.full }))).pipe(
            Effect.ensuring(release(shard))
          ),
        { concurrency: "unbounded" }
      )
      return { shards: steps.map((st) => st.report), full: steps.some((st) => st.full) }
    })

    const backoff = shardRetry(Duration.millis(s.batchRunSleepMs), Duration.millis(s.shardRetryMaxMs))

    /**
     * One shard's loop: `step` after step, each after the wait the previous one asked for; a
     * step whose claim failed is retried on `shardRetry` (which starts afresh once one succeeds).
     * Each shard has its own loop, so a slow or dead shard never holds up the others.
     */
    const shardLoop = (dbid: number) =>
      Effect.acquireRelease(Effect.sync(() => newShard(dbid)), release).pipe(
        Effect.flatMap((shard) => {
          const once = Effect.flatMap(step(shard), (st) =>
            st.claimFailed !== undefined
              ? Effect.fail(new ClaimFailed({ dbid, cause: st.claimFailed }))
              : st.sleep > 0
              ? Effect.sleep(st.sleep)
              : Effect.void)
          // The schedule never ends, so the retry never fails.
          return Effect.forever(Effect.orDie(Effect.retry(once, backoff)))
        }),
        Effect.scoped,
        Effect.annotateLogs({ shard: dbid })
      )

    /** Runs every shard's loop until interrupted. */
    const schedules = options.scheduler === false
      ? []
      : [Effect.provideService(Scheduler.run(options.scheduler), Storage, storage)]
    // Not an acquireRelease: fibers forked in its (uninterruptible) acquire could not be interrupted.
    const hold = Effect.zipRight(
      Effect.addFinalizer(() => Effect.sync(() => (holder = undefined))),
      HeldLeases.make({ leaseSeconds: s.leaseSeconds, tags: queueRunnerTag }).pipe(
        Effect.tap((h) => Effect.sync(() => (holder = h))),
        Effect.provideService(Storage, storage),
        Effect.provideService(Gearman, gearman)
      )
    )
    const run: Effect.Effect<never> = Effect.zipRight(
      hold,
      Effect.all([...storage.shardIds.map(shardLoop), ...schedules], {
        concurrency: "unbounded",
        discard: true
      })
    ).pipe(
      Effect.zipRight(Effect.never),
      Effect.scoped,
      Effect.annotateLogs({ role: "QueueRunner" })
    )

    return { round, run, limits: Ref.get(limits) }
  })

/** Runs a QueueRunner until interrupted. */
export const run = (options: QueueRunnerOptions = {}) => Effect.flatMap(make(options), (runner) => runner.run)

/**
 * A QueueRunner as a Layer: its options are checked when the layer is built; its loop runs,
 * supervised (supervise.ts), for the life of the layer.
 */
export const layer = (
  options: QueueRunnerOptions = {}
): Layer.Layer<never, InvalidQueueRunnerOptions, Storage | Gearman | Supervision> =>
  Layer.unwrapEffect(Effect.map(make(options), (runner) => roleLayer("QueueRunner", runner.run)))
