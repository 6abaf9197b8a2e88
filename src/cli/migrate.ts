/** `garivini migrate`: applies schema.sql to every shard (idempotent). */
import { Command } from "@effect/cli"
import { Console, Effect } from "effect"
import { connectionOptions } from "./config.js"
import { describeStorage, migrateStorage, withSettings } from "./shared.js"

export const migrateCommand = Command.make("migrate", connectionOptions, (flags) =>
  withSettings(flags, (settings) =>
    Effect.gen(function*() {
      yield* migrateStorage(settings)
      yield* Console.log(`schema applied to ${describeStorage(settings)}`)
    }))).pipe(Command.withDescription("Create each shard's database (or the SQLite file) if needed and apply the schema (idempotent)"))
