// The Gearman unique every dispatch of a stored job carries (src/roles/dispatch.ts).
import { assert, describe, it } from "@effect/vitest"
import { serverIndexForUnique } from "../../src/gearman/GearmanClient.js"
import type { StoredJob } from "../../src/Job.js"
import {
  callUnique,
  CONTROLLER_FUNCTION,
  dispatchUnique,
  gearmanUnique,
  handleUnique,
  submission
} from "../../src/roles/dispatch.js"

const job = (fields: Partial<StoredJob>): StoredJob => ({
  dbid: 2,
  jobid: 17,
  funcname: "resize",
  arg: new Uint8Array(0),
  uniqkey: null,
  coalesce: null,
  runAfter: 0,
  flag: "shim",
  failcount: 0,
  ...fields
})

const sha1 = /^sha1:[0-9a-f]{40}$/

describe("the dispatch unique", () => {
  it("a job without a uniqkey is named by its handle, garivini:<dbid>:<jobid>, whatever its flag", () => {
    assert.strictEqual(dispatchUnique(job({})), "garivini:2:17")
    assert.strictEqual(dispatchUnique(job({ flag: "controller" })), "garivini:2:17")
    // An empty key (rows other clients wrote) is no key.
    assert.strictEqual(dispatchUnique(job({ uniqkey: "" })), "garivini:2:17")
    assert.strictEqual(handleUnique({ dbid: 1, jobid: 5 }), "garivini:1:5")
    // The largest handle still fits gearmand's 64 bytes.
    const largest = handleUnique({ dbid: 2 ** 31 - 1, jobid: Number.MAX_SAFE_INTEGER })
    assert.isAtMost(Buffer.byteLength(largest), 64)
  })

  it("a shim job with a uniqkey keeps the key (the original's unique); long or handle-like keys are hashed", () => {
    assert.strictEqual(dispatchUnique(job({ uniqkey: "img-1" })), "img-1")
    assert.strictEqual(dispatchUnique(job({ uniqkey: "k".repeat(64) })), "k".repeat(64))
    assert.match(dispatchUnique(job({ uniqkey: "k".repeat(65) })), sha1)
    // Counted in bytes: 22 characters of 3 bytes are 66.
    assert.match(dispatchUnique(job({ uniqkey: "€".repeat(22) })), sha1)
    // A key spelled like a handle's unique never meets that job's unique.
    const handleLike = gearmanUnique("garivini:2:17")
    assert.match(handleLike, sha1)
    assert.notStrictEqual(handleLike, dispatchUnique(job({})))
  })

  it("a controller job with a uniqkey is named by its function and key together", () => {
    const a = dispatchUnique(job({ flag: "controller", uniqkey: "k" }))
    assert.match(a, sha1)
    assert.strictEqual(dispatchUnique(job({ flag: "controller", uniqkey: "k", jobid: 99 })), a, "not by its handle")
    assert.notStrictEqual(dispatchUnique(job({ flag: "controller", uniqkey: "k", funcname: "other" })), a)
    // The key as the unique index compares it: trailing spaces do not count.
    assert.strictEqual(dispatchUnique(job({ flag: "controller", uniqkey: "k  " })), a)
  })

  it("the submission: target function and unique from the same rules for every dispatcher", () => {
    const shim = submission(job({}))
    assert.strictEqual(shim.fn, "resize")
    assert.deepStrictEqual(shim.options, { unique: "garivini:2:17" })
    const controller = submission(job({ flag: "controller" }))
    assert.strictEqual(controller.fn, CONTROLLER_FUNCTION)
    assert.deepStrictEqual(controller.options, { unique: "garivini:2:17" })
  })

  it("the Controller's call is named by the handle only; a job without a real handle gets no unique", () => {
    assert.strictEqual(callUnique(job({ uniqkey: "img-1" })), "garivini:2:17")
    // The Perl Injector sends jobid 0 for a duplicate: such calls must not merge into one another.
    assert.isUndefined(callUnique(job({ jobid: 0 })))
    assert.isUndefined(callUnique(job({ dbid: 0 })))
  })

  it("handles spread evenly over the job servers (the client routes a unique by its CRC)", () => {
    for (const servers of [2, 3]) {
      for (const dbid of [1, 2]) {
        const counts = new Array<number>(servers).fill(0)
        for (let jobid = 1; jobid <= 3000; jobid++) {
          counts[serverIndexForUnique(handleUnique({ dbid, jobid }), servers)]!++
        }
        const fair = 3000 / servers
        assert.isTrue(
          counts.every((n) => Math.abs(n - fair) < fair * 0.15),
          `${servers} servers, shard ${dbid}: ${counts.join(" / ")}`
        )
      }
    }
  })
})
