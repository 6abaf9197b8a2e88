// Low-latency mode on the memory layers: inject_jobs → Injector → run_queued_job → Controller → worker.
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Layer, Logger, Option, Schema, TestClock } from "effect"
import * as Gearman from "../../src/gearman/Gearman.js"
import * as Controller from "../../src/roles/Controller.js"
import * as Injector from "../../src/roles/Injector.js"
import * as QueueRunner from "../../src/roles/QueueRunner.js"
import * as Worker from "../../src/roles/Worker.js"
import { NEVER } from "../../src/Job.js"
import { Storage } from "../../src/storage/Storage.js"
import * as StorageLayers from "../../src/storage/Storage.js"
import { scopedAtT0, T0 } from "../support/clock.js"
import { remaining } from "../support/jobs.js"
import { until } from "../support/until.js"
import { keyFor } from "../storage/contract.js"

/** The Injector's lease: the dispatchers' default. */
const LEASE_SECONDS = Duration.toSeconds(QueueRunner.DEFAULT_LEASE)

const Reply = Schema.Struct({ dbid: Schema.Number, jobid: Schema.Number, duplicate: Schema.optional(Schema.Boolean) })
const decodeReply = Schema.decodeUnknownSync(Schema.parseJson(Reply))
const decodeReplies = Schema.decodeUnknownSync(Schema.parseJson(Schema.Array(Reply)))

const layers = () =>
  Layer.mergeAll(
    StorageLayers.layerMemory({ shards: [1, 2] }),
    Gearman.layerMemory({ servers: Gearman.makeMemoryServers() })
  )

const inject = (body: unknown) =>
  Effect.flatMap(
    Gearman.Gearman,
    (g) => g.submit(Injector.INJECT_FUNCTION, typeof body === "string" ? body : JSON.stringify(body))
  )

/** Injector, Controller and a recording worker for `fn`. */
const system = (fn: string, handler: Worker.JobHandler = () => Effect.void) =>
  Effect.gen(function*() {
    const runs: Array<string> = []
    yield* Injector.serve()
    yield* Controller.serve()
    yield* Worker.serve({ [fn]: (job) => Effect.zipRight(Effect.sync(() => void runs.push(job.text)), handler(job)) }, {
      concurrency: 4
    })
    return runs
  })

// Time is TestClock's, set before the layers start.
const test = scopedAtT0(layers)

describe("low-latency mode (memory layers, TestClock)", () => {
  test(
    "an injected job is answered once stored (leased to the Controller), then runs at once and its row goes",
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      const runs = yield* system("hello", () => Deferred.await(gate))
      const reply = decodeReply((yield* inject({ funcname: "hello", arg: "hi ☃" })).data.toString())
      assert.isUndefined(reply.duplicate)
      const job = Option.getOrThrow(yield* Effect.flatMap(Storage, (s) => s.get(reply)))
      assert.strictEqual(job.flag, "controller")
      assert.strictEqual(job.runAfter, T0 + LEASE_SECONDS, "leased: a QueueRunner will not run it again")
      yield* until(Effect.sync(() => runs.length === 1), "the job to run")
      assert.deepStrictEqual(runs, ["hi ☃"])
      yield* Deferred.succeed(gate, undefined)
      yield* until(Effect.map(remaining, (n) => n === 0), "its row to be deleted")
    })
  )

  test(
    "a batch is one call with one reply per job; a unique job coalesces and runs once",
    Effect.gen(function*() {
      // Jobs finish only once the duplicate is checked: a finished unique job's row is gone.
      const gate = yield* Deferred.make<void>()
      const runs = yield* system("batch", () => Deferred.await(gate))
      const replies = decodeReplies((yield* inject([
        { funcname: "batch", arg: "a" },
        { funcname: "batch", arg: "b", uniqkey: "same" },
        { funcname: "batch", arg: "c", unique: "same" }
      ])).data.toString())
      assert.strictEqual(replies.length, 3)
      assert.deepStrictEqual([replies[2]!.dbid, replies[2]!.jobid, replies[2]!.duplicate], [
        replies[1]!.dbid,
        replies[1]!.jobid,
        true
      ])
      const again = decodeReply((yield* inject({ funcname: "batch", arg: "d", uniqkey: "same" })).data.toString())
      assert.isTrue(again.duplicate)
      yield* Deferred.succeed(gate, undefined)
      yield* until(Effect.map(remaining, (n) => n === 0), "every row to be deleted")
      assert.deepStrictEqual([...runs].sort(), ["a", "b"])
    })
  )

  test(
    "a delayed inject is stored for the QueueRunner and runs when due; a QueueRunner leaves injected jobs alone",
    Effect.gen(function*() {
      const runs = yield* system("later")
      const soon = decodeReply((yield* inject({ funcname: "later", arg: "x", run_after: 30 })).data.toString())
      const storage = yield* Storage
      assert.strictEqual(
        Option.getOrThrow(yield* storage.get(soon)).runAfter,
        T0 + 30,
        "run_after 30: in 30 s (the original's offset)"
      )
      const absolute = decodeReply((yield* inject({ funcname: "later", arg: "y", run_after: T0 + 60 })).data.toString())
      assert.strictEqual(
        Option.getOrThrow(yield* storage.get(absolute)).runAfter,
        T0 + 60,
        "a unix time is taken as such"
      )
      yield* inject({ funcname: "later", arg: "now" })
      yield* until(Effect.sync(() => runs.length === 1), "the immediate job")
      const runner = yield* QueueRunner.make()
      // Nothing is due: the immediate job is leased to its Controller, the others wait.
      assert.strictEqual((yield* runner.round).shards.reduce((n, r) => n + r.claimed, 0), 0)
      yield* TestClock.adjust("30 seconds")
      yield* runner.round
      yield* until(Effect.sync(() => runs.length === 2), "the job due at +30")
      yield* TestClock.adjust("30 seconds")
      yield* runner.round
      yield* until(Effect.map(remaining, (n) => n === 0), "every job to complete")
      assert.deepStrictEqual(runs, ["now", "x", "y"])
    })
  )

  test(
    "a worker that fails leaves a backed-off row",
    Effect.gen(function*() {
      yield* system("flaky", () => Worker.fail("nope"))
      const reply = decodeReply((yield* inject({ funcname: "flaky", arg: "x" })).data.toString())
      const storage = yield* Storage
      yield* until(
        Effect.map(storage.get(reply), (j) => Option.isSome(j) && j.value.failcount === 1),
        "the failure to be recorded"
      )
      assert.strictEqual(Option.getOrThrow(yield* storage.get(reply)).runAfter, T0 + 120, "backed off two minutes")
    })
  )

  test(
    "a job with no answer within the Controller's timeout is backed off; the Controller goes on",
    Effect.gen(function*() {
      const started = yield* Deferred.make<void>()
      const runs: Array<string> = []
      yield* Injector.serve()
      yield* Controller.serve({ timeout: "10 seconds" })
      yield* Worker.serve({
        slow: (job) =>
          Effect.sync(() => void runs.push(job.text)).pipe(
            Effect.zipRight(
              job.text === "hang"
                ? Deferred.succeed(started, undefined).pipe(Effect.zipRight(Effect.never))
                : Effect.void
            )
          )
      }, { concurrency: 4, shutdownTimeout: 0 })
      const hung = decodeReply((yield* inject({ funcname: "slow", arg: "hang" })).data.toString())
      yield* Deferred.await(started)
      const storage = yield* Storage
      yield* TestClock.adjust("9 seconds")
      assert.strictEqual(Option.getOrThrow(yield* storage.get(hung)).failcount, 0, "not before the timeout")
      yield* TestClock.adjust("2 seconds")
      yield* until(
        Effect.map(storage.get(hung), (j) => Option.isSome(j) && j.value.failcount === 1),
        "the timeout to back the job off"
      )
      assert.strictEqual(
        Option.getOrThrow(yield* storage.get(hung)).runAfter,
        T0 + 10 + 120,
        "backed off two minutes from the deadline"
      )
      // The Controller still runs the next job.
      const next = decodeReply((yield* inject({ funcname: "slow", arg: "fine" })).data.toString())
      yield* until(Effect.map(storage.get(next), Option.isNone), "the next job to run and its row to go")
      assert.deepStrictEqual(runs, ["hang", "fine"])
    })
  )

  test(
    "requests over the count or byte bound are rejected whole with a clear message; one at the bound is stored",
    Effect.gen(function*() {
      yield* Injector.serve({ maxRequestJobs: 3000, maxRequestBytes: 200_000 })
      const jobs = (n: number) =>
        Array.from({ length: n }, (_, i) => ({ funcname: "bounded", arg: `${i}`, run_after: 60 }))
      const tooMany = yield* Effect.flip(inject(jobs(3001)))
      assert.strictEqual(tooMany._tag, "GearmanJobException")
      if (tooMany._tag === "GearmanJobException") {
        assert.strictEqual(
          Buffer.from(tooMany.data).toString(),
          "inject_jobs: 3001 jobs in one request is over the limit of 3000; send fewer jobs per request"
        )
      }
      const tooBig = yield* Effect.flip(inject({ funcname: "bounded", arg: "x".repeat(200_001) }))
      assert.strictEqual(tooBig._tag, "GearmanJobException")
      if (tooBig._tag === "GearmanJobException")
        assert.match(
          Buffer.from(tooBig.data).toString(),
          /^inject_jobs: request of \d+ bytes is over the limit of 200000;/
        )
      assert.strictEqual(yield* remaining, 0)
      const replies = decodeReplies((yield* inject(jobs(3000))).data.toString())
      assert.strictEqual(replies.length, 3000)
      assert.strictEqual(yield* remaining, 3000)
    })
  )

  test(
    "a stored job whose run_queued_job packet would be over the limit is parked, not dispatched",
    Effect.gen(function*() {
      const runs: Array<string> = []
      yield* Injector.serve({ maxPacket: 4096 })
      yield* Controller.serve()
      yield* Worker.serve({ roomy: (job) => Effect.sync(() => void runs.push(job.text)) })
      const storage = yield* Storage
      // 1,000 control bytes are 6,000 bytes of worker JSON (`\u0001` each).
      const big = decodeReply((yield* inject({ funcname: "roomy", arg: "\u0001".repeat(1000) })).data.toString())
      assert.strictEqual(Option.getOrThrow(yield* storage.get(big)).runAfter, NEVER)
      yield* inject({ funcname: "roomy", arg: "small" })
      yield* until(Effect.sync(() => runs.length === 1), "the small job to run")
      assert.deepStrictEqual(runs, ["small"])
    })
  )

  test(
    "malformed input of each kind: a clear error to the client and no row",
    Effect.gen(function*() {
      yield* system("f")
      const cases: ReadonlyArray<readonly [unknown, string]> = [
        ["not json", "malformed request"],
        ["[]", "empty array"],
        [{}, "funcname"],
        [{ funcname: 7 }, "funcname"],
        [{ funcname: "" }, "funcname is missing"],
        [{ funcname: "f".repeat(201) }, "longer than 200"],
        [{ funcname: "f", uniqkey: "u".repeat(256) }, "longer than 255"],
        [{ funcname: "f", arg: { an: "object" } }, "arg"],
        [{ funcname: "f", run_after: "soon" }, "run_after"],
        [[{ funcname: "f" }, { funcname: "" }], "#1"]
      ]
      for (const [body, expected] of cases) {
        const error = yield* Effect.flip(inject(body))
        assert.strictEqual(error._tag, "GearmanJobException", JSON.stringify(body))
        if (error._tag === "GearmanJobException") assert.include(Buffer.from(error.data).toString(), expected)
      }
      assert.strictEqual(yield* remaining, 0)
    })
  )

  it.scoped("a 1 MB malformed request is rejected with a bounded message, in the log and to the client", () => {
    const logged: Array<string> = []
    const capture = Logger.replace(
      Logger.defaultLogger,
      Logger.make(({ message }) => void logged.push(String(message)))
    )
    return Effect.gen(function*() {
      yield* Injector.serve()
      const huge = "x".repeat(1_000_000)
      for (
        const body of [{ funcname: 5, arg: huge }, { funcname: "f", run_after: huge }, `{"funcname":"${huge}`, [{
          funcname: `a b${huge}`
        }]]
      ) {
        const error = yield* Effect.flip(inject(body))
        assert.strictEqual(error._tag, "GearmanJobException")
        const text = error._tag === "GearmanJobException" ? Buffer.from(error.data).toString() : ""
        assert.include(text, "inject_jobs")
        assert.isAtMost(text.length, Injector.REJECTION_MAX_CHARS + 40, text.slice(0, 200))
      }
      const rejections = logged.filter((m) => m.includes("rejected"))
      assert.strictEqual(rejections.length, 4)
      for (const line of rejections) assert.isAtMost(line.length, Injector.REJECTION_MAX_CHARS + 60, line.slice(0, 200))
      assert.strictEqual(yield* remaining, 0)
    }).pipe(Effect.provide(Layer.merge(layers(), capture)))
  })

  it.scoped("a batch partly stored (one shard down): the caller is told which; the stored job is due for the QueueRunner", () =>
    Effect.zipRight(
      TestClock.setTime(T0 * 1000),
      Effect.gen(function*() {
        const { storage } = yield* StorageLayers.makeMemory({ shards: [1, 2], down: [2] })
        yield* Effect.gen(function*() {
          yield* Injector.serve()
          const error = yield* Effect.flip(inject([
            { funcname: "split", uniqkey: keyFor(0, 2) },
            { funcname: "split", uniqkey: keyFor(1, 2) }
          ]))
          assert.strictEqual(error._tag, "GearmanJobException")
          if (error._tag === "GearmanJobException")
            assert.match(Buffer.from(error.data).toString(), /partly stored \(#0=1:1\)/)
          const job = Option.getOrThrow(yield* storage.get({ dbid: 1, jobid: 1 }))
          assert.strictEqual(job.runAfter, T0, "due now, not leased to a Controller that never got it")
        }).pipe(Effect.provideService(Storage, storage))
      }).pipe(Effect.provide(Gearman.layerMemory({ servers: Gearman.makeMemoryServers() })))
    ))
})
