// `npx vite-node bench/storageCpu.ts [ROOT] [LABEL]`: this process's CPU per job of Storage's
// operations against the local MariaDB (a scratch database, dropped afterwards), through the
// built `dist/` of ROOT (default: this checkout). ROOT may be another revision's worktree (as
// bench:compare makes under .scratch/compare/), so that revisions are measured by the same code
// in one sitting, alternately; CPU time is less sensitive to a busy machine than wall time.
import { resolve } from "node:path"
import { pathToFileURL } from "node:url"
import { Effect } from "effect"
import type * as StorageModule from "../src/storage/Storage.js"
import type * as MigrateModule from "../src/storage/migrate.js"
import { runBench, scratchShard } from "./support.js"

const root = resolve(process.argv[2] ?? new URL("..", import.meta.url).pathname)
const label = process.argv[3] ?? root
const load = <M>(path: string): Promise<M> => import(pathToFileURL(`${root}/dist/${path}`).href) as Promise<M>
const S = await load<typeof StorageModule>("storage/Storage.js")
const M = await load<typeof MigrateModule>("storage/migrate.js")

const shard = scratchShard("cpu")
const cpuMicros = () => {
  const u = process.cpuUsage()
  return u.user + u.system
}
const newJobs = (n: number) =>
  Array.from({ length: n }, () => ({ funcname: "f", arg: "x".repeat(80), runAfter: Math.floor(Date.now() / 1000) - 1 }))

const program = Effect.gen(function*() {
  yield* M.migrate([shard])
  const storage = yield* S.Storage
  const figures: Array<string> = []
  const measure = <A, E>(name: string, jobs: number, effect: Effect.Effect<A, E>) =>
    Effect.gen(function*() {
      const before = cpuMicros()
      yield* effect
      figures.push(`${name} ${((cpuMicros() - before) / jobs).toFixed(1)} µs`)
    })
  const n = 20_000
  yield* measure(
    "insert×500",
    n,
    Effect.forEach(Array.from({ length: n / 500 }), () => storage.insert(newJobs(500)), { discard: true })
  )
  const claimed: Array<{ readonly dbid: number; readonly jobid: number }> = []
  yield* measure(
    "claim 1000",
    n,
    Effect.gen(function*() {
      for (;;) {
        const jobs = yield* storage.claimDue(1, 1000, "60 seconds")
        if (jobs.length === 0) return
        claimed.push(...jobs)
      }
    })
  )
  yield* measure(
    "complete×20 c4",
    claimed.length,
    Effect.forEach(
      Array.from({ length: claimed.length / 20 }, (_, i) => claimed.slice(i * 20, i * 20 + 20)),
      (handles) => storage.complete(handles),
      { discard: true, concurrency: 4 }
    )
  )
  yield* measure(
    "insert×1 c8",
    5000,
    Effect.forEach(Array.from({ length: 5000 }), () => storage.insert(newJobs(1)), { discard: true, concurrency: 8 })
  )
  const single = yield* storage.claimDue(1, 10_000, "60 seconds")
  yield* measure(
    "complete×1 c8",
    single.length,
    Effect.forEach(single, (job) => storage.complete([job]), { discard: true, concurrency: 8 })
  )
  console.log(`${label.padEnd(12)} CPU per job: ${figures.join(" | ")}`)
})

await runBench(shard, program.pipe(Effect.provide(S.layer({ shards: [shard] }))))
