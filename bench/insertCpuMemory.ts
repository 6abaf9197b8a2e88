// The Storage + Client overhead of insertJob alone: the memory layer with coalescing on.
import { Effect } from "effect"
import * as Client from "../src/roles/Client.js"
import { layerMemory } from "../src/storage/Storage.js"

const rounds = Number(process.argv[2] ?? 5)
const jobs = Number(process.argv[3] ?? 50_000)
const range = (n: number) => Array.from({ length: n }, (_, i) => i)
const spec = (i: number): Client.JobSpec => ({ funcname: "bench_insert", arg: `payload ${i} ${"x".repeat(48)}` })
const measure = <E, R>(label: string, n: number, effect: Effect.Effect<unknown, E, R>) =>
  Effect.gen(function*() {
    const cpu0 = process.cpuUsage()
    const t0 = performance.now()
    yield* effect
    const ms = performance.now() - t0
    const cpu = process.cpuUsage(cpu0)
    console.log(`${label.padEnd(28)} ${String(Math.round((n * 1000) / ms)).padStart(7)} jobs/s  ${((cpu.user + cpu.system) / n).toFixed(1).padStart(6)} µs CPU/job`)
  })
const program = Effect.gen(function*() {
  for (let r = 0; r < rounds; r++) {
    yield* measure("mem insertJob, 64 concurrent", jobs, Effect.forEach(range(jobs), (i) => Client.insertJob(spec(i)), { concurrency: 64, discard: true }))
  }
  yield* measure("mem insertJob, 1 caller", jobs / 5, Effect.forEach(range(jobs / 5), (i) => Client.insertJob(spec(i)), { discard: true }))
}).pipe(Effect.provide(layerMemory({ coalesceInserts: true })))
Effect.runPromise(program).catch((e) => {
  console.error(e)
  process.exitCode = 1
})
