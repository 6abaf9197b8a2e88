// A user's worker process for the as-deployed scenarios (bench/deployed.ts bundles it with
// esbuild and runs it with plain node, node's defaults, as a user's worker runs): the worker helper
// (`Worker.serve`) serving one function. A job whose arg is a number is a wall-clock stamp
// (`performance.timeOrigin + performance.now()`, ms) taken by the client when it submitted; the
// handler's start minus it is the job's latency. Prints JSON lines on stdout:
//   {"event":"ready"}                          once serving
//   {"event":"ran","n":total,"lat":[ms, …]}    every 50 ms while jobs run (the latencies since the last line)
// Environment: BENCH_GEARMAN (host:port), BENCH_DB (mysql://… or sqlite:PATH), BENCH_FUNCTION,
// BENCH_CONCURRENCY.
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Config, Console, Effect, Either, Layer, Logger, LogLevel } from "effect"
import { parseShardUrl, SQLITE_PREFIX } from "../src/storage/targets.js"
import * as Gearman from "../src/gearman/Gearman.js"
import * as Worker from "../src/roles/Worker.js"
import * as StorageLayers from "../src/storage/Storage.js"

const storage = (db: string) => {
  if (db.startsWith(SQLITE_PREFIX)) return StorageLayers.layerSqlite({ filename: db.slice(SQLITE_PREFIX.length) })
  const shard = parseShardUrl(db, 1)
  return Either.isLeft(shard) ? Layer.fail(shard.left) : StorageLayers.layer({ shards: [shard.right] })
}

const program = Effect.gen(function*() {
  const server = yield* Config.string("BENCH_GEARMAN")
  const db = yield* Config.string("BENCH_DB")
  const fn = yield* Config.string("BENCH_FUNCTION")
  const concurrency = yield* Config.integer("BENCH_CONCURRENCY").pipe(Config.withDefault(8))
  let ran = 0
  let latencies: Array<number> = []
  yield* Effect.scoped(
    Effect.gen(function*() {
      yield* Worker.serve({
        [fn]: (job) =>
          Effect.sync(() => {
            const now = performance.timeOrigin + performance.now()
            const stamp = Number(job.text)
            if (Number.isFinite(stamp) && stamp > 0) latencies.push(now - stamp)
            ran++
          })
      }, { concurrency })
      yield* Console.log(JSON.stringify({ event: "ready" }))
      let reported = 0
      return yield* Effect.suspend(() => {
        if (ran === reported) return Effect.void
        reported = ran
        const lat = latencies
        latencies = []
        return Console.log(JSON.stringify({ event: "ran", n: ran, lat: lat.map((l) => Math.round(l * 1000) / 1000) }))
      }).pipe(Effect.zipRight(Effect.sleep("50 millis")), Effect.forever)
    }).pipe(Effect.provide(Layer.mergeAll(storage(db), Gearman.layer({ servers: [server] }))))
  )
}).pipe(Logger.withMinimumLogLevel(LogLevel.Error))

NodeRuntime.runMain(program)
