// A job dispatched again while gearmand still holds it (its lease ran out: no worker yet, no
// Controller, a slow run) merges into the first copy: MariaDB, two real gearmand, the roles.
// Every dispatch carries a unique naming the job (src/roles/dispatch.ts).
import { assert, describe, it } from "@effect/vitest"
import { Effect, Option, Ref } from "effect"
import * as Gearman from "../../src/gearman/Gearman.js"
import type { GearmanJobHandle } from "../../src/gearman/GearmanClient.js"
import { encodeWorkerJson, nowSeconds } from "../../src/Job.js"
import type { StoredJobId } from "../../src/Job.js"
import * as Client from "../../src/roles/Client.js"
import * as Controller from "../../src/roles/Controller.js"
import { CONTROLLER_FUNCTION } from "../../src/roles/dispatch.js"
import * as Injector from "../../src/roles/Injector.js"
import * as QueueRunner from "../../src/roles/QueueRunner.js"
import * as Worker from "../../src/roles/Worker.js"
import { Storage } from "../../src/storage/Storage.js"
import { eventually, gearmand } from "../gearman/gearmand.js"
import { assertEachRanOnce, env, recorder, remaining } from "../support/e2e.js"
import { testShards } from "../support/mysql.js"

/** Jobs of `fn` each server holds (queued + running), in server order. */
const heldPerServer = (fn: string) =>
  Effect.flatMap(Gearman.Gearman, (g) =>
    Effect.forEach(g.servers, (server) =>
      Effect.map(
        g.admin.status(server).pipe(Effect.orDie),
        (rows) => rows.find((r) => r.name === fn)?.total ?? 0
      )))

const sum = (ns: ReadonlyArray<number>) => ns.reduce((a, b) => a + b, 0)

/** Rounds until the runner has claimed `count` jobs again (their lease ran out); its reports. */
const roundsUntilClaimed = (runner: { readonly round: Effect.Effect<QueueRunner.RoundReport> }, count: number) =>
  Effect.gen(function*() {
    const reports = yield* Ref.make<Array<QueueRunner.ShardRound>>([])
    yield* eventually(
      Effect.gen(function*() {
        const round = yield* runner.round
        const all = yield* Ref.updateAndGet(reports, (r) => [...r, ...round.shards])
        return sum(all.map((r) => r.claimed)) >= count
      }),
      `the ${count} job(s) to be claimed again after their lease`,
      15_000
    )
    return yield* Ref.get(reports)
  })

describe("a job dispatched again while gearmand still holds it", () => {
  it.scopedLive(
    "a stored job whose lease runs out while its first copy is still queued is dispatched again and runs once",
    () =>
      Effect.gen(function*() {
        const shards = yield* testShards(2)
        const a = yield* gearmand
        const b = yield* gearmand
        yield* Effect.scoped(Effect.gen(function*() {
          const { record, runs } = yield* recorder
          // No worker for `late` yet: every copy stays queued in gearmand.
          yield* Client.insertJobs(Array.from({ length: 40 }, (_, i) => ({ funcname: "late", arg: `${i}` })))
          yield* Client.insertJob({ funcname: "late", arg: "keyed", uniqkey: "late-key" })
          const runner = yield* QueueRunner.make({ lease: "1 second", queueWatermarkDepth: 0 })
          const first = yield* runner.round
          assert.strictEqual(sum(first.shards.map((s) => s.dispatched)), 41)
          const held = yield* heldPerServer("late")
          assert.strictEqual(sum(held), 41)
          assert.isTrue(held.every((n) => n > 0), `the uniques spread the jobs over both servers: ${held.join(" / ")}`)

          // The lease (1 s) runs out: the runner claims and dispatches every job again (some maybe
          // twice more, when the two shards' leases straddle a second)...
          const again = yield* roundsUntilClaimed(runner, 41)
          assert.isAtLeast(sum(again.map((s) => s.dispatched)), 41)
          assert.strictEqual(sum(again.map((s) => s.failed)), 0)
          // ...and each copy went to the server holding the first one, which merged it.
          assert.deepStrictEqual(yield* heldPerServer("late"), held)

          yield* Worker.serve({ late: record }, { concurrency: 4 })
          yield* eventually(Effect.map(remaining, (n) => n === 0), "every row to be deleted")
          assertEachRanOnce(yield* runs, 41)
          assert.deepStrictEqual(yield* heldPerServer("late"), [0, 0])
        })).pipe(Effect.provide(env(shards, [a.server, b.server])))
      }),
    90_000
  )

  it.scopedLive(
    "an injected job whose Controller is absent past the lease: the Injector's and the QueueRunner's copies merge, it runs once",
    () =>
      Effect.gen(function*() {
        const shards = yield* testShards(2)
        const a = yield* gearmand
        const b = yield* gearmand
        yield* Effect.scoped(Effect.gen(function*() {
          const { record, runs } = yield* recorder
          yield* Injector.serve({ lease: "1 second", queueWatermarkDepth: 0 })
          const gearman = yield* Gearman.Gearman
          const specs = [
            ...Array.from({ length: 20 }, (_, i) => ({ funcname: "injected", arg: `${i}` })),
            { funcname: "injected", arg: "keyed", uniqkey: "inj-key" }
          ]
          const reply = yield* gearman.submit(Injector.INJECT_FUNCTION, JSON.stringify(specs))
          assert.strictEqual((JSON.parse(reply.data.toString()) as ReadonlyArray<unknown>).length, 21)
          // No Controller: the Injector's run_queued_job copies wait in gearmand.
          const held = yield* heldPerServer(CONTROLLER_FUNCTION)
          assert.strictEqual(sum(held), 21)

          const runner = yield* QueueRunner.make({ lease: "1 second", queueWatermarkDepth: 0 })
          const again = yield* roundsUntilClaimed(runner, 21)
          assert.isAtLeast(sum(again.map((s) => s.dispatched)), 21)
          // Same function, same unique, same server as the Injector's copy: merged.
          assert.deepStrictEqual(yield* heldPerServer(CONTROLLER_FUNCTION), held)

          yield* Controller.serve()
          yield* Worker.serve({ injected: record }, { concurrency: 4 })
          yield* eventually(Effect.map(remaining, (n) => n === 0), "every row to be deleted")
          assertEachRanOnce(yield* runs, 21)
        })).pipe(Effect.provide(env(shards, [a.server, b.server])))
      }),
    90_000
  )

  it.scopedLive(
    "with the server a unique hashes to down, its jobs go to the other one: nothing fails",
    () =>
      Effect.gen(function*() {
        const shards = yield* testShards(1)
        const a = yield* gearmand
        const b = yield* gearmand
        yield* Effect.scoped(Effect.gen(function*() {
          const { record, runs } = yield* recorder
          const gearman = yield* Gearman.Gearman
          yield* a.kill
          yield* eventually(Effect.sync(() => !gearman.upServers().includes(a.server)), "a's death to be noticed")
          yield* Client.insertJobs(Array.from({ length: 30 }, (_, i) => ({ funcname: "failover", arg: `${i}` })))
          const runner = yield* QueueRunner.make({ queueWatermarkDepth: 0 })
          const round = (yield* runner.round).shards[0]!
          assert.deepStrictEqual({ dispatched: round.dispatched, failed: round.failed }, { dispatched: 30, failed: 0 })
          yield* Worker.serve({ failover: record }, { concurrency: 4 })
          yield* eventually(Effect.map(remaining, (n) => n === 0), "every row to be deleted")
          assertEachRanOnce(yield* runs, 30)
        })).pipe(Effect.provide(env(shards, [a.server, b.server])))
      }),
    60_000
  )

  it.scopedLive(
    "two run_queued_job copies of one job (as Perl dispatchers send them, without a unique): the Controller's two calls share one run",
    () =>
      Effect.gen(function*() {
        const shards = yield* testShards(1)
        const gd = yield* gearmand
        yield* Effect.scoped(Effect.gen(function*() {
          const storage = yield* Storage
          const gearman = yield* Gearman.Gearman
          // The Controller's calls of the real function, as gearmand answered them.
          const created = yield* Ref.make<Array<GearmanJobHandle>>([])
          const observed: Gearman.GearmanService = {
            ...gearman,
            submit: (fn, payload, options) =>
              gearman.submit(fn, payload, {
                ...options,
                onCreated: (handle) => Ref.update(created, (hs) => [...hs, handle])
              })
          }
          yield* Controller.serve().pipe(Effect.provideService(Gearman.Gearman, observed))
          const [stored] = yield* Client.insertJobs([{
            funcname: "shared",
            arg: "x",
            flag: "controller",
            runAt: "+60"
          }])
          const row = Option.getOrThrow(yield* storage.get(stored!.handle))
          yield* gearman.submitBackground(CONTROLLER_FUNCTION, encodeWorkerJson(row))
          yield* gearman.submitBackground(CONTROLLER_FUNCTION, encodeWorkerJson(row))
          yield* eventually(Effect.map(Ref.get(created), (hs) => hs.length === 2), "both calls to be accepted")
          const [first, second] = yield* Ref.get(created)
          assert.deepStrictEqual(first, second, "gearmand merged the second call into the first")
          assert.deepStrictEqual(yield* heldPerServer("shared"), [1])

          const { record, runs } = yield* recorder
          yield* Worker.serve({ shared: record })
          yield* eventually(Effect.map(remaining, (n) => n === 0), "the row to be deleted")
          assertEachRanOnce(yield* runs, 1)
        })).pipe(Effect.provide(env(shards, [gd.server])))
      }),
    60_000
  )

  it.scopedLive(
    "the edge: a job rescheduled to run at once and dispatched again before its worker's WORK_COMPLETE reaches gearmand waits one lease",
    () =>
      Effect.gen(function*() {
        const shards = yield* testShards(1)
        const gd = yield* gearmand
        yield* Effect.scoped(Effect.gen(function*() {
          const storage = yield* Storage
          const runner = yield* QueueRunner.make({ lease: "2 seconds", queueWatermarkDepth: 0 })
          const runsAt = yield* Ref.make<Array<number>>([])
          const { handle } = yield* Client.insertJob({ funcname: "edge", arg: "x" })
          const id: StoredJobId = handle
          // A worker that asks to run again at once: the row is due before its result is sent.
          // Meanwhile a QueueRunner round claims and dispatches it: gearmand still holds this copy
          // (running), so the new one merges into it and ends with it.
          const redispatched = yield* Ref.make(Option.none<QueueRunner.ShardRound>())
          const gearman = yield* Gearman.Gearman
          yield* gearman.serve({
            edge: () =>
              Effect.gen(function*() {
                const now = yield* nowSeconds
                const n = (yield* Ref.updateAndGet(runsAt, (r) => [...r, Date.now()])).length
                if (n === 1) {
                  yield* storage.reschedule(id, now, 0).pipe(Effect.orDie)
                  yield* Ref.set(redispatched, Option.some((yield* runner.round).shards[0]!))
                } else {
                  yield* storage.complete([id]).pipe(Effect.orDie)
                }
              })
          })
          assert.strictEqual((yield* runner.round).shards[0]!.dispatched, 1)
          yield* eventually(Effect.map(Ref.get(redispatched), Option.isSome), "the first run's round")
          assert.strictEqual(
            Option.getOrThrow(yield* Ref.get(redispatched)).dispatched,
            1,
            "accepted by gearmand (merged)"
          )
          yield* eventually(Effect.map(heldPerServer("edge"), (held) => held[0] === 0), "the first run to end")
          // The merged copy ended with the first: nothing queued, and the row leased, not due.
          assert.strictEqual((yield* runner.round).shards[0]!.claimed, 0)
          const leased = Option.getOrThrow(yield* storage.get(id))
          assert.isAbove(leased.runAfter, yield* nowSeconds)
          // After the lease it is dispatched again and runs: late, never lost.
          yield* roundsUntilClaimed(runner, 1)
          yield* eventually(Effect.map(remaining, (n) => n === 0), "the second run to complete the row")
          const [r1, r2] = yield* Ref.get(runsAt)
          assert.isAtLeast(r2! - r1!, 1000, "the second run waited for the lease")
        })).pipe(Effect.provide(env(shards, [gd.server])))
      }),
    60_000
  )
})
