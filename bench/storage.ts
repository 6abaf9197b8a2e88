// `npm run bench:storage [-- --only mysql|sqlite]`: Storage throughput against the local MariaDB
// (a scratch database, dropped afterwards) and a SQLite file (in a temporary directory, deleted
// afterwards). Prints jobs/s per scenario; not a test, no thresholds.
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect, Layer } from "effect"
import * as Mysql from "mysql2/promise"
import type { NewJob } from "../src/Job.js"
import * as MysqlShard from "../src/storage/sql/mysql.js"
import type { MysqlShardOptions } from "../src/storage/sql/mysql.js"
import { migrate } from "../src/storage/migrate.js"
import { layerSqlite, make, Storage } from "../src/storage/Storage.js"
import type { StorageShape } from "../src/storage/Storage.js"
import { runBench, scratchShard } from "./support.js"

const shard = scratchShard("storage")

const time = <A, E>(label: string, jobs: number, effect: Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    const start = performance.now()
    yield* effect
    const seconds = (performance.now() - start) / 1000
    console.log(
      `${label.padEnd(58)} ${String(Math.round(jobs / seconds)).padStart(8)} jobs/s  (${jobs} in ${
        seconds.toFixed(2)
      } s)`
    )
  })

const jobs = (n: number, prefix: string): ReadonlyArray<NewJob> =>
  Array.from(
    { length: n },
    (_, i) => ({ funcname: "bench", arg: `${prefix} payload ${i} ${"x".repeat(64)}`, runAfter: 0 })
  )

const truncate = Effect.promise(async () => {
  const conn = await Mysql.createConnection({
    host: shard.host,
    port: shard.port,
    user: shard.user,
    database: shard.database
  })
  await conn.query("TRUNCATE job")
  await conn.end()
})

const scenarios = (storage: StorageShape, mode: string) =>
  Effect.gen(function*() {
    yield* time(
      `[${mode}] insert, 1 job per call, sequential`,
      2000,
      Effect.forEach(jobs(2000, "s"), (j) => storage.insert([j]), { discard: true })
    )
    yield* time(
      `[${mode}] insert, 1 job per call, 16 concurrent`,
      8000,
      Effect.forEach(jobs(8000, "c"), (j) => storage.insert([j]), { concurrency: 16, discard: true })
    )
    yield* time(
      `[${mode}] insert, 1 job per call, 64 concurrent`,
      8000,
      Effect.forEach(jobs(8000, "c64"), (j) => storage.insert([j]), { concurrency: 64, discard: true })
    )
    const batches = Array.from({ length: 50 }, (_, b) => jobs(1000, `b${b}`))
    yield* time(
      `[${mode}] insert, 1000 jobs per call`,
      50_000,
      Effect.forEach(batches, (b) => storage.insert(b), { discard: true })
    )
    yield* time(
      `[${mode}] insert with uniqkey, 1000 per call`,
      20_000,
      Effect.forEach(
        Array.from({ length: 20 }, (_, b) => jobs(1000, `u${b}`).map((j, i) => ({ ...j, uniqkey: `k-${b}-${i}` }))),
        (b) => storage.insert(b),
        { discard: true }
      )
    )
    const stored = 2000 + 8000 + 8000 + 50_000 + 20_000
    // Completions one at a time (a worker at a low rate) with every job above still stored.
    const lone = yield* storage.claimDue(1, 300, "1000 seconds")
    yield* time(
      `[${mode}] complete 1 job per call, ${lone.length} of ${stored.toLocaleString("en-US")} stored`,
      lone.length,
      Effect.forEach(lone, (job) => storage.complete([job]), { discard: true })
    )
    const total = stored - lone.length
    yield* time(
      `[${mode}] claim 1000 + complete them, until empty`,
      total,
      Effect.gen(function*() {
        for (;;) {
          const claimed = yield* storage.claimDue(1, 1000, "1000 seconds")
          if (claimed.length === 0) return
          yield* storage.complete(claimed)
        }
      })
    )
  })

const only = process.argv.includes("--only") ? process.argv[process.argv.indexOf("--only") + 1] : undefined

const mysql = Effect.gen(function*() {
  console.log(`Storage benchmark: MariaDB at ${shard.host}:${shard.port}, node ${process.version}`)
  yield* migrate([shard])
  for (const [mode, options] of [["RETURNING", {}], ["statements", { insertMode: "statements" }]] as const) {
    yield* truncate
    yield* Effect.scoped(Effect.gen(function*() {
      const backend = yield* MysqlShard.make(shard, options satisfies MysqlShardOptions)
      yield* scenarios(yield* make([backend]), mode)
    }))
  }
})

/** One SQLite file, as `garivini up` uses it: WAL, synchronous NORMAL (or FULL), inserts coalesced. */
const sqlite = Effect.gen(function*() {
  const dir = yield* Effect.acquireRelease(
    Effect.sync(() => mkdtempSync(join(tmpdir(), "garivini-bench-"))),
    (d) => Effect.sync(() => rmSync(d, { recursive: true, force: true }))
  )
  console.log(`Storage benchmark: SQLite in ${dir}, node ${process.version}`)
  for (const synchronous of ["normal", "full"] as const) {
    yield* Effect.scoped(Effect.gen(function*() {
      const context = yield* Layer.build(layerSqlite({ filename: join(dir, `${synchronous}.db`), synchronous }))
      yield* scenarios(yield* Effect.provide(Storage, context), `SQLite ${synchronous}`)
    }))
  }
}).pipe(Effect.scoped)

const program = Effect.gen(function*() {
  if (only !== "sqlite") yield* mysql
  if (only !== "mysql") yield* sqlite
})

runBench(shard, program)
