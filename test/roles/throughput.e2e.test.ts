// Throughput mode end to end: MariaDB (two shards), a real gearmand, QueueRunners and workers.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import * as Client from "../../src/roles/Client.js"
import * as QueueRunner from "../../src/roles/QueueRunner.js"
import * as Worker from "../../src/roles/Worker.js"
import { eventually, gearmand } from "../gearman/gearmand.js"
import { mysqlHost, mysqlPort, testShards } from "../support/mysql.js"
import { assertEachRanOnce, env, recorder, remaining } from "../support/e2e.js"
import { makeProxy } from "../support/proxy.js"
import { spawnRole } from "../support/spawnRole.js"

const insertMany = (n: number, funcname: string) =>
  Effect.forEach(
    Array.from({ length: Math.ceil(n / 1000) }, (_, b) => Math.min(1000, n - b * 1000)),
    (size) => Client.insertJobs(Array.from({ length: size }, (_, i) => ({ funcname, arg: `job ${i}` }))),
    { discard: true }
  )

describe("throughput mode on MariaDB and gearmand", () => {
  it.scopedLive(
    "20,000 jobs, one runner, several workers: each runs exactly once and every row is gone",
    () =>
      Effect.gen(function*() {
        const shards = yield* testShards(2)
        const gd = yield* gearmand
        // Scoped inside the layers: workers stop (and flush) before the pools close.
        yield* Effect.scoped(Effect.gen(function*() {
          yield* insertMany(20_000, "e2e")
          const { record, runs } = yield* recorder
          // Three workers, each with its own connections and jobs in flight.
          yield* Effect.forEach([1, 2, 3], () => Worker.serve({ e2e: record }, { concurrency: 4 }), { discard: true })
          const runner = yield* Effect.fork(QueueRunner.run({ batchRunSleep: "100 millis", deferFor: "1 second" }))
          yield* eventually(Effect.map(remaining, (n) => n === 0), "every row to be deleted", 120_000)
          yield* Fiber.interrupt(runner)
          const counts = yield* runs
          assertEachRanOnce(counts, 20_000)
          assert.deepStrictEqual(new Set([...counts.keys()].map((k) => k.split(":")[0])), new Set(["1", "2"]))
        })).pipe(Effect.provide(env(shards, [gd.server])))
      }),
    180_000
  )

  it.scopedLive("two runners at once share the work: still exactly once", () =>
    Effect.gen(function*() {
      const shards = yield* testShards(2)
      const gd = yield* gearmand
      // Scoped inside the layers: workers stop (and flush) before the pools close.
      yield* Effect.scoped(Effect.gen(function*() {
        yield* insertMany(6_000, "pair")
        const { record, runs } = yield* recorder
        yield* Worker.serve({ pair: record }, { concurrency: 8 })
        const runners = yield* Effect.forEach([1, 2], () =>
          Effect.fork(QueueRunner.run({ batchRunSleep: "50 millis", deferFor: "1 second" })))
        yield* eventually(
          Effect.map(remaining, (n) =>
            n === 0),
          "every row to be deleted",
          120_000
        )
        yield* Effect.forEach(runners, Fiber.interrupt)
        assertEachRanOnce(yield* runs, 6_000)
      })).pipe(Effect.provide(env(shards, [gd.server])))
    }), 180_000)

  it.scopedLive("a worker process killed mid-job: the job runs again and completes", () =>
    Effect.gen(function*() {
      const shards = yield* testShards(1)
      const gd = yield* gearmand
      const child = yield* spawnRole({ role: "worker", fn: "victim" }, shards[0]!, gd.server)
      // Scoped inside the layers: workers stop (and flush) before the pools close.
      yield* Effect.scoped(Effect.gen(function*() {
        const { handle } = yield* Client.insertJob({ funcname: "victim", arg: "precious" })
        const runner = yield* Effect.fork(QueueRunner.run({ batchRunSleep: "100 millis", lease: "2 seconds" }))
        assert.strictEqual(yield* child.started, `1:${handle.jobid}`)
        // The process dies mid-job; a healthy worker takes over.
        yield* child.kill
        const { record, runs } = yield* recorder
        yield* Worker.serve({ victim: record })
        yield* eventually(Effect.map(remaining, (n) => n === 0), "the job to complete", 60_000)
        yield* Fiber.interrupt(runner)
        assert.deepStrictEqual([...(yield* runs).keys()], [`1:${handle.jobid}`])
      })).pipe(Effect.provide(env(shards, [gd.server])))
    }), 120_000)

  it.scopedLive(
    "gearmand killed and restarted mid-run: every job still completes (lost ones after their lease)",
    () =>
      Effect.gen(function*() {
        const shards = yield* testShards(1)
        const gd = yield* gearmand
        // Scoped inside the layers: workers stop (and flush) before the pools close.
        yield* Effect.scoped(Effect.gen(function*() {
          yield* insertMany(3_000, "crash")
          const { record, runs } = yield* recorder
          // A slow worker, so that jobs are still queued in gearmand when it dies.
          yield* Worker.serve({ crash: (job) => Effect.zipRight(Effect.sleep("2 millis"), record(job)) }, {
            concurrency: 2
          })
          const runner = yield* Effect.fork(
            QueueRunner.run({ batchRunSleep: "100 millis", lease: "3 seconds", deferFor: "1 second" })
          )
          yield* eventually(Effect.map(runs, (m) => m.size >= 300), "some jobs to run")
          yield* gd.kill
          yield* Effect.sleep("500 millis")
          yield* gd.restart
          yield* eventually(Effect.map(remaining, (n) => n === 0), "every row to be deleted", 120_000)
          yield* Fiber.interrupt(runner)
          const counts = yield* runs
          assert.strictEqual(counts.size, 3_000, "every job ran at least once")
        })).pipe(Effect.provide(env(shards, [gd.server])))
      }),
    180_000
  )

  it.scopedLive(
    "one shard stopped: the other keeps flowing; the stopped one's jobs run once it is back",
    () =>
      Effect.gen(function*() {
        const [one, two] = yield* testShards(2)
        const proxy = yield* makeProxy({ host: mysqlHost, port: mysqlPort })
        const gd = yield* gearmand
        // Scoped inside the layers: workers stop (and flush) before the pools close.
        yield* Effect.scoped(Effect.gen(function*() {
          // 2,000 jobs spread over both shards, pinned there by their unique keys.
          const keys = Array.from({ length: 2000 }, (_, i) => `k${i}`)
          const outcomes = yield* Client.insertJobs(keys.map((k) => ({ funcname: "halves", uniqkey: k })))
          const onOne = outcomes.filter((o) => o.handle.dbid === 1).length
          assert.isTrue(onOne > 0 && onOne < 2000)
          yield* proxy.stop
          const { record, runs } = yield* recorder
          yield* Worker.serve({ halves: record }, { concurrency: 4 })
          const runner = yield* Effect.fork(QueueRunner.run({ batchRunSleep: "100 millis", deferFor: "1 second" }))
          yield* eventually(Effect.map(runs, (m) => m.size === 2000 - onOne), "shard 2's jobs to run", 60_000)
          assert.isTrue([...(yield* runs).keys()].every((k) => k.startsWith("2:")))
          yield* proxy.start
          yield* eventually(Effect.map(remaining, (n) => n === 0), "shard 1's jobs too", 120_000)
          yield* Fiber.interrupt(runner)
          assert.strictEqual((yield* runs).size, 2000)
        })).pipe(Effect.provide(env([{ ...one!, port: proxy.port }, two!], [gd.server])))
      }),
    180_000
  )
})
