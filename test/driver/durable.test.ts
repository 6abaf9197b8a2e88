// A Garivini worker (the worker helper) run by the Driver: rows dispatched by a QueueRunner are
// completed, or backed off when the handler fails, from the Driver's child process. And children
// do not outlive their Driver.
import { assert, it } from "@effect/vitest"
import { join } from "node:path"
import { Effect, Fiber, Layer, Option } from "effect"
import * as Gearman from "../../src/gearman/Gearman.js"
import { encodeWorkerJson } from "../../src/Job.js"
import * as Client from "../../src/roles/Client.js"
import * as QueueRunner from "../../src/roles/QueueRunner.js"
import { layerSqlite, Storage } from "../../src/storage/Storage.js"
import { eventually, gearmand, live } from "../gearman/gearmand.js"
import { env, remaining } from "../support/e2e.js"
import { tempDir } from "../support/files.js"
import { makeProxy } from "../support/proxy.js"
import { mysqlHost, mysqlPort, testShards } from "../support/mysql.js"
import { alive, fixture, startDriver } from "./support.js"

it.scopedLive(
  "a durable job completes its row; a failing one is backed off; one of maxAttempts 1 is dead",
  () =>
    Effect.gen(function*() {
      const [shard] = yield* testShards(1)
      const driver = yield* startDriver([fixture("Durable.mjs")], { interval: 0 }, {
        env: { GARIVINI_DB: `mysql://root@${mysqlHost}:${mysqlPort}/${shard!.database}` }
      })
      yield* Effect.scoped(Effect.gen(function*() {
        yield* Client.insertJobs([
          { funcname: "Durable::resize", arg: "a" },
          { funcname: "Durable::resize", arg: "b" },
          {
            funcname: "Durable::resize",
            arg: "fail"
          },
          { funcname: "Durable::once" }
        ])
        const runner = yield* Effect.fork(QueueRunner.run({ batchRunSleep: "50 millis" }))
        yield* eventually(Effect.map(remaining, (n) => n === 2), "the two good rows deleted")
        const storage = yield* Storage
        const list = Effect.orDie(storage.list({ funcname: "Durable::resize" }))
        yield* eventually(
          Effect.map(list, (jobs) => jobs.length === 1 && jobs[0]!.failcount === 1),
          "the failed row backed off"
        )
        const [left] = yield* list
        assert.strictEqual(Buffer.from(left!.arg).toString(), "fail")
        assert.deepStrictEqual([left!.ended, left!.lastError], [null, "cannot resize"])
        const dead = Effect.orDie(storage.list({ funcname: "Durable::once", state: "dead" }))
        yield* eventually(Effect.map(dead, (jobs) => jobs.length === 1), "the one-attempt row dead")
        assert.strictEqual((yield* dead)[0]!.lastError, "no second chance")
        yield* Fiber.interrupt(runner)
        // The child's stdout reaches the Driver through a pipe: it may arrive after the row is gone.
        yield* eventually(
          Effect.sync(() =>
            driver.output().includes("STDOUT: durable a") && driver.output().includes("STDOUT: durable b")
          ),
          "the child's output relayed"
        )
      })).pipe(Effect.provide(env([shard!], [driver.gearmand.server])))
    }),
  60_000
)

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

it.scopedLive(
  "a Driver child whose connection is cut while it runs a stored job answers the job handed back without running it again",
  () =>
    Effect.gen(function*() {
      const filename = join(yield* tempDir("garivini-driver-cut-"), "jobs.db")
      // The child serves two servers: its own gearmand, and a second one behind a proxy.
      const second = yield* gearmand
      const proxy = yield* makeProxy({ host: "127.0.0.1", port: second.port })
      const driver = yield* startDriver([fixture("SlowDurable.mjs")], { interval: 0 }, {
        env: { GARIVINI_DB: `sqlite:${filename}` },
        extraServers: [`127.0.0.1:${proxy.port}`]
      })
      const fn = "SlowDurable::slow"
      const direct = yield* live([second.server])
      const status = Effect.map(
        Effect.orDie(direct.admin.status(second.server)),
        (rows) => rows.find((r) => r.name === fn) ?? { total: 0, running: 0, workers: 0 }
      )
      yield* eventually(Effect.map(status, (s) => s.workers === 1), "the child registered behind the proxy")
      const starts = () => driver.output().split("STDOUT: start cut").length - 1
      yield* Effect.scoped(Effect.gen(function*() {
        const storage = yield* Storage
        const [stored] = yield* Client.insertJobs([{ funcname: fn, arg: "cut" }])
        const row = Option.getOrThrow(yield* storage.get(stored!.handle))
        // Dispatched as the QueueRunner would, to the server behind the proxy.
        yield* direct.submitBackground(fn, encodeWorkerJson(row))
        yield* eventually(Effect.sync(() => starts() === 1), "the run to start")
        yield* proxy.cutAll
        // The child runs one job at a time: it grabs again once the run ended, gets the job back
        // (its answer was lost with the connection) and answers it from the run.
        yield* eventually(Effect.map(status, (s) => s.total === 0 && s.workers === 1), "the job answered")
        yield* eventually(Effect.map(remaining, (n) => n === 0), "the row completed")
        yield* Effect.sleep("1 second")
        assert.strictEqual(starts(), 1, "the handler ran once")
        assert.include(driver.output(), "answered again")
      })).pipe(Effect.provide(Layer.orDie(layerSqlite({ filename }))))
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
