// Property suite: the embedded job server over TCP (src/jobserver/tcpServer.ts + JobServer.ts) fed
// hostile bytes on one connection (random bytes, mutated valid requests, garbage admin lines) in
// random chunkings, while a well-behaved client and worker use it on other connections: their
// jobs complete, a bad peer loses only its own connection, and the server keeps serving.
import * as Net from "node:net"
import { assert, describe, it } from "@effect/vitest"
import { Effect, FastCheck as fc, Runtime } from "effect"
import { PacketType } from "../../src/protocol/gearman.js"
import { serve } from "../../src/jobserver/tcpServer.js"
import { eventually, live } from "../gearman/gearmand.js"
import { checkAsync, chunked, rawPacket } from "../support/fuzz.js"
import { quiet } from "../support/logs.js"

const FN = "fuzz_echo_well_behaved"

/** A raw peer: writes its chunks one event-loop turn apart, records what it got back. */
const rawPeer = (port: number) =>
  new Promise<{ socket: Net.Socket; received: () => string; closed: () => boolean }>((resolve) => {
    const chunks: Array<Buffer> = []
    let closed = false
    const socket = Net.connect(
      { host: "127.0.0.1", port },
      () => resolve({ socket, received: () => Buffer.concat(chunks).toString("latin1"), closed: () => closed })
    )
    socket.on("data", (d) => chunks.push(d))
    socket.on("close", () => (closed = true))
    socket.on("error", () => undefined)
  })
const writeChunks = async (socket: Net.Socket, chunks: ReadonlyArray<Buffer>) => {
  for (const chunk of chunks) {
    if (socket.destroyed) return
    socket.write(chunk)
    await new Promise((r) => setImmediate(r))
  }
}

const types = Object.values(PacketType)
/** Requests naming other functions than the well-behaved one (a peer may legally take its jobs). */
const requestArb = fc.record({
  type: fc.constantFrom(...types),
  args: fc.array(
    fc.oneof(fc.constantFrom("other", "H:garivini:1", "exceptions", "", "-"), fc.string({ maxLength: 10 })),
    { maxLength: 9 }
  )
}).map(({ type, args }) => rawPacket("REQ", type, args))
const mutation = fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }))
const hostileBytes = fc.oneof(
  fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
  fc.tuple(fc.array(requestArb, { minLength: 1, maxLength: 10 }), fc.array(mutation, { maxLength: 3 })).map(
    ([packets, flips]) => {
      const out = Buffer.concat(packets)
      for (const [at, value] of flips) out[at % out.length] = value
      return out
    }
  )
)
const adminWords = fc.constantFrom(
  "status",
  "workers",
  "prioritystatus",
  "show jobs",
  "show unique jobs",
  "version",
  "getpid",
  "verbose",
  "maxqueue",
  "maxqueue other 1",
  "cancel job H:x:1",
  "create function other",
  "drop function other",
  "cancel",
  "show",
  "drop function",
  "\t",
  "\r",
  "%00"
)
const adminLines = fc.array(fc.oneof(adminWords, fc.string({ maxLength: 30 }).map((s) => s.replace(/\n/g, " "))), {
  minLength: 1,
  maxLength: 10
})
  .map((lines) => Buffer.from(lines.map((l) => (l.startsWith("\0") ? "x" + l : l) + "\n").join(""), "utf8"))
const sizes = fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 6 })

describe("fuzz: the embedded job server under hostile connections", () => {
  it.scopedLive("a hostile connection never stops a well-behaved client and worker on others", () =>
    Effect.gen(function*() {
      const server = yield* serve({ port: 0, maxFrame: 64 * 1024 })
      const gearman = yield* live([server.address], { heartbeat: "5 seconds" })
      yield* gearman.serve({ [FN]: (job) => Effect.succeed(job.payload) }, { concurrency: 4 })
      const baseline = (yield* gearman.admin.workers(server.address)).length
      const run = Runtime.runPromise(yield* Effect.runtime<never>())
      let round = 0

      yield* Effect.promise(() =>
        checkAsync(
          60,
          fc.asyncProperty(fc.oneof(hostileBytes, adminLines), sizes, async (bytes, split) => {
            const peer = await rawPeer(server.port)
            const tag = `r${round++}`
            // Good jobs in flight while the hostile bytes arrive.
            const good = run(
              Effect.forEach([1, 2, 3], (i) => gearman.submit(FN, `${tag}-${i}`), { concurrency: "unbounded" })
            )
            await writeChunks(peer.socket, chunked(bytes, split))
            const results = await good
            assert.deepStrictEqual(results.map((r) => r.data.toString()), [`${tag}-1`, `${tag}-2`, `${tag}-3`])
            if (bytes[0] !== 0 && !peer.closed()) {
              // Admin lines: each gets an answer, and the connection still serves the next command.
              // (after a line break: the bytes may have left a line unfinished)
              peer.socket.write("\nversion\n")
              await run(
                eventually(
                  Effect.sync(() => peer.closed() || peer.received().includes("OK garivini-memory")),
                  "the version answer"
                )
              )
            }
            peer.socket.destroy()
          })
        )
      )

      // Every hostile peer is gone from the server; its own queue holds nothing of ours.
      yield* eventually(
        Effect.map(gearman.admin.workers(server.address), (w) => w.length === baseline),
        "hostile sessions to be dropped"
      )
      const depths = yield* gearman.queueDepths()
      assert.strictEqual(depths.get(FN)?.total ?? 0, 0)
      const echoed = yield* gearman.submit(FN, "after the storm")
      assert.strictEqual(echoed.data.toString(), "after the storm")
    }).pipe(Effect.provide(quiet)))
})
