// Starts test/support/workerProcess.ts in a child process (killed when the scope closes) and
// reports the lines it prints.
import { spawn } from "node:child_process"
import { Deferred, Effect } from "effect"
import type { ShardConfig } from "../../src/storage/targets.js"
import { childEnv } from "./env.js"

/**
 * The role of `workerProcess.ts` ("worker" serving `fn`, or "controller") over one shard and one
 * job server.
 */
export const spawnRole = (
  role: { readonly role: "worker"; readonly fn: string } | { readonly role: "controller" },
  shard: ShardConfig,
  server: string
) =>
  Effect.gen(function*() {
    const ready = yield* Deferred.make<void>()
    const started = yield* Deferred.make<string>()
    const child = yield* Effect.acquireRelease(
      Effect.sync(() =>
        spawn("node_modules/.bin/vite-node", ["test/support/workerProcess.ts"], {
          env: childEnv({
            GARIVINI_DB: `mysql://${shard.user}@${shard.host}:${shard.port}/${shard.database}`,
            GARIVINI_TEST_GEARMAN: server,
            GARIVINI_TEST_ROLE: role.role,
            GARIVINI_TEST_FUNCTION: role.role === "worker" ? role.fn : ""
          }),
          stdio: ["ignore", "pipe", "inherit"]
        })
      ),
      (c) => Effect.sync(() => c.kill("SIGKILL"))
    )
    child.stdout!.on("data", (chunk: Buffer) => {
      for (const line of chunk.toString().split("\n")) {
        if (line === "ready") Effect.runSync(Deferred.succeed(ready, undefined))
        if (line.startsWith("started ")) Effect.runSync(Deferred.succeed(started, line.slice(8)))
      }
    })
    yield* Deferred.await(ready)
    return { started: Deferred.await(started), kill: Effect.sync(() => child.kill("SIGKILL")) }
  })
