// A dispatcher's held leases on the memory layers, time driven by TestClock (roles/heldLeases.ts):
// jobs done with are forgotten within a second, without an extension; the rest are extended every
// third of the lease and never fall due while their job server holds them.
import { assert, describe } from "@effect/vitest"
import { Effect, Either, Layer, Option, TestClock } from "effect"
import type { Duration as D } from "effect"
import * as Gearman from "../../src/gearman/Gearman.js"
import * as Client from "../../src/roles/Client.js"
import * as HeldLeases from "../../src/roles/heldLeases.js"
import { Storage } from "../../src/storage/Storage.js"
import * as StorageLayers from "../../src/storage/Storage.js"
import { scopedAtT0, T0 } from "../support/clock.js"

const test = scopedAtT0(() =>
  Layer.mergeAll(
    StorageLayers.layerMemory({ shards: [1] }),
    Gearman.layerMemory({ servers: Gearman.makeMemoryServers() })
  )
)

describe("held leases", () => {
  test(
    "jobs done with leave within a second; the rest are extended every lease / 3 and never due",
    Effect.gen(function*() {
      const storage = yield* Storage
      const gearman = yield* Gearman.Gearman
      yield* Client.insertJobs(Array.from({ length: 4 }, (_, i) => ({ funcname: "held", arg: `${i}` })))
      const claimed = yield* storage.claimDue(1, 10, "30 seconds")
      assert.strictEqual(claimed.length, 4)
      const holder = yield* HeldLeases.make({ leaseSeconds: 30, tags: [] })
      // Time moves only once the holder's loop waits on the clock, and its checks end before asserting.
      const advance = (by: D.DurationInput) =>
        Effect.zipRight(Effect.repeatN(Effect.yieldNow(), 20), TestClock.adjust(by)).pipe(
          Effect.zipLeft(Effect.repeatN(Effect.yieldNow(), 20))
        )
      const before = holder.connections()
      // No worker for "held": gearmand keeps them queued, as behind a watermark.
      const handles = yield* gearman.submitBackgroundAll(
        claimed.map((job) => ({ fn: "held", payload: `${job.jobid}` }))
      )
      yield* holder.handed(
        claimed.map((job, i) => ({ job, leases: [T0 + 30], handle: Either.getOrThrow(handles[i]!) })),
        before
      )
      assert.strictEqual(holder.size(), 4)

      const [done, failed, kept, alsoKept] = claimed
      yield* storage.complete([done!])
      yield* Client.failedJob(failed!)
      yield* advance("1 second")
      assert.strictEqual(holder.size(), 2, "the completed and the failed job are forgotten at the next check")
      const runAfter = (j: typeof kept) => Effect.map(storage.get(j!), (row) => Option.getOrThrow(row).runAfter)
      assert.strictEqual(yield* runAfter(kept), T0 + 30, "a check writes nothing")

      yield* advance("9 seconds")
      assert.strictEqual(yield* runAfter(kept), T0 + 40, "extended a third of the lease after it was written")
      yield* advance("100 seconds")
      for (const j of [kept, alsoKept]) assert.isAbove(yield* runAfter(j), T0 + 110, "held while gearmand holds it")
      assert.strictEqual(holder.size(), 2)
    })
  )
})
