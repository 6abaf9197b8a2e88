/**
 * Scaling from gearmand's queue. Every `interval` the Observer reads `status` from every job
 * server (summed per function) and, per Driver job:
 * - waiting jobs (TOTAL − RUNNING over its functions) beyond its free local processes (idle or
 *   starting) start more, up to max (the Supervisor holds starts within its limits);
 * - with its queue empty (TOTAL 0), processes above min that have been idle `maxIdleTime`
 *   drain (stop grabbing and exit) — a busy process is never picked.
 * Functions nobody here serves that have jobs queued go to `onUnknownJob` and the log.
 */
import { Effect, Either } from "effect"
import type { FunctionStatus } from "../protocol/admin.js"
import type { Supervisor } from "./Supervisor.js"

export interface ObserverOptions {
  /** Seconds a process above min must have been idle before it drains. */
  readonly maxIdleTime: number
  readonly onUnknownJob?: ((row: FunctionStatus) => Effect.Effect<void>) | undefined
}

export const makeTick = (
  supervisor: Supervisor,
  queueDepths: Effect.Effect<ReadonlyMap<string, FunctionStatus>, { readonly message: string }>,
  options: ObserverOptions
) => {
  const known = new Set(supervisor.states().flatMap((s) => s.job.functions.map((f) => f.registered)))
  // Unknown functions already reported, so the log says it once per backlog rather than every tick.
  const reported = new Set<string>()

  return Effect.gen(function*() {
    const result = yield* Effect.either(queueDepths)
    if (Either.isLeft(result)) {
      yield* Effect.logError(`Observer: ${result.left.message}`)
      return
    }
    const depths = result.right
    const now = Date.now()
    for (const state of supervisor.states()) {
      const rows = state.job.functions.flatMap((f) => {
        const row = depths.get(f.registered)
        return row ? [row] : []
      })
      const total = rows.reduce((n, r) => n + r.total, 0)
      const waiting = rows.reduce((n, r) => n + Math.max(0, r.total - r.running), 0)
      const running = supervisor.alive(state)
      const free = running.filter((p) => p.state !== "busy").length
      if (waiting > free) {
        const n = Math.min(waiting - free, state.max - running.length)
        yield* supervisor.start(state, n, `${waiting} waiting, ${free} free`)
      } else if (total === 0 && running.length > state.min) {
        const idle = running
          .filter((p) => p.state === "idle" && now - p.idleSince >= options.maxIdleTime * 1000)
          .sort((a, b) => a.idleSince - b.idleSince)
          .slice(0, running.length - state.min)
        if (idle.length > 0) {
          const seconds = Math.floor((now - idle[idle.length - 1]!.idleSince) / 1000)
          yield* Effect.logDebug(`Stopping ${idle.length} process(es) of type ${state.job.name} (idle: ${seconds})`)
          yield* Effect.forEach(idle, supervisor.drain, { discard: true })
        }
      }
    }
    for (const row of depths.values()) {
      if (known.has(row.name)) continue
      if (row.total === 0) {
        reported.delete(row.name)
        continue
      }
      if (options.onUnknownJob) yield* options.onUnknownJob(row)
      if (!reported.has(row.name)) {
        reported.add(row.name)
        yield* Effect.logWarning(`unknown job ${row.name}: ${row.total} queued, no Driver job serves it`)
      }
    }
  })
}
