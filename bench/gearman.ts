// Gearman baseline (no persistence): our client and worker through one real gearmand.
//   npx vite-node bench/gearman.ts            spawns gearmand on a free port
//   GEARMAN_SERVER=host:port npx vite-node bench/gearman.ts   uses a running one
// Env: JOBS (default 50000), INFLIGHT (client requests in flight, default 256),
//      WORKERS (worker connections, default 4), PAYLOAD (bytes, default 100).
import { NodeRuntime } from "@effect/platform-node"
import { Context, Deferred, Effect, Layer, Logger, LogLevel } from "effect"
import { Gearman, layer } from "../src/gearman/Gearman.js"
import { scopedGearmand } from "../src/testing/gearmandProcess.js"

const env = (name: string, fallback: number) => {
  const value = Number(process.env[name] ?? "")
  return Number.isFinite(value) && value > 0 ? value : fallback
}
const jobs = env("JOBS", 50_000)
const inflight = env("INFLIGHT", 256)
const workers = env("WORKERS", 4)
const payload = Buffer.alloc(env("PAYLOAD", 100), 120)

// The shared helper: a gearmand on a free port whose pid file goes away with it.
const gearmand = Effect.gen(function*() {
  const given = process.env["GEARMAN_SERVER"]
  if (given) return given
  return yield* scopedGearmand.pipe(Effect.mapError((e) => new Error(e.message)))
})

const rate = (label: string, n: number, ms: number) =>
  Effect.log(
    `${label}: ${Math.round((n / ms) * 1000).toLocaleString("en-US")} jobs/s (${n} jobs in ${(ms / 1000).toFixed(2)} s)`
  )

const timed = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const start = performance.now()
    yield* effect
    return performance.now() - start
  })

const program = Effect.gen(function*() {
  const server = yield* gearmand
  const gearman = yield* Effect.map(Layer.build(layer({ servers: [server] })), Context.get(Gearman))
  const ids = Array.from({ length: jobs }, (_, i) => i)
  yield* Effect.log(
    `gearmand ${yield* gearman.admin.version(
      server
    )} at ${server}; ${jobs} jobs, ${inflight} in flight, ${workers} worker connections, ${payload.length} B payload`
  )

  // 1. Background submits into an idle function (no worker): client → JOB_CREATED.
  const submitMs = yield* timed(
    Effect.forEach(ids, () => gearman.submitBackground("bench_bg_idle", payload), {
      concurrency: inflight,
      discard: true
    })
  )
  yield* rate("background submit (JOB_CREATED)", jobs, submitMs)

  // 2. Our worker draining the queue filled in 1: grab → run → complete, worker side alone.
  let drained = 0
  const allDrained = yield* Deferred.make<void>()
  let done = 0
  const allDone = yield* Deferred.make<void>()
  const drainMs = yield* timed(
    gearman
      .serve(
        {
          bench_bg_idle: () =>
            Effect.sync(() => {
              if (++drained === jobs) Deferred.unsafeDone(allDrained, Effect.void)
            })
        },
        { concurrency: workers }
      )
      .pipe(Effect.zipRight(Deferred.await(allDrained)))
  )
  yield* rate("worker drain of a full queue (grab → complete)", jobs, drainMs)

  // 3. Background jobs drained by our worker while being submitted: submit → worker → complete.
  yield* gearman.serve(
    {
      bench_bg: () =>
        Effect.sync(() => {
          if (++done === jobs) Deferred.unsafeDone(allDone, Effect.void)
        }),
      bench_fg: (job) => Effect.succeed(job.payload)
    },
    { concurrency: workers }
  )
  const bgMs = yield* timed(
    Effect.forEach(ids, () => gearman.submitBackground("bench_bg", payload), { concurrency: inflight, discard: true })
      .pipe(
        Effect.zipRight(Deferred.await(allDone))
      )
  )
  yield* rate("background submit → worker → complete", jobs, bgMs)

  // 4. Foreground round trips: submit → worker → WORK_COMPLETE back to the client.
  const fgMs = yield* timed(
    Effect.forEach(ids, () => gearman.submit("bench_fg", payload), { concurrency: inflight, discard: true })
  )
  yield* rate("foreground submit → worker → result", jobs, fgMs)
})

NodeRuntime.runMain(program.pipe(Effect.scoped, Logger.withMinimumLogLevel(LogLevel.Info)))
