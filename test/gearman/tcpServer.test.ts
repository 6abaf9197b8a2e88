// The embedded job server over TCP (`garivini gearmand`): its bounds and its isolation of bad
// peers. The conformance suite and the C tools' interop run against it elsewhere.
import * as Net from "node:net"
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Scope } from "effect"
import { vi } from "vitest"
import { Decoder, PacketType, request, typeName } from "../../src/protocol/gearman.js"
import { parseListen, serve } from "../../src/jobserver/tcpServer.js"
import { eventually, live } from "./gearmand.js"

/** A raw socket with everything it received; `closed` turns true when the server hangs up. */
const rawPeer = (port: number) =>
  Effect.acquireRelease(
    Effect.async<{ socket: Net.Socket; received: () => Buffer; closed: () => boolean }>((resume) => {
      const chunks: Array<Buffer> = []
      let closed = false
      const socket = Net.connect({ host: "127.0.0.1", port }, () =>
        resume(Effect.succeed({ socket, received: () => Buffer.concat(chunks), closed: () => closed })))
      socket.on("data", (d) =>
        chunks.push(d))
      socket.on("close", () => (closed = true))
      socket.on("error", () => undefined)
    }),
    (peer) => Effect.sync(() => peer.socket.destroy())
  )

/** The binary packets a raw peer received, as "TYPE arg arg" strings. */
const packetsOf = (bytes: Buffer): ReadonlyArray<string> => {
  const { error, packets } = new Decoder("RES").push(bytes)
  if (error !== undefined) throw error
  return packets.map((p) => [typeName(p.type), ...p.args.map((a) => a.toString("latin1"))].join(" "))
}

/** One admin command on its own connection; the whole answer as text (a list ends with ".\n"). */
const adminText = (port: number, line: string, list = true) =>
  Effect.scoped(Effect.gen(function*() {
    const peer = yield* rawPeer(port)
    peer.socket.write(line + "\n")
    yield* eventually(
      Effect.sync(() => {
        const text = peer.received().toString("latin1")
        return list ? text === ".\n" || text.endsWith("\n.\n") : text.endsWith("\n")
      }),
      `the answer to ${line}`
    )
    return peer.received().toString("latin1")
  }))

/** The `status` rows, as [name, total, running, workers]. */
const statusRows = (port: number) =>
  Effect.map(
    adminText(port, "status"),
    (text) => text.split("\n").filter((l) => l !== "" && l !== ".").map((l) => l.split("\t"))
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
      yield* gearman.serve({
        ok: () => Effect.succeed("done"),
        bad: () => Effect.die("boom"),
        internal: () => Effect.succeed("")
      })
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

  it.scopedLive("a 32 MiB packet arriving in many chunks is joined once, not once per chunk", () =>
    Effect.gen(function*() {
      const server = yield* serve({ port: 0 })
      const size = 32 * 1024 * 1024
      const peer = yield* rawPeer(server.port)
      // Every byte Buffer.concat copies in this process, while the packet arrives and is decoded.
      let copied = 0
      let joins = 0
      const concat = Buffer.concat
      const spy = vi.spyOn(Buffer, "concat").mockImplementation((list, total) => {
        const joined = concat(list, total)
        copied += joined.length
        joins++
        return joined
      })
      yield* Effect.addFinalizer(() => Effect.sync(() => spy.mockRestore()))
      peer.socket.write(request(PacketType.SUBMIT_JOB_BG, ["big", "", Buffer.alloc(size, 7)]))
      yield* eventually(Effect.sync(() => peer.received().includes("H:garivini")), "JOB_CREATED")
      spy.mockRestore()
      assert.isAbove(joins, 0, "the packet arrived in several chunks and was joined")
      assert.isAtMost(copied, size + 1024 * 1024, `copied ${copied} bytes for one ${size}-byte packet`)
      assert.deepStrictEqual(yield* statusRows(server.port), [["big", "1", "0", "0"]])
    }))

  it.scopedLive("a worker that registered 200,000 functions disconnects in one pass, and none of them stays listed", () =>
    Effect.gen(function*() {
      const server = yield* serve({ port: 0 })
      const n = 200_000
      const worker = yield* rawPeer(server.port)
      worker.socket.write(Buffer.concat(Array.from({ length: n }, (_, i) => request(PacketType.CAN_DO, [`fn${i}`]))))
      worker.socket.write(request(PacketType.ECHO_REQ, ["registered"]))
      yield* eventually(Effect.sync(() => worker.received().includes("registered")), "the registrations")
      assert.strictEqual((yield* statusRows(server.port)).length, n)
      worker.socket.destroy()
      yield* eventually(
        Effect.map(statusRows(server.port), (rows) => rows.length === 0),
        "the functions to be forgotten"
      )
    }))

  it.scopedLive("a function with no jobs and no workers left is no longer listed; one with queued jobs or admin settings stays", () =>
    Effect.gen(function*() {
      const server = yield* serve({ port: 0 })
      const gearman = yield* live([server.address])
      for (const fn of ["ran", "limited", "waits"]) yield* gearman.submitBackground(fn, "x")
      assert.strictEqual(yield* adminText(server.port, "maxqueue limited 5", false), "OK\r\n")
      assert.strictEqual(yield* adminText(server.port, "create function made", false), "OK\r\n")
      let ran = 0
      const done = yield* Deferred.make<void>()
      const worker = yield* Scope.make()
      const handler = () =>
        Effect.suspend(() => ++ran === 2 ? Deferred.succeed(done, undefined) : Effect.void).pipe(Effect.asVoid)
      yield* gearman.serve({ ran: handler, limited: handler }).pipe(Scope.extend(worker))
      yield* Deferred.await(done)
      yield* Scope.close(worker, Exit.void)
      const names = Effect.map(statusRows(server.port), (rows) => rows.map((r) => r[0]).sort().join(" "))
      yield* eventually(Effect.map(names, (n) => n === "limited made waits"), "`ran` to be forgotten, the others kept")
      assert.strictEqual(yield* adminText(server.port, "drop function made", false), "OK\r\n")
      assert.strictEqual(yield* adminText(server.port, "maxqueue limited", false), "OK\r\n")
      assert.strictEqual(yield* names, "waits")
    }))

  it.scopedLive("queues are bounded in bytes per function and in all: a submit past a bound gets QUEUE_ERROR, a coalescing one still gets in", () =>
    Effect.gen(function*() {
      // A job counts its payload, unique and function name: 599 + 0 + 1 = 600 bytes for `a`'s.
      const server = yield* serve({ port: 0, maxQueueBytes: 1000, maxTotalBytes: 1500 })
      const gearman = yield* live([server.address])
      const payload = "x".repeat(599)
      const code = (e: { readonly _tag: string; readonly code?: string }) =>
        e._tag === "GearmanServerError" ? e.code : e._tag
      const first = yield* gearman.submitBackground("a", payload)
      assert.strictEqual(code(yield* Effect.flip(gearman.submitBackground("a", payload))), "QUEUE_ERROR")
      const coalesced = yield* gearman.submitBackground("b", payload, { unique: "k" })
      assert.strictEqual(code(yield* Effect.flip(gearman.submitBackground("c", payload))), "QUEUE_ERROR")
      assert.deepStrictEqual(yield* gearman.submitBackground("b", payload, { unique: "k" }), coalesced)
      assert.strictEqual(server.core.queuedBytes, 600 + 601)
      // Once `a`'s job is done its bytes are free again.
      const done = yield* Deferred.make<void>()
      yield* gearman.serve({ a: () => Deferred.succeed(done, undefined).pipe(Effect.asVoid) })
      yield* Deferred.await(done)
      yield* eventually(Effect.sync(() => server.core.queuedBytes === 601), "a's bytes to be freed")
      assert.notStrictEqual((yield* gearman.submitBackground("c", payload)).handle, first.handle)
    }))

  it.scopedLive("drop function drops its queued jobs: a waiting client gets WORK_FAIL, a later submit with the same unique runs", () =>
    Effect.gen(function*() {
      const server = yield* serve({ port: 0 })
      const gearman = yield* live([server.address])
      const old = yield* gearman.submitBackground("dropped", "old", { unique: "u1" })
      const created = yield* Deferred.make<void>()
      const waiting = yield* gearman.submit("dropped", "fg", { onCreated: () => Deferred.succeed(created, undefined) })
        .pipe(Effect.fork)
      yield* Deferred.await(created)
      assert.strictEqual(yield* adminText(server.port, "drop function dropped", false), "OK\r\n")
      assert.strictEqual((yield* Effect.flip(Fiber.join(waiting)))._tag, "GearmanJobFailed")
      assert.strictEqual(yield* adminText(server.port, "show jobs"), ".\n")
      const again = yield* gearman.submitBackground("dropped", "new", { unique: "u1" })
      assert.notStrictEqual(again.handle, old.handle)
      const ran = yield* Deferred.make<string>()
      yield* gearman.serve({ dropped: (job) => Deferred.succeed(ran, job.text()).pipe(Effect.asVoid) })
      assert.strictEqual(yield* Deferred.await(ran), "new")
    }))

  it.scopedLive("names with control characters are refused and never forge admin lines; the connection stays", () =>
    Effect.gen(function*() {
      const server = yield* serve({ port: 0 })
      const peer = yield* rawPeer(server.port)
      const forged = "evil\t9\t9\t9\nforged"
      peer.socket.write(request(PacketType.SET_CLIENT_ID, ["me\n1 127.0.0.1 forged :"]))
      peer.socket.write(request(PacketType.CAN_DO, [forged]))
      peer.socket.write(request(PacketType.CAN_DO, ["nul\0inside"]))
      peer.socket.write(request(PacketType.CAN_DO_TIMEOUT, ["tab\there", "5000"]))
      peer.socket.write(request(PacketType.CAN_DO, ["next\u0085line"]))
      peer.socket.write(request(PacketType.CAN_DO, [Buffer.from([0x66, 0xff])])) // not UTF-8: would read as "f\ufffd"
      peer.socket.write(request(PacketType.SUBMIT_JOB_BG, [forged, "", "x"]))
      peer.socket.write(request(PacketType.CAN_DO, ["fine"]))
      peer.socket.write(request(PacketType.SUBMIT_JOB_BG, ["fine", "u\nforged", "x"]))
      peer.socket.write(request(PacketType.ECHO_REQ, ["after"]))
      yield* eventually(Effect.sync(() => peer.received().includes("after")), "the echo")
      const refused = "ERROR INVALID_FUNCTION_NAME Function name is not UTF-8 without control characters"
      assert.deepStrictEqual(packetsOf(peer.received()).map((p) => p.replace(/H:\S+/, "H")), [
        refused,
        refused,
        refused,
        refused,
        refused,
        refused,
        "JOB_CREATED H",
        "ECHO_RES after"
      ])
      assert.strictEqual(
        yield* adminText(server.port, "create function a\tb", false),
        "ERR INVALID_FUNCTION_NAME Function+name+is+not+UTF-8+without+control+characters\r\n"
      )
      assert.deepStrictEqual(yield* statusRows(server.port), [["fine", "1", "0", "1"]])
      assert.strictEqual(yield* adminText(server.port, "show unique jobs"), "u?forged\n.\n")
      const workers = (yield* adminText(server.port, "workers")).split("\n")
      assert.isTrue(
        workers.some((l) => /^\d+ 127\.0\.0\.1 me\?1_127\.0\.0\.1_forged_: : fine$/.test(l)),
        workers.join("|")
      )
      assert.strictEqual(workers.length, 2 + 2) // this peer, the admin connection, ".", ""
      assert.isFalse(peer.closed())
    }))

  it.scopedLive("CAN_DO_TIMEOUT with job retries: a job its worker holds past the timeout on every attempt fails to its client", () =>
    Effect.gen(function*() {
      const server = yield* serve({ port: 0, jobRetries: 2 })
      const gearman = yield* live([server.address])
      let attempts = 0
      yield* gearman.serve({
        stuck: { timeout: "1 second", handler: () => Effect.sync(() => attempts++).pipe(Effect.zipRight(Effect.never)) }
      }, {
        concurrency: 2,
        shutdownTimeout: 0
      })
      const error = yield* Effect.flip(gearman.submit("stuck", "x"))
      assert.strictEqual(error._tag, "GearmanJobFailed")
      assert.strictEqual(attempts, 2)
      assert.deepStrictEqual(yield* statusRows(server.port), [["stuck", "0", "0", "2"]])
    }))

  it.scopedLive("peers past maxConnections are refused on arrival; a freed place is taken again", () =>
    Effect.gen(function*() {
      const server = yield* serve({ port: 0, maxConnections: 2 })
      const first = yield* rawPeer(server.port)
      yield* rawPeer(server.port)
      const third = yield* rawPeer(server.port)
      yield* eventually(Effect.sync(third.closed), "the third peer to be refused")
      first.socket.destroy()
      yield* eventually(Effect.sync(first.closed), "the first peer gone")
      // The freed place serves a whole job.
      const gearman = yield* Effect.scoped(Effect.gen(function*() {
        const again = yield* rawPeer(server.port)
        again.socket.write(request(PacketType.ECHO_REQ, ["still serving"]))
        yield* eventually(Effect.sync(() => packetsOf(again.received()).length === 1), "the echo on the freed place")
        return packetsOf(again.received())
      }))
      assert.deepStrictEqual(gearman, ["ECHO_RES still serving"])
    }))

  it.scopedLive("unfinished input is bounded for all peers together: the peer holding the most is cut off, the others go on", () =>
    Effect.gen(function*() {
      const server = yield* serve({ port: 0, maxFrame: 48 * 1024, maxInputBytes: 64 * 1024 })
      const gearman = yield* live([server.address])
      yield* gearman.serve({ echo: (job) => Effect.succeed(job.payload) })
      // Two peers each start a 48 KiB packet and stop partway: 40 KiB + 30 KiB pass the 64 KiB bound.
      const frame = request(PacketType.SUBMIT_JOB_BG, ["echo", "", Buffer.alloc(48 * 1024 - 64)])
      const hoarder = yield* rawPeer(server.port)
      hoarder.socket.write(frame.subarray(0, 40 * 1024))
      yield* eventually(Effect.sync(() => server.core.pendingInputBytes === 40 * 1024), "the first partial packet held")
      const smaller = yield* rawPeer(server.port)
      smaller.socket.write(frame.subarray(0, 30 * 1024))
      yield* eventually(Effect.sync(hoarder.closed), "the peer holding the most to be cut off")
      yield* eventually(
        Effect.sync(() => server.core.pendingInputBytes === 30 * 1024),
        "only the smaller partial packet held"
      )
      assert.isFalse(smaller.closed())
      // The smaller peer finishes its packet; a client and worker on their own connections go on.
      smaller.socket.write(frame.subarray(30 * 1024))
      yield* eventually(Effect.sync(() => server.core.pendingInputBytes === 0), "the finished packet taken")
      const answer = yield* gearman.submit("echo", "after the cut")
      assert.strictEqual(answer.data.toString(), "after the cut")
      assert.isFalse(smaller.closed())
    }))

  it("parses --listen as host:port or port", () => {
    assert.deepStrictEqual(parseListen("4730"), { host: "127.0.0.1", port: 4730 })
    assert.deepStrictEqual(parseListen("0.0.0.0:4731"), { host: "0.0.0.0", port: 4731 })
    assert.deepStrictEqual(parseListen("[::1]:4732"), { host: "::1", port: 4732 })
    assert.isUndefined(parseListen("host:99999"))
    assert.isUndefined(parseListen("nonsense"))
  })
})
