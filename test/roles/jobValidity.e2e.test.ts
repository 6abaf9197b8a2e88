// Job validity at every entry point, on MariaDB and a real gearmand (and the embedded job server
// over TCP where only the Gearman side matters): reserved and malformed names, NUL in keys,
// undeliverable sizes, uniques of injected jobs, and a worker's retry requests through the Controller.
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Either, Option } from "effect"
import type { ShardConfig } from "../../src/storage/targets.js"
import * as Gearman from "../../src/gearman/Gearman.js"
import { encodeWorkerJson, NEVER, nowSeconds } from "../../src/Job.js"
import type { StoredJob } from "../../src/Job.js"
import * as Client from "../../src/roles/Client.js"
import * as Controller from "../../src/roles/Controller.js"
import * as Injector from "../../src/roles/Injector.js"
import * as QueueRunner from "../../src/roles/QueueRunner.js"
import { CONTROLLER_FUNCTION } from "../../src/roles/QueueRunner.js"
import * as Worker from "../../src/roles/Worker.js"
import { Storage } from "../../src/storage/Storage.js"
import { embeddedJobServer } from "../gearman/embedded.js"
import { eventually, gearmand } from "../gearman/gearmand.js"
import { env, remaining } from "../support/e2e.js"
import { adminQuery, testShards } from "../support/mysql.js"

const inject = (body: unknown) =>
  Effect.flatMap(Gearman.Gearman, (g) => g.submit(Injector.INJECT_FUNCTION, JSON.stringify(body)))

/** The rejection an inject_jobs call ended in (its WORK_EXCEPTION text). */
const injectRejection = (body: unknown) =>
  Effect.gen(function*() {
    const e = yield* Effect.flip(inject(body))
    assert.strictEqual(e._tag, "GearmanJobException", `inject ${JSON.stringify(body).slice(0, 80)} should be refused`)
    return e._tag === "GearmanJobException" ? Buffer.from(e.data).toString() : ""
  })

const stored = (job: { readonly dbid: number; readonly jobid: number }) =>
  Effect.flatMap(Storage, (s) => Effect.map(s.get(job), Option.getOrThrow))

/** A row written the way another client (a Perl one) could: no validation on the way in. */
const insertRaw = (shard: ShardConfig, funcname: string, runAfter: number) =>
  Effect.map(
    adminQuery(
      `INSERT INTO \`${shard.database}\`.job (funcname, arg, run_after, flag) VALUES (?, ?, ?, 'controller')`,
      [funcname, "raw", runAfter]
    ),
    ([result]) => (result as { readonly insertId: number }).insertId
  )

describe("job validity on MariaDB and gearmand", () => {
  it.scopedLive(
    "reserved names are refused at insertJob and inject_jobs; a stored one is parked by the Controller, which keeps running jobs",
    () =>
      Effect.gen(function*() {
        const shards = yield* testShards(1)
        const gd = yield* gearmand
        yield* Effect.scoped(Effect.gen(function*() {
          const ran = yield* Deferred.make<string>()
          yield* Injector.serve()
          // Two slots: a Controller calling itself filled both with nested calls, and jammed.
          yield* Controller.serve({ concurrency: 2 })
          yield* Worker.serve({ ordinary: (job) => Deferred.succeed(ran, job.text).pipe(Effect.asVoid) })

          for (const funcname of ["run_queued_job", "inject_jobs"]) {
            const e = yield* Effect.flip(Client.insertJob({ funcname, arg: "x" }))
            assert.strictEqual(e._tag, "InvalidJob")
            assert.include(e.message, "reserved")
            assert.include(yield* injectRejection({ funcname, arg: "x" }), "reserved")
          }
          assert.strictEqual(yield* remaining, 0, "nothing stored")

          // A row another client stored under the Controller's own name, dispatched as a QueueRunner would.
          const now = yield* nowSeconds
          const jobid = yield* insertRaw(shards[0]!, CONTROLLER_FUNCTION, now + 1000)
          const row: StoredJob = {
            dbid: 1,
            jobid,
            funcname: CONTROLLER_FUNCTION,
            arg: Buffer.from("raw"),
            uniqkey: null,
            coalesce: null,
            runAfter: now + 1000,
            flag: "controller",
            failcount: 0
          }
          const gearman = yield* Gearman.Gearman
          yield* gearman.submitBackground(CONTROLLER_FUNCTION, encodeWorkerJson(row))
          yield* eventually(Effect.map(stored(row), (j) => j.runAfter === NEVER), "the reserved row to be parked")

          yield* inject({ funcname: "ordinary", arg: "after" })
          assert.strictEqual(yield* Deferred.await(ran), "after", "a later job still runs")
          const parked = yield* stored(row)
          assert.deepStrictEqual([parked.funcname, parked.failcount], [CONTROLLER_FUNCTION, 0])
        })).pipe(Effect.provide(env(shards, [gd.server])))
      }),
    90_000
  )

  it.scopedLive(
    "rows another client stored with a reserved or malformed name or a NUL in the unique are parked by the QueueRunner; the rest run once",
    () =>
      Effect.gen(function*() {
        const shards = yield* testShards(1)
        const gd = yield* gearmand
        yield* Effect.scoped(Effect.gen(function*() {
          const db = shards[0]!.database
          const raw = (funcname: string, uniqkey: string | null) =>
            Effect.map(
              adminQuery(
                `INSERT INTO \`${db}\`.job (funcname, arg, uniqkey, run_after, flag) VALUES (?, 'raw', ?, 0, 'shim')`,
                [funcname, uniqkey]
              ),
              ([result]) => (result as { readonly insertId: number }).insertId
            )
          const bad = [
            yield* raw("inject_jobs", null),
            yield* raw("tab\there", null),
            yield* raw("ordinary", "nul\u0000key")
          ]
          const good = yield* Client.insertJobs(
            Array.from({ length: 5 }, (_, i) => ({ funcname: "ordinary", arg: `good ${i}` }))
          )
          const runs: Array<string> = []
          yield* Worker.serve({ ordinary: (job) => Effect.sync(() => void runs.push(job.text)) })
          const runner = yield* QueueRunner.make({ queueWatermarkDepth: 0 })
          const round = (yield* runner.round).shards[0]!
          assert.deepStrictEqual([round.claimed, round.dispatched, round.parked, round.failed], [8, 5, 3, 0])
          yield* eventually(Effect.sync(() => runs.length === 5), "the five good jobs to run")
          for (const jobid of bad)
            assert.strictEqual((yield* stored({ dbid: 1, jobid })).runAfter, NEVER, `row ${jobid} parked`)
          // Nothing is due any more: the parked rows are never sent again.
          assert.strictEqual((yield* runner.round).shards[0]!.claimed, 0)
          assert.strictEqual(good.length, 5)
          assert.deepStrictEqual([...runs].sort(), ["good 0", "good 1", "good 2", "good 3", "good 4"])
        })).pipe(Effect.provide(env(shards, [gd.server])))
      }),
    90_000
  )

  it.scopedLive(
    "an arg whose worker JSON no packet can carry (12 MiB of zero bytes) is refused at insertJob(s); nothing is stored",
    () =>
      Effect.gen(function*() {
        const shards = yield* testShards(1)
        const gd = yield* gearmand
        yield* Effect.gen(function*() {
          const zeros = new Uint8Array(12 * 1024 * 1024)
          const one = yield* Effect.flip(Client.insertJob({ funcname: "big", arg: zeros }))
          assert.strictEqual(one._tag, "InvalidJob")
          assert.include(one.message, "worker JSON")
          const batch = yield* Effect.flip(
            Client.insertJobs([{ funcname: "small", arg: "x" }, { funcname: "big", arg: zeros }])
          )
          assert.strictEqual(batch._tag, "InvalidJob")
          assert.include(batch.message, "invalid job #1")
          assert.strictEqual(yield* remaining, 0, "a batch with one bad job stores nothing")
          // The same arg in plain text is 12 MiB of JSON: stored.
          yield* Client.insertJob({ funcname: "big", arg: new Uint8Array(1024 * 1024).fill(97) })
          assert.strictEqual(yield* remaining, 1)
        }).pipe(Effect.provide(env(shards, [gd.server])))
      }),
    60_000
  )

  it.scopedLive(
    "control characters and whitespace in function names, NUL in unique keys: refused at insertJob and inject_jobs",
    () =>
      Effect.gen(function*() {
        const shards = yield* testShards(1)
        const gd = yield* gearmand
        yield* Effect.scoped(Effect.gen(function*() {
          yield* Injector.serve()
          const forged = "evil\t99999\t0\t1\nvictim"
          for (
            const job of [{ funcname: forged }, { funcname: "with space" }, { funcname: "nul\u0000" }, {
              funcname: "f",
              uniqkey: "a\u0000b"
            }]
          ) {
            const e = yield* Effect.flip(Client.insertJob({ ...job, arg: "x" }))
            assert.strictEqual(e._tag, "InvalidJob", JSON.stringify(job))
            const rejection = yield* injectRejection({ ...job, arg: "x" })
            assert.include(rejection, "invalid job", JSON.stringify(job))
          }
          assert.strictEqual(yield* remaining, 0, "nothing stored")
        })).pipe(Effect.provide(env(shards, [gd.server])))
      }),
    60_000
  )

  for (const server of ["gearmand", "the embedded job server"] as const) {
    it.scopedLive(
      `${server}: the client's submit and the worker's registration refuse such names (typed); no status line is forged`,
      () =>
        Effect.gen(function*() {
          const address = server === "gearmand" ? (yield* gearmand).server : (yield* embeddedJobServer()).server
          yield* Effect.scoped(Effect.gen(function*() {
            const gearman = yield* Gearman.Gearman
            yield* gearman.submitBackground("victim", "x")
            const forged = yield* Effect.flip(gearman.submitBackground("evil\t99999\t0\t1\nvictim", "x"))
            assert.strictEqual(forged._tag, "GearmanInvalidArgument")
            assert.include(forged.message, "U+0009")
            const results = yield* gearman.submitBackgroundAll([{ fn: "a b", payload: "x" }, {
              fn: "ok",
              payload: "x"
            }])
            assert.deepStrictEqual(results.map((r) => Either.isLeft(r) ? r.left._tag : "queued"), [
              "GearmanInvalidArgument",
              "queued"
            ])
            const nul = yield* Effect.flip(gearman.submit("f", "x", { unique: "a\u0000b" }))
            assert.strictEqual(nul._tag, "GearmanInvalidArgument")
            const serving = yield* Effect.flip(gearman.serve({ "bad\nname": () => Effect.void }))
            assert.strictEqual(serving._tag, "GearmanInvalidArgument")
            const depths = yield* gearman.queueDepths()
            assert.strictEqual(depths.get("victim")?.total, 1, "victim's count is its own")
            assert.deepStrictEqual([...depths.keys()].sort(), ["ok", "victim"])
          })).pipe(Effect.provide(Gearman.layer({ servers: [address] })))
        }),
      60_000
    )
  }

  it.scopedLive(
    "injected jobs with one uniqkey under two functions are two jobs: neither waits for the other",
    () =>
      Effect.gen(function*() {
        const shards = yield* testShards(1)
        const gd = yield* gearmand
        yield* Effect.scoped(Effect.gen(function*() {
          const gate = yield* Deferred.make<void>()
          const aStarted = yield* Deferred.make<void>()
          const bRan = yield* Deferred.make<string>()
          yield* Injector.serve()
          yield* Controller.serve()
          yield* Worker.serve({
            a: () => Effect.zipRight(Deferred.succeed(aStarted, undefined), Deferred.await(gate)),
            b: (job) => Deferred.succeed(bRan, job.text).pipe(Effect.asVoid)
          }, { concurrency: 4 })
          yield* inject({ funcname: "a", arg: "first", uniqkey: "same" })
          yield* Deferred.await(aStarted)
          // While a's run_queued_job is running, b's goes to run_queued_job too, with the same key.
          yield* inject({ funcname: "b", arg: "second", uniqkey: "same" })
          // Before the fix gearmand merged it into a's, and it waited for a's lease (1000 s).
          const b = yield* Deferred.await(bRan).pipe(
            Effect.timeoutFail({
              duration: "30 seconds",
              onTimeout: () => new Error("b never ran while a was running (a hang guard)")
            }),
            Effect.orDie
          )
          assert.strictEqual(b, "second")
          yield* Deferred.succeed(gate, undefined)
          yield* eventually(Effect.map(remaining, (n) => n === 0), "both rows to be deleted")
        })).pipe(Effect.provide(env(shards, [gd.server])))
      }),
    60_000
  )

  it.scopedLive(
    "a controller job's worker asking retryAt / retryNever is rescheduled so by the Controller, not backed off",
    () =>
      Effect.gen(function*() {
        const shards = yield* testShards(1)
        const gd = yield* gearmand
        yield* Effect.scoped(Effect.gen(function*() {
          yield* Injector.serve()
          yield* Controller.serve()
          yield* Worker.serve({ later: () => Worker.retryAt("+3600"), never: () => Worker.retryNever })
          const now = yield* nowSeconds
          const parse = (r: { readonly data: Buffer }) =>
            JSON.parse(r.data.toString()) as { readonly dbid: number; readonly jobid: number }
          const later = parse(yield* inject({ funcname: "later", arg: "x" }))
          const never = parse(yield* inject({ funcname: "never", arg: "x" }))
          // Settled: moved past the lease (1000 s), or backed off as a failure (what it was before the fix).
          const settled = (j: StoredJob) => j.failcount > 0 || j.runAfter >= now + 3600
          yield* eventually(Effect.map(stored(later), settled), "the later job's outcome")
          yield* eventually(Effect.map(stored(never), settled), "the never job's outcome")
          const [l, n] = [yield* stored(later), yield* stored(never)]
          assert.deepStrictEqual([l.failcount, n.failcount], [0, 0], "a retry is not a failure")
          assert.isAtLeast(l.runAfter, now + 3600)
          assert.isAtMost(l.runAfter, (yield* nowSeconds) + 3600)
          assert.strictEqual(n.runAfter, NEVER)
        })).pipe(Effect.provide(env(shards, [gd.server])))
      }),
    60_000
  )
})
