// The embedded job server over TCP (`garivini gearmand`): its bounds and its isolation of bad
// peers. The conformance suite and the C tools' interop run against it elsewhere.
import * as Net from "node:net"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { PacketType, request } from "../../src/gearman/protocol.js"
import { parseListen, serve } from "../../src/gearman/tcpServer.js"
import { eventually, live } from "./gearmand.js"

/** A raw socket with everything it received; `closed` turns true when the server hangs up. */
const rawPeer = (port: number) =>
  Effect.acquireRelease(
    Effect.async<{ socket: Net.Socket; received: () => Buffer; closed: () => boolean }>((resume) => {
      const chunks: Array<Buffer> = []
      let closed = false
      const socket = Net.connect({ host: "127.0.0.1", port }, () =>
        resume(Effect.succeed({ socket, received: () => Buffer.concat(chunks), closed: () => closed })))
      socket.on("data", (d) => chunks.push(d))
      socket.on("close", () => (closed = true))
      socket.on("error", () => undefined)
    }),
    (peer) => Effect.sync(() => peer.socket.destroy())
  )

describe("embedded job server over TCP", () => {
  it.scopedLive("a function holds at most maxQueue jobs; admin maxqueue overrides it and `maxqueue FUNC` restores it", () =>
    Effect.gen(function*() {
      const server = yield* serve({ port: 0, maxQueue: 3 })
      const gearman = yield* live([server.address])
      for (let i = 0; i < 3; i++) yield* gearman.submitBackground("bounded", `job ${i}`)
      const full = yield* Effect.flip(gearman.submitBackground("bounded", "one too many"))
      assert.strictEqual(full._tag, "GearmanServerError")
      assert.strictEqual(full._tag === "GearmanServerError" ? full.code : "", "QUEUE_ERROR")

      yield* gearman.admin.maxQueue(server.address, "bounded", 4)
      yield* gearman.submitBackground("bounded", "job 3")
      assert.strictEqual((yield* Effect.flip(gearman.submitBackground("bounded", "job 4")))._tag, "GearmanServerError")

      yield* gearman.admin.maxQueue(server.address, "bounded")
      assert.strictEqual((yield* Effect.flip(gearman.submitBackground("bounded", "job 4")))._tag, "GearmanServerError")
      const depths = yield* gearman.queueDepths()
      assert.strictEqual(depths.get("bounded")?.total, 4)
    }))

  it.scopedLive("a packet with bad magic or over the size limit closes that connection only", () =>
    Effect.gen(function*() {
      const server = yield* serve({ port: 0, maxFrame: 1024 })
      const gearman = yield* live([server.address])
      yield* gearman.serve({ echo: (job) => Effect.succeed(job.payload) })

      const badMagic = yield* rawPeer(server.port)
      badMagic.socket.write(Buffer.from("\0XYZ\0\0\0\x01\0\0\0\0", "latin1"))
      yield* eventually(Effect.sync(badMagic.closed), "the bad-magic peer to be closed")

      const oversized = yield* rawPeer(server.port)
      oversized.socket.write(request(PacketType.SUBMIT_JOB_BG, ["echo", "", Buffer.alloc(2048)]))
      yield* eventually(Effect.sync(oversized.closed), "the oversized peer to be closed")

      // Another peer on the same server is served as before.
      const result = yield* gearman.submit("echo", "still here")
      assert.strictEqual(result.data.toString(), "still here")
      assert.isFalse((yield* gearman.queueDepths()).has("XYZ"))
    }))

  it.scopedLive("an unknown packet type in a well-framed request gets an ERROR and the connection stays", () =>
    Effect.gen(function*() {
      const server = yield* serve({ port: 0 })
      const peer = yield* rawPeer(server.port)
      peer.socket.write(request(PacketType.NOOP))
      peer.socket.write(request(PacketType.ECHO_REQ, ["ping"]))
      yield* eventually(Effect.sync(() => peer.received().includes("ping")), "the echo after the error")
      assert.include(peer.received().toString("latin1"), "INVALID_COMMAND")
      assert.isFalse(peer.closed())
    }))

  it.scopedLive("a peer that never reads its answers is cut off once its backlog passes the bound", () =>
    Effect.gen(function*() {
      const server = yield* serve({ port: 0, maxFrame: 64 * 1024, maxBacklog: 256 * 1024 })
      const gearman = yield* live([server.address])
      const peer = yield* rawPeer(server.port)
      peer.socket.pause() // reads nothing: the answers pile up in the kernel, then in the server
      const echo = request(PacketType.ECHO_REQ, [Buffer.alloc(60 * 1024, 120)])
      for (let i = 0; i < 400 && !peer.closed(); i++) {
        peer.socket.write(echo)
        yield* Effect.sleep("1 millis")
      }
      yield* eventually(Effect.sync(peer.closed), "the non-reading peer to be cut off")
      // The server goes on for everyone else.
      yield* gearman.serve({ still: () => Effect.succeed("up") })
      assert.strictEqual((yield* gearman.submit("still", "?")).data.toString(), "up")
    }))

  it.scopedLive("counts completed and failed jobs, leaving the uncounted functions out", () =>
    Effect.gen(function*() {
      const server = yield* serve({ port: 0, uncounted: ["internal"] })
      const gearman = yield* live([server.address])
      yield* gearman.serve({ ok: () => Effect.succeed("done"), bad: () => Effect.die("boom"), internal: () => Effect.succeed("") })
      yield* gearman.submit("ok", "1")
      yield* gearman.submit("ok", "2")
      yield* gearman.submit("internal", "3")
      yield* Effect.flip(gearman.submit("bad", "4"))
      assert.deepStrictEqual(server.core.ended(), { completed: 2, failed: 1 })
    }))

  it.scopedLive("a taken port is a typed error naming the address", () =>
    Effect.gen(function*() {
      const first = yield* serve({ port: 0 })
      const error = yield* Effect.flip(serve({ port: first.port }))
      assert.strictEqual(error._tag, "GearmanListenError")
      assert.include(error.message, `127.0.0.1:${first.port}`)
    }))

  it("parses --listen as host:port or port", () => {
    assert.deepStrictEqual(parseListen("4730"), { host: "127.0.0.1", port: 4730 })
    assert.deepStrictEqual(parseListen("0.0.0.0:4731"), { host: "0.0.0.0", port: 4731 })
    assert.deepStrictEqual(parseListen("[::1]:4732"), { host: "::1", port: 4732 })
    assert.isUndefined(parseListen("host:99999"))
    assert.isUndefined(parseListen("nonsense"))
  })
})
