// The in-process job server's gearmand semantics, byte for byte, without any client code.
import { assert, describe, it } from "@effect/vitest"
import { JobServer } from "../../src/jobserver/JobServer.js"
import { Decoder, PacketType as T, request, typeName, type Arg } from "../../src/protocol/gearman.js"

const peer = (core: JobServer) => {
  const decoder = new Decoder("RES")
  const got: Array<string> = []
  let text = ""
  let closed = false
  const session = core.connect("127.0.0.1", (bytes) => {
    if (bytes[0] !== 0) return void (text += bytes.toString())
    for (const p of decoder.push(bytes).packets)
      got.push([typeName(p.type), ...p.args.map((a) => a.toString("latin1"))].join(" "))
  }, () => (closed = true))
  return {
    send: (type: Parameters<typeof request>[0], ...args: ReadonlyArray<Arg>) => session.receive(request(type, args)),
    admin: (line: string) => {
      text = ""
      session.receive(Buffer.from(line + "\n"))
      return text
    },
    take: () => got.splice(0),
    closed: () => closed,
    leave: () => session.disconnect(),
    raw: (bytes: Buffer) => session.receive(bytes)
  }
}

describe("JobServer", () => {
  it("coalesces '-' uniques by payload, never empty uniques, and scopes uniques by function", () => {
    const core = new JobServer({ handlePrefix: "H:t" })
    const c = peer(core)
    c.send(T.SUBMIT_JOB_BG, "f", "-", "same")
    c.send(T.SUBMIT_JOB_BG, "f", "-", "same")
    c.send(T.SUBMIT_JOB_BG, "f", "-", "other")
    c.send(T.SUBMIT_JOB_BG, "f", "", "x")
    c.send(T.SUBMIT_JOB_BG, "f", "", "x")
    c.send(T.SUBMIT_JOB_BG, "f", "u", "x")
    c.send(T.SUBMIT_JOB_BG, "g", "u", "x")
    assert.deepStrictEqual(c.take(), [
      "JOB_CREATED H:t:1",
      "JOB_CREATED H:t:1",
      "JOB_CREATED H:t:2",
      "JOB_CREATED H:t:3",
      "JOB_CREATED H:t:4",
      "JOB_CREATED H:t:5",
      "JOB_CREATED H:t:6"
    ])
  })

  it("sends NOOP once per sleep, and at once on PRE_SLEEP when work is waiting", () => {
    const core = new JobServer({ handlePrefix: "H:t" })
    const w = peer(core)
    const c = peer(core)
    w.send(T.CAN_DO, "f")
    w.send(T.PRE_SLEEP)
    c.send(T.SUBMIT_JOB_BG, "f", "", "1")
    c.send(T.SUBMIT_JOB_BG, "f", "", "2")
    assert.deepStrictEqual(w.take(), ["NOOP"])
    w.send(T.GRAB_JOB_UNIQ)
    w.send(T.PRE_SLEEP)
    assert.deepStrictEqual(w.take(), ["JOB_ASSIGN_UNIQ H:t:1 f  1", "NOOP"])
  })

  it("hands a multi-function worker its most recently registered function first (gearmand 1.1)", () => {
    const core = new JobServer({ handlePrefix: "H:t" })
    const c = peer(core)
    const w = peer(core)
    c.send(T.SUBMIT_JOB_LOW_BG, "fa", "", "a-low")
    c.send(T.SUBMIT_JOB_HIGH_BG, "fb", "", "b-high")
    c.send(T.SUBMIT_JOB_BG, "fc", "", "c-norm")
    for (const f of ["fa", "fb", "fc"]) w.send(T.CAN_DO, f)
    for (let i = 0; i < 4; i++) w.send(T.GRAB_JOB)
    assert.deepStrictEqual(w.take(), [
      "JOB_ASSIGN H:t:3 fc c-norm",
      "JOB_ASSIGN H:t:2 fb b-high",
      "JOB_ASSIGN H:t:1 fa a-low",
      "NO_JOB"
    ])
  })

  it("keeps counting an abandoned foreground job until a worker grabs it, then drops it", () => {
    const core = new JobServer({ handlePrefix: "H:t" })
    const c = peer(core)
    c.send(T.SUBMIT_JOB, "gone", "", "x")
    c.leave()
    assert.strictEqual(peer(core).admin("status"), "gone\t1\t0\t0\n.\n")
    const w = peer(core)
    w.send(T.CAN_DO, "gone")
    w.send(T.GRAB_JOB)
    assert.deepStrictEqual(w.take(), ["NO_JOB"])
    assert.strictEqual(w.admin("status"), "gone\t0\t0\t1\n.\n")
  })

  it("requeues a vanished worker's job at the tail, and drops it after jobRetries attempts", () => {
    const core = new JobServer({ handlePrefix: "H:t", jobRetries: 2 })
    const c = peer(core)
    c.send(T.SUBMIT_JOB, "f", "", "first")
    c.send(T.SUBMIT_JOB_BG, "f", "", "second")
    const w1 = peer(core)
    w1.send(T.CAN_DO, "f")
    w1.send(T.GRAB_JOB)
    assert.deepStrictEqual(w1.take(), ["JOB_ASSIGN H:t:1 f first"])
    w1.leave()
    assert.strictEqual(c.admin("show jobs"), "H:t:1\t1\t0\t0\nH:t:2\t0\t0\t1\n.\n")
    const w2 = peer(core)
    w2.send(T.CAN_DO, "f")
    w2.send(T.GRAB_JOB)
    w2.send(T.GRAB_JOB)
    assert.deepStrictEqual(w2.take(), ["JOB_ASSIGN H:t:2 f second", "JOB_ASSIGN H:t:1 f first"])
    w2.leave()
    assert.deepStrictEqual(c.take(), ["JOB_CREATED H:t:1", "JOB_CREATED H:t:2", "WORK_FAIL H:t:1"])
  })

  it("fans WORK_* out to every attached client, downgrading WORK_EXCEPTION without the option", () => {
    const core = new JobServer({ handlePrefix: "H:t" })
    const a = peer(core)
    const b = peer(core)
    const w = peer(core)
    a.send(T.OPTION_REQ, "exceptions")
    a.send(T.SUBMIT_JOB, "f", "k", "x")
    b.send(T.SUBMIT_JOB, "f", "k", "y")
    w.send(T.CAN_DO, "f")
    w.send(T.GRAB_JOB_UNIQ)
    w.send(T.WORK_DATA, "H:t:1", "d")
    w.send(T.WORK_EXCEPTION, "H:t:1", "oops")
    w.send(T.WORK_COMPLETE, "H:t:1", "late")
    assert.deepStrictEqual(a.take(), [
      "OPTION_RES exceptions",
      "JOB_CREATED H:t:1",
      "WORK_DATA H:t:1 d",
      "WORK_EXCEPTION H:t:1 oops"
    ])
    assert.deepStrictEqual(b.take(), ["JOB_CREATED H:t:1", "WORK_DATA H:t:1 d", "WORK_FAIL H:t:1"])
    assert.deepStrictEqual(w.take(), [
      "JOB_ASSIGN_UNIQ H:t:1 f k x",
      "ERROR JOB_NOT_FOUND Job given in work result not found"
    ])
  })

  it("GET_STATUS_UNIQUE finds a job by its unique across functions, oldest first, until it ends", () => {
    const core = new JobServer({ handlePrefix: "H:t" })
    const c = peer(core)
    const w = peer(core)
    c.send(T.SUBMIT_JOB_BG, "f", "u", "1")
    c.send(T.SUBMIT_JOB, "g", "u", "2")
    w.send(T.CAN_DO, "f")
    w.send(T.GRAB_JOB)
    c.send(T.GET_STATUS_UNIQUE, "u")
    w.send(T.WORK_COMPLETE, "H:t:1", "")
    c.send(T.GET_STATUS_UNIQUE, "u")
    c.leave()
    const d = peer(core)
    d.send(T.GET_STATUS_UNIQUE, "u")
    w.send(T.CAN_DO, "g")
    w.send(T.GRAB_JOB) // the abandoned foreground job is dropped here
    d.send(T.GET_STATUS_UNIQUE, "u")
    assert.deepStrictEqual(c.take().slice(2), ["STATUS_RES_UNIQUE u 1 1 0 0 0", "STATUS_RES_UNIQUE u 1 0 0 0 1"])
    assert.deepStrictEqual(d.take(), ["STATUS_RES_UNIQUE u 1 0 0 0 0", "STATUS_RES_UNIQUE u 0 0 0 0 0"])
  })

  it("answers bad requests with ERROR and closes on broken framing", () => {
    const core = new JobServer({ handlePrefix: "H:t" })
    const c = peer(core)
    c.send(T.OPTION_REQ, "nope")
    c.send(T.NOOP)
    c.send(T.SUBMIT_JOB, "f", "u".repeat(65), "x")
    assert.deepStrictEqual(c.take(), [
      "ERROR UNKNOWN_OPTION Server does not recognize given option",
      "ERROR INVALID_COMMAND Command not expected",
      "ERROR ARGUMENT_TOO_LARGE Unique value too large"
    ])
    assert.strictEqual(c.admin("bogus"), "ERR UNKNOWN_COMMAND Unknown+server+commandbogus\r\n")
    assert.isFalse(c.closed())
    const bad = request(T.NOOP)
    bad.writeUInt32BE(99, 4)
    c.raw(bad)
    assert.isTrue(c.closed())
  })
})
