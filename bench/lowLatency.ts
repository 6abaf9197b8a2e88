// `npm run bench:latency`: low-latency mode on the local MariaDB and a gearmand spawned here.
// A synchronous client injects jobs one by one; prints the inject round trip (until the job is
// stored) and inject → worker start latency, p50/p99. Not a test, no thresholds.
import { Effect, Layer } from "effect"
import * as Gearman from "../src/gearman/Gearman.js"
import * as Controller from "../src/roles/Controller.js"
import * as Injector from "../src/roles/Injector.js"
import * as Worker from "../src/roles/Worker.js"
import { migrate } from "../src/storage/migrate.js"
import * as StorageLayers from "../src/storage/Storage.js"
import { gearmand } from "../test/gearman/gearmand.js"
import { runBench, scratchShard } from "./support.js"

const N = Number(process.env["GARIVINI_BENCH_JOBS"] ?? "1000")
const shard = scratchShard("latency")

const percentile = (sorted: ReadonlyArray<number>, p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!
const report = (label: string, samples: ReadonlyArray<number>) => {
  const sorted = [...samples].sort((a, b) => a - b)
  console.log(
    `${label.padEnd(40)} p50 ${percentile(sorted, 0.5).toFixed(2)} ms   p99 ${percentile(sorted, 0.99).toFixed(2)} ms`
  )
}

const program = Effect.scoped(Effect.gen(function*() {
  yield* migrate([shard])
  const gd = yield* gearmand
  yield* Effect.gen(function*() {
    const started = new Map<string, number>()
    yield* Injector.serve()
    yield* Controller.serve()
    yield* Worker.serve({ bench: (job) => Effect.sync(() => void started.set(job.text, performance.now())) }, {
      concurrency: 8
    })
    const gearman = yield* Gearman.Gearman
    const roundTrips: Array<number> = []
    const sent = new Map<string, number>()
    // Warm-up: connections, prepared statements.
    for (let i = 0; i < 50; i++)
      yield* gearman.submit(Injector.INJECT_FUNCTION, JSON.stringify({ funcname: "bench", arg: `warm ${i}` }))
    const t0 = performance.now()
    for (let i = 0; i < N; i++) {
      const arg = `job ${i}`
      const t = performance.now()
      sent.set(arg, t)
      yield* gearman.submit(Injector.INJECT_FUNCTION, JSON.stringify({ funcname: "bench", arg }))
      roundTrips.push(performance.now() - t)
    }
    const seconds = (performance.now() - t0) / 1000
    yield* Effect.sleep("500 millis")
    const latencies = [...sent].flatMap(([arg, t]) => started.has(arg) ? [started.get(arg)! - t] : [])
    console.log(
      `Low-latency mode: ${N} jobs injected one by one, MariaDB ${shard.host}:${shard.port}, gearmand ${gd.server}, node ${process.version}`
    )
    console.log(`${"synchronous inject rate".padEnd(40)} ${Math.round(N / seconds)} jobs/s`)
    report("inject round trip (stored, answered)", roundTrips)
    report(`inject → worker start (${latencies.length} seen)`, latencies)
  }).pipe(
    Effect.provide(Layer.mergeAll(StorageLayers.layer({ shards: [shard] }), Gearman.layer({ servers: [gd.server] })))
  )
}))

runBench(shard, program)
