// A worker process of the chaos soak (chaos/run.ts bundles it with esbuild and runs it with plain
// node, as a user's worker runs): the worker helper (`Worker.serve`) serving CHAOS_FUNCTION over
// every shard and job server given. Each job's arg is a `ChaosArg`; the handler writes `start`,
// then either `fail` (before `failUntil`: it asks for a retry in a second) or, after sleeping
// `sleepMs`, `done` to this process's ledger file. Prints {"event":"ready"} once serving.
// Environment: CHAOS_GEARMAND and CHAOS_DB (comma-separated), CHAOS_FUNCTION, CHAOS_LEDGER (a
// file), CHAOS_NAME, CHAOS_CONCURRENCY.
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Config, Console, Effect, Either, Layer, Logger, LogLevel } from "effect"
import { shardsFromUrls } from "../src/config.js"
import * as Gearman from "../src/gearman/Gearman.js"
import * as Worker from "../src/roles/Worker.js"
import * as StorageLayers from "../src/storage/Storage.js"
import { append, decodeArg } from "./ledger.js"

const list = (name: string) =>
  Config.map(Config.string(name), (s) => s.split(",").map((x) => x.trim()).filter((x) => x !== ""))

const program = Effect.gen(function*() {
  const servers = yield* list("CHAOS_GEARMAND")
  const urls = yield* list("CHAOS_DB")
  const fn = yield* Config.string("CHAOS_FUNCTION")
  const ledger = yield* Config.string("CHAOS_LEDGER")
  const name = yield* Config.string("CHAOS_NAME")
  const concurrency = yield* Config.integer("CHAOS_CONCURRENCY").pipe(Config.withDefault(8))
  const shards = shardsFromUrls(urls)
  const storage = Either.isLeft(shards) ? Layer.fail(shards.left) : StorageLayers.layer({ shards: shards.right })
  const entry = (ev: "start" | "fail" | "done", id: string, h: string) =>
    append(ledger, { ev, id, t: Date.now(), p: process.pid, w: name, h })

  const handler: Worker.JobHandler = (job) =>
    Effect.gen(function*() {
      const arg = decodeArg(job.text)
      if (Either.isLeft(arg)) return yield* Effect.logError(`not a chaos job: ${job.text.slice(0, 100)}`)
      const { failUntil, id, sleepMs } = arg.right
      const h = `${job.dbid}:${job.jobid}`
      entry("start", id, h)
      if (Date.now() < failUntil) {
        entry("fail", id, h)
        return yield* Worker.retryAt("+1")
      }
      if (sleepMs > 0) yield* Effect.sleep(sleepMs)
      entry("done", id, h)
    })

  yield* Effect.scoped(
    Effect.gen(function*() {
      yield* Worker.serve({ [fn]: handler }, { concurrency })
      yield* Console.log(JSON.stringify({ event: "ready" }))
      return yield* Effect.never
    }).pipe(Effect.provide(Layer.mergeAll(storage, Gearman.layer({ servers }))))
  )
}).pipe(Logger.withMinimumLogLevel(LogLevel.Error))

NodeRuntime.runMain(program)
