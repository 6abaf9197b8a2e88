// `npm run bench:web-list`: the web console's job list over 1,000,000 stored jobs on the local
// MariaDB (a scratch database, dropped afterwards): the first page and a deep keyset page, by id
// and by run_after, with the console's filters. Prints milliseconds per page (the target:
// under 100 ms); not a test, no thresholds.
import { Effect } from "effect"
import * as Mysql from "mysql2/promise"
import { migrate } from "../src/storage/migrate.js"
import { layer as mysqlLayer, Storage } from "../src/storage/Storage.js"
import type { ListFilter } from "../src/storage/Storage.js"
import { runBench, scratchShard } from "./support.js"

const JOBS = 1_000_000
const PAGE = 50
const shard = scratchShard("weblist")

/** 1,000,000 rows in a few statements: 10 functions, a third due, a third scheduled, some never, keyed. */
const seed = Effect.promise(async () => {
  const conn = await Mysql.createConnection({
    host: shard.host,
    port: shard.port,
    user: shard.user,
    database: shard.database
  })
  const now = Math.floor(Date.now() / 1000)
  await conn.query("CREATE TEMPORARY TABLE digits (d INT)")
  await conn.query("INSERT INTO digits VALUES (0),(1),(2),(3),(4),(5),(6),(7),(8),(9)")
  await conn.query(
    `INSERT INTO job (funcname, uniqkey, arg, run_after, failcount)
     SELECT CONCAT('func', n % 10), CONCAT('key-', n), CONCAT('{"n":', n, '}'),
            CASE n % 3 WHEN 0 THEN ? - (n % 1000) WHEN 1 THEN ? + (n % 100000) ELSE IF(n % 100 = 2, 2147483647, ? - 5) END,
            n % 5
     FROM (SELECT a.d + 10*b.d + 100*c.d + 1000*e.d + 10000*f.d + 100000*g.d AS n
           FROM digits a, digits b, digits c, digits e, digits f, digits g) numbers`,
    [now, now, now]
  )
  const [rows] = await conn.query("SELECT COUNT(*) AS n FROM job")
  await conn.end()
  console.log(`seeded ${JSON.stringify(rows)} (target ${JOBS})`)
})

const page = (label: string, filter: ListFilter) =>
  Effect.gen(function*() {
    const storage = yield* Storage
    const first = yield* storage.list({ ...filter, limit: PAGE })
    const times: Array<number> = []
    let after = first[first.length - 1]
    // Ten pages deep into the listing, then one timed page per sample.
    for (let i = 0; i < 10 && after !== undefined; i++) {
      const start = performance.now()
      const jobs = yield* storage.list({ ...filter, limit: PAGE, after })
      times.push(performance.now() - start)
      after = jobs[jobs.length - 1]
    }
    times.sort((a, b) => a - b)
    console.log(
      `${label.padEnd(50)} median ${times[Math.floor(times.length / 2)]?.toFixed(1)} ms  max ${
        times[times.length - 1]?.toFixed(1)
      } ms`
    )
  })

runBench(
  shard,
  Effect.gen(function*() {
    yield* migrate([shard])
    yield* seed
    yield* Effect.gen(function*() {
      yield* page("all, by id", {})
      yield* page("one function, by id", { funcname: "func3" })
      yield* page("due, by id", { state: "due" })
      yield* page("never, one function, by id", { funcname: "func2", state: "never" })
      yield* page("unique key contains '-99', by id", { uniqkey: "-99" })
      yield* page("all, by run_after", { order: "runAfter" })
      yield* page("due, by run_after", { state: "due", order: "runAfter" })
    }).pipe(Effect.provide(mysqlLayer({ shards: [shard] })))
  })
)
