// Flow control on the memory layers, time driven by TestClock: pause / resume, the token bucket,
// rate- and concurrency-limited claims and the schedules' slot advance (docs/flow-control.md).
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Layer, TestClock } from "effect"
import * as Gearman from "../../src/gearman/Gearman.js"
import * as Client from "../../src/roles/Client.js"
import * as Injector from "../../src/roles/Injector.js"
import * as QueueRunner from "../../src/roles/QueueRunner.js"
import * as Scheduler from "../../src/roles/Scheduler.js"
import { parseRate, takeTokens } from "../../src/storage/flow.js"
import type { RateLimit } from "../../src/storage/flow.js"
import { Storage } from "../../src/storage/Storage.js"
import * as StorageLayers from "../../src/storage/Storage.js"
import { scopedAtT0, T0 } from "../support/clock.js"

const layers = (shards: ReadonlyArray<number> = [1]) => () =>
  Layer.mergeAll(
    StorageLayers.layerMemory({ shards }),
    Gearman.layerMemory({ servers: Gearman.makeMemoryServers() })
  )
const test = scopedAtT0(layers())
const testTwoShards = scopedAtT0(layers([1, 2]))

const dueOf = (funcname: string) =>
  Effect.flatMap(Storage, (s) => s.counts()).pipe(
    Effect.map((counts) => counts.filter((c) => c.funcname === funcname).reduce((n, c) => n + c.due, 0))
  )
const queued = (funcname: string) =>
  Effect.flatMap(Gearman.Gearman, (g) => g.queueDepths()).pipe(Effect.map((d) => d.get(funcname)?.total ?? 0))

describe("pause / resume", () => {
  testTwoShards(
    "a paused function is left out of every shard's claims (its jobs stay due); resumed, they go out",
    Effect.gen(function*() {
      yield* Client.insertJobs(Array.from({ length: 40 }, (_, i) => ({ funcname: i % 2 ? "held" : "flows" })))
      yield* Client.pauseFunction("held")
      const runner = yield* QueueRunner.make({ queueWatermarkDepth: 0 })
      const first = yield* runner.round
      assert.strictEqual(first.shards.reduce((n, s) => n + s.dispatched, 0), 20)
      assert.strictEqual(yield* queued("flows"), 20)
      assert.strictEqual(yield* queued("held"), 0)
      assert.strictEqual(yield* dueOf("held"), 20)
      assert.deepStrictEqual(
        (yield* Client.functionControls).map((c) => [c.funcname, c.paused]),
        [["held", true]]
      )

      yield* Client.resumeFunction("held")
      // Within the controls' refresh (1 s) a runner may still see the pause: then it sees the resume.
      yield* TestClock.adjust(Duration.seconds(1))
      yield* runner.round
      assert.strictEqual(yield* queued("held"), 20)
      assert.strictEqual(yield* dueOf("held"), 0)
      assert.deepStrictEqual(yield* Client.functionControls, [])
    })
  )

  test(
    "the Injector stores a paused function's jobs due instead of dispatching them",
    Effect.gen(function*() {
      yield* Client.pauseFunction("held")
      const handle = yield* Injector.makeHandler({ queueWatermarkDepth: 0 })
      const request = (funcname: string) => new TextEncoder().encode(JSON.stringify({ funcname, arg: "x" }))
      yield* handle(request("held"))
      yield* handle(request("flows"))
      assert.strictEqual(yield* queued(QueueRunner.CONTROLLER_FUNCTION), 1)
      assert.strictEqual(yield* dueOf("held"), 1)
      assert.strictEqual(yield* dueOf("flows"), 0)
    })
  )
})

describe("token bucket", () => {
  const rate: RateLimit = { count: 10, periodMs: 1000, burst: 10 }

  it("starts full, refills by elapsed time up to the burst, takes whole tokens only, gives back", () => {
    let b = takeTokens(undefined, rate, 0, 100)
    assert.strictEqual(b.taken, 10)
    b = takeTokens(b.bucket, rate, 0, 1)
    assert.strictEqual(b.taken, 0)
    b = takeTokens(b.bucket, rate, 250, 10)
    assert.strictEqual(b.taken, 2) // 2.5 tokens: 2 whole ones, half a token kept
    b = takeTokens(b.bucket, rate, 300, 10)
    assert.strictEqual(b.taken, 1) // 0.5 + 0.5
    b = takeTokens(b.bucket, rate, 60_000, 100)
    assert.strictEqual(b.taken, 10) // a long quiet spell refills to the burst, no more
    b = takeTokens(b.bucket, rate, 60_000, -3)
    assert.strictEqual(takeTokens(b.bucket, rate, 60_000, 100).taken, 3)
    // A clock that goes back refills nothing.
    assert.strictEqual(takeTokens(b.bucket, rate, 50_000, 100).taken, 3)
  })

  it("parses rates: the burst defaults to the rate per second, at least 1", () => {
    assert.deepStrictEqual(parseRate("50/s"), { count: 50, periodMs: 1000, burst: 50 })
    assert.deepStrictEqual(parseRate("600/min"), { count: 600, periodMs: 60_000, burst: 10 })
    assert.deepStrictEqual(parseRate("1/h"), { count: 1, periodMs: 3_600_000, burst: 1 })
    assert.deepStrictEqual(parseRate("10/500ms", 3), { count: 10, periodMs: 500, burst: 3 })
    assert.isString(parseRate("fast"))
    assert.isString(parseRate("0/s"))
  })

  test(
    "several takers share one bucket: together they get the rate, never more",
    Effect.gen(function*() {
      const storage = yield* Storage
      let total = 0
      for (let second = 0; second < 10; second++) {
        const got = yield* Effect.all(
          Array.from({ length: 3 }, () => storage.flow.takeTokens("api", rate, 7)),
          { concurrency: "unbounded" }
        )
        total += got.reduce((a, b) => a + b, 0)
        assert.isAtMost(got.reduce((a, b) => a + b, 0), 10)
        yield* TestClock.adjust(Duration.seconds(1))
      }
      assert.strictEqual(total, 100)
    })
  )

  testTwoShards(
    "a rate-limited function is dispatched at its rate across runners and shards; others are not held back",
    Effect.gen(function*() {
      yield* Client.insertJobs(Array.from({ length: 300 }, () => ({ funcname: "api" })))
      yield* Client.insertJobs(Array.from({ length: 100 }, () => ({ funcname: "free" })))
      yield* Client.setRateLimit("api", { count: 20, periodMs: 1000, burst: 20 })
      const runners = [
        yield* QueueRunner.make({ queueWatermarkDepth: 0 }),
        yield* QueueRunner.make({ queueWatermarkDepth: 0 })
      ]
      const perSecond: Array<number> = []
      let before = 0
      for (let second = 0; second < 5; second++) {
        // Several rounds a second, from both runners: the bucket, not the rounds, sets the pace.
        for (let r = 0; r < 4; r++) {
          yield* Effect.all(runners.map((runner) => runner.round), { concurrency: "unbounded" })
          yield* TestClock.adjust(Duration.millis(250))
        }
        const now = yield* queued("api")
        perSecond.push(now - before)
        before = now
      }
      // The burst (20) at once plus the refill over the first second's last 750 ms, then 20 a second.
      assert.deepStrictEqual(perSecond, [35, 20, 20, 20, 20])
      assert.strictEqual(yield* queued("free"), 100)
    })
  )
})

describe("rate limit over 30 s", () => {
  testTwoShards(
    "50/s across two runners and both shards: within 10 % over 30 s (exactly, with TestClock)",
    Effect.gen(function*() {
      yield* Client.insertJobs(Array.from({ length: 2000 }, () => ({ funcname: "api" })))
      yield* Client.setRateLimit("api", { count: 50, periodMs: 1000, burst: 50 })
      const runners = [
        yield* QueueRunner.make({ queueWatermarkDepth: 0 }),
        yield* QueueRunner.make({ queueWatermarkDepth: 0 })
      ]
      const round = Effect.all(runners.map((runner) => runner.round), { concurrency: "unbounded" })
      yield* round
      const afterBurst = yield* queued("api")
      for (let tick = 0; tick < 120; tick++) {
        yield* TestClock.adjust(Duration.millis(250))
        yield* round
      }
      const started = (yield* queued("api")) - afterBurst
      assert.strictEqual(afterBurst, 50, "the burst at once")
      assert.isAtLeast(started, 1350, `${started} in 30 s`)
      assert.isAtMost(started, 1650, `${started} in 30 s`)
    })
  )
})

describe("concurrency limit", () => {
  const leasedJobs = (funcname: string) =>
    Effect.flatMap(Storage, (s) => s.list({ funcname, state: "dispatched", limit: 1000 }))

  testTwoShards(
    "runners on both shards keep at most N leased; a completion or an ended lease frees a slot; others flow",
    Effect.gen(function*() {
      const storage = yield* Storage
      yield* Client.insertJobs(Array.from({ length: 30 }, () => ({ funcname: "cap" })))
      yield* Client.insertJobs(Array.from({ length: 10 }, () => ({ funcname: "free" })))
      yield* Client.setConcurrencyLimit("cap", 4)
      const runners = [
        yield* QueueRunner.make({ queueWatermarkDepth: 0, lease: "60 seconds" }),
        yield* QueueRunner.make({ queueWatermarkDepth: 0, lease: "60 seconds" })
      ]
      const rounds = (n: number) =>
        Effect.forEach(
          Array.from({ length: n }),
          () => Effect.all(runners.map((r) => r.round), { concurrency: "unbounded" }),
          { discard: true }
        )
      yield* rounds(3)
      assert.strictEqual(yield* queued("cap"), 4)
      assert.strictEqual(yield* queued("free"), 10)
      assert.strictEqual(yield* storage.flow.leased("cap"), 4)
      // Two complete: two more go, no more.
      yield* storage.complete((yield* leasedJobs("cap")).slice(0, 2))
      yield* rounds(3)
      assert.strictEqual(yield* queued("cap"), 6)
      assert.strictEqual(yield* storage.flow.leased("cap"), 4)
      // Leases that run out (workers gone) free their slots: the jobs are due again, and go again
      // (gearmand merges the copies still queued, by their unique).
      yield* TestClock.adjust(Duration.seconds(61))
      assert.strictEqual(yield* storage.flow.leased("cap"), 0)
      yield* rounds(2)
      assert.strictEqual(yield* storage.flow.leased("cap"), 4)
      // The limit removed, the rest go at once.
      yield* Client.setConcurrencyLimit("cap", null)
      yield* TestClock.adjust(Duration.seconds(1))
      yield* rounds(1)
      assert.strictEqual(yield* dueOf("cap"), 0)
    })
  )

  test(
    "with a rate limit too, both hold: tokens not used because the slots are full go back",
    Effect.gen(function*() {
      const storage = yield* Storage
      yield* Client.insertJobs(Array.from({ length: 50 }, () => ({ funcname: "both" })))
      yield* storage.flow.setControl("both", { rate: { count: 10, periodMs: 1000, burst: 10 }, concurrency: 3 })
      const runner = yield* QueueRunner.make({ queueWatermarkDepth: 0 })
      yield* runner.round
      yield* runner.round
      assert.strictEqual(yield* queued("both"), 3)
      // 3 tokens used of the 10: the other 7 went back.
      const bucket = yield* storage.flow.bucket("both")
      assert.strictEqual(bucket._tag === "Some" ? Math.round(bucket.value.tokens) : -1, 7)
      yield* storage.complete(yield* leasedJobs("both"))
      yield* runner.round
      assert.strictEqual(yield* queued("both"), 6)
    })
  )

  test(
    "the Injector dispatches a concurrency-limited function's jobs within its limit and stores the rest due",
    Effect.gen(function*() {
      yield* Client.setConcurrencyLimit("cap", 2)
      const handle = yield* Injector.makeHandler({ queueWatermarkDepth: 0 })
      const request = new TextEncoder().encode(
        JSON.stringify(Array.from({ length: 5 }, (_, i) => ({ funcname: "cap", arg: String(i) })))
      )
      const reply = JSON.parse(yield* handle(request))
      assert.strictEqual(reply.length, 5)
      assert.strictEqual(yield* queued(QueueRunner.CONTROLLER_FUNCTION), 2)
      assert.strictEqual(yield* dueOf("cap"), 3)
      yield* handle(new TextEncoder().encode(JSON.stringify({ funcname: "cap", arg: "late" })))
      assert.strictEqual(yield* queued(QueueRunner.CONTROLLER_FUNCTION), 2, "no slot free: stored due")
      assert.strictEqual(yield* dueOf("cap"), 4)
    })
  )
})

describe("priorities", () => {
  test(
    "inject_jobs takes \"priority\" (high, normal, low); any other value rejects the request, naming it",
    Effect.gen(function*() {
      const storage = yield* Storage
      // Paused: stored due, so the claim below shows what was stored.
      yield* Client.pauseFunction("ranked")
      const handle = yield* Injector.makeHandler({ queueWatermarkDepth: 0 })
      const send = (body: unknown) => handle(new TextEncoder().encode(JSON.stringify(body)))
      yield* send([
        { funcname: "ranked", arg: "a", priority: "low" },
        { funcname: "ranked", arg: "b" },
        { funcname: "ranked", arg: "c", priority: "high" },
        { funcname: "ranked", arg: "d", priority: null }
      ])
      for (const bad of ["urgent", 5, "HIGH", ["high"]]) {
        const rejected = yield* Effect.flip(send({ funcname: "ranked", arg: "x", priority: bad }))
        assert.include(Buffer.from(rejected.data).toString(), "priority", JSON.stringify(bad))
      }
      const claimed = yield* storage.claimDue(1, 10, "60 seconds")
      assert.deepStrictEqual(claimed.map((j) => [Buffer.from(j.arg).toString(), j.priority ?? "normal"]), [
        ["c", "high"],
        ["b", "normal"],
        ["d", "normal"],
        ["a", "low"]
      ])
    })
  )

  test(
    "a claimed job goes to gearmand with its priority: a high one stored last is handed out first",
    Effect.gen(function*() {
      yield* Client.insertJobs([
        { funcname: "g", arg: "low", priority: "low" },
        { funcname: "g", arg: "normal" }
      ])
      const runner = yield* QueueRunner.make({ queueWatermarkDepth: 0 })
      yield* runner.round
      yield* Client.insertJob({ funcname: "g", arg: "high", priority: "high" })
      yield* runner.round
      const gearman = yield* Gearman.Gearman
      const order: Array<string> = []
      yield* Effect.forkScoped(
        gearman.serve({
          g: (job) => Effect.sync(() => void order.push(JSON.parse(Buffer.from(job.payload).toString()).arg))
        }, {
          concurrency: 1
        })
      )
      yield* TestClock.adjust(Duration.millis(10))
      for (let i = 0; i < 50 && order.length < 3; i++) yield* Effect.yieldNow()
      assert.deepStrictEqual(order, ["high", "normal", "low"])
    })
  )
})

describe("schedules", () => {
  const everySecond = (name: string, missed: "skip" | "run-once" = "skip") => ({
    name,
    cron: "*/1 * * * * *",
    funcname: "tick",
    arg: name,
    missed
  })
  const keys = Effect.flatMap(Storage, (s) => s.list({ limit: 10_000 })).pipe(
    Effect.map((jobs) => jobs.map((j) => j.uniqkey!).sort())
  )

  test(
    "three runners ticking at the same moments enqueue each slot once (the compare-and-set picks one)",
    Effect.gen(function*() {
      const storage = yield* Storage
      yield* Scheduler.define([everySecond("s")])
      let wins = 0
      for (let i = 0; i < 10; i++) {
        yield* TestClock.adjust(Duration.seconds(1))
        const reports = yield* Effect.all(
          Array.from({ length: 3 }, () => Scheduler.tick(storage, 2)),
          { concurrency: "unbounded" }
        )
        wins += reports.reduce((n, r) => n + r.advanced.length, 0)
      }
      assert.strictEqual(wins, 10)
      assert.deepStrictEqual(yield* keys, Array.from({ length: 10 }, (_, i) => `schedule:s:${T0 + 1 + i}`))
    })
  )

  test(
    "three runners, all down for a minute, then back: each slot once, skip drops the missed ones, run-once adds one",
    Effect.gen(function*() {
      const storage = yield* Storage
      yield* Scheduler.define([everySecond("skip"), everySecond("once", "run-once")])
      const ticks = (seconds: number) =>
        Effect.forEach(Array.from({ length: seconds }), () =>
          Effect.zipRight(
            TestClock.adjust(Duration.seconds(1)),
            Effect.all(Array.from({ length: 3 }, () => Scheduler.tick(storage, 2)), { concurrency: "unbounded" })
          ), { discard: true })
      yield* ticks(5)
      yield* TestClock.adjust(Duration.minutes(1))
      yield* ticks(5)
      const slots = (name: string) =>
        Effect.map(
          keys,
          (all) => all.filter((k) => k.startsWith(`schedule:${name}:`)).map((k) => Number(k.split(":")[2]) - T0)
        )
      // Slots 1..5, then at 66 (a minute later) the three within the grace (64..66), then 67..70.
      const after = [64, 65, 66, 67, 68, 69, 70]
      assert.deepStrictEqual(yield* slots("skip"), [1, 2, 3, 4, 5, ...after])
      // run-once: one job for the 58 missed slots, keyed by the first (6).
      assert.deepStrictEqual(yield* slots("once"), [1, 2, 3, 4, 5, 6, ...after])
    })
  )

  test(
    "after a gap, skip enqueues only the slots within the grace; run-once adds one job for the missed ones",
    Effect.gen(function*() {
      const storage = yield* Storage
      yield* Scheduler.define([everySecond("skip"), everySecond("once", "run-once")])
      yield* TestClock.adjust(Duration.seconds(1))
      yield* Scheduler.tick(storage, 2)
      // Everything down for 10 s.
      yield* TestClock.adjust(Duration.seconds(10))
      const report = yield* Scheduler.tick(storage, 2)
      assert.deepStrictEqual(report.advanced.map((a) => [a.name, a.jobs, a.missed]), [["once", 4, true], [
        "skip",
        3,
        true
      ]])
      const all = yield* keys
      const now = T0 + 11
      // Slots T0+2 .. T0+8 were missed (more than 2 s late); T0+9 .. T0+11 are on time.
      assert.deepStrictEqual(all.filter((k) => k.startsWith("schedule:skip:")), [
        `schedule:skip:${T0 + 1}`,
        ...[now - 2, now - 1, now].map((s) => `schedule:skip:${s}`)
      ])
      assert.deepStrictEqual(all.filter((k) => k.startsWith("schedule:once:")), [
        `schedule:once:${T0 + 1}`,
        `schedule:once:${T0 + 2}`,
        ...[now - 2, now - 1, now].map((s) => `schedule:once:${s}`)
      ])
      // The schedules go on from the next slot.
      yield* TestClock.adjust(Duration.seconds(1))
      yield* Scheduler.tick(storage, 2)
      assert.include(yield* keys, `schedule:skip:${now + 1}`)
    })
  )

  test(
    "a time zone is honoured; a bad expression or zone is refused at definition",
    Effect.gen(function*() {
      const rows = yield* Scheduler.define([{
        name: "paris3am",
        cron: "0 0 3 * * *",
        funcname: "nightly",
        timezone: "Europe/Paris"
      }])
      // T0 is 2023-11-14T22:13:20Z; 03:00 in Paris (UTC+1 in November) is 02:00Z the next day.
      assert.strictEqual(new Date(rows[0]!.nextSlot * 1000).toISOString(), "2023-11-15T02:00:00.000Z")
      const bad = yield* Effect.either(Scheduler.define([{ name: "bad", cron: "nope", funcname: "x" }]))
      assert.isTrue(bad._tag === "Left")
      const badTz = yield* Effect.either(
        Scheduler.define([{ name: "badtz", cron: "* * * * *", funcname: "x", timezone: "Mars/Olympus" }])
      )
      assert.isTrue(badTz._tag === "Left")
    })
  )
})
