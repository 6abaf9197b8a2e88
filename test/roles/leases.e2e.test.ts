// Fenced leases and heartbeats on MariaDB and a real gearmand (docs/job-life.md, "Fenced leases"
// and "Leases held while someone holds the job"): a job running longer than several leases runs
// once; a late or forged completion changes nothing; a cancelled running job is interrupted, its
// finalizer runs, and it is not retried.
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Either, Option, Ref } from "effect"
import { Gearman } from "../../src/gearman/Gearman.js"
import { decodeWorkerJson, encodeWorkerJson, jobState, nowSeconds } from "../../src/Job.js"
import { cancelJob } from "../../src/jobActions.js"
import * as Client from "../../src/roles/Client.js"
import * as QueueRunner from "../../src/roles/QueueRunner.js"
import * as Worker from "../../src/roles/Worker.js"
import { Storage } from "../../src/storage/Storage.js"
import { eventually, gearmand } from "../gearman/gearmand.js"
import { env } from "../support/e2e.js"
import { testShards } from "../support/mysql.js"

/** A short lease, so a job outlives several of them; heartbeats every 0.5 s. */
const LEASE = "2 seconds"
const beats = { lease: LEASE, interval: "500 millis" } as const

describe("fenced leases and heartbeats on MariaDB and gearmand", () => {
  it.scopedLive(
    "a job running longer than several leases, heartbeating, runs exactly once and shows as running meanwhile",
    () =>
      Effect.gen(function*() {
        const [shard] = yield* testShards(1)
        const gd = yield* gearmand
        const runs = yield* Ref.make(0)
        yield* Effect.gen(function*() {
          const storage = yield* Storage
          yield* Worker.serve({
            slow: () => Effect.zipRight(Ref.update(runs, (n) => n + 1), Effect.sleep("7 seconds"))
          }, beats)
          yield* Effect.forkScoped(QueueRunner.run({ batchRunSleep: "100 millis", lease: LEASE }))
          const { handle } = yield* Client.insertJob({ funcname: "slow" })
          yield* eventually(
            Effect.flatMap(storage.list({ state: "running" }), (l) => Effect.succeed(l.length === 1)),
            "the job to show as running (its first heartbeat)"
          )
          const counts = (yield* storage.counts()).find((c) => c.funcname === "slow")!
          assert.strictEqual(counts.running, 1)
          // Until it completes, it stays running: never due again, never claimed again. (A second
          // run would be hidden here, merged by gearmand's unique or this worker's work key: the
          // row's states are what show the lease held.)
          const seen = new Set<string>()
          for (;;) {
            const row = yield* storage.get(handle)
            if (Option.isNone(row)) break
            seen.add(jobState(row.value, yield* nowSeconds))
            yield* Effect.sleep("200 millis")
          }
          assert.deepStrictEqual([...seen], ["running"])
          // Over three leases passed while it ran; a QueueRunner polling every 100 ms never took it again.
          assert.strictEqual(yield* Ref.get(runs), 1)
        }).pipe(Effect.scoped, Effect.provide(env([shard!], [gd.server])))
      }),
    60_000
  )

  it.scopedLive(
    "a late completion of a job leased again changes nothing; a forged worker JSON with a wrong token deletes nothing",
    () =>
      Effect.gen(function*() {
        const [shard] = yield* testShards(1)
        const gd = yield* gearmand
        yield* Effect.gen(function*() {
          const storage = yield* Storage
          // A first holder: claimed, started (one heartbeat), then stalled until its lease ran out.
          const { handle } = yield* Client.insertJob({ funcname: "relet" })
          const [first] = yield* storage.claimDue(1, 10, "1 second")
          yield* storage.heartbeat(1, [first!], "1 second")
          const stale = encodeWorkerJson(first!)
          yield* Effect.sleep("2100 millis")
          // Leased again (a new token: the first holder was started), and now running elsewhere.
          const release = yield* Deferred.make<void>()
          const started = yield* Deferred.make<void>()
          yield* Worker.serve({
            relet: () => Effect.zipRight(Deferred.succeed(started, undefined), Deferred.await(release))
          }, beats)
          yield* Effect.forkScoped(QueueRunner.run({ batchRunSleep: "100 millis", lease: LEASE }))
          yield* Deferred.await(started)
          // The first holder wakes up and settles its job from its worker JSON: nothing changes.
          const late = Either.getOrThrow(decodeWorkerJson(stale))
          assert.strictEqual(yield* Client.completeJob(late), 0)
          assert.strictEqual(yield* Client.rescheduleJob(late, "+600"), "fenced")
          assert.isTrue((yield* Client.failedJob(late, { error: "late" })).fenced)
          const row = Option.getOrThrow(yield* storage.get(handle))
          assert.deepStrictEqual([row.failcount, row.lastError, jobState(row, yield* nowSeconds)], [
            0,
            null,
            "dispatched"
          ])
          // The current holder completes it.
          yield* Deferred.succeed(release, undefined)
          yield* eventually(Effect.map(storage.get(handle), Option.isNone), "the current holder to complete it")

          // A forged worker JSON (a stored job, a made-up token) sent to the worker helper: its
          // handler runs, but its completion deletes nothing.
          const forgedRuns = yield* Ref.make(0)
          yield* Worker.serve({ victim: () => Ref.update(forgedRuns, (n) => n + 1) }, beats)
          const { handle: victim } = yield* Client.insertJob({ funcname: "victim", runAt: "+3600" })
          const stored = Option.getOrThrow(yield* storage.get(victim))
          const gearman = yield* Gearman
          yield* gearman.submit("victim", encodeWorkerJson({ ...stored, lease: "f".repeat(32) }))
          assert.strictEqual(yield* Ref.get(forgedRuns), 1)
          yield* Effect.sleep("300 millis") // the completion batch
          assert.isTrue(Option.isSome(yield* storage.get(victim)), "the forged completion deleted nothing")
          // A Perl worker's plain DELETE by jobid (no token) still works.
          assert.strictEqual(yield* Client.completeJob(victim), 1)
        }).pipe(Effect.scoped, Effect.provide(env([shard!], [gd.server])))
      }),
    60_000
  )

  it.scopedLive(
    "a cancelled running job: `jobs cancel` accepts it without --force, its handler is interrupted (finalizer run), and it is not retried",
    () =>
      Effect.gen(function*() {
        const [shard] = yield* testShards(1)
        const gd = yield* gearmand
        const runs = yield* Ref.make(0)
        const finalized = yield* Deferred.make<void>()
        yield* Effect.gen(function*() {
          const storage = yield* Storage
          yield* Worker.serve({
            endless: () =>
              Effect.zipRight(
                Ref.update(runs, (n) => n + 1),
                Effect.never.pipe(Effect.onInterrupt(() => Deferred.succeed(finalized, undefined)))
              )
          }, beats)
          yield* Effect.forkScoped(QueueRunner.run({ batchRunSleep: "100 millis", lease: LEASE }))
          const { handle } = yield* Client.insertJob({ funcname: "endless" })
          yield* eventually(
            Effect.map(storage.get(handle), (j) => Option.isSome(j) && j.value.heartbeatAt !== null),
            "the job to run and heartbeat"
          )
          // A running job is accepted without --force (the guard refuses only what it cannot stop).
          const outcome = yield* cancelJob(handle, { lease: LEASE })
          assert.strictEqual(outcome._tag, "Done", outcome.message)
          yield* Deferred.await(finalized)
          // Several leases later: kept as cancelled, not retried, no failure recorded.
          yield* Effect.sleep("4 seconds")
          const row = Option.getOrThrow(yield* storage.get(handle))
          assert.deepStrictEqual([row.ended, row.failcount, row.lastError], ["cancelled", 0, null])
          assert.strictEqual(yield* Ref.get(runs), 1)
        }).pipe(Effect.scoped, Effect.provide(env([shard!], [gd.server])))
      }),
    60_000
  )
})
