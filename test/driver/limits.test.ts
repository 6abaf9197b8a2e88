// Hard limits on processes, in process against a real gearmand, with real children and ticks
// run by hand: whoever asks (a min raised on the console, a reload's reconcile, the observer's
// demand), a job gains at most `startPerTick` processes a tick; a job never has more than
// `perJob` live processes, all jobs together never more than `total`; the console refuses values
// beyond them in its error format, and so do the start and a reload (ConfigInvalid).
import { assert, it } from "@effect/vitest"
import { Effect, Either, Option } from "effect"
import { driverJobs, loadModule } from "../../src/driver/attributes.js"
import { execute } from "../../src/driver/Console.js"
import * as Driver from "../../src/driver/Driver.js"
import * as Supervisor from "../../src/driver/Supervisor.js"
import { gearmand } from "../gearman/gearmand.js"
import { alive, fixture } from "./support.js"

const childEntry = "dist/driver/childMain.js"

it.scopedLive(
  "every start path shares the per-tick cap; per-job and total maxima hold; the console refuses values beyond them",
  () =>
    Effect.gen(function*() {
      const gd = yield* gearmand
      const jobs = yield* driverJobs(yield* loadModule(fixture("Bare.mjs")))
      const limits = { startPerTick: 2, perJob: 5, total: 6 }
      const supervisor = yield* Supervisor.make(jobs, {
        servers: [gd.server],
        workerOptions: () => ({}),
        childEntry,
        limits
      })
      const echo = Option.getOrThrow(supervisor.get("bare_echo"))
      const min = Option.getOrThrow(supervisor.get("bare_min"))
      // The most live processes seen after any step (nothing exits in this test, so it only grows).
      let peak = 0
      const processes = (state: Supervisor.JobState) => {
        peak = Math.max(peak, supervisor.live())
        return state.processes.size
      }
      const ask = (line: string) =>
        Effect.map(execute(supervisor, line), (a) => (a._tag === "Lines" ? a.lines : [a._tag]))

      // Beyond the maxima: refused, in the console's error format, and nothing changes.
      assert.deepStrictEqual(yield* ask("set_processes bare_echo 100000 100000"), [
        "ERR invalid_value: max_processes must be <= 5 (bare_echo: 100000)",
        "."
      ])
      assert.deepStrictEqual(yield* ask("set_max_processes bare_echo 6"), [
        "ERR invalid_value: max_processes must be <= 5 (bare_echo: 6)",
        "."
      ])
      assert.deepStrictEqual([echo.min, echo.max], [0, 2])

      yield* supervisor.tick
      assert.deepStrictEqual([processes(echo), processes(min)], [0, 1])
      // A min raised on the console: the next reconcile starts only what is left of this tick's budget...
      assert.deepStrictEqual(yield* ask("set_processes bare_echo 5 5"), ["OK", "."])
      yield* supervisor.reconcile
      assert.strictEqual(processes(echo), 2)
      // ...and so do a reload's reconcile and the observer's demand in the same tick.
      yield* supervisor.reconcile
      yield* supervisor.start(echo, 10, "demand")
      assert.strictEqual(processes(echo), 2)
      yield* supervisor.tick
      assert.strictEqual(processes(echo), 4)
      yield* supervisor.tick
      yield* supervisor.tick
      assert.strictEqual(processes(echo), 5)

      // The mins may not add up to more than the total: 5 + 2 > 6.
      assert.deepStrictEqual(yield* ask("set_min_processes bare_min 2"), [
        "ERR invalid_value: min_processes of all jobs must add up to <= 6 (7)",
        "."
      ])
      // A max may, but demand starts nothing once the total is reached.
      assert.deepStrictEqual(yield* ask("set_max_processes bare_min 2"), ["OK", "."])
      yield* supervisor.tick
      yield* supervisor.start(min, 1, "demand")
      assert.strictEqual(processes(min), 1)
      assert.strictEqual(peak, 6)
      // They are real processes, all alive.
      const pids = supervisor.states().flatMap((s) => [...s.processes.keys()])
      assert.strictEqual(pids.length, 6)
      assert.isTrue(pids.every(alive))
    }),
  60_000
)

it.scopedLive(
  "min/max beyond the limits stop the start and are refused by a reload, which changes nothing",
  () =>
    Effect.gen(function*() {
      const gd = yield* gearmand
      const base = { modules: [fixture("Bare.mjs")], servers: [gd.server], consolePort: 0, interval: 0, childEntry }
      // Bare's jobs have max 2
      const tooMany = yield* Effect.either(Driver.make({ ...base, maxProcessesPerJob: 1 }))
      assert.isTrue(
        Either.isLeft(tooMany) && tooMany.left._tag === "ConfigInvalid" &&
          tooMany.left.message.includes("max_processes must be <= 1")
      )
      const driver = yield* Driver.make({ ...base, maxProcesses: 3 })
      const refused = yield* Effect.either(driver.reload({ bare_echo: { min_processes: 3, max_processes: 3 } }))
      assert.isTrue(
        Either.isLeft(refused) && refused.left.message.includes("min_processes of all jobs must add up to <= 3 (4)")
      )
      const echo = Option.getOrThrow(driver.supervisor.get("bare_echo"))
      assert.deepStrictEqual([echo.min, echo.max], [0, 2])
    }),
  60_000
)
