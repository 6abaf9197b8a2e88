/**
 * Durable jobs in a Driver child: the worker helper's handler over Storage (GARIVINI_DB, inherited
 * from the Driver). Loaded only by children that serve one, so the others start without MySQL.
 */
import { Effect, Layer, Option } from "effect"
import type { Scope } from "effect"
import { shardsConfig } from "../config.js"
import type * as GearmanWorker from "../gearman/worker.js"
import { gearmanHandler, makeCompleter } from "../roles/Worker.js"
import { Storage, layer as storageLayer } from "../storage/Storage.js"
import type { DriverFunction } from "./attributes.js"

export const withDurable = <A, E, R>(
  body: (durable: (fn: DriverFunction) => Option.Option<GearmanWorker.Handler<never>>) => Effect.Effect<A, E, R | Scope.Scope>
): Effect.Effect<A, E, Exclude<R, Storage>> =>
  Effect.gen(function*() {
    const shards = yield* Effect.orDie(shardsConfig)
    return yield* Effect.scoped(
      Effect.gen(function*() {
        const storage = yield* Storage
        const complete = yield* makeCompleter(storage)
        return yield* body((fn) =>
          fn.spec._tag === "Durable" ? Option.some(gearmanHandler(storage, complete, fn.registered, fn.spec.handler)) : Option.none()
        )
      })
    ).pipe(Effect.provide(Layer.orDie(storageLayer({ shards }))))
  })
