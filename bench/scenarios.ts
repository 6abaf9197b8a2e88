// The in-process scenarios of `bench/run.ts`: baseline, insert, throughput, lowlatency.
// Each returns its figures; none asserts anything.
import { Context, Duration, Effect, Layer } from "effect"
import * as Gearman from "../src/gearman/Gearman.js"
import { encodeWorkerJson } from "../src/Job.js"
import * as Client from "../src/roles/Client.js"
import * as Controller from "../src/roles/Controller.js"
import * as Injector from "../src/roles/Injector.js"
import * as QueueRunner from "../src/roles/QueueRunner.js"
import * as Worker from "../src/roles/Worker.js"
import type { BenchOptions, Figure } from "./harness.js"
import {
  atLeast,
  atMost,
  BenchError,
  figure,
  liveLayers,
  cpuMeter,
  serverCpuMeter,
  makeCounter,
  nowMs,
  paced,
  percentiles,
  perSecond,
  range,
  scratchDatabase,
  storageLayer,
  storedJobs,
  timed,
  until
} from "./harness.js"

/** A worker JSON payload of the size the QueueRunner sends for a small job. */
export const sampleWorkerJson = (jobid: number, funcname: string): string =>
  encodeWorkerJson({
    dbid: 1,
    jobid,
    funcname,
    arg: Buffer.from(`payload ${jobid} ${"x".repeat(48)}`),
    uniqkey: null,
    coalesce: null,
    runAfter: 1_700_000_000,
    flag: "shim",
    failcount: 0
  })

/** Seconds a scenario may take for `n` jobs at no less than `floor` jobs/s, plus slack. */
const budget = (n: number, floor: number) => Duration.seconds(20 + n / floor)

// -- baseline: gearmand alone ---------------------------------------------------------------------

export const baseline = (o: BenchOptions, server: string): Effect.Effect<ReadonlyArray<Figure>, BenchError> =>
  Effect.scoped(Effect.gen(function*() {
    const gearman = yield* Gearman.Gearman
    const counter = makeCounter()
    for (let w = 0; w < o.workers; w++) {
      yield* gearman.serve({ bench_baseline: () => Effect.sync(counter.hit) }, { concurrency: o.concurrency }).pipe(
        Effect.orDie
      )
    }
    const submit = (i: number) =>
      gearman.submitBackground("bench_baseline", sampleWorkerJson(i, "bench_baseline")).pipe(
        Effect.mapError((e) => new BenchError({ message: `baseline submit: ${e._tag} ${e.message}` }))
      )
    // Warm-up: connections, JIT.
    const warm = Math.min(2000, o.baselineJobs)
    yield* Effect.forEach(range(warm), submit, { concurrency: 256, discard: true })
    yield* counter.reach(warm, budget(warm, 500), "baseline warm-up")
    const cpu = cpuMeter()
    const servers = serverCpuMeter(server)
    const [, ms] = yield* timed(
      Effect.forEach(range(o.baselineJobs), submit, { concurrency: 256, discard: true }).pipe(
        Effect.zipRight(counter.reach(warm + o.baselineJobs, budget(o.baselineJobs, 500), "baseline"))
      )
    )
    const cpuPerJob = cpu.perJob(o.baselineJobs)
    return [
      figure(
        "baseline",
        "gearmand alone: submitBackground → worker → complete",
        perSecond(o.baselineJobs, ms),
        "jobs/s",
        {
          note: `${o.baselineJobs} jobs, 256 submits in flight, ${o.workers}×${o.concurrency} worker slots, no database`
        }
      ),
      figure("baseline", "CPU per job in this process (client and worker)", cpuPerJob, "µs", {
        note: servers.perJob(o.baselineJobs)
      })
    ]
  })).pipe(Effect.provide(Gearman.layer({ servers: [server] })))

// -- insert ---------------------------------------------------------------------------------------

export const insert = (o: BenchOptions): Effect.Effect<ReadonlyArray<Figure>, BenchError> =>
  Effect.scoped(Effect.gen(function*() {
    const shard = yield* scratchDatabase("insert")
    return yield* Effect.gen(function*() {
      const spec = (i: number): Client.JobSpec => ({ funcname: "bench_insert", arg: `payload ${i} ${"x".repeat(48)}` })
      const fail = (what: string) => (e: { readonly _tag: string; readonly message: string }) =>
        new BenchError({ message: `${what}: ${e._tag} ${e.message}` })
      // Warm-up: the pool's connections and prepared statements.
      yield* Effect.forEach(range(64), (i) => Client.insertJob(spec(i)), { concurrency: 16, discard: true }).pipe(
        Effect.mapError(fail("insert warm-up"))
      )

      const [, singleMs] = yield* timed(
        Effect.forEach(range(o.insertSingle), (i) => Client.insertJob(spec(i)), { discard: true })
      )
        .pipe(Effect.mapError(fail("insertJob one at a time")))
      const [, concurrentMs] = yield* timed(
        Effect.forEach(range(o.insertConcurrentJobs), (i) => Client.insertJob(spec(i)), {
          concurrency: o.insertCallers,
          discard: true
        })
      ).pipe(Effect.mapError(fail("insertJob concurrent")))
      const batches = range(o.insertBatches).map((b) => range(o.batchSize).map((i) => spec(b * o.batchSize + i)))
      const [, batchMs] = yield* timed(Effect.forEach(batches, (batch) => Client.insertJobs(batch), { discard: true }))
        .pipe(Effect.mapError(fail("insertJobs")))
      return [
        figure("insert", "insertJob, 1 caller", perSecond(o.insertSingle, singleMs), "jobs/s", {
          note: `${o.insertSingle} jobs; the Perl original: about 4,600 jobs/s`
        }),
        figure(
          "insert",
          `insertJob, ${o.insertCallers} concurrent callers`,
          perSecond(o.insertConcurrentJobs, concurrentMs),
          "jobs/s",
          {
            target: atLeast(20_000, "≥ 20,000 jobs/s"),
            note: `${o.insertConcurrentJobs} jobs`
          }
        ),
        figure(
          "insert",
          `insertJobs, batches of ${o.batchSize}`,
          perSecond(o.insertBatches * o.batchSize, batchMs),
          "jobs/s",
          {
            target: atLeast(50_000, "≥ 50,000 jobs/s"),
            note: `${o.insertBatches} batches, one after the other`
          }
        )
      ]
    }).pipe(Effect.scoped, Effect.provide(storageLayer(shard)))
  }))

// -- throughput mode ------------------------------------------------------------------------------

export const throughput = (
  o: BenchOptions,
  server: string,
  baselineRate: number | undefined
): Effect.Effect<ReadonlyArray<Figure>, BenchError> =>
  Effect.scoped(Effect.gen(function*() {
    const shard = yield* scratchDatabase("throughput")
    return yield* Effect.gen(function*() {
      const fail = (what: string) => (e: { readonly _tag: string; readonly message: string }) =>
        new BenchError({ message: `${what}: ${e._tag} ${e.message}` })
      const counter = makeCounter()
      const latencies: Array<number> = []
      // Steady-load jobs carry their insert time; pre-inserted ones "pre".
      const handler: Worker.JobHandler = (job) =>
        Effect.sync(() => {
          const t = nowMs()
          if (job.text !== "pre") latencies.push(t - Number(job.text))
          counter.hit()
        })

      // 1. N jobs stored before anything runs.
      const chunk = 10_000
      const [, preMs] = yield* timed(Effect.forEach(
        range(Math.ceil(o.jobs / chunk)),
        (c) =>
          Client.insertJobs(
            range(Math.min(chunk, o.jobs - c * chunk)).map(() => ({ funcname: "bench_tp", arg: "pre" }))
          ),
        { discard: true }
      ))
        .pipe(Effect.mapError(fail("pre-inserting")))

      // 2. Workers, then one QueueRunner; time until every job ran, and until every row is gone.
      for (let w = 0; w < o.workers; w++)
        yield* Worker.serve({ bench_tp: handler }, { concurrency: o.concurrency }).pipe(Effect.orDie)
      const runnerOptions: QueueRunner.QueueRunnerOptions = {
        ...(o.batchRunSleep === undefined ? {} : { batchRunSleep: Duration.millis(o.batchRunSleep) }),
        ...(o.batchMaxSize === undefined ? {} : { batchMaxSize: o.batchMaxSize }),
        ...(o.watermark === undefined ? {} : { queueWatermarkDepth: o.watermark })
      }
      const cpu = cpuMeter()
      const servers = serverCpuMeter(server)
      const start = performance.now()
      yield* QueueRunner.run(runnerOptions).pipe(Effect.mapError(fail("QueueRunner")), Effect.forkScoped)
      yield* counter.reach(o.jobs, budget(o.jobs, 300), "throughput drain")
      const ranMs = performance.now() - start
      yield* until(
        Effect.map(storedJobs, (n) => n === 0),
        "50 millis",
        "30 seconds",
        "throughput: rows left after every job ran"
      )
      const emptyMs = performance.now() - start
      const cpuPerJob = cpu.perJob(o.jobs)
      const serversPerJob = servers.perJob(o.jobs)
      const rate = perSecond(o.jobs, ranMs)

      // 3. A steady offered load, one insertJob per job: latency insert → handler start.
      const steadyJobs = Math.round(o.rate * o.steadySeconds)
      const before = counter.count()
      const offered = yield* paced(steadyJobs, o.rate, () =>
        Effect.suspend(() =>
          Client.insertJob({ funcname: "bench_tp", arg: String(nowMs()) })
        ).pipe(Effect.asVoid, Effect.mapError(fail("steady insertJob"))))
      yield* counter.reach(before + steadyJobs, "60 seconds", "throughput steady load")
      yield* until(
        Effect.map(storedJobs, (n) =>
          n === 0),
        "50 millis",
        "30 seconds",
        "throughput: rows left after the steady load"
      )
      const lat = percentiles(latencies)
      const setting = `one QueueRunner (batchRunSleep ${
        o.batchRunSleep === undefined ? "default 1 s" : `${o.batchRunSleep} ms`
      }, watermark ${o.watermark ?? "default 4000"}), ${o.workers}×${o.concurrency} worker slots in this process`
      return [
        figure("throughput", "pre-insert (insertJobs, 10,000 per call)", perSecond(o.jobs, preMs), "jobs/s", {
          note: `${o.jobs} jobs`
        }),
        figure("throughput", "stored → run, end to end", rate, "jobs/s", {
          target: atLeast(10_000, "≥ 10,000 jobs/s"),
          note: `${o.jobs} jobs, ${setting}; all rows deleted after ${
            (emptyMs / 1000).toFixed(2)
          } s; the Perl original: about 550 jobs/s`
        }),
        figure("throughput", "CPU per job in this process (QueueRunner and worker)", cpuPerJob, "µs", {
          note: `until every handler ran; beside it ${serversPerJob}`
        }),
        figure(
          "throughput",
          "ratio to the gearmand-only baseline",
          baselineRate === undefined ? null : rate / baselineRate,
          "×",
          {
            target: atLeast(0.5, "≥ 50 %"),
            ...(baselineRate === undefined ? { note: "run the baseline scenario too" } : {})
          }
        ),
        figure("throughput", `latency insert → handler start at ${o.rate} jobs/s, p50`, lat.p50, "ms", {
          target: atMost(100, "p50 ≤ 100 ms"),
          note: `${lat.n} jobs over ${o.steadySeconds} s (offered ${
            Math.round(offered)
          } jobs/s); the Perl original: about 1 s`
        }),
        figure("throughput", `latency insert → handler start at ${o.rate} jobs/s, p99`, lat.p99, "ms", {
          note: `max ${lat.max.toFixed(1)} ms`
        })
      ]
    }).pipe(Effect.scoped, Effect.provide(liveLayers(shard, server)))
  }))

// -- low-latency mode -----------------------------------------------------------------------------

const injectRequest = (arg: string) => JSON.stringify({ funcname: "bench_ll", arg })

export const lowLatency = (o: BenchOptions, server: string): Effect.Effect<ReadonlyArray<Figure>, BenchError> =>
  Effect.scoped(Effect.gen(function*() {
    const shard = yield* scratchDatabase("lowlatency")
    return yield* Effect.gen(function*() {
      const counter = makeCounter()
      let latencies: Array<number> = []
      yield* Injector.serve({ concurrency: o.injectorConcurrency })
      yield* Controller.serve({ concurrency: o.controllerConcurrency })
      yield* Worker.serve({
        bench_ll: (job) =>
          Effect.sync(() => {
            latencies.push(nowMs() - Number(job.text))
            counter.hit()
          })
      }, { concurrency: o.concurrency }).pipe(Effect.orDie)
      const gearman = yield* Gearman.Gearman
      const inject = (client: Gearman.GearmanService) =>
        Effect.suspend(() => client.submit(Injector.INJECT_FUNCTION, injectRequest(String(nowMs())))).pipe(
          Effect.mapError((e) => new BenchError({ message: `inject_jobs: ${e._tag} ${e.message}` }))
        )

      // Warm-up.
      yield* Effect.forEach(range(200), () => inject(gearman), { concurrency: 4, discard: true })
      yield* counter.reach(200, "30 seconds", "low-latency warm-up")

      // 1. Synchronous injects at a steady rate (each caller waits for its answer).
      latencies = []
      const roundTrips: Array<number> = []
      const n = Math.round(o.llRate * o.llSeconds)
      const before = counter.count()
      const offered = yield* paced(n, o.llRate, () =>
        Effect.suspend(() => {
          const t = performance.now()
          return Effect.map(inject(gearman), () => void roundTrips.push(performance.now() - t))
        }))
      yield* counter.reach(before + n, "30 seconds", "low-latency steady injects")
      const lat = percentiles(latencies)
      const rt = percentiles(roundTrips)

      // 2. The highest sustained rate: `llClients` clients (a connection each), back to back.
      const clients = yield* Effect.forEach(
        range(o.llClients),
        () => Effect.map(Layer.build(Gearman.layer({ servers: [server] })), Context.get(Gearman.Gearman))
      )
      const startCount = counter.count()
      let accepted = 0
      const cpu = cpuMeter()
      const servers = serverCpuMeter(server)
      const start = performance.now()
      const deadline = start + o.llSustainSeconds * 1000
      yield* Effect.forEach(clients, (client) =>
        Effect.whileLoop({
          while: () => performance.now() < deadline,
          body: () => inject(client),
          step: () => void accepted++
        }), { concurrency: "unbounded", discard: true })
      const injectMs = performance.now() - start
      yield* counter.reach(startCount + accepted, "60 seconds", "low-latency sustained injects")
      const executedMs = performance.now() - start
      const cpuPerJob = cpu.perJob(accepted)
      const serversPerJob = servers.perJob(accepted)
      // Every row deleted by the Controllers before the roles stop.
      yield* until(
        Effect.map(storedJobs, (n) => n === 0),
        "50 millis",
        "30 seconds",
        "low-latency: rows left after every job ran"
      )

      const setting =
        `Injector ×${o.injectorConcurrency}, Controller ×${o.controllerConcurrency}, worker ×${o.concurrency}, all in this process`
      return [
        figure("lowlatency", `submit → handler start at ${o.llRate} jobs/s, p50`, lat.p50, "ms", {
          target: atMost(2, "p50 ≤ 2 ms"),
          note: `${lat.n} synchronous injects over ${o.llSeconds} s (offered ${
            Math.round(offered)
          } jobs/s); ${setting}; the Perl original: about 2.4 ms`
        }),
        figure("lowlatency", `submit → handler start at ${o.llRate} jobs/s, p99`, lat.p99, "ms", {
          target: atMost(5, "p99 ≤ 5 ms"),
          note: "the Perl original: about 4 ms"
        }),
        figure("lowlatency", `submit → handler start at ${o.llRate} jobs/s, max`, lat.max, "ms"),
        figure("lowlatency", "inject round trip (stored, answered), p50", rt.p50, "ms", {
          note: `p99 ${rt.p99.toFixed(2)} ms`
        }),
        figure(
          "lowlatency",
          `sustained, ${o.llClients} synchronous clients`,
          perSecond(accepted, executedMs),
          "jobs/s",
          {
            target: atLeast(3000, "≥ 3,000 jobs/s"),
            note: `${accepted} jobs injected in ${(injectMs / 1000).toFixed(1)} s (${
              Math.round(perSecond(accepted, injectMs))
            } answered/s), all run after ${(executedMs / 1000).toFixed(1)} s`
          }
        ),
        figure("lowlatency", "CPU per job in this process (clients, Injector, Controller, worker)", cpuPerJob, "µs", {
          note: `while sustained; beside it ${serversPerJob}`
        })
      ]
    }).pipe(Effect.scoped, Effect.provide(liveLayers(shard, server)))
  }))
