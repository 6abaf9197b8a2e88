// One role in its own process for the memory scenario of bench/run.ts (bundled and spawned by
// bench/memory.ts with node --expose-gc; `vite-node bench/roleProcess.ts` runs it too). Prints one JSON object per line on stdout:
//   {"event":"ready","rss":…}                      once serving (RSS in bytes)
//   {"event":"progress","handled":n}               (worker) every 100 ms while jobs run
//   {"event":"checkpoint","handled":n,"rss":…,"heapUsed":…,"external":…}  (worker) after a GC, at each checkpoint
// Environment: BENCH_ROLE (runner | worker), BENCH_GEARMAN (host:port), GARIVINI_DB (the shard),
// BENCH_FUNCTION, BENCH_CONCURRENCY, BENCH_CHECKPOINTS (comma-separated handled counts);
// for the runner, BENCH_WATERMARK and BENCH_BATCH_RUN_SLEEP (ms) override the QueueRunner defaults.
// The runner applies the heap policy of the `garivini` roles (src/cli/heap.ts); the worker, which
// stands for a user's worker process, runs with node's defaults.
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Config, Console, Duration, Effect, Layer, Logger, LogLevel, Option } from "effect"
import { applyRoleHeapPolicy } from "../src/cli/heap.js"
import { shardsConfig } from "../src/storage/targets.js"
import * as Gearman from "../src/gearman/Gearman.js"
import * as QueueRunner from "../src/roles/QueueRunner.js"
import * as Worker from "../src/roles/Worker.js"
import * as StorageLayers from "../src/storage/Storage.js"

const gc = (globalThis as { readonly gc?: () => void }).gc

const emit = (event: Record<string, string | number>) => Console.log(JSON.stringify(event))

const program = Effect.gen(function*() {
  const role = yield* Config.literal("runner", "worker")("BENCH_ROLE")
  const server = yield* Config.string("BENCH_GEARMAN")
  const fn = yield* Config.string("BENCH_FUNCTION").pipe(Config.withDefault("bench_mem"))
  const concurrency = yield* Config.integer("BENCH_CONCURRENCY").pipe(Config.withDefault(8))
  const checkpoints = yield* Config.array(Config.integer(), "BENCH_CHECKPOINTS").pipe(Config.withDefault([]))
  const watermark = yield* Config.option(Config.integer("BENCH_WATERMARK"))
  const batchRunSleep = yield* Config.option(Config.number("BENCH_BATCH_RUN_SLEEP"))
  const shards = yield* shardsConfig
  yield* Effect.scoped(
    Effect.gen(function*() {
      if (role === "runner") {
        // The heap policy `garivini queue-runner` runs with (src/cli/heap.ts): this process stands for it.
        yield* applyRoleHeapPolicy
        yield* Effect.forkScoped(QueueRunner.run({
          ...(Option.isSome(watermark) ? { queueWatermarkDepth: watermark.value } : {}),
          ...(Option.isSome(batchRunSleep) ? { batchRunSleep: Duration.millis(batchRunSleep.value) } : {})
        }))
        yield* emit({ event: "ready", rss: process.memoryUsage().rss })
        return yield* Effect.never
      }
      let handled = 0
      yield* Worker.serve({ [fn]: () => Effect.sync(() => void handled++) }, { concurrency })
      yield* emit({ event: "ready", rss: process.memoryUsage().rss })
      let reported = -1
      const pending = [...checkpoints].sort((a, b) => a - b)
      return yield* Effect.gen(function*() {
        if (handled !== reported) {
          reported = handled
          yield* emit({ event: "progress", handled })
        }
        while (pending.length > 0 && handled >= pending[0]!) {
          pending.shift()
          // Let queued completions go out, then measure what stays.
          yield* Effect.sleep("200 millis")
          // Twice, a turn apart: Buffers' memory goes back only once their wrappers are swept.
          gc?.()
          yield* Effect.sleep("50 millis")
          gc?.()
          const m = process.memoryUsage()
          yield* emit({ event: "checkpoint", handled, rss: m.rss, heapUsed: m.heapUsed, external: m.external })
        }
      }).pipe(Effect.zipRight(Effect.sleep(Duration.millis(100))), Effect.forever)
    }).pipe(Effect.provide(Layer.mergeAll(StorageLayers.layer({ shards }), Gearman.layer({ servers: [server] }))))
  )
}).pipe(Logger.withMinimumLogLevel(LogLevel.Error))

NodeRuntime.runMain(program)
