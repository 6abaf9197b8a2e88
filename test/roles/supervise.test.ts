// Roles as supervised layers (src/roles/supervise.ts) on the memory layers, time driven by
// TestClock: a loop that dies is logged at ERROR with its cause and restarted; one that keeps
// dying gives up with RoleFailed (exit 1 in the CLI); interruption is a clean shutdown.
import { assert, describe, it, vi } from "@effect/vitest"
import { Cause, Effect, Exit, Fiber, Layer, Logger, Option, Schedule, type Scope, TestClock } from "effect"
import { launchRoles } from "../../src/cli/roles.js"
import { reportFailure } from "../../src/cli/shared.js"
import * as Gearman from "../../src/gearman/Gearman.js"
import * as Client from "../../src/roles/Client.js"
import * as Controller from "../../src/roles/Controller.js"
import * as Injector from "../../src/roles/Injector.js"
import * as QueueRunner from "../../src/roles/QueueRunner.js"
import * as Supervise from "../../src/roles/supervise.js"
import * as Worker from "../../src/roles/Worker.js"
import { countedJobs, Storage } from "../../src/storage/Storage.js"
import * as StorageLayers from "../../src/storage/Storage.js"
import { until } from "../support/until.js"

const T0 = 1_700_000_000

interface Line {
  readonly level: string
  readonly message: string
  readonly cause: string
  readonly role: unknown
}

/** A logger that keeps every line (and prints none). */
const capture = () => {
  const lines: Array<Line> = []
  const logger = Logger.make(({ annotations, cause, logLevel, message }) => {
    lines.push({
      level: logLevel.label,
      message: Array.isArray(message) ? message.map(String).join(" ") : String(message),
      cause: Cause.isEmpty(cause) ? "" : Cause.pretty(cause),
      role: Option.getOrUndefined(
        Option.fromNullable([...annotations].find(([k]) => k === "role")?.[1])
      )
    })
  })
  return { lines, layer: Logger.replace(Logger.defaultLogger, logger) }
}

/** Storage whose claims die while `dying()` says so (a bug in the runner's loop, say). */
const dyingClaims = (dying: () => boolean) =>
  Layer.effect(
    Storage,
    Effect.map(Storage, (s) => ({
      ...s,
      claimDue: (...args: Parameters<typeof s.claimDue>) =>
        Effect.suspend(() => dying() ? Effect.die(new Error("claim exploded")) : s.claimDue(...args))
    }))
  ).pipe(Layer.provide(StorageLayers.layerMemory({ shards: [1] })))

const memoryGearman = () => Gearman.layerMemory({ servers: Gearman.makeMemoryServers() })

const settle = Effect.forEach(Array.from({ length: 200 }), () => Effect.yieldNow(), { discard: true })

const dueCount = Effect.flatMap(
  Storage,
  (s) => Effect.map(s.counts(), (c) => c.reduce((n, x) => n + countedJobs(x), 0))
)

const test = (title: string, body: Effect.Effect<void, unknown, Scope.Scope>) =>
  // The clock is set before the layers start: their timers would otherwise replay every tick
  // between 1970 and T0.
  it.scoped(title, () => Effect.zipRight(TestClock.setTime(T0 * 1000), body))

describe("supervise", () => {
  test(
    "a loop killed by a defect is logged at ERROR with its cause and started again after the backoff",
    Effect.gen(function*() {
      const log = capture()
      let runs = 0
      const loop = Effect.suspend(() => ++runs === 1 ? Effect.die(new Error("boom")) : Effect.never)
      const fiber = yield* Effect.forkScoped(Effect.provide(Supervise.supervise("Test", loop), log.layer))
      yield* until(Effect.sync(() => log.lines.length === 1), "the error line")
      const [line] = log.lines
      assert.strictEqual(line!.level, "ERROR")
      assert.strictEqual(line!.role, "Test")
      assert.include(line!.cause, "boom")
      // Not at once: the first backoff is 100 ms, jittered (80–120 ms).
      yield* settle
      assert.strictEqual(runs, 1)
      yield* TestClock.adjust("120 millis")
      yield* until(Effect.sync(() => runs === 2), "the restart")
      assert.strictEqual(log.lines.length, 1)
      // Interruption is shutdown: not logged, not restarted.
      const exit = yield* Fiber.interrupt(fiber)
      assert.isTrue(Exit.isInterrupted(exit))
      yield* TestClock.adjust("1 minute")
      assert.deepStrictEqual([runs, log.lines.length], [2, 1])
    })
  )

  test(
    "deaths spread wider than the window never give up; denser ones do, after the cap",
    Effect.gen(function*() {
      const options: Supervise.SuperviseOptions = {
        maxRestarts: 2,
        window: "1 minute",
        backoff: Schedule.spaced("1 second")
      }
      const log = capture()
      let runs = 0
      // Dies every 40 s: never more than two deaths within a minute.
      const slow = Effect.zipRight(Effect.sleep("40 seconds"), Effect.die(new Error("tired")))
      const fiber = yield* Effect.forkScoped(
        Supervise.supervise("Slow", Effect.zipRight(Effect.sync(() => runs++), slow), options).pipe(
          Effect.provide(log.layer)
        )
      )
      for (let i = 0; i < 10 * 41; i++) yield* Effect.zipRight(TestClock.adjust("1 second"), Effect.yieldNow())
      yield* settle
      assert.isAtLeast(runs, 10)
      assert.isTrue(Option.isNone(yield* Fiber.poll(fiber)), "still supervised")
      assert.isTrue(log.lines.every((l) => l.level === "ERROR"))
      // Every 10 s: the third death within a minute gives up.
      const fast = Effect.zipRight(Effect.sleep("10 seconds"), Effect.die(new Error("too often")))
      const failing = yield* Effect.fork(Effect.provide(Supervise.supervise("Fast", fast, options), log.layer))
      for (let i = 0; i < 40; i++) yield* Effect.zipRight(TestClock.adjust("1 second"), Effect.yieldNow())
      const exit = yield* Fiber.await(failing)
      assert.isTrue(Exit.isFailure(exit))
      const failure = Option.getOrThrow(Cause.failureOption((exit as Exit.Failure<never, Supervise.RoleFailed>).cause))
      assert.deepStrictEqual([failure._tag, failure.role, failure.restarts], ["RoleFailed", "Fast", 2])
      assert.include(failure.message, "too often")
      const fatal = log.lines.filter((l) => l.level === "FATAL")
      assert.strictEqual(fatal.length, 1)
      assert.strictEqual(fatal[0]!.role, "Fast")
      assert.include(fatal[0]!.cause, "too often")
    })
  )
})

describe("role layers", () => {
  test(
    "QueueRunner.layer: a loop killed by a defect restarts and keeps running jobs",
    Effect.gen(function*() {
      const log = capture()
      let dying = true
      const ran: Array<string> = []
      yield* Effect.gen(function*() {
        yield* Client.insertJobs(Array.from({ length: 5 }, (_, i) => ({ funcname: "work", arg: `${i}` })))
        yield* Layer.build(
          Layer.mergeAll(
            QueueRunner.layer({ batchRunSleep: "1 second" }),
            Worker.layer({ work: (job) => Effect.sync(() => void ran.push(job.text)) }, { pollInterval: "30 days" })
          )
        )
        yield* until(Effect.sync(() => log.lines.some((l) => l.level === "ERROR")), "the runner to die")
        const errors = log.lines.filter((l) => l.level === "ERROR")
        assert.strictEqual(errors.length, 1)
        assert.strictEqual(errors[0]!.role, "QueueRunner")
        assert.include(errors[0]!.cause, "claim exploded")
        dying = false
        yield* TestClock.adjust("1 second")
        yield* until(Effect.sync(() => ran.length === 5), "the jobs after the restart")
        yield* until(Effect.map(dueCount, (n) => n === 0), "their rows to be deleted")
        assert.deepStrictEqual([...ran].sort(), ["0", "1", "2", "3", "4"])
        assert.strictEqual(log.lines.filter((l) => l.level === "ERROR").length, 1)
      }).pipe(
        Effect.provide(Layer.mergeAll(dyingClaims(() => dying), memoryGearman(), Supervise.layer)),
        Effect.provide(log.layer)
      )
    })
  )

  test(
    "a QueueRunner whose loop always dies gives up after 10 restarts: FATAL, and launch fails with RoleFailed",
    Effect.gen(function*() {
      const log = capture()
      const launched = yield* Effect.fork(
        Supervise.launch(QueueRunner.layer()).pipe(
          Effect.provide(Layer.mergeAll(dyingClaims(() => true), memoryGearman())),
          Effect.provide(log.layer)
        )
      )
      // Backoffs of 100 ms doubling, capped at 10 s: about 45 s in all.
      for (let i = 0; i < 120 && Option.isNone(yield* Fiber.poll(launched)); i++) {
        yield* Effect.zipRight(TestClock.adjust("1 second"), settle)
      }
      const exit = yield* Fiber.await(launched)
      assert.isTrue(Exit.isFailure(exit))
      const failure = Option.getOrThrow(
        Cause.failureOption(
          (exit as Exit.Failure<never, Supervise.RoleFailed | QueueRunner.InvalidQueueRunnerOptions>)
            .cause
        )
      )
      assert.strictEqual(failure._tag, "RoleFailed")
      assert.deepStrictEqual(
        failure._tag === "RoleFailed" ? [failure.role, failure.restarts] : [],
        ["QueueRunner", Supervise.DEFAULT_MAX_RESTARTS]
      )
      assert.strictEqual(log.lines.filter((l) => l.level === "ERROR").length, Supervise.DEFAULT_MAX_RESTARTS)
      const fatal = log.lines.filter((l) => l.level === "FATAL")
      assert.strictEqual(fatal.length, 1)
      assert.include(fatal[0]!.cause, "claim exploded")
    })
  )

  test(
    "Worker.layer: serving that dies is served again; Injector, Controller and Worker layers run an injected job; closing them logs no error",
    Effect.gen(function*() {
      const log = capture()
      let serveDeaths = 0
      // The first serve of `work` dies (a stand-in for any defect while starting to serve).
      const flakyGearman = Layer.effect(
        Gearman.Gearman,
        Effect.map(Gearman.Gearman, (g): Gearman.GearmanService => ({
          ...g,
          serve: (handlers, options) =>
            "work" in handlers && serveDeaths++ === 0
              ? Effect.die(new Error("serve exploded"))
              : g.serve(handlers, options)
        }))
      ).pipe(Layer.provide(memoryGearman()))
      const ran: Array<string> = []
      yield* Effect.scoped(Effect.gen(function*() {
        yield* Layer.build(
          Layer.mergeAll(
            Injector.layer(),
            Controller.layer(),
            Worker.layer({ work: (job) => Effect.sync(() => void ran.push(job.text)) }, { pollInterval: "30 days" })
          )
        )
        yield* until(Effect.sync(() => log.lines.some((l) => l.level === "ERROR")), "the worker to die")
        assert.include(log.lines.find((l) => l.level === "ERROR")!.cause, "serve exploded")
        yield* TestClock.adjust("1 second")
        const gearman = yield* Gearman.Gearman
        const answer = yield* gearman.submit(Injector.INJECT_FUNCTION, JSON.stringify({ funcname: "work", arg: "hi" }))
        assert.include(answer.data.toString(), "jobid")
        yield* until(Effect.sync(() => ran.length === 1), "the injected job")
        yield* until(Effect.map(dueCount, (n) => n === 0), "its row to be deleted")
        assert.deepStrictEqual(ran, ["hi"])
      })).pipe(
        Effect.provide(Layer.mergeAll(StorageLayers.layerMemory({ shards: [1] }), flakyGearman, Supervise.layer)),
        Effect.provide(log.layer)
      )
      // Closed (shutdown): nothing more at ERROR or FATAL than the one death.
      assert.deepStrictEqual(log.lines.filter((l) => l.level === "ERROR" || l.level === "FATAL").length, 1)
      assert.strictEqual(serveDeaths, 2)
    })
  )

  test(
    "Worker.layer refuses a function name it cannot serve when it is built",
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        Layer.build(Worker.layer({ "bad name": () => Effect.void })).pipe(
          Effect.provide(Layer.mergeAll(StorageLayers.layerMemory({ shards: [1] }), memoryGearman(), Supervise.layer))
        )
      )
      assert.strictEqual(error._tag, "GearmanInvalidArgument")
    })
  )
})

describe("the CLI's composition", () => {
  it.live("a role that gives up ends launchRoles with RoleFailed, reported as exit code 1", () =>
    Effect.gen(function*() {
      const printed: Array<string> = []
      const dying = Supervise.roleLayer("QueueRunner", Effect.die(new Error("always")), {
        backoff: Schedule.spaced("1 millis"),
        maxRestarts: 2
      }).pipe(Layer.provideMerge(Supervise.layer))
      const before = process.exitCode
      const stderr = vi.spyOn(console, "error").mockImplementation((...args) => void printed.push(args.join(" ")))
      const log = capture()
      yield* reportFailure(launchRoles(dying, StorageLayers.layerMemory({ shards: [1] }))).pipe(
        Effect.provide(log.layer),
        Effect.ensuring(Effect.sync(() => {
          printed.push(`exit ${process.exitCode}`)
          process.exitCode = before
          stderr.mockRestore()
        }))
      )
      assert.deepStrictEqual(printed.slice(-1), ["exit 1"])
      assert.match(printed[0]!, /^garivini: QueueRunner gave up after 2 restart\(s\) within 5m: always$/)
      assert.strictEqual(log.lines.filter((l) => l.level === "FATAL").length, 1)
    }))
})
