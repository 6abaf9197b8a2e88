// A worker process of the chaos soak (chaos/run.ts bundles it with esbuild and runs it with plain
// node, as a user's worker runs): the worker helper (`Worker.serve`) serving CHAOS_FUNCTION over
// every shard and job server given, with the soak's handler (chaos/handler.ts) writing to this
// process's ledger file. Prints {"event":"ready"} once serving.
// Environment: CHAOS_GEARMAND and CHAOS_DB (comma-separated), CHAOS_FUNCTION, CHAOS_LEDGER (a
// file), CHAOS_NAME, CHAOS_CONCURRENCY.
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Config, Console, Effect, Either, Layer, Logger, LogLevel } from "effect"
import { shardsFromUrls } from "../src/storage/targets.js"
import * as Gearman from "../src/gearman/Gearman.js"
import * as Worker from "../src/roles/Worker.js"
import * as StorageLayers from "../src/storage/Storage.js"
import { chaosHandler } from "./handler.js"

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
  yield* Effect.scoped(
    Effect.gen(function*() {
      yield* Worker.serve({ [fn]: chaosHandler(() => ledger, name) }, { concurrency })
      yield* Console.log(JSON.stringify({ event: "ready" }))
      return yield* Effect.never
    }).pipe(Effect.provide(Layer.mergeAll(storage, Gearman.layer({ servers }))))
  )
}).pipe(Logger.withMinimumLogLevel(LogLevel.Error))

NodeRuntime.runMain(program)
