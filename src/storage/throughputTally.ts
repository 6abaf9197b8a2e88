/**
 * Completed and failed jobs per shard and minute, counted in memory and written to
 * `garivini_throughput` (migration 0006, the web console's chart) by one background fiber, so a
 * completion or failure never waits for the count's round trip. A crash loses at most one
 * interval of counts: the chart is a picture of the flow, not a ledger.
 */
import { Clock, Effect, Schedule } from "effect"
import type { Scope, Duration } from "effect"
import type { ShardBackend } from "./ShardBackend.js"

/** Rows per minute that concurrent writers spread over (their upserts rarely wait on one row). */
const SLOTS = 16

interface Pending {
  readonly backend: ShardBackend
  readonly minute: number
  completed: number
  failed: number
}

export interface ThroughputTally {
  /** Adds to the shard's count for the minute of `nowSeconds` (synchronous, no I/O). */
  readonly add: (backend: ShardBackend, nowSeconds: number, completed: number, failed: number) => void
  /** Writes every pending count now (a reader calls it first, so it sees its own process's jobs). */
  readonly flush: Effect.Effect<void>
}

export const make = (every: Duration.DurationInput): Effect.Effect<ThroughputTally, never, Scope.Scope> =>
  Effect.gen(function*() {
    let pending = new Map<string, Pending>()

    const add = (backend: ShardBackend, nowSeconds: number, completed: number, failed: number) => {
      const minute = Math.floor(nowSeconds / 60)
      const key = `${backend.dbid}:${minute}`
      const p = pending.get(key)
      if (p === undefined) pending.set(key, { backend, minute, completed, failed })
      else {
        p.completed += completed
        p.failed += failed
      }
    }

    const flush = Effect.suspend(() => {
      if (pending.size === 0) return Effect.void
      const batch = [...pending.values()]
      pending = new Map()
      return Effect.forEach(
        batch,
        (p) =>
          p.backend.recordThroughput(p.minute, Math.floor(Math.random() * SLOTS), p.completed, p.failed).pipe(
            Effect.catchAll((e) =>
              Effect.logDebug("jobs per minute not counted").pipe(
                Effect.annotateLogs({ shard: p.backend.dbid, minute: p.minute, error: e.reason })
              )
            )
          ),
        { concurrency: "unbounded", discard: true }
      )
    })

    // On the real clock always: a test's TestClock moved by a day would otherwise run the loop
    // once per interval of that day (the minutes counted still come from the caller's clock).
    yield* Effect.forkScoped(Effect.repeat(flush, Schedule.spaced(every)).pipe(Effect.withClock(Clock.make())))
    // What the last interval counted is written when the storage closes (a clean exit loses none).
    yield* Effect.addFinalizer(() => flush)
    return { add, flush }
  })
