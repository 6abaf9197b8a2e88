/**
 * Group commit: items handed over one by one go to storage in batches. While one batch is in
 * flight, what arrives waits and goes in the next, so N concurrent callers cost about one
 * statement per batch instead of N (docs/performance.md: coalesced inserts, batched completions).
 * It serves `Storage`'s coalesced inserts and the worker helper's completions, with one set of
 * rules:
 *
 * - one batch in flight at a time, at most `maxBatch` items, oldest first (several batches in
 *   flight cost more CPU per item for no gain: docs/performance.md);
 * - the flushing fiber runs only while items wait (an item costs an array push, not a Queue
 *   offer and a wake-up); `window` delays its first batch to gather more;
 * - `offer` holds its caller back while `maxWaiting` items wait (backpressure); an item not yet
 *   in a batch can be withdrawn;
 * - a batch that fails or dies is logged and the next goes on (`run` tells its own callers);
 *   a batch is never interrupted (it may or may not have been applied);
 * - when the scope closes, the batch in flight finishes and whatever still waits is run at once.
 */
import { Cause, Duration, Effect, Fiber, Runtime } from "effect"
import type { Scope } from "effect"

export interface GroupCommitOptions<A> {
  /** Runs one batch. Its callers learn their outcome through their items (see Storage, Worker). */
  readonly run: (batch: ReadonlyArray<A>) => Effect.Effect<void>
  /** Items in one batch, at most. */
  readonly maxBatch: number
  /** Items waiting beyond which `offer` waits (default: no bound). */
  readonly maxWaiting?: number | undefined
  /** Gather items this long before the first batch of a burst (default 0: whatever queued meanwhile). */
  readonly window?: Duration.DurationInput | undefined
  /** A test hook: called with the number of waiting items each time one joins them. */
  readonly onQueued?: ((waiting: number) => void) | undefined
}

export interface GroupCommit<A> {
  /** Queues an item; waits only while the queue is full. */
  readonly offer: (item: A) => Effect.Effect<void>
  /** Queues an item whatever the queue holds: for callers that wait for their item's outcome anyway. */
  readonly unsafeOffer: (item: A) => void
  /** Takes back an item whose batch has not started; false if it is already in one. */
  readonly withdraw: (item: A) => boolean
}

export const make = <A>(options: GroupCommitOptions<A>): Effect.Effect<GroupCommit<A>, never, Scope.Scope> =>
  Effect.gen(function*() {
    const runtime = yield* Effect.runtime<never>()
    const windowMs = Duration.toMillis(Duration.decode(options.window ?? 0))
    const maxWaiting = options.maxWaiting ?? Infinity
    let waiting: Array<A> = []
    /** Callers held back while the queue is full, resumed as batches leave. */
    const blocked: Array<() => void> = []
    /** Set before the flusher starts: it may finish before runFork returns. */
    let flushing = false
    let flusher: Fiber.RuntimeFiber<void> | undefined

    const take = (): ReadonlyArray<A> => {
      let batch: Array<A>
      if (waiting.length <= options.maxBatch) {
        batch = waiting
        waiting = []
      } else batch = waiting.splice(0, options.maxBatch)
      const room = maxWaiting - waiting.length
      if (blocked.length > 0 && room > 0) { for (const resume of blocked.splice(0, room)) resume() }
      return batch
    }
    const runOne = (batch: ReadonlyArray<A>) =>
      options.run(batch).pipe(
        Effect.catchAllCause((cause) =>
          Cause.isInterruptedOnly(cause) ? Effect.void : Effect.logError("a group-commit batch died", cause)
        ),
        Effect.uninterruptible
      )
    const drain: Effect.Effect<void> = Effect.suspend(() => {
      if (waiting.length === 0) {
        flushing = false
        return Effect.void
      }
      return Effect.zipRight(runOne(take()), drain)
    })

    const unsafeOffer = (item: A) => {
      waiting.push(item)
      options.onQueued?.(waiting.length)
      if (flushing) return
      flushing = true
      // runFork runs the fiber at once: yield first, so the calls of this turn go in the first batch.
      flusher = Runtime.runFork(runtime)(
        Effect.zipRight(windowMs > 0 ? Effect.sleep(Duration.millis(windowMs)) : Effect.yieldNow(), drain)
      )
    }

    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        // Its batch in flight finishes (batches are uninterruptible); a window is cut short.
        if (flusher !== undefined) yield* Fiber.interrupt(flusher)
        if (waiting.length === 0) return
        flushing = true
        yield* drain
      })
    )

    return {
      unsafeOffer,
      offer: (item) =>
        Effect.suspend(() => {
          if (waiting.length < maxWaiting) return Effect.sync(() => unsafeOffer(item))
          return Effect.async<void>((resume) => {
            const entry = () => {
              unsafeOffer(item)
              resume(Effect.void)
            }
            blocked.push(entry)
            return Effect.sync(() => {
              const i = blocked.indexOf(entry)
              if (i >= 0) blocked.splice(i, 1)
            })
          })
        }),
      withdraw: (item) => {
        const i = waiting.indexOf(item)
        if (i < 0) return false
        waiting.splice(i, 1)
        return true
      }
    }
  })
