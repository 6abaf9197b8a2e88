// Flow control against MariaDB and gearmand, the roles as `garivini queue-runner` processes and a
// worker in this process that records when each job started: a paused function gets no dispatch
// while another flows, then resumes; a concurrency limit and a rate limit hold across two runners; a schedule's slots
// each run once across three runners, and the missed-slot policies hold after they were all down.
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Worker from "../src/roles/Worker.js"
import { eventually, gearmandServer } from "./gearman/gearmand.js"
import { background, garivini, listJobs } from "./support/cli.js"
import { env } from "./support/e2e.js"
import { mysqlHost, mysqlPort, testShards } from "./support/mysql.js"

interface Start {
  readonly funcname: string
  readonly at: number
  readonly uniqkey: string | null
}

/** A worker for `functions` recording each start; `starts` reads them. */
const recordingWorker = (functions: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const starts: Array<Start> = []
    const handler = (job: Worker.WorkerJob) =>
      Effect.sync(() => void starts.push({ funcname: job.funcname, at: Date.now(), uniqkey: job.uniqkey }))
    yield* Worker.serve(Object.fromEntries(functions.map((f) => [f, handler])), { concurrency: 16 })
    return { starts: (funcname: string) => Effect.sync(() => starts.filter((s) => s.funcname === funcname)) }
  })

const setUp = Effect.gen(function*() {
  const [shard] = yield* testShards(1)
  const server = yield* gearmandServer
  const db = `mysql://root@${mysqlHost}:${mysqlPort}/${shard!.database}`
  const run = (...args: ReadonlyArray<string>) =>
    Effect.tap(garivini(...args, "--db", db), (r) => assert.strictEqual(r.code, 0, r.stderr))
  /** A runner process, once it has reached the database (a signal before that would kill it). */
  const runner = () =>
    Effect.tap(
      background("queue-runner", "--db", db, "--gearmand", server, "--batch-run-sleep", "0.1"),
      (r) => eventually(Effect.map(r.errors, (e) => e.includes("connected:")), "a runner to start", 60_000)
    )
  return { shard: shard!, server, db, run, runner }
})

/** A worker for `funcname` whose handlers take `ms` each, recording the most running at once. */
const busyWorker = (funcname: string, ms: number) =>
  Effect.gen(function*() {
    let running = 0
    let most = 0
    let done = 0
    const handler = () =>
      Effect.acquireUseRelease(
        Effect.sync(() => {
          running++
          most = Math.max(most, running)
        }),
        () => Effect.sleep(ms),
        () => Effect.sync(() => (running--, done++))
      )
    yield* Worker.serve({ [funcname]: handler }, { concurrency: 32 })
    return { most: Effect.sync(() => most), done: Effect.sync(() => done) }
  })

describe("flow control across queue-runner processes", () => {
  it.scopedLive(
    "a concurrency limit of 5 is never exceeded across two runners while 1,000 jobs run",
    () =>
      Effect.gen(function*() {
        const { db, run, runner, server, shard } = yield* setUp
        yield* run("inject", "--count", "1000", "--function", "capped", "--gearmand", server)
        yield* run("functions", "limit", "capped", "--concurrency", "5")
        const listed = yield* garivini("functions", "list", "--db", db, "--json")
        assert.deepStrictEqual(JSON.parse(listed.stdout), {
          functions: [{ function: "capped", paused: false, rate_limit: null, concurrency: 5 }]
        })
        yield* Effect.gen(function*() {
          // A worker with room for 32 at once: only the limit holds it to 5.
          const worker = yield* busyWorker("capped", 10)
          const runners = [yield* runner(), yield* runner()]
          yield* eventually(Effect.map(worker.done, (n) => n >= 1000), "the 1,000 jobs to run", 120_000)
          const most = yield* worker.most
          assert.isAtMost(most, 5, "never more than the limit at once")
          assert.strictEqual(most, 5, "the limit is used")
          for (const r of runners) assert.strictEqual((yield* r.stop("SIGTERM")).code, 0)
        }).pipe(Effect.scoped, Effect.provide(env([shard], [server])))
        const bad = yield* garivini("functions", "limit", "capped", "--concurrency", "0", "--db", db)
        assert.notStrictEqual(bad.code, 0)
        assert.include(bad.stderr, "concurrency 0 is not an integer")
        const off = yield* garivini("functions", "limit", "capped", "--off", "--db", db)
        assert.strictEqual(off.stdout, "capped: no limit\n", off.stderr)
        assert.deepStrictEqual(JSON.parse((yield* garivini("functions", "list", "--db", db, "--json")).stdout), {
          functions: []
        })
      }),
    180_000
  )

  it.scopedLive(
    "a paused function gets no dispatch while another flows; resumed, its due jobs run",
    () =>
      Effect.gen(function*() {
        const { db, run, runner, server, shard } = yield* setUp
        yield* run("inject", "--count", "50", "--function", "held", "--gearmand", server)
        yield* run("inject", "--count", "50", "--function", "flows", "--gearmand", server)
        yield* run("functions", "pause", "held")
        const listed = yield* garivini("functions", "list", "--db", db, "--json")
        assert.deepStrictEqual(JSON.parse(listed.stdout), {
          functions: [{ function: "held", paused: true, rate_limit: null, concurrency: null }]
        })
        yield* Effect.gen(function*() {
          const worker = yield* recordingWorker(["held", "flows"])
          const runners = [yield* runner(), yield* runner()]
          yield* eventually(
            Effect.map(worker.starts("flows"), (s) => s.length >= 50),
            "the other function to run",
            60_000
          )
          // Rounds go on every 100 ms: a few seconds of them dispatch nothing of the paused function.
          yield* Effect.sleep("2 seconds")
          assert.strictEqual((yield* worker.starts("held")).length, 0)
          const held = yield* listJobs(db, "--function", "held")
          assert.strictEqual(held.length, 50)
          assert.isTrue(held.every((j) => j.state === "due"), "a paused function's jobs are listed due")
          const status = JSON.parse((yield* garivini("status", "--db", db, "--gearmand", server, "--json")).stdout)
          assert.deepStrictEqual(status.flow_control, [{
            function: "held",
            paused: true,
            rate_limit: null,
            concurrency: null
          }])

          yield* run("functions", "resume", "held")
          yield* eventually(
            Effect.map(worker.starts("held"), (s) => s.length >= 50),
            "the resumed function to run",
            60_000
          )
          for (const r of runners) assert.strictEqual((yield* r.stop("SIGTERM")).code, 0)
        }).pipe(Effect.scoped, Effect.provide(env([shard], [server])))
      }),
    120_000
  )

  it.scopedLive(
    "high-priority jobs stored after a backlog of low ones start first, across two runners",
    () =>
      Effect.gen(function*() {
        const { run, runner, server, shard } = yield* setUp
        yield* run("inject", "--count", "300", "--function", "ranked", "--priority", "low", "--arg", "low")
        yield* run("inject", "--count", "20", "--function", "ranked", "--priority", "high", "--arg", "high")
        yield* Effect.gen(function*() {
          // One job at a time, so the order of starts is the order the jobs were handed out.
          const order: Array<string> = []
          yield* Worker.serve({
            ranked: (job) =>
              Effect.zipRight(
                Effect.sync(() => void order.push(Buffer.from(job.arg).toString())),
                Effect.sleep("2 millis")
              )
          }, { concurrency: 1 })
          const runners = [yield* runner(), yield* runner()]
          yield* eventually(Effect.sync(() => order.length >= 320), "the 320 jobs to run", 60_000)
          const lastHigh = order.lastIndexOf("high")
          // Claimed first (and sent to gearmand as high): they start before the backlog, but for
          // the few low jobs a runner may hand out before the other's claim of the high ones.
          assert.isBelow(lastHigh, 40, `the last high job started ${lastHigh + 1}th`)
          assert.strictEqual(order.filter((a) => a === "high").length, 20)
          for (const r of runners) assert.strictEqual((yield* r.stop("SIGTERM")).code, 0)
        }).pipe(Effect.scoped, Effect.provide(env([shard], [server])))
      }),
    120_000
  )

  it.scopedLive(
    "a rate limit of 50/s holds within 10 % over 30 s across two runners, counted by handler starts",
    () =>
      Effect.gen(function*() {
        const { run, runner, server, shard } = yield* setUp
        yield* run("inject", "--count", "2000", "--function", "rated", "--gearmand", server)
        yield* run("functions", "limit", "rated", "--rate", "50/s")
        yield* Effect.gen(function*() {
          const worker = yield* recordingWorker(["rated"])
          const runners = [yield* runner(), yield* runner()]
          yield* eventually(Effect.map(worker.starts("rated"), (s) => s.length > 0), "the first start", 60_000)
          yield* Effect.sleep("32 seconds")
          const starts = (yield* worker.starts("rated")).map((s) => s.at).sort((a, b) => a - b)
          const first = starts[0]!
          // The first second holds the burst (50) on top of the rate: the window starts after it.
          const window = starts.filter((t) => t >= first + 1000 && t < first + 31_000).length
          assert.isAtLeast(window, 1350, `${window} starts in 30 s`)
          assert.isAtMost(window, 1650, `${window} starts in 30 s`)
          for (const r of runners) assert.strictEqual((yield* r.stop("SIGTERM")).code, 0)
        }).pipe(Effect.scoped, Effect.provide(env([shard], [server])))
      }),
    150_000
  )

  it.scopedLive(
    "three runners and an every-second schedule: each slot runs once; after all were down, skip and run-once hold",
    () =>
      Effect.gen(function*() {
        const { db, run, runner, server, shard } = yield* setUp
        yield* Effect.gen(function*() {
          const worker = yield* recordingWorker(["tick"])
          let runners = [yield* runner(), yield* runner(), yield* runner()]
          // Added once the runners are up, so that no slot is missed while they start.
          yield* Effect.sleep("2 seconds")
          yield* run("schedules", "add", "skip", "--cron", "*/1 * * * * *", "--function", "tick", "--arg", "skip")
          yield* run(
            "schedules",
            "add",
            "once",
            "--cron",
            "*/1 * * * * *",
            "--function",
            "tick",
            "--arg",
            "once",
            "--missed",
            "run-once"
          )
          const listed = JSON.parse((yield* garivini("schedules", "list", "--db", db, "--json")).stdout)
          assert.deepStrictEqual(listed.schedules.map((s: { name: string; missed: string }) => [s.name, s.missed]), [
            ["once", "run-once"],
            ["skip", "skip"]
          ])
          yield* Effect.sleep("8 seconds")
          for (const r of runners) assert.strictEqual((yield* r.stop("SIGTERM")).code, 0)
          yield* Effect.sleep("5 seconds")
          runners = [yield* runner(), yield* runner(), yield* runner()]
          yield* Effect.sleep("5 seconds")
          // No more slots; the runners still up send what the last ticks stored (a job stored just
          // before a runner stops waits for the next runner, so none may stop before the table is empty).
          yield* run("schedules", "remove", "skip")
          yield* run("schedules", "remove", "once")
          yield* eventually(
            Effect.map(listJobs(db, "--function", "tick"), (jobs) => jobs.length === 0),
            "the jobs to run"
          )
          for (const r of runners) assert.strictEqual((yield* r.stop("SIGTERM")).code, 0)

          const starts = yield* worker.starts("tick")
          const slotsOf = (name: string) =>
            starts.flatMap((s) => s.uniqkey?.startsWith(`schedule:${name}:`) ? [Number(s.uniqkey.split(":")[2])] : [])
          for (const name of ["skip", "once"]) {
            const slots = slotsOf(name)
            assert.strictEqual(new Set(slots).size, slots.length, `${name}: no slot ran twice`)
          }
          const skip = slotsOf("skip").sort((a, b) => a - b)
          const once = new Set(slotsOf("once"))
          // skip: consecutive slots, but for one gap of the slots missed while no runner was up.
          const gaps = skip.slice(1).flatMap((s, i) => s - skip[i]! > 1 ? [[skip[i]!, s] as const] : [])
          assert.strictEqual(gaps.length, 1, `one gap in ${JSON.stringify(skip)}`)
          const [before, after] = gaps[0]!
          assert.isAtLeast(after - before, 3, "slots more than the grace late were skipped")
          assert.isAtLeast(skip.filter((s) => s < before).length, 5, "each slot ran while the runners were up")
          // run-once (added a moment after skip): the same slots, plus one job for the missed ones
          // (keyed by the first missed slot).
          const firstOnce = Math.min(...once)
          const context = `skip ${JSON.stringify(skip)}, once ${JSON.stringify([...once].sort((a, b) => a - b))}`
          assert.isBelow(firstOnce, before, context)
          for (const s of skip)
            if (s >= firstOnce)
              assert.isTrue(once.has(s), `once ran slot ${s} as skip did: ${context}`)
          // (Up to skip's last slot: once is removed a moment after skip and may run one more.)
          const extra = [...once].filter((s) => s <= skip[skip.length - 1]! && !skip.includes(s))
          assert.deepStrictEqual(extra, [before + 1], context)
        }).pipe(Effect.scoped, Effect.provide(env([shard], [server])))
      }),
    120_000
  )
})
