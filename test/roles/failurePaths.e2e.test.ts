// Failure paths of the roles on MariaDB and a real gearmand: the worker helper stopping with
// completions queued, a handler that dies, the QueueRunner with no job server or a refused batch.
import { assert, describe, it } from "@effect/vitest"
import * as Mysql from "mysql2/promise"
import { Deferred, Effect, Either, Exit, Fiber, Layer, Scope } from "effect"
import type { ShardConfig } from "../../src/storage/targets.js"
import { GearmanConnectionError } from "../../src/gearman/errors.js"
import * as GearmanLayers from "../../src/gearman/Gearman.js"
import { Gearman, type GearmanService } from "../../src/gearman/Gearman.js"
import { encodeWorkerJson } from "../../src/Job.js"
import * as Client from "../../src/roles/Client.js"
import * as Injector from "../../src/roles/Injector.js"
import * as QueueRunner from "../../src/roles/QueueRunner.js"
import * as Worker from "../../src/roles/Worker.js"
import * as StorageLayers from "../../src/storage/Storage.js"
import { Storage, type StorageShape } from "../../src/storage/Storage.js"
import { eventually, gearmand } from "../gearman/gearmand.js"
import { env, recorder, remaining } from "../support/e2e.js"
import { adminQuery, mysqlHost, mysqlPort, testShards } from "../support/mysql.js"

/** A root connection of its own, for holding a transaction open across steps. */
const rootConnection = Effect.acquireRelease(
  Effect.promise(() => Mysql.createConnection({ host: mysqlHost, port: mysqlPort, user: "root", password: "" })),
  (conn) => Effect.promise(() => conn.end())
)

describe("role failure paths on MariaDB and gearmand", () => {
  it.scopedLive(
    "the worker helper stopped while its DELETEs are held up: every queued completion is deleted before it stops",
    () =>
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
          yield* Effect.forEach(jobs, (job) => gearman.submitBackground("flushed", encodeWorkerJson(job)), {
            discard: true
          })
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
      }),
    60_000
  )

  it.scopedLive(
    "a handler that dies with a defect backs its row off like Worker.fail: failcount 1, run_after 120 s on (not the lease)",
    () =>
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
            ([rows]) =>
              (rows as ReadonlyArray<Record<string, unknown>>).map((r) => ({
                failcount: Number(r["failcount"]),
                run_after: Number(r["run_after"])
              }))[0]
          )
          yield* eventually(Effect.map(row, (r) => r !== undefined && r.failcount === 1), "the failure to be recorded")
          yield* Fiber.interrupt(runner)
          const after = Math.floor(Date.now() / 1000)
          const { run_after } = (yield* row)!
          assert.isAtLeast(run_after, before + 120)
          assert.isAtMost(run_after, after + 120, "backed off by 2^1 * 60 s, not leased for an hour")
        })).pipe(Effect.provide(env([shard!], [gd.server])))
      }),
    60_000
  )

  it.scopedLive(
    "the QueueRunner claims nothing while no job server is up: the rows stay due, none leased",
    () =>
      Effect.gen(function*() {
        const [shard] = yield* testShards(1)
        const gd = yield* gearmand
        let rounds = 0
        // The runner asks which servers are up once a round: counting the calls counts its rounds.
        const layers = wrapped(
          [shard!],
          [gd.server],
          (g) => ({ ...g, upServers: () => (rounds++, g.upServers()) }),
          (s) => s
        )
        yield* Effect.scoped(Effect.gen(function*() {
          const gearman = yield* Gearman
          const storage = yield* Storage
          yield* eventually(Effect.sync(() => gearman.upServers().length === 1), "the connection to gearmand")
          yield* gd.kill
          yield* eventually(Effect.sync(() => gearman.upServers().length === 0), "gearmand to be seen down")
          yield* Client.insertJobs(Array.from({ length: 100 }, (_, i) => ({ funcname: "nowhere", arg: `job ${i}` })))
          const from = rounds
          const runner = yield* Effect.fork(QueueRunner.run({ batchRunSleep: "50 millis", lease: "1 hour" }))
          // Three rounds decided with the rows due (a round's claim ends before the next round asks).
          yield* eventually(Effect.sync(() => rounds >= from + 3), "three rounds of the runner")
          yield* Fiber.interrupt(runner)
          const counts = yield* storage.counts()
          assert.deepStrictEqual(counts.map((c) => [c.funcname, c.due, c.scheduled]), [["nowhere", 100, 0]])
        })).pipe(Effect.provide(layers))
      }),
    60_000
  )

  it.scopedLive(
    "a full batch whose submits fail while the next is claimed: that next batch goes back due, not leased for the lease (1 hour)",
    () =>
      Effect.gen(function*() {
        const [shard] = yield* testShards(1)
        const gd = yield* gearmand
        // The job server refuses the first batch, once the runner has started claiming the next
        // one, and is then seen down (no more claims) until the test brings it back.
        let claims = 0
        let submitCalls = 0
        let down = false
        const secondClaim = yield* Deferred.make<void>()
        /** The second batch's fate is decided: given back (the fix) or submitted into the refusal. */
        const decided = yield* Deferred.make<void>()
        const refused = new Set<string>()
        const key = (payload: string | Uint8Array) => {
          const job = JSON.parse(typeof payload === "string" ? payload : Buffer.from(payload).toString("latin1")) as {
            dbid: number
            jobid: number
          }
          return `${job.dbid}:${job.jobid}`
        }
        const layers = wrapped([shard!], [gd.server], (g) => ({
          ...g,
          upServers: () => (down ? [] : g.upServers()),
          submitBackgroundAll: (submissions) =>
            Effect.gen(function*() {
              const call = ++submitCalls
              if (call > 1 && !down) return yield* g.submitBackgroundAll(submissions)
              if (call === 1) {
                yield* Deferred.await(secondClaim)
                down = true
              } else yield* Deferred.succeed(decided, undefined)
              for (const sub of submissions) refused.add(key(sub.payload))
              return submissions.map(() =>
                Either.left(new GearmanConnectionError({ server: gd.server, message: "refused by the test" }))
              )
            })
        }), (s) => ({
          ...s,
          claimDue: (...args) =>
            Effect.zipRight(
              Effect.sync(() => ++claims).pipe(
                Effect.tap((n) => n === 2 ? Deferred.succeed(secondClaim, undefined) : Effect.void)
              ),
              s.claimDue(...args)
            ),
          defer: (handles, until) =>
            Effect.zipRight(
              refused.size > 0 ? Deferred.succeed(decided, undefined) : Effect.void,
              s.defer(handles, until)
            )
        }))
        yield* Effect.scoped(Effect.gen(function*() {
          const storage = yield* Storage
          yield* Client.insertJobs(Array.from({ length: 500 }, (_, i) => ({ funcname: "refused", arg: `job ${i}` })))
          const { record, runs } = yield* recorder
          yield* Worker.serve({ refused: record }, { concurrency: 4 })
          // Batches of 50: the first is full, so its submits go out while the next batch is claimed.
          const runner = yield* Effect.fork(
            QueueRunner.run({ batchRunSleep: "50 millis", batchMaxSize: 50, lease: "1 hour", queueWatermarkDepth: 0 })
          )
          yield* Deferred.await(decided)
          down = false
          // Only the refused batch stays leased; everything else runs.
          yield* eventually(
            Effect.map(remaining, (n) => n === refused.size),
            "every job but the refused batch to run",
            60_000
          )
          yield* Fiber.interrupt(runner)
          assert.strictEqual(refused.size, 50)
          const left = yield* storage.list()
          assert.deepStrictEqual(new Set(left.map((j) => `${j.dbid}:${j.jobid}`)), refused)
          const now = Math.floor(Date.now() / 1000)
          assert.isTrue(left.every((j) => j.runAfter > now + 3000), "the refused batch is leased for its hour")
          const ran = yield* runs
          assert.strictEqual(ran.size, 450)
          assert.isTrue([...ran.keys()].every((k) => !refused.has(k)))
        })).pipe(Effect.provide(layers))
      }),
    120_000
  )
})

describe("the Injector's failure paths on MariaDB and gearmand (no Controller: what it dispatches stays in gearmand)", () => {
  /** The one stored row, and gearmand's run_queued_job queue once the Injector has answered. */
  const injectOne = (funcname: string, options: Injector.InjectorOptions) =>
    Effect.gen(function*() {
      const gearman = yield* Gearman
      const storage = yield* Storage
      yield* Injector.serve(options)
      const before = Math.floor(Date.now() / 1000)
      // The Injector answers after its submits of run_queued_job are settled.
      const reply = yield* gearman.submit(Injector.INJECT_FUNCTION, JSON.stringify({ funcname, arg: "x" }))
      const after = Math.floor(Date.now() / 1000)
      const { jobid } = JSON.parse(reply.data.toString()) as { jobid: number }
      const rows = yield* storage.list()
      assert.deepStrictEqual(rows.map((r) => [r.jobid, r.funcname, r.flag]), [[jobid, funcname, "controller"]])
      const queued = (yield* gearman.queueDepths()).get(QueueRunner.CONTROLLER_FUNCTION)?.total ?? 0
      return { runAfter: rows[0]!.runAfter, before, after, queued }
    })

  it.scopedLive(
    "a function over the watermark: the job is stored due and not dispatched",
    () =>
      Effect.gen(function*() {
        const [shard] = yield* testShards(1)
        const gd = yield* gearmand
        yield* Effect.scoped(Effect.gen(function*() {
          const gearman = yield* Gearman
          // Three jobs queued for `busy` and nobody serving it: over a watermark of 2.
          yield* Effect.forEach([1, 2, 3], (i) => gearman.submitBackground("busy", `queued ${i}`), { discard: true })
          const r = yield* injectOne("busy", { queueWatermarkDepth: 2, lease: "1 hour" })
          assert.strictEqual(r.queued, 0, "nothing was sent to run_queued_job")
          assert.isAtLeast(r.runAfter, r.before)
          assert.isAtMost(r.runAfter, r.after, "stored due for the QueueRunner, not leased")
        })).pipe(Effect.provide(env([shard!], [gd.server])))
      }),
    60_000
  )

  it.scopedLive(
    "gearmand refuses the run_queued_job submit (QUEUE_ERROR): the job is made due at once, not left for its 1-hour lease",
    () =>
      Effect.gen(function*() {
        const [shard] = yield* testShards(1)
        const gd = yield* gearmand
        yield* Effect.scoped(Effect.gen(function*() {
          const gearman = yield* Gearman
          // run_queued_job's queue full: one job in it and a maximum of one.
          yield* gearman.submitBackground(QueueRunner.CONTROLLER_FUNCTION, "filler")
          yield* gearman.admin.maxQueue(gd.server, QueueRunner.CONTROLLER_FUNCTION, 1)
          const r = yield* injectOne("refused", { lease: "1 hour" })
          assert.strictEqual(r.queued, 1, "only the filler is queued")
          assert.isAtLeast(r.runAfter, r.before)
          assert.isAtMost(r.runAfter, r.after, "due again at once, not after the lease")
        })).pipe(Effect.provide(env([shard!], [gd.server])))
      }),
    60_000
  )
})

/** The live layers with the Gearman and Storage services seen through `gearman` and `storage`. */
const wrapped = (
  shards: ReadonlyArray<ShardConfig>,
  servers: ReadonlyArray<string>,
  gearman: (g: GearmanService) => GearmanService,
  storage: (s: StorageShape) => StorageShape
) =>
  Layer.merge(
    Layer.provide(Layer.effect(Storage, Effect.map(Storage, storage)), StorageLayers.layer({ shards })),
    Layer.provide(Layer.effect(Gearman, Effect.map(Gearman, gearman)), GearmanLayers.layer({ servers }))
  )
