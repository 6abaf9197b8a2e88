// Dispatch against real job servers (the embedded server over TCP, gearmand): jobs that can never
// be delivered are parked, not re-sent; a Controller's lost connection leaves its job leased.
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Layer, Logger, Metric, Option } from "effect"
import type { Scope } from "effect"
import * as Gearman from "../../src/gearman/Gearman.js"
import { encodeWorkerJson, jobState, NEVER } from "../../src/Job.js"
import * as Client from "../../src/roles/Client.js"
import * as Controller from "../../src/roles/Controller.js"
import { jobsParked } from "../../src/roles/metrics.js"
import * as QueueRunner from "../../src/roles/QueueRunner.js"
import * as Worker from "../../src/roles/Worker.js"
import { Storage } from "../../src/storage/Storage.js"
import * as StorageLayers from "../../src/storage/Storage.js"
import { embeddedJobServer } from "../gearman/embedded.js"
import { eventually, gearmand } from "../gearman/gearmand.js"
import { recorder } from "../support/e2e.js"
import { makeProxy } from "../support/proxy.js"
import { rolesLayer } from "../../src/cli/roles.js"
import type { Settings } from "../../src/cli/config.js"

/** The packet limit the runner is told (the embedded server's too): small, so that a test job can pass it. */
const MAX_PACKET = 1024 * 1024

const servers: ReadonlyArray<readonly [string, Effect.Effect<{ readonly server: string }, never, Scope.Scope>]> = [
  ["the embedded server over TCP", embeddedJobServer({ maxFrame: MAX_PACKET })],
  ["gearmand", gearmand]
]

const parkedCount = Effect.map(Metric.value(Metric.tagged(jobsParked, "reason", "packet-too-large")), (s) => s.count)

describe("dispatch", () => {
  for (const [name, start] of servers) {
    it.scopedLive(
      `${name}: a job whose packet is over the limit is parked (never sent); the others run once`,
      () =>
        Effect.gen(function*() {
          const { server } = yield* start
          yield* Effect.scoped(Effect.gen(function*() {
            const storage = yield* Storage
            const { record, runs } = yield* recorder
            // Stored fine (inserts check against the 64 MiB default), but 200 KiB of zero bytes is
            // `\u0000` each in the worker JSON: ~1.2 MiB, over the limit the runner is given. A row
            // another client stored past the default limit takes the same path.
            const [big] = yield* Client.insertJobs([{ funcname: "echo", arg: new Uint8Array(200 * 1024) }])
            yield* Client.insertJobs(Array.from({ length: 20 }, (_, i) => ({ funcname: "echo", arg: `small ${i}` })))
            yield* Worker.serve({ echo: record }, { concurrency: 4 })
            const before = yield* parkedCount
            const runner = yield* QueueRunner.make({ queueWatermarkDepth: 0, maxPacket: MAX_PACKET })
            const round = (yield* runner.round).shards[0]!
            assert.deepStrictEqual({
              claimed: round.claimed,
              dispatched: round.dispatched,
              failed: round.failed,
              parked: round.parked
            }, {
              claimed: 21,
              dispatched: 20,
              failed: 0,
              parked: 1
            })
            yield* eventually(Effect.map(runs, (r) => r.size === 20), "the 20 small jobs to run")
            const row = Option.getOrThrow(yield* storage.get(big!.handle))
            assert.strictEqual(row.runAfter, NEVER, "parked: run_after = never")
            // Its reason is its last error (jobs show prints it), for the attempt it was on.
            assert.match(row.lastError ?? "", /^parked \(packet-too-large\): its packet would be \d+ bytes/)
            assert.deepStrictEqual([row.lastErrorAttempt, jobState(row, Math.floor(Date.now() / 1000))], [1, "never"])
            assert.strictEqual(yield* parkedCount, before + 1)
            // Never re-sent: nothing is due any more.
            assert.strictEqual((yield* runner.round).shards[0]!.claimed, 0)
            assert.isTrue([...(yield* runs).values()].every((n) => n === 1), "no job ran twice")
            assert.isFalse((yield* runs).has(`${big!.handle.dbid}:${big!.handle.jobid}`))
          })).pipe(
            Effect.provide(
              Layer.mergeAll(StorageLayers.layerMemory({ shards: [1] }), Gearman.layer({ servers: [server] }))
            )
          )
        }),
      120_000
    )
  }

  it.scopedLive(
    "a Controller whose connection drops while its job runs leaves the row leased (no failure recorded)",
    () =>
      Effect.gen(function*() {
        const { port } = yield* embeddedJobServer()
        const proxy = yield* makeProxy({ host: "127.0.0.1", port })
        const lines: Array<string> = []
        const capture = Logger.add(Logger.make(({ message }) => {
          lines.push(Array.isArray(message) ? message.join(" ") : String(message))
        }))
        const storageLayer = StorageLayers.layerMemory({ shards: [1] })
        yield* Effect.scoped(Effect.gen(function*() {
          const storage = yield* Storage
          const started = yield* Deferred.make<void>()
          const release = yield* Deferred.make<void>()
          yield* Worker.serve({
            slow: () => Effect.zipRight(Deferred.succeed(started, undefined), Deferred.await(release))
          })
          // Only the Controller goes through the proxy.
          const controllerGearman = yield* Layer.build(Gearman.layer({ servers: [`127.0.0.1:${proxy.port}`] }))
          yield* Controller.serve().pipe(Effect.provide(controllerGearman))
          // Stored as the Injector stores it: leased to the Controller.
          const [stored] = yield* Client.insertJobs([{
            funcname: "slow",
            arg: "x",
            flag: "controller",
            runAt: "+1000"
          }])
          const leased = Option.getOrThrow(yield* storage.get(stored!.handle))
          const gearman = yield* Gearman.Gearman
          yield* gearman.submitBackground(QueueRunner.CONTROLLER_FUNCTION, encodeWorkerJson(leased))
          yield* Deferred.await(started)
          yield* proxy.cutAll
          // Either the Controller says it leaves the job leased, or (the defect) it records a failure.
          const id = `${leased.dbid}:${leased.jobid}`
          yield* eventually(
            Effect.map(storage.get(stored!.handle), (row) =>
              lines.some((l) =>
                l.includes(id) && l.includes("stays leased")
              ) || Option.getOrThrow(row).failcount > 0),
            "the Controller to handle the lost connection"
          )
          yield* Deferred.succeed(release, undefined)
          const row = Option.getOrThrow(yield* storage.get(stored!.handle))
          assert.strictEqual(row.failcount, 0, "no failure recorded")
          assert.strictEqual(row.runAfter, leased.runAfter, "still leased")
        })).pipe(
          Effect.provide(Layer.mergeAll(storageLayer, Gearman.layer({ servers: [`127.0.0.1:${port}`] }))),
          Effect.provide(capture)
        )
      }),
    60_000
  )

  it.scopedLive(
    "in `garivini run` / `up` each role has its own connection: the QueueRunner's cut does not fail the Controller's job",
    () =>
      Effect.gen(function*() {
        // The server takes packets up to 1 MiB, the runner believes 64 MiB: its 2 MiB submit cuts
        // its connection (a stand-in for any failure of one role's connection).
        const { server } = yield* embeddedJobServer({ maxFrame: 1024 * 1024 })
        const lines: Array<string> = []
        const capture = Logger.add(Logger.make(({ message }) => {
          lines.push(Array.isArray(message) ? message.join(" ") : String(message))
        }))
        const settings: Settings = {
          shards: [],
          sqlite: Option.none(),
          dbGiven: true,
          gearmand: [server],
          gearmandGiven: true,
          queueRunner: { batchRunSleep: "50 millis", queueWatermarkDepth: 0 },
          injector: {},
          controller: {},
          logFormat: "logfmt",
          logLevel: Option.none(),
          metricsListen: Option.none(),
          flow: { functions: [], schedules: [] }
        }
        yield* Effect.scoped(Effect.gen(function*() {
          const storage = yield* Storage
          const started = yield* Deferred.make<void>()
          const release = yield* Deferred.make<void>()
          yield* Worker.serve({
            slow: () => Effect.zipRight(Deferred.succeed(started, undefined), Deferred.await(release)),
            big: () => Effect.void
          })
          yield* Layer.build(rolesLayer(["queue-runner", "controller"], settings))
          const [injected] = yield* Client.insertJobs([{ funcname: "slow", arg: "x", flag: "controller" }])
          yield* Deferred.await(started)
          yield* Client.insertJobs([{ funcname: "big", arg: new Uint8Array(2 * 1024 * 1024) }])
          yield* eventually(
            Effect.sync(() => lines.some((l) => l.includes("submit failed"))),
            "the runner's connection to be cut"
          )
          yield* Deferred.succeed(release, undefined)
          // Done and deleted (not failed, not left for the lease).
          yield* eventually(
            Effect.map(storage.get(injected!.handle), (row) =>
              Option.isNone(row) || Option.getOrThrow(row).failcount > 0 || lines.some((l) =>
                l.includes("connection lost while it ran")
              )),
            "the Controller's job to end"
          )
          assert.isTrue(
            Option.isNone(yield* storage.get(injected!.handle)),
            `the Controller's job completed; logs: ${lines.join(" / ")}`
          )
        })).pipe(
          Effect.provide(
            Layer.mergeAll(StorageLayers.layerMemory({ shards: [1] }), Gearman.layer({ servers: [server] }))
          ),
          Effect.provide(capture)
        )
      }),
    60_000
  )
})
