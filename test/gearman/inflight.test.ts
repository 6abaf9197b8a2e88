// A job this worker process is already running must not run a second time when the job server
// hands it back: after the worker's connection is cut (gearmand re-queues the job with its
// handle), or, for a stored job, when it is dispatched again under another handle.
// The chaos soak saw both (docs/reliability.md, "A job server's connections cut, or refused").
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Layer, Metric, Option, Schedule } from "effect"
import * as Gearman from "../../src/gearman/Gearman.js"
import { jobsJoined } from "../../src/gearman/metrics.js"
import { encodeWorkerJson } from "../../src/Job.js"
import * as Client from "../../src/roles/Client.js"
import * as Worker from "../../src/roles/Worker.js"
import * as StorageLayers from "../../src/storage/Storage.js"
import { Storage } from "../../src/storage/Storage.js"
import { makeProxy } from "../support/proxy.js"
import { remaining } from "../support/jobs.js"
import { eventually, gearmand, live } from "./gearmand.js"

const fast = {
  reconnect: Schedule.exponential("20 millis").pipe(Schedule.jittered, Schedule.union(Schedule.spaced("200 millis")))
}

const joined = (to: "running" | "finished") =>
  Effect.map(Metric.value(Metric.tagged(jobsJoined, "to", to)), (s) => s.count)

/** gearmand holds no job of `fn`, queued or running. */
const drained = (gearman: Gearman.GearmanService, server: string, fn: string) =>
  eventually(
    Effect.map(gearman.admin.status(server), (rows) => rows.every((r) => r.name !== fn || r.total === 0)),
    `gearmand to hold no ${fn} job`
  )

describe("a job handed back while (or after) this process ran it", () => {
  // With one slot the reconnected worker grabs only once the run ended, whose answer went to the
  // dead connection: it is kept and answers the job handed back. With two it grabs at once and
  // gets the job while it still runs: the delivery joins the run.
  for (const [concurrency, to] of [[1, "finished"], [2, "running"]] as const) {
    for (const mode of ["foreground", "background"] as const) {
      it.scopedLive(
        `concurrency ${concurrency}, ${mode}: the worker's connection is cut mid-run; the handler starts once and the job ends with its answer`,
        () =>
          Effect.gen(function*() {
            const g = yield* gearmand
            const proxy = yield* makeProxy({ host: "127.0.0.1", port: g.port })
            const client = yield* live([g.server])
            const worker = yield* live([`127.0.0.1:${proxy.port}`], fast)
            const fn = `slow_${concurrency}_${mode}`
            let starts = 0
            let ends = 0
            yield* worker.serve({
              [fn]: (job) =>
                Effect.sync(() => void starts++).pipe(
                  Effect.zipRight(Effect.sleep("1500 millis")),
                  Effect.zipRight(Effect.sync(() => void ends++)),
                  Effect.as(`done ${job.text()}`)
                )
            }, { concurrency })
            const joinedBefore = yield* joined(to)

            const submitted = yield* (mode === "foreground"
              ? Effect.map(client.submit(fn, "x", { timeout: "20 seconds" }), (r) => Option.some(r.data.toString()))
              : Effect.as(client.submitBackground(fn, "x"), Option.none())).pipe(Effect.fork)
            yield* eventually(Effect.sync(() => starts === 1), "the run to start")
            yield* proxy.cutAll
            yield* eventually(Effect.map(joined(to), (n) => n === joinedBefore + 1), `a delivery joined (${to})`)

            const result = yield* Fiber.join(submitted)
            if (mode === "foreground") assert.deepStrictEqual(result, Option.some("done x"))
            yield* drained(client, g.server, fn)
            assert.strictEqual(ends, 1, "the run finished")
            assert.strictEqual(starts, 1, "the handler started once")
          }),
        60_000
      )
    }
  }

  it.scopedLive(
    "a stored job dispatched again under another handle while it runs joins the run: one start, one completion, both Gearman jobs answered",
    () =>
      Effect.gen(function*() {
        const g = yield* gearmand
        yield* Effect.scoped(Effect.gen(function*() {
          const storage = yield* Storage
          const gearman = yield* Gearman.Gearman
          let starts = 0
          yield* Worker.serve({
            slow_stored: (job) =>
              Effect.sync(() => void starts++).pipe(
                Effect.zipRight(Effect.sleep("1 second")),
                Effect.as(`done ${job.text}`)
              )
          }, { concurrency: 2 })
          const [stored] = yield* Client.insertJobs([{ funcname: "slow_stored", arg: "s" }])
          const row = Option.getOrThrow(yield* storage.get(stored!.handle))
          const json = encodeWorkerJson(row)
          const joinedBefore = yield* joined("running")

          // As the QueueRunner dispatches (background), then again as a Controller would (foreground).
          yield* gearman.submitBackground("slow_stored", json)
          yield* eventually(Effect.sync(() => starts === 1), "the run to start")
          const again = yield* gearman.submit("slow_stored", json, { timeout: "20 seconds" })

          assert.strictEqual(again.data.toString(), "done s", "the second delivery got the run's answer")
          assert.strictEqual(yield* joined("running"), joinedBefore + 1)
          yield* drained(gearman, g.server, "slow_stored")
          yield* eventually(Effect.map(remaining, (n) => n === 0), "the row to be completed")
          assert.strictEqual(starts, 1, "the handler started once")
        })).pipe(
          Effect.provide(
            Layer.mergeAll(StorageLayers.layerMemory({ shards: [1] }), Gearman.layer({ servers: [g.server] }))
          )
        )
      }),
    60_000
  )
})
