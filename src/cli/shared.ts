/** What the subcommands share: settings with logging set up, the service layers, one-line failures. */
import { Console, Effect, Layer } from "effect"
import { Gearman, layer as gearmanLayer } from "../gearman/Gearman.js"
import { Storage, layer as storageLayer } from "../storage/Storage.js"
import { resolve } from "./config.js"
import type { Settings } from "./config.js"

import { loggerLayer } from "./logging.js"

export { loggerLayer }

/** Storage over the configured shards and Gearman over the configured job servers. */
export const servicesLayer = (settings: Settings): Layer.Layer<Storage | Gearman, never> =>
  Layer.mergeAll(Layer.orDie(storageLayer({ shards: settings.shards })), gearmanLayer({ servers: settings.gearmand }))

/** Storage only (commands that do not talk to gearmand). */
export const storageOnly = (settings: Settings): Layer.Layer<Storage, never> => Layer.orDie(storageLayer({ shards: settings.shards }))

/**
 * Ends the command with one clear line (no stack trace): exit 2 for bad configuration or usage,
 * 1 for a failure at run time.
 */
export const reportFailure = <A, E extends { readonly _tag: string; readonly message: string }, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.catchAll(effect, (e) =>
    Effect.zipRight(
      Console.error(`garivini: ${e.message}`),
      Effect.sync(() => {
        process.exitCode = e._tag === "ConfigInvalid" || e._tag === "UsageError" ? 2 : 1
      })
    ))

/** Resolves the settings, sets up logging, runs `body`; failures end in one line and an exit code. */
export const withSettings = <E extends { readonly _tag: string; readonly message: string }, R>(
  flags: Parameters<typeof resolve>[0],
  body: (settings: Settings) => Effect.Effect<void, E, R>
) =>
  reportFailure(Effect.flatMap(resolve(flags), (settings) => body(settings).pipe(Effect.provide(loggerLayer(settings.logFormat))))) 
