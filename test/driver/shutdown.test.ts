// A Driver stopping with a job that outlasts shutdown_timeout: it waits out the grace period, not
// the job, exits 0, and leaves no child behind (what is left is SIGKILLed; a child whose Driver
// is gone exits on its own too).
import { assert, it } from "@effect/vitest"
import { Effect } from "effect"
import { eventually } from "../gearman/gearmand.js"
import { alive, fixture, runningChildren, startDriver } from "./support.js"

it.scopedLive(
  "SIGTERM with a job longer than shutdown_timeout: the Driver exits 0 after the grace period and no child outlives it",
  () =>
    Effect.gen(function*() {
      const driver = yield* startDriver([fixture("Demo.mjs")], { interval: 0.2, shutdown_timeout: 1 })
      yield* driver.ask("set_processes Demo::slow 1 1")
      yield* eventually(Effect.map(driver.processes("Demo::slow"), (n) => n === 1), "one slow process")
      const [child] = yield* driver.pids("Demo::slow")
      // A job of 10 minutes: only the SIGKILL can end it within this test's life.
      yield* driver.gearman.submitBackground("Demo::slow", String(10 * 60 * 1000))
      yield* eventually(Effect.sync(() => driver.output().includes("begin Demo::slow")), "the long job running")
      yield* driver.signal("SIGTERM")
      const exit = yield* driver.exited
      assert.deepStrictEqual(exit, { code: 0, signal: null })
      // It says why the child did not finish: the grace period ran out and it was killed.
      assert.match(driver.output(), /driver stop: killing processes still running after the grace period/)
      // Left alone it would run for ten minutes.
      yield* eventually(Effect.sync(() => !alive(child!)), "the busy child killed")
    }),
  60_000
)

it.live(
  "a test that ends with a Driver still running leaves none of its children behind, a busy one included",
  () =>
    Effect.gen(function*() {
      const { child, output } = yield* Effect.scoped(Effect.gen(function*() {
        const driver = yield* startDriver([fixture("Demo.mjs")], { interval: 0 })
        yield* driver.ask("set_processes Demo::slow 1 1")
        yield* eventually(Effect.map(driver.processes("Demo::slow"), (n) => n === 1), "one slow process")
        const [child] = yield* driver.pids("Demo::slow")
        yield* driver.gearman.submitBackground("Demo::slow", String(10 * 60 * 1000))
        yield* eventually(Effect.sync(() => driver.output().includes("begin Demo::slow")), "the long job running")
        return { child: child!, output: driver.output() }
      }))
      assert.include(runningChildren(output), child)
      // The Driver was SIGKILLed with the scope; its busy child would otherwise run for ten minutes.
      yield* eventually(Effect.sync(() => !alive(child)), "the busy child killed with the Driver")
    }),
  60_000
)
