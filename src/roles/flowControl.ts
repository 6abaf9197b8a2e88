/**
 * What a dispatcher (QueueRunner, Injector) knows of flow control: each shard's function controls,
 * read at most once per `controlsRefresh` per shard (never per job), the rate limit's tokens,
 * taken from the one bucket per function on the home shard, and the concurrency limit's claim. docs/flow-control.md has the rules.
 */
import type { StoredJob } from "../Job.js"
import { Clock, Duration, Effect, Metric } from "effect"
import type { FunctionControl, RateLimit } from "../storage/flow.js"
import type { StorageShape } from "../storage/Storage.js"
import * as Defaults from "./defaults.js"
import * as Metrics from "./metrics.js"

/** A function claimed on its own: rate-limited, concurrency-limited, or both (and not paused). */
export interface Limited {
  readonly funcname: string
  readonly rate: RateLimit | null
  readonly concurrency: number | null
}

/** One shard's controls as a dispatcher uses them. */
export interface ControlView {
  /** Functions not claimed by the ordinary claim: paused, or limited (claimed on their own). */
  readonly excluded: ReadonlyArray<string>
  readonly paused: ReadonlySet<string>
  /** Rate- or concurrency-limited functions that are not paused. */
  readonly limited: ReadonlyArray<Limited>
}

export const EMPTY_VIEW: ControlView = { excluded: [], paused: new Set(), limited: [] }

export const viewOf = (controls: ReadonlyArray<FunctionControl>): ControlView => {
  if (controls.length === 0) return EMPTY_VIEW
  const paused = new Set(controls.filter((c) => c.paused).map((c) => c.funcname))
  const limited = controls.flatMap((c) =>
    !c.paused && (c.rate !== null || c.concurrency !== null)
      ? [{ funcname: c.funcname, rate: c.rate, concurrency: c.concurrency }]
      : []
  )
  return { excluded: controls.map((c) => c.funcname), paused, limited }
}

export interface ControlCache {
  /** The shard's controls, read again when the last read is older than the refresh interval. */
  readonly forShard: (dbid: number) => Effect.Effect<ControlView>
}

/**
 * A cache of each shard's controls. A read that fails keeps the last view (a shard that cannot be
 * read cannot be claimed from either; the home shard's view also steers the Injector).
 */
export const makeCache = (
  storage: StorageShape,
  refresh: Duration.DurationInput = Defaults.flow.controlsRefresh
): ControlCache => {
  const refreshMs = Duration.toMillis(Duration.decode(refresh))
  const cached = new Map<number, { at: number; view: ControlView; failing: boolean }>()
  return {
    forShard: (dbid) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) => {
        const entry = cached.get(dbid)
        if (entry !== undefined && now - entry.at < refreshMs) return Effect.succeed(entry.view)
        return storage.flow.controls(dbid).pipe(
          Effect.map((controls) => {
            const view = viewOf(controls)
            cached.set(dbid, { at: now, view, failing: false })
            return view
          }),
          Effect.catchAll((e) => {
            const view = entry?.view ?? EMPTY_VIEW
            const logged = entry?.failing === true
            cached.set(dbid, { at: now, view, failing: true })
            return logged ? Effect.succeed(view) : Effect.as(
              Effect.logWarning(`function controls unreadable, keeping the last ones: ${e.message}`).pipe(
                Effect.annotateLogs({ shard: dbid })
              ),
              view
            )
          })
        )
      })
  }
}

/**
 * Takes up to `want` tokens of a rate-limited function; on failure (the home shard unreachable)
 * none: a rate limit fails closed, its jobs wait in the database.
 */
export const takeTokens = (storage: StorageShape, funcname: string, rate: RateLimit, want: number) =>
  storage.flow.takeTokens(funcname, rate, want).pipe(
    Effect.tap((n) =>
      n > 0 ? Metric.incrementBy(Metric.tagged(Metrics.rateTokens, "funcname", funcname), n) : Effect.void
    ),
    Effect.catchAll((e) =>
      Effect.as(
        Effect.logWarning(`rate limit's tokens unavailable, not dispatching it this round: ${e.message}`).pipe(
          Effect.annotateLogs({ funcname })
        ),
        0
      )
    )
  )

/** Tokens taken and not used go back (best effort: lost ones only slow the function down). */
export const giveBack = (storage: StorageShape, funcname: string, rate: RateLimit, unused: number) =>
  unused <= 0 ? Effect.void : Effect.ignore(storage.flow.takeTokens(funcname, rate, -unused))

/**
 * A limited function's claim of at most `limit` jobs on one shard: tokens first if it has a rate
 * limit (those it does not use go back), then its due jobs, no more than its concurrency limit
 * leaves room for. A failure costs the function this round only (logged; its jobs stay due).
 */
export const claimLimited = (
  storage: StorageShape,
  dbid: number,
  fn: Limited,
  limit: number,
  lease: Duration.DurationInput,
  maxBytes: number
): Effect.Effect<ReadonlyArray<StoredJob>> =>
  Effect.gen(function*() {
    const granted = fn.rate === null ? limit : yield* takeTokens(storage, fn.funcname, fn.rate, limit)
    if (granted === 0) return []
    const claim = fn.concurrency === null
      ? storage.claimDue(dbid, granted, lease, [], maxBytes, fn.funcname)
      : storage.flow.claimCapped(dbid, fn.funcname, fn.concurrency, granted, lease, maxBytes)
    const mine = yield* claim.pipe(
      Effect.catchAll((e) =>
        Effect.as(
          Effect.logWarning(`claiming limited ${fn.funcname} failed: ${e.message}`).pipe(
            Effect.annotateLogs({ funcname: fn.funcname, shard: dbid })
          ),
          []
        )
      )
    )
    if (fn.rate !== null) yield* giveBack(storage, fn.funcname, fn.rate, granted - mine.length)
    if (fn.concurrency !== null && mine.length > 0) {
      yield* Metric.incrementBy(Metric.tagged(Metrics.concurrencyClaimed, "funcname", fn.funcname), mine.length)
    }
    return mine
  })
