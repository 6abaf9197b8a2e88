/**
 * Heartbeats of running jobs (docs/job-life.md, "Leases held while someone holds the job"): the
 * worker helper and the Controller hold each job they run here while it runs. Every `interval`
 * one UPDATE per shard, for all the jobs in flight there that have run at least one interval
 * (a shorter job costs no write), records the heartbeat and moves their lease to now + `lease`,
 * fenced by their tokens (Storage.heartbeat). A job it finds cancelled is interrupted (Effect
 * interruption of the job's own fiber: its finalizers run); one it finds lost (leased
 * again elsewhere, or gone) is logged and left to run: its completion will be fenced.
 *
 * Jobs without a lease token (a Perl dispatcher's, or a database without migration 4) are run
 * as they are, without heartbeats.
 */
import { Clock, Duration, Effect, FiberId, Schedule } from "effect"
import type { Scope, Fiber } from "effect"
import { formatHandle } from "../Job.js"
import type { StoredJob } from "../Job.js"
import type { StorageShape } from "../storage/Storage.js"
import * as Defaults from "./defaults.js"
import { heartbeatWrites, jobsInterrupted } from "./metrics.js"

export interface HeartbeatOptions {
  /** How far a heartbeat moves the lease (default: the dispatchers' default lease). */
  readonly lease?: Duration.DurationInput | undefined
  /** Time between heartbeats (default: a third of `lease`; at most `lease`). */
  readonly interval?: Duration.DurationInput | undefined
}

export interface Heartbeats {
  /**
   * Runs `body` for `job`, heartbeating it while it runs (if it has a lease token); a
   * heartbeat that finds it cancelled interrupts the job's fiber.
   */
  readonly hold: <A, E, R>(job: StoredJob, body: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
}

interface InFlight {
  readonly job: StoredJob
  readonly since: number
  /**
   * The fiber running the job (the job server client's fiber for this one job): interrupted
   * when a heartbeat finds the job cancelled; the client then answers WORK_FAIL for it.
   */
  readonly fiber: Fiber.RuntimeFiber<unknown, unknown>
  cancelled: boolean
  lostSaid: boolean
}

/** The heartbeat loop, forked into the scope (it stops with it), and the `hold` of each job. */
export const make = (
  storage: StorageShape,
  options: HeartbeatOptions = {}
): Effect.Effect<Heartbeats, never, Scope.Scope> =>
  Effect.gen(function*() {
    const lease = Duration.decode(options.lease ?? Defaults.heartbeat.lease)
    const interval = Duration.min(
      Duration.decode(options.interval ?? Duration.millis(Duration.toMillis(lease) / Defaults.heartbeat.perLease)),
      lease
    )
    const intervalMs = Duration.toMillis(interval)
    const inFlight = new Set<InFlight>()

    const beat = Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      // Only jobs that have run a whole interval: a short job costs no heartbeat write.
      const byShard = new Map<number, Array<InFlight>>()
      for (const entry of inFlight) {
        if (now - entry.since < intervalMs) continue
        const group = byShard.get(entry.job.dbid)
        if (group === undefined) byShard.set(entry.job.dbid, [entry])
        else group.push(entry)
      }
      yield* Effect.forEach(byShard, ([dbid, entries]) =>
        storage.heartbeat(dbid, entries.map((e) => e.job), lease).pipe(
          Effect.tap(() => Effect.sync(() => heartbeatWrites.unsafeUpdate(1, []))),
          Effect.flatMap((result) => {
            const cancelled = new Set(result.cancelled)
            const lost = new Set(result.lost)
            return Effect.forEach(entries, (entry) => {
              if (cancelled.has(entry.job.jobid)) {
                if (entry.cancelled) return Effect.void
                entry.cancelled = true
                jobsInterrupted.unsafeUpdate(1, [])
                entry.fiber.unsafeInterruptAsFork(FiberId.none)
                return Effect.logInfo(
                  `job ${formatHandle(entry.job)}: cancelled while it ran; its handler is interrupted (not retried)`
                )
              }
              if (!lost.has(entry.job.jobid) || entry.lostSaid) return Effect.void
              entry.lostSaid = true
              return Effect.logWarning(
                `job ${
                  formatHandle(entry.job)
                } no longer holds its lease (completed, deleted or leased again elsewhere); it runs on, and its outcome will change nothing`
              )
            }, { discard: true })
          }),
          // A shard that fails a heartbeat: the next one tries again (the lease outlasts a few).
          Effect.catchAll((e) =>
            Effect.logWarning(`heartbeat of ${entries.length} job(s) on shard ${dbid} failed: ${e.message}`)
          )
        ), { concurrency: "unbounded", discard: true })
    })
    yield* Effect.forkScoped(
      Effect.repeat(beat, Schedule.spaced(interval)).pipe(Effect.annotateLogs("heartbeat", "loop"))
    )

    // No fiber of its own per job: a fork (or a race) per job cost more CPU than the rest of the
    // worker and broke the batching of completions. A cancel interrupts the job's own fiber
    // instead (the Gearman worker forks one per job and answers WORK_FAIL for one interrupted
    // while not stopping), so the handler's finalizers run and nothing settles the row.
    const clock = yield* Effect.clock
    const hold = <A, E, R>(job: StoredJob, body: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
      job.lease === undefined ?
        body :
        Effect.withFiberRuntime<A, E, R>((fiber) => {
          const since = clock.unsafeCurrentTimeMillis()
          const entry: InFlight = { job, since, fiber, cancelled: false, lostSaid: false }
          inFlight.add(entry)
          return Effect.ensuring(body, Effect.sync(() => void inFlight.delete(entry)))
        })

    return { hold }
  })
