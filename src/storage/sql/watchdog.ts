/**
 * One watchdog per shard for the statement timeout: an operation registers its connection when
 * it starts and leaves when it ends (a Set insert and delete), and a single interval timer,
 * running only while operations are registered, expires those past their deadline. Arming a
 * timer per statement cost more CPU than the statement's own driver work (docs/performance.md).
 *
 * Deadlines are checked every `after / 10` (at least 50 ms), so an operation is cut between
 * `after` and `after × 1.1`. The timer runs on the wall clock and does not keep the process up.
 */
export interface Watch<T> {
  readonly subject: T
  readonly deadline: number
  expired: boolean
}

export interface Watchdog<T> {
  /** Registers `subject` for `after` from now. */
  readonly arm: (subject: T) => Watch<T>
  /** Unregisters it (an expired watch is already gone). */
  readonly disarm: (watch: Watch<T>) => void
}

export const make = <T>(afterMs: number, onExpire: (watch: Watch<T>) => void): Watchdog<T> => {
  const active = new Set<Watch<T>>()
  let timer: ReturnType<typeof setInterval> | undefined
  const tick = () => {
    const now = Date.now()
    for (const watch of active) {
      if (watch.deadline > now) continue
      active.delete(watch)
      watch.expired = true
      onExpire(watch)
    }
    if (active.size === 0 && timer !== undefined) {
      clearInterval(timer)
      timer = undefined
    }
  }
  return {
    arm: (subject) => {
      const watch: Watch<T> = { subject, deadline: Date.now() + afterMs, expired: false }
      active.add(watch)
      if (timer === undefined) {
        timer = setInterval(tick, Math.max(50, Math.floor(afterMs / 10)))
        timer.unref()
      }
      return watch
    },
    disarm: (watch) => {
      active.delete(watch)
    }
  }
}
