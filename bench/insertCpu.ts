// `vite-node bench/insertCpu.ts [rounds] [jobs]` (INSERT_STATUS=1: MariaDB's global counters per 1000 jobs;
// INSERT_SINGLE=N: N more single inserts, one caller; INSERT_MEMORY=1: the memory layer with
// coalescing on, i.e. the Storage + Client overhead alone): the insert paths of bench/run.ts's
// `insert` scenario, several rounds, with wall-clock jobs/s and this process's CPU per job
// (user + system), which is steadier than wall time on a shared machine.
import { Effect } from "effect"
import * as Mysql from "mysql2/promise"
import * as Client from "../src/roles/Client.js"
import { layerMemory } from "../src/storage/Storage.js"
import { cpuMeter, range, scratchDatabase, storageLayer } from "./harness.js"

const rounds = Number(process.argv[2] ?? 5)
const jobs = Number(process.argv[3] ?? 20_000)

const COUNTERS = [
  "Questions",
  "Com_insert",
  "Com_commit",
  "Com_begin",
  "Com_select",
  "Com_stmt_execute",
  "Com_stmt_prepare",
  "Innodb_os_log_fsyncs"
]
const status = process.env["INSERT_STATUS"] === "1"
  ? Effect.promise(async () => {
    const conn = await Mysql.createConnection({ host: "127.0.0.1", user: "root" })
    const [rows] = await conn.query("SHOW GLOBAL STATUS")
    await conn.end()
    const m = new Map<string, number>()
    for (const r of rows as Array<{ Variable_name: string; Value: string }>)
      if (COUNTERS.includes(r.Variable_name)) m.set(r.Variable_name, Number(r.Value))
    return m
  })
  : Effect.succeed(new Map<string, number>())

const measure = <E, R>(label: string, n: number, effect: Effect.Effect<unknown, E, R>) =>
  Effect.gen(function*() {
    const s0 = yield* status
    const cpu = cpuMeter()
    const t0 = performance.now()
    yield* effect
    const ms = performance.now() - t0
    console.log(
      `${label.padEnd(28)} ${String(Math.round((n * 1000) / ms)).padStart(7)} jobs/s  ${
        cpu.perJob(n).toFixed(1).padStart(6)
      } µs CPU/job`
    )
    if (s0.size > 0) {
      const s1 = yield* status
      console.log(
        "   per 1000 jobs: " +
          COUNTERS.map((c) => `${c} ${(((s1.get(c) ?? 0) - (s0.get(c) ?? 0)) * 1000 / n).toFixed(0)}`).join(", ")
      )
    }
  })

const spec = (i: number): Client.JobSpec => ({ funcname: "bench_insert", arg: `payload ${i} ${"x".repeat(48)}` })

const memory = process.env["INSERT_MEMORY"] === "1"

const program = Effect.scoped(Effect.gen(function*() {
  const storage = memory ? layerMemory({ coalesceInserts: true }) : storageLayer(yield* scratchDatabase("insertcpu"))
  yield* Effect.gen(function*() {
    yield* Effect.forEach(range(64), (i) => Client.insertJob(spec(i)), { concurrency: 16, discard: true })
    for (let r = 0; r < rounds; r++) {
      yield* measure(
        "insertJob, 64 concurrent",
        jobs,
        Effect.forEach(range(jobs), (i) => Client.insertJob(spec(i)), { concurrency: 64, discard: true })
      )
    }
    if (process.env["INSERT_SINGLE"] !== undefined)
      yield* measure(
        "insertJob, 1 caller",
        Number(process.env["INSERT_SINGLE"]),
        Effect.forEach(range(Number(process.env["INSERT_SINGLE"])), (i) => Client.insertJob(spec(i)), { discard: true })
      )
    yield* measure(
      "insertJob, 1 caller",
      500,
      Effect.forEach(range(500), (i) => Client.insertJob(spec(i)), { discard: true })
    )
    const batches = range(30).map((b) => range(1000).map((i) => spec(b * 1000 + i)))
    yield* measure(
      "insertJobs, 1000 per call",
      30_000,
      Effect.forEach(batches, (b) => Client.insertJobs(b), { discard: true })
    )
  }).pipe(Effect.provide(storage))
}))

Effect.runPromise(program).catch((e) => {
  console.error(e)
  process.exitCode = 1
})
