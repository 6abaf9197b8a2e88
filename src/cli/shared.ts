/** What several subcommands share: the shard options and a one-line report of failures. */
import { Options } from "@effect/cli"
import { Config, Console, Effect, Either, Redacted } from "effect"
import { shardsConfig, shardsFromUrls } from "../config.js"
import type { ShardConfig } from "../config.js"

/**
 * `--db mysql://user:pass@host:port/db[?id=N]`, repeatable (one per shard). Without it, the
 * `GARIVINI_DB` environment variable, then the local MariaDB. Read as Redacted: URLs hold passwords.
 */
export const dbOption = Options.text("db").pipe(
  Options.repeated,
  // Wrapped at once (Options.redacted rejects repeated values in @effect/cli 0.77).
  Options.map((urls) => urls.map((url) => Redacted.make(url))),
  Options.withDescription(
    "A shard as mysql://user:pass@host:port/db[?id=N]; repeat for several shards (default: $GARIVINI_DB, then mysql://root@127.0.0.1:3306/garivini)"
  )
)

export const resolveShards = (urls: ReadonlyArray<Redacted.Redacted>) =>
  urls.length === 0
    ? Effect.mapError(Config.unwrap(shardsConfig), (e) => ({ message: `invalid configuration GARIVINI_DB: ${String(e)}` }))
    : Effect.mapError(
      Either.match(shardsFromUrls(urls.map(Redacted.value)), {
        onLeft: Effect.fail,
        onRight: (shards: ReadonlyArray<ShardConfig>) => Effect.succeed(shards)
      }),
      (e) => ({ message: e.message })
    )

/** Ends the command with one clear line (no stack trace) and exit code 1. */
export const reportFailure = <A, E extends { readonly message: string }, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.catchAll(effect, (e) =>
    Effect.zipRight(
      Console.error(`garivini: ${e.message}`),
      Effect.sync(() => {
        process.exitCode = 1
      })
    ))
