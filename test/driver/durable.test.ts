// A Garivini worker (the worker helper) run by the Driver: rows dispatched by a QueueRunner are
// completed, or backed off when the handler fails, from the Driver's child process. And children
// do not outlive their Driver.
import { assert, it } from "@effect/vitest"
import { join } from "node:path"
import { Effect, Fiber, Layer } from "effect"
import * as Gearman from "../../src/gearman/Gearman.js"
import * as Client from "../../src/roles/Client.js"
import * as QueueRunner from "../../src/roles/QueueRunner.js"
import { layerSqlite, Storage } from "../../src/storage/Storage.js"
import { eventually } from "../gearman/gearmand.js"
import { env, remaining } from "../support/e2e.js"
import { tempDir } from "../support/files.js"
import { mysqlHost, mysqlPort, testShards } from "../support/mysql.js"
import { alive, fixture, startDriver } from "./support.js"

it.scopedLive("a durable job completes its row; a failing one is backed off", () =>
  Effect.gen(function*() {
    const [shard] = yield* testShards(1)
    const driver = yield* startDriver([fixture("Durable.mjs")], { interval: 0 }, {
      env: { GARIVINI_DB: `mysql://root@${mysqlHost}:${mysqlPort}/${shard!.database}` }
    })
    yield* Effect.scoped(Effect.gen(function*() {
      yield* Client.insertJobs([{ funcname: "Durable::resize", arg: "a" }, { funcname: "Durable::resize", arg: "b" }, {
        funcname: "Durable::resize",
        arg: "fail"
      }])
      const runner = yield* Effect.fork(QueueRunner.run({ batchRunSleep: "50 millis" }))
      yield* eventually(Effect.map(remaining, (n) => n === 1), "the two good rows deleted")
      const storage = yield* Storage
      const list = Effect.orDie(storage.list({}))
      yield* eventually(
        Effect.map(list, (jobs) => jobs.length === 1 && jobs[0]!.failcount === 1),
        "the failed row backed off"
      )
      const [left] = yield* list
      assert.strictEqual(Buffer.from(left!.arg).toString(), "fail")
      yield* Fiber.interrupt(runner)
      // The child's stdout reaches the Driver through a pipe: it may arrive after the row is gone.
      yield* eventually(
        Effect.sync(() =>
          driver.output().includes("STDOUT: durable a") && driver.output().includes("STDOUT: durable b")
        ),
        "the child's output relayed"
      )
    })).pipe(Effect.provide(env([shard!], [driver.gearmand.server])))
  }), 60_000)

it.scopedLive(
  "a durable job over a SQLite file (GARIVINI_DB=sqlite:…) completes its row",
  () =>
    Effect.gen(function*() {
      const filename = join(yield* tempDir("garivini-driver-sqlite-"), "jobs.db")
      const driver = yield* startDriver([fixture("Durable.mjs")], { interval: 0 }, {
        env: { GARIVINI_DB: `sqlite:${filename}` }
      })
      yield* Effect.scoped(Effect.gen(function*() {
        yield* Client.insertJobs([{ funcname: "Durable::resize", arg: "c" }])
        const runner = yield* Effect.fork(QueueRunner.run({ batchRunSleep: "50 millis" }))
        yield* eventually(Effect.map(remaining, (n) => n === 0), "the row deleted by the Driver's child")
        yield* Fiber.interrupt(runner)
        yield* eventually(
          Effect.sync(() => driver.output().includes("STDOUT: durable c")),
          "the child's output relayed"
        )
      })).pipe(
        Effect.provide(
          Layer.mergeAll(Layer.orDie(layerSqlite({ filename })), Gearman.layer({ servers: [driver.gearmand.server] }))
        )
      )
    }),
  60_000
)

it.scopedLive("children exit when the Driver dies", () =>
  Effect.gen(function*() {
    const driver = yield* startDriver([fixture("Bare.mjs")], { interval: 0 })
    yield* eventually(Effect.map(driver.processes("bare_min"), (n) => n === 1), "bare_min's process")
    const [child] = yield* driver.pids("bare_min")
    yield* driver.signal("SIGKILL")
    yield* eventually(Effect.sync(() => !alive(child!)), "the orphaned child to exit")
  }), 60_000)
