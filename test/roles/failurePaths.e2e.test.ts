// Failure paths of the roles on MariaDB and a real gearmand: the worker helper stopping with
// completions queued, a handler that dies.
import { assert, describe, it } from "@effect/vitest"
import * as Mysql from "mysql2/promise"
import { Deferred, Effect, Exit, Fiber, Scope } from "effect"
import { Gearman } from "../../src/gearman/Gearman.js"
import { encodeWorkerJson } from "../../src/Job.js"
import * as Client from "../../src/roles/Client.js"
import * as QueueRunner from "../../src/roles/QueueRunner.js"
import * as Worker from "../../src/roles/Worker.js"
import { Storage } from "../../src/storage/Storage.js"
import { eventually, gearmand } from "../gearman/gearmand.js"
import { env, recorder, remaining } from "../support/e2e.js"
import { adminQuery, mysqlHost, mysqlPort, testShards } from "../support/mysql.js"

/** A root connection of its own, for holding a transaction open across steps. */
const rootConnection = Effect.acquireRelease(
  Effect.promise(() => Mysql.createConnection({ host: mysqlHost, port: mysqlPort, user: "root", password: "" })),
  (conn) => Effect.promise(() => conn.end())
)

describe("role failure paths on MariaDB and gearmand", () => {
  it.scopedLive("the worker helper stopped while its DELETEs are held up: every queued completion is deleted before it stops", () =>
    Effect.gen(function*() {
      const [shard] = yield* testShards(1)
      const gd = yield* gearmand
      yield* Effect.scoped(Effect.gen(function*() {
        const storage = yield* Storage
        const gearman = yield* Gearman
        yield* Client.insertJobs(Array.from({ length: 10 }, (_, i) => ({ funcname: "flushed", arg: `job ${i}` })))
        const jobs = yield* storage.list()
        assert.strictEqual(jobs.length, 10)
        // Every row locked by another transaction: the worker's first DELETE waits on it, so
        // the other completions queue behind it.
        const locker = yield* rootConnection
        yield* Effect.promise(() => locker.query("START TRANSACTION"))
        yield* Effect.promise(() => locker.query(`SELECT jobid FROM \`${shard!.database}\`.job FOR UPDATE`))

        const workerScope = yield* Scope.make()
        const { record, runs } = yield* recorder
        yield* Worker.serve({ flushed: record }, { concurrency: 4 }).pipe(Scope.extend(workerScope))
        // Dispatched as the QueueRunner would: the worker JSON of each row.
        yield* Effect.forEach(jobs, (job) => gearman.submitBackground("flushed", encodeWorkerJson(job)), { discard: true })
        yield* eventually(Effect.map(runs, (m) => m.size === 10), "every handler to finish")
        assert.strictEqual(yield* remaining, 10, "the DELETEs are held up by the lock")

        // Stop the worker while its completions wait, then let the DELETEs through.
        const stopping = yield* Effect.fork(Scope.close(workerScope, Exit.void))
        yield* eventually(
          Effect.map(Effect.orDie(gearman.queueDepths()), (d) => (d.get("flushed")?.workers ?? 0) === 0),
          "the worker to leave gearmand"
        )
        yield* Effect.promise(() => locker.query("COMMIT"))
        yield* Fiber.join(stopping)
        assert.strictEqual(yield* remaining, 0, "every queued completion was deleted by the time the worker stopped")
      })).pipe(Effect.provide(env([shard!], [gd.server])))
    }), 60_000)

  it.scopedLive("a handler that dies with a defect backs its row off like Worker.fail: failcount 1, run_after 120 s on (not the lease)", () =>
    Effect.gen(function*() {
      const [shard] = yield* testShards(1)
      const gd = yield* gearmand
      yield* Effect.scoped(Effect.gen(function*() {
        const { handle } = yield* Client.insertJob({ funcname: "dies", arg: "x" })
        const ran = yield* Deferred.make<void>()
        yield* Worker.serve({
          dies: () => Effect.zipRight(Deferred.succeed(ran, undefined), Effect.die(new Error("handler defect")))
        })
        const before = Math.floor(Date.now() / 1000)
        // A lease of an hour: only the backoff can bring run_after within minutes.
        const runner = yield* Effect.fork(QueueRunner.run({ batchRunSleep: "100 millis", lease: "1 hour" }))
        yield* Deferred.await(ran)
        const row = Effect.map(
          adminQuery(`SELECT failcount, run_after FROM \`${shard!.database}\`.job WHERE jobid = ?`, [handle.jobid]),
          ([rows]) => (rows as ReadonlyArray<Record<string, unknown>>).map((r) => ({ failcount: Number(r["failcount"]), run_after: Number(r["run_after"]) }))[0]
        )
        yield* eventually(Effect.map(row, (r) => r !== undefined && r.failcount === 1), "the failure to be recorded")
        yield* Fiber.interrupt(runner)
        const after = Math.floor(Date.now() / 1000)
        const { run_after } = (yield* row)!
        assert.isAtLeast(run_after, before + 120)
        assert.isAtMost(run_after, after + 120, "backed off by 2^1 * 60 s, not leased for an hour")
      })).pipe(Effect.provide(env([shard!], [gd.server])))
    }), 60_000)
})
