// The `embedded` scenario of bench/run.ts: `garivini up` (the built binary, in its own process:
// embedded job server, QueueRunner, Injector, Controller) with workers and clients in this
// process, as a user of `garivini up` runs it. Throughput: N jobs stored, then run; latency:
// synchronous injects at a steady rate, submit → handler start.
import { spawn } from "node:child_process"
import * as path from "node:path"
import { Deferred, Duration, Effect, Layer, type Scope } from "effect"
import * as Gearman from "../src/gearman/Gearman.js"
import { freePort } from "../src/testing/gearmandProcess.js"
import * as Injector from "../src/roles/Injector.js"
import * as Worker from "../src/roles/Worker.js"
import type { Storage } from "../src/storage/Storage.js"
import * as StorageLayers from "../src/storage/Storage.js"
import { tempDir } from "../test/support/files.js"
import type { BenchOptions } from "./harness.js"
import {
  BenchError,
  figure,
  insertCopies,
  makeCounter,
  nowMs,
  paced,
  percentiles,
  perSecond,
  range,
  scratchDatabase,
  shardUrl,
  storageLayer,
  storedJobs,
  until
} from "./harness.js"

/** Where `garivini up` keeps its jobs: the `--db` value and a Storage layer on the same store. */
export interface EmbeddedStore {
  readonly name: string
  readonly db: string
  readonly storage: Layer.Layer<Storage, BenchError>
}

/** A SQLite file in a fresh temporary directory: what `garivini up` uses by default. */
export const sqliteStore = tempDir("garivini-bench-").pipe(Effect.map((dir): EmbeddedStore => {
  const filename = path.join(dir, "garivini.db")
  return {
    name: "SQLite",
    db: `sqlite:${filename}`,
    storage: StorageLayers.layerSqlite({ filename }).pipe(
      Layer.mapError((e) => new BenchError({ message: `SQLite: ${e.message}` }))
    )
  }
}))

export const mysqlStore = Effect.map(scratchDatabase("embedded"), (shard): EmbeddedStore => ({
  name: "MariaDB",
  db: shardUrl(shard),
  storage: storageLayer(shard)
}))

/** `garivini up` in a child process until the scope closes (then SIGTERM). */
const up = (db: string, port: number, batchRunSleepMs: number | undefined) =>
  Effect.gen(function*() {
    const ready = yield* Deferred.make<void, BenchError>()
    const args = ["bin/garivini.js", "up", "--db", db, "--listen", `127.0.0.1:${port}`, "--log-format", "logfmt"]
    if (batchRunSleepMs !== undefined) args.push("--batch-run-sleep", String(batchRunSleepMs / 1000))
    const child = yield* Effect.acquireRelease(
      Effect.sync(() =>
        spawn("node", args, {
          stdio: ["ignore", "pipe", "pipe"],
          env: { ...process.env, GARIVINI_DB: "", GARIVINI_GEARMAND: "", GARIVINI_CONFIG: "" }
        })
      ),
      (c) => Effect.sync(() => c.kill("SIGTERM"))
    )
    let stderr = ""
    child.stderr.on("data", (d: Buffer) => void (stderr = (stderr + d.toString()).slice(-2000)))
    child.stdout.on("data", (d: Buffer) => {
      if (d.toString().includes("clients and workers connect to")) Effect.runSync(Deferred.succeed(ready, undefined))
    })
    child.on("exit", (code) =>
      Effect.runSync(
        Deferred.fail(
          ready,
          new BenchError({
            message: `garivini up exited (${code}) before it was ready: ${stderr.trim()} (run npm run build first)`
          })
        )
      ))
    yield* Deferred.await(ready).pipe(
      Effect.timeoutFail({
        duration: "30 seconds",
        onTimeout: () => new BenchError({ message: "garivini up was not ready within 30 s" })
      })
    )
  })

export const embedded = (
  o: BenchOptions,
  store: Effect.Effect<EmbeddedStore, BenchError, Scope.Scope>
) =>
  Effect.scoped(Effect.gen(function*() {
    const s = yield* store
    const port = yield* freePort
    yield* up(s.db, port, o.batchRunSleep)
    const server = `127.0.0.1:${port}`
    return yield* Effect.gen(function*() {
      const fail = (what: string) => (e: { readonly _tag: string; readonly message: string }) =>
        new BenchError({ message: `${what}: ${e._tag} ${e.message}` })
      const counter = makeCounter()
      let latencies: Array<number> = []
      yield* Worker.serve({
        bench_up: (job) =>
          Effect.sync(() => {
            if (job.text !== "pre") latencies.push(nowMs() - Number(job.text))
            counter.hit()
          })
      }, { concurrency: o.concurrency }).pipe(Effect.orDie)

      // 1. Throughput: N jobs stored at once, run by the QueueRunner of `garivini up`.
      const n = o.embeddedJobs
      const start = performance.now()
      yield* insertCopies(n, { funcname: "bench_up", arg: "pre" }).pipe(Effect.mapError(fail("inserting")))
      yield* counter.reach(n, Duration.seconds(30 + n / 200), "embedded throughput")
      const ranMs = performance.now() - start
      yield* until(
        Effect.map(storedJobs, (left) => left === 0),
        "50 millis",
        "60 seconds",
        "embedded: rows left after every job ran"
      )

      // 2. Low latency: synchronous injects at a steady rate.
      const gearman = yield* Gearman.Gearman
      const inject = () =>
        Effect.suspend(() =>
          gearman.submit(Injector.INJECT_FUNCTION, JSON.stringify({ funcname: "bench_up", arg: String(nowMs()) }))
        ).pipe(
          Effect.asVoid,
          Effect.mapError(fail("inject_jobs"))
        )
      yield* Effect.forEach(range(100), inject, { concurrency: 4, discard: true })
      yield* counter.reach(n + 100, "30 seconds", "embedded warm-up")
      latencies = []
      const injects = Math.round(o.llRate * o.llSeconds)
      const offered = yield* paced(injects, o.llRate, inject)
      yield* counter.reach(n + 100 + injects, "60 seconds", "embedded steady injects")
      const lat = percentiles(latencies)
      const setting = `garivini up over ${s.name} in its own process, one worker ×${o.concurrency} in this one`
      return [
        figure(`embedded (${s.name})`, "stored → run, end to end", perSecond(n, ranMs), "jobs/s", {
          note: `${n} jobs (insert included); ${setting}`
        }),
        figure(`embedded (${s.name})`, `inject → handler start at ${o.llRate} jobs/s, p50`, lat.p50, "ms", {
          note: `${lat.n} synchronous injects over ${o.llSeconds} s (offered ${Math.round(offered)} jobs/s)`
        }),
        figure(`embedded (${s.name})`, `inject → handler start at ${o.llRate} jobs/s, p99`, lat.p99, "ms", {
          note: `max ${lat.max.toFixed(1)} ms`
        })
      ]
    }).pipe(Effect.scoped, Effect.provide(Layer.mergeAll(s.storage, Gearman.layer({ servers: [server] }))))
  }))
