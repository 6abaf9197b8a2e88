/** `garivini migrate`: applies schema.sql to every shard (idempotent). */
import { Command } from "@effect/cli"
import { Console, Effect } from "effect"
import { migrate } from "../storage/migrate.js"
import { connectionOptions } from "./config.js"
import { withSettings } from "./shared.js"

export const migrateCommand = Command.make("migrate", connectionOptions, (flags) =>
  withSettings(flags, (settings) =>
    Effect.gen(function*() {
      yield* migrate(settings.shards)
      yield* Console.log(
        `schema applied to ${settings.shards.length} shard(s): ${settings.shards.map((s) => `${s.id}=${s.database}`).join(", ")}`
      )
    }))).pipe(Command.withDescription("Create each shard's database if needed and apply schema.sql (idempotent)"))
