/**
 * Durable jobs in a Driver child: the worker helper's handler over Storage (GARIVINI_DB, inherited
 * from the Driver: MySQL shards or a sqlite: file; unset, ./garivini.db as for every `garivini`
 * command). Loaded only by children that serve one, so the others start without a database.
 */
import { Config, Effect, Layer, Option, Redacted } from "effect"
import type { Scope } from "effect"
import { parseDbTargets } from "../storage/targets.js"
import type * as GearmanWorker from "../gearman/GearmanWorker.js"
import * as Heartbeat from "../roles/heartbeat.js"
import * as Tracing from "../tracing/Tracing.js"
import { gearmanHandler, makeCompleter, storedJobKey } from "../roles/Worker.js"
import { Storage, layer as storageLayer, layerSqlite } from "../storage/Storage.js"
import type { DriverFunction } from "./attributes.js"

/** A durable function's handler, and its stored job's identity (joins a re-delivery to its run). */
export interface DurableFunction {
  readonly handler: GearmanWorker.Handler<never>
  readonly workKey: (job: GearmanWorker.GearmanJob) => string | undefined
}

export const withDurable = <A, E, R>(
  body: (
    durable: (fn: DriverFunction) => Option.Option<DurableFunction>
  ) => Effect.Effect<A, E, R | Scope.Scope>
): Effect.Effect<A, E, Exclude<R, Storage>> =>
  Effect.gen(function*() {
    const target = yield* Effect.orDie(Config.option(Config.redacted("GARIVINI_DB")))
    // `garivini driver` checked this value at start (one line, exit 2): a failure here is a defect.
    const targets = yield* Effect.orDie(
      parseDbTargets(Option.match(target, { onNone: () => "", onSome: Redacted.value }))
    )
    const storage: Layer.Layer<Storage, unknown> = targets._tag === "Sqlite"
      ? layerSqlite({ filename: targets.filename })
      : storageLayer({ shards: targets.shards })
    return yield* Effect.scoped(
      Effect.gen(function*() {
        const storage = yield* Storage
        const complete = yield* makeCompleter(storage)
        const heartbeats = yield* Heartbeat.make(storage)
        const traced = yield* Tracing.isEnabled
        return yield* body((fn) =>
          fn.spec._tag === "Durable"
            ? Option.some({
              handler: gearmanHandler(
                storage,
                complete,
                fn.registered,
                fn.spec.handler,
                fn.spec.maxAttempts,
                heartbeats,
                traced
              ),
              workKey: storedJobKey
            })
            : Option.none()
        )
      })
    ).pipe(Effect.provide(Layer.orDie(storage)))
  })
