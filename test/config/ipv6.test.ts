// A role reaches a gearmand that listens on ::1 only, through `--gearmand [::1]:PORT`: the
// address goes through the settings' parser and the connection's, brackets and all.
import { spawn } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import * as Net from "node:net"
import { tmpdir } from "node:os"
import * as Path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Option, Schedule } from "effect"
import { resolve } from "../../src/cli/config.js"
import * as Gearman from "../../src/gearman/Gearman.js"
import { exited } from "../../src/testing/gearmandProcess.js"
import * as Client from "../../src/roles/Client.js"
import * as QueueRunner from "../../src/roles/QueueRunner.js"
import * as Worker from "../../src/roles/Worker.js"
import * as StorageLayers from "../../src/storage/Storage.js"
import { eventually } from "../gearman/gearmand.js"
import { recorder } from "../support/e2e.js"

/** A port on ::1 that was free a moment ago (fails when this machine has no IPv6 loopback). */
const freePortV6 = Effect.async<number, Error>((resume) => {
  const probe = Net.createServer()
  probe.once("error", (e) => resume(Effect.fail(new Error(`no IPv6 loopback (::1) here: ${e.message}`))))
  probe.listen(0, "::1", () => {
    const address = probe.address()
    const port = typeof address === "object" && address !== null ? address.port : 0
    probe.close(() => resume(Effect.succeed(port)))
  })
})

const connects = (host: string, port: number) =>
  Effect.async<boolean>((resume) => {
    const socket = Net.connect({ host, port }, () => {
      socket.destroy()
      resume(Effect.succeed(true))
    })
    socket.once("error", () => {
      socket.destroy()
      resume(Effect.succeed(false))
    })
  })

/** gearmand on [::1]:port only, killed when the scope closes. */
const gearmandOnV6 = Effect.gen(function*() {
  const port = yield* freePortV6
  const dir = mkdtempSync(Path.join(tmpdir(), "garivini-gearmand-v6-"))
  yield* Effect.acquireRelease(
    Effect.sync(() =>
      spawn(
        "gearmand",
        ["--listen=::1", `--port=${port}`, "--log-file=none", "--threads=1", `--pid-file=${Path.join(dir, "pid")}`],
        { stdio: "ignore" }
      )
    ),
    (child) =>
      Effect.zipRight(Effect.sync(() => child.kill("SIGKILL")), exited(child)).pipe(
        Effect.ensuring(Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
      )
  )
  yield* connects("::1", port).pipe(
    Effect.filterOrFail((up) => up, () => new Error(`gearmand did not come up on [::1]:${port}`)),
    Effect.retry(Schedule.spaced("20 millis").pipe(Schedule.intersect(Schedule.recurs(250))))
  )
  return port
})

describe("IPv6 job servers", () => {
  it.scopedLive(
    "a QueueRunner dispatches to gearmand on [::1]:PORT and a worker there runs the jobs",
    () =>
      Effect.gen(function*() {
        const port = yield* Effect.orDie(gearmandOnV6)
        assert.isFalse(yield* connects("127.0.0.1", port), "gearmand must be reachable over ::1 only")
        const settings = yield* resolve({
          config: Option.none(),
          db: [],
          gearmand: [`[::1]:${port}`],
          logFormat: Option.none()
        })
        assert.deepStrictEqual(settings.gearmand, [`[::1]:${port}`])

        yield* Effect.scoped(Effect.gen(function*() {
          const { record, runs } = yield* recorder
          yield* Client.insertJobs(Array.from({ length: 3 }, (_, i) => ({ funcname: "v6echo", arg: `job ${i}` })))
          yield* Worker.serve({ v6echo: record }, { concurrency: 2 })
          const runner = yield* QueueRunner.make({ queueWatermarkDepth: 0 })
          const round = (yield* runner.round).shards[0]!
          assert.deepStrictEqual([round.claimed, round.dispatched, round.failed], [3, 3, 0], round.error)
          yield* eventually(Effect.map(runs, (r) => r.size === 3), "the 3 jobs to run over ::1")
        })).pipe(
          Effect.provide(
            Layer.mergeAll(StorageLayers.layerMemory({ shards: [1] }), Gearman.layer({ servers: settings.gearmand }))
          )
        )
      }),
    60_000
  )
})
