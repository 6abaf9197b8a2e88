/**
 * Heartbeats of running jobs (docs/job-life.md, "Leases held while someone holds the job"): the
 * worker helper and the Controller hold each job they run here while it runs. Every `interval`
 * one UPDATE per shard, for all the jobs in flight there that have run at least one interval
 * (a shorter job costs no write), records the heartbeat and moves their lease to now + `lease`,
 * fenced by their tokens (Storage.heartbeat). A job it finds cancelled is interrupted (Effect
 * interruption: its finalizers run) and ends with `JobCancelled`; one it finds lost (leased
 * again elsewhere, or gone) is logged and left to run: its completion will be fenced.
 *
 * Jobs without a lease token (a Perl dispatcher's, or a database without migration 4) are run
 * as they are, without heartbeats.
 */
import { Clock, Data, Deferred, Duration, Effect, Schedule } from "effect"
import type { Scope } from "effect"
import { formatHandle } from "../Job.js"
import type { StoredJob } from "../Job.js"
import type { StorageShape } from "../storage/Storage.js"
import * as Defaults from "./defaults.js"
import { heartbeatWrites, jobsInterrupted } from "./metrics.js"

/** The job was cancelled while it ran: its handler was interrupted; it stays cancelled (not retried, not failed). */
export class JobCancelled extends Data.TaggedError("JobCancelled")<{ readonly dbid: number; readonly jobid: number }> {
  override get message(): string {
    return `job ${this.dbid}:${this.jobid} was cancelled while it ran; its handler was interrupted`
  }
}

export interface HeartbeatOptions {
  /** How far a heartbeat moves the lease (default: the dispatchers' default lease). */
  readonly lease?: Duration.DurationInput | undefined
  /** Time between heartbeats (default: a third of `lease`; at most `lease`). */
  readonly interval?: Duration.DurationInput | undefined
}

export interface Heartbeats {
  /**
   * Runs `body` for `job`, heartbeating it while it runs (if it has a lease token); fails with
   * `JobCancelled` (body interrupted) if a heartbeat finds it cancelled.
   */
  readonly hold: <A, E, R>(job: StoredJob, body: Effect.Effect<A, E, R>) => Effect.Effect<A, E | JobCancelled, R>
}

interface InFlight {
  readonly job: StoredJob
  readonly since: number
  readonly cancelled: Deferred.Deferred<void>
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
          Effect.flatMap((result) =>
            Effect.forEach(entries, (entry) => {
              if (result.cancelled.includes(entry.job.jobid)) return Deferred.succeed(entry.cancelled, undefined)
              if (!result.lost.includes(entry.job.jobid) || entry.lostSaid) return Effect.void
              entry.lostSaid = true
              return Effect.logWarning(
                `job ${
                  formatHandle(entry.job)
                } no longer holds its lease (completed, deleted or leased again elsewhere); it runs on, and its outcome will change nothing`
              )
            }, { discard: true })
          ),
          // A shard that fails a heartbeat: the next one tries again (the lease outlasts a few).
          Effect.catchAll((e) =>
            Effect.logWarning(`heartbeat of ${entries.length} job(s) on shard ${dbid} failed: ${e.message}`)
          )
        ), { concurrency: "unbounded", discard: true })
    })
    yield* Effect.forkScoped(
      Effect.repeat(beat, Schedule.spaced(interval)).pipe(Effect.annotateLogs("heartbeat", "loop"))
    )

    const hold = <A, E, R>(job: StoredJob, body: Effect.Effect<A, E, R>): Effect.Effect<A, E | JobCancelled, R> =>
      job.lease === undefined ? body : Effect.acquireUseRelease(
        Effect.zipWith(Deferred.make<void>(), Clock.currentTimeMillis, (cancelled, since) => {
          const entry: InFlight = { job, since, cancelled, lostSaid: false }
          inFlight.add(entry)
          return entry
        }),
        (entry) =>
          Effect.raceFirst(
            body,
            Effect.zipRight(
              Deferred.await(entry.cancelled),
              Effect.suspend(() => {
                jobsInterrupted.unsafeUpdate(1, [])
                return Effect.fail(new JobCancelled({ dbid: job.dbid, jobid: job.jobid }))
              })
            )
          ),
        (entry) => Effect.sync(() => void inFlight.delete(entry))
      )

    return { hold }
  })
