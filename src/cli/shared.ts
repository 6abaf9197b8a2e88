/** What the subcommands share: settings with logging set up, the service layers, one-line failures. */
import { Console, Effect, Layer, Logger, LogLevel, Option } from "effect"
import type { ConfigInvalid, ShardUnavailable, SqliteDriverMissing } from "../errors.js"
import type { Gearman } from "../gearman/Gearman.js"
import { layer as gearmanLayer } from "../gearman/Gearman.js"
import { migrate, migrateSqlite } from "../storage/migrate.js"
import type { Storage } from "../storage/Storage.js"
import { layer as mysqlLayer, layerSqlite } from "../storage/Storage.js"
import { resolve } from "./config.js"
import type { Settings } from "./config.js"

import { warnPasswordFlag } from "./exposure.js"
import { loggerLayer } from "./logging.js"

export { loggerLayer }

/** Why the storage layer could not be built: bad shards, or a SQLite file or driver that cannot be used. */
export type StorageLayerError = ConfigInvalid | SqliteDriverMissing | ShardUnavailable

/**
 * Storage for the settings: the SQLite file when `sqlite:` was given (opened, schema applied),
 * else the MySQL shards (pools opened on first use). Fails with a typed error, never a defect.
 */
export const storageLayerFor = (settings: Settings): Layer.Layer<Storage, StorageLayerError> =>
  Option.match(settings.sqlite, {
    onNone: () => mysqlLayer({ shards: settings.shards, statementTimeout: settings.statementTimeout }),
    onSome: (filename) => layerSqlite({ filename })
  })

/** Where the jobs are, for log and console lines. */
export const describeStorage = (settings: Settings): string =>
  Option.match(settings.sqlite, {
    onNone: () =>
      `${settings.shards.length} shard(s): ${settings.shards.map((s) => `${s.id}=${s.database}`).join(", ")}`,
    onSome: (filename) => `SQLite file ${filename}`
  })

/** Applies the schema where the settings put the jobs (idempotent). */
export const migrateStorage = (settings: Settings) =>
  Option.match(settings.sqlite, {
    onNone: () => migrate(settings.shards),
    onSome: migrateSqlite
  })

/** Storage for the settings and Gearman over the configured job servers. */
export const servicesLayer = (settings: Settings): Layer.Layer<Storage | Gearman, StorageLayerError> =>
  Layer.mergeAll(storageLayerFor(settings), gearmanLayer({ servers: settings.gearmand }))

/** Storage only (commands that do not talk to gearmand). */
export const storageOnly = (settings: Settings): Layer.Layer<Storage, StorageLayerError> => storageLayerFor(settings)

/**
 * Ends the command with one clear line (no stack trace): exit 2 for bad configuration or usage,
 * 1 for a failure at run time.
 */
export const reportFailure = <A, E extends { readonly _tag: string; readonly message: string }, R>(
  effect: Effect.Effect<A, E, R>
) =>
  Effect.catchAll(effect, (e) =>
    Effect.zipRight(
      Console.error(`garivini: ${e.message}`),
      Effect.sync(() => {
        process.exitCode = e._tag === "ConfigInvalid" || e._tag === "UsageError" ? 2 : 1
      })
    ))

/** The log output of the settings: their format, and their level else `defaultLevel`. */
export const logLayer = (
  format: Settings["logFormat"],
  level: Option.Option<LogLevel.LogLevel>,
  defaultLevel: LogLevel.LogLevel
): Layer.Layer<never> =>
  Layer.merge(loggerLayer(format), Logger.minimumLogLevel(Option.getOrElse(level, () => defaultLevel)))

/**
 * Resolves the settings, sets up logging, runs `body`; failures end in one line and an exit code.
 * Long-running commands log from INFO up by default.
 */
export const withSettings = <E extends { readonly _tag: string; readonly message: string }, R>(
  flags: Parameters<typeof resolve>[0],
  body: (settings: Settings) => Effect.Effect<void, E, R>,
  defaultLevel: LogLevel.LogLevel = LogLevel.Info
) =>
  reportFailure(
    Effect.flatMap(resolve(flags), (settings) =>
      Effect.zipRight(warnPasswordFlag(flags.db ?? []), body(settings)).pipe(
        Effect.provide(logLayer(settings.logFormat, settings.logLevel, defaultLevel))
      ))
  )

/**
 * `withSettings` for a command that prints an answer and exits (inject, status, jobs, migrate):
 * stdout holds only the answer, stderr only warnings and errors, unless a level is asked for.
 */
export const withSettingsOneShot = <E extends { readonly _tag: string; readonly message: string }, R>(
  flags: Parameters<typeof resolve>[0],
  body: (settings: Settings) => Effect.Effect<void, E, R>
) => withSettings(flags, body, LogLevel.Warning)
