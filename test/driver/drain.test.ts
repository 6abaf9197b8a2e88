// Draining busy children: whoever stops a process (console `kill`/`killall`, a lowered max, the
// observer's scale-down), a job it is running finishes in it, and its answer is that process's
// pid (a killed process would have its job handed to another one). A lowered max and the
// scale-down drain idle processes, never a busy one while an idle one will do. The Driver's own
// tick refills the start budget: a job gains at most `max_start_per_tick` processes a tick.
// (SIGKILL after the grace period: shutdown.test.ts; SIGHUP with a bad file: driver.test.ts and
// console.test.ts.)
import { assert, layer, it as vit } from "@effect/vitest"
import { Context, Effect, Fiber, Layer, Option, TestClock, TestServices } from "effect"
import { driverJobs, loadModule } from "../../src/driver/attributes.js"
import * as Driver from "../../src/driver/Driver.js"
import { makeTick } from "../../src/driver/Observer.js"
import * as Supervisor from "../../src/driver/Supervisor.js"
import type { FunctionStatus } from "../../src/protocol/admin.js"
import { eventually, gearmand, live } from "../gearman/gearmand.js"
import { alive, fixture, startDriver, type Driver as RunningDriver } from "./support.js"

const JOB = "Drain::sleep"
const childEntry = "dist/driver/childMain.js"

class DriverUnderTest extends Context.Tag("test/DrainDriver")<DriverUnderTest, RunningDriver>() {}

// No observer (interval 0): only the console and the reconcile start and stop processes here.
const driverLayer = Layer.scoped(DriverUnderTest, startDriver([fixture("Drain.mjs")], { interval: 0 }))

/** The pid that began job `id`, from the child's `begin <id> <pid>` line in the Driver's log. */
const begunBy = (output: string, id: string) => {
  const m = output.match(new RegExp(`STDOUT: begin ${id} (\\d+)`))
  return m ? Number(m[1]) : undefined
}

/** Submits `id` sleeping `ms` in the background of the test; joins to the pid that answered. */
const submit = (driver: RunningDriver, id: string, ms: number) =>
  Effect.fork(Effect.map(driver.gearman.submit(JOB, `${id} ${ms}`), (r) => Number(r.data.toString("utf8"))))

/** A job's answer; the deadline guards against a job lost with a killed process (a hang, not a timing). */
const answer = <A, E>(fiber: Fiber.Fiber<A, E>, what: string) =>
  Fiber.join(fiber).pipe(
    Effect.timeoutFail({ duration: "30 seconds", onTimeout: () => new Error(`no answer to ${what}`) }),
    Effect.orDie
  )

/** Waits until every job in `ids` has begun; their pids, in order. */
const begun = (driver: RunningDriver, ids: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    yield* eventually(
      Effect.sync(() => ids.every((id) => begunBy(driver.output(), id) !== undefined)),
      `jobs ${ids.join(", ")} running`
    )
    return ids.map((id) => begunBy(driver.output(), id)!)
  })

layer(driverLayer, { excludeTestServices: true, timeout: "60 seconds" })("garivini driver: draining", (it) => {
  it.effect("killall with every process busy: each job finishes in its process, then new processes replace them", () =>
    Effect.gen(function*() {
      const driver = yield* DriverUnderTest
      assert.deepStrictEqual(yield* driver.ask(`set_processes ${JOB} 2 2`), ["OK", "."])
      yield* eventually(Effect.map(driver.processes(JOB), (n) => n === 2), "two processes")
      const before = yield* driver.pids(JOB)
      const jobs = [yield* submit(driver, "k1", 2500), yield* submit(driver, "k2", 2500)]
      const busy = yield* begun(driver, ["k1", "k2"])
      assert.sameMembers(busy, before, "one job in each process")
      assert.deepStrictEqual(yield* driver.ask(`killall ${JOB}`), ["OK", "."])
      // Drained: each job is answered by the process that began it.
      assert.deepStrictEqual(yield* answer(Fiber.all(jobs), "the drained jobs"), busy)
      yield* eventually(
        Effect.sync(() =>
          before.every((pid) => driver.output().includes(`(${pid}) [${JOB}] Exited with status code 0`))
        ),
        "both drained processes to exit 0"
      )
      yield* eventually(
        Effect.map(driver.pids(JOB), (p) => p.length === 2 && !p.some((pid) => before.includes(pid))),
        "two new processes"
      )
    }))

  it.effect("a lowered max drains the idle process first, then a busy one, whose job finishes", () =>
    Effect.gen(function*() {
      const driver = yield* DriverUnderTest
      assert.deepStrictEqual(yield* driver.ask(`set_processes ${JOB} 3 3`), ["OK", "."])
      yield* eventually(Effect.map(driver.processes(JOB), (n) => n === 3), "three processes")
      const three = yield* driver.pids(JOB)
      const jobs = [yield* submit(driver, "m1", 2500), yield* submit(driver, "m2", 2500)]
      const busy = yield* begun(driver, ["m1", "m2"])
      const idle = three.filter((pid) => !busy.includes(pid))
      assert.strictEqual(idle.length, 1)
      // Two over the max: the idle process and one busy process drain.
      assert.deepStrictEqual(yield* driver.ask(`set_processes ${JOB} 0 1`), ["OK", "."])
      assert.deepStrictEqual(
        yield* answer(Fiber.all(jobs), "the drained jobs"),
        busy,
        "both jobs finished where they began"
      )
      yield* eventually(
        Effect.map(driver.pids(JOB), (p) => p.length === 1),
        "one process left"
      )
      const [kept] = yield* driver.pids(JOB)
      assert.include(busy, kept, "a busy process is kept, the idle one drained")
      assert.isFalse(alive(idle[0]!))
      assert.deepStrictEqual(yield* driver.ask(`set_processes ${JOB} 0 4`), ["OK", "."])
    }))
})

vit.scopedLive(
  "the observer's scale-down drains idle processes only; a drain that finds its process busy lets the job finish",
  () =>
    Effect.gen(function*() {
      const gd = yield* gearmand
      const jobs = yield* driverJobs(yield* loadModule(fixture("Drain.mjs")))
      const supervisor = yield* Supervisor.make(jobs, {
        servers: [gd.server],
        workerOptions: () => ({}),
        childEntry,
        shutdownTimeout: "20 seconds"
      })
      const state = Option.getOrThrow(supervisor.get(JOB))
      const processes = () => [...state.processes.values()]
      yield* supervisor.start(state, 2, "test")
      yield* eventually(
        Effect.sync(() => processes().length === 2 && processes().every((p) => p.state === "idle")),
        "two idle processes"
      )
      const gearman = yield* live([gd.server])
      const pidOf = (id: string, ms: number) =>
        Effect.fork(Effect.map(gearman.submit(JOB, `${id} ${ms}`), (r) => Number(r.data.toString("utf8"))))
      const busyProcess = () => processes().find((p) => p.state === "busy")

      // The queue read as empty, so everything above min 0 idle for 0 s may go: only the idle one does.
      const tick = makeTick(supervisor, Effect.succeed(new Map<string, FunctionStatus>()), { maxIdleTime: 0 })
      const first = yield* pidOf("s1", 2000)
      yield* eventually(Effect.sync(() => busyProcess() !== undefined), "a busy process")
      const busy = busyProcess()!
      const idle = processes().find((p) => p !== busy)!
      yield* tick
      assert.isTrue(idle.stopping, "the idle process drains")
      assert.isFalse(busy.stopping, "the busy process is not picked")
      yield* eventually(Effect.sync(() => !state.processes.has(idle.pid)), "the idle process to exit")
      assert.strictEqual(yield* answer(first, "s1"), busy.pid)

      // The observer saw it idle, but it took a job since: the drain lets that job finish.
      const second = yield* pidOf("s2", 2000)
      yield* eventually(Effect.sync(() => busy.state === "busy"), "the second job running")
      busy.state = "idle"
      busy.idleSince = 0
      yield* tick
      assert.isTrue(busy.stopping)
      assert.strictEqual(yield* answer(second, "s2"), busy.pid, "the job finished in the drained process")
      yield* eventually(Effect.sync(() => state.processes.size === 0), "the drained process to exit")
      assert.isFalse(alive(busy.pid))
    }),
  60_000
)

vit.scoped(
  "the Driver's tick starts at most max_start_per_tick processes of a job, whatever its min",
  () =>
    Effect.gen(function*() {
      // gearmand and the children run in real time; only the Driver's 250 ms tick follows the TestClock.
      const gd = yield* TestServices.provideLive(gearmand)
      const driver = yield* Driver.make({
        modules: [fixture("Drain.mjs")],
        servers: [gd.server],
        consolePort: 0,
        interval: 0,
        childEntry,
        shutdownTimeout: 20,
        maxStartPerTick: 2,
        runtimeAttributes: { [JOB]: { min_processes: 5, max_processes: 5 } }
      })
      const state = Option.getOrThrow(driver.supervisor.get(JOB))
      // Forks are synchronous, so a tick's starts are all counted once its fiber has run; no other
      // tick can come until the clock moves.
      const afterTick = (expected: number) =>
        Effect.gen(function*() {
          for (let i = 0; i < 500 && state.processes.size < expected; i++)
            yield* Effect.promise(() => new Promise((r) => setTimeout(r, 10)))
          return state.processes.size
        })
      assert.strictEqual(yield* afterTick(2), 2, "the first tick starts 2")
      yield* TestClock.adjust("250 millis")
      assert.strictEqual(yield* afterTick(4), 4, "the second tick 2 more")
      yield* TestClock.adjust("250 millis")
      assert.strictEqual(yield* afterTick(5), 5, "the third the last one")
      yield* TestClock.adjust("250 millis")
      assert.strictEqual(yield* afterTick(5), 5)
    }),
  60_000
)
