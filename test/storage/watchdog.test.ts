// The statement-timeout watchdog: one interval timer for every operation of a shard.
import { assert, describe, it } from "@effect/vitest"
import * as Watchdog from "../../src/storage/sql/watchdog.js"

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

describe("statement watchdog", () => {
  it("expires what outlives its deadline, once, and leaves what was disarmed", async () => {
    const expired: Array<string> = []
    const dog = Watchdog.make<string>(100, (watch) => expired.push(watch.subject))
    const slow = dog.arm("slow")
    const quick = dog.arm("quick")
    dog.disarm(quick)
    await sleep(40)
    assert.deepStrictEqual(expired, [])
    assert.isFalse(slow.expired)
    await sleep(160)
    assert.deepStrictEqual(expired, ["slow"])
    assert.isTrue(slow.expired)
    assert.isFalse(quick.expired)
    // Disarming an expired watch is harmless; a later one gets its own full deadline.
    dog.disarm(slow)
    const later = dog.arm("later")
    await sleep(40)
    assert.isFalse(later.expired)
    await sleep(160)
    assert.deepStrictEqual(expired, ["slow", "later"])
  })
})
