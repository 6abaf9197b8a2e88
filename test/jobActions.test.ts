// The rule that refuses an operator's retry / delete of a job that may be in a worker's hands
// (src/jobActions.ts), on the memory layer at a fixed time.
import { assert, describe } from "@effect/vitest"
import { Effect, Option } from "effect"
import { deleteJob, mayBeDispatched, retryJob } from "../src/jobActions.js"
import * as Client from "../src/roles/Client.js"
import { Storage } from "../src/storage/Storage.js"
import * as StorageLayers from "../src/storage/Storage.js"
import { scopedAtT0, T0 } from "./support/clock.js"

const test = scopedAtT0(() => StorageLayers.layerMemory({ shards: [1] }))

describe("jobActions: may the job be running?", () => {
  test(
    "a job our dispatcher leased is refused however long its lease; force still acts",
    Effect.gen(function*() {
      const storage = yield* Storage
      const { handle } = yield* Client.insertJob({ funcname: "long" })
      // A runner with a 1000 s lease claimed it: past the CLI's 30 s, yet dispatched.
      const [claimed] = yield* storage.claimDue(handle.dbid, 10, "1000 seconds")
      assert.isDefined(claimed)
      const retried = yield* retryJob(handle, { lease: "30 seconds" })
      assert.strictEqual(retried._tag, "Refused")
      assert.match(retried.message, /is dispatched: leased for 1000 s more/)
      assert.strictEqual((yield* deleteJob(handle, { lease: "30 seconds" }))._tag, "Refused")
      assert.strictEqual((yield* retryJob(handle, { lease: "30 seconds", force: true }))._tag, "Done")
      const row = Option.getOrThrow(yield* storage.get(handle))
      assert.strictEqual(row.runAfter, T0)
    })
  )

  test(
    "a job scheduled far ahead is not refused; one within a lease of now without our mark still is",
    Effect.gen(function*() {
      const { handle: later } = yield* Client.insertJob({ funcname: "later", runAt: "+500" })
      assert.strictEqual((yield* retryJob(later, { lease: "30 seconds" }))._tag, "Done")
      const { handle: soon } = yield* Client.insertJob({ funcname: "soon", runAt: "+20" })
      assert.strictEqual((yield* retryJob(soon, { lease: "30 seconds" }))._tag, "Refused")
      // The rule itself: a Perl claim writes run_after alone.
      assert.isTrue(mayBeDispatched({ runAfter: T0 + 20, failcount: 0, leasedUntil: null }, T0, 30))
      assert.isFalse(mayBeDispatched({ runAfter: T0 + 500, failcount: 0, leasedUntil: null }, T0, 30))
      assert.isTrue(mayBeDispatched({ runAfter: T0 + 500, failcount: 0, leasedUntil: T0 + 500 }, T0, 30))
      assert.isFalse(mayBeDispatched({ runAfter: T0 - 1, failcount: 0, leasedUntil: T0 - 1 }, T0, 30))
    })
  )
})
