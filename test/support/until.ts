// Waiting under TestClock: sleeps never end unless the test moves the clock, so let the other
// fibers run (yield) until the condition holds, with a bound instead of a timer.
import { assert } from "@effect/vitest"
import { Effect } from "effect"

export const until = <E, R>(done: Effect.Effect<boolean, E, R>, what: string, rounds = 20_000) =>
  Effect.gen(function*() {
    for (let i = 0; i < rounds; i++) {
      if (yield* done) return
      yield* Effect.yieldNow()
    }
    assert.fail(`timed out waiting for ${what}`)
  })
