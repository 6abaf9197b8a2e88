// Property suite: our Gearman client, worker and admin reader connected to a hostile fake server
// (node:net on 127.0.0.1) that answers each request with garbage, truncated or oversized
// frames, packets of the wrong type, or nothing. Every call ends with a typed error or a result,
// never a defect, never a hang; the worker reconnects; closing the scope ends it all.
import * as Net from "node:net"
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, FastCheck as fc, Schedule, Scope } from "effect"
import { serverIndexForUnique } from "../../src/gearman/GearmanClient.js"
import { Decoder, PacketType, response } from "../../src/protocol/gearman.js"
import { embeddedJobServer } from "../gearman/embedded.js"
import { eventually, live } from "../gearman/gearmand.js"
import { checkAsync, rawPacket } from "../support/fuzz.js"
import { quiet } from "../support/logs.js"

const fast = {
  reconnect: Schedule.exponential("10 millis").pipe(Schedule.union(Schedule.spaced("50 millis"))),
  heartbeat: "300 millis",
  maxFrame: 4096
} as const
/** A hang guard: a call that outlives it fails the test (it is no timing assertion). */
const guard = <A, E, R>(what: string, self: Effect.Effect<A, E, R>) =>
  Effect.timeoutFail(self, { duration: "20 seconds", onTimeout: () => new Error(`hung: ${what}`) }).pipe(Effect.orDie)

/** One answer of the hostile server to a request. */
type Reply =
  | { readonly _tag: "Bytes"; readonly bytes: Uint8Array }
  | { readonly _tag: "Packet"; readonly type: PacketType; readonly args: ReadonlyArray<Uint8Array> }
  | { readonly _tag: "Truncated"; readonly type: PacketType; readonly arg: Uint8Array; readonly keep: number }
  | { readonly _tag: "Oversized"; readonly type: PacketType; readonly size: number }
  | { readonly _tag: "Silence" }
  | { readonly _tag: "Close" }

const types = Object.values(PacketType)
const replyArb: fc.Arbitrary<Reply> = fc.oneof(
  fc.uint8Array({ maxLength: 48 }).map((bytes) => ({ _tag: "Bytes" as const, bytes })),
  fc.record({
    type: fc.constantFrom(...types),
    args: fc.array(
      fc.oneof(fc.constantFrom(Buffer.from("H:x:1"), Buffer.from("fn")), fc.uint8Array({ maxLength: 12 })),
      { maxLength: 6 }
    )
  })
    .map((p) => ({ _tag: "Packet" as const, ...p })),
  fc.record({ type: fc.constantFrom(...types), arg: fc.uint8Array({ maxLength: 30 }), keep: fc.nat() }).map((p) => ({
    _tag: "Truncated" as const,
    ...p
  })),
  fc.record({ type: fc.constantFrom(...types), size: fc.integer({ min: 4097, max: 0xffffffff }) }).map((p) => ({
    _tag: "Oversized" as const,
    ...p
  })),
  fc.constant({ _tag: "Silence" as const }),
  fc.constant({ _tag: "Close" as const })
)

const bytesOf = (reply: Reply): Buffer | undefined => {
  switch (reply._tag) {
    case "Bytes":
      return Buffer.from(reply.bytes)
    case "Packet":
      return rawPacket("RES", reply.type, reply.args)
    case "Truncated": {
      const full = response(reply.type, [reply.arg])
      return full.subarray(0, reply.keep % full.length)
    }
    case "Oversized": {
      const header = response(reply.type)
      header.writeUInt32BE(reply.size, 8)
      return header
    }
    default:
      return undefined
  }
}

interface Hostile {
  readonly server: string
  readonly connections: () => number
}

/**
 * A server answering each binary request (and each admin line) with the next scripted reply,
 * cycling; `respond` may take over a request instead (returns true when it did).
 */
const hostileServer = (script: ReadonlyArray<Reply>, respond?: (socket: Net.Socket, type: number) => boolean) =>
  Effect.acquireRelease(
    Effect.async<{ readonly server: Net.Server; readonly sockets: Set<Net.Socket>; readonly hostile: Hostile }>(
      (resume) => {
        const sockets = new Set<Net.Socket>()
        let connections = 0
        let next = 0
        const server = Net.createServer((socket) => {
          connections++
          sockets.add(socket)
          socket.on("close", () => sockets.delete(socket))
          socket.on("error", () => socket.destroy())
          const decoder = new Decoder("REQ", 1 << 20)
          const answer = (type: number) => {
            if (respond?.(socket, type)) return
            if (script.length === 0) return
            const reply = script[next++ % script.length]!
            if (reply._tag === "Close") return void socket.destroy()
            const bytes = bytesOf(reply)
            if (bytes !== undefined && !socket.destroyed) socket.write(bytes)
          }
          socket.on("data", (chunk) => {
            if (chunk[0] !== 0) return answer(-1) // an admin line
            for (const packet of decoder.push(chunk).packets) answer(packet.type)
          })
        })
        server.listen(0, "127.0.0.1", () => {
          const address = server.address()
          const port = typeof address === "object" && address !== null ? address.port : 0
          resume(Effect.succeed({
            server,
            sockets,
            hostile: { server: `127.0.0.1:${port}`, connections: () => connections }
          }))
        })
      }
    ),
    ({ server, sockets }) =>
      Effect.async<void>((resume) => {
        for (const s of sockets) s.destroy()
        server.close(() => resume(Effect.void))
      })
  ).pipe(Effect.map(({ hostile }) => hostile))

/** Runs one case in its own scope, quietly; a defect anywhere fails the case. */
const runCase = <A, E>(self: Effect.Effect<A, E, Scope.Scope>) =>
  Effect.runPromiseExit(Effect.scoped(self).pipe(Effect.provide(quiet))).then((exit) => {
    if (Exit.isFailure(exit)) throw new Error(Cause.pretty(exit.cause))
  })

const typedErrors = [
  "GearmanConnectionError",
  "GearmanNoServerAvailable",
  "GearmanServerError",
  "GearmanJobFailed",
  "GearmanJobException",
  "GearmanJobTimeout"
]

describe("fuzz: client and worker against a hostile server", () => {
  it("client calls end in a result or a typed error, never a defect or a hang", () =>
    checkAsync(
      25,
      fc.asyncProperty(fc.array(replyArb, { minLength: 1, maxLength: 6 }), (script) =>
        runCase(Effect.gen(function*() {
          const hostile = yield* hostileServer(script)
          const gearman = yield* live([hostile.server], fast)
          const calls = [
            gearman.submitBackground("fn", "payload"),
            gearman.submit("fn", "payload", { timeout: "2 seconds" }),
            gearman.getStatus({ server: hostile.server, handle: "H:x:1" }),
            gearman.submitBackgroundAll([{ fn: "fn", payload: "a" }, { fn: "fn", payload: "b" }])
          ] as const
          for (const call of calls) {
            const exit = yield* guard(
              "a client call",
              Effect.exit(call as Effect.Effect<unknown, { readonly _tag: string }>)
            )
            if (Exit.isFailure(exit)) {
              assert.isFalse(Cause.isDie(exit.cause), Cause.pretty(exit.cause))
              const failure = Cause.failureOption(exit.cause)
              if (failure._tag === "Some") assert.include(typedErrors, failure.value._tag)
            }
          }
        })))
    ))

  it("a worker survives any answers: it reconnects after a broken stream, and stops when asked", () =>
    checkAsync(
      15,
      fc.asyncProperty(
        fc.array(replyArb, { minLength: 1, maxLength: 6 }).filter((s) => s.some((r) => r._tag !== "Silence")),
        (script) =>
          runCase(Effect.gen(function*() {
            // Every request is answered from the script; a NOOP and an assignment keep the worker busy.
            const hostile = yield* hostileServer([...script, {
              _tag: "Packet",
              type: PacketType.JOB_ASSIGN_UNIQ,
              args: [Buffer.from("H:x:1"), Buffer.from("fn"), Buffer.from(""), Buffer.from("p")]
            }, { _tag: "Close" }])
            const gearman = yield* live([hostile.server], fast)
            const ran: Array<string> = []
            const workerScope = yield* Scope.make()
            yield* gearman.serve({ fn: (job) => Effect.sync(() => void ran.push(job.text())) }, {
              pollInterval: "50 millis",
              shutdownTimeout: "1 second"
            }).pipe(Scope.extend(workerScope))
            // The script always ends in a close: the worker comes back for more.
            yield* eventually(Effect.sync(() => hostile.connections() >= 2), "the worker to reconnect", 20_000)
            yield* guard("the worker's stop", Scope.close(workerScope, Exit.void))
          }))
      )
    ))

  it("a JOB_CREATED followed by garbage in one segment is the job's handle: the job is not sent to a second server", () =>
    runCase(Effect.gen(function*() {
      const good = yield* embeddedJobServer()
      const hostile = yield* hostileServer([], (socket, type) => {
        if (type === PacketType.OPTION_REQ) socket.write(response(PacketType.OPTION_RES, ["exceptions"]))
        if (type === PacketType.SUBMIT_JOB_BG)
          socket.write(Buffer.concat([response(PacketType.JOB_CREATED, ["H:hostile:1"]), Buffer.from("garbage")]))
        return true
      })
      const servers = [hostile.server, good.server]
      const unique = Array.from({ length: 100 }, (_, i) => `u${i}`).find((u) => serverIndexForUnique(u, 2) === 0)!
      const gearman = yield* live(servers, fast)
      const handle = yield* gearman.submitBackground("once", "payload", { unique })
      assert.deepStrictEqual(handle, { server: hostile.server, handle: "H:hostile:1" })
      const depths = yield* gearman.admin.status(good.server)
      assert.isUndefined(depths.find((row) => row.name === "once"))
    })))
  it("every assignment type gives the handler its own payload and unique", () =>
    runCase(Effect.gen(function*() {
      const assignments = [
        response(PacketType.JOB_ASSIGN, ["H:x:1", "fn", "payload 1"]),
        response(PacketType.JOB_ASSIGN_UNIQ, ["H:x:2", "fn", "u2", "payload 2"]),
        // JOB_ASSIGN_ALL's payload was read from its unique field.
        response(PacketType.JOB_ASSIGN_ALL, ["H:x:3", "fn", "u3", "reducer", "payload 3"])
      ]
      let next = 0
      const hostile = yield* hostileServer([], (socket, type) => {
        if (type === PacketType.GRAB_JOB_UNIQ)
          socket.write(next < assignments.length ? assignments[next++]! : response(PacketType.NO_JOB))
        return true
      })
      const gearman = yield* live([hostile.server], fast)
      const seen: Array<string> = []
      yield* gearman.serve({ fn: (job) => Effect.sync(() => void seen.push(`${job.unique}:${job.text()}`)) }, {
        pollInterval: "20 millis"
      })
      yield* eventually(Effect.sync(() => seen.length === 3), "three jobs", 20_000)
      assert.deepStrictEqual(seen, [":payload 1", "u2:payload 2", "u3:payload 3"])
    })))

  it("a worker streaming WORK_DATA without end does not grow the client's result past its bound", () =>
    runCase(Effect.gen(function*() {
      const chunk = Buffer.alloc(1000, 7)
      const hostile = yield* hostileServer([], (socket, type) => {
        if (type === PacketType.OPTION_REQ) socket.write(response(PacketType.OPTION_RES, ["exceptions"]))
        if (type !== PacketType.SUBMIT_JOB) return true
        const stream = [response(PacketType.JOB_CREATED, ["H:x:1"])]
        for (let i = 0; i < 1000; i++)
          stream.push(
            response(PacketType.WORK_DATA, ["H:x:1", chunk]),
            response(PacketType.WORK_WARNING, ["H:x:1", chunk])
          )
        stream.push(response(PacketType.WORK_COMPLETE, ["H:x:1", "done"]))
        socket.write(Buffer.concat(stream))
        return true
      })
      // The 300 ms heartbeat of `fast` can fire while a loaded machine decodes the 2 MB stream;
      // this case is about the bound, not the heartbeat.
      const gearman = yield* live([hostile.server], { ...fast, heartbeat: "20 seconds" })
      const result = yield* guard("the streamed job", gearman.submit("fn", "payload"))
      assert.strictEqual(result.data.toString(), "done")
      const kept = [...result.chunks, ...result.warnings].reduce((n, b) => n + b.length, 0)
      assert.isAtMost(kept, fast.maxFrame)
      assert.isAbove(result.chunks.length, 0)
    })))
})

describe("fuzz: admin commands against a hostile server", () => {
  const adminLine = fc.oneof(
    fc.constantFrom(".", "ERR x", "ERRands\t1\t0\t1", "OK", "f\t1\t0\t1", "f\t-1\t0\t0", "v1.2", "OK 12"),
    fc.string({ maxLength: 20 }).map((s) => s.replace(/[\r\n]/g, ""))
  )
  it("random answers end in rows or a typed error, never a defect", () =>
    checkAsync(
      30,
      fc.asyncProperty(fc.array(adminLine, { maxLength: 6 }), fc.boolean(), (lines, crlf) =>
        runCase(Effect.gen(function*() {
          const text = lines.map((l) =>
            l + (crlf ? "\r\n" : "\n")
          ).join("")
          // The server answers, then hangs up: an answer without its end fails, never hangs.
          const hostile = yield* hostileServer(
            [{ _tag: "Bytes", bytes: Buffer.from(text) }, { _tag: "Close" }],
            (socket, type) => {
              if (type !== -1) return false
              socket.end(text)
              return true
            }
          )
          const gearman = yield* live([hostile.server], fast)
          for (
            const call of [
              gearman.admin.status(hostile.server),
              gearman.admin.version(hostile.server),
              gearman.admin.getPid(hostile.server)
            ]
          ) {
            const exit = yield* guard(
              "an admin call",
              Effect.exit(call as Effect.Effect<unknown, { readonly _tag: string }>)
            )
            if (Exit.isFailure(exit)) {
              assert.isFalse(Cause.isDie(exit.cause), Cause.pretty(exit.cause))
              const failure = Cause.failureOption(exit.cause)
              if (failure._tag === "Some")
                assert.include(["GearmanAdminError", "GearmanConnectionError"], failure.value._tag)
            }
          }
        })))
    ))

  it("a status answer followed by more lines on an open connection is read at its end", () =>
    runCase(Effect.gen(function*() {
      const hostile = yield* hostileServer([], (socket) => {
        socket.write("f\t1\t0\t1\n.\ng\t2\t0\t0\n") // and the connection stays open
        return true
      })
      const gearman = yield* live([hostile.server], fast)
      const rows = yield* guard("status", gearman.admin.status(hostile.server))
      assert.deepStrictEqual(rows, [{ name: "f", total: 1, running: 0, workers: 1 }])
    })))

  it("an endless status answer fails at the bound instead of growing without end", () =>
    runCase(Effect.gen(function*() {
      const line = Buffer.from("f\t1\t0\t1\n".repeat(8192))
      const hostile = yield* hostileServer([], (socket) => {
        const pump = () => {
          while (!socket.destroyed && socket.write(line));
        }
        socket.on("drain", pump)
        pump()
        return true
      })
      const gearman = yield* live([hostile.server], fast)
      const error = yield* guard("status", Effect.flip(gearman.admin.status(hostile.server)))
      assert.strictEqual(error._tag, "GearmanAdminError")
      assert.include(error.message, "longer than")
    })))
})
