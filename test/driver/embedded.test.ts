// The Driver as a library (Driver.make in a scope): the onUnknownJob hook, and closing the scope
// drains the children. And the Supervisor alone: a crash loop is held back and reported.
import { assert, it } from "@effect/vitest"
import { Effect, Exit, Ref, Schedule, Scope } from "effect"
import { vi } from "vitest"
import * as Driver from "../../src/driver/Driver.js"
import * as Supervisor from "../../src/driver/Supervisor.js"
import { eventually, gearmand, live } from "../gearman/gearmand.js"
import { alive, fixture } from "./support.js"

/** The Bare module's Driver over `server` in a scope the test closes; children run from the build (vitest runs the sources). */
const bareDriver = (server: string, options: Partial<Driver.DriverOptions>) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const driver = yield* Driver.make({
      modules: [fixture("Bare.mjs")],
      servers: [server],
      consolePort: 0,
      childEntry: "dist/driver/childMain.js",
      ...options
    }).pipe(Scope.extend(scope))
    const children = () => driver.supervisor.states().flatMap((s) => [...s.processes.keys()])
    return { driver, children, close: Scope.close(scope, Exit.void) }
  })

it.scopedLive(
  "onUnknownJob sees functions nobody serves; closing the scope stops every child",
  () =>
    Effect.gen(function*() {
      const gd = yield* gearmand
      const gearman = yield* live([gd.server])
      const unknown = yield* Ref.make<ReadonlyArray<string>>([])
      const { children, close } = yield* bareDriver(gd.server, {
        interval: 0.2,
        onUnknownJob: (row) => Ref.update(unknown, (seen) => [...seen, `${row.name}:${row.total}`])
      })
      yield* gearman.submitBackground("embedded_unknown", "x")
      yield* eventually(
        Effect.map(Ref.get(unknown), (names) => names.includes("embedded_unknown:1")),
        "the hook called"
      )
      assert.strictEqual((yield* gearman.submit("bare_echo", "embedded")).data.toString(), "bare embedded")
      const pids = children()
      assert.isAbove(pids.length, 0)
      yield* close
      assert.isTrue(pids.every((pid) => !alive(pid)))
    }),
  60_000
)

it.scopedLive(
  "a process crashing in a loop is restarted with backoff, then held back and reported",
  () =>
    Effect.gen(function*() {
      const job = {
        name: "crashy",
        runtimeKey: "crashy",
        modulePath: "",
        moduleName: "",
        group: "crashy",
        functions: [],
        min: 1,
        max: 1
      }
      const supervisor = yield* Supervisor.make([job], {
        servers: [],
        workerOptions: () => ({}),
        childEntry: fixture("exits-at-once.mjs")
      })
      const state = supervisor.states()[0]!
      yield* Effect.repeat(supervisor.tick, {
        schedule: Schedule.spaced("20 millis"),
        until: () => state.crashes >= Supervisor.CRASH_LOOP
      })
      assert.strictEqual(state.crashes, Supervisor.CRASH_LOOP)
      assert.strictEqual(state.lasterrorMsg, "process exited with code 1 (5 crashes in a row, held back 4 s)")
      // Held back until 4 s after the 5th crash, as the message says. The wall clock is set by hand
      // (only Date is faked; timers stay real), so a loaded machine cannot pass the hold unseen.
      const heldUntil = state.holdUntil
      vi.useFakeTimers({ toFake: ["Date"] })
      yield* Effect.addFinalizer(() => Effect.sync(() => vi.useRealTimers()))
      vi.setSystemTime(heldUntil - 1)
      yield* supervisor.tick
      assert.strictEqual(state.processes.size, 0, "held back: the reconcile starts nothing")
      vi.setSystemTime(heldUntil)
      yield* supervisor.tick
      assert.strictEqual(state.processes.size, 1, "the hold over: the reconcile starts a process")
    }),
  60_000
)

it.scopedLive(
  "a Driver stopped while its children still start stops them without waiting for the grace period",
  () =>
    Effect.gen(function*() {
      const gd = yield* gearmand
      // a child missing its drain would hold the close for 120 s, past this test's limit
      const { children, close } = yield* bareDriver(gd.server, { interval: 0, shutdownTimeout: 120 })
      const pids = children()
      assert.strictEqual(pids.length, 1)
      yield* close
      assert.isTrue(pids.every((pid) => !alive(pid)))
    }),
  30_000
)
