/**
 * `garivini demo`, the main job on a fresh machine: migrate the shards, start every role and a
 * worker in this process (with an embedded job server unless job servers are configured), store jobs both
 * ways (half through the database, half through inject_jobs), watch them complete, and print a
 * summary. Exits 0 when every job ran and no row is left.
 */
import { Command, Options } from "@effect/cli"
import { Clock, Console, Data, Duration, Effect, Layer } from "effect"
import { Gearman } from "../gearman/Gearman.js"
import { serve } from "../jobserver/tcpServer.js"
import * as Client from "../roles/Client.js"
import { INJECT_FUNCTION } from "../roles/Injector.js"
import * as Supervise from "../roles/supervise.js"
import * as Worker from "../roles/Worker.js"
import { Storage } from "../storage/Storage.js"
import { connectionOptions, outputOptions } from "./config.js"
import { ROLES, rolesLayer } from "./roles.js"
import { describeStorage, migrateStorage, servicesLayer, withSettings } from "./shared.js"

class DemoFailed extends Data.TaggedError("DemoFailed")<{ readonly message: string; readonly cause?: unknown }> {}

const FUNCTION = "garivini_demo"

export const demoCommand = Command.make("demo", {
  ...connectionOptions,
  count: Options.integer("count").pipe(
    Options.withDefault(1000),
    Options.withDescription("How many jobs, half each way (default 1000)")
  ),
  ...outputOptions
}, (o) =>
  withSettings(o, (configured) =>
    Effect.scoped(Effect.gen(function*() {
      const started = yield* Clock.currentTimeMillis
      const gearmand = configured.gearmandGiven
        ? configured.gearmand
        : [(yield* serve({ port: 0 })).address]
      const settings = {
        ...configured,
        gearmand,
        queueRunner: { batchRunSleep: Duration.millis(200), ...configured.queueRunner }
      }
      yield* Console.log(
        `job servers: ${gearmand.join(", ")}${configured.gearmandGiven ? "" : " (embedded, started for this demo)"}`
      )
      yield* migrateStorage(settings)
      yield* Console.log(`${describeStorage(settings)} (schema applied)`)

      let ran = 0
      const tag = `run ${started}`
      const worker = Worker.layer(
        { [FUNCTION]: (job) => Effect.sync(() => void (job.text.startsWith(tag) && ran++)) },
        { concurrency: 8 }
      )
      const services = servicesLayer(settings)
      // The worker reports to the roles' Supervision: one give-up ends the demo (exit 1).
      const context = yield* Layer.build(
        worker.pipe(Layer.provideMerge(rolesLayer(ROLES, settings)), Layer.provideMerge(services))
      )
      yield* Effect.gen(function*() {
        yield* Console.log(`roles: ${ROLES.join(", ")} and a worker for ${FUNCTION}`)
        const direct = Math.ceil(o.count / 2)
        const injected = o.count - direct
        yield* Client.insertJobs(
          Array.from({ length: direct }, (_, i) => ({ funcname: FUNCTION, arg: `${tag} direct ${i}` }))
        )
        const gearman = yield* Gearman
        yield* Effect.forEach(Array.from({ length: injected }), (_, i) =>
          gearman.submit(INJECT_FUNCTION, JSON.stringify({ funcname: FUNCTION, arg: `${tag} injected ${i}` })).pipe(
            Effect.mapError((e) => new DemoFailed({ message: `inject_jobs failed: ${e.message}`, cause: e }))
          ), { concurrency: 8, discard: true })
        yield* Console.log(`stored ${direct} job(s) with Client.insertJobs and ${injected} through ${INJECT_FUNCTION}`)
        const storage = yield* Storage
        const left = Effect.map(storage.counts(), (c) =>
          c.filter((x) =>
            x.funcname === FUNCTION
          ).reduce((n, x) =>
            n + x.due + x.scheduled + x.retrying + x.dispatched + x.running, 0))
        for (let tick = 0;; tick++) {
          const remaining = yield* left
          if (ran >= o.count && remaining === 0)
            break
          if (tick % 5 === 0)
            yield* Console.log(`  ${ran}/${o.count} ran, ${remaining} row(s) left`)
          if (tick > 600)
            return yield* Effect.fail(
              new DemoFailed({ message: `gave up after 2 minutes: ${ran}/${o.count} ran, ${remaining} row(s) left` })
            )
          yield* Effect.sleep("200 millis")
        }
        const seconds = ((yield* Clock.currentTimeMillis) - started) / 1000
        yield* Console.log(`done: ${ran}/${o.count} jobs ran, none left in the database, in ${seconds.toFixed(1)} s`)
      }).pipe(Effect.raceFirst(Supervise.join), Effect.provide(context))
    })))).pipe(
    Command.withDescription(
      "The whole system on this machine: migrate, run every role, inject jobs, watch them complete"
    )
  )
