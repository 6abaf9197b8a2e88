// Stopping a role process: the first SIGTERM or SIGINT lets a long in-flight job finish (its grace
// period) and exits 0; a second one exits at once (130), the job left leased for its lease.
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Option } from "effect"
import * as Gearman from "../src/gearman/Gearman.js"
import { encodeWorkerJson } from "../src/Job.js"
import * as Client from "../src/roles/Client.js"
import { CONTROLLER_FUNCTION } from "../src/roles/QueueRunner.js"
import * as Worker from "../src/roles/Worker.js"
import { Storage } from "../src/storage/Storage.js"
import { eventually, gearmandServer } from "./gearman/gearmand.js"
import { background } from "./support/cli.js"
import { env } from "./support/e2e.js"
import { mysqlHost, mysqlPort, testShards } from "./support/mysql.js"

/** A controller job stored leased, as the Injector stores it, and handed to `run_queued_job`. */
const dispatchControllerJob = Effect.gen(function*() {
  const storage = yield* Storage
  const [stored] = yield* Client.insertJobs([{ funcname: "slow", arg: "x", flag: "controller", runAt: "+1000" }])
  const leased = Option.getOrThrow(yield* storage.get(stored!.handle))
  const gearman = yield* Gearman.Gearman
  yield* gearman.submitBackground(CONTROLLER_FUNCTION, encodeWorkerJson(leased))
  return leased
})

/** The role's exit; the deadline is a hang guard (a second signal that is ignored), not a timing. */
const exitOf = (controller: Effect.Effect.Success<ReturnType<typeof background>>) =>
  controller.exit.pipe(
    Effect.timeoutFail({ duration: "30 seconds", onTimeout: () => new Error("the controller did not exit") }),
    Effect.orDie
  )

describe.each(["SIGTERM", "SIGINT"] as const)("stopping a garivini controller with %s", (signal) => {
  for (const signals of [1, 2] as const) {
    it.scopedLive(
      signals === 1
        ? `${signal} while a job runs: the job finishes (grace period), its row is completed, exit 0`
        : `a second ${signal} while the first waits on a job: exit at once, the row left leased`,
      () =>
        Effect.gen(function*() {
          const [shard] = yield* testShards(1)
          const server = yield* gearmandServer
          yield* Effect.gen(function*() {
            const started = yield* Deferred.make<void>()
            const release = yield* Deferred.make<void>()
            yield* Worker.serve({
              slow: () => Effect.zipRight(Deferred.succeed(started, undefined), Deferred.await(release))
            })
            // A failed test still lets the handler end, so the worker's scope can close.
            yield* Effect.addFinalizer(() => Deferred.succeed(release, undefined))
            const controller = yield* background(
              "controller",
              "--db",
              `mysql://root@${mysqlHost}:${mysqlPort}/${shard!.database}`,
              "--gearmand",
              server
            )
            const job = yield* dispatchControllerJob
            yield* Deferred.await(started)
            yield* controller.signal(signal)
            yield* eventually(
              Effect.map(controller.errors, (e) => e.includes("running job(s)")),
              "the controller to wait for its running job"
            )
            assert.isFalse(yield* controller.exited, "the first signal does not end a running job")
            const storage = yield* Storage
            if (signals === 2) {
              yield* controller.signal(signal)
              const exit = yield* exitOf(controller)
              assert.strictEqual(exit.code, 130)
              // The job never finished: the row stays as leased, for the lease to bring it back.
              assert.strictEqual(Option.getOrThrow(yield* storage.get(job)).runAfter, job.runAfter)
              yield* Deferred.succeed(release, undefined)
              return
            }
            yield* Deferred.succeed(release, undefined)
            const exit = yield* exitOf(controller)
            assert.strictEqual(exit.code, 0, exit.stderr)
            assert.isTrue(Option.isNone(yield* storage.get(job)), "the controller completed the row before it exited")
          }).pipe(Effect.scoped, Effect.provide(env([shard!], [server])))
        }),
      60_000
    )
  }
})
