// The worker's registry of runs in progress and undelivered outcomes (src/gearman/inFlight.ts),
// over fake connections: what each delivery is sent, and which outcomes are kept for a job
// handed back. test/gearman/inflight.test.ts covers the same against gearmand.
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect } from "effect"
import type { Connection } from "../../src/gearman/connection.js"
import type { GearmanConnectionError } from "../../src/gearman/errors.js"
import { makeInFlight } from "../../src/gearman/inFlight.js"
import { Decoder, PacketType } from "../../src/protocol/gearman.js"

const fakeConnection = (server: string) =>
  Effect.gen(function*() {
    const closed = yield* Deferred.make<GearmanConnectionError>()
    const sent: Array<string> = []
    let open = true
    const decoder = new Decoder("REQ", 1024 * 1024)
    const connection: Connection = {
      server,
      send: (bytes: Buffer) => {
        if (!open) return false
        for (const p of decoder.push(bytes).packets)
          sent.push([p.type, ...p.args.map((a) => a.toString("utf8"))].join(" "))
        return true
      },
      setHandler: () => {},
      closed,
      isOpen: () => open,
      lastReceived: () => 0,
      destroy: () => void (open = false)
    }
    return { connection, sent, close: () => void (open = false) }
  })

const job = { functionName: "f", unique: "u", payload: Buffer.from("p") }
const C = PacketType.WORK_COMPLETE

describe("inFlight", () => {
  it.effect("a delivery of the same handle (its connection cut) or the same work joins the run and gets its data and outcome", () =>
    Effect.gen(function*() {
      const inFlight = makeInFlight()
      const cut = yield* fakeConnection("s1")
      const again = yield* fakeConnection("s1")
      const other = yield* fakeConnection("s2")
      const run = inFlight.start({ connection: cut.connection, handle: "H:1" }, { ...job, work: "1:7" })
      cut.close()
      assert.strictEqual(inFlight.running("s1", "H:1", undefined), run)
      assert.strictEqual(inFlight.running("s2", "H:9", "1:7"), run, "same work, another server and handle")
      assert.isUndefined(inFlight.running("s2", "H:1", undefined), "a handle is per server")
      inFlight.join(run, { connection: again.connection, handle: "H:1" })
      inFlight.join(run, { connection: other.connection, handle: "H:9" })
      inFlight.send(run, PacketType.WORK_STATUS, ["1", "2"])
      inFlight.end(run, { type: C, data: "out" })
      assert.deepStrictEqual(cut.sent, [])
      assert.deepStrictEqual(again.sent, [`${PacketType.WORK_STATUS} H:1 1 2`, `${C} H:1 out`])
      assert.deepStrictEqual(other.sent, [`${PacketType.WORK_STATUS} H:9 1 2`, `${C} H:9 out`])
      assert.isUndefined(inFlight.running("s1", "H:1", "1:7"), "ended: nothing to join")
      assert.isUndefined(inFlight.undelivered("s1", "H:1", job), "answered on the new connection: nothing kept")
    }))

  it.effect("an outcome whose connection is gone answers the same job handed back, once; not another job under that handle", () =>
    Effect.gen(function*() {
      const inFlight = makeInFlight()
      const a = yield* fakeConnection("s1")
      const run = inFlight.start({ connection: a.connection, handle: "H:1" }, { ...job, work: undefined })
      const other = inFlight.start({ connection: a.connection, handle: "H:2" }, { ...job, work: undefined })
      a.close()
      inFlight.end(run, { type: C, data: "out" })
      inFlight.end(other, { type: PacketType.WORK_FAIL })
      // A restarted gearmand numbers handles from 1 again: another payload is another job.
      assert.isUndefined(inFlight.undelivered("s1", "H:2", { ...job, payload: Buffer.from("q") }))
      assert.isUndefined(inFlight.undelivered("s1", "H:2", job), "a mismatch drops the kept outcome")
      assert.deepStrictEqual(inFlight.undelivered("s1", "H:1", job), { type: C, data: "out" })
      assert.isUndefined(inFlight.undelivered("s1", "H:1", job), "taken once")
    }))

  it.effect("a handle handed back while its connection still holds it (CAN_DO_TIMEOUT expired) runs again, even with the same work", () =>
    Effect.gen(function*() {
      const inFlight = makeInFlight()
      const a = yield* fakeConnection("s1")
      const first = inFlight.start({ connection: a.connection, handle: "H:1" }, { ...job, work: "1:1" })
      assert.isUndefined(inFlight.running("s1", "H:1", "1:1"), "held on an open connection: a new run")
      const second = inFlight.start({ connection: a.connection, handle: "H:1" }, { ...job, work: "1:1" })
      inFlight.end(first, { type: C, data: "late" })
      assert.strictEqual(inFlight.running("s2", "H:5", "1:1"), second, "the first run's end leaves the second's keys")
      a.close()
      assert.strictEqual(inFlight.running("s1", "H:1", undefined), second, "its connection gone: joined")
    }))

  it.effect("interrupted (no outcome): nothing is sent or kept", () =>
    Effect.gen(function*() {
      const inFlight = makeInFlight()
      const a = yield* fakeConnection("s1")
      const run = inFlight.start({ connection: a.connection, handle: "H:1" }, { ...job, work: "1:1" })
      a.close()
      inFlight.end(run, undefined)
      assert.deepStrictEqual(a.sent, [])
      assert.isUndefined(inFlight.undelivered("s1", "H:1", job))
      assert.isUndefined(inFlight.running("s1", "H:1", "1:1"))
    }))

  it.effect("kept outcomes are bounded: the oldest go first", () =>
    Effect.gen(function*() {
      const inFlight = makeInFlight()
      const a = yield* fakeConnection("s1")
      a.close()
      for (let i = 0; i < 1100; i++) {
        const run = inFlight.start({ connection: a.connection, handle: `H:${i}` }, { ...job, work: undefined })
        inFlight.end(run, { type: C, data: String(i) })
      }
      assert.isUndefined(inFlight.undelivered("s1", "H:0", job), "evicted")
      assert.deepStrictEqual(inFlight.undelivered("s1", "H:1099", job), { type: C, data: "1099" })
      assert.deepStrictEqual(inFlight.undelivered("s1", "H:76", job), { type: C, data: "76" }, "the newest 1,024 stay")
      assert.isUndefined(inFlight.undelivered("s1", "H:75", job))
    }))
})
