// A role in its own process, for tests that kill it (SIGKILL) mid-job. With
// GARIVINI_TEST_ROLE=controller it runs a Controller; otherwise a worker serving
// GARIVINI_TEST_FUNCTION that prints "started <dbid:jobid>" when a job starts and never
// finishes it. Either prints "ready" once serving on GARIVINI_TEST_GEARMAN.
import { NodeRuntime } from "@effect/platform-node"
import { Config, Console, Effect, Layer, Logger, LogLevel } from "effect"
import { shardsConfig } from "../../src/storage/targets.js"
import * as Gearman from "../../src/gearman/Gearman.js"
import { formatHandle } from "../../src/Job.js"
import * as Controller from "../../src/roles/Controller.js"
import * as Worker from "../../src/roles/Worker.js"
import * as StorageLayers from "../../src/storage/Storage.js"

const program = Effect.gen(function*() {
  const role = yield* Config.string("GARIVINI_TEST_ROLE").pipe(Config.withDefault("worker"))
  const fn = yield* Config.string("GARIVINI_TEST_FUNCTION")
  const server = yield* Config.string("GARIVINI_TEST_GEARMAN")
  const shards = yield* shardsConfig
  yield* Effect.scoped(
    Effect.gen(function*() {
      if (role === "controller") yield* Controller.serve()
      else yield* Worker.serve({
          [fn]: (job) => Effect.zipRight(Console.log(`started ${formatHandle(job)}`), Effect.never)
        })
      yield* Console.log("ready")
      return yield* Effect.never
    }).pipe(Effect.provide(Layer.mergeAll(StorageLayers.layer({ shards }), Gearman.layer({ servers: [server] }))))
  )
}).pipe(Logger.withMinimumLogLevel(LogLevel.Error))

NodeRuntime.runMain(program)
