// Low-latency mode end to end: MariaDB (two shards), a real gearmand, Injector, Controller,
// QueueRunner and workers; and the C `gearman` CLI as a client nobody here wrote.
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Fiber } from "effect"
import * as Gearman from "../../src/gearman/Gearman.js"
import * as Controller from "../../src/roles/Controller.js"
import * as Injector from "../../src/roles/Injector.js"
import * as QueueRunner from "../../src/roles/QueueRunner.js"
import * as Worker from "../../src/roles/Worker.js"
import { eventually, gearmand } from "../gearman/gearmand.js"
import { assertEachRanOnce, env, recorder, remaining } from "../support/e2e.js"
import { testShards } from "../support/mysql.js"
import { spawnRole } from "../support/spawnRole.js"
import { gearmanClient } from "../support/tools.js"

describe("low-latency mode on MariaDB and gearmand", () => {
  it.scopedLive(
    "2,000 jobs injected one by one while a QueueRunner polls: each runs exactly once, no row left",
    () =>
      Effect.gen(function*() {
        const shards = yield* testShards(2)
        const gd = yield* gearmand
        // Scoped inside the layers: workers stop (and flush) before the pools close.
        yield* Effect.scoped(Effect.gen(function*() {
          const { record, runs } = yield* recorder
          yield* Injector.serve()
          yield* Controller.serve()
          yield* Worker.serve({ fast: record }, { concurrency: 8 })
          const runner = yield* Effect.fork(QueueRunner.run({ batchRunSleep: "50 millis" }))
          const gearman = yield* Gearman.Gearman
          // A synchronous client: each inject waits for its answer before the next.
          for (let i = 0; i < 2000; i++) {
            const reply = yield* gearman.submit(
              Injector.INJECT_FUNCTION,
              JSON.stringify({ funcname: "fast", arg: `job ${i}` })
            )
            assert.match(reply.data.toString(), /^\{"dbid":[12],"jobid":\d+\}$/)
          }
          yield* eventually(Effect.map(remaining, (n) => n === 0), "every row to be deleted", 120_000)
          yield* Fiber.interrupt(runner)
          assertEachRanOnce(yield* runs, 2000)
        })).pipe(Effect.provide(env(shards, [gd.server])))
      }),
    180_000
  )

  it.scopedLive("a Controller killed mid-job: the job is dispatched again and completes", () =>
    Effect.gen(function*() {
      const shards = yield* testShards(1)
      const gd = yield* gearmand
      const child = yield* spawnRole({ role: "controller" }, shards[0]!, gd.server)
      // Scoped inside the layers: workers stop (and flush) before the pools close.
      yield* Effect.scoped(Effect.gen(function*() {
        const inFirstRun = yield* Deferred.make<void>()
        const controllerDead = yield* Deferred.make<void>()
        let attempts = 0
        yield* Worker.serve({
          slow: () =>
            Effect.gen(function*() {
              attempts++
              if (attempts === 1) {
                yield* Deferred.succeed(inFirstRun, undefined)
                yield* Deferred.await(controllerDead)
              }
            })
        }, { concurrency: 2 })
        yield* Injector.serve({ lease: "2 seconds" })
        const gearman = yield* Gearman.Gearman
        yield* gearman.submit(Injector.INJECT_FUNCTION, JSON.stringify({ funcname: "slow", arg: "x" }))
        yield* Deferred.await(inFirstRun)
        yield* child.kill
        yield* Deferred.succeed(controllerDead, undefined)
        // A healthy Controller and a QueueRunner take over.
        yield* Controller.serve()
        const runner = yield* Effect.fork(QueueRunner.run({ batchRunSleep: "100 millis", lease: "2 seconds" }))
        yield* eventually(Effect.map(remaining, (n) => n === 0), "the job to complete", 60_000)
        yield* Fiber.interrupt(runner)
        assert.isTrue(attempts >= 2, "it ran again after the Controller died")
      })).pipe(Effect.provide(env(shards, [gd.server])))
    }), 120_000)

  it.scopedLive(
    "the C gearman CLI injects a job that a worker written with the helper runs",
    () =>
      Effect.gen(function*() {
        const shards = yield* testShards(1)
        const gd = yield* gearmand
        // Scoped inside the layers: workers stop (and flush) before the pools close.
        yield* Effect.scoped(Effect.gen(function*() {
          const texts: Array<string> = []
          yield* Injector.serve()
          yield* Controller.serve()
          yield* Worker.serve({ hello: (job) => Effect.sync(() => void texts.push(job.text)) })
          const out = yield* gearmanClient(gd.port, [
            "-f",
            "inject_jobs",
            "{\"funcname\":\"hello\",\"arg\":\"from C\"}"
          ])
          assert.match(out.trim(), /^\{"dbid":1,"jobid":\d+\}$/)
          yield* eventually(Effect.map(remaining, (n) => n === 0), "the job to complete", 30_000)
          assert.deepStrictEqual(texts, ["from C"])
        })).pipe(Effect.provide(env(shards, [gd.server])))
      }),
    60_000
  )
})
