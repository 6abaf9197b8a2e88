// Faults: servers dying and coming back, connections lost mid-job, peers speaking garbage.
import * as Net from "node:net"
import { assert, describe, it } from "@effect/vitest"
import { Context, Deferred, Effect, Fiber, Layer, Metric, Schedule } from "effect"
import { serverIndexForUnique } from "../../src/gearman/GearmanClient.js"
import { Gearman, layerMemory, makeMemoryServers } from "../../src/gearman/Gearman.js"
import { JobServer } from "../../src/jobserver/JobServer.js"
import { connectionsLost } from "../../src/gearman/metrics.js"
import { embeddedJobServer } from "./embedded.js"
import { eventually, gearmand, live } from "./gearmand.js"

// Reconnect quickly in tests; the default schedule is the same shape, just slower.
const fast = {
  reconnect: Schedule.exponential("20 millis").pipe(Schedule.jittered, Schedule.union(Schedule.spaced("200 millis")))
}

describe("faults", () => {
  for (
    const [name, start] of [["gearmand", gearmand], ["the embedded server over TCP", embeddedJobServer()]] as const
  ) {
    it.scopedLive(`${name}: a job over the worker's packet limit fails once to its client; the worker keeps its connection and runs the next job`, () =>
      Effect.gen(function*() {
        const { server } = yield* start
        const client = yield* live([server])
        // The worker takes packets up to 64 KiB; the job servers take more.
        const worker = yield* live([server], { maxFrame: 64 * 1024 })
        let ran = 0
        yield* worker.serve({ limited: (job) => Effect.sync(() => void ran++).pipe(Effect.as(job.payload)) })
        const lostBefore = (yield* Metric.value(connectionsLost)).count
        // Before: the worker dropped its connection, the job server handed the job to it again
        // on reconnect, and so on forever; the client never heard back.
        const big = yield* Effect.flip(
          client.submit("limited", Buffer.alloc(200 * 1024, 0x61), { timeout: "20 seconds" })
        )
        assert.strictEqual(big._tag, "GearmanJobFailed")
        assert.strictEqual(ran, 0, "the oversized job never reached the handler")
        const small = yield* client.submit("limited", "small")
        assert.strictEqual(small.data.toString(), "small")
        assert.strictEqual((yield* Metric.value(connectionsLost)).count, lostBefore, "no connection was lost")
      }))
  }

  it.scopedLive("two servers, one killed mid-stream: no job submitted after the kill is noticed is lost; it is picked up again after a restart", () =>
    Effect.gen(function*() {
      const a = yield* gearmand
      const b = yield* gearmand
      const gearman = yield* live([a.server, b.server], fast)
      const fn = "fault_stream"
      const processed = new Set<string>()
      yield* gearman.serve({ [fn]: (job) => Effect.sync(() => void processed.add(job.text())) }, { concurrency: 4 })

      interface Submitted {
        readonly payload: string
        readonly server: string | undefined
        readonly afterNotice: boolean
      }
      const submitted: Array<Submitted> = []
      let noticed = false
      let stop = false
      const submitter = yield* Effect.gen(function*() {
        for (let i = 0; !stop; i++) {
          const afterNotice = noticed
          const payload = `job-${i}`
          const result = yield* Effect.either(gearman.submitBackground(fn, payload))
          submitted.push({ payload, server: result._tag === "Right" ? result.right.server : undefined, afterNotice })
        }
      }).pipe(Effect.fork)

      yield* eventually(Effect.sync(() => submitted.length >= 300), "300 submissions before the kill")
      yield* a.kill
      yield* eventually(Effect.sync(() => !gearman.upServers().includes(a.server)), "the kill to be noticed")
      noticed = true
      const atNotice = submitted.length
      yield* eventually(Effect.sync(() => submitted.length >= atNotice + 300), "300 submissions after the kill")
      stop = true
      yield* Fiber.join(submitter)

      // The client carried on: nothing failed, and after the notice everything went to b.
      assert.deepStrictEqual(submitted.filter((s) => s.server === undefined), [])
      const after = submitted.filter((s) => s.afterNotice)
      assert.isAtLeast(after.length, 300)
      assert.isTrue(after.every((s) => s.server === b.server))
      // Every job b accepted ran (jobs a accepted before dying died with it: gearmand is memory-only).
      const onB = submitted.filter((s) => s.server === b.server)
      yield* eventually(Effect.sync(() => onB.every((s) => processed.has(s.payload))), "b's jobs to run")

      // Restarted: client and worker reconnect, the worker re-registers, jobs flow through a again.
      yield* a.restart
      yield* eventually(Effect.sync(() => gearman.upServers().includes(a.server)), "the client to reconnect")
      let unique = 0
      while (serverIndexForUnique(`u${unique}`, 2) !== 0) unique++
      const handle = yield* gearman.submitBackground(fn, "back on a", { unique: `u${unique}` })
      assert.strictEqual(handle.server, a.server)
      yield* eventually(Effect.sync(() => processed.has("back on a")), "a job on the restarted server to run")
      let other = unique + 1
      while (serverIndexForUnique(`u${other}`, 2) !== 0) other++
      const fg = yield* gearman.submit(fn, "foreground on a", { unique: `u${other}` })
      assert.strictEqual(fg.handle.server, a.server)
    }))

  it.scopedLive("a foreground job in flight when its server dies fails with a typed connection error", () =>
    Effect.gen(function*() {
      const server = yield* gearmand
      const gearman = yield* live([server.server], fast)
      const started = yield* Deferred.make<void>()
      yield* gearman.serve({ hang: () => Deferred.succeed(started, undefined).pipe(Effect.zipRight(Effect.never)) }, {
        shutdownTimeout: 0
      })
      const fiber = yield* gearman.submit("hang", "x").pipe(Effect.fork)
      yield* Deferred.await(started)
      yield* server.kill
      const error = yield* Effect.flip(Fiber.join(fiber))
      assert.strictEqual(error._tag, "GearmanConnectionError")
      // With every server down, a submit fails at once with a typed error instead of hanging.
      yield* eventually(Effect.sync(() => gearman.upServers().length === 0), "the server to be marked down")
      const none = yield* Effect.flip(gearman.submitBackground("hang", "y"))
      assert.strictEqual(none._tag, "GearmanNoServerAvailable")
    }))

  it.scopedLive("a server speaking garbage loses only its own connection; jobs move to the healthy one", () =>
    Effect.gen(function*() {
      const garbage = yield* Effect.acquireRelease(
        Effect.async<Net.Server>((resume) => {
          const srv = Net.createServer((socket) => {
            socket.on("data", () => socket.write("HTTP/1.1 400 Bad Request\r\n\r\n"))
            socket.on("error", () => undefined)
          })
          srv.listen(0, "127.0.0.1", () => resume(Effect.succeed(srv)))
        }),
        (srv) => Effect.async<void>((resume) => void srv.close(() => resume(Effect.void)))
      )
      const address = garbage.address()
      const garbageServer = `127.0.0.1:${typeof address === "object" && address !== null ? address.port : 0}`
      const good = yield* gearmand
      const gearman = yield* live([garbageServer, good.server], fast)
      const handles = yield* Effect.forEach(
        Array.from({ length: 50 }, (_, i) => i),
        (i) => gearman.submitBackground("survive", `p${i}`),
        {
          concurrency: 4
        }
      )
      assert.isTrue(handles.every((h) => h.server === good.server))
      assert.strictEqual((yield* gearman.queueDepths()).get("survive")?.total, 50)
    }))

  it.scopedLive("a server that accepts but never answers is dropped by the heartbeat; requests move on", () =>
    Effect.gen(function*() {
      const blackHole = yield* Effect.acquireRelease(
        Effect.async<Net.Server>((resume) => {
          // Reads and drops everything, answers nothing.
          const srv = Net.createServer((socket) => void socket.on("error", () => undefined).resume())
          srv.listen(0, "127.0.0.1", () => resume(Effect.succeed(srv)))
        }),
        (srv) => Effect.async<void>((resume) => void srv.close(() => resume(Effect.void)))
      )
      const address = blackHole.address()
      const silent = `127.0.0.1:${typeof address === "object" && address !== null ? address.port : 0}`
      const good = yield* gearmand
      const gearman = yield* live([silent, good.server], { ...fast, heartbeat: "300 millis" })
      yield* gearman.serve({ echo: (job) => Effect.succeed(job.payload) }, { concurrency: 2 })
      const results = yield* Effect.forEach(
        Array.from({ length: 20 }, (_, i) => `m${i}`),
        (p) => gearman.submit("echo", p),
        { concurrency: 20 }
      )
      assert.deepStrictEqual(results.map((r) => r.data.toString()), Array.from({ length: 20 }, (_, i) => `m${i}`))
      assert.isTrue(results.every((r) => r.handle.server === good.server))
    }))

  it.scopedLive("a unique id picks the same server every time, so coalescing works across servers", () =>
    Effect.gen(function*() {
      const a = yield* gearmand
      const b = yield* gearmand
      const gearman = yield* live([a.server, b.server])
      for (const unique of ["alpha", "beta", "gamma", "delta"]) {
        const first = yield* gearman.submitBackground("coalesce", "x", { unique })
        const second = yield* gearman.submitBackground("coalesce", "y", { unique })
        assert.deepStrictEqual(first, second)
        assert.strictEqual(first.server, [a.server, b.server][serverIndexForUnique(unique, 2)])
      }
      // "-" coalesces by payload: the payload picks the server.
      for (const payload of ["p1", "p2", "p3", "p4"]) {
        const first = yield* gearman.submitBackground("coalesce", payload, { unique: "-" })
        assert.deepStrictEqual(yield* gearman.submitBackground("coalesce", payload, { unique: "-" }), first)
      }
      // Jobs without a unique are spread over both servers.
      const spread = yield* Effect.forEach(
        Array.from({ length: 10 }, (_, i) => i),
        (i) => gearman.submitBackground("spread", `${i}`)
      )
      assert.strictEqual(new Set(spread.map((h) => h.server)).size, 2)
    }))

  it.scopedLive("in memory too: a job server shut down is routed around, and picked up again when it is back", () =>
    Effect.gen(function*() {
      const servers = makeMemoryServers(["m1", "m2"])
      const gearman = Context.get(yield* Layer.build(layerMemory({ ...fast, servers })), Gearman)
      const processed = new Set<string>()
      yield* gearman.serve({ f: (job) => Effect.sync(() => void processed.add(job.text())) })
      servers.get("m1")!.shutdown()
      servers.delete("m1")
      yield* eventually(Effect.sync(() => !gearman.upServers().includes("m1")), "m1 to be marked down")
      const handles = yield* Effect.forEach(
        Array.from({ length: 20 }, (_, i) => `a${i}`),
        (p) => gearman.submitBackground("f", p)
      )
      assert.isTrue(handles.every((h) => h.server === "m2"))
      servers.set("m1", new JobServer({ handlePrefix: "H:m1" }))
      yield* eventually(Effect.sync(() => gearman.upServers().includes("m1")), "m1 to be back")
      const spread = yield* Effect.forEach(
        Array.from({ length: 20 }, (_, i) => `b${i}`),
        (p) => gearman.submitBackground("f", p)
      )
      assert.isTrue(spread.some((h) => h.server === "m1"))
      yield* eventually(
        Effect.sync(() => processed.size === 40),
        "every job to run, m1's through the re-registered worker"
      )
    }))
})
