// `vite-node bench/workerHandler.ts [N]`: CPU of the worker helper's per-job path alone, with no
// job server and no database: `Worker.gearmanHandler` run N times on a decoded-to-be worker JSON,
// in one fiber per job as the Gearman worker runs it (FiberSet), completions into a no-op. For
// before/after comparisons of the handler's own work (docs/performance.md).
import { Effect, FiberSet } from "effect"
import { encodeWorkerJson } from "../src/Job.js"
import type { StoredJobId } from "../src/Job.js"
import * as Heartbeat from "../src/roles/heartbeat.js"
import * as Worker from "../src/roles/Worker.js"
import { makeMemory } from "../src/storage/Storage.js"
import { gearmanJobOf } from "../test/support/gearmanJob.js"

const n = Number(process.argv[2] ?? 200_000)

const payloads = Array.from({ length: 1024 }, (_, i) =>
  Buffer.from(encodeWorkerJson({
    jobid: i + 1,
    dbid: 1,
    funcname: "bench",
    arg: Buffer.from(String(i)),
    uniqkey: null,
    coalesce: null,
    runAfter: 0,
    flag: "shim",
    failcount: 0,
    lease: "0123456789abcdef0123456789abcdef"
  })))

/** A Gearman job as the worker makes one per assignment (its payload from a pool made up front). */
const gearmanJob = (i: number) =>
  gearmanJobOf(payloads[i % payloads.length]!, "bench", `H:bench:${i}`, "127.0.0.1:4730")

const program = Effect.gen(function*() {
  const { storage } = yield* makeMemory()
  let completed = 0
  const complete = (_: StoredJobId) => Effect.sync(() => void completed++)
  const heartbeats = yield* Heartbeat.make(storage)
  let ran = 0
  const handler = Worker.gearmanHandler(storage, complete, "bench", () => Effect.sync(() => void ran++), 25, heartbeats)
  const jobs = yield* FiberSet.make<unknown, unknown>()
  const fork = yield* FiberSet.runtime(jobs)<never>()
  const round = (count: number) =>
    Effect.gen(function*() {
      const cpu0 = process.cpuUsage()
      for (let i = 0; i < count; i++) {
        const job = gearmanJob(i)
        Worker.storedJobKey(job)
        fork(handler(job))
        if (i % 64 === 63) yield* FiberSet.awaitEmpty(jobs)
      }
      yield* FiberSet.awaitEmpty(jobs)
      return process.cpuUsage(cpu0)
    })
  yield* round(Math.min(n, 50_000)) // warm-up: let V8 optimize
  const cpu = yield* round(n)
  console.log(`${n} jobs: ${((cpu.user + cpu.system) / n).toFixed(2)} µs CPU a job; ran ${ran}, completed ${completed}`)
})

Effect.runPromise(Effect.scoped(program)).catch((e) => {
  console.error(e)
  process.exit(1)
})
