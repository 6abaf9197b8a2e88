/**
 * Supervision of the roles' loops, one rule for all four: a loop that dies (a defect, or a failure
 * it was not meant to have) is logged at ERROR with its cause and started again after a capped,
 * jittered backoff; one that keeps dying (more than `maxRestarts` deaths within `window`) gives
 * up: a FATAL log and a typed `RoleFailed`, reported to `Supervision` so the application (or the
 * CLI, exit 1) sees it. Interruption is shutdown: never logged, never restarted.
 */
import { Cause, Clock, Context, Data, Deferred, Duration, Effect, Layer, Schedule } from "effect"
import type { Scope } from "effect"
import { clip } from "../text.js"

/** A role's loop kept dying and was not started again. */
export class RoleFailed extends Data.TaggedError("RoleFailed")<{
  readonly role: string
  /** Restarts within the window before it gave up. */
  readonly restarts: number
  readonly window: Duration.Duration
  /** How its loop died the last time. */
  readonly cause: Cause.Cause<unknown>
}> {
  override get message(): string {
    const last = Cause.squash(this.cause)
    const why = last instanceof Error ? last.message : String(last)
    return `${this.role} gave up after ${this.restarts} restart(s) within ${Duration.format(this.window)}: ${
      clip(why.split("\n")[0] ?? "", 200)
    }`
  }
}

export interface SuperviseOptions {
  /** Delays between restarts (default: exponential from 100 ms, jittered, capped at 10 s). */
  readonly backoff?: Schedule.Schedule<unknown, unknown> | undefined
  /** Deaths tolerated within `window`; one more gives up (default 10). */
  readonly maxRestarts?: number | undefined
  /** default 5 minutes */
  readonly window?: Duration.DurationInput | undefined
}

export const DEFAULT_BACKOFF: Schedule.Schedule<unknown, unknown> = Schedule.exponential("100 millis").pipe(
  Schedule.jittered,
  Schedule.union(Schedule.spaced("10 seconds"))
)
export const DEFAULT_MAX_RESTARTS = 10
export const DEFAULT_WINDOW = Duration.minutes(5)

/**
 * Runs `loop` under supervision until interrupted; fails only with `RoleFailed`. The backoff
 * starts over after a death with no other in the window (the loop had been healthy).
 */
export const supervise = <E, R>(
  role: string,
  loop: Effect.Effect<never, E, R>,
  options: SuperviseOptions = {}
): Effect.Effect<never, RoleFailed, R> =>
  Effect.gen(function*() {
    const driver = yield* Schedule.driver(options.backoff ?? DEFAULT_BACKOFF)
    const maxRestarts = options.maxRestarts ?? DEFAULT_MAX_RESTARTS
    const window = Duration.decode(options.window ?? DEFAULT_WINDOW)
    let deaths: ReadonlyArray<number> = []
    for (;;) {
      // Interrupted, this fiber does not get here: the interruption unwinds past it (shutdown).
      const cause: Cause.Cause<unknown> = yield* Effect.flip(Effect.sandbox(loop))
      const now = yield* Clock.currentTimeMillis
      deaths = [...deaths.filter((t) => now - t < Duration.toMillis(window)), now]
      const giveUp = Effect.suspend(() => {
        const failed = new RoleFailed({ role, restarts: deaths.length - 1, window, cause })
        return Effect.zipRight(Effect.logFatal(`${failed.message}; giving up`, cause), Effect.fail(failed))
      })
      if (deaths.length > maxRestarts) return yield* giveUp
      if (deaths.length === 1) yield* driver.reset
      yield* Effect.logError(
        `${role} died; restarting (${deaths.length} death(s) within ${Duration.format(window)})`,
        cause
      )
      // A backoff that ends (a custom, finite schedule) gives up too.
      yield* Effect.catchAll(driver.next(cause), () => giveUp)
    }
  }).pipe(Effect.annotateLogs({ role }))

/** Where roles report giving up; the application (or the CLI) waits on it with `join`. */
export class Supervision extends Context.Tag("garivini/Supervision")<Supervision, {
  readonly giveUp: (failure: RoleFailed) => Effect.Effect<void>
  /** Never succeeds; fails with the first role to give up. */
  readonly join: Effect.Effect<never, RoleFailed>
}>() {}

/** One Supervision for every role layer built over it. */
export const layer: Layer.Layer<Supervision> = Layer.effect(
  Supervision,
  Effect.map(Deferred.make<never, RoleFailed>(), (failed) => ({
    giveUp: (failure) => Effect.asVoid(Deferred.fail(failed, failure)),
    join: Deferred.await(failed)
  }))
)

/** Waits for the roles: never succeeds, fails with `RoleFailed` when one gives up. */
export const join: Effect.Effect<never, RoleFailed, Supervision> = Effect.flatMap(Supervision, (s) => s.join)

/**
 * A role as a Layer: `loop` supervised in a fiber of the layer's scope (closing the scope
 * interrupts it: shutdown), its give-up reported to `Supervision`.
 */
export const roleLayer = <E, R>(
  role: string,
  loop: Effect.Effect<never, E, R>,
  options?: SuperviseOptions
): Layer.Layer<never, never, R | Supervision> =>
  Layer.scopedDiscard(
    Effect.flatMap(Supervision, (s) => Effect.forkScoped(Effect.catchAll(supervise(role, loop, options), s.giveUp)))
  )

/**
 * A role that serves until its scope closes (Injector, Controller, Worker) as a loop: served in a
 * scope of its own, so a restart closes the old one (in-flight jobs finish) before serving again.
 */
export const serving = <E, R>(serve: Effect.Effect<unknown, E, R>): Effect.Effect<never, E, Exclude<R, Scope.Scope>> =>
  Effect.scoped(Effect.zipRight(serve, Effect.never))

/** Like `Layer.launch` for role layers: builds them with a Supervision and waits for `join`. */
export const launch = <E, R>(
  roles: Layer.Layer<never, E, R>
): Effect.Effect<never, E | RoleFailed, Exclude<R, Supervision>> =>
  Effect.provide(join, roles.pipe(Layer.provideMerge(layer)))
