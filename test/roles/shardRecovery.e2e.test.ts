// A QueueRunner over two MariaDB shards, one refusing connections for a while (issue 19,
// docs/reliability.md "Recovery after a shard outage"): the healthy shard keeps its pace, the
// broken one is tried at least every `shardRetryMax`, and once it is back its jobs go out within
// about that long — not after a backoff that had grown to 16 s.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Logger } from "effect"
import * as Client from "../../src/roles/Client.js"
import * as QueueRunner from "../../src/roles/QueueRunner.js"
import * as Worker from "../../src/roles/Worker.js"
import { Storage } from "../../src/storage/Storage.js"
import type { StorageShape } from "../../src/storage/Storage.js"
import { eventually, gearmand } from "../gearman/gearmand.js"
import { env, remaining } from "../support/e2e.js"
import { mysqlHost, mysqlPort, testShards } from "../support/mysql.js"
import { makeProxy } from "../support/proxy.js"

const BATCH_RUN_SLEEP_MS = 500
const CAP_MS = 2000
/** Timers and claims run late on a loaded machine (the suite shares two cores): bounds allow this much. */
const SLACK_MS = 1000
/** Long enough that the old backoff (batchRunSleep × 2^failures) had reached 8 s: 0, 1, 3, 7 s, then 15 s. */
const OUTAGE_MS = 8000

interface Attempt {
  readonly dbid: number
  readonly start: number
  readonly end: number
  readonly ok: boolean
}

/** The same Storage, noting every claim: which shard, when it started and ended, whether it worked. */
const noteClaims = (storage: StorageShape, attempts: Array<Attempt>): StorageShape => ({
  ...storage,
  claimDue: (dbid, ...rest) => {
    const start = Date.now()
    return storage.claimDue(dbid, ...rest).pipe(
      Effect.onExit((exit) =>
        Effect.sync(() => void attempts.push({ dbid, start, end: Date.now(), ok: Exit.isSuccess(exit) }))
      )
    )
  }
})

describe("QueueRunner: a shard outage", () => {
  it.scopedLive(
    "the healthy shard keeps its pace; the broken one is retried within the cap and its jobs run soon after it is back",
    () =>
      Effect.gen(function*() {
        const [one, two] = yield* testShards(2)
        const proxy = yield* makeProxy({ host: mysqlHost, port: mysqlPort })
        const gd = yield* gearmand
        const lines: Array<string> = []
        const capture = Logger.add(Logger.map(Logger.logfmtLogger, (line) => void lines.push(line)))
        yield* Effect.scoped(Effect.gen(function*() {
          // Pinned to their shards by their unique keys.
          const keys = Array.from({ length: 40 }, (_, i) => `k${i}`)
          const outcomes = yield* Client.insertJobs(keys.map((k) => ({ funcname: "recover", uniqkey: k })))
          const onTwo = outcomes.filter((o) => o.handle.dbid === 2).length
          assert.isTrue(onTwo > 0 && onTwo < 40, "both shards hold jobs")
          const ran = new Map<string, number>()
          yield* Worker.serve({
            recover: (job) => Effect.sync(() => void ran.set(`${job.dbid}:${job.jobid}`, Date.now()))
          }, { concurrency: 4 })
          yield* proxy.stop
          const storage = yield* Storage
          const attempts: Array<Attempt> = []
          const runner = yield* QueueRunner.make({
            batchRunSleep: `${BATCH_RUN_SLEEP_MS} millis`,
            shardRetryMax: `${CAP_MS} millis`
          }).pipe(Effect.provideService(Storage, noteClaims(storage, attempts)))
          const loop = yield* Effect.fork(runner.run)
          const brokenSince = Date.now()
          yield* eventually(
            Effect.sync(() => [...ran.keys()].filter((k) => k.startsWith("1:")).length === 40 - onTwo),
            "shard 1's jobs to run while shard 2 is down"
          )
          // A job stored on shard 1 during the outage runs too: the healthy shard keeps polling.
          const [late] = yield* Client.insertJobs([{ funcname: "recover", arg: "late" }])
          assert.strictEqual(late!.handle.dbid, 1)
          yield* eventually(Effect.sync(() => ran.has(`1:${late!.handle.jobid}`)), "the job stored during the outage")
          yield* Effect.sleep(OUTAGE_MS - (Date.now() - brokenSince))
          // Repaired right after a failed claim: the worst moment, a whole delay before the next.
          const failedSoFar = attempts.filter((a) => a.dbid === 2 && !a.ok).length
          yield* eventually(
            Effect.sync(() => attempts.filter((a) => a.dbid === 2 && !a.ok).length > failedSoFar),
            "the next failed claim of shard 2"
          )
          yield* proxy.start
          const repaired = Date.now()
          yield* eventually(
            Effect.sync(() => [...ran.keys()].filter((k) => k.startsWith("2:")).length === onTwo),
            "shard 2's jobs to run once it is back"
          )
          yield* eventually(Effect.map(remaining, (n) => n === 0), "every row to be deleted")
          yield* Fiber.interrupt(loop)

          const broken = attempts.filter((a) => a.dbid === 2 && a.end <= repaired)
          assert.isTrue(broken.every((a) => !a.ok), "shard 2's claims failed while it refused connections")
          // The cap holds: between one failed claim's end and the next one's start, never more than
          // the cap (plus slack), and never less than half the first delay (jitter's floor).
          const gaps = broken.slice(1).map((a, i) => a.start - broken[i]!.end)
          assert.isTrue(gaps.length >= 5, `claims of shard 2 while it was down: ${broken.length}`)
          assert.isTrue(Math.max(...gaps) <= CAP_MS + SLACK_MS, `gaps between failed claims (ms): ${gaps.join(", ")}`)
          assert.isTrue(Math.min(...gaps) >= BATCH_RUN_SLEEP_MS / 2 - 50, `gaps (ms): ${gaps.join(", ")}`)
          // The healthy shard kept its idle pace (a claim every batchRunSleep or sooner) meanwhile.
          const healthy = attempts.filter((a) => a.dbid === 1 && a.start >= brokenSince && a.end <= repaired)
          assert.isTrue(healthy.every((a) => a.ok))
          assert.isTrue(
            healthy.length >= (repaired - brokenSince) / (BATCH_RUN_SLEEP_MS + SLACK_MS / 2),
            `shard 1 claimed ${healthy.length} times in ${repaired - brokenSince} ms`
          )
          // Once back: the first claim within the cap, every job run within the cap + a few seconds
          // (the old backoff would have looked again 16 s after the repair).
          const back = attempts.find((a) => a.dbid === 2 && a.ok)!
          assert.isTrue(
            back.start - repaired <= CAP_MS + SLACK_MS,
            `first claim ${back.start - repaired} ms after repair`
          )
          const lastRun = Math.max(...[...ran].filter(([k]) => k.startsWith("2:")).map(([, t]) => t))
          assert.isTrue(
            lastRun - repaired <= CAP_MS + 3000,
            `shard 2's jobs ran ${lastRun - repaired} ms after repair`
          )
          // Said once per outage, not at every retry.
          const avoided = lines.filter((l) => l.includes("shard avoided") && l.includes("shard=2"))
          assert.strictEqual(avoided.length, 1, avoided.join("\n"))
          assert.isTrue(lines.some((l) => l.includes("shard back after") && l.includes("shard=2")))
        })).pipe(Effect.provide(env([one!, { ...two!, port: proxy.port }], [gd.server])), Effect.provide(capture))
      }),
    90_000
  )
})
