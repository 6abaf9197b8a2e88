// A dispatcher's held leases against MariaDB and a real gearmand (docs/job-life.md): the
// Injector's jobs waiting in gearmand for a Controller keep their lease while its connection
// holds, and are due at once when gearmand dies.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import { Gearman } from "../../src/gearman/Gearman.js"
import * as Injector from "../../src/roles/Injector.js"
import { Storage } from "../../src/storage/Storage.js"
import { eventually, gearmand } from "../gearman/gearmand.js"
import { env } from "../support/e2e.js"
import { testShards } from "../support/mysql.js"

const nowSeconds = () => Math.floor(Date.now() / 1000)

describe("the Injector holds the leases of the jobs it handed to gearmand", () => {
  it.scopedLive(
    "no Controller: the jobs wait in gearmand past their 3 s lease, still leased; gearmand killed, they are due at once",
    () =>
      Effect.gen(function*() {
        const [shard] = yield* testShards(1)
        const gd = yield* gearmand
        yield* Effect.gen(function*() {
          yield* Injector.serve({ lease: "3 seconds", queueWatermarkDepth: 0 })
          const gearman = yield* Gearman
          const storage = yield* Storage
          const handles = yield* Effect.forEach(Array.from({ length: 5 }, (_, i) => i), (i) =>
            Effect.map(
              gearman.submit(Injector.INJECT_FUNCTION, JSON.stringify({ funcname: "waits", arg: `${i}` })),
              (r) => JSON.parse(r.data.toString()) as { readonly dbid: number; readonly jobid: number }
            ))
          const rows = Effect.forEach(handles, (h) => Effect.map(storage.get(h), Option.getOrThrow))
          const firstLease = Math.max(...(yield* rows).map((r) => r.runAfter))
          // Past the lease the Injector wrote: extended meanwhile (every second), never due.
          yield* eventually(Effect.sync(() => nowSeconds() > firstLease + 1), "the first lease to pass", 10_000)
          for (const row of yield* rows) assert.isAbove(row.runAfter, nowSeconds(), "still leased: extended")
          yield* gd.kill
          yield* eventually(
            Effect.map(rows, (rs) => rs.every((r) => r.runAfter <= nowSeconds() && r.leasedUntil === null)),
            "the jobs to be freed, due now",
            10_000
          )
        }).pipe(Effect.scoped, Effect.provide(env([shard!], [gd.server])))
      }),
    60_000
  )
})
