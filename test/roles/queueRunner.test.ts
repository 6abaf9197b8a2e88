// QueueRunner and worker helper on the memory layers, time driven by TestClock.
import { assert, describe, it } from "@effect/vitest"
import { Chunk, Duration, Effect, Fiber, Layer, Option, Ref, Schedule, TestClock } from "effect"
import * as Gearman from "../../src/gearman/Gearman.js"
import { decodeWorkerJson } from "../../src/Job.js"
import * as Client from "../../src/roles/Client.js"
import * as QueueRunner from "../../src/roles/QueueRunner.js"
import * as Worker from "../../src/roles/Worker.js"
import { Storage } from "../../src/storage/Storage.js"
import * as StorageLayers from "../../src/storage/Storage.js"
import { scopedAtT0, T0 } from "../support/clock.js"
import { due, remaining } from "../support/jobs.js"
import { until } from "../support/until.js"
import { keyFor } from "../storage/contract.js"

const memoryGearman = () => Gearman.layerMemory({ servers: Gearman.makeMemoryServers() })

const layers = () => Layer.mergeAll(StorageLayers.layerMemory({ shards: [1] }), memoryGearman())

// The clock is set before the layers start.
const test = scopedAtT0(layers)

describe("QueueRunner", () => {
  test(
    "the adaptive batch grows by 10 % of the max after full rounds and shrinks by 5 % after short ones",
    Effect.gen(function*() {
      yield* Client.insertJobs(Array.from({ length: 1000 }, (_, i) => ({ funcname: "grow", arg: `${i}` })))
      const runner = yield* QueueRunner.make({ batchMaxSize: 200, queueWatermarkDepth: 0 })
      const rounds = []
      for (let i = 0; i < 11; i++) rounds.push((yield* runner.round).shards[0]!)
      assert.deepStrictEqual(rounds.map((r) => r.limit), [50, 70, 90, 110, 130, 150, 170, 190, 200, 190, 180])
      assert.deepStrictEqual(rounds.map((r) => r.dispatched), [50, 70, 90, 110, 130, 150, 170, 190, 40, 0, 0])
    })
  )

  test(
    "a round claims within batchMaxBytes (memory bounded in bytes, not rows); a job over it goes alone",
    Effect.gen(function*() {
      yield* Client.insertJobs(
        Array.from({ length: 7 }, (_, i) => ({ funcname: "bytes", arg: new Uint8Array(300_000), runAt: T0 - 10 + i }))
      )
      yield* Client.insertJob({ funcname: "bytes", arg: new Uint8Array(2_000_000), runAt: T0 })
      const runner = yield* QueueRunner.make({ batchMaxBytes: 1_000_000, queueWatermarkDepth: 0 })
      const claimed = []
      for (let i = 0; i < 5; i++) claimed.push((yield* runner.round).shards[0]!.claimed)
      assert.deepStrictEqual(claimed, [3, 3, 1, 1, 0])
    })
  )

  test(
    "functions over the queue watermark are not claimed; a round's overflow is deferred (deferFor 60 s, as the original)",
    Effect.gen(function*() {
      yield* Client.insertJobs(Array.from({ length: 500 }, (_, i) => ({ funcname: "wm", arg: `${i}` })))
      const runner = yield* QueueRunner.make({ batchMaxSize: 200, queueWatermarkDepth: 300, deferFor: "60 seconds" })
      const rounds = []
      for (let i = 0; i < 6; i++) rounds.push((yield* runner.round).shards[0]!)
      // gearmand's queue for `wm` passes 300 during round 4; from then on jobs wait in the DB,
      // unclaimed (not claimed and deferred round after round).
      assert.deepStrictEqual(rounds.map((r) => r.dispatched), [50, 70, 90, 91, 0, 0])
      assert.deepStrictEqual(rounds.map((r) => r.deferred), [0, 0, 0, 19, 0, 0])
      assert.deepStrictEqual(rounds.map((r) => r.claimed), [50, 70, 90, 110, 0, 0])
      assert.deepStrictEqual(rounds.map((r) => r.limit), [50, 70, 90, 110, 100, 90])
      const depths = yield* Effect.flatMap(Gearman.Gearman, (g) => g.queueDepths())
      assert.strictEqual(depths.get("wm")!.total, 301)
      const storage = yield* Storage
      const deferred = yield* storage.list({ state: "scheduled", limit: 1000 })
      assert.strictEqual(deferred.filter((j) => j.runAfter === T0 + 60).length, 19)
      assert.strictEqual((yield* storage.list({ state: "due", limit: 1000 })).length, 500 - 301 - 19)
      // A worker drains the queue; after the deferral the rest are dispatched and all complete.
      const runs = yield* Ref.make(new Map<number, number>())
      yield* Worker.serve({
        wm: (job) => Ref.update(runs, (m) => new Map(m).set(job.jobid, (m.get(job.jobid) ?? 0) + 1))
      }, { concurrency: 4 })
      yield* until(Effect.map(remaining, (n) => n === 500 - 301), "the first 301 jobs to complete")
      yield* TestClock.adjust("60 seconds")
      for (let i = 0; i < 20 && (yield* remaining) > 0; i++) {
        yield* runner.round
        yield* until(
          Effect.flatMap(Gearman.Gearman, (g) => Effect.map(g.queueDepths(), (d) => (d.get("wm")?.total ?? 0) === 0)),
          "the queue to drain"
        )
        yield* TestClock.adjust("60 seconds")
      }
      yield* until(Effect.map(remaining, (n) => n === 0), "every row to be deleted")
      const counts = yield* Ref.get(runs)
      assert.strictEqual(counts.size, 500)
      assert.isTrue([...counts.values()].every((n) => n === 1), "each job ran exactly once")
    })
  )

  test(
    "by default the rest goes out as soon as the queue is back under the watermark, with no deferral to wait out",
    Effect.gen(function*() {
      yield* Client.insertJobs(Array.from({ length: 500 }, (_, i) => ({ funcname: "wm0", arg: `${i}` })))
      const runner = yield* QueueRunner.make({ batchMaxSize: 200, queueWatermarkDepth: 300 })
      for (let i = 0; i < 5; i++) yield* runner.round
      const storage = yield* Storage
      // The overflow of the round that crossed the watermark is due again at once.
      assert.strictEqual((yield* storage.list({ state: "due", limit: 1000 })).length, 500 - 301)
      const runs = yield* Ref.make(0)
      yield* Worker.serve({ wm0: () => Ref.update(runs, (n) => n + 1) }, { concurrency: 4 })
      yield* until(Effect.map(Ref.get(runs), (n) => n === 301), "the queued jobs to run")
      // No clock movement: the next rounds dispatch the rest.
      for (let i = 0; i < 20 && (yield* remaining) > 0; i++) {
        yield* runner.round
        yield* until(
          Effect.flatMap(Gearman.Gearman, (g) => Effect.map(g.queueDepths(), (d) => (d.get("wm0")?.total ?? 0) === 0)),
          "the queue to drain"
        )
      }
      yield* until(Effect.map(remaining, (n) => n === 0), "every row to be deleted")
      assert.strictEqual(yield* Ref.get(runs), 500)
    })
  )

  test(
    "a round is full when what it sends fills the batch; a batch cut short by the watermark's overflow is not",
    Effect.gen(function*() {
      yield* Client.insertJobs(Array.from({ length: 100 }, (_, i) => ({ funcname: "cut", arg: `${i}` })))
      const runner = yield* QueueRunner.make({ queueWatermarkDepth: 60 })
      const first = yield* runner.round
      const second = yield* runner.round
      assert.deepStrictEqual([first.full, second.full], [true, false])
      // The second claimed the other 50 (its batch size is 150); 11 took the queue to 61.
      assert.deepStrictEqual(
        [second.shards[0]!.limit, second.shards[0]!.claimed, second.shards[0]!.dispatched, second.shards[0]!.deferred],
        [150, 50, 11, 39]
      )
      // Nothing sent: not full, and the next round looks again later instead of at once.
      assert.isFalse((yield* runner.round).full)
    })
  )

  test(
    "a job not completed comes back after the lease; gearmand still holding it, the new copy merges into the first",
    Effect.gen(function*() {
      const { handle } = yield* Client.insertJob({ funcname: "lost", arg: "x" })
      const runner = yield* QueueRunner.make({ lease: "300 seconds" })
      assert.strictEqual((yield* runner.round).shards[0]!.dispatched, 1)
      assert.strictEqual((yield* runner.round).shards[0]!.claimed, 0)
      yield* TestClock.adjust("299 seconds")
      assert.strictEqual((yield* runner.round).shards[0]!.claimed, 0)
      yield* TestClock.adjust("1 second")
      assert.strictEqual((yield* runner.round).shards[0]!.dispatched, 1)
      // Both copies carry the job's handle as unique: one job queued, not two.
      const depths = yield* Effect.flatMap(Gearman.Gearman, (g) => g.queueDepths())
      assert.strictEqual(depths.get("lost")!.total, 1)
      const job = Option.getOrThrow(yield* Effect.flatMap(Storage, (s) => s.get(handle)))
      assert.strictEqual(job.runAfter, T0 + 300 + 300)
    })
  )

  test(
    "shim jobs go to their function, controller jobs to run_queued_job, with the worker JSON and uniqkey",
    Effect.gen(function*() {
      yield* Client.insertJobs([
        { funcname: "resize", arg: "a", uniqkey: "img-1" },
        { funcname: "resize", arg: "b", flag: "controller" },
        { funcname: "resize", arg: "c", uniqkey: "u".repeat(200) }
      ])
      const runner = yield* QueueRunner.make()
      assert.strictEqual((yield* runner.round).shards[0]!.dispatched, 3)
      const gearman = yield* Gearman.Gearman
      const depths = yield* gearman.queueDepths()
      assert.strictEqual(depths.get("resize")!.total, 2)
      assert.strictEqual(depths.get(QueueRunner.CONTROLLER_FUNCTION)!.total, 1)
      // What a plain Gearman worker receives.
      const seen = yield* Ref.make<Array<{ unique: string; arg: string; flag: string }>>([])
      yield* gearman.serve({
        resize: (job) =>
          Effect.flatMap(
            decodeWorkerJson(job.payload).pipe(Effect.orDie),
            (j) =>
              Ref.update(seen, (a) => [...a, { unique: job.unique, arg: Buffer.from(j.arg).toString(), flag: j.flag }])
          )
      })
      yield* until(
        Effect.map(Ref.get(seen), (a) => a.length === 2),
        "both resize jobs"
      )
      const got = (yield* Ref.get(seen)).sort((x, y) => x.arg.localeCompare(y.arg))
      assert.deepStrictEqual(got[0], { unique: "img-1", arg: "a", flag: "shim" })
      // A uniqkey longer than gearmand's 64-byte limit is sent hashed.
      assert.match(got[1]!.unique, /^sha1:[0-9a-f]{40}$/)
    })
  )

  test(
    "options are checked",
    Effect.gen(function*() {
      for (
        const bad of [
          { batchMaxSize: 49 },
          { batchMaxSize: 100.5 },
          { queueWatermarkDepth: -1 },
          {
            lease: "0 seconds"
          },
          { batchRunSleep: "0 millis" },
          { shardRetryMax: "0 millis" }
        ]
      ) {
        const err = yield* Effect.flip(QueueRunner.make(bad as QueueRunner.QueueRunnerOptions))
        assert.strictEqual(err._tag, "InvalidQueueRunnerOptions")
      }
    })
  )
})

describe("QueueRunner.shardRetry", () => {
  it.effect("doubles from batchRunSleep, jittered down to half, and never waits longer than the cap", () =>
    Effect.gen(function*() {
      const delays = (base: Duration.DurationInput, cap: Duration.DurationInput) =>
        Effect.map(
          Schedule.run(Schedule.delays(QueueRunner.shardRetry(base, cap)), 0, Array.from({ length: 40 })),
          (c) => Chunk.toReadonlyArray(c).map(Duration.toMillis)
        )
      const d = yield* delays("500 millis", "2 seconds")
      assert.strictEqual(d.length, 40, "it never gives up")
      // The nominal delays are 500, 1000, 2000, 2000, …; each is jittered into [½, 1] of it.
      const nominal = (i: number) => Math.min(500 * 2 ** i, 2000)
      d.forEach((ms, i) => assert.isTrue(ms >= nominal(i) / 2 && ms <= nominal(i), `delay ${i}: ${ms} ms`))
      assert.isTrue(new Set(d.slice(3)).size > 1, "jittered, not a fixed 2 s")
      // A cap under batchRunSleep does not make a failing shard polled faster than a healthy one.
      const slow = yield* delays("5 seconds", "2 seconds")
      assert.isTrue(slow.every((ms) => ms >= 2500 && ms <= 5000), slow.join(", "))
    }))
})

describe("QueueRunner.run", () => {
  it.scoped("a shard that is down does not hold up the other; its jobs run once it is back", () =>
    Effect.zipRight(
      TestClock.setTime(T0 * 1000),
      Effect.gen(function*() {
        const { shards, storage } = yield* StorageLayers.makeMemory({ shards: [1, 2] })
        yield* Effect.gen(function*() {
          const jobs = Array.from(
            { length: 10 },
            (_, i) => ({ funcname: "halves", uniqkey: keyFor(i % 2, 2, `h${i}-`) })
          )
          yield* Client.insertJobs(jobs)
          yield* shards.get(1)!.setDown(true)
          const ran = yield* Ref.make<Array<number>>([])
          yield* Worker.serve({ halves: (job) => Ref.update(ran, (a) => [...a, job.dbid]) }, {
            pollInterval: "30 days"
          })
          const runner = yield* Effect.fork(QueueRunner.run({ batchRunSleep: "1 second" }))
          const tick = (seconds: number) =>
            Effect.zipRight(
              TestClock.adjust(`${seconds} seconds`),
              Effect.forEach(Array.from({ length: 200 }), () => Effect.yieldNow(), { discard: true })
            )
          yield* tick(1)
          yield* until(Effect.map(Ref.get(ran), (a) => a.length === 5), "shard 2's five jobs")
          assert.isTrue((yield* Ref.get(ran)).every((dbid) => dbid === 2))
          // Down for a minute: shard 1 is retried with a growing delay meanwhile, capped at 2 s.
          for (let i = 0; i < 60; i++) yield* tick(1)
          assert.strictEqual((yield* Ref.get(ran)).length, 5)
          yield* shards.get(1)!.setDown(false)
          // Back: looked at again within the cap (the old backoff had grown to 30 s by now).
          for (let i = 0; i < 2 && (yield* Ref.get(ran)).length < 10; i++) yield* tick(1)
          yield* until(Effect.map(Ref.get(ran), (a) => a.length === 10), "shard 1's jobs after it came back")
          yield* Fiber.interrupt(runner)
        }).pipe(Effect.provideService(Storage, storage))
      }).pipe(Effect.provide(memoryGearman()))
    ))

  test(
    "while jobs flow the next round comes after 50 ms; idle, after batchRunSleep",
    Effect.gen(function*() {
      const ran = yield* Ref.make(0)
      yield* Worker.serve({ flow: () => Ref.update(ran, (n) => n + 1) }, { pollInterval: "30 days" })
      yield* Effect.fork(QueueRunner.run({ batchRunSleep: "1 second" }))
      const settle = Effect.forEach(Array.from({ length: 200 }), () => Effect.yieldNow(), { discard: true })
      yield* settle
      // Idle: the first round found nothing, so the next is a second away.
      yield* Client.insertJob({ funcname: "flow" })
      yield* TestClock.adjust("900 millis")
      yield* settle
      assert.strictEqual(yield* Ref.get(ran), 0)
      yield* TestClock.adjust("100 millis")
      yield* until(Effect.map(Ref.get(ran), (n) => n === 1), "the job after the idle interval")
      // That round dispatched a job: the next one is 50 ms later.
      yield* Client.insertJob({ funcname: "flow" })
      yield* TestClock.adjust("50 millis")
      yield* until(Effect.map(Ref.get(ran), (n) => n === 2), "the next job after 50 ms")
    })
  )

  test(
    "a round right after a full one that finds nothing still looks again after 50 ms",
    Effect.gen(function*() {
      const settle = Effect.forEach(Array.from({ length: 200 }), () => Effect.yieldNow(), { discard: true })
      const ran = yield* Ref.make(0)
      yield* Worker.serve({ burst: () => Ref.update(ran, (n) => n + 1) }, { concurrency: 8, pollInterval: "30 days" })
      // A whole batch (the first limit is 50): the next round comes at once and finds nothing.
      yield* Client.insertJobs(
        Array.from({ length: QueueRunner.MIN_BATCH_SIZE }, (_, i) => ({ funcname: "burst", arg: `${i}` }))
      )
      yield* Effect.fork(QueueRunner.run({ batchRunSleep: "10 seconds" }))
      yield* until(Effect.map(Ref.get(ran), (n) => n === QueueRunner.MIN_BATCH_SIZE), "the batch")
      yield* settle
      // Jobs flowed within batchRunSleep: the next job waits 50 ms, not 10 s.
      yield* Client.insertJob({ funcname: "burst" })
      yield* TestClock.adjust("50 millis")
      yield* until(Effect.map(Ref.get(ran), (n) => n === QueueRunner.MIN_BATCH_SIZE + 1), "the next job after 50 ms")
    })
  )

  test(
    "while the watermark holds jobs back the next round comes after 50 ms, not batchRunSleep",
    Effect.gen(function*() {
      const settle = Effect.forEach(Array.from({ length: 200 }), () => Effect.yieldNow(), { discard: true })
      yield* Client.insertJobs(Array.from({ length: 6 }, (_, i) => ({ funcname: "held", arg: `${i}` })))
      yield* Effect.fork(QueueRunner.run({ batchRunSleep: "10 seconds", queueWatermarkDepth: 2 }))
      yield* settle
      // No worker yet: three jobs queue in gearmand (up to the watermark), the rest stay stored.
      yield* until(Effect.map(due, (n) => n === 3), "three jobs held back")
      // A round while the function is over the watermark: it claims nothing.
      yield* TestClock.adjust("50 millis")
      yield* settle
      assert.strictEqual(yield* due, 3)
      const ran = yield* Ref.make(0)
      yield* Worker.serve({ held: () => Ref.update(ran, (n) => n + 1) }, { pollInterval: "30 days" })
      yield* until(Effect.map(Ref.get(ran), (n) => n === 3), "the queued three")
      // The runner was held back, not idle: it looks again within 50 ms, not 10 s.
      yield* TestClock.adjust("50 millis")
      yield* settle
      yield* TestClock.adjust("50 millis")
      yield* until(Effect.map(Ref.get(ran), (n) => n === 6), "the held-back three after 50 ms")
    })
  )
})

describe("worker helper", () => {
  test(
    "success completes the row; failure backs off 2, 4, 8 … minutes; retryAt and never reschedule",
    Effect.gen(function*() {
      const storage = yield* Storage
      const fates = yield* Ref.make(
        new Map<string, Array<string>>([["ok", ["ok"]], ["flaky", Array(12).fill("fail")], ["later", ["retry"]], [
          "park",
          ["never"]
        ]])
      )
      const ran = yield* Ref.make(0)
      yield* Worker.serve({
        work: (job) =>
          Effect.gen(function*() {
            yield* Ref.update(ran, (n) => n + 1)
            const plan = (yield* Ref.get(fates)).get(job.text)!
            const next = plan.shift() ?? "ok"
            if (next === "fail") return yield* Worker.fail("boom")
            if (next === "retry") return yield* Worker.retryAt("+600")
            if (next === "never") return yield* Worker.retryNever
            return "done"
          })
        // NOOP wakes the worker; a short poll (or heartbeat loop: a third of the lease) would fire
        // thousands of times as TestClock jumps days.
      }, { concurrency: 2, pollInterval: "30 days", lease: "30 days" })
      const outcomes = yield* Client.insertJobs(
        ["ok", "flaky", "later", "park"].map((arg) => ({ funcname: "work", arg }))
      )
      const [ok, flaky, later, park] = outcomes.map((o) => o.handle)
      const runner = yield* QueueRunner.make()
      const get = (h: typeof ok) => Effect.map(storage.get(h!), Option.getOrUndefined)
      yield* runner.round
      yield* until(Effect.map(Ref.get(ran), (n) => n === 4), "4 runs")
      yield* until(Effect.map(get(ok), (j) => j === undefined), "ok to be deleted")
      yield* until(Effect.map(get(park), (j) => j?.runAfter === 2147483647), "park to be parked")
      assert.strictEqual((yield* get(later))!.runAfter, T0 + 600)
      // The flaky job: each failure raises the failcount and doubles the delay, capped at a day.
      const delays: Array<number> = []
      for (let attempt = 1; attempt <= 12; attempt++) {
        yield* until(Effect.map(get(flaky), (j) => j!.failcount === attempt), `failure ${attempt}`)
        const job = (yield* get(flaky))!
        const now = Math.floor((yield* TestClock.currentTimeMillis) / 1000)
        delays.push(job.runAfter - now)
        yield* TestClock.adjust(`${job.runAfter - now} seconds`)
        if (attempt < 12) yield* runner.round
      }
      assert.deepStrictEqual(delays.map((d) => d / 60), [2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 1440, 1440])
    })
  )

  test(
    "a malformed payload is rejected and logged; the worker keeps serving",
    Effect.gen(function*() {
      const gearman = yield* Gearman.Gearman
      const ran = yield* Ref.make(0)
      yield* Worker.serve({ work: () => Ref.update(ran, (n) => n + 1) })
      const bad = yield* Effect.flip(gearman.submit("work", "{not json"))
      assert.strictEqual(bad._tag, "GearmanJobFailed")
      yield* Client.insertJob({ funcname: "work", arg: "fine" })
      yield* (yield* QueueRunner.make()).round
      yield* until(Effect.map(Ref.get(ran), (n) => n === 1), "the good job")
      yield* until(Effect.map(remaining, (n) => n === 0), "its row to be deleted")
    })
  )

  test(
    "controller jobs: the helper reports the outcome and leaves the row to the Controller",
    Effect.gen(function*() {
      const gearman = yield* Gearman.Gearman
      yield* Worker.serve({
        work: (job) => job.text === "bad" ? Worker.fail("no") : Effect.succeed(`echo ${job.text}`)
      })
      const [good, bad] = yield* Client.insertJobs([{ funcname: "work", arg: "good", flag: "controller" }, {
        funcname: "work",
        arg: "bad",
        flag: "controller"
      }])
      const storage = yield* Storage
      const payload = (h: typeof good) =>
        Effect.map(storage.get(h!.handle), (j) => JSON.stringify({ ...Option.getOrThrow(j), arg: "x" }))
      const goodJob = Option.getOrThrow(yield* storage.get(good!.handle))
      const result = yield* gearman.submit(
        "work",
        JSON.stringify({ jobid: goodJob.jobid, dbid: 1, funcname: "work", arg: "good", flag: "controller" })
      )
      assert.strictEqual(result.data.toString(), "echo good")
      const failed = yield* Effect.flip(
        gearman.submit(
          "work",
          JSON.stringify({ jobid: bad!.handle.jobid, dbid: 1, funcname: "work", arg: "bad", flag: "controller" })
        )
      )
      assert.strictEqual(failed._tag, "GearmanJobFailed")
      // Neither row was touched: the Controller owns them.
      assert.include(yield* payload(good), "\"failcount\":0")
      const badJob = Option.getOrThrow(yield* storage.get(bad!.handle))
      assert.deepStrictEqual([badJob.failcount, badJob.runAfter], [0, T0])
    })
  )
})
