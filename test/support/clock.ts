// Tests on TestClock: a fixed, realistic "now", set before any layer starts (their timers would
// otherwise replay every tick between 1970 and it).
import { it } from "@effect/vitest"
import type { Layer, Scope } from "effect"
import { Effect, TestClock } from "effect"

/** The TestClock's start in every such test (unix seconds). */
export const T0 = 1_700_000_000

/** Runs `effect` with the TestClock at T0. */
export const atT0 = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.zipRight(TestClock.setTime(T0 * 1000), effect)

/** `it.scoped` at T0 with fresh `layers()` built after the clock is set. */
export const scopedAtT0 = <ROut, E2>(layers: () => Layer.Layer<ROut, E2>) =>
(
  title: string,
  body: Effect.Effect<void, unknown, ROut | Scope.Scope>,
  timeout?: number
) => it.scoped(title, () => atT0(body.pipe(Effect.provide(layers()))), timeout)
