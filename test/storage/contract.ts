// The storage contract: one suite, run against every Storage layer (memory and MariaDB).
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Either, Option, TestClock } from "effect"
import type { Scope } from "effect"
import { hashBucket } from "../../src/crc32.js"
import {
  ARG_MAX_BYTES,
  decodeWorkerJson,
  encodeWorkerJson,
  JOB_STATES,
  jobState,
  NEVER,
  NO_LIFE
} from "../../src/Job.js"
import type { JobRecord, JobState, StoredJobId } from "../../src/Job.js"
import * as Client from "../../src/roles/Client.js"
import { Storage } from "../../src/storage/Storage.js"
import type { StorageShape } from "../../src/storage/Storage.js"
import { atT0, T0 } from "../support/clock.js"

export interface ContractEnv {
  /** Shards 1 and 2, both up. */
  readonly storage: StorageShape
  /** Shards 1 and 2 up, shard 3 refusing connections. */
  readonly degraded: StorageShape
  /** Shards 1 and 2, both refusing connections. */
  readonly dead: StorageShape
}

/** A fixed, realistic "now" (unix seconds); TestClock starts there in every test. */
export { T0 }

/** A unique key that the CRC32 rule sends to the shard at `index` among `count`. */
export const keyFor = (index: number, count: number, prefix = "k"): string => {
  for (let i = 0;; i++) if (hashBucket(`${prefix}${i}`, count) === index) return `${prefix}${i}`
}

export const storageContract = (name: string, makeEnv: Effect.Effect<ContractEnv, never, Scope.Scope>) =>
  describe(`Storage contract: ${name}`, () => {
    const test = (title: string, body: (env: ContractEnv) => Effect.Effect<void, unknown, Storage>, timeout?: number) =>
      it.scoped(title, () =>
        Effect.gen(function*() {
          const env = yield* makeEnv
          yield* body(env).pipe(Effect.provideService(Storage, env.storage))
        }).pipe(atT0), timeout)

    const claimAll = (storage: StorageShape, dbid: number) => storage.claimDue(dbid, 1000, "1000 seconds")

    test("insert then get returns the stored job, bytes intact", ({ storage }) =>
      Effect.gen(function*() {
        const bytes = Uint8Array.from({ length: 256 }, (_, i) => i)
        const outcome = yield* Client.insertJob({ funcname: "resize", arg: bytes, coalesce: "c1" })
        assert.isFalse(outcome.duplicate)
        const job = Option.getOrThrow(yield* storage.get(outcome.handle))
        assert.deepStrictEqual(
          { ...job, arg: [...job.arg] },
          {
            dbid: outcome.handle.dbid,
            jobid: outcome.handle.jobid,
            funcname: "resize",
            arg: [...bytes],
            uniqkey: null,
            coalesce: "c1",
            runAfter: T0,
            flag: "shim",
            failcount: 0,
            ...NO_LIFE
          }
        )
        // The worker JSON carries the same bytes.
        const decoded = yield* decodeWorkerJson(encodeWorkerJson(job))
        assert.deepStrictEqual([...decoded.arg], [...bytes])
        assert.isTrue(
          Option.isNone(yield* storage.get({ dbid: outcome.handle.dbid, jobid: outcome.handle.jobid + 1000 }))
        )
      }))

    test("text arg is stored as UTF-8; flag controller is kept", ({ storage }) =>
      Effect.gen(function*() {
        const { handle } = yield* Client.insertJob({ funcname: "f", arg: "café ☃", flag: "controller" })
        const job = Option.getOrThrow(yield* storage.get(handle))
        assert.strictEqual(Buffer.from(job.arg).toString("hex"), "636166c3a920e29883")
        assert.strictEqual(job.flag, "controller")
      }))

    test("a batch is stored in one call, handles in order and distinct", ({ storage }) =>
      Effect.gen(function*() {
        const outcomes = yield* Client.insertJobs(
          Array.from({ length: 50 }, (_, i) => ({ funcname: "batch", arg: `job ${i}` }))
        )
        assert.strictEqual(outcomes.length, 50)
        assert.strictEqual(new Set(outcomes.map((o) => `${o.handle.dbid}:${o.handle.jobid}`)).size, 50)
        for (const [i, o] of outcomes.entries()) {
          const job = Option.getOrThrow(yield* storage.get(o.handle))
          assert.strictEqual(Buffer.from(job.arg).toString(), `job ${i}`)
        }
        assert.deepStrictEqual(yield* Client.insertJobs([]), [])
      }))

    test("uniqueness per (funcname, uniqkey) holds across shards and within a batch", ({ storage }) =>
      Effect.gen(function*() {
        const first = yield* Client.insertJob({ funcname: "u", arg: "one", uniqkey: "key-1" })
        assert.isFalse(first.duplicate)
        assert.strictEqual(first.handle.dbid, [1, 2][hashBucket("key-1", 2)])
        const again = yield* Client.insertJob({ funcname: "u", arg: "two", uniqkey: "key-1" })
        assert.deepStrictEqual(again, { handle: first.handle, duplicate: true })
        // Same key, other function: another job.
        const other = yield* Client.insertJob({ funcname: "v", uniqkey: "key-1" })
        assert.isFalse(other.duplicate)
        // Within one batch: the second occurrence is the duplicate of the first.
        const batch = yield* Client.insertJobs([
          { funcname: "u", uniqkey: "key-2" },
          { funcname: "u", uniqkey: "key-2" },
          { funcname: "u", uniqkey: "key-1" },
          { funcname: "u" }
        ])
        assert.isFalse(batch[0]!.duplicate)
        assert.deepStrictEqual(batch[1], { handle: batch[0]!.handle, duplicate: true })
        assert.deepStrictEqual(batch[2], { handle: first.handle, duplicate: true })
        assert.isFalse(batch[3]!.duplicate)
        // The stored job kept its first arg.
        const job = Option.getOrThrow(yield* storage.get(first.handle))
        assert.strictEqual(Buffer.from(job.arg).toString(), "one")
        // Unique keys spread over both shards.
        const spread = yield* Client.insertJobs(
          Array.from({ length: 40 }, (_, i) => ({ funcname: "s", uniqkey: `spread-${i}` }))
        )
        assert.deepStrictEqual(new Set(spread.map((o) => o.handle.dbid)), new Set([1, 2]))
        // Once the job is completed, the key is free again.
        yield* Client.completeJob(first.handle)
        const reborn = yield* Client.insertJob({ funcname: "u", uniqkey: "key-1" })
        assert.isFalse(reborn.duplicate)
        assert.notStrictEqual(reborn.handle.jobid, first.handle.jobid)
      }))

    test(
      "40,000 duplicates and one new job in one batch: each duplicate gets its job's handle, the new one is stored",
      ({ storage }) =>
        Effect.gen(function*() {
          // All on shard 1, more keys than one prepared statement has placeholders for (65,535 / 2).
          const keys: Array<string> = []
          for (let i = 0; keys.length < 40_001; i++) if (hashBucket(`dup-${i}`, 2) === 0) keys.push(`dup-${i}`)
          const old = keys.slice(0, 40_000).map((uniqkey) => ({ funcname: "dup", uniqkey }))
          const first = yield* Client.insertJobs(old)
          const again = yield* Client.insertJobs([...old, { funcname: "dup", uniqkey: keys[40_000]! }])
          assert.strictEqual(again.length, 40_001)
          assert.isTrue(
            again.slice(0, 40_000).every((o, i) =>
              o.duplicate && o.handle.jobid === first[i]!.handle.jobid && o.handle.dbid === 1
            )
          )
          const fresh = again[40_000]!
          assert.isFalse(fresh.duplicate)
          assert.isTrue(Option.isSome(yield* storage.get(fresh.handle)))
        }),
      120_000
    )

    test("claimDue leases due jobs oldest first; they come back after the lease", ({ storage }) =>
      Effect.gen(function*() {
        const outcomes = yield* Client.insertJobs([
          { funcname: "c", arg: "newest", runAt: T0 },
          { funcname: "c", arg: "oldest", runAt: T0 - 100 },
          { funcname: "c", arg: "middle", runAt: T0 - 50 }
        ])
        const dbid = outcomes[0]!.handle.dbid
        const claimed = yield* storage.claimDue(dbid, 2, "1000 seconds")
        assert.deepStrictEqual(claimed.map((j) => Buffer.from(j.arg).toString()), ["oldest", "middle"])
        // Returned as they were before the lease; stored with the lease.
        assert.strictEqual(claimed[0]!.runAfter, T0 - 100)
        assert.strictEqual(Option.getOrThrow(yield* storage.get(claimed[0]!)).runAfter, T0 + 1000)
        const rest = yield* storage.claimDue(dbid, 10, "1000 seconds")
        assert.deepStrictEqual(rest.map((j) => Buffer.from(j.arg).toString()), ["newest"])
        assert.deepStrictEqual(yield* storage.claimDue(dbid, 10, "1000 seconds"), [])
        yield* TestClock.adjust("999 seconds")
        assert.deepStrictEqual(yield* storage.claimDue(dbid, 10, "1000 seconds"), [])
        yield* TestClock.adjust("1 second")
        const back = yield* storage.claimDue(dbid, 10, Duration.seconds(30))
        assert.strictEqual(back.length, 3)
        assert.isTrue(back.every((j) => j.runAfter === T0 + 1000))
      }))

    test("a stored traceparent (migration 7) comes back with the claim and in the worker JSON; a job without one has none", ({ storage }) =>
      Effect.gen(function*() {
        const traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        const outcomes = yield* Client.insertJobs([
          { funcname: "traced", arg: "with", traceparent, runAt: T0 - 10 },
          { funcname: "traced", arg: "without", runAt: T0 - 5 }
        ])
        const dbids = [...new Set(outcomes.map((o) => o.handle.dbid))]
        const claimed = (yield* Effect.forEach(dbids, (dbid) =>
          storage.claimDue(dbid, 10, "60 seconds", [], undefined, "traced"))).flat().sort((a, b) =>
            a.runAfter - b.runAfter
          )
        assert.deepStrictEqual(claimed.map((j) => [Buffer.from(j.arg).toString(), j.traceparent]), [
          ["with", traceparent],
          ["without", undefined]
        ])
        assert.strictEqual(JSON.parse(encodeWorkerJson(claimed[0]!)).traceparent, traceparent)
        assert.notProperty(JSON.parse(encodeWorkerJson(claimed[1]!)), "traceparent")
        // Inspection does not show it (as before the column).
        assert.notProperty(Option.getOrThrow(yield* storage.get(outcomes[0]!.handle)), "traceparent")
        const bad = yield* Effect.flip(Client.insertJob({ funcname: "traced", traceparent: traceparent.toUpperCase() }))
        assert.strictEqual(bad._tag, "InvalidJob")
      }))

    test("claimDue stops at its byte budget (always taking one job); large args come whole; the rest stay due", ({ storage }) =>
      Effect.gen(function*() {
        const bytes = (n: number, fill: number) => new Uint8Array(n).fill(fill)
        const outcomes = yield* Client.insertJobs([
          { funcname: "b", arg: bytes(100, 1), runAt: T0 - 40 },
          { funcname: "b", arg: bytes(300 * 1024, 2), runAt: T0 - 30 },
          { funcname: "b", arg: bytes(100, 3), runAt: T0 - 20 },
          { funcname: "b", arg: bytes(2 * 1024 * 1024, 4), runAt: T0 - 10 }
        ])
        const dbid = outcomes[0]!.handle.dbid
        // 400 KiB for up to 10 rows: the 300 KiB arg is over what a row loads at first, and
        // is loaded whole once taken; the 2 MiB one is past the budget and stays due.
        const first = yield* storage.claimDue(dbid, 10, "1000 seconds", [], 400 * 1024)
        assert.deepStrictEqual(first.map((j) => [j.arg.byteLength, j.arg[0]]), [[100, 1], [300 * 1024, 2], [100, 3]])
        assert.isTrue(first[1]!.arg.every((b) => b === 2))
        const due = yield* storage.list({ state: "due", limit: 10 })
        assert.deepStrictEqual(due.map((j) => j.jobid), [outcomes[3]!.handle.jobid])
        // Larger than any budget, it still goes, alone.
        const alone = yield* storage.claimDue(dbid, 10, "1000 seconds", [], 1000)
        assert.strictEqual(alone.length, 1)
        assert.strictEqual(alone[0]!.arg.byteLength, 2 * 1024 * 1024)
        assert.isTrue(alone[0]!.arg.every((b) => b === 4))
        assert.deepStrictEqual(yield* storage.list({ state: "due", limit: 10 }), [])
      }))

    test("claimDue leaves the excluded functions' jobs due and unleased", ({ storage }) =>
      Effect.gen(function*() {
        yield* Client.insertJobs([
          { funcname: "full", arg: "f1", runAt: T0 - 30 },
          { funcname: "open", arg: "o1", runAt: T0 - 20 },
          { funcname: "also_full", arg: "a1", runAt: T0 - 10 },
          { funcname: "open", arg: "o2", runAt: T0 }
        ])
        const claimed = (yield* Effect.forEach(storage.shardIds, (dbid) =>
          storage.claimDue(dbid, 10, "1000 seconds", ["full", "also_full"])))
          .flat()
        assert.deepStrictEqual(
          claimed.map((j) =>
            Buffer.from(j.arg).toString()
          ).sort(),
          ["o1", "o2"]
        )
        const left = yield* storage.list({ state: "due", limit: 10 })
        assert.deepStrictEqual(
          left.map((j) =>
            Buffer.from(j.arg).toString()
          ).sort(),
          ["a1", "f1"]
        )
        const rest = (yield* Effect.forEach(storage.shardIds, (dbid) => storage.claimDue(dbid, 10, "1000 seconds", [])))
          .flat()
        assert.deepStrictEqual(rest.map((j) => Buffer.from(j.arg).toString()).sort(), ["a1", "f1"])
      }))

    test("delayed jobs stay invisible until due", ({ storage }) =>
      Effect.gen(function*() {
        const a = yield* Client.insertJob({ funcname: "d", runAt: "+60" })
        const b = yield* Client.insertJob({ funcname: "d", runAt: Duration.minutes(2) })
        yield* Client.insertJob({ funcname: "d", runAt: "never" })
        const shards = [1, 2]
        const claimEverywhere = Effect.map(Effect.forEach(shards, (s) => claimAll(storage, s)), (r) => r.flat())
        assert.deepStrictEqual(yield* claimEverywhere, [])
        yield* TestClock.adjust("59 seconds")
        assert.deepStrictEqual(yield* claimEverywhere, [])
        yield* TestClock.adjust("1 second")
        assert.deepStrictEqual((yield* claimEverywhere).map((j) => j.jobid), [a.handle.jobid])
        yield* TestClock.adjust("60 seconds")
        assert.deepStrictEqual((yield* claimEverywhere).map((j) => j.jobid), [b.handle.jobid])
        yield* Client.completeJob([a.handle, b.handle])
        yield* TestClock.adjust(Duration.days(365))
        assert.deepStrictEqual(yield* claimEverywhere, [])
      }))

    test("two claimers racing on one shard get disjoint jobs, and neither waits for the other", ({ storage }) =>
      Effect.gen(function*() {
        const outcomes = yield* Client.insertJobs(
          Array.from({ length: 40 }, (_, i) => ({ funcname: "race", arg: `${i}` }))
        )
        const dbid = outcomes[0]!.handle.dbid
        const [a, b] = yield* Effect.all(
          [storage.claimDue(dbid, 25, "1000 seconds"), storage.claimDue(dbid, 25, "1000 seconds")],
          { concurrency: 2 }
        )
        const ids = [...a, ...b].map((j) => j.jobid)
        assert.strictEqual(new Set(ids).size, ids.length, "no job claimed twice")
        assert.strictEqual(ids.length, 40, "together they got every due job")
        assert.isTrue(a.length > 0 && b.length > 0)
      }))

    test("complete deletes (many at once, across shards); twice is harmless", ({ storage }) =>
      Effect.gen(function*() {
        const spread = yield* Client.insertJobs([
          { funcname: "x", uniqkey: keyFor(0, 2) },
          { funcname: "x", uniqkey: keyFor(1, 2) },
          { funcname: "x" }
        ])
        assert.deepStrictEqual(spread.slice(0, 2).map((o) => o.handle.dbid), [1, 2])
        const keep = yield* Client.insertJob({ funcname: "x", arg: "keep" })
        assert.strictEqual(yield* Client.completeJob(spread.map((o) => o.handle)), 3)
        assert.strictEqual(yield* Client.completeJob(spread.map((o) => o.handle)), 0)
        for (const o of spread) assert.isTrue(Option.isNone(yield* storage.get(o.handle)))
        assert.isTrue(Option.isSome(yield* storage.get(keep.handle)))
        assert.strictEqual(yield* storage.complete([]), 0)
      }))

    test("a dispatcher's leases: extended while still its own, released due at once; jobs done with leave", ({ storage }) =>
      Effect.gen(function*() {
        const outcomes = yield* Client.insertJobs(
          Array.from({ length: 6 }, (_, i) => ({ funcname: "held", arg: `${i}` }))
        )
        const dbid = outcomes[0]!.handle.dbid
        const claimed = yield* storage.claimDue(dbid, 10, "30 seconds")
        assert.strictEqual(claimed.length, 6)
        const [done, rescheduled, failed, cancelled, kept, released] = claimed
        const held = claimed.map((j) => ({ jobid: j.jobid, lease: T0 + 30 }))
        const stored = (j: StoredJobId) => Effect.map(storage.get(j), Option.getOrThrow)
        // Meanwhile workers finish, reschedule, fail one; an operator cancels one.
        yield* storage.complete([done!])
        yield* Client.rescheduleJob(rescheduled!, "+500")
        yield* Client.failedJob(failed!)
        yield* storage.cancel(cancelled!)
        yield* TestClock.adjust("10 seconds")
        // The check without a write finds the same two, whatever else is named with them.
        const stillHeld = yield* storage.leasesHeld(dbid, [
          ...held,
          { jobid: kept!.jobid, lease: T0 + 31 },
          { jobid: done!.jobid + 1_000_000, lease: T0 + 30 }
        ])
        assert.deepStrictEqual([...stillHeld].sort((a, b) => a - b), [kept!.jobid, released!.jobid])
        const extended = yield* storage.extendLeases(dbid, held, T0 + 40)
        assert.deepStrictEqual([...extended].sort((a, b) => a - b), [kept!.jobid, released!.jobid])
        const keptRow = yield* stored(kept!)
        assert.strictEqual(keptRow.runAfter, T0 + 40)
        assert.strictEqual(jobState(keptRow, T0 + 10), "dispatched", "an extended lease still shows as dispatched")
        // The others are left as their owners put them.
        assert.strictEqual((yield* stored(rescheduled!)).runAfter, T0 + 500)
        assert.strictEqual((yield* stored(failed!)).runAfter, T0 + 120)
        assert.strictEqual((yield* stored(cancelled!)).runAfter, NEVER)
        // The same extension again (same second): found again, unchanged.
        const again = yield* storage.extendLeases(dbid, extended.map((jobid) => ({ jobid, lease: T0 + 40 })), T0 + 40)
        assert.strictEqual(again.length, 2)
        // A lease someone else wrote since (an older one of ours is not it) is neither extended nor released.
        assert.deepStrictEqual(yield* storage.extendLeases(dbid, [{ jobid: kept!.jobid, lease: T0 + 30 }], T0 + 50), [])
        // The connection broke: the jobs still on its lease are due now, unleased.
        const freed = yield* storage.releaseLeases(
          dbid,
          [...held.slice(0, 4), { jobid: kept!.jobid, lease: T0 + 40 }, { jobid: released!.jobid, lease: T0 + 40 }],
          T0 + 10,
          30
        )
        assert.strictEqual(freed, 2)
        for (const j of [kept!, released!]) {
          const row = yield* stored(j)
          assert.strictEqual(row.runAfter, T0 + 10)
          assert.strictEqual(row.leasedUntil, null)
          assert.strictEqual(jobState(row, T0 + 10), "due")
        }
        assert.strictEqual(
          (yield* stored(rescheduled!)).runAfter,
          T0 + 500,
          "a release spares what is not on its lease"
        )
        assert.strictEqual((yield* storage.claimDue(dbid, 10, "30 seconds")).length, 2)
        // A job its worker heartbeats is held by that heartbeat: a release spares it (with migration 4).
        const { handle: beatenHandle } = yield* Client.insertJob({ funcname: "held", arg: "beaten" })
        const [beaten] = yield* storage.claimDue(beatenHandle.dbid, 10, "30 seconds")
        assert.isDefined(beaten)
        yield* storage.heartbeat(beaten!.dbid, [beaten!], "20 seconds")
        assert.strictEqual(
          yield* storage.releaseLeases(beaten!.dbid, [{ jobid: beaten!.jobid, lease: T0 + 30 }], T0 + 10, 30),
          0
        )
        assert.strictEqual((yield* stored(beaten!)).runAfter, T0 + 30, "held by its heartbeat")
        // Nothing held: nothing asked of the shard.
        assert.deepStrictEqual(yield* storage.leasesHeld(dbid, []), [])
        assert.deepStrictEqual(yield* storage.extendLeases(dbid, [], T0 + 50), [])
        assert.strictEqual(yield* storage.releaseLeases(dbid, [], T0 + 10, 30), 0)
      }))

    test("a dispatcher holding more jobs than one statement may name: checked, extended and released in parts", ({ storage }) =>
      Effect.gen(function*() {
        const outcomes = yield* Client.insertJobs(
          Array.from({ length: 3 }, (_, i) => ({ funcname: "many", arg: `${i}` }))
        )
        const dbid = outcomes[0]!.handle.dbid
        const claimed = yield* storage.claimDue(dbid, 10, "30 seconds")
        assert.strictEqual(claimed.length, 3)
        // 70,000 jobs handed (two candidate leases each: 140,000 pairs), all but three done with
        // already: one statement naming them all would pass MySQL's 65,535 placeholders.
        const top = Math.max(...claimed.map((j) => j.jobid))
        const held = [
          ...Array.from({ length: 69_997 }, (_, i) => top + 1 + i),
          ...claimed.map((j) => j.jobid)
        ].flatMap((jobid) => [{ jobid, lease: T0 + 29 }, { jobid, lease: T0 + 30 }])
        const ids = claimed.map((j) => j.jobid).sort((a, b) => a - b)
        assert.deepStrictEqual([...(yield* storage.leasesHeld(dbid, held))].sort((a, b) => a - b), ids)
        assert.deepStrictEqual([...(yield* storage.extendLeases(dbid, held, T0 + 40))].sort((a, b) => a - b), ids)
        const now = held.map((h) => ({ jobid: h.jobid, lease: T0 + 40 }))
        assert.strictEqual(yield* storage.releaseLeases(dbid, now, T0, 30), 3)
        assert.strictEqual((yield* storage.claimDue(dbid, 10, "30 seconds")).length, 3)
      }))

    test("reschedule and defer move run_after; failedJob backs off and stores the failcount", ({ storage }) =>
      Effect.gen(function*() {
        const { handle } = yield* Client.insertJob({ funcname: "r" })
        const stored = () => Effect.map(storage.get(handle), Option.getOrThrow)
        assert.strictEqual(yield* Client.rescheduleJob({ ...handle, failcount: 3 }, "+300"), "rescheduled")
        assert.deepStrictEqual(
          { runAfter: (yield* stored()).runAfter, failcount: (yield* stored()).failcount },
          { runAfter: T0 + 300, failcount: 3 }
        )
        yield* Client.rescheduleJob(handle, "never")
        assert.strictEqual((yield* stored()).runAfter, NEVER)
        yield* Client.rescheduleJob(handle, T0 + 5)
        assert.strictEqual((yield* stored()).runAfter, T0 + 5)
        // Backoff: 120, 240, 480 ... capped at one day; failcount rises each time.
        let job = yield* stored()
        const delays: Array<number> = []
        for (let i = 0; i < 12; i++) {
          const r = yield* Client.failedJob(job)
          job = yield* stored()
          assert.strictEqual(job.failcount, r.failcount)
          delays.push(job.runAfter - T0)
        }
        assert.deepStrictEqual(delays, [120, 240, 480, 960, 1920, 3840, 7680, 15360, 30720, 61440, 86400, 86400])
        assert.strictEqual(job.failcount, 12)
        // The failcount column saturates instead of overflowing.
        assert.strictEqual((yield* Client.failedJob({ ...handle, failcount: 255 })).failcount, 255)
        assert.strictEqual(yield* storage.defer([handle], T0 + 60), 1)
        assert.strictEqual((yield* stored()).runAfter, T0 + 60)
        // A vanished job is reported, not an error.
        yield* Client.completeJob(handle)
        assert.strictEqual(yield* Client.rescheduleJob(handle, "+1"), "missing")
        assert.isFalse((yield* Client.failedJob(handle)).found)
      }))

    test("inspection: counts by function and state, list with filters and paging, retry of never jobs", ({ storage }) =>
      Effect.gen(function*() {
        yield* Client.insertJobs([
          { funcname: "a", runAt: T0 - 30 },
          { funcname: "a", runAt: T0 - 10 },
          { funcname: "a", runAt: "+100" },
          { funcname: "a", runAt: "never" },
          { funcname: "b", runAt: "never" }
        ].map((j, i) => ({ ...j, uniqkey: keyFor(0, 2, `ins${i}-`) })))
        const counts = yield* storage.counts()
        assert.deepStrictEqual(counts.filter((c) => c.funcname === "a"), [
          {
            dbid: 1,
            funcname: "a",
            due: 2,
            scheduled: 1,
            retrying: 0,
            dispatched: 0,
            running: 0,
            never: 1,
            dead: 0,
            cancelled: 0,
            oldestDue: T0 - 30
          }
        ])
        assert.deepStrictEqual(counts.filter((c) => c.funcname === "b").map((c) => [c.never, c.oldestDue]), [[1, null]])
        assert.deepStrictEqual(yield* storage.counts(2), [])
        const due = yield* storage.list({ funcname: "a", state: "due" })
        assert.deepStrictEqual(due.map((j) => j.runAfter), [T0 - 30, T0 - 10])
        assert.strictEqual((yield* storage.list({ state: "never" })).length, 2)
        assert.strictEqual((yield* storage.list({ state: "scheduled" })).length, 1)
        // Paging: one at a time, in (dbid, jobid) order, until empty.
        const seen: Array<StoredJobId> = []
        let after: StoredJobId | undefined
        for (;;) {
          const page = yield* storage.list({ limit: 2, after })
          if (page.length === 0) break
          seen.push(...page)
          after = page[page.length - 1]
        }
        assert.strictEqual(seen.length, 5)
        assert.deepStrictEqual(seen.map((j) => j.jobid), [...seen.map((j) => j.jobid)].sort((x, y) => x - y))
        // Make the `never` jobs of `a` due again.
        assert.strictEqual(yield* storage.retryNever("a"), 1)
        const after2 = yield* storage.counts(1)
        assert.deepStrictEqual(after2.find((c) => c.funcname === "a")!.due, 3)
        assert.deepStrictEqual(after2.find((c) => c.funcname === "b")!.never, 1)
      }))

    test("states: jobState, list --state and counts agree over rows of every state", ({ storage }) =>
      Effect.gen(function*() {
        const on1 = (i: number) => keyFor(0, 2, `st${i}-`)
        const [due, scheduled, retrying, dispatched, never, dead, expired, running] = yield* Client.insertJobs([
          { funcname: "st", runAt: T0 - 10, uniqkey: on1(0) },
          { funcname: "st", runAt: "+100", uniqkey: on1(1) },
          { funcname: "st", runAt: T0 - 5, uniqkey: on1(2) },
          { funcname: "st", runAt: T0 - 300, uniqkey: on1(3) },
          { funcname: "st", runAt: "never", uniqkey: on1(4) },
          { funcname: "st", runAt: "+50", uniqkey: on1(5) },
          { funcname: "st", runAt: T0 - 400, uniqkey: on1(6) },
          { funcname: "st", runAt: T0 - 350, uniqkey: on1(7) }
        ])
        // A lease that ran out: claimed at T0 - 400 for 100 s (its leased_until stays).
        yield* TestClock.setTime((T0 - 400) * 1000)
        assert.deepStrictEqual((yield* storage.claimDue(1, 1, "100 seconds")).map((j) => j.jobid), [
          expired!.handle.jobid
        ])
        yield* TestClock.setTime(T0 * 1000)
        // Claimed now: dispatched (its lease recorded in the same statement); one of them runs
        // and its worker heartbeats it.
        const claimedNow = yield* storage.claimDue(1, 2, "1000 seconds")
        assert.deepStrictEqual(claimedNow.map((j) => j.jobid), [running!.handle.jobid, dispatched!.handle.jobid])
        const beat = yield* storage.heartbeat(1, [claimedNow[0]!], "1000 seconds")
        assert.deepStrictEqual(beat, { extended: 1, cancelled: [], lost: [] })
        const leased = Option.getOrThrow(yield* storage.get(dispatched!.handle))
        assert.deepStrictEqual([leased.runAfter, leased.leasedUntil], [T0 + 1000, T0 + 1000])
        assert.isTrue((yield* Client.failedJob(retrying!.handle)).found)
        assert.isTrue((yield* Client.failedJob(dead!.handle, { maxAttempts: 1 })).dead)
        const expected: Record<JobState, ReadonlyArray<StoredJobId>> = {
          due: [due!.handle, expired!.handle],
          scheduled: [scheduled!.handle],
          retrying: [retrying!.handle],
          dispatched: [dispatched!.handle],
          running: [running!.handle],
          never: [never!.handle],
          dead: [dead!.handle],
          cancelled: []
        }
        const now = T0
        const counts = (yield* storage.counts(1)).find((c) => c.funcname === "st")!
        for (const state of JOB_STATES) {
          const ids = expected[state].map((h) => h.jobid).sort((a, b) => a - b)
          // The one definition (Job.jobState) over each job's row...
          for (const h of expected[state])
            assert.strictEqual(jobState(Option.getOrThrow(yield* storage.get(h)), now), state)
          // ...the list filter, and the count, say the same.
          assert.deepStrictEqual((yield* storage.list({ state, funcname: "st" })).map((j) => j.jobid), ids, state)
          assert.strictEqual(counts[state], ids.length, state)
        }
        // The lease that ran out left the job at its end, T0 - 300.
        assert.strictEqual(counts.oldestDue, T0 - 300)
        // A reschedule or a deferral ends the lease: the job is no longer dispatched.
        yield* storage.reschedule(dispatched!.handle, T0 + 500, 0)
        const moved = Option.getOrThrow(yield* storage.get(dispatched!.handle))
        assert.deepStrictEqual([moved.leasedUntil, jobState(moved, now)], [null, "scheduled"])
        yield* storage.claimDue(1, 10, "1000 seconds")
        yield* storage.defer([due!.handle], T0 + 60)
        const deferred = Option.getOrThrow(yield* storage.get(due!.handle))
        assert.deepStrictEqual([deferred.leasedUntil, jobState(deferred, now)], [null, "scheduled"])
      }))

    test("fenced leases: a claim's token; a re-claim keeps it until a heartbeat was seen; a late or forged completion, reschedule or failure changes nothing", ({ storage }) =>
      Effect.gen(function*() {
        const on1 = (i: number) => keyFor(0, 2, `fence${i}-`)
        const [a, b, perl] = yield* Client.insertJobs([
          { funcname: "fence", runAt: T0 - 30, uniqkey: on1(0) },
          { funcname: "fence", runAt: T0 - 20, uniqkey: on1(1) },
          { funcname: "fence", runAt: T0 - 10, uniqkey: on1(2) }
        ])
        const first = yield* storage.claimDue(1, 10, "100 seconds")
        assert.deepStrictEqual(first.map((j) => j.jobid), [a, b, perl].map((o) => o!.handle.jobid))
        // One token per claimed batch, unguessable (16 random bytes), in the worker JSON.
        const token = first[0]!.lease!
        assert.match(token, /^[0-9a-f]{32}$/)
        assert.deepStrictEqual(first.map((j) => j.lease), [token, token, token])
        assert.strictEqual(Either.getOrThrow(decodeWorkerJson(encodeWorkerJson(first[0]!))).lease, token)
        // Nobody started them (no heartbeat) and the lease ran out: a re-claim keeps the token, so
        // the copy gearmand still holds (merged by its unique) completes them.
        yield* TestClock.adjust("101 seconds")
        const again = yield* storage.claimDue(1, 10, "100 seconds")
        assert.deepStrictEqual(again.map((j) => j.lease), [token, token, token])
        // Job a is started and heartbeats; its worker then stalls, its lease runs out, it is leased again.
        assert.deepStrictEqual(yield* storage.heartbeat(1, [again[0]!], "100 seconds"), {
          extended: 1,
          cancelled: [],
          lost: []
        })
        yield* TestClock.adjust("101 seconds")
        const releases = yield* storage.claimDue(1, 10, "100 seconds")
        const fresh = releases.find((j) => j.jobid === a!.handle.jobid)!.lease!
        assert.notStrictEqual(fresh, token)
        // The stalled worker's late completion, reschedule and failure change nothing (fenced)...
        const late = { ...a!.handle, lease: token }
        assert.strictEqual(yield* Client.completeJob(late), 0)
        assert.strictEqual(yield* Client.rescheduleJob(late, "+5"), "fenced")
        const failed = yield* Client.failedJob(late, { error: "late" })
        assert.deepStrictEqual([failed.found, failed.fenced], [false, true])
        // ...nor does its heartbeat hold the job any more: it lost it.
        assert.deepStrictEqual(yield* storage.heartbeat(1, [late], "100 seconds"), {
          extended: 0,
          cancelled: [],
          lost: [a!.handle.jobid]
        })
        const kept = Option.getOrThrow(yield* storage.get(a!.handle))
        assert.deepStrictEqual([kept.failcount, kept.lastError, kept.runAfter], [0, null, T0 + 202 + 100])
        // A forged token deletes nothing.
        assert.strictEqual(yield* Client.completeJob({ ...b!.handle, lease: "0".repeat(32) }), 0)
        assert.isTrue(Option.isSome(yield* storage.get(b!.handle)))
        // The holders of the current lease complete in one batch; a Perl worker's DELETE by jobid
        // alone (no token) works whatever the lease.
        assert.strictEqual(
          yield* Client.completeJob([{ ...a!.handle, lease: fresh }, { ...b!.handle, lease: token }, perl!.handle]),
          3
        )
        assert.deepStrictEqual(yield* storage.list({ funcname: "fence" }), [])
        // Stored leased under a token (the Injector's insert of a job it dispatches at once): it
        // shows as dispatched, and only that token completes it.
        const injected = "1".repeat(32)
        const [leased] = yield* storage.insert([
          { funcname: "fence", runAfter: T0 + 300, uniqkey: on1(3), flag: "controller", lease: injected }
        ])
        const row = Option.getOrThrow(yield* storage.get(leased!.handle))
        assert.deepStrictEqual([row.leasedUntil, jobState(row, T0 + 202)], [T0 + 300, "dispatched"])
        assert.strictEqual(yield* Client.completeJob({ ...leased!.handle, lease: token }), 0)
        assert.strictEqual(yield* Client.completeJob({ ...leased!.handle, lease: injected }), 1)
        const refused = yield* Effect.flip(storage.insert([{ funcname: "fence", runAfter: T0, lease: "not a token" }]))
        assert.strictEqual(refused._tag, "InvalidJob")
      }))

    test("heartbeats: the lease moves forward while a job runs; a cancelled job is reported, not extended", ({ storage }) =>
      Effect.gen(function*() {
        const on1 = (i: number) => keyFor(0, 2, `beat${i}-`)
        const [run, stop] = yield* Client.insertJobs([
          { funcname: "beat", runAt: T0 - 2, uniqkey: on1(0) },
          { funcname: "beat", runAt: T0 - 1, uniqkey: on1(1) }
        ])
        const claimed = yield* storage.claimDue(1, 10, "30 seconds")
        yield* TestClock.adjust("20 seconds")
        assert.strictEqual(yield* Client.cancelJob(stop!.handle), "cancelled")
        const beat = yield* storage.heartbeat(1, claimed, "30 seconds")
        assert.deepStrictEqual(beat, { extended: 1, cancelled: [stop!.handle.jobid], lost: [] })
        const running = Option.getOrThrow(yield* storage.get(run!.handle))
        assert.deepStrictEqual(
          [running.runAfter, running.leasedUntil, running.heartbeatAt, jobState(running, T0 + 20)],
          [T0 + 50, T0 + 50, T0 + 20, "running"]
        )
        // Jobs without a token (a Perl dispatcher's) are not heartbeated: nothing to fence them by.
        assert.deepStrictEqual(yield* storage.heartbeat(1, [run!.handle], "30 seconds"), {
          extended: 0,
          cancelled: [],
          lost: []
        })
        // A completion under the token ends it; a reschedule ends the lease, token and heartbeat.
        assert.strictEqual(yield* Client.rescheduleJob(claimed[0]!, "+60"), "rescheduled")
        const moved = Option.getOrThrow(yield* storage.get(run!.handle))
        assert.deepStrictEqual([moved.heartbeatAt, jobState(moved, T0 + 20)], [null, "scheduled"])
      }))

    test("failures: the last error stored bounded, attempts used up make a job dead; retry and purge of the dead", ({ storage }) =>
      Effect.gen(function*() {
        const { handle } = yield* Client.insertJob({ funcname: "boom" })
        const stored = () => Effect.map(storage.get(handle), Option.getOrThrow)
        let failcount = 0
        for (let attempt = 1; attempt <= 2; attempt++) {
          const r = yield* Client.failedJob({ ...handle, failcount }, {
            error: `attempt ${attempt}\u0007\nline 2`,
            maxAttempts: 3
          })
          assert.deepStrictEqual([r.found, r.dead, r.failcount], [true, false, attempt])
          failcount = r.failcount
          const job = yield* stored()
          assert.deepStrictEqual(
            [job.lastError, job.lastErrorAt, job.lastErrorAttempt, job.ended, jobState(job, T0)],
            [`attempt ${attempt}\\u0007\nline 2`, T0 + attempt - 1, attempt, null, "retrying"]
          )
          yield* TestClock.adjust("1 second")
        }
        // The third of three: dead, kept, never claimed (run_after never, as Perl's parking).
        const long = "é😀".repeat(1500)
        const last = yield* Client.failedJob({ ...handle, failcount }, { error: long, maxAttempts: 3 })
        assert.deepStrictEqual([last.found, last.dead, last.failcount], [true, true, 3])
        const dead = yield* stored()
        assert.deepStrictEqual(
          [dead.ended, dead.endedAt, dead.runAfter, dead.failcount, dead.lastErrorAttempt, jobState(dead, T0 + 2)],
          ["dead", T0 + 2, NEVER, 3, 3, "dead"]
        )
        // 2,000 characters at most, cut between characters (never inside a pair), marked.
        assert.strictEqual([...dead.lastError!].length, 2000)
        assert.isTrue(dead.lastError!.endsWith("…"))
        assert.strictEqual(dead.lastError!, dead.lastError!.normalize())
        assert.isFalse(
          /[\ud800-\udfff](?![\udc00-\udfff])/.test(dead.lastError!.replace(/[\ud800-\udbff][\udc00-\udfff]/g, ""))
        )
        assert.deepStrictEqual(yield* storage.claimDue(handle.dbid, 10, "1000 seconds"), [])
        assert.strictEqual(yield* storage.retryNever("boom"), 0, "retryNever leaves the dead alone")
        assert.deepStrictEqual((yield* storage.list({ state: "dead" })).map((j) => j.jobid), [handle.jobid])
        // A failure without text keeps the last error; a vanished job is reported.
        assert.isFalse((yield* Client.failedJob({ dbid: handle.dbid, jobid: handle.jobid + 999 })).found)
        // Retried: due now, a fresh set of attempts, its last error kept for history.
        assert.strictEqual(yield* storage.retryDead(handle), 1)
        const revived = yield* stored()
        assert.deepStrictEqual(
          [revived.ended, revived.endedAt, revived.failcount, revived.runAfter, jobState(revived, T0 + 2)],
          [null, null, 0, T0 + 2, "due"]
        )
        assert.strictEqual(revived.lastError, dead.lastError)
        assert.strictEqual(yield* storage.retryDead(handle), 0, "no longer dead")
        assert.isFalse((yield* Client.failedJob(revived, { maxAttempts: 3 })).dead)
        assert.strictEqual((yield* stored()).lastError, dead.lastError, "no text: the last error stays")
      }))

    test("purge deletes only the ended jobs it names, older than asked; retry --dead by function", ({ storage }) =>
      Effect.gen(function*() {
        const kill = (funcname: string) =>
          Effect.flatMap(
            Client.insertJob({ funcname }),
            ({ handle }) => Effect.as(Client.failedJob(handle, { error: "no", maxAttempts: 1 }), handle)
          )
        const oldA = yield* kill("pa")
        const oldB = yield* kill("pb")
        const alive = yield* Client.insertJob({ funcname: "pa", runAt: "never" })
        yield* TestClock.adjust(Duration.days(8))
        const recent = yield* kill("pa")
        assert.strictEqual(yield* storage.purgeEnded("cancelled", "7 days"), 0)
        assert.strictEqual(yield* storage.purgeEnded("dead", "7 days", { funcname: "pa" }), 1)
        assert.isTrue(Option.isNone(yield* storage.get(oldA)))
        assert.isTrue(Option.isSome(yield* storage.get(oldB)), "another function")
        assert.isTrue(Option.isSome(yield* storage.get(recent)), "died too recently")
        assert.isTrue(Option.isSome(yield* storage.get(alive.handle)), "not ended")
        assert.strictEqual(yield* storage.purgeEnded("dead", "7 days"), 1)
        assert.isTrue(Option.isNone(yield* storage.get(oldB)))
        // Every dead job of a function made due at once.
        const other = yield* kill("pb")
        assert.strictEqual(yield* storage.retryDead({ funcname: "pa" }), 1)
        assert.strictEqual(jobState(Option.getOrThrow(yield* storage.get(recent)), T0 + 8 * 86400), "due")
        assert.strictEqual(jobState(Option.getOrThrow(yield* storage.get(other)), T0 + 8 * 86400), "dead")
        assert.strictEqual(yield* storage.retryDead({}), 1)
        assert.strictEqual(yield* storage.purgeEnded("dead", 0), 0)
      }))

    test("cancel ends a live job of every state as cancelled; it is never claimed, and purgeable", ({ storage }) =>
      Effect.gen(function*() {
        const insert = (spec: Parameters<typeof Client.insertJob>[0]) =>
          Effect.map(Client.insertJob(spec), (o) => o.handle)
        const due = yield* insert({ funcname: "cx" })
        const scheduled = yield* insert({ funcname: "cx", runAt: "+600" })
        const never = yield* insert({ funcname: "cx", runAt: "never" })
        const retrying = yield* insert({ funcname: "cx" })
        yield* Client.failedJob(retrying, { error: "first" })
        const dead = yield* insert({ funcname: "cx" })
        yield* Client.failedJob(dead, { error: "last", maxAttempts: 1 })
        const states = (handles: ReadonlyArray<StoredJobId>) =>
          Effect.forEach(handles, (h) => Effect.map(storage.get(h), (j) => jobState(Option.getOrThrow(j), T0)))
        assert.deepStrictEqual(
          yield* states([due, scheduled, never, retrying, dead]),
          ["due", "scheduled", "never", "retrying", "dead"]
        )
        const live = [due, scheduled, never, retrying]
        assert.deepStrictEqual(yield* Effect.forEach(live, Client.cancelJob), live.map(() => "cancelled"))
        assert.strictEqual(yield* Client.cancelJob(dead), "dead", "a dead job is left dead")
        assert.strictEqual(yield* Client.cancelJob(due), "already-cancelled")
        assert.strictEqual(yield* storage.cancel({ dbid: due.dbid, jobid: due.jobid + 999 }), "missing")
        const job = Option.getOrThrow(yield* storage.get(retrying))
        assert.deepStrictEqual(
          [job.ended, job.endedAt, job.runAfter, job.leasedUntil, job.lastError, job.failcount],
          ["cancelled", T0, NEVER, null, "first", 1]
        )
        assert.deepStrictEqual(yield* states(live), live.map(() => "cancelled"))
        // Counts and list agree; no claimer takes them, even long after.
        const counts = (yield* storage.counts()).filter((c) => c.funcname === "cx")
        assert.deepStrictEqual(
          [counts.reduce((n, c) => n + c.cancelled, 0), counts.reduce((n, c) => n + c.dead, 0)],
          [4, 1]
        )
        assert.deepStrictEqual(
          (yield* storage.list({ state: "cancelled" })).map((j) => j.jobid).sort((a, b) => a - b),
          live.map((h) => h.jobid).sort((a, b) => a - b)
        )
        yield* TestClock.adjust(Duration.days(8))
        for (const dbid of [1, 2]) assert.deepStrictEqual(yield* claimAll(storage, dbid), [])
        // A late failure (a forced cancel of a dispatched job) does not revive it.
        assert.isFalse((yield* Client.failedJob(retrying, { error: "late" })).found)
        assert.strictEqual(Option.getOrThrow(yield* storage.get(retrying)).ended, "cancelled")
        // Nor does a late completion delete it (our worker helper's DELETE is of live jobs only),
        // while a live job beside it in the same batch goes; an operator's delete removes it.
        const other = yield* insert({ funcname: "cx", uniqkey: keyFor(0, 2, "cx") })
        assert.strictEqual(yield* storage.complete([retrying, other]), 1)
        assert.isTrue(Option.isSome(yield* storage.get(retrying)))
        assert.isTrue(Option.isNone(yield* storage.get(other)))
        assert.strictEqual(yield* storage.remove([never]), 1)
        assert.strictEqual(yield* storage.purgeEnded("cancelled", "7 days", { funcname: "cx" }), 3)
        assert.isTrue(Option.isNone(yield* storage.get(due)))
        assert.isTrue(Option.isSome(yield* storage.get(dead)), "purge --cancelled leaves the dead")
      }))

    test("a parked job's reason is its last error", ({ storage }) =>
      Effect.gen(function*() {
        const { handle } = yield* Client.insertJob({ funcname: "park" })
        yield* Client.failedJob(handle)
        assert.strictEqual(yield* storage.defer([handle], NEVER, "parked (packet-too-large): too big\u0000"), 1)
        const job = Option.getOrThrow(yield* storage.get(handle))
        assert.deepStrictEqual(
          [job.lastError, job.lastErrorAt, job.lastErrorAttempt, job.failcount, jobState(job, T0)],
          ["parked (packet-too-large): too big\\u0000", T0, 2, 1, "never"]
        )
      }))

    test("list: unique-key text filter, and keyset pages by run_after across shards", ({ storage }) =>
      Effect.gen(function*() {
        // Keys on both shards, run_after ties across them, and text a LIKE would misread.
        const jobs = [
          { key: keyFor(0, 2, "order-%_a"), runAt: T0 + 50 },
          { key: keyFor(1, 2, "order-%_b"), runAt: T0 + 50 },
          { key: keyFor(0, 2, "ORDER-c"), runAt: T0 - 5 },
          { key: keyFor(1, 2, "order-d"), runAt: T0 + 10 },
          { key: keyFor(0, 2, "invoice-e"), runAt: T0 + 50 },
          { key: keyFor(1, 2, "order-f"), runAt: "never" as const }
        ]
        yield* Client.insertJobs(jobs.map((j) => ({ funcname: "u", uniqkey: j.key, runAt: j.runAt })))
        yield* Client.insertJob({ funcname: "u", runAt: T0 + 1 }) // no key: never matches a text
        const keys = (page: ReadonlyArray<{ readonly uniqkey: string | null }>) => page.map((j) => j.uniqkey)
        assert.sameMembers(keys(yield* storage.list({ uniqkey: "order-" })), [
          jobs[0]!.key,
          jobs[1]!.key,
          jobs[3]!.key,
          jobs[5]!.key
        ])
        // Wildcards are text; case counts.
        assert.sameMembers(keys(yield* storage.list({ uniqkey: "%_" })), [jobs[0]!.key, jobs[1]!.key])
        assert.deepStrictEqual(keys(yield* storage.list({ uniqkey: "ORDER" })), [jobs[2]!.key])
        assert.deepStrictEqual(keys(yield* storage.list({ uniqkey: "order-", state: "never" })), [jobs[5]!.key])
        assert.deepStrictEqual(yield* storage.list({ uniqkey: "nothing" }), [])

        // By run_after: one job a page, the cursor carrying its run_after, until empty.
        const seen: Array<JobRecord> = []
        let after: JobRecord | undefined
        for (;;) {
          const page = yield* storage.list({ funcname: "u", order: "runAfter", limit: 1, after })
          if (page.length === 0) break
          seen.push(...page)
          after = page[page.length - 1]!
        }
        assert.strictEqual(seen.length, 7)
        const sorted = [...seen].sort((a, b) => a.runAfter - b.runAfter || a.dbid - b.dbid || a.jobid - b.jobid)
        assert.deepStrictEqual(seen, sorted)
        assert.deepStrictEqual(seen.map((j) => j.runAfter).slice(0, 3), [T0 - 5, T0 + 1, T0 + 10])
        // Larger pages give the same order.
        assert.deepStrictEqual(yield* storage.list({ funcname: "u", order: "runAfter", limit: 100 }), seen)
        // A page by run_after needs the cursor's run_after.
        const refused = yield* Effect.flip(storage.list({ order: "runAfter", after: { dbid: 1, jobid: 1 } }))
        assert.strictEqual(refused._tag, "InvalidArgument")
      }))

    test("every bad input is a typed error and stores nothing", ({ storage }) =>
      Effect.gen(function*() {
        const rejected = (effect: Effect.Effect<unknown, { readonly _tag: string }, Storage>) =>
          Effect.map(Effect.flip(effect), (e) => e._tag)
        assert.strictEqual(yield* rejected(Client.insertJob({ funcname: "" })), "InvalidJob")
        assert.strictEqual(yield* rejected(Client.insertJob({ funcname: "f".repeat(201) })), "InvalidJob")
        assert.strictEqual(yield* rejected(Client.insertJob({ funcname: "f", uniqkey: "k".repeat(256) })), "InvalidJob")
        assert.strictEqual(
          yield* rejected(Client.insertJob({ funcname: "f", arg: new Uint8Array(ARG_MAX_BYTES + 1) })),
          "InvalidJob"
        )
        assert.strictEqual(yield* rejected(Client.insertJob({ funcname: "f", runAt: "tomorrow" })), "InvalidSchedule")
        assert.strictEqual(yield* rejected(Client.insertJob({ funcname: "f", runAt: "-5" })), "InvalidSchedule")
        // One bad job in a batch: none of the batch is stored.
        const batch = yield* Effect.flip(Client.insertJobs([{ funcname: "ok" }, { funcname: "" }, { funcname: "ok2" }]))
        assert.strictEqual(batch._tag, "InvalidJob")
        assert.include(batch.message, "#1")
        // Handles: unknown dbid (a bad argument, not a bad job), malformed ids.
        assert.strictEqual(yield* rejected(Client.completeJob({ dbid: 9, jobid: 1 })), "InvalidArgument")
        assert.strictEqual(yield* rejected(Client.completeJob({ dbid: 0, jobid: 1 })), "InvalidJob")
        assert.strictEqual(yield* rejected(Client.rescheduleJob({ dbid: 1, jobid: 1 }, "+x")), "InvalidSchedule")
        assert.strictEqual(yield* rejected(storage.claimDue(3, 10, "1 second")), "InvalidArgument")
        assert.strictEqual(yield* rejected(storage.claimDue(1, 0, "1 second")), "InvalidArgument")
        assert.strictEqual(yield* rejected(storage.reschedule({ dbid: 1, jobid: 1 }, 0, 256)), "InvalidJob")
        assert.strictEqual(yield* rejected(storage.defer([{ dbid: 1, jobid: 1 }], -1)), "InvalidJob")
        assert.deepStrictEqual(yield* storage.counts(), [])
      }))

    test("a shard that refuses connections is avoided; inserts land on the others", ({ degraded }) =>
      Effect.gen(function*() {
        // A unique job whose shard is down cannot move: ShardUnavailable, and the shard is avoided.
        const err = yield* Effect.flip(degraded.insert([{ funcname: "avoid", uniqkey: keyFor(2, 3), runAfter: T0 }]))
        assert.strictEqual(err._tag, "ShardUnavailable")
        assert.include(err.message, "shard 3")
        assert.deepStrictEqual((yield* degraded.health).map((h) => h.avoidedUntil === null), [true, true, false])
        for (let i = 0; i < 12; i++) {
          const [outcome] = yield* degraded.insert([{ funcname: "avoid", runAfter: T0 }])
          assert.include([1, 2], outcome!.handle.dbid)
        }
        const ok = yield* degraded.insert([{ funcname: "avoid", uniqkey: keyFor(0, 3), runAfter: T0 }])
        assert.strictEqual(ok[0]!.handle.dbid, 1)
        // A batch spanning the dead shard and live ones: stored where possible, the rest reported.
        const partial = yield* Effect.flip(degraded.insert([
          { funcname: "p", uniqkey: keyFor(2, 3, "p"), runAfter: T0 },
          { funcname: "p", uniqkey: keyFor(1, 3, "p"), runAfter: T0 },
          { funcname: "p", runAfter: T0 }
        ]))
        assert.strictEqual(partial._tag, "PartialInsert")
        if (partial._tag === "PartialInsert") {
          assert.isUndefined(partial.outcomes[0])
          assert.strictEqual(partial.outcomes[1]!.handle.dbid, 2)
          assert.include([1, 2], partial.outcomes[2]!.handle.dbid)
          assert.deepStrictEqual(partial.failures.map((f) => [f.indices, f.error._tag]), [[[0], "ShardUnavailable"]])
        }
        // Operations aimed at the dead shard say so.
        assert.strictEqual((yield* Effect.flip(degraded.claimDue(3, 10, "1 second")))._tag, "ShardUnavailable")
        // The cool-off ends after 30 s; the next failure starts another.
        yield* TestClock.adjust("31 seconds")
        assert.deepStrictEqual((yield* degraded.health).map((h) => h.avoidedUntil === null), [true, true, true])
        yield* Effect.flip(degraded.insert([{ funcname: "avoid", uniqkey: keyFor(2, 3), runAfter: T0 }]))
        assert.deepStrictEqual((yield* degraded.health).map((h) => h.avoidedUntil === null), [true, true, false])
      }))

    test("when every shard is down the caller gets StorageUnavailable", ({ dead }) =>
      Effect.gen(function*() {
        const err = yield* Effect.flip(dead.insert([{ funcname: "f", runAfter: T0 }]))
        assert.strictEqual(err._tag, "StorageUnavailable")
        const stillDown = yield* Effect.flip(dead.insert([{ funcname: "f", runAfter: T0 }]))
        assert.strictEqual(stillDown._tag, "StorageUnavailable")
        assert.isTrue(Either.isLeft(yield* Effect.either(dead.counts())))
      }))

    // -- jobs per minute (migration 0006) ------------------------------------------------------

    test("completions and failures are counted per minute over every shard; a minute without any is zero", ({ degraded, storage }) =>
      Effect.gen(function*() {
        const minute = Math.floor(T0 / 60)
        const outcomes = yield* storage.insert([
          { funcname: "t", uniqkey: keyFor(0, 2, "t"), runAfter: T0 },
          { funcname: "t", uniqkey: keyFor(1, 2, "t"), runAfter: T0 },
          { funcname: "t", uniqkey: keyFor(0, 2, "u"), runAfter: T0 },
          { funcname: "t", uniqkey: keyFor(1, 2, "u"), runAfter: T0 }
        ])
        const [a, b, c, d] = outcomes.map((o) => o.handle)
        assert.strictEqual(yield* storage.complete([a!, b!]), 2)
        // A job already gone counts nothing.
        assert.strictEqual(yield* storage.complete([a!]), 0)
        assert.strictEqual(yield* storage.fail(c!, { failcount: 1, runAfter: T0 + 60, dead: false }), "retrying")
        assert.strictEqual(yield* storage.fail(d!, { failcount: 9, runAfter: NEVER, dead: true, error: "x" }), "dead")
        const now = yield* storage.throughput(60)
        assert.strictEqual(now.minutes.length, 60)
        assert.deepStrictEqual(now.minutes[59], { minute, completed: 2, failed: 2 })
        assert.isTrue(now.minutes.slice(0, 59).every((m) => m.completed === 0 && m.failed === 0))
        assert.deepStrictEqual(now.minutes[0]!.minute, minute - 59)
        assert.deepStrictEqual([now.missing, now.unavailable], [[], []])

        yield* TestClock.adjust("2 minutes")
        yield* storage.complete([c!])
        assert.deepStrictEqual((yield* storage.throughput(3)).minutes, [
          { minute, completed: 2, failed: 2 },
          { minute: minute + 1, completed: 0, failed: 0 },
          { minute: minute + 2, completed: 1, failed: 0 }
        ])
        // A shard down is named; the others still count.
        const partial = yield* degraded.throughput(1)
        assert.deepStrictEqual(partial.unavailable.map((u) => u.shard), [3])
        // A day later, reading drops the old minutes (a window reaching back to them finds zeros).
        yield* TestClock.adjust("25 hours")
        yield* storage.throughput(1)
        const day = yield* storage.throughput(26 * 60)
        assert.strictEqual(day.minutes[0]!.minute, minute + 2 + 25 * 60 - 26 * 60 + 1)
        assert.isTrue(day.minutes.every((m) => m.completed === 0 && m.failed === 0))
      }))

    // -- flow control (migration 0003) ---------------------------------------------------------

    test("controls are written to every shard; a patch keeps the other fields; nothing set deletes the row", ({ dead, storage }) =>
      Effect.gen(function*() {
        const rate = { count: 5, periodMs: 1000, burst: 5 }
        assert.deepStrictEqual(yield* storage.flow.setControl("f", { paused: true }), {
          funcname: "f",
          paused: true,
          rate: null,
          concurrency: null
        })
        yield* storage.flow.setControl("f", { rate })
        yield* storage.flow.setControl("g", { rate })
        for (const dbid of [1, 2]) {
          assert.deepStrictEqual(yield* storage.flow.controls(dbid), [
            { funcname: "f", paused: true, rate, concurrency: null },
            { funcname: "g", paused: false, rate, concurrency: null }
          ])
        }
        assert.isUndefined(yield* storage.flow.setControl("g", { rate: null }))
        yield* storage.flow.setControl("f", { paused: false })
        assert.deepStrictEqual(yield* storage.flow.controls(2), [{
          funcname: "f",
          paused: false,
          rate,
          concurrency: null
        }])
        const refused = yield* Effect.flip(storage.flow.setControl("bad name", { paused: true }))
        assert.strictEqual(refused._tag, "InvalidArgument")
        assert.isTrue(Either.isLeft(yield* Effect.either(dead.flow.setControl("f", { paused: true }))))
      }))

    // -- concurrency limits (migration 0005) --------------------------------------------------

    test("a concurrency limit is stored with the other controls, kept by other patches, and validated", ({ storage }) =>
      Effect.gen(function*() {
        assert.deepStrictEqual(yield* storage.flow.setControl("c", { concurrency: 3 }), {
          funcname: "c",
          paused: false,
          rate: null,
          concurrency: 3
        })
        yield* storage.flow.setControl("c", { paused: true })
        assert.deepStrictEqual(yield* storage.flow.controls(2), [{
          funcname: "c",
          paused: true,
          rate: null,
          concurrency: 3
        }])
        yield* storage.flow.setControl("c", { paused: false })
        assert.isUndefined(yield* storage.flow.setControl("c", { concurrency: null }))
        assert.deepStrictEqual(yield* storage.flow.controls(1), [])
        for (const bad of [0, -1, 1.5, 2_000_000]) {
          const refused = yield* Effect.flip(storage.flow.setControl("c", { concurrency: bad }))
          assert.strictEqual(refused._tag, "InvalidArgument")
        }
      }))

    test("a capped claim leaves at most N leased across both shards; a slot frees when a job ends or its lease does", ({ storage }) =>
      Effect.gen(function*() {
        yield* storage.flow.setControl("cap", { concurrency: 5 })
        // Four due jobs on each shard, and another function's, which the capped claim leaves alone.
        for (const i of [0, 1, 2, 3]) {
          yield* storage.insert([
            { funcname: "cap", uniqkey: keyFor(0, 2, `a${i}-`), runAfter: T0 },
            { funcname: "cap", uniqkey: keyFor(1, 2, `b${i}-`), runAfter: T0 }
          ])
        }
        yield* storage.insert([{ funcname: "other", uniqkey: "o", runAfter: T0 }])
        const first = yield* storage.flow.claimCapped(1, "cap", 5, 3, "60 seconds")
        assert.strictEqual(first.length, 3)
        assert.isTrue(first.every((j) => j.funcname === "cap" && j.dbid === 1))
        const second = yield* storage.flow.claimCapped(2, "cap", 5, 100, "60 seconds")
        assert.strictEqual(second.length, 2)
        assert.strictEqual(yield* storage.flow.leased("cap"), 5)
        assert.deepStrictEqual(yield* storage.flow.claimCapped(1, "cap", 5, 100, "60 seconds"), [])
        assert.deepStrictEqual(yield* storage.flow.claimCapped(2, "cap", 5, 100, "60 seconds"), [])
        // A job that completes frees its slot (on either shard).
        yield* storage.complete([first[0]!])
        const third = yield* storage.flow.claimCapped(2, "cap", 5, 100, "60 seconds")
        assert.strictEqual(third.length, 1)
        // A failure ends the lease too (the job backs off).
        yield* storage.defer([second[0]!], T0 + 3600)
        assert.strictEqual((yield* storage.flow.claimCapped(1, "cap", 5, 100, "60 seconds")).length, 1)
        assert.strictEqual(yield* storage.flow.leased("cap"), 5)
        // Leases that ran out (a worker gone) free their slots: those jobs are due again.
        yield* TestClock.adjust("61 seconds")
        assert.strictEqual(yield* storage.flow.leased("cap"), 0)
        const again = [
          ...yield* storage.flow.claimCapped(1, "cap", 5, 100, "60 seconds"),
          ...yield* storage.flow.claimCapped(2, "cap", 5, 100, "60 seconds")
        ]
        assert.strictEqual(again.length, 5)
        // A higher limit lets more go; the other function was never touched.
        assert.strictEqual((yield* storage.flow.claimCapped(2, "cap", 7, 100, "60 seconds")).length, 1)
        const others = yield* storage.list({ funcname: "other", state: "due", limit: 10 })
        assert.strictEqual(others.length, 1)
      }))

    test("concurrent capped claims never take more than the limit between them", ({ storage }) =>
      Effect.gen(function*() {
        yield* storage.flow.setControl("race", { concurrency: 4 })
        yield* storage.insert(
          Array.from({ length: 40 }, (_, i) => ({ funcname: "race", uniqkey: `r${i}`, runAfter: T0 }))
        )
        const claims = yield* Effect.all(
          Array.from({ length: 8 }, (_, i) => storage.flow.claimCapped(1 + (i % 2), "race", 4, 3, "60 seconds")),
          { concurrency: "unbounded" }
        )
        assert.strictEqual(claims.flat().length, 4)
        assert.strictEqual(yield* storage.flow.leased("race"), 4)
      }))

    // -- priorities (migration 0005) ------------------------------------------------------------

    test("claims take higher priorities first, then the oldest; claimed jobs carry their priority", ({ storage }) =>
      Effect.gen(function*() {
        // A backlog of low and normal jobs, older than the high ones inserted after it.
        yield* Client.insertJobs(
          Array.from({ length: 6 }, (_, i) => ({
            funcname: "p",
            uniqkey: keyFor(0, 2, `low${i}-`),
            runAt: T0 - 100 + i,
            priority: i % 2 === 0 ? "low" as const : "normal" as const
          }))
        )
        yield* Client.insertJobs([
          { funcname: "p", uniqkey: keyFor(0, 2, "high1-"), runAt: T0, priority: "high" },
          { funcname: "p", uniqkey: keyFor(0, 2, "high0-"), runAt: T0 - 1, priority: "high" }
        ])
        const first = yield* storage.claimDue(1, 3, "60 seconds")
        assert.deepStrictEqual(first.map((j) => [j.priority ?? "normal", j.runAfter]), [
          ["high", T0 - 1],
          ["high", T0],
          ["normal", T0 - 99]
        ])
        const rest = yield* storage.claimDue(1, 10, "60 seconds")
        assert.deepStrictEqual(rest.map((j) => [j.priority ?? "normal", j.runAfter]), [
          ["normal", T0 - 97],
          ["normal", T0 - 95],
          ["low", T0 - 100],
          ["low", T0 - 98],
          ["low", T0 - 96]
        ])
        // A priority that is not one of the three is refused before anything is stored.
        const refused = yield* Effect.flip(
          storage.insert([{ funcname: "p", runAfter: T0, priority: "urgent" as unknown as "high" }])
        )
        assert.strictEqual(refused._tag, "InvalidJob")
        assert.include(refused.message, "priority")
      }))

    test("the token bucket: starts full, refills with time up to the burst, takes what there is, takes back", ({ storage }) =>
      Effect.gen(function*() {
        const rate = { count: 10, periodMs: 1000, burst: 20 }
        assert.strictEqual(yield* storage.flow.takeTokens("api", rate, 15), 15)
        assert.strictEqual(yield* storage.flow.takeTokens("api", rate, 15), 5)
        assert.strictEqual(yield* storage.flow.takeTokens("api", rate, 1), 0)
        yield* TestClock.adjust(Duration.millis(500))
        assert.strictEqual(yield* storage.flow.takeTokens("api", rate, 10), 5)
        yield* storage.flow.takeTokens("api", rate, -3)
        assert.strictEqual(yield* storage.flow.takeTokens("api", rate, 10), 3)
        yield* TestClock.adjust(Duration.minutes(1))
        assert.strictEqual(yield* storage.flow.takeTokens("api", rate, 100), 20)
        const bucket = Option.getOrThrow(yield* storage.flow.bucket("api"))
        assert.deepStrictEqual(bucket, { tokens: 0, refilledMs: T0 * 1000 + 60_500 })
      }))

    test("schedules: put, list, remove; the next slot moves by compare-and-set, its jobs stored with it", ({ storage }) =>
      Effect.gen(function*() {
        const row = {
          name: "s",
          cron: "*/1 * * * * *",
          timezone: "Europe/Paris",
          funcname: "tick",
          arg: "été",
          missed: "run-once" as const,
          nextSlot: T0
        }
        yield* storage.flow.putSchedule(row)
        yield* storage.flow.putSchedule({ ...row, name: "t", timezone: null, arg: null, missed: "skip" })
        assert.deepStrictEqual(yield* storage.flow.schedules, [row, {
          ...row,
          name: "t",
          timezone: null,
          arg: null,
          missed: "skip"
        }])
        const job = { funcname: "tick", arg: "été", uniqkey: `schedule:s:${T0}`, runAfter: T0 }
        assert.isTrue(yield* storage.flow.advanceSchedule("s", T0, T0 + 1, [job]))
        // A runner that read the old slot loses: nothing is stored.
        assert.isFalse(yield* storage.flow.advanceSchedule("s", T0, T0 + 1, [{ ...job, uniqkey: "other" }]))
        const jobs = yield* storage.list()
        assert.deepStrictEqual(jobs.map((j) => [j.dbid, j.uniqkey, Buffer.from(j.arg).toString()]), [[
          storage.flow.home,
          `schedule:s:${T0}`,
          "été"
        ]])
        // The slot key guards too: the same slot's job again (a row put back by hand) is not stored twice.
        assert.isTrue(yield* storage.flow.advanceSchedule("s", T0 + 1, T0 + 2, [job]))
        assert.strictEqual((yield* storage.list()).length, 1)
        assert.strictEqual((yield* storage.flow.schedules)[0]!.nextSlot, T0 + 2)
        assert.isTrue(yield* storage.flow.removeSchedule("s"))
        assert.isFalse(yield* storage.flow.removeSchedule("s"))
        assert.deepStrictEqual((yield* storage.flow.schedules).map((r) => r.name), ["t"])
      }))

    test("a claim of one function (`only`) takes that function's due jobs alone", ({ storage }) =>
      Effect.gen(function*() {
        yield* Client.insertJobs([
          { funcname: "a", runAt: T0 - 2 },
          { funcname: "b", runAt: T0 - 1 },
          { funcname: "a", runAt: T0 }
        ])
        const dbid = (yield* storage.list())[0]!.dbid
        const mine = yield* storage.claimDue(dbid, 10, "60 seconds", [], undefined, "a")
        assert.deepStrictEqual(mine.map((j) => j.funcname), ["a", "a"])
        assert.deepStrictEqual((yield* storage.claimDue(dbid, 10, "60 seconds")).map((j) => j.funcname), ["b"])
      }))
  })
