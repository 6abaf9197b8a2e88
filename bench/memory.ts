// The memory scenario of bench/run.ts: a QueueRunner and a worker each in its own process
// (bench/roleProcess.ts, bundled with esbuild and run by plain node, so vite-node's own ~150 MB
// are not counted), their peak RSS read from /proc/PID/status (VmHWM), and a worker's RSS after
// a GC at two checkpoints (100,000 and 1,000,000 jobs by default).
import { spawn } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import { readFileSync, rmSync } from "node:fs"
import { fileURLToPath } from "node:url"
import * as esbuild from "esbuild"
import { Duration, Effect, Either, Schema } from "effect"
import type { Scope } from "effect"
import * as Gearman from "../src/gearman/Gearman.js"
import { exited } from "../src/testing/gearmandProcess.js"
import * as Client from "../src/roles/Client.js"
import type { BenchOptions, Figure } from "./harness.js"
import {
  atMost,
  BenchError,
  figure,
  range,
  scratchDatabase,
  shardUrl,
  storageLayer,
  storedJobs,
  until
} from "./harness.js"
import { sampleWorkerJson } from "./scenarios.js"

const MB = 1024 * 1024

const Event = Schema.parseJson(Schema.Union(
  Schema.Struct({ event: Schema.Literal("ready"), rss: Schema.Number }),
  Schema.Struct({ event: Schema.Literal("progress"), handled: Schema.Number }),
  Schema.Struct({
    event: Schema.Literal("checkpoint"),
    handled: Schema.Number,
    rss: Schema.Number,
    heapUsed: Schema.Number,
    external: Schema.Number
  })
))
const decodeEvent = Schema.decodeUnknownEither(Event)

interface Checkpoint {
  readonly handled: number
  readonly rss: number
  readonly heapUsed: number
  readonly external: number
}

interface Role {
  readonly pid: number
  readonly readyRss: () => number | undefined
  readonly handled: () => number
  readonly checkpoints: () => ReadonlyArray<Checkpoint>
  /** Fails once the process has exited (it should run until killed). */
  readonly alive: Effect.Effect<void, BenchError>
}

const entry = fileURLToPath(new URL("./roleProcess.ts", import.meta.url))
// Inside node_modules so that the bundle's bare imports (effect, mysql2, …) resolve from there.
const bundleFile = fileURLToPath(
  new URL(`../node_modules/.cache/garivini-bench/roleProcess-${process.pid}.mjs`, import.meta.url)
)

/** bench/roleProcess.ts and the sources it imports as one ES module (dependencies left external), removed with the scope. */
const bundleRole: Effect.Effect<string, BenchError, Scope.Scope> = Effect.acquireRelease(
  Effect.tryPromise({
    try: () =>
      esbuild.build({
        entryPoints: [entry],
        outfile: bundleFile,
        bundle: true,
        packages: "external",
        platform: "node",
        format: "esm",
        target: "node20",
        logLevel: "error"
      }),
    catch: (e) =>
      new BenchError({ message: `bundling bench/roleProcess.ts with esbuild (installed with vite-node): ${String(e)}` })
  }).pipe(Effect.as(bundleFile)),
  (file) => Effect.sync(() => rmSync(file, { force: true }))
)

/** Spawns a role process (SIGKILLed when the scope closes) and waits until it serves. */
const spawnRole = (script: string, env: Record<string, string>): Effect.Effect<Role, BenchError, Scope.Scope> =>
  Effect.gen(function*() {
    const child: ChildProcess = yield* Effect.acquireRelease(
      Effect.sync(() =>
        spawn(process.execPath, ["--expose-gc", script], {
          env: { ...process.env, ...env },
          stdio: ["ignore", "pipe", "inherit"]
        })
      ),
      (c) => Effect.zipRight(Effect.sync(() => c.kill("SIGKILL")), exited(c))
    )
    let readyRss: number | undefined
    let handled = 0
    const checkpoints: Array<Checkpoint> = []
    let buffered = ""
    child.stdout?.on("data", (chunk: Buffer) => {
      buffered += chunk.toString("utf8")
      const lines = buffered.split("\n")
      buffered = lines.pop() ?? ""
      for (const line of lines) {
        const event = decodeEvent(line)
        if (Either.isLeft(event)) continue
        const e = event.right
        if (e.event === "ready") readyRss = e.rss
        else if (e.event === "progress") handled = e.handled
        else {
          handled = Math.max(handled, e.handled)
          checkpoints.push({ handled: e.handled, rss: e.rss, heapUsed: e.heapUsed, external: e.external })
        }
      }
    })
    const alive = Effect.suspend(() =>
      child.exitCode === null && child.signalCode === null
        ? Effect.void
        : Effect.fail(
          new BenchError({
            message: `the ${env["BENCH_ROLE"]} process exited (${
              child.exitCode ?? child.signalCode
            }); see its stderr above`
          })
        )
    )
    yield* until(
      Effect.map(alive, () => readyRss !== undefined),
      "50 millis",
      "60 seconds",
      `the ${env["BENCH_ROLE"]} process did not start`
    )
    return {
      pid: child.pid ?? 0,
      readyRss: () => readyRss,
      handled: () => handled,
      checkpoints: () => checkpoints,
      alive
    }
  })

/** Peak resident set (VmHWM) of a live process, in bytes. */
const peakRss = (pid: number): Effect.Effect<number, BenchError> =>
  Effect.try({
    try: () => {
      const match = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))
      if (match === null) throw new Error("no VmHWM line")
      return Number(match[1]) * 1024
    },
    catch: (e) => new BenchError({ message: `reading /proc/${pid}/status (Linux only): ${String(e)}` })
  })

export const memory = (o: BenchOptions, server: string): Effect.Effect<ReadonlyArray<Figure>, BenchError> =>
  Effect.scoped(Effect.gen(function*() {
    const shard = yield* scratchDatabase("memory")
    const script = yield* bundleRole
    const base = { BENCH_GEARMAN: server, GARIVINI_DB: shardUrl(shard), BENCH_CONCURRENCY: String(o.concurrency) }

    // 1. A QueueRunner process and a worker process moving memoryRunnerJobs stored jobs.
    const phaseA = yield* Effect.scoped(Effect.gen(function*() {
      yield* Effect.forEach(
        range(Math.ceil(o.memoryRunnerJobs / 10_000)),
        (c) =>
          Client.insertJobs(
            range(Math.min(10_000, o.memoryRunnerJobs - c * 10_000)).map((i) => ({
              funcname: "bench_mem",
              arg: `payload ${i} ${"x".repeat(48)}`
            }))
          ),
        { discard: true }
      ).pipe(Effect.mapError((e) => new BenchError({ message: `pre-inserting: ${e._tag} ${e.message}` })))
      const worker = yield* spawnRole(script, { ...base, BENCH_ROLE: "worker", BENCH_FUNCTION: "bench_mem" })
      const runner = yield* spawnRole(script, {
        ...base,
        BENCH_ROLE: "runner",
        ...(o.watermark === undefined ? {} : { BENCH_WATERMARK: String(o.watermark) }),
        ...(o.batchRunSleep === undefined ? {} : { BENCH_BATCH_RUN_SLEEP: String(o.batchRunSleep) })
      })
      const start = performance.now()
      yield* until(
        Effect.zipRight(Effect.zipRight(runner.alive, worker.alive), Effect.map(storedJobs, (n) => n === 0)),
        "100 millis",
        Duration.seconds(30 + o.memoryRunnerJobs / 300),
        "memory: the runner and worker processes did not finish the stored jobs"
      )
      return {
        seconds: (performance.now() - start) / 1000,
        runnerPeak: yield* peakRss(runner.pid),
        runnerStart: runner.readyRss() ?? 0,
        workerPeak: yield* peakRss(worker.pid)
      }
    })).pipe(Effect.provide(storageLayer(shard)))

    // 2. A worker process fed directly through gearmand (worker JSON of rows that are not stored:
    //    the worker's path is the same, its DELETEs find nothing), RSS at two checkpoints.
    const phaseB = yield* Effect.scoped(Effect.gen(function*() {
      const worker = yield* spawnRole(script, {
        ...base,
        BENCH_ROLE: "worker",
        BENCH_FUNCTION: "bench_mem_direct",
        BENCH_CHECKPOINTS: `${o.memoryCheckpoint},${o.memoryJobs}`
      })
      const gearman = yield* Gearman.Gearman
      const chunk = 5000
      const window = 20_000
      const start = performance.now()
      for (let c = 0; c * chunk < o.memoryJobs; c++) {
        const from = c * chunk
        // Keep gearmand's queue short: wait while more than `window` jobs are outstanding.
        yield* until(
          Effect.map(worker.alive, () => from - worker.handled() <= window),
          "20 millis",
          "120 seconds",
          "memory: the worker process stalled"
        )
        yield* Effect.forEach(
          range(Math.min(chunk, o.memoryJobs - from)),
          (i) => gearman.submitBackground("bench_mem_direct", sampleWorkerJson(from + i + 1, "bench_mem_direct")),
          { concurrency: 256, discard: true }
        ).pipe(Effect.mapError((e) => new BenchError({ message: `memory submit: ${e._tag} ${e.message}` })))
      }
      yield* until(
        Effect.map(worker.alive, () => worker.checkpoints().length >= 2),
        "50 millis",
        "120 seconds",
        "memory: the worker process did not reach its last checkpoint"
      )
      const [first, last] = worker.checkpoints()
      return {
        first: first!,
        last: last!,
        seconds: (performance.now() - start) / 1000,
        peak: yield* peakRss(worker.pid)
      }
    })).pipe(Effect.provide(Gearman.layer({ servers: [server] })))

    const mb = (bytes: number) => bytes / MB
    return [
      figure("memory", "QueueRunner process, peak RSS", mb(phaseA.runnerPeak), "MB", {
        target: atMost(150, "≤ 150 MB"),
        note: `${o.memoryRunnerJobs} jobs moved in ${phaseA.seconds.toFixed(1)} s (${
          Math.round(o.memoryRunnerJobs / phaseA.seconds)
        } jobs/s, runner and worker in separate processes); RSS once started ${mb(phaseA.runnerStart).toFixed(0)} MB`
      }),
      figure("memory", "worker process, peak RSS", mb(phaseA.workerPeak), "MB", {
        note: `same run, worker ×${o.concurrency}`
      }),
      figure(
        "memory",
        `worker RSS after ${phaseB.first.handled.toLocaleString("en-US")} jobs (after GC)`,
        mb(phaseB.first.rss),
        "MB",
        {
          note: `heap used ${mb(phaseB.first.heapUsed).toFixed(1)} MB, external ${
            mb(phaseB.first.external).toFixed(1)
          } MB`
        }
      ),
      figure(
        "memory",
        `worker RSS after ${phaseB.last.handled.toLocaleString("en-US")} jobs (after GC)`,
        mb(phaseB.last.rss),
        "MB",
        {
          note: `heap used ${mb(phaseB.last.heapUsed).toFixed(1)} MB, external ${
            mb(phaseB.last.external).toFixed(1)
          } MB; peak ${mb(phaseB.peak).toFixed(0)} MB; ${
            Math.round(phaseB.last.handled / phaseB.seconds)
          } jobs/s fed through gearmand directly`
        }
      ),
      figure("memory", "worker RSS growth between the two", mb(phaseB.last.rss - phaseB.first.rss), "MB", {
        target: atMost(5, "no growth (≤ 5 MB, our noise margin)"),
        note: `heap used ${(mb(phaseB.last.heapUsed - phaseB.first.heapUsed)).toFixed(1)} MB`
      })
    ]
  }))
